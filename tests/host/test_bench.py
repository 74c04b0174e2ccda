"""The benchmark CLIs run (on a user's case file) and write what the README reports."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "bench", script), *args], capture_output=True,
                          text=True, timeout=900)


def test_quality_bench_on_a_user_case_file(tmp_path):
    cases = {"defaults": {"steps": 3, "inner_iterations": 2, "tune_steps": 2},
             "cases": [{"name": "mine", "target": "a blue square on a striped gray background",
                        "blend_words": "square",
                        "world": {"shape": "square", "colour": "red", "background": "striped",
                                  "background_colour": "gray", "frames": 2, "start": [0.4, 0.5],
                                  "end": [0.6, 0.5], "scale": [0.22, 0.22], "seed": 3}}]}
    path, out = tmp_path / "cases.json", tmp_path / "q.json"
    path.write_text(json.dumps(cases))
    variants = ["video-p2p", "direct-inversion", "no-local-blend", "ddim+target"]
    r = run("quality.py", "--cases", str(path), "--out", str(out), "--threads", "1", "--variants", *variants,
            "--set", "cross_replace=0.5")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d["overrides"] == {"cross_replace": 0.5} and d["cases"][0]["cross_replace"] == 0.5
    assert "cases from `" in d["markdown"] and "` with cross_replace=0.5 in every case" in d["markdown"]
    res = d["results"]["mine"]
    assert list(res) == variants
    for v in variants:
        m = res[v]
        assert 5 < m["recon_psnr"] < 60 and 0 <= m["edit_success"] <= 1 and m["seconds"] > 0
        assert f"| {v} |" in d["markdown"]
    # direct inversion's source branch is the input latent itself: nothing reconstructs better
    assert res["direct-inversion"]["recon_psnr"] >= res["video-p2p"]["recon_psnr"]
    assert res["direct-inversion"]["invert_seconds"] < res["video-p2p"]["invert_seconds"]
    # the ablation is really a different edit: the blend keeps the source outside the object
    assert res["video-p2p"]["bg_psnr"] != res["no-local-blend"]["bg_psnr"]
    # --report merges runs of other variants on the same cases into one set of tables
    other = tmp_path / "q2.json"
    other.write_text(json.dumps(dict(d, results={"mine": {"fast": res["ddim+target"]}})))
    r = run("quality.py", "--report", str(out), str(other), "--ref", "direct-inversion")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| fast |" in r.stdout and "| video-p2p |" in r.stdout and "| direct-inversion minus |" in r.stdout


def test_flicker_split_on_a_user_case_file(tmp_path):
    cases = {"defaults": {"steps": 3, "tune_steps": 2},
             "cases": [{"name": "mine", "target": "a blue circle on a striped gray background", "blend_words": "circle",
                        "world": {"shape": "circle", "colour": "red", "background": "striped",
                                  "background_colour": "gray", "frames": 3, "start": [0.3, 0.5],
                                  "end": [0.6, 0.5], "scale": [0.22, 0.22], "seed": 4}},
                       {"name": "no-blend", "target": "a blue circle on a striped gray background",
                        "world": {"shape": "circle", "colour": "red", "frames": 2}}]}
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    r = run("flicker_split.py", "--cases", str(path), "--threads", "1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "no-blend                 skipped" in r.stdout and "mean over 1 cases" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("mine"))
    share = float(line.split("background inside")[1])
    assert 0.0 < share < 1.0        # the mask really split the background


def test_target_t2i_on_a_user_case_file(tmp_path):
    one = {"shape": "circle", "colour": "red", "frames": 2}
    two = dict(one, second={"shape": "square", "colour": "blue", "start": [0.75, 0.75], "end": [0.7, 0.7]})
    cases = {"defaults": {"steps": 3},
             "cases": [{"name": "one", "target": "a blue circle on a striped gray background", "world": one},
                       {"name": "two", "target": "a red circle and a green square on a striped gray background",
                        "world": two}]}
    path, run_file = tmp_path / "cases.json", tmp_path / "q.json"
    path.write_text(json.dumps(cases))
    run_file.write_text(json.dumps({"results": {"one": {"direct-inversion": {"edit_success": 0.375}}}}))
    r = run("target_t2i.py", "--cases", str(path), "--samples", "2", "--threads", "1", "--against", str(run_file))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    lines = {x.split()[0]: x for x in r.stdout.splitlines() if " target t2i " in x and not x.startswith("mean")}
    assert set(lines) == {"one", "two"}
    for line in lines.values():
        assert float(line.split("target t2i")[1].split()[0]) in (0.0, 0.5, 1.0)     # 2 samples each
    assert "edit success 0.38" in lines["one"] and "edit success" not in lines["two"]
    assert "mean over 2 cases" in r.stdout


def test_tune_fit_on_a_user_case_file(tmp_path):
    """The rates pair up on the same seeded draws: a rate too small to move the weights gives the
    untuned losses (to the printed digits), a large one changes them."""
    cases = {"defaults": {"tune_steps": 4},
             "cases": [{"name": "mine", "target": "a blue circle on a striped gray background",
                        "world": {"shape": "circle", "colour": "red", "frames": 2}}]}
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    r = run("tune_fit.py", "--cases", str(path), "--lrs", "1e-11", "1e-2", "--threads", "1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert any(x.startswith("mine ") and " 4 steps " in x for x in r.stdout.splitlines()), r.stdout
    ratio = {x.split()[1].rstrip(":"): float(x.split()[3].rstrip("x")) for x in r.stdout.splitlines()
             if x.startswith("lr ")}
    assert ratio["1e-11"] == 1.0 and ratio["0.01"] != 1.0, r.stdout


def test_quality_bench_rejects_a_case_without_target(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"cases": [{"name": "x", "world": {"shape": "circle"}}]}))
    r = run("quality.py", "--cases", str(path), "--out", str(tmp_path / "q.json"))
    assert r.returncode != 0 and "'world' and 'target' are required" in r.stdout + r.stderr
    path.write_text(json.dumps({"cases": [{"name": "x", "world": {"shape": "circle"}, "target": "a red circle"}]}))
    r = run("quality.py", "--cases", str(path), "--set", "cross_replac=0.8")   # a typo sweeps nothing: refused
    assert r.returncode != 0 and "--set 'cross_replac=0.8': use KEY=VALUE with a case field" in r.stdout + r.stderr


@pytest.mark.parametrize("script, expect", [
    ("perf.py --quick", ["control overhead", "s/frame", "null-text / ddim-cfg time", "all benchmarks:"]),
    ("gpu_sd15.py --tiny --steps 3 --tune-steps 1 --inner 2 --frames 2 --precision fp32", ["tune s/step", "     2  fp32"]),
])
def test_perf_benchmarks_run(script, expect):
    name, *args = script.split()
    r = run(name, *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for e in expect:
        assert e in r.stdout, (e, r.stdout[-2000:])


def test_memory_model_matches_the_allocator(tmp_path):
    """bench/memory.py's estimate (fake tensors, no allocation) against the peak that torch's CPU
    allocator reports for the same Decoupled Sampler step on real tensors, at a tiny size."""
    out = tmp_path / "val.txt"
    r = run("memory.py", "--validate", "--frames", "2", "--size", "64", "--stages", "sampler step (frame control)",
            "--out", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (row,) = [ln for ln in out.read_text().splitlines() if ln.startswith("| sampler step")]
    est, real, err = row.strip("|").split("|")[2:5]
    assert float(real) > 100 and abs(float(err.strip().rstrip("%"))) < 5.0, row
