"""DDIM inversion and (shared) null-text optimisation in ComfyUI's sigma space.

Sampling order: step i goes sigmas[i] -> sigmas[i+1] (descending, ending at 0); the inverted
trajectory `traj[i]` is the latent at sigmas[i], traj[n] the clean input and traj[0] = x_T.

The model is reached only through two callables, so this module needs no ComfyUI:
  denoise(x, sigma, context, is_cond) -> denoised x0 prediction of one chunk
      (context [1 or F, tokens, C]; used with grad for the null, without for the rest)
  cfg_denoise(x, sigma, cond, uncond, cfg) -> the guided x0 prediction exactly as the sampler
      that will later consume the nulls computes it.
The guided trajectory during the optimisation is stepped with `cfg_denoise`, so its end is
bit for bit the reconstruction that sampler produces from x_T with the returned nulls.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .precision import LossScaler, needs_loss_scaling
from .sampling import guided_ddim, vp_mse
from .schedule import ddim_step, vp_scale

# The modes differ in what the source branch (the one that must retrace the video) gets: fast is
# the official `--fast` (stored as nulls equal to the source prompt: guided sampling at any cfg is
# then guidance-1 sampling); direct-inversion is PnP Inversion (Ju et al. 2024); ddim-cfg is the
# ablation the paper compares against.


@dataclasses.dataclass(frozen=True)
class InversionMode:
    """What an inversion mode means, read by every floor (node combo and checks, host inversion
    and sampler, benchmarks) instead of re-deriving it from the mode's name."""
    nulls: str                  # per-step null: "optimised" (null-text), "source" or "empty" prompt
    source_guidance: str        # the sampler's source branch: "cfg" (the inversion's) or "1"
    keeps_trajectory: bool      # the trajectory is stored; the source branch is put back on it
    offered: bool               # listed by the node (the others: benchmark ablations)
    summary: str                # what it does, for the node's help
    old_names: tuple = ()       # values earlier versions of the node saved for this mode
    v1_file_names: tuple = ()   # names inversion files of format version 1 stored for it

    @property
    def optimises_null(self) -> bool:
        return self.nulls == "optimised"

    def source_cfg(self, cfg: float) -> float:
        """Guidance of the source branch in the sampler (1: the unconditional half is skipped)."""
        return 1.0 if self.source_guidance == "1" else float(cfg)


# Adding a mode = one entry here (plus, where its flags do not describe it, a branch in invert()).
MODES = {
    "direct-inversion": InversionMode(
        "empty", "1", True, True,
        "no optimisation; the source branch is put back on the inversion trajectory after every step "
        "(PnP Inversion): its reconstruction is the video's own inversion trajectory by construction, "
        "so it reproduces the input whatever the model (the target still edits; as "
        "cheap as plain DDIM inversion; edits as null-text's on the toy benchmark)."),
    "null-text": InversionMode(
        "optimised", "cfg", False, True,
        "optimise one null embedding per step shared by all frames (the paper; ~10x slower)."),
    "fast": InversionMode(
        "source", "1", False, True,
        "the official fast mode, no optimisation, the source branch sampled at guidance 1.",
        old_names=("negative-prompt",), v1_file_names=("negative-prompt",)),
    "ddim-cfg": InversionMode(
        "empty", "cfg", False, False,
        "no optimisation; the empty prompt as null at the inversion's CFG: plain DDIM inversion sampled "
        "with guidance, the ablation the paper compares against.",
        v1_file_names=("fast",)),
}


def mode_named(name: str, file_version: str | None = None) -> str | None:
    """Today's name for a mode value: a node value (old names included), or the mode stored in an
    inversion file of `file_version`; None when unknown."""
    if file_version is None:
        renamed = {old: m for m, spec in MODES.items() for old in spec.old_names}
    elif file_version == "1":
        renamed = {old: m for m, spec in MODES.items() for old in spec.v1_file_names}
    else:
        renamed = {}
    name = renamed.get(name, name)
    return name if name in MODES else None


