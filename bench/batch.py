"""Batch runner benchmark (scripts/batch.py, run as a user runs it) on the toy workflow
workflows/toy_word_swap.json, scaled down by --set (4 frames at 64 px, 4 tuning steps, 5
inversion steps with 2 inner iterations, one torch thread per worker):

  1. rows per minute on a local Ray cluster with 1 and with 2 actors (4 rows, 4 different
     clips: nothing to reuse), and their ratio: rows / (last row's end - first row's start),
     start-up excluded; the command's wall time (with Ray and ComfyUI start-up) beside it
  2. the time reuse saves on one clip with 3 target prompts (serial, reuse on vs --no-reuse):
     the rows' own seconds summed
  3. memory per actor: each worker's peak resident memory (the results file's peak_rss_mb)

Beside wall seconds, each row's CPU seconds (the worker process's own CPU time, which other
load on the machine barely changes) are reported.

    python bench/batch.py [--out bench/results/batch.txt]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = os.path.join(REPO, "scripts", "batch.py")
WORKFLOW = os.path.join(REPO, "workflows", "toy_word_swap.json")
SMALL = ["VP2PToyWorldVideo.frames=4", "VP2PToyWorldVideo.size=64", "VP2PTuneOnVideo.steps=4",
         "VP2PSharedNullTextInvert.steps=5", "VP2PSharedNullTextInvert.inner_iterations=2"]
BG = "on a striped gray background"


def manifest(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps({"name": name, "VP2PToyWorldVideo.colour": colour, "VP2PToyWorldVideo.shape": shape,
                                 "source": f"a {colour} {shape} {BG}", "target": f"a {target} {shape} {BG}"}) + "\n"
                     for name, colour, shape, target in rows)
    return path


def run(man, out, *extra):
    cmd = [sys.executable, BATCH, WORKFLOW, man, "--out", out, "--threads", "1", "--quiet", *extra]
    for s in SMALL:
        cmd += ["--set", s]
    # Ray starts its workers at niceness 15; at 0 they share the CPU with this machine's other
    # processes as a serial run does, so the 1- and 2-actor figures compare
    env = {**os.environ, "RAY_worker_niceness": "0"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "results.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    return wall, recs


def secs(recs):
    return ", ".join(f"{r['seconds']:.1f}" for r in recs)


def cpu(recs):
    return ", ".join(f"{r['cpu_seconds']:.1f}" for r in recs)


def rows_per_minute(recs):
    span = max(r["finished"] for r in recs) - min(r["finished"] - r["seconds"] for r in recs)
    return 60.0 * len(recs) / span


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "batch.txt"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vp2p_batch_bench_")
    lines = [f"bench/batch.py on {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "settings: " + " ".join(SMALL) + " --threads 1"]
    four = manifest(os.path.join(work, "four.jsonl"), [
        ("red_circle", "red", "circle", "green"), ("blue_square", "blue", "square", "yellow"),
        ("green_triangle", "green", "triangle", "purple"), ("yellow_circle", "yellow", "circle", "orange")])
    rates = {}
    for n in (1, 2):
        wall, recs = run(four, os.path.join(work, f"ray{n}"), "--ray", "--num-cpus", "2", "--actors", str(n))
        assert all(r["status"] == "ok" for r in recs), recs
        rates[n] = rows_per_minute(recs)
        mem = {}
        for r in recs:
            mem[r["worker"]] = max(mem.get(r["worker"], 0), r["peak_rss_mb"])
        lines.append(f"Ray, {n} actor(s): {len(recs)} rows, {rates[n]:.2f} rows/min (rows only), command wall "
                     f"{wall:.1f} s (with Ray and ComfyUI start-up); row seconds "
                     f"{secs(recs)} (CPU seconds {cpu(recs)}); peak memory per actor "
                     f"{', '.join(f'{v:.0f}' for v in mem.values())} MiB")
    lines.append(f"2 actors / 1 actor: {rates[2] / rates[1]:.2f}x rows per minute")
    three = manifest(os.path.join(work, "three.jsonl"), [
        (f"red_circle_{t}", "red", "circle", t) for t in ("green", "blue", "yellow")])
    sums = {}
    for label, extra in (("reuse", ()), ("no reuse", ("--no-reuse",))):
        wall, recs = run(three, os.path.join(work, label.replace(" ", "_")), *extra)
        sums[label] = (sum(r["seconds"] for r in recs), sum(r["cpu_seconds"] for r in recs))
        lines.append(f"one clip, 3 targets, serial, {label}: rows {secs(recs)} s, CPU {cpu(recs)} s "
                     f"(sums {sums[label][0]:.1f} s, CPU {sums[label][1]:.1f} s; reused "
                     f"{[r['reused'] for r in recs]}); command wall {wall:.1f} s")
    for k, what in ((0, "row seconds"), (1, "CPU seconds")):
        saved = sums["no reuse"][k] - sums["reuse"][k]
        lines.append(f"reuse saves {saved:.1f} of {sums['no reuse'][k]:.1f} {what} "
                     f"({100 * saved / sums['no reuse'][k]:.0f}%) on 3 targets of one clip")
    lines.append("load average (1/5/15 min) at the end: " + " ".join(f"{v:.1f}" for v in os.getloadavg()) +
                 " (other processes on the machine slow every figure)")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
