"""Shared Null-Text Invert, Save Inversion (VP2P), Load Inversion (VP2P).

The inversion evaluates the input MODEL through ComfyUI's own sampling path
(`unet.run_in_comfy`: a CFGGuider with the source CONDITIONING as positive and the empty one as
negative, `calc_cond_batch` / `sampling_function` on the processed conds), so a ControlNet or
T2I-Adapter applied to them, hooks, wrappers and cfg functions are part of the inversion. The
optimised null replaces only the embedding of the processed uncond entries. The MODEL is never
modified: while the null embedding is optimised, the parameters of the loaded UNet (and of the
additional models ComfyUI loaded, e.g. ControlNets) are swapped for grad-free ones (copies where
ComfyUI created them as inference tensors, which autograd cannot save) and the LayerNorm hooks of
`autograd_safe` are added; both are undone in `finally`, also on interrupt or error. No patch
is added to the MODEL. Progress shows a latent preview of the frames (ComfyUI's previewer).

The reconstruction output is the guided DDIM from x_T computed with the same calls and the
same arithmetic as the Decoupled Sampler's source branch, so the two are bit-identical.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time

import torch

import comfy.model_management as mm

from ..vp2p_core import inversion as core
from ..vp2p_core.sampling import guided_ddim
from ..vp2p_core.schedule import ddim_uniform
from . import store
from .checks import check_eps_model, cond_tensor, context_dim, fail, latent_video
from .fingerprint import latent_fingerprint, model_fingerprint
from .grad import autograd_safe, grad_mode, swapped_weights
from .progress import Progress, throw_if_interrupted
from .text import conditioning_text
from .unet import compute_dtype, conditioning_of, run_in_comfy

FORMAT = "vp2p-inversion"
VERSION = "2"
TENSORS = ("x_T", "sigmas", "null_embeddings", "source_cond", "empty_cond", "trajectory")
log = logging.getLogger("video-p2p")


@dataclasses.dataclass
class Inversion:
    """VP2P_INVERSION: everything a sampler needs to retrace (and edit) the inverted video."""
    x_T: torch.Tensor               # [F,4,h,w] float32 CPU, model space, the noisy x at sigmas[0]
    sigmas: torch.Tensor            # [n+1] float32 CPU, ComfyUI ddim_uniform, ends in 0
    null_embeddings: torch.Tensor   # [n,1,tokens,C] float32 CPU; index i used from sigmas[i] to sigmas[i+1]
    #                                 ([n,F,tokens,C] only from invert_video(per_frame=True), an ablation)
    source_cond: torch.Tensor       # [1,tokens,C] float32 CPU
    cfg: float
    mode: str
    model_fingerprint: str
    latent_fingerprint: str
    frames: int
    latent_hw: tuple
    empty_cond: torch.Tensor = None  # [1,tokens,C] the empty-prompt embedding the nulls started from
    steps: int = 0                   # the steps requested (len(sigmas)-1 may be larger, see schedule)
    inner_iterations: int = 0
    fixed_point_iterations: int = 0
    losses: list = dataclasses.field(default_factory=list)      # per step, VP-space MSE of the retrace
    iterations: list = dataclasses.field(default_factory=list)  # per step, optimiser updates
    seconds: float = 0.0
    trajectory: torch.Tensor = None  # [n+1,F,4,h,w] float32 CPU, model space, traj[i] at sigmas[i]
    #                                  (direct-inversion only: where the source branch is put back)
    source_text: str = None          # the source prompt's text when the P2P Controller encoded it

    @property
    def n_steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def source_cfg(self) -> float:
        """Guidance of the source branch (vp2p_core.inversion.MODES: 1 for fast and direct-inversion)."""
        return core.MODES[self.mode].source_cfg(self.cfg)


def canonical_mode(mode: str) -> str:
    """The mode a (possibly saved-by-an-earlier-version) value means now; a clear error if unknown."""
    now = core.mode_named(mode)
    if now is None:
        offered = ", ".join(m for m, spec in core.MODES.items() if spec.offered)
        fail(f"mode must be one of {offered} (got {mode!r}).")
    return now


# --------------------------------------------------------------------------- inversion
def _check_inputs(model, latent, conditioning, empty_conditioning, steps, cfg, mode, inner_iterations,
                  fixed_point_iterations):
    if int(steps) < 2:
        fail(f"steps must be at least 2 (got {steps}).")
    if not float(cfg) > 0:
        fail(f"cfg must be > 0 (got {cfg}); use the cfg you will edit with (7.5 in the paper).")
    if int(fixed_point_iterations) < 0:
        fail(f"fixed_point_iterations must be >= 0 (got {fixed_point_iterations}).")
    if core.MODES[mode].optimises_null and int(inner_iterations) < 1:
        fail(f"inner_iterations must be at least 1 for null-text (got {inner_iterations}); "
                   "use mode 'direct-inversion' or 'fast' for no optimisation.")
    check_eps_model(model)
    video = latent_video(latent)
    cond = cond_tensor(conditioning, model, "source conditioning")
    empty = cond_tensor(empty_conditioning, model, "empty_conditioning")
    for what, t in (("source conditioning", cond), ("empty_conditioning", empty)):
        if t.ndim != 3 or t.shape[0] != 1:
            fail(f"{what} must hold one prompt ([1, tokens, C]); got {tuple(t.shape)}.")
    if cond.shape != empty.shape:
        fail(f"source conditioning {tuple(cond.shape)} and empty_conditioning {tuple(empty.shape)} "
                   "differ in token count: keep the source prompt within 75 tokens.")
    return video, cond.float(), empty.float()


def invert_video(model, latent, conditioning, empty_conditioning, steps=50, cfg=7.5, mode="null-text",
                 inner_iterations=10, fixed_point_iterations=0, per_frame=False, gradient_checkpointing=True):
    """Returns (Inversion, reconstruction LATENT). per_frame (one null per frame, [n,F,tokens,C])
    exists for ablations; the node always shares one null across frames as the paper does.
    mode: a key of vp2p_core.inversion.MODES (the node offers those marked `offered`).
    gradient_checkpointing: the null optimisation's backward recomputes each transformer block of
    an inflated model instead of keeping its activations (same gradients, less memory)."""
    mode = canonical_mode(mode)
    video, cond, empty = _check_inputs(model, latent, conditioning, empty_conditioning, steps, cfg, mode,
                                       inner_iterations, fixed_point_iterations)
    frames, hw = video.shape[0], tuple(video.shape[-2:])
    fp_model, fp_latent = model_fingerprint(model), latent_fingerprint(video)
    start = time.perf_counter()
    sampling = model.get_model_object("model_sampling")
    sigmas = ddim_uniform(int(steps), sampling.sigmas.detach().float().cpu())
    n = len(sigmas) - 1
    bar = Progress(2 * n, preview=model)
    seen = {}

    def progress(stage, i, n_, loss):   # inversion fills the first half of the bar, the rest the second
        bar.update(i + 1 + (0 if stage == "invert" else n), x0=seen.get("x0"))

    optimise = core.MODES[mode].optimises_null

    def body(ev):
        dev = ev.device
        stack = contextlib.ExitStack()
        with stack:
            if optimise:
                for module in [ev.diffusion_model] + ev.additional_modules():
                    stack.enter_context(autograd_safe(module))
                    stack.enter_context(swapped_weights(module))
            else:
                stack.enter_context(torch.no_grad())
            x0 = ev.to_model_space(video).clone()
            sig = sigmas.to(dev).clone()
            c, e = cond.to(dev).clone(), empty.to(dev).clone()

            def denoise(x, sigma, ctx, is_cond):
                # the source prompt is the positive cond as ComfyUI processed it; any other
                # embedding (the null being optimised, the empty prompt) is the uncond's
                den = ev.denoise(x, sigma, True) if is_cond and ctx is c else ev.denoise(x, sigma, is_cond, ctx)
                seen["x0"] = den.detach()
                return den

            def cfg_denoise(x, sigma, cond_, uncond, g):   # cond_ is always the source prompt
                den = ev.cfg_denoise(x, sigma, g, uncond)
                seen["x0"] = den.detach()
                return den

            throw_if_interrupted()
            res = core.invert(denoise, cfg_denoise, x0, sig, c, e, float(cfg), mode, int(inner_iterations),
                              per_frame, int(fixed_point_iterations), throw_if_interrupted, progress,
                              compute_dtype=compute_dtype(ev))
            return res, ev.to_latent_space(res.reconstruction.detach())

    try:
        with grad_mode():
            extra = {"vp2p_grad_checkpoint": True} if optimise and gradient_checkpointing else None
            res, recon = run_in_comfy(model, conditioning, empty_conditioning, video.shape, sigmas, body, extra)
    finally:
        bar.close()
        mm.soft_empty_cache()
    inv = Inversion(
        x_T=res.x_T.detach().float().cpu(), sigmas=sigmas.clone(), null_embeddings=res.nulls.detach().float().cpu(),
        source_cond=cond.detach().cpu().clone(), cfg=float(cfg), mode=mode, model_fingerprint=fp_model,
        latent_fingerprint=fp_latent, frames=int(frames), latent_hw=hw, empty_cond=empty.detach().cpu().clone(),
        steps=int(steps), inner_iterations=int(inner_iterations),
        fixed_point_iterations=int(fixed_point_iterations), losses=list(res.losses),
        iterations=list(res.iterations), seconds=time.perf_counter() - start,
        trajectory=torch.stack([t.detach().float().cpu() for t in res.trajectory])
        if core.MODES[mode].keeps_trajectory else None, source_text=conditioning_text(conditioning))
    if res.skipped:
        log.warning("inversion: %d null updates skipped for fp16 gradient overflow", res.skipped)
    log.info("inversion: %s, %d frames, %d steps, %.1f s, final retrace MSE %.2e", mode, frames, n, inv.seconds,
             inv.losses[-1] if inv.losses else float("nan"))
    return inv, {"samples": recon}


def reconstruct(model, inv: Inversion):
    """The Decoupled Sampler's source branch without control (guided DDIM from x_T with the
    per-step nulls; for direct inversion the end of the trajectory): a loaded inversion's preview.
    Evaluated through ComfyUI's sampling path with the stored source and empty embeddings."""
    if core.MODES[inv.mode].keeps_trajectory:     # the source branch ends on the trajectory
        latent_format = model.get_model_object("latent_format")
        return {"samples": latent_format.process_out(inv.trajectory[-1].float()).cpu()}
    source = inv.source_cond.float()
    empty = inv.empty_cond.float() if inv.empty_cond is not None else inv.null_embeddings[0].float()

    def body(ev):
        dev = ev.device
        c = source.to(dev)

        def cfg_denoise(x, sigma, cond, uncond, g):
            return ev.cfg_denoise(x, sigma, g, uncond)

        with torch.no_grad():
            x, _ = guided_ddim(cfg_denoise, inv.x_T.to(dev).float(), inv.sigmas.to(dev), c,
                               inv.null_embeddings, inv.source_cfg, check=throw_if_interrupted)
        return ev.to_latent_space(x)

    samples = run_in_comfy(model, conditioning_of(source), conditioning_of(empty), inv.x_T.shape, inv.sigmas, body)
    return {"samples": samples}