LR = 1e-2
EARLY_STOP = 1e-5
EARLY_STOP_PER_STEP = 2e-5
REFERENCE_STEPS = 50


@dataclasses.dataclass
class InversionResult:
    x_T: torch.Tensor                 # [F,4,h,w] at sigmas[0]
    nulls: torch.Tensor               # [n, 1 or F, tokens, C] float32; index i used at step i
    trajectory: list                  # n+1 inverted latents, traj[i] at sigmas[i]
    reconstruction: torch.Tensor      # guided DDIM from x_T with the nulls, at sigma 0
    losses: list                      # per step: VP-space MSE of the guided step to the inversion
    iterations: list                  # per step: optimiser updates made (0 without optimisation)
    skipped: int = 0                  # optimiser updates skipped for an fp16 gradient overflow


def reference_index(i: int, n: int) -> float:
    """Step i of n as the matching step of the reference's 50-step schedule: the learning-rate
    decay and early-stop threshold (written for 50 steps) then keep their meaning for any n
    (the raw formula would make the learning rate negative beyond 100 steps)."""
    return i * REFERENCE_STEPS / n


def ddim_invert(denoise: Callable, x0: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                fixed_point_iterations: int = 0, check: Callable | None = None,
                on_step: Callable | None = None) -> list:
    """Deterministic DDIM inversion at guidance 1 (cond only); returns the trajectory.

    Step i is undone by re-using the noise prediction at sigmas[i] on the latent at
    sigmas[i+1] carried to the same VP scale, as the reference (diffusers' DDIM inversion) does:
    the UNet sees the VP latent of the less noisy point with the noisier timestep (no UNet call
    at sigma 0 is needed). Each fixed-point iteration re-evaluates the noise at the current
    estimate of the noisier point, converging to the exact inverse of the sampler's step, so
    guidance-1 sampling then retraces the trajectory almost exactly (one UNet call each)."""
    n = len(sigmas) - 1
    traj = [None] * (n + 1)
    x = x0.float()
    traj[n] = x
    with torch.no_grad():
        for k, i in enumerate(range(n - 1, -1, -1)):
            s, s_next = sigmas[i], sigmas[i + 1]
            guess = x * (vp_scale(s_next) / vp_scale(s))
            for _ in range(1 + int(fixed_point_iterations)):
                if check is not None:
                    check()
                eps = (guess - denoise(guess, s, cond, True).float()) / s
                guess = x + eps * (s - s_next)
            x = guess
            traj[i] = x
            if on_step is not None:
                on_step("invert", k, n, None)
    return traj


