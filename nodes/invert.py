"""Shared Null-Text Invert, Save Inversion (VP2P), Load Inversion (VP2P).

The inversion runs the input MODEL the way ComfyUI's samplers do (UNetRunner) and never
modifies it: while the null embedding is optimised, the loaded UNet's parameters are swapped
for grad-free ones (copies where ComfyUI created them as inference tensors, which autograd
cannot save) and the LayerNorm hooks of `autograd_safe` are added; both are undone in
`finally`, also on interrupt or error. No patch is added to the MODEL.

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
import comfy.utils
import folder_paths

from ..vp2p_core import inversion as core
from ..vp2p_core.schedule import ddim_uniform
from .fingerprint import latent_fingerprint, model_fingerprint
from .grad_safety import autograd_safe, grad_mode
from .unet_runner import (COND, UNCOND, NodeInputError, UNetRunner, check_eps_model, cond_tensor, context_dim,
                          euler_step, fail, latent_video, throw_if_interrupted)

NODE = "Shared Null-Text Invert"
SAVE_NODE = "Save Inversion (VP2P)"
LOAD_NODE = "Load Inversion (VP2P)"
SUBDIR = "video_p2p"
FORMAT = "vp2p-inversion"
VERSION = "2"
MODES = core.MODES                    # everything invert_video() runs (ddim-cfg: benchmark ablation only)
NODE_MODES = ("direct-inversion", "null-text", "fast")   # what the node offers
DEFAULT_MODE = "direct-inversion"
# values saved by earlier versions of the node -> the mode that does the same thing now
LEGACY_MODES = {"negative-prompt": "fast"}
# modes of inversion files written before VERSION 2, by their stored name
LEGACY_FILE_MODES = {"fast": "ddim-cfg", "negative-prompt": "fast"}
TENSORS = ("x_T", "sigmas", "null_embeddings", "source_cond", "empty_cond", "trajectory")
MODE_HELP = ("direct-inversion: no optimisation; the source branch is put back on the inversion trajectory "
             "after every step (PnP Inversion), so it reconstructs the video exactly while the target edits "
             "(as cheap as plain DDIM inversion; edits as null-text's on the toy benchmark). null-text: "
             "optimise one null embedding per step shared by all frames (the paper; ~10x slower). fast: the "
             "official fast mode, no optimisation, the source branch sampled at guidance 1. (In workflows "
             "saved before the modes were renamed, 'fast' meant plain DDIM at CFG; 'negative-prompt' is the "
             "old name of 'fast'.)")

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

    @property
    def n_steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def source_cfg(self) -> float:
        """Guidance of the source branch: 1 for the official fast mode, else the inversion's cfg."""
        return 1.0 if self.mode in core.GUIDANCE_ONE_MODES else float(self.cfg)


def canonical_mode(node: str, mode: str) -> str:
    """The mode a (possibly saved-by-an-earlier-version) value means now; a clear error if unknown."""
    mode = LEGACY_MODES.get(mode, mode)
    if mode not in MODES:
        fail(node, f"mode must be one of {', '.join(NODE_MODES)} (got {mode!r}).")
    return mode


_told_fast = []


def _tell_fast_changed():
    if not _told_fast:
        _told_fast.append(True)
        log.info("%s: mode 'fast' is the official Video-P2P fast mode (source branch at guidance 1). Workflows "
                 "saved before the modes were renamed got plain DDIM inversion sampled at CFG with it, which "
                 "reconstructs the video much worse; for the paper's method use 'null-text', for exact "
                 "reconstruction at no cost 'direct-inversion'.", NODE)


# --------------------------------------------------------------------------- inversion
@contextlib.contextmanager
def grad_free_weights(diffusion_model):
    """Swap every parameter of the loaded UNet for a grad-free one usable by autograd (a copy
    only where it is an inference tensor); restores the original objects on exit."""
    swaps = []
    try:
        for mod in diffusion_model.modules():
            for name, p in list(mod._parameters.items()):
                if p is None:
                    continue
                swaps.append((mod, name, p))
                mod._parameters[name] = torch.nn.Parameter(p.clone() if p.is_inference() else p.detach(),
                                                           requires_grad=False)
        yield
    finally:
        for mod, name, p in reversed(swaps):
            mod._parameters[name] = p


