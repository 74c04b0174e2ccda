"""Inflate T2S Model: turn an SD1.x image UNet into Video-P2P's text-to-set model.

Everything is a patch on a clone (the incoming MODEL is never touched):
- frame attention: an attn1 replace patch per transformer block (queries of every frame,
  keys/values of frame 0); an attn1 replace patch already on the model is called with the
  frame-0 keys/values instead of being overridden;
- temporal attention: an object patch per BasicTransformerBlock path installing a shallow
  copy of the block (a subclass of its own class sharing all original submodules, so
  state-dict keys and LoRA weight patches are unchanged) with one extra child,
  `vp2p_temporal`, applied after the block's own forward (i.e. after the feed-forward). Once
  ComfyUI loads the clone the copies are real submodules of the model, so they are moved,
  offloaded and (lowvram) counted with it; the clone's `model_size()` includes their bytes, so
  load_models_gpu budgets for them;
- video-level norm: object patches replacing each ResBlock GroupNorm and the output norm by
  copies sharing the same weight/bias Parameters whose statistics span all frames; the frame
  count reaches them through a keyed `diffusion_model` wrapper (comfy.patcher_extension, key
  VIDEO_FRAMES_KEY), innermost of ComfyUI's model wrappers, so a model_function_wrapper or
  apply_model wrapper set by a later node cannot bypass it.
No ComfyUI class or module is modified and nothing is registered on the original modules.
"""
from __future__ import annotations

import copy
import logging

import torch

from comfy.patcher_extension import WrappersMP

from ..vp2p_core.attention import TemporalAttention
from .checks import fail
from .layout import PREFIX, source_module, transformer_blocks, video_norm_paths
from .checks import check_inflatable
from .patches import (SOURCE_ATTR, TEMPORAL_CHILD, VIDEO_FRAMES_KEY, FrameAttentionPatch, make_block_copy,
                      make_norm_copy, video_frames_wrapper)

INFO_KEY = "vp2p_inflation"

log = logging.getLogger("video-p2p")


# --------------------------------------------------------------------------- public helpers
def is_inflated(model) -> bool:
    return bool(getattr(model, "model_options", None)) and INFO_KEY in model.model_options


def inflation_info(model):
    """Settings of an inflated model (a copy), or None: temporal_attention, video_norm,
    frame_chunk, seed, blocks {path: key}, norms [paths], tuning (metadata or None)."""
    if not is_inflated(model):
        return None
    return copy.deepcopy(model.model_options[INFO_KEY])


def temporal_modules(model) -> dict:
    """{path under diffusion_model: TemporalAttention} of an inflated model (the live objects)."""
    out = {}
    for path in (inflation_info(model) or {}).get("blocks", {}):
        blk = model.object_patches.get(PREFIX + path)
        t = blk._modules.get(TEMPORAL_CHILD) if blk is not None else None
        if t is not None:
            out[path] = t
    return out


def set_temporal_modules(model, modules: dict):
    """Install other temporal modules on an inflated clone (new block copies, same sources)."""
    for path, temporal in modules.items():
        full = PREFIX + path
        current = model.object_patches.get(full)
        if current is None or SOURCE_ATTR not in current.__dict__:
            raise KeyError(f"{path} is not an inflated block of this model")
        model.add_object_patch(full, make_block_copy(current.__dict__[SOURCE_ATTR], temporal))


def set_tuning_info(model, meta):
    model.model_options[INFO_KEY]["tuning"] = dict(meta) if meta is not None else None


def _param_like(block):
    for p in block.parameters():
        return p
    return None


def inflate(model, temporal_attention=True, video_norm=True, frame_chunk=0, seed=0):
    """The patched clone (see the module docstring)."""
    if is_inflated(model):
        fail("this MODEL is already inflated; connect the checkpoint's MODEL instead.")
    check_inflatable(model)
    m = model.clone()
    blocks = transformer_blocks(m)
    if not blocks:
        fail("the model has no transformer blocks to inflate; use an SD1.x-family checkpoint.")
    existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    gen = torch.Generator().manual_seed(int(seed))
    info = {"version": 1, "temporal_attention": bool(temporal_attention), "video_norm": bool(video_norm),
            "frame_chunk": int(frame_chunk), "seed": int(seed), "blocks": {}, "norms": [], "tuning": None}
    added_bytes = 0
    for path, block, key in blocks:
        full = PREFIX + path
        source = source_module(m, full)
        temporal = None
        if temporal_attention:
            ref = _param_like(block)
            dim = block.attn1.to_q.in_features
            temporal = TemporalAttention(dim, block.n_heads, block.d_head,
                                         dtype=ref.dtype if ref is not None else None,
                                         device=ref.device if ref is not None else None).init_weights(gen)
            added_bytes += sum(t.numel() * t.element_size() for t in temporal.state_dict().values())
        m.add_object_patch(full, make_block_copy(source, temporal))
        if getattr(block, "disable_self_attn", False):
            log.warning("%s uses attn1 as cross-attention; no frame attention there", path)
        else:
            prev = existing.get(key) or existing.get(key[:2])
            m.set_model_attn1_replace(FrameAttentionPatch(key, frame_chunk, prev), key[0], key[1], key[2])
        info["blocks"][path] = list(key)
    if video_norm:
        for path in video_norm_paths(m):
            m.add_object_patch(PREFIX + path, make_norm_copy(source_module(m, PREFIX + path)))
            info["norms"].append(path)
        m.remove_wrappers_with_key(WrappersMP.DIFFUSION_MODEL, VIDEO_FRAMES_KEY)
        m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, VIDEO_FRAMES_KEY, video_frames_wrapper)
    # ComfyUI budgets, loads and reports a MODEL by model_size(): include the temporal modules
    # (clones, e.g. tuned ones or a LoRA applied after Inflate, inherit the size)
    m.size = model.model_size() + added_bytes
    m.model_options[INFO_KEY] = info
    return m