def optimise_nulls(denoise: Callable, cfg_denoise: Callable, trajectory: list, sigmas: torch.Tensor,
                   cond: torch.Tensor, null_init: torch.Tensor, cfg: float, inner_iterations: int = 10,
                   per_frame: bool = False, check: Callable | None = None, on_step: Callable | None = None,
                   compute_dtype: torch.dtype | None = None, scaler: LossScaler | None = None):
    """Null-text optimisation along the guided trajectory (Mokady et al.; shared over frames in
    Video-P2P). For each step: a fresh Adam on the null (initialised from the previous step's),
    at most `inner_iterations` updates, stopping once the guided step lands within the threshold
    of the inverted latent; then the guided trajectory advances with the final null.

    The null, the loss and the denoised predictions are fp32 whatever the model computes in.
    `compute_dtype`: the UNet's compute dtype; for fp16 the backward pass is loss-scaled
    (`LossScaler`), since the null's gradient (~1e-7 per element on SD1.5) is an fp16
    subnormal and would be lost. A power-of-two scale is exact, so with fp32 nothing changes.

    Returns (nulls [n, 1 or F, tokens, C], end of the guided trajectory, losses, iterations,
    skipped updates). Requires grad mode; the model's own parameters should not require grad."""
    if scaler is None and needs_loss_scaling(compute_dtype):
        scaler = LossScaler(init_scale=2.0 ** 20)
    n = len(sigmas) - 1
    frames = trajectory[0].shape[0]
    if cfg == 1.0:
        inner_iterations = 0   # guided == conditional: the null has no effect (zero gradient)
    null = null_init.detach().float().clone()
    if per_frame and null.shape[0] == 1:
        null = null.repeat(frames, 1, 1)
    x = trajectory[0]
    nulls, losses, iterations = [], [], []
    skipped = 0
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        target = trajectory[i + 1]
        u = reference_index(i, n)
        threshold = EARLY_STOP + EARLY_STOP_PER_STEP * u
        if check is not None:
            check()
        with torch.no_grad():
            den_c = denoise(x, s, cond, True).float()
        null = null.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([null], lr=LR * (1.0 - u / 100.0))
        updates = 0
        while updates < inner_iterations:
            if check is not None:
                check()
            den_u = denoise(x, s, null, False).float()
            den = den_u + (den_c - den_u) * cfg
            loss = vp_mse(ddim_step(x, den, s, s_next), target, s_next)
            if loss.item() < threshold:
                break
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
            else:
                g = scaler.grad(loss, null)
                del loss, den, den_u
                if g is None:          # overflowed at every scale: skip, as GradScaler does
                    skipped += 1
                    updates += 1
                    continue
                null.grad = g
            opt.step()
            updates += 1
        null = null.detach()
        del opt
        with torch.no_grad():
            if check is not None:
                check()
            den = cfg_denoise(x, s, cond, null, cfg)
            x = ddim_step(x, den, s, s_next)
            losses.append(float(vp_mse(x, target, s_next)))
        nulls.append(null.clone())
        iterations.append(updates)
        if on_step is not None:
            on_step("optimise", i, n, losses[-1])
    return torch.stack(nulls), x, losses, iterations, skipped


def invert(denoise: Callable, cfg_denoise: Callable, x0: torch.Tensor, sigmas: torch.Tensor,
           cond: torch.Tensor, empty: torch.Tensor, cfg: float, mode: str = "null-text",
           inner_iterations: int = 10, per_frame: bool = False, fixed_point_iterations: int = 0,
           check: Callable | None = None, on_step: Callable | None = None,
           compute_dtype: torch.dtype | None = None) -> InversionResult:
    """Invert a video latent (model space, [F,4,h,w]) for CFG sampling at `cfg`.

    mode (a key of MODES) "null-text": optimised nulls (shared by all frames, or one per frame with per_frame);
    "fast": every null is the source `cond` (guided sampling then IS guidance-1 sampling; the
    reconstruction is computed at guidance 1); "direct-inversion": nulls are `empty` and the
    reconstruction is the end of the inversion trajectory, where the sampler's source branch
    is put back after every step (exact by construction); "ddim-cfg": every null is `empty`,
    sampled at `cfg` (plain DDIM inversion under guidance; an ablation).
    `empty`/`cond`: [1, tokens, C]. Needs grad mode only for "null-text"."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {tuple(MODES)} (got {mode!r})")
    spec = MODES[mode]
    n = len(sigmas) - 1
    frames = x0.shape[0]
    traj = ddim_invert(denoise, x0, sigmas, cond, fixed_point_iterations, check, on_step)
    skipped = 0
    if spec.optimises_null:
        nulls, recon, losses, iters, skipped = optimise_nulls(
            denoise, cfg_denoise, traj, sigmas, cond, empty, cfg, inner_iterations, per_frame, check, on_step,
            compute_dtype)
    else:
        base = (cond if spec.nulls == "source" else empty).detach().float()
        one = base.repeat(frames, 1, 1) if per_frame else base
        nulls = one.unsqueeze(0).repeat(n, 1, 1, 1)
        if spec.keeps_trajectory:
            recon, losses = traj[n], [0.0] * n
        else:
            recon, losses = guided_ddim(cfg_denoise, traj[0], sigmas, cond, nulls, spec.source_cfg(cfg), traj,
                                        check, on_step)
        iters = [0] * n
    return InversionResult(x_T=traj[0], nulls=nulls, trajectory=traj, reconstruction=recon,
                           losses=losses, iterations=iters, skipped=skipped)
