"""The patches this pack puts on a ModelPatcher clone (never on ComfyUI's modules or classes):

- FrameAttentionPatch: attn1 replace patch, frame i attends to frame 0 of its video; an
  attn1 patch already on the model is called with the frame-0 keys/values;
- Attn2Patch: attn2 replace patch through which the edit controller sees cross-attention;
- video_frames_wrapper: a keyed `diffusion_model` wrapper (comfy.patcher_extension) publishing
  each call's frame count to the video norms; it runs inside every model_function_wrapper and
  apply_model wrapper, so another node's wrapper (chaining or not) cannot bypass it;
- shallow block / norm copies installed as object patches: a subclass of the module's own
  class sharing all its submodules and Parameters (state-dict keys and LoRA weight patches
  unchanged), plus `vp2p_temporal` (temporal attention after the block) or video-level
  GroupNorm statistics.
The attention patches talk to the edit controller only through
vp2p_core.control.AttentionHook (`wants` / `attend`), found in transformer_options.
"""
from __future__ import annotations

import functools
import inspect

import torch
import torch.utils.checkpoint

from ..vp2p_core.attention import first_frame_kv, frame_attention, frames_in_batch
from ..vp2p_core.frames import call_layout
from ..vp2p_core.norm import VideoNormMixin, video_frames

WHERE = "Video-P2P inflated model"
TEMPORAL_CHILD = "vp2p_temporal"
SOURCE_ATTR = "_vp2p_source"
CONTROL_KEY = "vp2p_control"


# --------------------------------------------------------------------------- host attention
@functools.lru_cache(maxsize=None)
def _accepts(fn, name):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def host_attention(q, k, v, heads, extra_options=None):
    """ComfyUI's current optimized attention, called the way its CrossAttention calls it: with
    the block's `attn_precision` and the call's `transformer_options` (so an attention-backend
    override in them applies), each where the installed ComfyUI accepts it."""
    from comfy.ldm.modules import attention as comfy_attention
    fn = comfy_attention.optimized_attention
    kwargs = {}
    if extra_options:
        if extra_options.get("attn_precision") is not None and _accepts(fn, "attn_precision"):
            kwargs["attn_precision"] = extra_options["attn_precision"]
        if _accepts(fn, "transformer_options"):
            kwargs["transformer_options"] = extra_options
    return fn(q, k, v, heads, **kwargs)


def layer_attention(previous, heads, extra_options):
    """The layer's own attention as `f(q, k, v)`: another node's replace patch that this one
    chains (IP-Adapter style), else ComfyUI's kernel with this call's options. The controller
    takes it for every row and replaces the rows it edits."""
    if previous is not None:
        return lambda q, k, v: previous(q, k, v, extra_options)
    return lambda q, k, v: host_attention(q, k, v, heads, extra_options)


# --------------------------------------------------------------------------- patches
class FrameAttentionPatch:
    """attn1 replace patch: frame i attends to the anchor of its video — frame 0 of the clip, also
    inside a context window (vp2p_core.frames) — (plain data, deep-copyable)."""

    def __init__(self, key, chunk=0, previous=None):
        self.key = tuple(key)
        self.chunk = int(chunk)
        self.previous = previous

    def __call__(self, q, k, v, extra_options):
        heads = extra_options["n_heads"]
        layout = call_layout(q.shape[0], extra_options, WHERE)
        frames, anchor = layout.frames, layout.anchor_pos
        ctx = extra_options.get(CONTROL_KEY)
        if ctx is not None and ctx.wants("frame", self.key, extra_options):
            k0, v0 = first_frame_kv(k, v, frames, anchor)
            return ctx.attend("frame", self.key, q, k0, v0, heads, extra_options,
                              layer_attention(self.previous, heads, extra_options))
        if self.previous is not None:
            # another node's attn1 patch keeps the full batch layout; it just sees the anchor's K/V
            k0, v0 = first_frame_kv(k, v, frames, anchor)
            return self.previous(q, k0, v0, extra_options)
        return frame_attention(q, k, v, frames, heads,
                               lambda q_, k_, v_, h: host_attention(q_, k_, v_, h, extra_options),
                               self.chunk, anchor)


