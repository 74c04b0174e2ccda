"""Edit many clips with one workflow, serially or on a Ray cluster.

Each row of a manifest runs through a headless ComfyUI with this pack loaded (the executor of
scripts/run_workflow.py).

    python scripts/batch.py workflows/toy_word_swap.json clips.csv --out runs/toy
    python scripts/batch.py my_workflow.json clips.jsonl --out /shared/edits --ray auto

Manifest: CSV (a header row) or JSONL (one object per line), one row per clip. Columns:
  name     the row's output name: its files go to OUT/<name>/... (default row001, row002, ...)
  video    a video file or image folder, for the workflow's Load Video (VP2P) node (its path input)
  source   the source prompt (P2P Controller source_text)
  target   the target prompt (P2P Controller target_text)
  KEY.INPUT  any node input, KEY = node id, title or type as in run_workflow.py --set
             (e.g. "Tune On Video.steps" or "7.seed"); empty CSV cells are left alone.
Results: OUT/results.jsonl, one line per finished row (row, name, status, outputs, seconds,
error, key, reused, worker). A second run skips the rows already done with the same content key
(workflow after the row's changes, the bytes of its input files, the pack's version).
Tune On Video and Shared Null-Text Invert run with cache on (off: --no-reuse), so rows that
share a clip, model and source prompt tune and invert once (OUT/cache/).
Exit status: 0 all rows done, 1 some row failed, 2 bad arguments."""
from __future__ import annotations

import argparse
import collections
import copy
import csv
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run_workflow  # noqa: E402  (the one override syntax and output collection)

RESERVED = ("name", "video", "source", "target")
REUSE_NODES = ("VP2PTuneOnVideo", "VP2PSharedNullTextInvert")
RAY_HINT = 'the --ray option needs Ray: pip install "ray[default]"'


class RowError(ValueError):
    """A row that cannot be turned into a prompt (reported as that row's failure)."""


# --------------------------------------------------------------------------- manifest
def read_manifest(path: str) -> list[dict]:
    """Rows as dicts (columns -> values), in order; CSV or JSONL by content."""
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    rows = []
    if text.lstrip().startswith("{"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{n}: not a JSON object ({e})")
                if not isinstance(row, dict):
                    raise SystemExit(f"{path}:{n}: each line must be a JSON object")
                rows.append(row)
    else:
        for row in csv.DictReader(text.splitlines()):
            rows.append({k.strip(): v for k, v in row.items() if k and v is not None and v.strip() != ""})
    for i, row in enumerate(rows, 1):
        bad = [k for k in row if k not in RESERVED and "." not in k]
        if bad:
            raise SystemExit(f"{path}: column {bad[0]!r} is neither one of {', '.join(RESERVED)} nor a "
                             "NodeTitleOrId.input override")
        row.setdefault("name", f"row{i:03d}")
        name = str(row["name"])
        if not name or name.startswith(".") or "/" in name or "\\" in name or name == "cache":
            raise SystemExit(f"{path}: row {i}: name {name!r} must be a plain folder name")
    names = collections.Counter(str(r["name"]) for r in rows)
    dup = [n for n, c in names.items() if c > 1]
    if dup:
        raise SystemExit(f"{path}: names must be unique ({dup[0]!r} is used {names[dup[0]]} times)")
    return rows


def _only(prompt, class_type, what, column):
    ids = [i for i, n in prompt.items() if n["class_type"] == class_type]
    if len(ids) != 1:
        raise RowError(f"the manifest's {column!r} column needs exactly one {what} node in the workflow "
                       f"(found {len(ids)}); use a 'NodeTitleOrId.input' column instead")
    return prompt[ids[0]]


def row_prompt(api: dict, row: dict, display_names: dict, reuse: bool = True) -> dict:
    """The workflow with one row's values: video, prompts, overrides, and save prefixes under
    the row's name (so rows never overwrite each other)."""
    prompt = copy.deepcopy(api)
    name = str(row["name"])
    if reuse:
        for n in prompt.values():
            if n["class_type"] in REUSE_NODES:
                n["inputs"]["cache"] = True
    if "video" in row:
        node = _only(prompt, "VP2PLoadVideo", "Load Video (VP2P)", "video")
        node["inputs"]["path"] = os.path.abspath(str(row["video"]))
        if "clip_folder" in node["inputs"]:     # a folder of clips would win over the path
            node["inputs"]["clip_folder"] = ""
    for column, field in (("source", "source_text"), ("target", "target_text")):
        if column in row:
            _only(prompt, "VP2PController", "P2P Controller", column)["inputs"][field] = str(row[column])
    sets = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in row.items() if k not in RESERVED]
    try:
        run_workflow.apply_overrides(prompt, sets, display_names)
    except SystemExit as e:
        raise RowError(str(e)) from None
    for n in prompt.values():
        for field in ("filename_prefix", "save_name"):
            value = n["inputs"].get(field)
            if isinstance(value, str) and value.strip():
                n["inputs"][field] = f"{name}/{value.strip().lstrip('/')}"
    return prompt


