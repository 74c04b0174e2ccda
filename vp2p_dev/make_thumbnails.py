"""Thumbnails of the example workflows for ComfyUI's template browser: workflows/<name>.jpg beside
workflows/<name>.json (the editor, frontends 1.25 to 1.32, asks for
/api/workflow_templates/<pack>/<name>.jpg), made from the workflow's own output: each workflow
runs through ComfyUI's executor with its shipped settings, and the first and last frames of its
Side By Side node (else of its Save Video nodes, side by side) become the picture.

The sd15_* workflows need the user's SD1.5 checkpoint, clip (and ControlNet); for their thumbnails the
same graph runs with the shipped toy model, a rendered toy-world clip and toy prompts in their place
(and without the ControlNet branch).

    .venv/bin/python -m vp2p_dev.make_thumbnails [workflows/<name>.json ...]
"""
from __future__ import annotations

import glob
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WIDTH = 384            # thumbnail width in pixels (the template cards are about this wide)
RUN_FIRST = ["toy_word_swap.json"]     # toy_reuse_saved.json loads what this one saves
TOY_SOURCE = "a red circle on a striped gray background"
TOY_TARGET = "a green circle on a striped gray background"
TOY_WORDS = "red, green"          # the word the toy edit changes, in the source and the target


CONTROLNET_NODES = ("ControlNetLoader", "Canny", "ControlNetApplyAdvanced")


def sd15_on_toy(prompt, tmp):
    """The SD1.5 graph with the toy model, a rendered toy clip and toy prompts. No ControlNet
    weights exist for the toy model: a ControlNet branch (loader, preprocessor, apply) is left out
    and the sampler takes the controller's plain conditionings."""
    for nid in [k for k, n in prompt.items() if n["class_type"] in CONTROLNET_NODES]:
        del prompt[nid]
    for n in prompt.values():
        if n["class_type"] == "VP2PDecoupledSampler":
            n["inputs"].pop("source_conditioning", None)
            n["inputs"].pop("target_conditioning", None)
    import numpy as np
    from . import devkit as tl
    world = tl.toy.world
    vio = tl.host.video_io
    import torch
    frames = world.render(world.WorldSpec())[0]        # a red circle on a striped gray background
    clip = os.path.join(tmp, "toy_clip.mp4")
    vio.write_mp4(clip, torch.from_numpy(np.asarray(frames)).float() / 255.0, 8.0)
    for n in prompt.values():
        if n["class_type"] == "CheckpointLoaderSimple":
            n["class_type"], n["inputs"] = "VP2PLoadSmallCheckpoint", {"ckpt_name": "toy_world_sd1.safetensors"}
        elif n["class_type"] == "VP2PLoadVideo":
            n["inputs"].update(path=clip, width=64, height=64)
        elif n["class_type"] == "VP2PController":
            # the workflow's blend/reweight words name its SD1.5 objects: the toy ones instead
            n["inputs"].update(source_text=TOY_SOURCE, target_text=TOY_TARGET,
                               blend_words=TOY_WORDS if n["inputs"].get("blend_words") else "",
                               reweight_words=TOY_WORDS.split(", ")[1] if n["inputs"].get("reweight_words") else "")
        elif n["class_type"] == "VP2PTuneOnVideo":
            n["inputs"]["save_name"] = ""
    return prompt


def frames_of(prompt, out):
    import torch
    sbs = [k for k, n in prompt.items() if n["class_type"] == "VP2PSideBySide"]
    if sbs:
        return out[sbs[0]][0]
    panels = []
    for k, n in prompt.items():
        if n["class_type"] == "VP2PSaveVideo":
            src, slot = n["inputs"]["images"]
            panels.append(out[src][slot])
    return torch.cat(panels, dim=2)


def thumbnail(frames, path):
    """First frame above the last one, WIDTH pixels wide, as JPEG."""
    import numpy as np
    from PIL import Image
    f = (frames[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
    grid = np.concatenate([f[0], f[-1]], axis=0)
    h, w = grid.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(grid)).resize((WIDTH, max(1, round(h * WIDTH / w))), Image.LANCZOS)
    img.save(path, quality=90, optimize=True)


def main():
    from . import comfy_host
    comfy_host.boot()
    import folder_paths
    import nodes
    from . import workflow_api as wa
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(REPO, "workflows", "*.json")),
                                   key=lambda p: (os.path.basename(p) not in RUN_FIRST, p))
    with tempfile.TemporaryDirectory() as tmp:
        folder_paths.set_output_directory(tmp)
        for p in paths:
            with open(p) as f:
                prompt = wa.ui_to_api(json.load(f), nodes.NODE_CLASS_MAPPINGS)
            if os.path.basename(p).startswith("sd15_"):
                prompt = sd15_on_toy(prompt, tmp)
            out = comfy_host.run_prompt(prompt)
            target = os.path.splitext(p)[0] + ".jpg"
            thumbnail(frames_of(prompt, out), target)
            print(f"{os.path.relpath(target, REPO)}  ({os.path.getsize(target) // 1024} KiB)", flush=True)


if __name__ == "__main__":
    main()
