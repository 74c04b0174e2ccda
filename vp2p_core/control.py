"""Prompt-to-Prompt attention control for two-branch (source / target) video sampling.

A controller edits the *target* branch's attention probabilities using the *source*
branch's at the same layer and step. Only the conditional rows are edited (as in
prompt-to-prompt); unconditional rows and every layer the controller does not need keep
the host's fast attention, so with control off the sampler is bit-identical to plain
sampling.

Kinds of attention: "cross" (attn2, text tokens), "temporal" (across frames at each
position), "frame" (attn1 of an inflated model: frame i attends to frame 0). The
reference controls cross + temporal; "frame" is optional.
"""
from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .frames import call_layout, window_key

SRC_U, SRC_C, TGT_U, TGT_C = "src_u", "src_c", "tgt_u", "tgt_c"
DEFAULT_LAYERS = ("cross", "temporal")


@runtime_checkable
class AttentionHook(Protocol):
    """What the attention patches (frame attention, cross-attention, temporal attention) call on
    the object the sampler puts in transformer_options: `wants` says whether this layer's
    attention must go through `attend` at this step; `attend` computes it (q/k/v rows chunk-major,
    one chunk per branch role). StepContext is the implementation."""

    def wants(self, kind: str, key, extra_options: dict | None = None) -> bool: ...

    def attend(self, kind: str, key, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
               extra_options: dict | None = None, base=None) -> torch.Tensor: ...


def window(spec) -> tuple[float, float]:
    """A replace window as (start, end) fractions of the sampling steps; x means (0, x)."""
    if isinstance(spec, (tuple, list)):
        start, end = float(spec[0]), float(spec[1])
    else:
        start, end = 0.0, float(spec)
    if not (0.0 <= start <= end <= 1.0):
        raise ValueError(f"replace window {spec!r} must satisfy 0 <= start <= end <= 1")
    return start, end


def in_window(win, step: int, steps: int) -> bool:
    return int(win[0] * steps) <= step < int(win[1] * steps)


class AttentionControl:
    """Base controller: windows, controlled layers, and what happens to temporal/frame maps."""

    def __init__(self, cross_replace=0.2, self_replace=0.5, layers=DEFAULT_LAYERS, local_blend=None,
                 max_tokens: int = 77, word_windows=()):
        """word_windows: [(target token positions, window)], prompt-to-prompt's per-word
        cross_replace_steps: those tokens follow their own window, every other token cross_replace."""
        self.cross_window = window(cross_replace)
        self.word_windows = tuple((tuple(int(t) for t in toks), window(w)) for toks, w in word_windows)
        self.self_window = window(self_replace)
        self.layers = tuple(layers)
        self.local_blend = local_blend
        self.max_tokens = max_tokens

    # -- what is active -------------------------------------------------------------
    def cross_active(self, step, steps):
        return "cross" in self.layers and (in_window(self.cross_window, step, steps) or
                                           any(in_window(w, step, steps) for _, w in self.word_windows))

    def cross_alpha(self, step, steps, n_tokens: int):
        """Which target tokens take the edited cross-attention column at this step (prompt-to-
        prompt's alpha_words): None when all of them do (no word window differs from the global
        one now), else a bool [n_tokens]; the others keep the target's own column."""
        if not self.word_windows or step is None:
            return None
        on = in_window(self.cross_window, step, steps)
        alpha = [on] * n_tokens
        for toks, w in self.word_windows:
            here = in_window(w, step, steps)
            for t in toks:
                if t < n_tokens:
                    alpha[t] = here
        return None if all(alpha) else torch.tensor(alpha)

    def self_active(self, kind, step, steps):
        return kind in self.layers and in_window(self.self_window, step, steps)

    def edits(self, kind, step, steps) -> bool:
        return self.cross_active(step, steps) if kind == "cross" else self.self_active(kind, step, steps)

    # -- edits (p_*: [rows, heads, queries, keys]) --------------------------------------
    def replace_cross(self, p_src, p_tgt):
        return p_src

    def edit(self, kind, p_src, p_tgt, step=None, steps=None):
        """The target's maps at this layer; `step`/`steps` place the per-word cross windows (without
        them every token is edited, as in the global window)."""
        if kind == "cross":
            out = self.replace_cross(p_src, p_tgt)
            alpha = self.cross_alpha(step, steps, out.shape[-1])
            return out if alpha is None else torch.where(alpha.to(out.device), out, p_tgt)
        return p_src

    def is_identity(self) -> bool:
        """True when nothing would ever be edited (all windows empty, no blend)."""
        no_cross = "cross" not in self.layers or \
            all(w[0] == w[1] for w in (self.cross_window,) + tuple(w for _, w in self.word_windows))
        no_self = not any(k in self.layers for k in ("temporal", "frame")) or \
            self.self_window[0] == self.self_window[1]
        return no_cross and no_self and self.local_blend is None