# --------------------------------------------------------------------------- files
MAKER = "save one with Save Inversion (VP2P)"


def list_inversions() -> list[str]:
    return store.list_files(FORMAT)


def inversion_file_problem(name: str) -> str | None:
    """What is wrong with an inversion file (None when it opens): Load Inversion's validation."""
    return store.problem(name, FORMAT, "inversion", MAKER)[0]


def inversion_payload(inv: Inversion) -> tuple[dict, dict]:
    """(tensors, metadata) of an inversion file: what Save Inversion and the stage cache write."""
    if not isinstance(inv, Inversion):
        fail("expected a VP2P_INVERSION from Shared Null-Text Invert.")
    tensors = {k: getattr(inv, k).detach().float() for k in TENSORS if getattr(inv, k) is not None}
    info = {"cfg": inv.cfg, "mode": inv.mode, "model_fingerprint": inv.model_fingerprint,
            "latent_fingerprint": inv.latent_fingerprint, "frames": inv.frames, "latent_hw": list(inv.latent_hw),
            "steps": inv.steps, "inner_iterations": inv.inner_iterations,
            "fixed_point_iterations": inv.fixed_point_iterations, "losses": inv.losses,
            "iterations": inv.iterations, "seconds": inv.seconds, "source_text": inv.source_text}
    return tensors, {"format": FORMAT, "version": VERSION, "inversion": json.dumps(info)}


