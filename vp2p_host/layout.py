"""The UNet's layout as ComfyUI names it: transformer blocks with their patch keys, the
GroupNorms the video norm replaces, the query projections tuning trains. Walks the modules a
clone would install (its own object patches, else the originals), never this pack's copies.
"""
from __future__ import annotations

import torch

import comfy.utils

from .patches import TEMPORAL_CHILD, unwrap

PREFIX = "diffusion_model."


def source_module(model, full_path):
    """What the clone would install at `full_path` without us: its own object patch, else the
    original module (even while another clone is patched in), never one of our copies."""
    obj = model.object_patches.get(full_path)
    if obj is None:
        obj = getattr(model, "object_patches_backup", {}).get(full_path)
    if obj is None:
        obj = comfy.utils.get_attr(model.model, full_path)
    return unwrap(obj)


def _children(module):
    for name, child in unwrap(module)._modules.items():
        if child is not None and name != TEMPORAL_CHILD:
            yield name, unwrap(child)


def _walk(module, prefix=""):
    for name, child in _children(module):
        path = f"{prefix}{name}"
        yield path, child
        yield from _walk(child, path + ".")


def transformer_blocks(model):
    """[(path under diffusion_model, block module, ComfyUI patch key (block, number, index))]."""
    from comfy.ldm.modules.attention import BasicTransformerBlock
    out = []
    for path, m in _walk(model.model.diffusion_model):
        if not isinstance(m, BasicTransformerBlock) or ".time_stack." in f".{path}.":
            continue
        parts = path.split(".")
        if "transformer_blocks" not in parts:
            continue
        idx = int(parts[parts.index("transformer_blocks") + 1])
        if parts[0] == "input_blocks":
            key = ("input", int(parts[1]), idx)
        elif parts[0] == "output_blocks":
            key = ("output", int(parts[1]), idx)
        elif parts[0] == "middle_block":
            key = ("middle", 0, idx)
        else:
            continue
        out.append((path, m, key))
    return out


def video_norm_paths(model):
    """ResBlock GroupNorms (in_layers.0, out_layers.0) and the output norm (out.0)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    dm = model.model.diffusion_model
    paths = []
    for path, m in _walk(dm):
        if isinstance(m, ResBlock) and type(m).__name__ == "ResBlock":
            for sub in ("in_layers.0", "out_layers.0"):
                paths.append(f"{path}.{sub}")
    paths.append("out.0")
    return [p for p in paths if isinstance(source_module(model, PREFIX + p), torch.nn.GroupNorm)]




def query_paths(blocks) -> list:
    """Module paths (under diffusion_model) of the attn1/attn2 query projections of `blocks`
    (paths of transformer blocks)."""
    return [f"{path}.{attn}.to_q" for path in blocks for attn in ("attn1", "attn2")]
