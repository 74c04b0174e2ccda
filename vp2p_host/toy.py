"""The toy world (vp2p_toy) in ComfyUI's types: a scene rendered as IMAGE and MASK batches, and
frames of an IMAGE read back by the pixel oracle."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..vp2p_toy import oracle, world
from .checks import fail


def render_video(shape, colour, background, background_colour, frames, size, start, end, radius, rotation,
                 texture_seed, second=None):
    """-> (IMAGE [F,H,W,3], caption, object MASK [F,H,W], scene JSON, second object's MASK).
    start/end: the object's centre (x, y) as fractions; radius/rotation: (first, last frame);
    second: None or a dict of world.ObjectSpec's fields (shape, colour, start, end, scale)."""
    try:
        spec = world.WorldSpec(shape=shape, colour=colour, background=background,
                               background_colour=background_colour, frames=frames, size=size, start=tuple(start),
                               end=tuple(end), scale=tuple(radius), rotation=tuple(rotation), seed=texture_seed,
                               second=None if second is None else world.ObjectSpec(**second)).check()
    except ValueError as e:
        fail(str(e))
    video, truth = world.render(spec)
    images = torch.from_numpy(video.astype(np.float32) / 255.0)
    objs = truth["objects"]
    masks = torch.from_numpy(objs[0]["masks"].astype(np.float32))
    second_mask = torch.from_numpy(objs[1]["masks"].astype(np.float32)) if len(objs) > 1 else torch.zeros_like(masks)
    return images, spec.caption, masks, world.spec_json(spec), second_mask


def read_frames(images) -> tuple[str, list]:
    """IMAGE [F,H,W,C] -> (JSON report of oracle.frame_report, one text line per frame)."""
    if images.ndim != 4 or images.shape[0] == 0:
        fail("expects an IMAGE batch [frames, H, W, 3].")
    frames = (images[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
    rows = oracle.frame_report(frames)
    lines = [f"{i}: " + (", ".join(f"{o['colour']} {o['shape']}" for o in r["objects"]) or "no object")
             for i, r in enumerate(rows)]
    return json.dumps(rows), lines
