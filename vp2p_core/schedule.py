"""Noise schedule of SD1.x in ComfyUI's sigma space, and the DDIM step in that space.

ComfyUI's EPS models hold x = x0 + sigma * eps (not the VP latent sqrt(a) x0 + sqrt(1-a) eps)
and its "ddim" sampler is Euler in sigma: x_next = x0_pred + sigma_next * eps_pred, which is
the deterministic DDIM update written in that space. Everything here is computed the way
ComfyUI computes it, so the schedules are bit-identical to what its KSampler uses.
"""
from __future__ import annotations

import torch

SD1_BETA_START = 0.00085
SD1_BETA_END = 0.012
SD1_TIMESTEPS = 1000


def sd1_sigmas(timesteps: int = SD1_TIMESTEPS, beta_start: float = SD1_BETA_START,
               beta_end: float = SD1_BETA_END) -> torch.Tensor:
    """The discrete sigma table of SD1.x ("scaled_linear" betas), float32, ascending.

    Same arithmetic as ComfyUI's ModelSamplingDiscrete (float64, then one cast), so equal
    bit for bit to `model_sampling.sigmas` of an SD1 model."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def ddim_uniform(steps: int, table: torch.Tensor | None = None) -> torch.Tensor:
    """ComfyUI's "ddim_uniform" scheduler: every (T // steps)-th sigma from index 1, descending,
    then 0.

    ComfyUI's quirk is kept on purpose: the stride is T // steps, so a step count that does not
    divide T can give MORE than steps + 1 sigmas (steps=7 on 1000 timesteps gives 8 steps,
    steps=600 gives 999). The number of sampling steps is therefore always len(result) - 1,
    never `steps`. `table` is the model's discrete sigma table (default: SD1's)."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1 (got {steps})")
    table = sd1_sigmas() if table is None else table
    stride = max(len(table) // int(steps), 1)
    picked = [float(table[i]) for i in range(1, len(table), stride)]
    return torch.tensor(picked[::-1] + [0.0], dtype=torch.float32)


def vp_scale(sigma: torch.Tensor) -> torch.Tensor:
    """1/sqrt(1 + sigma^2): maps ComfyUI's x at sigma to the VP latent the UNet actually sees."""
    return (sigma * sigma + 1.0).rsqrt()


def ddim_step(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """One step of ComfyUI's "ddim" sampler (same expression as its Euler sampler, so the same
    bits)."""
    d = (x - denoised) / sigma
    return x + d * (sigma_next - sigma)
