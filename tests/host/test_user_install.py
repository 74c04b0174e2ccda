"""Installed as a user installs it: the committed pack is git-cloned into the custom_nodes/ of a
fresh copy of the host ComfyUI, its requirements.txt goes through pip, ComfyUI's main.py
starts as a subprocess, and every example workflow is converted with the node definitions the
server publishes (/object_info, what the editor sees) and queued through POST /prompt."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import comfy_host
from devkit import REPO, WORKFLOWS, scale_down

# what a user's copy of ComfyUI does not have yet (created at run time, or this test's pack); the
# run-time folders only at the top (comfy_api/input/ is code)
RUNTIME_DIRS = ("output", "temp", "user", "input")


def fresh_ignore(root):
    def ignore(folder, names):
        top = os.path.samefile(folder, root)
        return [n for n in names if n in ("__pycache__", comfy_host.PACK_DIRNAME) or (top and n in RUNTIME_DIRS)]
    return ignore


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("user_install")
    comfy = base / "ComfyUI"
    shutil.copytree(comfy_host.comfy_root(), comfy, ignore=fresh_ignore(comfy_host.comfy_root()), symlinks=True)
    assert os.path.isdir(comfy / "comfy_api" / "input") and not os.path.exists(comfy / "output")
    pack = comfy / "custom_nodes" / comfy_host.PACK_DIRNAME
    _run(["git", "clone", "-q", REPO, str(pack)])
    cons = os.path.join(comfy_host.HOST_ROOT, "constraints.txt")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pip += ["-c", cons] if os.path.exists(cons) else []
    _run(pip + ["-r", str(pack / "requirements.txt")])
    out = base / "output"
    with comfy_host.ComfyServer(root=str(comfy), log_path=str(base / "server.log"),
                                extra_args=["--output-directory", str(out)]) as srv:
        srv.pack_dir = str(pack)
        srv.out_dir = str(out)
        yield srv


def _prompt(srv, path, info):
    import workflow_api
    with open(path) as f:
        ui = json.load(f)
    classes = workflow_api.published_classes(info)
    assert workflow_api.missing_node_types(ui, classes) == [], path
    return workflow_api.ui_to_api(ui, classes)


def assert_saved_files(server, hist, saves):
    """Every save node of the prompt reported files, and each is on disk and not empty."""
    for k in saves:
        files = [f for group in hist["outputs"][k].values() if isinstance(group, list)
                 for f in group if isinstance(f, dict) and "filename" in f]
        assert files, hist["outputs"][k]
        for f in files:
            p = os.path.join(server.out_dir, f.get("subfolder", ""), f["filename"])
            assert os.path.getsize(p) > 0, p


def test_the_clone_is_what_the_server_loaded(fresh_server):
    info = fresh_server.get_json("/object_info")
    for name in comfy_host.PACK_NODES:
        assert name in info, name
        assert info[name]["python_module"].startswith("custom_nodes."), info[name]["python_module"]
    assert "SaveVideo" in info and "SamplerCustomAdvanced" in info       # the copy is a whole ComfyUI
    assert info["VP2PDecoupledGuider"]["output"] == ["GUIDER"] and info["VP2PDecoupledGuider"]["experimental"]
    assert os.path.isfile(os.path.join(fresh_server.pack_dir, "models", "toy_world", "toy_world_sd1.safetensors"))


# toy_reuse_saved loads what toy_word_swap saved: keep the order
TOY = ["toy_word_swap.json", "toy_refine_local_blend.json", "toy_reweight.json", "toy_fast_mode.json",
       "toy_reuse_saved.json", "toy_two_objects.json", "toy_long_clip.json"]
# the long clip's 192 frames are cut here (its full length ran once: docs/long_clips.md)
LONG_CLIP_FRAMES = 24


def test_every_workflow_is_covered():
    assert sorted(TOY + SD15) == sorted(os.path.basename(p) for p in WORKFLOWS)


@pytest.mark.parametrize("name", TOY)
def test_toy_workflow_through_the_http_api(fresh_server, name):
    info = fresh_server.get_json("/object_info")
    prompt = _prompt(fresh_server, os.path.join(REPO, "workflows", name), info)
    if name != "toy_reuse_saved.json":     # it loads full-size files by name: run it as shipped
        scale_down(prompt)
    for n in prompt.values():
        if n["class_type"] == "VP2PToyWorldVideo" and name == "toy_long_clip.json":
            n["inputs"]["frames"] = LONG_CLIP_FRAMES
    hist = fresh_server.run(prompt, timeout=900)
    assert hist["status"]["status_str"] == "success", hist["status"]
    saves = [k for k, n in prompt.items() if n["class_type"] == "VP2PSaveVideo"]
    assert saves
    assert_saved_files(fresh_server, hist, saves)


# every SD1.5 example, run on random-initialised files of SD1.5's exact architecture (built once,
# cached under .cache/sd15 of the repository) at 64x64, 2 frames, 1 tuning step, 2 sampling steps
SD15 = sorted(os.path.basename(p) for p in WORKFLOWS if os.path.basename(p).startswith("sd15_"))
SD15_CACHE = os.path.join(REPO, ".cache", "sd15")


@pytest.fixture(scope="module")
def sd15_files(fresh_server, tmp_path_factory):
    """The random SD1.5 checkpoint and ControlNet in the fresh copy's models/ folders (where a user
    puts theirs), and a 2-frame 64x64 clip (an image folder) for Load Video (VP2P)."""
    import numpy as np
    from PIL import Image
    from vp2p_dev import sd15_random
    files = sd15_random.ensure(SD15_CACHE)
    models = os.path.join(os.path.dirname(os.path.dirname(fresh_server.pack_dir)), "models")
    for kind, key in (("checkpoints", "checkpoint"), ("controlnet", "controlnet")):
        link = os.path.join(models, kind, os.path.basename(files[key]))
        if not os.path.exists(link):
            os.symlink(files[key], link)
    clip = tmp_path_factory.mktemp("sd15_clip")
    yy, xx = np.mgrid[0:64, 0:64]
    for f in range(2):       # a bright disc moving right over a gradient: edges for Canny
        disc = ((xx - 24 - 8 * f) ** 2 + (yy - 32) ** 2 < 12 ** 2)
        img = np.stack([xx * 3, yy * 3, np.full_like(xx, 90)], -1).astype(np.uint8)
        img[disc] = 255
        Image.fromarray(img).save(clip / f"frame_{f:03}.png")
    return {"checkpoint": sd15_random.CKPT_NAME, "controlnet": sd15_random.CONTROLNET_NAME, "clip": str(clip)}


def _ancestors(prompt, ids):
    seen, todo = set(), list(ids)
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo += [v[0] for v in prompt[i]["inputs"].values() if isinstance(v, list) and len(v) == 2]
    return seen


def test_sd15_workflows_are_found():
    assert {"sd15_word_swap.json", "sd15_controlnet_word_swap.json"} <= set(SD15)


@pytest.mark.parametrize("name", SD15)
def test_sd15_workflow_through_the_http_api(fresh_server, sd15_files, name):
    """The shipped SD1.5 workflow, as a user queues it, with core's Load Checkpoint / ControlNet
    loader / Canny / VAE on SD1.5-architecture files: only the files, the clip size and the step
    counts are changed (the JSON keeps 512 px, 300 tuning steps, 50 steps)."""
    info = fresh_server.get_json("/object_info")
    prompt = _prompt(fresh_server, os.path.join(REPO, "workflows", name), info)
    for n in prompt.values():
        if n["class_type"] == "CheckpointLoaderSimple":
            n["inputs"]["ckpt_name"] = sd15_files["checkpoint"]
        elif n["class_type"] == "ControlNetLoader":
            n["inputs"]["control_net_name"] = sd15_files["controlnet"]
        elif n["class_type"] == "VP2PLoadVideo":
            n["inputs"].update(path=sd15_files["clip"], frame_count=2, width=64, height=64)
    for n in prompt.values():       # long-clip workflows: windows of 2 frames (1 shared) over 3 frames
        if n["class_type"] == "ContextWindowsManual":
            n["inputs"].update(context_length=2, context_overlap=1)
            for v in prompt.values():
                if v["class_type"] == "VP2PLoadVideo":
                    v["inputs"]["frame_count"] = 3
    # SD1.5's UNet on a CPU: one tuning step and two sampling steps exercise every stage
    scale_down(prompt, ["VP2PTuneOnVideo.steps=1", "VP2PSharedNullTextInvert.steps=2"])
    outputs = [k for k, n in prompt.items() if info[n["class_type"]].get("output_node")]
    # no node is left out of the run: every node feeds an output, so the executor runs all of them
    assert _ancestors(prompt, outputs) == set(prompt), set(prompt) - _ancestors(prompt, outputs)
    hist = fresh_server.run(prompt, timeout=900)
    assert hist["status"]["status_str"] == "success", hist["status"]
    assert hist["status"].get("completed", True)
    events = [m[0] for m in hist["status"].get("messages", [])]
    assert "execution_success" in events and "execution_interrupted" not in events, events
    saves = [k for k, n in prompt.items() if n["class_type"] in ("VP2PSaveVideo", "SaveImage")]
    assert saves
    assert_saved_files(fresh_server, hist, saves)
    tuned = [n["inputs"]["save_name"] for n in prompt.values()
             if n["class_type"] == "VP2PTuneOnVideo" and n["inputs"].get("save_name")]
    for save_name in tuned:         # the tuning of the full-size UNet was written
        import glob
        assert glob.glob(os.path.join(fresh_server.out_dir, "video_p2p", f"{save_name}_*.safetensors")), save_name
