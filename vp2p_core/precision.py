"""Gradients through a UNet that computes in fp16.

The gradients this method needs are tiny: the null-text loss is a mean over every latent
element of a video (~1e-7 per element at the UNet output on SD1.5), tuning's epsilon MSE
~5e-6. In fp16 these are subnormal or zero, so backpropagating through an fp16 UNet without
help silently loses them (the null barely moves). `LossScaler` multiplies the loss by a power
of two before the backward pass (exact in floating point), divides the fp32 gradients by it
afterwards, and halves the scale whenever a gradient overflowed (that update is skipped),
growing it again after a run of good updates: the usual dynamic loss scaling of mixed
precision training, written for both the null optimisation and tuning.

Its interface is the subset of `torch.amp.GradScaler` the tuning loop uses (scale, unscale_,
step, update), plus `grad()` for a single tensor; it runs on any device.
"""
from __future__ import annotations

import torch

LOW_PRECISION = (torch.float16,)       # bf16 has fp32's exponent range: no underflow, no scaling


def needs_loss_scaling(dtype) -> bool:
    return dtype in LOW_PRECISION


class LossScaler:
    def __init__(self, init_scale: float = 2.0 ** 16, growth_interval: int = 20, max_scale: float = 2.0 ** 24,
                 min_scale: float = 1.0):
        self.value = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.max_scale = float(max_scale)
        self.min_scale = float(min_scale)
        self.good = 0
        self.found_inf = False
        self.skipped = 0

    # -- GradScaler-like interface (tuning) ------------------------------------------------
    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.value

    def unscale_(self, optimizer):
        inv = 1.0 / self.value
        finite = True
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = p.grad.float().mul_(inv).to(p.dtype) if p.grad.dtype != p.dtype else p.grad.mul_(inv)
                    finite = finite and bool(torch.isfinite(p.grad).all())
        self.found_inf = not finite

    def step(self, optimizer):
        if self.found_inf:
            self.skipped += 1
            return
        optimizer.step()

    def update(self):
        if self.found_inf:
            self.value = max(self.value / 2.0, self.min_scale)
            self.good = 0
        else:
            self.good += 1
            if self.good >= self.growth_interval and self.value < self.max_scale:
                self.value = min(self.value * 2.0, self.max_scale)
                self.good = 0
        self.found_inf = False

    # -- one tensor (null-text) ---------------------------------------------------------
    def grad(self, loss: torch.Tensor, param: torch.Tensor, max_retries: int = 24) -> torch.Tensor | None:
        """d loss / d param in fp32, computed through a scaled backward pass; on overflow the scale
        is halved and the backward pass redone on the same graph. None if it never became finite."""
        for _ in range(max_retries + 1):
            (g,) = torch.autograd.grad(loss * self.value, param, retain_graph=True)
            g = g.float() / self.value
            finite = bool(torch.isfinite(g).all())
            self.found_inf = not finite
            self.update()
            if finite:
                return g
            if self.value <= self.min_scale:
                break
        return None