class AttentionReplace(AttentionControl):
    """Word swap: target token j attends like the source tokens mapped onto it."""

    def __init__(self, mapper: torch.Tensor, **kw):
        super().__init__(**kw)
        self.mapper = mapper

    def replace_cross(self, p_src, p_tgt):
        m = self.mapper.to(p_src.device, p_src.dtype)
        return torch.einsum("rhqk,kn->rhqn", p_src, m)


class AttentionRefine(AttentionControl):
    """Added/removed words: aligned target tokens copy the source, new tokens keep their own."""

    def __init__(self, mapper: torch.Tensor, alphas: torch.Tensor, **kw):
        super().__init__(**kw)
        self.mapper = mapper.long()
        self.alphas = alphas

    def replace_cross(self, p_src, p_tgt):
        a = self.alphas.to(p_src.device, p_src.dtype)
        return p_src[..., self.mapper.to(p_src.device)] * a + p_tgt * (1 - a)


class AttentionReweight(AttentionControl):
    """Scale the attention columns of chosen target words, on top of a previous controller."""

    def __init__(self, equalizer: torch.Tensor, prev: AttentionControl | None = None, **kw):
        super().__init__(**kw)
        self.equalizer = equalizer
        self.prev = prev

    def replace_cross(self, p_src, p_tgt):
        base = self.prev.replace_cross(p_src, p_tgt) if self.prev is not None else p_src
        return base * self.equalizer.to(base.device, base.dtype)


class LocalBlend:
    """Per-frame masks from the cross-attention of chosen words (source OR target words).

    Outside the mask the target latent is reset to the source branch from `start` on, so
    only the region the words attend to can change.
    """

    def __init__(self, src_tokens, tgt_tokens, threshold=0.3, start=0.2, pool=1):
        if not src_tokens and not tgt_tokens:
            raise ValueError("local blend needs at least one word found in the prompts")
        self.src_tokens = list(src_tokens)
        self.tgt_tokens = list(tgt_tokens)
        self.threshold = float(threshold)
        self.start = float(start)
        self.pool = int(pool)

    def active(self, step, steps):
        return step >= int(self.start * steps)

    def mask(self, maps_src, maps_tgt, size, src_cols=None, tgt_cols=None):
        """maps_*: [F, h, w, columns] accumulated probabilities -> bool mask [F, 1, H, W]; *_cols:
        the columns of the blend words (default: the token positions, for maps of every token)."""
        masks = []
        for maps, toks in ((maps_src, self.src_tokens if src_cols is None else src_cols),
                           (maps_tgt, self.tgt_tokens if tgt_cols is None else tgt_cols)):
            if not toks:
                continue
            m = maps[..., toks].sum(-1).unsqueeze(1)  # [F,1,h,w]
            k = self.pool
            m = F.max_pool2d(m, 2 * k + 1, 1, padding=k)
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            m = m / m.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
            masks.append(m > self.threshold)
        out = masks[0]
        for m in masks[1:]:
            out = out | m
        return out

    def apply(self, x_src, x_tgt, mask):
        return torch.where(mask, x_tgt, x_src)

    def step_callback(self, step, steps, x_src, x_tgt, store: "AttentionStore", resolution):
        """prompt-to-prompt's step callback: from `start` on, the target outside the mask becomes
        the source. `resolution`: (tokens, (h, w)) of the cross-attention maps the mask is read
        from (data the caller picked among the maps the UNet produced)."""
        if not self.active(step, steps):
            return x_tgt
        hw, (h, w) = resolution
        maps = store.maps(hw, h, w)
        mask = self.mask(maps[0], maps[1], tuple(x_tgt.shape[-2:]), store.columns(self.src_tokens),
                         store.columns(self.tgt_tokens)).to(x_tgt.device)
        return self.apply(x_src, x_tgt, mask)