class _Progress:
    def __init__(self, n):
        self.n = n
        self.pbar = comfy.utils.ProgressBar(2 * n)

    def __call__(self, stage, i, n, loss):
        self.pbar.update_absolute(i + 1 + (0 if stage == "invert" else self.n), 2 * self.n)


def _check_inputs(model, latent, conditioning, empty_conditioning, steps, cfg, mode, inner_iterations,
                  fixed_point_iterations):
    if int(steps) < 2:
        fail(NODE, f"steps must be at least 2 (got {steps}).")
    if not float(cfg) > 0:
        fail(NODE, f"cfg must be > 0 (got {cfg}); use the cfg you will edit with (7.5 in the paper).")
    if int(fixed_point_iterations) < 0:
        fail(NODE, f"fixed_point_iterations must be >= 0 (got {fixed_point_iterations}).")
    if mode == "null-text" and int(inner_iterations) < 1:
        fail(NODE, f"inner_iterations must be at least 1 for null-text (got {inner_iterations}); "
                   "use mode 'direct-inversion' or 'fast' for no optimisation.")
    check_eps_model(NODE, model)
    video = latent_video(NODE, latent)
    cond = cond_tensor(NODE, conditioning, model, "source conditioning")
    empty = cond_tensor(NODE, empty_conditioning, model, "empty_conditioning")
    for what, t in (("source conditioning", cond), ("empty_conditioning", empty)):
        if t.ndim != 3 or t.shape[0] != 1:
            fail(NODE, f"{what} must hold one prompt ([1, tokens, C]); got {tuple(t.shape)}.")
    if cond.shape != empty.shape:
        fail(NODE, f"source conditioning {tuple(cond.shape)} and empty_conditioning {tuple(empty.shape)} "
                   "differ in token count: keep the source prompt within 75 tokens.")
    return video, cond.float(), empty.float()


def compute_dtype(runner):
    """The dtype the UNet computes in (ComfyUI's manual cast dtype, else its weight dtype)."""
    m = runner.model
    dt = getattr(m, "manual_cast_dtype", None)
    if dt is None and hasattr(m, "get_dtype"):
        dt = m.get_dtype()
    return dt


def invert_video(model, latent, conditioning, empty_conditioning, steps=50, cfg=7.5, mode="null-text",
                 inner_iterations=10, fixed_point_iterations=0, per_frame=False):
    """Returns (Inversion, reconstruction LATENT). per_frame (one null per frame, [n,F,tokens,C])
    exists for ablations; the node always shares one null across frames as the paper does.
    mode: one of MODES (the node offers NODE_MODES; "ddim-cfg" is the benchmark ablation)."""
    mode = canonical_mode(NODE, mode)
    if mode == "fast":
        _tell_fast_changed()
    video, cond, empty = _check_inputs(model, latent, conditioning, empty_conditioning, steps, cfg, mode,
                                       inner_iterations, fixed_point_iterations)
    frames, hw = video.shape[0], tuple(video.shape[-2:])
    fp_model, fp_latent = model_fingerprint(model), latent_fingerprint(video)
    start = time.perf_counter()
    runner = UNetRunner(model)
    dev = runner.device
    sigmas = ddim_uniform(int(steps), runner.sampling.sigmas.detach().float().cpu())
    n = len(sigmas) - 1
    extra = {"vp2p_frames": frames}
    progress = _Progress(n)
    dm = runner.model.diffusion_model
    optimise = mode == "null-text"
    try:
        with grad_mode():
            stack = contextlib.ExitStack()
            with stack:
                if optimise:
                    stack.enter_context(autograd_safe(dm))
                    stack.enter_context(grad_free_weights(dm))
                else:
                    stack.enter_context(torch.no_grad())
                x0 = runner.to_model_space(video).clone()
                sig = sigmas.to(dev).clone()
                c, e = cond.to(dev).clone(), empty.to(dev).clone()

                def denoise(x, sigma, ctx, is_cond):
                    return runner.denoise(x, sigma, [ctx], [COND if is_cond else UNCOND], extra)[0]

                def cfg_denoise(x, sigma, cond_, uncond, g):
                    return runner.cfg_denoise(x, sigma, cond_, uncond, g, extra)

                throw_if_interrupted()
                res = core.invert(denoise, cfg_denoise, x0, sig, c, e, float(cfg), mode, int(inner_iterations),
                                  per_frame, int(fixed_point_iterations), throw_if_interrupted, progress,
                                  compute_dtype=compute_dtype(runner))
            recon = runner.to_latent_space(res.reconstruction.detach())
    finally:
        mm.soft_empty_cache()
    inv = Inversion(
        x_T=res.x_T.detach().float().cpu(), sigmas=sigmas.clone(), null_embeddings=res.nulls.detach().float().cpu(),
        source_cond=cond.detach().cpu().clone(), cfg=float(cfg), mode=mode, model_fingerprint=fp_model,
        latent_fingerprint=fp_latent, frames=int(frames), latent_hw=hw, empty_cond=empty.detach().cpu().clone(),
        steps=int(steps), inner_iterations=int(inner_iterations),
        fixed_point_iterations=int(fixed_point_iterations), losses=list(res.losses),
        iterations=list(res.iterations), seconds=time.perf_counter() - start,
        trajectory=torch.stack([t.detach().float().cpu() for t in res.trajectory])
        if mode == "direct-inversion" else None)
    if res.skipped:
        log.warning("%s: %d null updates skipped for fp16 gradient overflow", NODE, res.skipped)
    log.info("%s: %s, %d frames, %d steps, %.1f s, final retrace MSE %.2e", NODE, mode, frames, n, inv.seconds,
             inv.losses[-1] if inv.losses else float("nan"))
    return inv, {"samples": recon}


