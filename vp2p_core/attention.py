"""Frame attention and temporal attention of an inflated (text-to-set) model.

Layout: inside the UNet the batch is n chunks (cond / uncond / branches) of F frames each,
chunk-major: row r belongs to chunk r // F, frame r % F (F: a whole clip, or one context
window, see vp2p_core.frames). Every function here takes F (and the anchor's row) explicitly
and never assumes batch == F.

Attention functions follow ComfyUI's convention `attn(q, k, v, heads) -> out` with
q/k/v of shape [rows, tokens, heads * dim_head], so the host's fastest kernel (or another
node's replace patch) can be passed in; with one frame the frame attention makes exactly
the call the image model makes, so an inflated model on a single frame is the image model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from .frames import call_layout


def sdpa_attention(q, k, v, heads):
    """Reference multi-head attention (no mask) in ComfyUI's q/k/v layout."""
    b, _, inner = q.shape
    dim_head = inner // heads
    q, k, v = (t.reshape(t.shape[0], -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, -1, inner)


def frames_in_batch(batch: int, transformer_options: dict | None, where: str = "video-p2p") -> int:
    """Frames per video chunk of a UNet call of `batch` rows (vp2p_core.frames.call_layout)."""
    return call_layout(batch, transformer_options, where).frames


def first_frame_kv(k: torch.Tensor, v: torch.Tensor, frames: int, anchor: int = 0):
    """The anchor frame's keys/values of each video, broadcast to all its frames ([n*F, tokens, C]);
    `anchor`: its row within a chunk (0 for a whole clip: frame 0)."""
    if frames == 1:
        return k, v
    out = []
    for t in (k, v):
        t0 = t.reshape(-1, frames, *t.shape[1:])[:, anchor:anchor + 1]
        out.append(t0.expand(-1, frames, *t.shape[1:]).reshape(t.shape))
    return out[0], out[1]


def frame_attention(q, k, v, frames: int, heads: int, attention=sdpa_attention, chunk: int = 0, anchor: int = 0):
    """Queries of every frame attend to the keys/values of the anchor frame (row `anchor` of each
    chunk: frame 0 of a whole clip, the clip's frame 0 inside a context window).

    The frames of a chunk are folded into the query-token axis (one attention call per
    video chunk against the anchor's tokens), so keys/values are never replicated and peak
    memory grows with `chunk` frames, not F (chunk <= 0: all frames at once). Each query
    row's softmax is over the anchor's keys either way, so chunking does not change results."""
    rows, tokens, inner = q.shape
    if frames == 1:
        return attention(q, k, v, heads)
    if rows % frames:
        raise ValueError(f"frame attention: batch {rows} is not a multiple of {frames} frames")
    n = rows // frames
    qv = q.reshape(n, frames, tokens, inner)
    k0 = k.reshape(n, frames, *k.shape[1:])[:, anchor]
    v0 = v.reshape(n, frames, *v.shape[1:])[:, anchor]
    step = frames if chunk is None or chunk <= 0 else min(int(chunk), frames)
    outs = []
    for s in range(0, frames, step):
        e = min(s + step, frames)
        qc = qv[:, s:e].reshape(n, (e - s) * tokens, inner)
        o = attention(qc, k0, v0, heads)
        outs.append(o.reshape(n, e - s, tokens, o.shape[-1]))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return out.reshape(rows, tokens, out.shape[-1])


def _cast(t, like):
    if t is None or (t.dtype == like.dtype and t.device == like.device):
        return t
    return t.to(device=like.device, dtype=like.dtype)


class TemporalAttention(torch.nn.Module):
    """Attention across the frames at each spatial position (LayerNorm + multi-head attention
    + output projection, added as a residual). No positional encoding: the frames are a set.

    `to_out` starts at zero, so a freshly inflated model equals the image model exactly.
    Weights are cast to the activations' device/dtype on use, so fp32 master copies can be
    trained inside an fp16 UNet and the module works wherever the host put it."""

    def __init__(self, dim: int, heads: int, dim_head: int, eps: float = 1e-5, dtype=None, device=None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.norm = torch.nn.LayerNorm(dim, eps=eps, dtype=dtype, device=device)
        self.to_q = torch.nn.Linear(dim, inner, bias=False, dtype=dtype, device=device)
        self.to_k = torch.nn.Linear(dim, inner, bias=False, dtype=dtype, device=device)
        self.to_v = torch.nn.Linear(dim, inner, bias=False, dtype=dtype, device=device)
        self.to_out = torch.nn.Linear(inner, dim, dtype=dtype, device=device)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None):
        """Seeded init: q/k/v like torch's Linear default (uniform +-1/sqrt(fan_in)), unit
        norm, zero output projection (the block starts as the identity)."""
        for lin in (self.to_q, self.to_k, self.to_v):
            bound = 1.0 / math.sqrt(lin.in_features)
            w = torch.rand(lin.weight.shape, generator=generator, dtype=torch.float32) * (2 * bound) - bound
            lin.weight.copy_(w.to(lin.weight))
        self.norm.weight.fill_(1.0)
        self.norm.bias.zero_()
        self.to_out.weight.zero_()
        self.to_out.bias.zero_()
        return self

    def forward(self, x, frames: int, attention=sdpa_attention, control=None, key=None, extra_options=None):
        """x: [n*F, tokens, C] -> x + temporal attention (same shape). `control`: an AttentionHook
        (vp2p_core.control) or None."""
        rows, tokens, dim = x.shape
        h = rearrange(x, "(n f) t c -> (n t) f c", f=frames)
        h = F.layer_norm(h, (dim,), _cast(self.norm.weight, h), _cast(self.norm.bias, h), self.norm.eps)
        q = F.linear(h, _cast(self.to_q.weight, h))
        k = F.linear(h, _cast(self.to_k.weight, h))
        v = F.linear(h, _cast(self.to_v.weight, h))
        if control is not None and control.wants("temporal", key, extra_options):
            o = control.attend("temporal", key, q, k, v, self.heads, extra_options,
                               lambda q_, k_, v_: attention(q_, k_, v_, self.heads))
        else:
            o = attention(q, k, v, self.heads)
        o = F.linear(o, _cast(self.to_out.weight, o), _cast(self.to_out.bias, o))
        o = rearrange(o, "(n t) f c -> (n f) t c", t=tokens)
        return x + o.to(x.dtype)
