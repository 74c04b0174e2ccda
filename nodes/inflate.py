"""Inflate T2S Model: turn an SD1.x image UNet into Video-P2P's text-to-set model.

Everything is a patch on a clone (the incoming MODEL is never touched):
- frame attention: an attn1 replace patch per transformer block (queries of every frame,
  keys/values of frame 0); an attn1 replace patch already on the model is called with the
  frame-0 keys/values instead of being overridden;
- temporal attention: an object patch per BasicTransformerBlock path installing a shallow
  copy of the block (a subclass of its own class sharing all original submodules, so
  state-dict keys and LoRA weight patches are unchanged) with one extra child,
  `vp2p_temporal`, applied after the block's own forward (i.e. after the feed-forward);
- video-level norm: object patches replacing each ResBlock GroupNorm and the output norm by
  copies sharing the same weight/bias Parameters whose statistics span all frames; the frame
  count reaches them through a model_function_wrapper (chaining any existing one).
No ComfyUI class or module is modified and nothing is registered on the original modules.
"""
from __future__ import annotations

import functools
import inspect
import logging

import torch
import torch.utils.checkpoint

import comfy.utils

from .unet_runner import fail
from ..vp2p_core.attention import (TemporalAttention, first_frame_kv, frame_attention,
                                   frames_in_batch)
from ..vp2p_core.norm import VideoNormMixin, video_frames

NODE = "Inflate T2S Model"
INFO_KEY = "vp2p_inflation"
TEMPORAL_CHILD = "vp2p_temporal"
SOURCE_ATTR = "_vp2p_source"
PREFIX = "diffusion_model."

log = logging.getLogger("video-p2p")


# --------------------------------------------------------------------------- host attention
@functools.lru_cache(maxsize=None)
def _accepts(fn, name):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def host_attention(q, k, v, heads, extra_options=None):
    """ComfyUI's current optimized attention, called the way its CrossAttention calls it."""
    from comfy.ldm.modules import attention as comfy_attention
    fn = comfy_attention.optimized_attention
    if extra_options and extra_options.get("attn_precision") is not None and _accepts(fn, "attn_precision"):
        return fn(q, k, v, heads, attn_precision=extra_options["attn_precision"])
    return fn(q, k, v, heads)


# --------------------------------------------------------------------------- patches
class FrameAttentionPatch:
    """attn1 replace patch: frame i attends to frame 0 of its video (plain data, deep-copyable)."""

    def __init__(self, key, chunk=0, previous=None):
        self.key = tuple(key)
        self.chunk = int(chunk)
        self.previous = previous

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        frames = frames_in_batch(q.shape[0], extra_options, NODE)
        ctx = extra_options.get("vp2p_control")
        if ctx is not None and ctx.wants("frame", self.key):
            k0, v0 = first_frame_kv(k, v, frames)
            return ctx.attend("frame", self.key, q, k0, v0, heads, extra_options)
        if self.previous is not None:
            # another node's attn1 patch keeps the full batch layout; it just sees frame-0 K/V
            k0, v0 = first_frame_kv(k, v, frames)
            return self.previous(q, k0, v0, extra_options)
        return frame_attention(q, k, v, frames, heads,
                               lambda q_, k_, v_, h: host_attention(q_, k_, v_, h, extra_options),
                               self.chunk)


class VideoFramesWrapper:
    """model_function_wrapper publishing the frame count of each UNet call to the video norms."""

    def __init__(self, previous=None):
        self.previous = previous

    def __call__(self, apply_model, args):
        c = args["c"]
        topts = c.get("transformer_options") or {}
        if "cond_or_uncond" not in topts and args.get("cond_or_uncond") is not None:
            topts = dict(topts, cond_or_uncond=args["cond_or_uncond"])
        frames = frames_in_batch(args["input"].shape[0], topts, NODE)
        with video_frames(frames):
            if self.previous is not None:
                return self.previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **c)

    def to(self, device):
        if self.previous is not None and hasattr(self.previous, "to"):
            self.previous = self.previous.to(device)
        return self