def reconstruct(model, inv: Inversion):
    """The source branch of the Decoupled Sampler without control: guided DDIM from x_T with the
    per-step nulls (used by tests and for previews of loaded inversions)."""
    runner = UNetRunner(model)
    dev = runner.device
    if inv.trajectory is not None:     # direct inversion: the source branch ends on the trajectory
        return {"samples": runner.to_latent_space(inv.trajectory[-1].to(dev).float())}
    extra = {"vp2p_frames": inv.frames}
    sigmas = inv.sigmas.to(dev)
    x = inv.x_T.to(dev).float()
    cond = inv.source_cond.to(dev)
    with torch.no_grad():
        for i in range(inv.n_steps):
            throw_if_interrupted()
            den = runner.cfg_denoise(x, sigmas[i], cond, inv.null_embeddings[i].to(dev), inv.source_cfg, extra)
            x = euler_step(x, den, sigmas[i], sigmas[i + 1])
    return {"samples": runner.to_latent_space(x)}


# --------------------------------------------------------------------------- files
def inversion_dirs():
    return [os.path.join(folder_paths.get_output_directory(), SUBDIR),
            os.path.join(folder_paths.models_dir, SUBDIR)]


def _file_format(path):
    import safetensors
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:
        return None


def list_inversions():
    names = set()
    for d in inversion_dirs():
        if not os.path.isdir(d):
            continue
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if f.endswith(".safetensors") and _file_format(p) == FORMAT:
                    names.add(os.path.relpath(p, d).replace(os.sep, "/"))
    return sorted(names)


def resolve_inversion(name: str):
    for d in inversion_dirs():
        base = os.path.abspath(d)
        path = os.path.abspath(os.path.join(d, name))
        if os.path.commonpath([path, base]) == base and os.path.isfile(path):
            return path
    return None


def save_inversion(inv: Inversion, filename_prefix: str = "inversion") -> str:
    """Tensors + JSON metadata as safetensors under output/video_p2p/; returns the path."""
    import safetensors.torch
    if not isinstance(inv, Inversion):
        fail(SAVE_NODE, "expected a VP2P_INVERSION from Shared Null-Text Invert.")
    prefix = (filename_prefix or "inversion").strip().lstrip("/").replace("\\", "/") or "inversion"
    out = folder_paths.get_output_directory()
    try:
        folder, filename, counter, _, _ = folder_paths.get_save_image_path(f"{SUBDIR}/{prefix}", out)
    except Exception as e:
        fail(SAVE_NODE, f"cannot save to '{filename_prefix}': {e}; use a plain file name prefix.")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{filename}_{counter:05}_.safetensors")
    tensors = {k: getattr(inv, k).detach().float().cpu().contiguous() for k in TENSORS if getattr(inv, k) is not None}
    info = {"cfg": inv.cfg, "mode": inv.mode, "model_fingerprint": inv.model_fingerprint,
            "latent_fingerprint": inv.latent_fingerprint, "frames": inv.frames, "latent_hw": list(inv.latent_hw),
            "steps": inv.steps, "inner_iterations": inv.inner_iterations,
            "fixed_point_iterations": inv.fixed_point_iterations, "losses": inv.losses,
            "iterations": inv.iterations, "seconds": inv.seconds}
    safetensors.torch.save_file(tensors, path, metadata={"format": FORMAT, "version": VERSION,
                                                         "inversion": json.dumps(info)})
    log.info("%s: saved %s", SAVE_NODE, path)
    return path


