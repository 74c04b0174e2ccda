"""Long clips through core ComfyUI's context windows (comfy/context_windows.py, >= 0.3.51).

A MODEL that went through core's "Context Windows (Manual)" carries an IndexListContextHandler
in model_options["context_handler"]; `calc_cond_batch` then evaluates the clip window by window
and fuses the results. Wherever this pack evaluates the UNet (Tune On Video, Shared Null-Text
Invert, the Decoupled Sampler / Guider) that handler is driven by `AnchoredWindows`, which keeps
core's schedules, cond resizing, callbacks and fuse methods and changes one thing: a window
that lacks the clip's frame 0 gets it as a guest row (its output is discarded), so frame
attention reads the same anchor in every window and the whole clip keeps one appearance.
Temporal attention and the video norm act within the window (guest included). The layout of
each window call is published as a vp2p_core.frames.FrameLayout.

Tuning does not go through the handler: each step trains on one random window (plus the
anchor), so its memory is bounded by the window (`random_window`).
"""
from __future__ import annotations

import contextlib

import torch

from ..vp2p_core.frames import LAYOUT_KEY, FrameLayout
from . import compat
from .checks import fail

HANDLER_KEY = "context_handler"
WINDOW_KEYS = ("context_window", LAYOUT_KEY)     # transformer_options of one window's call
# whole-clip evaluation above this many latent positions (frames x h x w) is refused without
# windows: 32 frames at 512 px (the reference needs ~20 GB for 8 frames there)
WHOLE_CLIP_POSITIONS = 32 * 64 * 64
ADD_WINDOWS = ("add core's Context Windows (Manual) after Inflate T2S Model (context_length 16, "
               "context_overlap 4, context_schedule standard_static)")


def context_handler(model):
    """The context handler a MODEL carries (core's Context Windows node), or None."""
    return (getattr(model, "model_options", None) or {}).get(HANDLER_KEY)


def check_clip(model, frames: int, latent_hw) -> object:
    """The MODEL's context handler checked against a clip of `frames` frames (None without one).
    Errors name the fix: a clip too long to evaluate whole, a window longer than the clip, an
    overlap that leaves no stride, windows on another dimension, noise reordering (FreeNoise)."""
    handler = context_handler(model)
    h, w = (int(s) for s in latent_hw)
    if handler is None:
        if frames * h * w > WHOLE_CLIP_POSITIONS:
            fail(f"the clip has {frames} frames of {h * 8}x{w * 8} px, too long to evaluate as one batch "
                 f"(at most {WHOLE_CLIP_POSITIONS // (h * w)} frames at this size): {ADD_WINDOWS}.")
        return None
    missing = [a for a in ("context_length", "context_overlap", "get_context_windows", "get_resized_cond",
                           "combine_context_window_results") if not hasattr(handler, a)]
    if missing:
        fail(f"the MODEL carries a context handler this pack cannot drive ({type(handler).__name__}, no "
             f"{missing[0]}); use core's Context Windows (Manual) instead.")
    length, overlap = int(handler.context_length), int(handler.context_overlap)
    if int(getattr(handler, "dim", 0)) != 0:
        fail(f"the context windows run on dim {handler.dim}; video frames are the batch (dim 0) for "
             "SD1.x models: set dim 0 in Context Windows (Manual).")
    if getattr(handler, "freenoise", False):
        fail("the context windows apply FreeNoise, which reorders the noise: an inverted latent must keep its "
             "frames' noise. Turn freenoise off in the context windows node.")
    if length > frames:
        fail(f"the context window ({length} frames) is longer than the clip ({frames} frames): set "
             f"context_length to at most {frames} in Context Windows (Manual), or remove that node.")
    if overlap >= length:
        fail(f"context_overlap {overlap} must be smaller than context_length {length} in Context Windows "
             f"(Manual), e.g. length {length}, overlap {max(0, length // 4)}.")
    return handler