def pack_version() -> str:
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def _hash_path(path: str) -> str:
    h = hashlib.sha1()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs)
    for p in files:
        h.update(os.path.relpath(p, path).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def content_key(prompt: dict) -> str:
    """What a row's result depends on: its prompt, the bytes of the files it names, the pack version."""
    files = {}
    for n in prompt.values():
        for v in n["inputs"].values():
            if isinstance(v, str) and os.path.isabs(v) and os.path.exists(v):
                files[v] = _hash_path(v)
    body = {"prompt": {i: {"class_type": n["class_type"], "inputs": n["inputs"]} for i, n in prompt.items()},
            "files": files, "pack": pack_version()}
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:20]


def make_jobs(api: dict, rows: list[dict], display_names: dict, reuse: bool, sets=()):
    """-> (jobs to run, records of rows that cannot run)."""
    jobs, failed = [], []
    for i, row in enumerate(rows, 1):
        name = str(row["name"])
        try:
            prompt = row_prompt(api, {**dict(s.split("=", 1) for s in sets), **row}, display_names, reuse)
        except RowError as e:
            failed.append(record(i, name, "failed", error=str(e)))
            continue
        group = (str(row.get("video")), str(row.get("source"))) if reuse and "video" in row else None
        jobs.append({"row": i, "name": name, "prompt": prompt, "key": content_key(prompt), "group": group})
    return jobs, failed


def record(row, name, status, outputs=(), seconds=0.0, error=None, key=None, reused=None, worker=None, **extra):
    return {"row": row, "name": name, "status": status, "outputs": list(outputs), "seconds": round(seconds, 3),
            "error": error, "key": key, "reused": reused or {}, "worker": worker, **extra}


# --------------------------------------------------------------------------- results
class Results:
    """OUT/results.jsonl: appended one complete line per finished row (the commit record of a row)."""

    def __init__(self, path: str):
        self.path = path
        self.last = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:   # a line cut by a crash: that row runs again
                        continue
                    self.last[rec["name"]] = rec

    def done(self, job, out: str) -> bool:
        rec = self.last.get(job["name"])
        return bool(rec and rec["status"] == "ok" and rec.get("key") == job["key"]
                    and all(os.path.isfile(os.path.join(out, p)) for p in rec["outputs"]))

    def write(self, rec: dict):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.last[rec["name"]] = rec


