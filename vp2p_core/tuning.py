"""Tuning an inflated model on one video (Video-P2P / Tune-A-Video recipe).

Only the frame-attention query (attn1.to_q), the cross-attention query (attn2.to_q) and
the temporal attention (with its norm) are trained, with the epsilon-prediction MSE of the
video latents under the source prompt: one random timestep and one noise draw per step for
the whole video (all frames share the timestep). AdamW (lr 3e-5, weight decay 1e-2), gradient
norm clipped to 1.0. Noise and timesteps come from a seeded CPU generator, so a run is
reproducible on any device.

The loop is host-agnostic: the caller provides `predict_eps(x, sigma)` (the model on the
noised latents, in sigma space: x = x0 + sigma * eps) and the parameters to train.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

TRAINABLE_SUFFIXES = ("attn1.to_q.weight", "attn1.to_q.bias", "attn2.to_q.weight", "attn2.to_q.bias")


def is_trainable(name: str) -> bool:
    """The parameter selection of the method (a state-dict name of the UNet)."""
    return name.endswith(TRAINABLE_SUFFIXES) or "temporal" in name


@dataclass
class TuneConfig:
    steps: int = 300
    lr: float = 3e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    seed: int = 33
    betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8

    def check(self):
        if int(self.steps) <= 0:
            raise ValueError(f"steps must be >= 1 (got {self.steps})")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0 (got {self.lr})")
        return self


def training_sample(x0: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator):
    """One training example: (x0 + sigma*eps, sigma, eps) with t ~ U{0..T-1} shared by the video."""
    t = int(torch.randint(0, len(sigmas), (1,), generator=generator))
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
    sigma = sigmas[t].to(x0.device, x0.dtype)
    return x0 + sigma * eps, sigma, eps


def eps_mse(pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(pred.float(), eps.float(), reduction="mean")


@torch.no_grad()
def eval_loss(predict_eps: Callable, x0, sigmas, samples: int = 4, seed: int = 0) -> float:
    """Mean epsilon MSE over a fixed set of (timestep, noise) draws: a noise-free progress measure."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(samples):
        x, sigma, eps = training_sample(x0, sigmas, g)
        total += float(eps_mse(predict_eps(x, sigma), eps))
    return total / samples


def tune(params: Sequence[torch.Tensor], predict_eps: Callable, x0: torch.Tensor, sigmas: torch.Tensor,
         config: TuneConfig, callback: Callable | None = None, autocast: contextlib.AbstractContextManager | None = None,
         scaler=None, window: Callable | None = None) -> list[float]:
    """Run the tuning loop in place on `params` (leaf tensors requiring grad); returns the losses.

    callback(step, total, loss) runs after every step; raising from it (an interrupt) stops
    the loop, leaving `params` at the last completed step. `autocast` is a context factory
    used around the forward; `scaler` a loss scaler (precision.LossScaler, or a torch.amp.GradScaler)
    whenever the backward pass runs in fp16. `window(generator) -> FrameLayout` (long clips): each
    step trains on the frames of one drawn window (`predict_eps(x, sigma, layout)`), the loss on
    the window's own frames, so memory is bounded by the window (Tune-A-Video samples frames too)."""
    config.check()
    params = list(params)
    for p in params:
        if not (p.is_leaf and p.requires_grad):
            raise ValueError("tune(): every trained tensor must be a leaf that requires grad")
    opt = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.adam_eps,
                            weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(int(config.seed))
    losses = []
    try:
        for step in range(int(config.steps)):
            layout = window(gen) if window is not None else None
            x, sigma, eps = training_sample(x0 if layout is None else x0[list(layout.index)], sigmas, gen)
            with (autocast() if autocast is not None else contextlib.nullcontext()):
                pred = predict_eps(x, sigma) if layout is None else predict_eps(x, sigma, layout)
            if layout is not None and layout.guests:
                own = list(layout.own)
                pred, eps = pred[own], eps[own]
            loss = eps_mse(pred, eps)
            scaled = scaler.scale(loss) if scaler is not None else loss
            grads = torch.autograd.grad(scaled, params, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.to(p.dtype)  # unused: skipped, as AdamW does
            del grads, pred, scaled
            if scaler is not None:
                scaler.unscale_(opt)
            if config.max_grad_norm and config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if callback is not None:
                callback(step, int(config.steps), losses[-1])
    finally:
        opt.zero_grad(set_to_none=True)
        for p in params:
            p.grad = None
    return losses
