"""Video-level GroupNorm: statistics over all frames of one video, per-channel affine unchanged.

A GroupNorm module sees only [n*F, C, H, W]; the frame count of the current UNet call is
published by whoever drives the call (`video_frames(F)` around it) and read here. The mixin
is applied to a copy of the host's GroupNorm class, so the host's own forward (weight casts,
low-VRAM hooks) still runs, just on a [n, C, F, H, W] view.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

_FRAMES: contextvars.ContextVar = contextvars.ContextVar("vp2p_video_frames", default=None)


class FramesUnknownError(RuntimeError):
    """A video-level norm ran outside `video_frames(...)`."""


@contextlib.contextmanager
def video_frames(frames: int):
    token = _FRAMES.set(int(frames))
    try:
        yield
    finally:
        _FRAMES.reset(token)


def current_frames():
    return _FRAMES.get()


def to_video(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[n*F, C, ...] -> [n, C, F, ...] (a view when possible)."""
    if x.shape[0] % frames:
        raise ValueError(f"video norm: batch {x.shape[0]} is not a multiple of {frames} frames")
    v = x.reshape(x.shape[0] // frames, frames, *x.shape[1:])
    return v.transpose(1, 2)


def from_video(v: torch.Tensor) -> torch.Tensor:
    """[n, C, F, ...] -> [n*F, C, ...]."""
    v = v.transpose(1, 2)
    return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])


def video_group_norm(x, frames: int, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Functional form: GroupNorm whose statistics span the F frames of each video."""
    if frames == 1:
        return F.group_norm(x, num_groups, weight, bias, eps)
    return from_video(F.group_norm(to_video(x, frames), num_groups, weight, bias, eps))


class VideoNormMixin:
    """Put before a GroupNorm class: forward normalises over all frames of each video.

    Attributes read from the instance: `vp2p_video_norm` (bool, off -> plain GroupNorm),
    `vp2p_where` (name used in errors)."""

    vp2p_video_norm = True
    vp2p_where = "video norm"

    def forward(self, x):
        if not self.vp2p_video_norm:
            return super().forward(x)
        frames = _FRAMES.get()
        if frames is None:
            raise FramesUnknownError(
                f"{self.vp2p_where}: the video-level norm did not receive the frame count. A node applied "
                "after it probably replaced the model function wrapper; apply that node before it, "
                "or turn video_norm off.")
        if frames == 1:
            return super().forward(x)
        return from_video(super().forward(to_video(x, frames)))
