"""Every example workflow: loads with no missing node types, converts from the editor's format
and runs through ComfyUI's executor (expensive settings scaled down here only). Each
also runs through the HTTP server of a user-style install in tests/host/test_user_install.py."""
import json
import os

import numpy as np
import pytest
import torch

import comfy_host

from devkit import OLD_WORKFLOWS, REPO, WORKFLOWS, api_of, scale_down


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    import folder_paths
    d = str(tmp_path_factory.mktemp("wf_out"))
    old = folder_paths.get_output_directory()
    folder_paths.set_output_directory(d)
    yield d
    folder_paths.set_output_directory(old)


def test_there_are_workflows_with_notes():
    names = {os.path.basename(p) for p in WORKFLOWS}
    assert {"toy_word_swap.json", "sd15_word_swap.json", "toy_refine_local_blend.json", "toy_reweight.json",
            "toy_fast_mode.json", "toy_reuse_saved.json"} <= names
    for p in WORKFLOWS:
        ui = json.load(open(p))
        notes = [n for n in ui["nodes"] if n["type"] == "Note"]
        assert notes and len(notes[0]["widgets_values"][0]) > 80, p


def test_ui_conversion_matches_the_generator(host):
    """Round trip: the editor-format file converts back to the widget values it was written with."""
    api = api_of(os.path.join(REPO, "workflows", "toy_word_swap.json"))
    ctrl = next(n for n in api.values() if n["class_type"] == "VP2PController")
    assert ctrl["inputs"]["target_text"] == "a green circle on a striped gray background"
    assert ctrl["inputs"]["cross_replace"] == 0.2 and ctrl["inputs"]["clip"][1] == 1
    tune = next(n for n in api.values() if n["class_type"] == "VP2PTuneOnVideo")
    assert tune["inputs"]["seed"] == 33 and tune["inputs"]["steps"] == 100   # control_after_generate skipped


@pytest.mark.parametrize("name", ["toy_word_swap.json", "toy_refine_local_blend.json", "toy_reweight.json",
                                  "toy_fast_mode.json"])
def test_toy_workflow_runs(name, outdir):
    prompt = scale_down(api_of(os.path.join(REPO, "workflows", name)))
    out = comfy_host.run_prompt(prompt)
    saved = [v[0] for k, v in out.items() if k != "_ui" and prompt[k]["class_type"] == "VP2PSaveVideo"]
    assert saved and all(os.path.getsize(p) > 0 for p in saved)
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "VP2PDecoupledSampler")
    edited, source, maps = out[sampler]
    assert edited["samples"].shape == (8, 4, 8, 8) and maps.shape[0] == 8


@pytest.mark.parametrize("path", OLD_WORKFLOWS, ids=os.path.basename)
def test_workflow_saved_by_the_old_version_runs(path, outdir):
    """A workflow file as the pack wrote it before its nodes moved to the three-floor layout
    (tests/data/old_*.json, never regenerated) loads and runs with the same node ids, inputs,
    output order and option values."""
    assert OLD_WORKFLOWS
    prompt = scale_down(api_of(path))
    out = comfy_host.run_prompt(prompt)
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "VP2PDecoupledSampler")
    edited, source, maps = out[sampler]
    assert edited["samples"].shape[0] == 8 and not torch.equal(edited["samples"], source["samples"])
    saved = [v[0] for k, v in out.items() if k != "_ui" and prompt[k]["class_type"] == "VP2PSaveVideo"]
    assert saved and all(os.path.getsize(p) > 0 for p in saved)


def test_reuse_saved_workflow_after_the_swap(outdir):
    """The swap workflow (run above in this output folder) saved a tuning and an inversion; the
    reuse workflow loads them by the names it ships with and edits two targets."""
    wf = os.path.join(REPO, "workflows", "toy_reuse_saved.json")
    import folder_paths
    files = os.listdir(os.path.join(folder_paths.get_output_directory(), "video_p2p"))
    if "toy_swap_00001_.safetensors" not in files:      # run alone: make the files first
        comfy_host.run_prompt(scale_down(api_of(os.path.join(REPO, "workflows", "toy_word_swap.json"))))
    prompt = api_of(wf)
    out = comfy_host.run_prompt(prompt)
    saved = [v[0] for k, v in out.items() if k != "_ui" and prompt[k]["class_type"] == "VP2PSaveVideo"]
    assert len(saved) == 2


def test_sd15_workflow_on_the_tiny_model(tiny_ckpt, outdir, tmp_path):
    """The SD1.5 workflow with a tiny checkpoint and a generated video file in place of the user's."""
    import cv2
    video = str(tmp_path / "clip.mp4")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (96, 80))
    for i in range(10):
        f = np.full((80, 96, 3), 30 * (i % 8), np.uint8)
        f[20:50, 10 + 5 * i:40 + 5 * i] = (0, 200, 255)
        w.write(f)
    w.release()
    prompt = api_of(os.path.join(REPO, "workflows", "sd15_word_swap.json"))
    ck = next(k for k, n in prompt.items() if n["class_type"] == "CheckpointLoaderSimple")
    prompt[ck] = {"class_type": "VP2PLoadSmallCheckpoint", "inputs": {"ckpt_name": tiny_ckpt}}
    scale_down(prompt, ["VP2PLoadVideo.path=" + json.dumps(video), "VP2PLoadVideo.width=64",
                        "VP2PLoadVideo.height=64", "VP2PLoadVideo.frame_count=4"])
    out = comfy_host.run_prompt(prompt)
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "VP2PDecoupledSampler")
    assert out[sampler][0]["samples"].shape == (4, 4, 8, 8)