class InflatedBlockMixin:
    """Goes before a transformer block class: the block's own forward, then temporal attention.

    With `vp2p_grad_checkpoint` in transformer_options (tuning) the whole block is recomputed
    in backward instead of storing its activations."""

    def forward(self, x, *args, **kwargs):
        args = list(args)
        if "transformer_options" in kwargs:
            topts = kwargs["transformer_options"]
        elif len(args) >= 2:
            topts = args[1]
        else:
            topts = kwargs["transformer_options"] = {}
        topts = topts if topts is not None else {}
        checkpointed = bool(topts.get("vp2p_grad_checkpoint")) and torch.is_grad_enabled()
        if checkpointed:
            # the UNet keeps updating block/block_index in this dict: recomputation in backward
            # must see this block's values
            topts = dict(topts)
            if "transformer_options" in kwargs:
                kwargs["transformer_options"] = topts
            else:
                args[1] = topts
        base_forward = super().forward
        temporal = self._modules.get(TEMPORAL_CHILD)

        def run(h):
            out = base_forward(h, *args, **kwargs)
            if temporal is None:
                return out
            block = topts.get("block")
            key = (block[0], block[1], topts.get("block_index", 0)) if block is not None else None
            eo = {k: v for k, v in topts.items() if k not in ("patches", "patches_replace")}
            eo["n_heads"], eo["dim_head"] = temporal.heads, temporal.dim_head
            if getattr(self, "attn_precision", None) is not None:
                eo["attn_precision"] = self.attn_precision
            frames = frames_in_batch(out.shape[0], topts, NODE)
            return temporal(out, frames, lambda q, k, v, h_: host_attention(q, k, v, h_, eo),
                            topts.get("vp2p_control"), key, eo)

        if checkpointed:
            # the block adds residuals in place: give it a private copy of the saved input
            return torch.utils.checkpoint.checkpoint(lambda h: run(h.clone()), x, use_reentrant=False)
        return run(x)


_CLASSES: dict = {}


def _derived(mixin, cls):
    key = (mixin, cls)
    if key not in _CLASSES:
        _CLASSES[key] = type(f"VP2P{mixin.__name__.replace('Mixin', '')}_{cls.__name__}", (mixin, cls), {})
    return _CLASSES[key]


def _unwrap(module):
    while isinstance(module, torch.nn.Module) and SOURCE_ATTR in module.__dict__:
        module = module.__dict__[SOURCE_ATTR]
    return module


def shallow_copy(module: torch.nn.Module, mixin) -> torch.nn.Module:
    """A new object of a subclass (mixin + the module's class) sharing the module's children,
    parameters and buffers; its own containers, so adding to it never touches the original."""
    cls = _derived(mixin, type(module))
    new = cls.__new__(cls)
    for k, v in module.__dict__.items():
        new.__dict__[k] = v.copy() if isinstance(v, (dict, set)) else v
    new.__dict__[SOURCE_ATTR] = module
    return new


def make_block_copy(source, temporal):
    block = shallow_copy(source, InflatedBlockMixin)
    if temporal is not None:
        block._modules[TEMPORAL_CHILD] = temporal
    return block


def make_norm_copy(source):
    norm = shallow_copy(source, VideoNormMixin)
    norm.__dict__["vp2p_video_norm"] = True
    norm.__dict__["vp2p_where"] = NODE
    return norm


# --------------------------------------------------------------------------- model structure
def _source(model, full_path):
    """What the clone would install at `full_path` without us: its own object patch, else the
    original module (even while another clone is patched in), never one of our copies."""
    obj = model.object_patches.get(full_path)
    if obj is None:
        obj = getattr(model, "object_patches_backup", {}).get(full_path)
    if obj is None:
        obj = comfy.utils.get_attr(model.model, full_path)
    return _unwrap(obj)