def load_inversion(name_or_path: str, model=None, latent=None) -> Inversion:
    """Read an inversion file, checking it against the MODEL (and the video latent if given)."""
    import safetensors
    import safetensors.torch
    path = name_or_path if os.path.isabs(name_or_path) else resolve_inversion(name_or_path)
    if path is None or not os.path.isfile(path):
        fail(LOAD_NODE, f"inversion file '{name_or_path}' not found in output/{SUBDIR}/; "
                        "save one with Save Inversion (VP2P) first.")
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        fail(LOAD_NODE, f"'{os.path.basename(path)}' is not a Video-P2P inversion file.")
    info = json.loads(meta["inversion"])
    sd = safetensors.torch.load_file(path)
    mode = info["mode"]
    if meta.get("version", "1") == "1":   # names of version 1 files: same data, today's name for it
        mode = LEGACY_FILE_MODES.get(mode, mode)
    if mode not in MODES:
        fail(LOAD_NODE, f"'{os.path.basename(path)}' has inversion mode {mode!r}, unknown to this version of "
                        "the pack: update the pack or invert again.")
    if mode == "direct-inversion" and "trajectory" not in sd:
        fail(LOAD_NODE, f"'{os.path.basename(path)}' is a direct inversion without its trajectory: invert again.")
    inv = Inversion(x_T=sd["x_T"], sigmas=sd["sigmas"], null_embeddings=sd["null_embeddings"],
                    source_cond=sd["source_cond"], cfg=float(info["cfg"]), mode=mode,
                    model_fingerprint=info["model_fingerprint"], latent_fingerprint=info["latent_fingerprint"],
                    frames=int(info["frames"]), latent_hw=tuple(info["latent_hw"]), empty_cond=sd.get("empty_cond"),
                    steps=int(info["steps"]), inner_iterations=int(info["inner_iterations"]),
                    fixed_point_iterations=int(info.get("fixed_point_iterations", 0)),
                    losses=list(info["losses"]), iterations=list(info["iterations"]), seconds=float(info["seconds"]),
                    trajectory=sd.get("trajectory"))
    check_compatible(inv, model, latent, os.path.basename(path))
    return inv


def check_compatible(inv: Inversion, model=None, latent=None, what="the inversion"):
    if model is not None:
        fp = model_fingerprint(model)
        if fp != inv.model_fingerprint:
            fail(LOAD_NODE, f"{what} was made with another model (fingerprint {inv.model_fingerprint}, this MODEL "
                            f"{fp}): connect the same checkpoint, inflation, tuning and LoRAs, or invert again.")
        width = context_dim(model)
        if width is not None and inv.source_cond.shape[-1] != width:
            fail(LOAD_NODE, f"{what} has text width {inv.source_cond.shape[-1]}, the model expects {width}.")
    if latent is not None:
        video = latent_video(LOAD_NODE, latent)
        if video.shape[0] != inv.frames:
            fail(LOAD_NODE, f"{what} has {inv.frames} frames but the video latent has {video.shape[0]}: "
                            "load the same frames (count and range) that were inverted.")
        if tuple(video.shape[-2:]) != tuple(inv.latent_hw):
            fail(LOAD_NODE, f"{what} is for latent size {tuple(inv.latent_hw)} (h, w) but the video latent is "
                            f"{tuple(video.shape[-2:])}: use the same video size as when inverting.")
        if latent_fingerprint(video) != inv.latent_fingerprint:
            fail(LOAD_NODE, f"{what} was made from another video (same size and frame count): connect the "
                            "video latent that was inverted, or invert this one.")


