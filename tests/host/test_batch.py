"""The batch runner (scripts/batch.py) on toy clips (4 frames, 64 px, 2 tuning steps, 3 inversion
steps): a manifest of 4 rows (two targets of one clip, a missing clip, a second clip).

One serial run is killed (SIGKILL) after its first row and resumed; a Ray run on a local
2-CPU cluster with 2 actors has one actor killed during a row. Both must end with exactly one
result per row, the bad row reported, the shared clip tuned and inverted once, and the same
outputs (video bytes; tensors and metadata of saved tunings). The runs use one torch thread
each, so the processes compute bit-identically."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = os.path.join(REPO, "scripts", "batch.py")
sys.path.insert(0, os.path.join(REPO, "scripts"))
import batch  # noqa: E402
import comfy_host  # noqa: E402
import devkit  # noqa: E402

NAMES = ["a_green", "a_blue", "missing", "b_green"]


def _records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _command(workflow, manifest, out, *extra):
    return [sys.executable, BATCH, workflow, manifest, "--out", out, "--threads", "1", "--quiet", *extra]


def _wait(proc, until, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = until()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the batch run exited ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("batch"))
    workflow, manifest = devkit.toy_batch(os.path.join(folder, "clips"))
    return folder, workflow, manifest


@pytest.fixture(scope="module")
def serial(toy):
    """Run 1 (a subprocess) killed once its first row is recorded; run 2 resumes in this process;
    run 3 (in this process) finds everything done but the failed row."""
    folder, workflow, manifest = toy
    out = os.path.join(folder, "serial")
    results = os.path.join(out, "results.jsonl")
    proc = subprocess.Popen(_command(workflow, manifest, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait(proc, lambda: _records(results), 600, "the first row finished")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _records(results)
    rc2 = batch.main([workflow, manifest, "--out", out, "--threads", "1", "--quiet"])
    second = _records(results)[len(first):]
    rc3 = batch.main([workflow, manifest, "--out", out, "--threads", "1", "--quiet"])
    third = _records(results)[len(first) + len(second):]
    return {"out": out, "first": first, "second": second, "third": third, "rc": (rc2, rc3)}


def test_bad_row_reported_others_done_shared_clip_tuned_once(serial):
    rows = {r["name"]: r for r in serial["first"] + serial["second"]}
    assert sorted(rows) == sorted(NAMES) and len(serial["first"]) + len(serial["second"]) == 4
    bad = rows["missing"]
    assert bad["status"] == "failed" and bad["outputs"] == []
    assert "Load Video (VP2P)" in bad["error"] and "does not exist" in bad["error"]
    for name in ("a_green", "a_blue", "b_green"):
        rec = rows[name]
        assert rec["status"] == "ok", rec
        videos = [p for p in rec["outputs"] if p.endswith(".mp4")]
        assert videos == [f"{name}/video_p2p/toy_word_swap_00001_.mp4"]
        assert all(os.path.getsize(os.path.join(serial["out"], p)) > 0 for p in rec["outputs"])
    # the second target of clip a reloads clip a's tuning and inversion; the others compute theirs
    assert rows["a_blue"]["reused"] == {"tuning": True, "inversion": True}
    assert rows["a_green"]["reused"] == rows["b_green"]["reused"] == {"tuning": False, "inversion": False}
    cached = sorted(f.split("_")[0] for f in os.listdir(os.path.join(serial["out"], "cache")))
    assert cached == ["inversion", "inversion", "tuning", "tuning"]
    assert serial["rc"] == (1, 1)          # a failed row makes the exit status 1


def test_killed_run_resumes_with_the_remaining_rows_only(serial):
    done_first = [r["name"] for r in serial["first"]]
    assert 1 <= len(done_first) < 4
    assert sorted(r["name"] for r in serial["second"]) == sorted(set(NAMES) - set(done_first))
    # a third run skips every row done with the same content key; only the failed row runs again
    assert [r["name"] for r in serial["third"]] == ["missing"]
    assert not os.listdir(os.path.join(serial["out"], ".staging"))   # nothing half-written left


def test_content_key_follows_the_input_bytes(toy, tmp_path):
    folder, workflow, _ = toy
    with open(workflow) as f:
        api = json.load(f)
    clip = os.path.join(folder, "clips", "clip_a")
    row = {"name": "x", "video": clip, "source": "a red circle", "target": "a blue circle"}
    key = batch.content_key(batch.row_prompt(api, row, {}))
    assert batch.content_key(batch.row_prompt(api, dict(row), {})) == key
    assert batch.content_key(batch.row_prompt(api, {**row, "target": "a green circle"}, {})) != key
    copy = tmp_path / "clip"
    copy.mkdir()
    for f in sorted(os.listdir(clip)):
        with open(os.path.join(clip, f), "rb") as src:
            (copy / f).write_bytes(src.read())
    k1 = batch.content_key(batch.row_prompt(api, {**row, "video": str(copy)}, {}))
    (copy / "000.png").write_bytes((copy / "001.png").read_bytes())
    assert batch.content_key(batch.row_prompt(api, {**row, "video": str(copy)}, {})) != k1
    with pytest.raises(batch.RowError, match="no|exactly one"):
        batch.row_prompt(api, {**row, "Nope.steps": "3"}, {})


def test_ray_two_actors_one_killed_same_outputs(toy, serial):
    pytest.importorskip("ray", reason='ray is installed by scripts/setup_host.sh (pip install "ray[default]")')
    folder, workflow, manifest = toy
    out = os.path.join(folder, "ray")
    status = os.path.join(out, ".batch", "workers.json")

    def busy_worker():
        try:
            with open(status) as f:
                workers = json.load(f)
        except (OSError, ValueError):
            return None
        for w in workers.values():
            if w.get("pid") and any(s in (w.get("stage") or "") for s in ("Tune On Video", "Null-Text Invert")):
                return w
        return None

    # Ray starts its workers at niceness 15: on a busy machine they would wait for every other
    # process; at 0 they run as the serial batch does
    env = {**os.environ, "RAY_worker_niceness": "0"}
    proc = subprocess.Popen(_command(workflow, manifest, out, "--ray", "--num-cpus", "2", "--actors", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        victim = _wait(proc, busy_worker, 600, "a worker in the middle of a row")
        os.kill(victim["pid"], signal.SIGKILL)
        rc = proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert rc == 1, err[-3000:]
    records = _records(os.path.join(out, "results.jsonl"))
    assert sorted(r["name"] for r in records) == sorted(NAMES), records       # exactly one per row
    rows = {r["name"]: r for r in records}
    assert rows[victim["row"]]["status"] == "ok"
    assert rows[victim["row"]]["attempts"] == 2, (victim, err[-2000:])
    assert f"died during {victim['row']}" in err
    assert rows["missing"]["status"] == "failed" and "does not exist" in rows["missing"]["error"]
    assert rows["a_blue"]["reused"] == {"tuning": True, "inversion": True}
    expected = {r["name"]: r for r in serial["first"] + serial["second"]}
    for name in ("a_green", "a_blue", "b_green"):
        assert rows[name]["outputs"] == expected[name]["outputs"]
        for rel in rows[name]["outputs"]:
            assert _content(os.path.join(out, rel)) == _content(os.path.join(serial["out"], rel)), rel


def _content(path):
    """A file's bytes; for safetensors its tensors' bytes and its metadata as a dict (the library
    writes the metadata in a per-process hash order)."""
    if not path.endswith(".safetensors"):
        with open(path, "rb") as f:
            return f.read()
    import safetensors
    with safetensors.safe_open(path, framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in sorted(f.keys())}


def test_editor_cache_hit_equals_computing(toy, outdir):
    """Tune On Video and Shared Null-Text Invert with cache on, queued twice (as the editor does):
    the second run loads both stages and edits to exactly the same frames."""
    import torch
    folder, workflow, _ = toy
    with open(workflow) as f:
        api = json.load(f)
    row = {"name": "editor", "video": os.path.join(folder, "clips", "clip_b"),
           "source": "a blue square on a striped gray background", "target": "a red square on a striped gray background"}
    prompt = batch.row_prompt(api, row, {})
    edited = next(i for i, n in prompt.items() if n.get("_meta", {}).get("title") == "Edited frames")
    cache = comfy_host.pack_module("vp2p_host.cache")
    frames, events = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # as the batch runs: cheap on a busy 2-core machine
    try:
        for _ in range(2):
            cache.events.clear()
            frames.append(comfy_host.run_prompt(prompt)[edited][0])
            events.append([(e["stage"], e["reused"]) for e in cache.events])
    finally:
        torch.set_num_threads(threads)
    assert events == [[("tuning", False), ("inversion", False)], [("tuning", True), ("inversion", True)]]
    assert all(e["file"].startswith(os.path.join(outdir, "video_p2p", "cache")) for e in cache.events)
    assert torch.equal(frames[0], frames[1])