def _children(module):
    for name, child in _unwrap(module)._modules.items():
        if child is not None and name != TEMPORAL_CHILD:
            yield name, _unwrap(child)


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
    return [p for p in paths if isinstance(_source(model, PREFIX + p), torch.nn.GroupNorm)]


# --------------------------------------------------------------------------- public helpers
def is_inflated(model) -> bool:
    return bool(getattr(model, "model_options", None)) and INFO_KEY in model.model_options


def inflation_info(model):
    """Settings of an inflated model (a copy), or None: temporal_attention, video_norm,
    frame_chunk, seed, blocks {path: key}, norms [paths], tuning (metadata or None)."""
    if not is_inflated(model):
        return None
    import copy
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
        fail(NODE, "this MODEL is already inflated; connect the checkpoint's MODEL instead.")
    dm = getattr(model.model, "diffusion_model", None)
    if dm is None or not hasattr(dm, "input_blocks"):
        fail(NODE, "expected an SD1.x-family UNet MODEL (input/middle/output blocks).")
    m = model.clone()
    blocks = transformer_blocks(m)
    if not blocks:
        fail(NODE, "the model has no transformer blocks to inflate; use an SD1.x-family checkpoint.")
    existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    gen = torch.Generator().manual_seed(int(seed))
    info = {"version": 1, "temporal_attention": bool(temporal_attention), "video_norm": bool(video_norm),
            "frame_chunk": int(frame_chunk), "seed": int(seed), "blocks": {}, "norms": [], "tuning": None}
    for path, block, key in blocks:
        full = PREFIX + path
        source = _source(m, full)
        temporal = None
        if temporal_attention:
            ref = _param_like(block)
            dim = block.attn1.to_q.in_features
            temporal = TemporalAttention(dim, block.n_heads, block.d_head,
                                         dtype=ref.dtype if ref is not None else None,
                                         device=ref.device if ref is not None else None).init_weights(gen)
        m.add_object_patch(full, make_block_copy(source, temporal))
        if getattr(block, "disable_self_attn", False):
            log.warning("%s: %s uses attn1 as cross-attention; no frame attention there", NODE, path)
        else:
            prev = existing.get(key) or existing.get(key[:2])
            m.set_model_attn1_replace(FrameAttentionPatch(key, frame_chunk, prev), key[0], key[1], key[2])
        info["blocks"][path] = list(key)
    if video_norm:
        for path in video_norm_paths(m):
            m.add_object_patch(PREFIX + path, make_norm_copy(_source(m, PREFIX + path)))
            info["norms"].append(path)
        m.set_model_unet_function_wrapper(VideoFramesWrapper(m.model_options.get("model_function_wrapper")))
    m.model_options[INFO_KEY] = info
    return m


class VP2PInflateT2SModel:
    """Image model -> text-to-set model (frame attention, temporal attention, video norm)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "temporal_attention": ("BOOLEAN", {"default": True, "tooltip":
                "Add zero-initialised attention across frames after every transformer block "
                "(trained by Tune On Video; the untuned model is unchanged by it)."}),
            "video_norm": ("BOOLEAN", {"default": True, "tooltip":
                "ResBlock and output GroupNorms use statistics over all frames of the video, "
                "as in the reference implementation."}),
            "frame_chunk": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip":
                "Frames per frame-attention call (0 = all at once). Smaller uses less memory, "
                "same result."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "tooltip":
                "Seed of the temporal attention's initial weights."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "inflate"
    CATEGORY = "video-p2p"
    DESCRIPTION = "Inflate an SD1.x image model into Video-P2P's text-to-set model (a patched clone)."

    def inflate(self, model, temporal_attention=True, video_norm=True, frame_chunk=0, seed=0):
        return (inflate(model, temporal_attention, video_norm, frame_chunk, seed),)


NODE_CLASS_MAPPINGS = {"VP2PInflateT2SModel": VP2PInflateT2SModel}
NODE_DISPLAY_NAME_MAPPINGS = {"VP2PInflateT2SModel": "Inflate T2S Model"}