# --------------------------------------------------------------------------- the executor
class Executor:
    """A warm headless ComfyUI (this process) that runs one row at a time. Each row writes into
    its own staging folder (ComfyUI's output folder while it runs); the finished files are then
    renamed into OUT (or handed back as bytes), so a row killed midway leaves nothing in OUT."""

    def __init__(self, out: str, threads: int = 0, cache_dir: str | None = None, collect: bool = False):
        run_workflow.boot_quiet(threads)
        import torch
        import comfy_host
        import folder_paths
        import nodes
        self.torch, self.folder_paths, self.nodes = torch, folder_paths, nodes
        self.threads_before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        self.cache = comfy_host.pack_module("vp2p_host.cache")
        self.out, self.collect = os.path.abspath(out), collect
        self.output_before = folder_paths.get_output_directory()
        self.cache.use_folder(cache_dir or os.path.join(self.out, "cache"))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = comfy_host.new_executor()     # warm: unchanged nodes (checkpoint...) are not re-run

    def close(self):
        """Give the process back as it was (the test-suite runs rows in its own ComfyUI)."""
        self.cache.use_folder(None)
        self.folder_paths.set_output_directory(self.output_before)
        self.torch.set_num_threads(self.threads_before)

    def to_api(self, workflow: dict) -> tuple[dict, dict]:
        """(API prompt, display names) of a UI- or API-format workflow."""
        import workflow_api
        if "nodes" in workflow and "links" in workflow:
            workflow = workflow_api.ui_to_api(workflow, self.nodes.NODE_CLASS_MAPPINGS)
        return workflow, dict(self.nodes.NODE_DISPLAY_NAME_MAPPINGS)

    def run(self, job: dict, report=None) -> dict:
        import comfy_host
        names = run_workflow.node_names(job["prompt"], self.nodes.NODE_DISPLAY_NAME_MAPPINGS)
        stage = {"node": "", "t": 0.0}
        report = report or (lambda text: None)

        def on_node(node):
            stage["node"] = names.get(node, node)
            report(stage["node"])

        def on_progress(value, total):
            now = time.time()
            if value == total or now - stage["t"] > 0.5:
                stage["t"] = now
                report(f"{stage['node']} {value}/{total}")

        staging = os.path.join(self.out, ".staging", f"{job['name']}-{uuid.uuid4().hex[:8]}")
        os.makedirs(staging)
        self.folder_paths.set_output_directory(staging)
        self.cache.events.clear()
        start, cpu = time.time(), time.process_time()
        try:
            with run_workflow.watch(on_node, on_progress):
                comfy_host.run_prompt(job["prompt"], client_id="vp2p_batch", executor=self.executor)
            return self._stamp(self._deliver(job, staging, start), cpu)
        except Exception as e:     # ComfyUI rejected the prompt, a node failed, the files could not move
            text = str(e).split("\n")[0].strip() if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}"
            return self._stamp(record(job["row"], job["name"], "failed", seconds=time.time() - start,
                                      error=text, key=job["key"], worker=self.worker), cpu)
        finally:
            self.folder_paths.set_output_directory(self.output_before)
            shutil.rmtree(staging, ignore_errors=True)

    def _deliver(self, job, staging, start):
        """The finished row's record; its files renamed into OUT (or attached as bytes)."""
        reused = {}
        for ev in self.cache.events:
            reused[ev["stage"]] = reused.get(ev["stage"], True) and ev["reused"]
        files = sorted(os.path.relpath(os.path.join(r, f), staging) for r, _, fs in os.walk(staging) for f in fs)
        rec = record(job["row"], job["name"], "ok", outputs=files, seconds=time.time() - start,
                     key=job["key"], reused=reused, worker=self.worker)
        if self.collect:
            rec["files"] = {}
            for rel in files:
                with open(os.path.join(staging, rel), "rb") as f:
                    rec["files"][rel] = f.read()
        else:
            for rel in files:
                place(os.path.join(staging, rel), os.path.join(self.out, rel))
        return rec

    @staticmethod
    def _stamp(rec, cpu0):
        """When the row ended, the CPU seconds the worker spent on it (its own cost, whatever else
        runs on the machine) and the worker's peak memory so far (resident, MiB)."""
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return {**rec, "cpu_seconds": round(time.process_time() - cpu0, 3), "finished": round(time.time(), 3),
                "peak_rss_mb": round(rss, 1)}


