"""Toy-world nodes: a procedural test video with known truth, and its pixel oracle. The
embedded toy model (models/toy_world/) is registered by nodes/small_checkpoint.py under the
pack's own model folder kind, so only "Load Small SD1.x Checkpoint (VP2P)" lists it."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..vp2p_toy import oracle, world
from .unet_runner import fail

VIDEO_NODE = "Toy World Video (VP2P)"
ORACLE_NODE = "Toy World Oracle (VP2P)"


class VP2PToyWorldVideo:
    """Renders a toy-world video: one object moving over a textured background."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "shape": (list(world.SHAPES), {"tooltip": "The object's shape."}),
            "colour": (list(world.COLOURS), {"tooltip": "The object's colour."}),
            "background": (list(world.BACKGROUNDS), {"tooltip": "The background texture."}),
            "background_colour": (list(world.BG_COLOURS), {"tooltip": "The background colour."}),
            "frames": ("INT", {"default": 8, "min": 1, "max": 256}),
            "size": ("INT", {"default": 64, "min": 32, "max": 512, "step": 8, "tooltip":
                "Frame size in pixels (the toy model was trained at 64)."}),
            "start_x": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01}),
            "start_y": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            "end_x": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01}),
            "end_y": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            "radius": ("FLOAT", {"default": 0.22, "min": 0.05, "max": 0.45, "step": 0.01, "tooltip":
                "Object radius as a fraction of the frame size."}),
            "end_radius": ("FLOAT", {"default": 0.22, "min": 0.05, "max": 0.45, "step": 0.01}),
            "texture_seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1}),
        }}

    RETURN_TYPES = ("IMAGE", "STRING", "MASK", "STRING")
    RETURN_NAMES = ("frames", "caption", "object_mask", "spec_json")
    FUNCTION = "render"
    CATEGORY = "video-p2p/toy world"
    DESCRIPTION = "A procedural test video with known truth (object mask, colour, shape, motion)."

    def render(self, shape, colour, background, background_colour, frames, size, start_x, start_y, end_x, end_y,
               radius, end_radius, texture_seed):
        try:
            spec = world.WorldSpec(shape=shape, colour=colour, background=background,
                                   background_colour=background_colour, frames=frames, size=size,
                                   start=(start_x, start_y), end=(end_x, end_y), scale=(radius, end_radius),
                                   seed=texture_seed).check()
        except ValueError as e:
            fail(VIDEO_NODE, str(e))
        video, truth = world.render(spec)
        images = torch.from_numpy(video.astype(np.float32) / 255.0)
        masks = torch.from_numpy(truth["masks"].astype(np.float32))
        return (images, spec.caption, masks, world.spec_json(spec))


class VP2PToyWorldOracle:
    """Reads each frame's object colour and shape from pixels (for toy-world checks)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    FUNCTION = "judge"
    OUTPUT_NODE = True
    CATEGORY = "video-p2p/toy world"
    DESCRIPTION = "Per-frame colour and shape of the toy-world object, read from the pixels."

    def judge(self, images):
        if images.ndim != 4 or images.shape[0] == 0:
            fail(ORACLE_NODE, "expects an IMAGE batch [frames, H, W, 3].")
        frames = (images[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
        rows = [{k: v for k, v in oracle.classify(f).items() if k in ("colour", "shape", "centre")} for f in frames]
        report = json.dumps(rows)
        lines = [f"{i}: {r['colour']} {r['shape']}" for i, r in enumerate(rows)]
        return {"ui": {"text": lines}, "result": (report,)}


NODE_CLASS_MAPPINGS = {"VP2PToyWorldVideo": VP2PToyWorldVideo, "VP2PToyWorldOracle": VP2PToyWorldOracle}
NODE_DISPLAY_NAME_MAPPINGS = {"VP2PToyWorldVideo": VIDEO_NODE, "VP2PToyWorldOracle": ORACLE_NODE}