def save_inversion(inv: Inversion, filename_prefix: str = "inversion") -> str:
    """Tensors + JSON metadata as safetensors under output/video_p2p/; returns the path."""
    tensors, metadata = inversion_payload(inv)
    path = store.save(filename_prefix, tensors, metadata, default="inversion")
    log.info("saved inversion %s", path)
    return path


def load_inversion(name_or_path: str, model=None, latent=None) -> Inversion:
    """Read an inversion file, checking it against the MODEL (and the video latent if given)."""
    path, meta = store.open_file(name_or_path, FORMAT, "inversion", MAKER)
    info = json.loads(meta["inversion"])
    sd = store.load_tensors(path, "inversion", MAKER)
    mode = core.mode_named(info["mode"], meta.get("version", "1"))   # old files: today's name for the same data
    if mode is None:
        fail(f"'{os.path.basename(path)}' has inversion mode {info['mode']!r}, unknown to this version of "
                        "the pack: update the pack or invert again.")
    if core.MODES[mode].keeps_trajectory and "trajectory" not in sd:
        fail(f"'{os.path.basename(path)}' is a {mode} inversion without its trajectory: invert again.")
    inv = Inversion(x_T=sd["x_T"], sigmas=sd["sigmas"], null_embeddings=sd["null_embeddings"],
                    source_cond=sd["source_cond"], cfg=float(info["cfg"]), mode=mode,
                    model_fingerprint=info["model_fingerprint"], latent_fingerprint=info["latent_fingerprint"],
                    frames=int(info["frames"]), latent_hw=tuple(info["latent_hw"]), empty_cond=sd.get("empty_cond"),
                    steps=int(info["steps"]), inner_iterations=int(info["inner_iterations"]),
                    fixed_point_iterations=int(info.get("fixed_point_iterations", 0)),
                    losses=list(info["losses"]), iterations=list(info["iterations"]), seconds=float(info["seconds"]),
                    trajectory=sd.get("trajectory"), source_text=info.get("source_text"))
    check_compatible(inv, model, latent, os.path.basename(path))
    return inv


def check_compatible(inv: Inversion, model=None, latent=None, what="the inversion"):
    if model is not None:
        fp = model_fingerprint(model)
        if fp != inv.model_fingerprint:
            fail(f"{what} was made with another model (fingerprint {inv.model_fingerprint}, this MODEL "
                            f"{fp}): connect the same checkpoint, inflation, tuning and LoRAs, or invert again.")
        width = context_dim(model)
        if width is not None and inv.source_cond.shape[-1] != width:
            fail(f"{what} has text width {inv.source_cond.shape[-1]}, the model expects {width}.")
    if latent is not None:
        video = latent_video(latent)
        if video.shape[0] != inv.frames:
            fail(f"{what} has {inv.frames} frames but the video latent has {video.shape[0]}: "
                            "load the same frames (count and range) that were inverted.")
        if tuple(video.shape[-2:]) != tuple(inv.latent_hw):
            fail(f"{what} is for latent size {tuple(inv.latent_hw)} (h, w) but the video latent is "
                            f"{tuple(video.shape[-2:])}: use the same video size as when inverting.")
        if latent_fingerprint(video) != inv.latent_fingerprint:
            fail(f"{what} was made from another video (same size and frame count): connect the "
                            "video latent that was inverted, or invert this one.")