def place(src: str, dst: str):
    """Move a finished file into place with one rename (atomic on one file system)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:                   # another file system: copy beside it, then rename
        tmp = f"{dst}.partial-{uuid.uuid4().hex[:8]}"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def write_bytes(data: bytes, dst: str):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.partial-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- progress
class Bar:
    """A progress bar over rows with what each worker is doing (tqdm when it is installed)."""

    def __init__(self, total: int, done: int, quiet: bool):
        self.bar = None
        self.quiet = quiet
        if not quiet:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=done, unit="row", dynamic_ncols=True)
            except ImportError:
                pass
        self.stages = {}

    def stage(self, who, text):
        self.stages[who] = text
        if self.bar is not None:
            self.bar.set_postfix_str(" | ".join(f"{v}" for v in self.stages.values())[:120], refresh=True)

    def finished(self, rec):
        msg = f"{rec['name']}: {rec['status']} in {rec['seconds']:.1f}s"
        if rec["status"] != "ok":
            msg += f": {(rec['error'] or '').splitlines()[0] if rec['error'] else ''}"
        elif rec["reused"]:
            msg += " (reused " + ", ".join(k for k, v in rec["reused"].items() if v) + ")" \
                if any(rec["reused"].values()) else ""
        if self.bar is not None:
            self.bar.write(msg)
            self.bar.update(1)
        elif not self.quiet:
            print(msg, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- serial
def run_serial(args, workflow, rows, results) -> list[dict]:
    ex = Executor(args.out, args.threads, args.cache)
    try:
        api, display = ex.to_api(workflow)
        jobs, bad = make_jobs(api, rows, display, not args.no_reuse, args.set)
        todo = [j for j in jobs if not results.done(j, args.out)]
        bar = Bar(len(rows), len(jobs) - len(todo), args.quiet)
        finished = []
        for rec in bad:
            results.write(rec)
            bar.finished(rec)
            finished.append(rec)
        for job in todo:
            rec = ex.run(job, lambda text, n=job["name"]: bar.stage(0, f"{n}: {text}"))
            results.write(rec)
            bar.finished(rec)
            finished.append(rec)
        bar.close()
        return finished
    finally:
        ex.close()


# --------------------------------------------------------------------------- Ray
class RowWorker:
    """A Ray actor: one warm Executor (ComfyUI + the pack, models kept loaded between rows)."""

    def __init__(self, index, out, threads, cache_dir, collect, queue):
        import tempfile
        self.index, self.queue = index, queue
        if collect:                    # outputs go back to the driver: work in a local folder
            out = tempfile.mkdtemp(prefix="vp2p-batch-")
            cache_dir = cache_dir or os.path.join(out, "cache")
        self.ex = Executor(out, threads, cache_dir, collect)

    def ready(self):
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def to_api(self, workflow):
        return self.ex.to_api(workflow)

    def run(self, job):
        def report(text):
            try:
                self.queue.put_nowait((self.index, os.getpid(), job["name"], text))
            except Exception:       # a full or gone queue only costs the progress display
                pass
        return self.ex.run(job, report)


def run_ray(args, workflow, rows, results) -> list[dict]:
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise SystemExit(f"error: {RAY_HINT}")
    env = {k: os.environ[k] for k in ("VP2P_COMFYUI", "COMFYUI_PATH") if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join([HERE] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ else []))
    init = {"runtime_env": {"env_vars": env}, "include_dashboard": False, "log_to_driver": args.ray_logs}
    if args.ray == "local":
        init["num_cpus"] = args.num_cpus or None
    else:
        init["address"] = args.ray
    ray.init(**init)
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        n = args.actors or gpus or max(1, int(res.get("CPU", 1)))
        per = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
        Worker = ray.remote(max_restarts=0, max_task_retries=0, **per)(RowWorker)
        queue = Queue(actor_options={"num_cpus": 0})
        cache_dir = None if args.return_outputs else (args.cache or os.path.join(args.out, "cache"))
        out = os.path.abspath(args.out)
        actors, starting, idle, running = {}, {}, [], {}
        counter = iter(range(1 << 30))

        def start_actor():
            i = next(counter)
            actors[i] = Worker.remote(i, out, args.threads, cache_dir, args.return_outputs, queue)
            starting[actors[i].ready.remote()] = i

        for _ in range(n):
            start_actor()
        workers = {}
        status_path = os.path.join(out, ".batch", "workers.json")

        def show(i, pid, name, text):
            workers[i] = {"pid": pid, "host": workers.get(i, {}).get("host"), "row": name, "stage": text}
            bar and bar.stage(i, f"{name}: {text}")
            write_bytes(json.dumps(workers).encode(), status_path)

        bar = None
        api = display = jobs = None
        pending = collections.deque()
        leaders, affinity, attempts, finished = {}, {}, collections.Counter(), []

        def finish(job, rec):
            rec["attempts"] = attempts[job["name"]] + 1
            if args.return_outputs and "files" in rec:
                for rel, data in rec.pop("files").items():
                    write_bytes(data, os.path.join(out, rel))
            results.write(rec)
            bar.finished(rec)
            finished.append(rec)
            if job["group"] is not None and leaders.get(job["group"]) == job["name"]:
                leaders[job["group"]] = None          # the group's later rows may start

        def next_job(i):
            for job in list(pending):
                lead = leaders.get(job["group"]) if job["group"] is not None else None
                if lead is not None and lead != job["name"]:
                    continue                        # wait for the row that tunes/inverts this clip
                if job["group"] is not None and affinity.get(job["group"]) not in (None, i) and \
                        args.return_outputs and affinity.get(job["group"]) in actors:
                    continue                        # its cache is on another worker
                pending.remove(job)
                return job
            return None

        while True:
            if jobs is not None and not pending and not running:
                break
            if not actors:
                raise SystemExit("error: every Ray worker failed to start (see --ray-logs)")
            refs = list(starting) + list(running)
            done, _ = ray.wait(refs, num_returns=1, timeout=0.5) if refs else ([], [])
            for ref in done:
                if ref in starting:
                    i = starting.pop(ref)
                    try:
                        info = ray.get(ref)
                    except Exception as e:
                        print(f"worker {i} failed to start: {e}", file=sys.stderr)
                        actors.pop(i, None)
                        continue
                    workers[i] = {**info, "row": None, "stage": "ready"}
                    write_bytes(json.dumps(workers).encode(), status_path)
                    if jobs is None:                 # the first warm worker converts the workflow
                        api, display = ray.get(actors[i].to_api.remote(workflow))
                        jobs, bad = make_jobs(api, rows, display, not args.no_reuse, args.set)
                        todo = [j for j in jobs if not results.done(j, args.out)]
                        bar = Bar(len(rows), len(jobs) - len(todo), args.quiet)
                        for rec in bad:
                            results.write(rec)
                            bar.finished(rec)
                            finished.append(rec)
                        pending.extend(todo)
                        for job in todo:
                            if job["group"] is not None:
                                leaders.setdefault(job["group"], job["name"])
                    idle.append(i)
                    continue
                i, job = running.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayActorError as e:     # the worker died during the row
                    actors.pop(i, None)
                    workers.pop(i, None)
                    attempts[job["name"]] += 1
                    if attempts[job["name"]] <= args.retries:
                        pending.appendleft(job)
                        print(f"worker {i} died during {job['name']}: row queued again "
                              f"(attempt {attempts[job['name']] + 1})", file=sys.stderr)
                    else:
                        finish(job, record(job["row"], job["name"], "failed", key=job["key"],
                                           error=f"the worker died {attempts[job['name']]} times during this "
                                                 f"row: {type(e).__name__}"))
                        attempts[job["name"]] -= 1
                    if pending or running:
                        start_actor()                 # keep the pool at its size
                    continue
                except ray.exceptions.RayTaskError as e:      # the worker lives; the row failed
                    rec = record(job["row"], job["name"], "failed", key=job["key"], error=str(e).split("\n")[0])
                affinity.setdefault(job["group"], i)
                finish(job, rec)
                idle.append(i)
            while jobs is not None and idle and pending:
                i = idle.pop(0)
                if i not in actors:
                    continue
                job = next_job(i)
                if job is None:
                    idle.insert(0, i)
                    break
                workers.setdefault(i, {})
                show(i, workers[i].get("pid"), job["name"], "queued")
                running[actors[i].run.remote(job)] = (i, job)
            try:
                for i, pid, name, text in queue.get_nowait_batch(queue.qsize()):
                    if i in actors:
                        show(i, pid, name, text)
            except Exception:
                pass
        if bar is not None:
            bar.close()
        return finished
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- CLI
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", help="a workflow JSON (UI or API format)")
    ap.add_argument("manifest", help="rows to run: .csv (header row) or .jsonl")
    ap.add_argument("--out", required=True, help="output folder (results.jsonl, <name>/ of each row, cache/)")
    ap.add_argument("--results", default=None, help="results file (default OUT/results.jsonl)")
    ap.add_argument("--cache", default=None, help="folder of reused tunings and inversions (default OUT/cache)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.INPUT=VALUE",
                    help="an input for every row (as run_workflow.py --set; a row's own column wins)")
    ap.add_argument("--no-reuse", action="store_true", help="tune and invert every row (no cache)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads per worker (0 = torch default)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    ray_opts = ap.add_argument_group("Ray (optional: pip install \"ray[default]\")")
    ray_opts.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                          help="run rows on Ray actors; ADDRESS of a cluster ('auto' = the one `ray start` "
                               "made here), none = a local one")
    ray_opts.add_argument("--actors", type=int, default=0,
                          help="workers (default: one per GPU, or per CPU on a CPU-only cluster)")
    ray_opts.add_argument("--num-cpus", type=int, default=0, help="CPUs of a local Ray cluster (default: all)")
    ray_opts.add_argument("--retries", type=int, default=2, help="re-runs of a row whose worker died (default 2)")
    ray_opts.add_argument("--return-outputs", action="store_true",
                          help="workers send files back to this process (OUT need not be shared)")
    ray_opts.add_argument("--ray-logs", action="store_true", help="show the workers' logs")
    args = ap.parse_args(argv)
    bad_set = [s for s in args.set if "=" not in s or "." not in s.split("=", 1)[0]]
    if bad_set:
        ap.error(f"--set expects KEY.INPUT=VALUE, got {bad_set[0]!r}")
    args.out = os.path.abspath(args.out)
    args.cache = args.cache and os.path.abspath(args.cache)
    try:
        with open(args.workflow, encoding="utf-8") as f:
            workflow = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: workflow {args.workflow}: {e}", file=sys.stderr)
        return 2
    try:
        rows = read_manifest(args.manifest)
    except OSError as e:
        print(f"error: manifest {args.manifest}: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    shutil.rmtree(os.path.join(args.out, ".staging"), ignore_errors=True)   # what killed runs left
    results = Results(args.results or os.path.join(args.out, "results.jsonl"))
    start = time.time()
    finished = (run_ray if args.ray else run_serial)(args, workflow, rows, results)
    failed = [r for r in finished if r["status"] != "ok"]
    if not args.quiet:
        print(f"{len(finished) - len(failed)} rows done, {len(failed)} failed, "
              f"{len(rows) - len(finished)} already done; {time.time() - start:.1f}s; results: {results.path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
