"""Toy-world nodes: Load Small SD1.x Checkpoint (VP2P), Toy World Video (VP2P), Toy World Oracle
(VP2P): the procedural world with known truth that the tests and benchmarks run on."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..vp2p_host import checkpoint
from ..vp2p_host.checks import InputError
from ..vp2p_toy import oracle, world
from ._common import named

LOADER = "Load Small SD1.x Checkpoint (VP2P)"
VIDEO = "Toy World Video (VP2P)"
ORACLE = "Toy World Oracle (VP2P)"


class VP2PLoadSmallCheckpoint:
    """Loads SD1.x-architecture checkpoints of reduced width (the embedded toy-world model)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (checkpoint.list_small_checkpoints(), {"tooltip":
            f"Files in ComfyUI's models/{checkpoint.MODEL_KIND}/ folder (and the toy model shipped with the pack). "
            "Regular SD1.5 checkpoints load with core Load Checkpoint."})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "video-p2p/loaders"

    @named(LOADER)
    def load(self, ckpt_name):
        return checkpoint.load_by_name(ckpt_name)


class VP2PToyWorldVideo:
    """Renders a toy-world video: one object moving over a textured background."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "shape": (list(world.SHAPES), {"tooltip": "The object's shape."}),
            "colour": (list(world.COLOURS), {"tooltip": "The object's colour."}),
            "background": (list(world.BACKGROUNDS), {"tooltip": "The background texture."}),
            "background_colour": (list(world.BG_COLOURS), {"tooltip": "The background colour."}),
            "frames": ("INT", {"default": 8, "min": 1, "max": 256, "tooltip": "Number of frames."}),
            "size": ("INT", {"default": 64, "min": 32, "max": 512, "step": 8, "tooltip":
                "Frame size in pixels (the toy model was trained at 64)."}),
            "start_x": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Object centre in the first frame (fraction of the width)."}),
            "start_y": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Object centre in the first frame (fraction of the height)."}),
            "end_x": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Object centre in the last frame (fraction of the width)."}),
            "end_y": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Object centre in the last frame (fraction of the height)."}),
            "radius": ("FLOAT", {"default": 0.22, "min": 0.05, "max": 0.45, "step": 0.01, "tooltip":
                "Object radius as a fraction of the frame size."}),
            "end_radius": ("FLOAT", {"default": 0.22, "min": 0.05, "max": 0.45, "step": 0.01, "tooltip": "Object radius in the last frame (it grows or shrinks linearly)."}),
            "texture_seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "Seed of the background texture."}),
        }}

    RETURN_TYPES = ("IMAGE", "STRING", "MASK", "STRING")
    RETURN_NAMES = ("frames", "caption", "object_mask", "spec_json")
    FUNCTION = "render"
    CATEGORY = "video-p2p/toy world"
    DESCRIPTION = "A procedural test video with known truth (object mask, colour, shape, motion)."

    @named(VIDEO)
    def render(self, shape, colour, background, background_colour, frames, size, start_x, start_y, end_x, end_y,
               radius, end_radius, texture_seed):
        try:
            spec = world.WorldSpec(shape=shape, colour=colour, background=background,
                                   background_colour=background_colour, frames=frames, size=size,
                                   start=(start_x, start_y), end=(end_x, end_y), scale=(radius, end_radius),
                                   seed=texture_seed).check()
        except ValueError as e:
            raise InputError(str(e)) from None
        video, truth = world.render(spec)
        images = torch.from_numpy(video.astype(np.float32) / 255.0)
        masks = torch.from_numpy(truth["masks"].astype(np.float32))
        return (images, spec.caption, masks, world.spec_json(spec))


class VP2PToyWorldOracle:
    """Reads each frame's object colour and shape from pixels (for toy-world checks)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "Frames of a toy-world video (e.g. the decoded edit)."})}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    FUNCTION = "judge"
    OUTPUT_NODE = True
    CATEGORY = "video-p2p/toy world"
    DESCRIPTION = "Per-frame colour and shape of the toy-world object, read from the pixels."

    @named(ORACLE)
    def judge(self, images):
        if images.ndim != 4 or images.shape[0] == 0:
            raise InputError("expects an IMAGE batch [frames, H, W, 3].")
        frames = (images[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
        rows = [{k: v for k, v in oracle.classify(f).items() if k in ("colour", "shape", "centre")} for f in frames]
        report = json.dumps(rows)
        lines = [f"{i}: {r['colour']} {r['shape']}" for i, r in enumerate(rows)]
        return {"ui": {"text": lines}, "result": (report,)}