VIDEO_FRAMES_KEY = "vp2p_video_frames"


def _transformer_options(args, kwargs):
    # WrappersMP.DIFFUSION_MODEL: (x, timesteps, context, y, control, transformer_options, **kwargs)
    if "transformer_options" in kwargs:
        return kwargs["transformer_options"] or {}
    return (args[4] if len(args) > 4 else None) or {}


def video_frames_wrapper(executor, x, *args, **kwargs):
    """WrappersMP.DIFFUSION_MODEL wrapper: the video norms of this call see its frame count
    (from `vp2p_frames`, else the batch over `cond_or_uncond`). A plain function, so clones,
    deep copies and fingerprints see the same object."""
    frames = frames_in_batch(x.shape[0], _transformer_options(args, kwargs), WHERE)
    with video_frames(frames):
        return executor(x, *args, **kwargs)


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

        def run(h, args, kwargs):
            out = base_forward(h, *args, **kwargs)
            if temporal is None:
                return out
            block = topts.get("block")
            key = (block[0], block[1], topts.get("block_index", 0)) if block is not None else None
            eo = {k: v for k, v in topts.items() if k not in ("patches", "patches_replace")}
            eo["n_heads"], eo["dim_head"] = temporal.heads, temporal.dim_head
            if getattr(self, "attn_precision", None) is not None:
                eo["attn_precision"] = self.attn_precision
            frames = frames_in_batch(out.shape[0], topts, WHERE)
            return temporal(out, frames, lambda q, k, v, h_: host_attention(q, k, v, h_, eo),
                            topts.get(CONTROL_KEY), key, eo)

        if checkpointed:
            # the block's tensor arguments (the text context) go in as checkpoint inputs, not through the
            # closure: a closure keeps them alive with the graph, and under context windows' own
            # recomputation (vp2p_host.windows) that held every window's context until the backward
            at = [i for i, a in enumerate(args) if torch.is_tensor(a)]
            kt = [k for k, v in kwargs.items() if torch.is_tensor(v)]
            a0 = [None if i in at else a for i, a in enumerate(args)]
            k0 = {k: None if k in kt else v for k, v in kwargs.items()}

            def block(h, *tensors):
                a, kw = list(a0), dict(k0)
                for i, t in zip(at, tensors):
                    a[i] = t
                for k, t in zip(kt, tensors[len(at):]):
                    kw[k] = t
                return run(h.clone(), a, kw)    # the block adds residuals in place: a private copy of its input
            return torch.utils.checkpoint.checkpoint(block, x, *[args[i] for i in at], *[kwargs[k] for k in kt],
                                                     use_reentrant=False)
        return run(x, args, kwargs)


_CLASSES: dict = {}


def _derived(mixin, cls):
    key = (mixin, cls)
    if key not in _CLASSES:
        _CLASSES[key] = type(f"VP2P{mixin.__name__.replace('Mixin', '')}_{cls.__name__}", (mixin, cls), {})
    return _CLASSES[key]


def unwrap(module):
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
    norm.__dict__["vp2p_where"] = WHERE
    return norm


class Attn2Patch:
    """attn2 replace patch: cross-attention the edit controller can read and replace."""

    def __init__(self, key, previous=None):
        self.key = tuple(key)
        self.previous = previous

    def __call__(self, q, k, v, extra_options):
        ctx = extra_options.get(CONTROL_KEY)
        heads = extra_options["n_heads"]
        if ctx is not None and ctx.wants("cross", self.key, extra_options):
            return ctx.attend("cross", self.key, q, k, v, heads, extra_options,
                              layer_attention(self.previous, heads, extra_options))
        if self.previous is not None:
            return self.previous(q, k, v, extra_options)
        return host_attention(q, k, v, heads, extra_options)
