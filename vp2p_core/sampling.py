"""The sampling loops of Video-P2P, written against callables (k-diffusion style).

- `guided_ddim`: classifier-free guided DDIM from x_T with one null (unconditional) embedding
  per step. It is the inversion's reconstruction, the retrace loop of null-text inversion's
  evaluation and the source branch of an uncontrolled edit: one loop for all of them.
- `two_branch_step` / `two_branch_ddim`: the Video-P2P edit. Source and target branches start
  from the same x_T; both are evaluated (the host runs them through ComfyUI with attention
  control), the DDIM step advances both, and step hooks (prompt-to-prompt's `step_callback`,
  e.g. the local blend) may rewrite the target after each step. In the pack ComfyUI's own
  sampler runs the loop: the host's guider applies `two_branch_step` and hands the sampler
  `landing_denoised` predictions, so a rewritten step lands where the loop puts it.
All steps are `schedule.ddim_step`, ComfyUI's "ddim" sampler step.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .schedule import ddim_step, vp_scale


def vp_mse(a: torch.Tensor, b: torch.Tensor, sigma) -> torch.Tensor:
    """MSE between two latents at `sigma`, measured on the VP latents the UNet sees (the space of
    the reference's thresholds); at sigma 0 it is the plain MSE."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=a.device)
    return ((a.float() - b.float()) * vp_scale(s)).pow(2).mean()


def guided_ddim(cfg_denoise: Callable, x_T: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                nulls: torch.Tensor, cfg: float, trajectory: Sequence | None = None,
                check: Callable | None = None, on_step: Callable | None = None):
    """CFG-guided DDIM from x_T: step i uses `cfg_denoise(x, sigmas[i], cond, nulls[i], cfg)`.
    Returns (x at sigmas[-1], per-step VP MSE to `trajectory[i+1]`, or [] without one)."""
    n = len(sigmas) - 1
    x = x_T
    losses = []
    with torch.no_grad():
        for i in range(n):
            if check is not None:
                check()
            den = cfg_denoise(x, sigmas[i], cond, nulls[i].to(x.device), cfg)
            x = ddim_step(x, den, sigmas[i], sigmas[i + 1])
            if trajectory is not None:
                losses.append(float(vp_mse(x, trajectory[i + 1], sigmas[i + 1])))
            if on_step is not None:
                on_step("sample", i, n, losses[-1] if losses else None)
    return x, losses


def two_branch_step(i: int, n: int, x_src, x_tgt, den_src, den_tgt, sigma, sigma_next,
                    source_trajectory: Sequence | None = None, step_hooks: Sequence[Callable] = ()):
    """One step of the Video-P2P loop from both branches' denoised predictions -> the next
    (x_src, x_tgt). `step_hooks`: `hook(i, n, x_src, x_tgt) -> x_tgt` after the step (in order);
    `source_trajectory` (direct inversion): the source is put back on `source_trajectory[i+1]`."""
    if source_trajectory is not None:
        x_src = source_trajectory[i + 1].to(x_tgt.device).float()
    else:
        x_src = ddim_step(x_src, den_src, sigma, sigma_next)
    x_tgt = ddim_step(x_tgt, den_tgt, sigma, sigma_next)
    for hook in step_hooks:
        x_tgt = hook(i, n, x_src, x_tgt)
    return x_src, x_tgt


def landing_denoised(x: torch.Tensor, x_next: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """The denoised prediction whose DDIM step from x (at sigma) lands on x_next (at sigma_next):
    how a step that the loop rewrites (local blend, direct inversion) is handed to a sampler that
    only takes predictions. x_next = a * x + (1 - a) * denoised with a = sigma_next / sigma."""
    a = sigma_next / sigma
    return (x_next - x * a) / (1 - a)


def two_branch_ddim(denoise_step: Callable, x_T: torch.Tensor, sigmas: torch.Tensor,
                    source_trajectory: Sequence | None = None, step_hooks: Sequence[Callable] = (),
                    check: Callable | None = None, on_step: Callable | None = None):
    """The Video-P2P loop (the reference the host's guider is checked against: there ComfyUI's
    sampler runs the loop and `two_branch_step` each step). `denoise_step(i, x_src, x_tgt) ->
    (denoised_src, denoised_tgt)`; hooks and trajectory as in `two_branch_step`. -> (x_src, x_tgt)."""
    n = len(sigmas) - 1
    x_src = x_T
    x_tgt = x_T.clone()
    for i in range(n):
        if check is not None:
            check()
        den_src, den_tgt = denoise_step(i, x_src, x_tgt)
        x_src, x_tgt = two_branch_step(i, n, x_src, x_tgt, den_src, den_tgt, sigmas[i], sigmas[i + 1],
                                       source_trajectory, step_hooks)
        if on_step is not None:
            on_step(i, n)
    return x_src, x_tgt
