"""A long clip through the HTTP API of a user-style install: the example workflow
workflows/toy_long_clip.json as shipped (192 frames, its own tuning and sampling steps), queued on a
ComfyUI server started as a user starts it.

As tests/host/test_user_install.py does (which cuts this workflow to a few frames): a fresh copy of
the host ComfyUI (VP2P_COMFYUI selects 0.3.75 or 0.3.52) with the committed pack git-cloned into its
custom_nodes/ and its requirements.txt installed through pip; ComfyUI's main.py as a subprocess;
the workflow converted with the node definitions the server publishes (/object_info) and queued
through POST /prompt. Then it checks that the run succeeded, that every save node wrote non-empty
files, and that the saved edit has the workflow's frame count (the image sequence of SaveImage and
the frames of the mp4), and prints the wall time and the server's CPU time (its process time, all
threads).

    VP2P_COMFYUI=0.3.52 python bench/long_clip_http.py [--workflow PATH] [--threads 1] [--out FILE]

--out appends the result lines to FILE (one block per run).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import _common

REPO = _common.REPO
RUNTIME_DIRS = ("output", "temp", "user", "input")     # what a user's fresh copy of ComfyUI lacks


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return res


def user_install(base, comfy_host):
    """A fresh ComfyUI copy under `base` with the committed pack cloned into it -> its root."""
    src = comfy_host.comfy_root()
    comfy = os.path.join(base, "ComfyUI")

    def ignore(folder, names):
        top = os.path.samefile(folder, src)
        return [n for n in names if n in ("__pycache__", comfy_host.PACK_DIRNAME) or (top and n in RUNTIME_DIRS)]
    shutil.copytree(src, comfy, ignore=ignore, symlinks=True)
    pack = os.path.join(comfy, "custom_nodes", comfy_host.PACK_DIRNAME)
    _run(["git", "clone", "-q", REPO, pack])
    cons = os.path.join(comfy_host.HOST_ROOT, "constraints.txt")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pip += ["-c", cons] if os.path.exists(cons) else []
    _run(pip + ["-r", os.path.join(pack, "requirements.txt")])
    return comfy


def comfy_version(root):
    try:
        with open(os.path.join(root, "comfyui_version.py")) as f:
            return f.read().split('"')[1]
    except (OSError, IndexError):
        return "unknown"


def saved_files(out_dir, entry):
    """[(path, file dict)] of one node's history output."""
    return [(os.path.join(out_dir, f.get("subfolder", ""), f["filename"]), f) for group in entry.values()
            if isinstance(group, list) for f in group if isinstance(f, dict) and "filename" in f]


def video_frames(path):
    import av
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workflow", default=os.path.join(REPO, "workflows", "toy_long_clip.json"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server (OMP_NUM_THREADS)")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds to wait for the prompt")
    ap.add_argument("--out", help="append the result lines to this file")
    args = ap.parse_args()
    args.workflow = os.path.abspath(args.workflow)
    args.out = args.out and os.path.abspath(args.out)

    import psutil
    import torch
    torch.set_num_threads(args.threads)          # ComfyServer passes this process's count to the server
    from vp2p_dev import comfy_host, workflow_api

    base = tempfile.mkdtemp(prefix="vp2p_long_http_")
    t = time.perf_counter()
    comfy = user_install(base, comfy_host)
    install_s = time.perf_counter() - t
    out_dir = os.path.join(base, "output")
    with open(args.workflow) as f:
        ui = json.load(f)
    t = time.perf_counter()
    with comfy_host.ComfyServer(root=comfy, log_path=os.path.join(base, "server.log"),
                                extra_args=["--output-directory", out_dir]) as srv:
        start_s = time.perf_counter() - t
        info = srv.get_json("/object_info")
        classes = workflow_api.published_classes(info)
        missing = workflow_api.missing_node_types(ui, classes)
        if missing:
            raise SystemExit(f"the server lacks node types {missing}")
        prompt = workflow_api.ui_to_api(ui, classes)
        frames = [n["inputs"]["frames"] for n in prompt.values() if n["class_type"] == "VP2PToyWorldVideo"]
        assert len(frames) == 1, frames
        frames = frames[0]
        proc = psutil.Process(srv.proc.pid)
        c0 = proc.cpu_times()
        t = time.perf_counter()
        hist = srv.run(prompt, timeout=args.timeout)
        wall = time.perf_counter() - t
        c1 = proc.cpu_times()
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        rss_peak = None
        try:
            with open(f"/proc/{srv.proc.pid}/status") as f:
                rss_peak = next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmHWM:"))
        except (OSError, StopIteration):
            pass
    status = hist["status"]["status_str"]
    checks = []
    for k, n in prompt.items():
        if n["class_type"] not in ("VP2PSaveVideo", "SaveImage"):
            continue
        files = saved_files(out_dir, hist["outputs"].get(k, {}))
        assert files, (k, n["class_type"], hist["outputs"].get(k))
        for p, _ in files:
            assert os.path.getsize(p) > 0, p
        if n["class_type"] == "SaveImage":
            got = len(files)
            checks.append(f"SaveImage {n['inputs']['filename_prefix']}: {got} images")
            assert got == frames, (got, frames)
        elif n["inputs"].get("format") == "mp4":
            got = video_frames(files[0][0])
            checks.append(f"VP2PSaveVideo {n['inputs']['filename_prefix']}.mp4: {got} frames")
            assert got == frames, (got, frames)
        else:
            checks.append(f"VP2PSaveVideo {n['inputs']['filename_prefix']}: {len(files)} file(s)")
    steps = {n["class_type"]: {k: v for k, v in n["inputs"].items() if k in ("steps", "context_length",
                                                                            "context_overlap")}
             for n in prompt.values() if n["class_type"] in ("VP2PTuneOnVideo", "VP2PSharedNullTextInvert",
                                                             "ContextWindowsManual")}
    lines = [f"ComfyUI {comfy_version(comfy)} ({comfy_host.leg()} host), {os.path.relpath(args.workflow, REPO)} "
             f"through POST /prompt on a user-style install, {args.threads} torch thread(s), "
             f"a 2-core CPU shared with other jobs",
             f"  settings: {frames} frames; " + "; ".join(f"{k} {v}" for k, v in steps.items()),
             f"  status: {status}; " + "; ".join(checks),
             f"  prompt wall {wall:.0f} s, server CPU {cpu:.0f} s"
             + (f", server peak RSS {rss_peak:.0f} MB" if rss_peak else "")
             + f" (install {install_s:.0f} s, server start {start_s:.0f} s)"]
    print("\n".join(lines), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n\n")
    shutil.rmtree(base, ignore_errors=True)
    if status != "success":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
