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


class _Published:
    """A node class as the server publishes it: the converter needs only INPUT_TYPES."""

    def __init__(self, info):
        self.info = info

    def INPUT_TYPES(self):
        return self.info["input"]


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
    classes = {name: _Published(spec) for name, spec in info.items()}
    assert workflow_api.missing_node_types(ui, classes) == [], path
    return workflow_api.ui_to_api(ui, classes)


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
    for k in saves:
        files = [f for group in hist["outputs"][k].values() if isinstance(group, list)
                 for f in group if isinstance(f, dict) and "filename" in f]
        assert files, hist["outputs"][k]
        for f in files:
            p = os.path.join(fresh_server.out_dir, f.get("subfolder", ""), f["filename"])
            assert os.path.getsize(p) > 0, p


SD15 = ["sd15_word_swap.json", "sd15_controlnet_word_swap.json"]     # need the user's weights


@pytest.mark.parametrize("name", SD15)
def test_sd15_workflow_node_types_exist(fresh_server, name):
    info = fresh_server.get_json("/object_info")
    prompt = _prompt(fresh_server, os.path.join(REPO, "workflows", name), info)
    assert {n["class_type"] for n in prompt.values()} <= set(info)