class AttentionStore:
    """Cross-attention of the conditional source/target rows, averaged over heads and layers
    per step and summed over steps, per spatial resolution (for local blend and previews).
    `tokens`: the only token positions kept (the blend and preview words): the maps are then a few
    columns instead of 77, which matters for a long clip's full-length buffers (all resolutions
    are recorded at the first step: ~1 GB at 300 frames of 512 px with every token)."""

    def __init__(self, tokens=None):
        self.tokens = None if tokens is None else sorted({int(t) for t in tokens})
        self.sum = {}    # hw -> tensor [2, F, hw, tokens]
        self.step_acc = {}
        self.steps = 0
        self.layers = {}  # hw -> keys of the layers that produced maps of that size

    def add(self, key, p_src, p_tgt, layout=None):
        """`layout` (vp2p_core.frames.FrameLayout): the rows are a window of the clip; its own
        frames are gathered into a full-length buffer by global index (guests are skipped), and
        each frame is averaged over the layers and windows that saw it."""
        hw = p_src.shape[2]
        self.layers.setdefault(hw, set()).add(key)
        if self.tokens is not None:
            cols = torch.tensor(self.tokens, device=p_src.device)
            p_src, p_tgt = p_src.index_select(-1, cols), p_tgt.index_select(-1, cols)
        if layout is not None and not layout.is_whole:
            own = list(layout.own)
            m = torch.stack([p_src[own].mean(1), p_tgt[own].mean(1)]).float()
            idx = torch.tensor([layout.index[p] for p in own], device=m.device)
            acc = self.step_acc.get(hw)
            if acc is None:
                acc = (m.new_zeros((2, layout.total) + tuple(m.shape[2:])), m.new_zeros(layout.total))
                self.step_acc[hw] = acc
            acc[0].index_add_(1, idx, m)
            acc[1].index_add_(0, idx, torch.ones(len(own), device=m.device))
            return
        m = torch.stack([p_src.mean(1), p_tgt.mean(1)]).float()  # [2, F, hw, tokens]
        acc = self.step_acc.get(hw)
        self.step_acc[hw] = (m, 1) if acc is None else (acc[0] + m, acc[1] + 1)

    def end_step(self):
        for hw, (m, n) in self.step_acc.items():
            avg = m / n if not torch.is_tensor(n) else m / n.clamp_min(1).reshape(1, -1, 1, 1)
            self.sum[hw] = avg if hw not in self.sum else self.sum[hw] + avg
        self.step_acc = {}
        self.steps += 1

    def keep_only(self, hw):
        """Drop the accumulated maps of every other resolution."""
        self.sum = {k: v for k, v in self.sum.items() if k == hw}
        self.layers = {k: v for k, v in self.layers.items() if k == hw}

    def columns(self, toks):
        """Where token positions `toks` are among the maps' columns."""
        if self.tokens is None:
            return list(toks)
        missing = [t for t in toks if t not in self.tokens]
        if missing:
            raise KeyError(f"the attention store does not keep tokens {missing}")
        return [self.tokens.index(t) for t in toks]

    def maps(self, hw, h, w):
        """[2, F, h, w, columns] summed over steps at resolution hw (= h*w); see `columns`."""
        s = self.sum[hw]
        return s.reshape(s.shape[0], s.shape[1], h, w, s.shape[-1])