# --------------------------------------------------------------------------- nodes
class VP2PSharedNullTextInvert:
    """Invert a video for editing: x_T plus one optimised null-text embedding per step."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The (inflated, tuned) model you will edit with."}),
            "latent": ("LATENT", {"tooltip": "The video: all frames VAE-encoded as one batch."}),
            "conditioning": ("CONDITIONING", {"tooltip": "The source prompt describing the video."}),
            "empty_conditioning": ("CONDITIONING", {"tooltip":
                "CLIP Text Encode with an EMPTY text (same CLIP): the unconditional embedding that "
                "null-text optimisation starts from, and the target branch's unconditional embedding."}),
            "steps": ("INT", {"default": 50, "min": 2, "max": 1000, "tooltip":
                "DDIM steps (scheduler ddim_uniform); use the same for editing."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.01, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip":
                "The guidance scale the source branch will be sampled with."}),
            "mode": (list(NODE_MODES), {"default": DEFAULT_MODE, "tooltip": MODE_HELP}),
            "inner_iterations": ("INT", {"default": 10, "min": 1, "max": 100, "tooltip":
                "Max optimiser updates per step (null-text), with early stopping."}),
        }, "optional": {
            "fixed_point_iterations": ("INT", {"default": 0, "min": 0, "max": 20, "tooltip":
                "Extra UNet calls per inversion step solving the DDIM step exactly (0 = the paper's "
                "plain DDIM inversion). 2-3 make guidance-1 sampling retrace the video almost exactly."}),
        }}

    RETURN_TYPES = ("VP2P_INVERSION", "LATENT")
    RETURN_NAMES = ("inversion", "reconstruction")
    FUNCTION = "invert"
    CATEGORY = "video-p2p"
    DESCRIPTION = ("DDIM-invert the video with the source prompt; direct-inversion keeps the trajectory for the "
                   "sampler, null-text optimises a shared null-text embedding "
                   "per step so CFG sampling retraces it; outputs the inversion and its reconstruction.")

    @classmethod
    def VALIDATE_INPUTS(cls, mode):
        # accepts the values earlier versions saved (LEGACY_MODES), which the combo no longer lists
        if mode in NODE_MODES or mode in LEGACY_MODES:
            return True
        return f"mode must be one of {', '.join(NODE_MODES)} (got {mode!r})"

    def invert(self, model, latent, conditioning, empty_conditioning, steps=50, cfg=7.5, mode=DEFAULT_MODE,
               inner_iterations=10, fixed_point_iterations=0):
        return invert_video(model, latent, conditioning, empty_conditioning, steps, cfg, mode, inner_iterations,
                            fixed_point_iterations)


class VP2PSaveInversion:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inversion": ("VP2P_INVERSION",),
            "filename_prefix": ("STRING", {"default": "inversion", "tooltip":
                "Saved as output/video_p2p/<prefix>_NNNNN_.safetensors."}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "video-p2p"
    DESCRIPTION = "Save an inversion (x_T, null embeddings, schedule) to reuse it without inverting again."

    def save(self, inversion, filename_prefix="inversion"):
        path = save_inversion(inversion, filename_prefix)
        rel = os.path.relpath(path, os.path.join(folder_paths.get_output_directory(), SUBDIR))
        return {"ui": {"text": [rel.replace(os.sep, "/")]}}


class VP2PLoadInversion:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "inversion_file": (list_inversions() or ["(none found)"],),
                "model": ("MODEL", {"tooltip": "The model you edit with; must be the one that inverted."}),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "The video latent; checked against the inverted one."}),
            },
        }

    RETURN_TYPES = ("VP2P_INVERSION",)
    RETURN_NAMES = ("inversion",)
    FUNCTION = "load"
    CATEGORY = "video-p2p"
    DESCRIPTION = "Load an inversion saved by Save Inversion (VP2P), checked against the model and video."

    @classmethod
    def IS_CHANGED(cls, inversion_file, **kwargs):
        path = resolve_inversion(inversion_file)
        if path is None:
            return inversion_file
        st = os.stat(path)
        return f"{path}:{st.st_mtime_ns}:{st.st_size}"

    def load(self, inversion_file, model, latent=None):
        return (load_inversion(inversion_file, model, latent),)


NODE_CLASS_MAPPINGS = {
    "VP2PSharedNullTextInvert": VP2PSharedNullTextInvert,
    "VP2PSaveInversion": VP2PSaveInversion,
    "VP2PLoadInversion": VP2PLoadInversion,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VP2PSharedNullTextInvert": "Shared Null-Text Invert",
    "VP2PSaveInversion": "Save Inversion (VP2P)",
    "VP2PLoadInversion": "Load Inversion (VP2P)",
}

__all__ = ["Inversion", "invert_video", "reconstruct", "save_inversion", "load_inversion", "check_compatible",
           "NodeInputError"]