class AnchoredWindows:
    """core's context handler with the clip's anchor frame in every window (see the module
    docstring). Installed in a run's own model_options copy, never on the MODEL."""

    def __init__(self, handler, frames: int):
        self.handler = handler
        self.frames = int(frames)

    def should_use_context(self, model, conds, x_in, timestep, model_options) -> bool:
        return x_in.size(0) > int(self.handler.context_length)

    def windows(self, model, x_in, timestep, model_options):
        compat.set_context_step(self.handler, timestep, model_options)
        return [list(w.index_list) for w in self.handler.get_context_windows(model, x_in, model_options)]

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        return self.execute_branches(calc_cond_batch, model, [(conds, x_in, timestep, model_options)])[0]

    def execute_branches(self, calc_cond_batch, model, branches, after_window=None):
        """core's execute for several branches over the same windows: window by window, each
        branch (conds, x_in, timestep, model_options) in the given order, then `after_window()`.
        The Decoupled Sampler runs source then target this way, so a window's target copies its
        own source and the attention cache holds one window, not the clip. Each branch's result
        is what `execute` alone returns (the same windows, calls and fusion order)."""
        core = self.handler
        _, x0, t0, mo0 = branches[0]
        windows = self.windows(model, x0, t0, mo0)
        relative = compat.fuse_is_relative(core)
        state = []
        for conds, x_in, timestep, model_options in branches:
            total = x_in.size(0)
            shape = [total] + [1] * (x_in.ndim - 1)
            state.append({
                "final": [torch.zeros_like(x_in) for _ in conds],
                "counts": [(torch.ones if relative else torch.zeros)(shape, device=x_in.device) for _ in conds],
                "biases": [[0.0] * total for _ in conds],
                "topts": model_options.setdefault("transformer_options", {})})
        started = []
        try:
            for conds, x_in, timestep, model_options in branches:
                compat.run_callbacks(core, "execute_start", core, model, x_in, conds, timestep, model_options)
                started.append((conds, x_in, timestep, model_options))
            for idx, index in enumerate(windows):
                for (conds, x_in, timestep, model_options), st in zip(branches, state):
                    compat.throw_if_interrupted()
                    self._evaluate(calc_cond_batch, model, conds, x_in, timestep, model_options, st, idx, index,
                                   len(windows))
                if after_window is not None:
                    after_window()
            if not relative:
                for st in state:
                    st["final"] = [c / n for c, n in zip(st["final"], st["counts"])]
            return [st["final"] for st in state]
        finally:
            for conds, x_in, timestep, model_options in started:
                compat.run_callbacks(core, "execute_cleanup", core, model, x_in, conds, timestep, model_options)

    def _evaluate(self, calc_cond_batch, model, conds, x_in, timestep, model_options, st, idx, index, count):
        """One window of one branch: [anchor +] window evaluated, guests dropped, fused by core."""
        core = self.handler
        total = x_in.size(0)
        layout = FrameLayout.window(total, index, with_anchor=True)
        evaluated = compat.context_window(list(layout.index))
        compat.run_callbacks(core, "evaluate_context_windows", core, model, x_in, conds, timestep,
                             model_options, idx, evaluated, model_options, None, None)
        sub_x = evaluated.get_tensor(x_in)
        sub_t = evaluated.get_tensor(timestep, dim=0) if timestep.ndim and timestep.shape[0] == total else timestep
        sub_conds = [core.get_resized_cond(c, x_in, evaluated) for c in conds]
        own = list(layout.own)

        def window_call(x):
            topts = st["topts"]
            before = {k: topts[k] for k in WINDOW_KEYS if k in topts}
            topts.update({"context_window": evaluated, LAYOUT_KEY: layout})
            try:
                with window_hints(sub_conds, total, layout.index):
                    out = calc_cond_batch(model, sub_conds, x, sub_t, model_options)
            finally:
                for k in WINDOW_KEYS:
                    topts.pop(k, None)
                topts.update(before)
            return [o[own] for o in out] if len(own) != layout.frames else out
        if torch.is_grad_enabled():
            # null-text optimisation backpropagates through every window of a step: each window's
            # activations are recomputed in the backward pass instead of kept (memory of one window,
            # not of the clip; the same gradients). The call sets its own window, as the recomputation
            # runs after this loop has moved on.
            out = torch.utils.checkpoint.checkpoint(window_call, sub_x, use_reentrant=False)
        else:
            out = window_call(sub_x)
        core.combine_context_window_results(x_in, out, sub_conds, compat.context_window(index), idx, count,
                                            timestep, st["final"], st["counts"], st["biases"])


HINT_STATE = ("cond_hint_original", "cond_hint", "control_input")   # a control's hint and what it derived from it


def _controls(conds):
    """Every control object (ControlNet, T2I-Adapter, ... and the ones each chains) of the conds."""
    seen = []
    for cond in conds:
        for c in cond or ():
            control = c.get("control") if isinstance(c, dict) else None
            while control is not None and all(control is not o for o in seen):
                seen.append(control)
                control = getattr(control, "previous_controlnet", None)
    return seen


@contextlib.contextmanager
def window_hints(conds, total: int, index):
    """A control whose hint has one image per frame of the clip sees the window's frames (rows
    `index`, the anchor guest included) during one window's call, and its own hint again after.
    core's handler (0.3.5x-0.3.7x) passes controls through unchanged, and a control then cuts a
    too-long hint to its first frames: every window would be guided by the clip's first frames."""
    saved = []
    try:
        for control in _controls(conds):
            hint = getattr(control, "cond_hint_original", None)
            if torch.is_tensor(hint) and hint.ndim == 4 and hint.shape[0] == total and total > 1:
                saved.append((control, {k: getattr(control, k) for k in HINT_STATE if hasattr(control, k)}))
                control.cond_hint_original = hint[list(index)]
                for k in HINT_STATE[1:]:
                    if hasattr(control, k):
                        setattr(control, k, None)       # derived again from the window's hint
        yield
    finally:
        for control, state in saved:
            for k, v in state.items():
                setattr(control, k, v)


def install(model_options: dict, frames: int):
    """Put AnchoredWindows around the context handler of a run's model_options (a copy the run
    owns). No-op without a handler or when it is installed already."""
    handler = model_options.get(HANDLER_KEY)
    if handler is not None and not isinstance(handler, AnchoredWindows):
        model_options[HANDLER_KEY] = AnchoredWindows(handler, frames)
    return model_options


def random_window(handler, frames: int):
    """Tuning's draw: `draw(generator) -> FrameLayout` of one window of `context_length`
    consecutive frames at a uniformly random start, with the anchor as a guest (None when the
    clip fits in one window)."""
    if handler is None or int(handler.context_length) >= frames:
        return None
    length = int(handler.context_length)

    def draw(generator):
        start = int(torch.randint(0, frames - length + 1, (1,), generator=generator))
        return FrameLayout.window(frames, range(start, start + length), with_anchor=True)
    return draw