def downsampled_sizes(latent_hw: tuple[int, int], levels: int = 8) -> list[tuple[int, int]]:
    """(h, w) of the feature maps of a UNet whose downsamplers are stride-2 convolutions with
    padding 1 (SD1.x): each level has ceil(side / 2), so a 54-wide latent gives 27, 14, 7, 4."""
    h, w = latent_hw
    out = [(h, w)]
    for _ in range(levels):
        h, w = (h + 1) // 2, (w + 1) // 2
        out.append((h, w))
    return out


def resolution_of(hw: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of a layer with hw tokens, given the latent's (H, W): the downsampled size
    with that many tokens (rounding up, as the UNet does; rounding down and the aspect ratio
    are tried too for other downsamplers)."""
    H, W = latent_hw
    for h, w in downsampled_sizes(latent_hw):
        if h * w == hw:
            return h, w
    h, w = H, W
    for _ in range(8):
        h, w = h // 2, w // 2
        if h * w == hw:
            return h, w
    f = math.sqrt(H * W / hw)
    h, w = round(H / f), round(W / f)
    if h * w != hw:
        raise ValueError(f"cannot place {hw} attention tokens on a {H}x{W} latent")
    return h, w


def pick_blend_resolution(hws, latent_hw: tuple[int, int], min_side: int = 16):
    """The cross-attention resolution the local blend (and the preview) reads, chosen among the
    sizes the UNet actually produced: the coarsest whose map is still >= min_side tokens across
    (16x16 on SD1.5 at 512 px, as prompt-to-prompt), else the finest (on small latents the
    coarsest map is a few cells wide and its dilated mask would cover the frame).
    -> (hw, (h, w)), or None when no map can be placed on the latent."""
    placed = []
    for hw in hws:
        try:
            placed.append((hw, resolution_of(hw, latent_hw)))
        except ValueError:
            continue
    if not placed:
        return None
    wide = [p for p in placed if min(p[1]) >= min_side]
    return min(wide, key=lambda p: p[0]) if wide else max(placed, key=lambda p: p[0])


def attention_probs(q, k, heads):
    """Explicit softmax(q k^T / sqrt(d)) in fp32: [rows, heads, Lq, Lk]."""
    b, lq, c = q.shape
    d = c // heads
    qh = q.reshape(b, lq, heads, d).transpose(1, 2).float()
    kh = k.reshape(b, k.shape[1], heads, d).transpose(1, 2).float()
    return torch.softmax(qh @ kh.transpose(-1, -2) * d ** -0.5, dim=-1)


def apply_probs(p, v, heads, dtype):
    b, lk, c = v.shape
    d = c // heads
    vh = v.reshape(b, lk, heads, d).transpose(1, 2).float()
    out = p @ vh  # [b, heads, lq, d]
    return out.transpose(1, 2).reshape(b, -1, c).to(dtype)


REPLAY_BYTES = 256 * 2 ** 20    # fp32 probabilities held at once by replay_attention


def replay_attention(q, k, v, heads, dtype, max_bytes: int = REPLAY_BYTES):
    """softmax(q k^T) v with the probabilities of one branch (q, k: the source's) and the values of
    another (the target's), as `apply_probs(attention_probs(q, k), v)`, in query chunks of at most
    `max_bytes` of fp32 probabilities. The temporal / frame replacement copies the source's whole
    map, so no full map is needed: a 64x64 frame-attention layer's would be [frames, 8, 4096,
    4096] fp32, 4 GB at 8 frames. Each query row is computed as in the full product."""
    b, lq, c = q.shape
    per_query = b * heads * k.shape[1] * 4
    step = max(1, min(lq, int(max_bytes) // max(per_query, 1)))
    if step >= lq:
        return apply_probs(attention_probs(q, k, heads), v, heads, dtype)
    return torch.cat([apply_probs(attention_probs(q[:, s:s + step], k, heads), v, heads, dtype)
                      for s in range(0, lq, step)], dim=1)


class StepContext:
    """Per-UNet-call view of a controller: which chunks are which branch, and the step.

    `attend` follows the pack's contract: q/k/v rows are chunk-major with one chunk per
    entry of `roles`. Rows that are not edited are computed with `fast_attention` (the
    host's own kernel), so they are bit-identical to uncontrolled sampling.
    """

    def __init__(self, controller: AttentionControl | None, roles, step: int, steps: int,
                 fast_attention, store: AttentionStore | None = None, store_hw=None, cache=None):
        """roles: one role per chunk of every call, or {cond_or_uncond value: role} when the host
        forms the chunks per call (ComfyUI's calc_cond_batch batches and orders conds itself and
        records the order in transformer_options["cond_or_uncond"])."""
        self.controller = controller
        self.role_of = dict(roles) if isinstance(roles, dict) else None
        self.roles = [] if self.role_of is not None else list(roles)
        self.step = step
        self.steps = steps
        self.fast = fast_attention
        self.store = store
        self.store_hw = store_hw      # set of hw to record (None: all)
        self.cache = cache            # dict for source-first (unbatched) runs

    def _edit_kind(self, kind):
        c = self.controller
        return c is not None and c.edits(kind, self.step, self.steps)

    def roles_of_call(self, extra_options=None):
        if self.role_of is None:
            return self.roles
        return [self.role_of[c] for c in (extra_options or {}).get("cond_or_uncond", ())]

    def wants(self, kind, key, extra_options=None) -> bool:
        roles = self.roles_of_call(extra_options)
        if TGT_C not in roles and SRC_C not in roles:
            return False
        if self._edit_kind(kind):
            return True
        return kind == "cross" and self.store is not None

    def attend(self, kind, key, q, k, v, heads, extra_options=None, base=None):
        """`base(q, k, v)`, when given, computes the layer's own attention for all rows at once
        (e.g. another node's replace patch that this layer chains): rows that are not edited
        keep its result, edited rows get the controller's."""
        roles = self.roles_of_call(extra_options)
        n = len(roles)
        rows = q.shape[0] // n
        qs, ks, vs = (t.split(rows) for t in (q, k, v))
        outs = list(base(q, k, v).split(rows)) if base is not None else \
            [self.fast(qs[i], ks[i], vs[i], heads) for i in range(n)]
        edit = self._edit_kind(kind)
        store = kind == "cross" and self.store is not None and \
            (self.store_hw is None or q.shape[1] in self.store_hw)
        if not (edit or store):
            return torch.cat(outs)
        i_src = roles.index(SRC_C) if SRC_C in roles else None
        i_tgt = roles.index(TGT_C) if TGT_C in roles else None
        # source-first runs (the Decoupled Sampler's branches are two calls) leave the source's
        # queries and keys, not its maps, for the target: the maps are computed where they are
        # used, and a context window's entry is a fraction of its maps' size
        cache_key = (kind, key, window_key(extra_options))   # each window's target copies its own source
        qk_src = (qs[i_src], ks[i_src]) if i_src is not None else None
        if qk_src is not None and self.cache is not None and i_tgt is None:
            self.cache[cache_key] = qk_src
            return torch.cat(outs)
        if qk_src is None:
            qk_src = self.cache.get(cache_key) if self.cache is not None else None
        if qk_src is None or i_tgt is None:
            return torch.cat(outs)
        if kind != "cross":
            # temporal / frame: the target takes the source's whole map (AttentionControl.edit); replayed
            # in query chunks, never held whole ([frames, 8, 4096, 4096] at a 64x64 frame-attention layer)
            outs[i_tgt] = replay_attention(*qk_src, vs[i_tgt], heads, q.dtype)
            return torch.cat(outs)
        p_src = attention_probs(*qk_src, heads)
        p_tgt = attention_probs(qs[i_tgt], ks[i_tgt], heads)
        if edit:
            p_tgt = self.controller.edit(kind, p_src, p_tgt, self.step, self.steps)
            outs[i_tgt] = apply_probs(p_tgt, vs[i_tgt], heads, q.dtype)
        if store:   # the maps the target used (prompt-to-prompt's store sees the edited maps too)
            windowed = window_key(extra_options) is not None
            self.store.add(key, p_src, p_tgt, call_layout(q.shape[0], extra_options) if windowed else None)
        return torch.cat(outs)
