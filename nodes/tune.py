"""Tune On Video / Load Video Tuning: fit an inflated model to the input video.

The input MODEL is never modified, not even on interrupt or error:
- training runs on a separate clone whose temporal attention modules are fresh fp32 copies;
- the query projections are trained as fp32 master copies temporarily swapped into the
  loaded UNet (with every frozen weight swapped for a grad-free view, or a normal copy where
  ComfyUI created it in inference mode) and everything is restored in `finally`;
- the result is a new clone: the query updates as ComfyUI "diff" weight patches (they compose
  with LoRA patches) and the trained temporal modules as its own object patches.
The deltas can be saved as safetensors (trained tensors only) under output/video_p2p/ and
loaded back with Load Video Tuning instead of re-tuning.
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch

import comfy.model_management as mm
import comfy.utils
import folder_paths

from . import inflate as infl
from .fingerprint import base_fingerprint, latent_fingerprint
from .grad_safety import autograd_safe, grad_mode
from .unet_runner import COND, UNetRunner, check_eps_model, cond_tensor, fail, latent_video, throw_if_interrupted
from ..vp2p_core.attention import TemporalAttention
from ..vp2p_core.precision import LossScaler, needs_loss_scaling
from ..vp2p_core.tuning import TuneConfig, tune

NODE = "Tune On Video"
LOAD_NODE = "Load Video Tuning"
SUBDIR = "video_p2p"
FORMAT = "vp2p-tuning"
DIFF_PREFIX = "diff."
TEMPORAL_PREFIX = "temporal."
PRECISIONS = ("auto", "off", "fp16", "bf16")
PRECISION_HELP = ("auto: autocast in the dtype the UNet computes in (fp16/bf16 on GPUs, off for fp32), with "
                  "dynamic loss scaling when that is fp16; the trained weights are always fp32 master copies. "
                  "off: no autocast (an fp16 UNet is still loss-scaled). fp16 / bf16: force that autocast dtype.")

log = logging.getLogger("video-p2p")


# --------------------------------------------------------------------------- helpers
class VP2PDiff(tuple):
    """A ComfyUI "diff" weight patch `(delta,)` marked as coming from a Video-P2P tuning."""


def copy_temporal(mod, dtype=None, device=None, trainable=False):
    """A new TemporalAttention with `mod`'s weights (never aliasing them; never an inference
    tensor when built under grad_mode)."""
    ref = mod.to_out.weight
    new = TemporalAttention(mod.to_q.in_features, mod.heads, mod.dim_head, eps=mod.norm.eps,
                            dtype=dtype or ref.dtype, device=device or ref.device)
    with torch.no_grad():
        for name, t in new.state_dict(keep_vars=True).items():
            t.copy_(mod.state_dict()[name])
    return new.requires_grad_(trainable)


def query_keys(model) -> dict:
    """{module path under diffusion_model: weight patch key} of every attn1/attn2 to_q."""
    out = {}
    dm = model.model.diffusion_model
    for path in (infl.inflation_info(model) or {}).get("blocks", {}):
        for attn in ("attn1", "attn2"):
            mod_path = f"{path}.{attn}.to_q"
            try:
                comfy.utils.get_attr(dm, mod_path)
            except AttributeError:
                continue
            out[mod_path] = f"{infl.PREFIX}{mod_path}.weight"
    return out


def unpatched_base_fingerprint(model) -> str:
    """base_fingerprint of the checkpoint weights even while some clone's patches are applied."""
    return base_fingerprint(model)


@contextlib.contextmanager
def training_weights(diffusion_model, masters: dict, trainable_ids: set):
    """Swap the loaded UNet's parameters for training, restoring the originals on exit.

    masters: {module path: fp32 master weight} for the trained query projections (used in the
    module's weight dtype, so gradients reach the master); every other parameter becomes a
    grad-free Parameter (a copy only where ComfyUI created it as an inference tensor).
    Yields `refresh()`, which re-casts the masters after an optimiser step."""
    swaps = []
    casts = []
    try:
        for name, mod in diffusion_model.named_modules():
            for pname, p in list(mod._parameters.items()):
                if p is None or id(p) in trainable_ids:
                    continue
                if pname == "weight" and name in masters:
                    casts.append((mod, p.dtype, masters[name]))
                    new = masters[name].to(p.dtype)
                else:
                    new = torch.nn.Parameter(p.clone() if p.is_inference() else p.detach(), requires_grad=False)
                swaps.append((mod, pname, p))
                mod._parameters[pname] = new

        def refresh():
            for mod, dtype, master in casts:
                mod._parameters["weight"] = master.to(dtype)
        yield refresh
    finally:
        for mod, pname, p in reversed(swaps):
            mod._parameters[pname] = p


def unet_compute_dtype(runner):
    m = runner.model
    dt = getattr(m, "manual_cast_dtype", None)
    return dt if dt is not None else (m.get_dtype() if hasattr(m, "get_dtype") else torch.float32)


def _autocast_factory(precision, device, unet_dtype=torch.float32):
    """(autocast context factory or None, loss scaler or None, the dtype gradients flow in).

    The backward pass runs in fp16 whenever the forward does (autocast fp16, or an fp16 UNet
    without autocast): tuning's gradients (~5e-6) are then fp16 subnormals, so it is scaled."""
    precision = precision or "off"
    if precision == "auto":
        dtype = unet_dtype if unet_dtype in (torch.float16, torch.bfloat16) else None
    elif precision == "off":
        dtype = None
    else:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    factory = None
    if dtype is not None:
        dev_type = torch.device(device).type
        factory = lambda: torch.autocast(device_type=dev_type, dtype=dtype)  # noqa: E731
    grad_dtype = dtype if dtype is not None else unet_dtype
    scaler = LossScaler() if needs_loss_scaling(grad_dtype) else None
    return factory, scaler, grad_dtype


def _prompt_text(conditioning):
    extra = conditioning[0][1] if conditioning and len(conditioning[0]) > 1 else {}
    text = (extra or {}).get("vp2p_text")
    return text if isinstance(text, str) else None


class _Progress:
    """ComfyUI progress bar + console bar with the loss; checks for interrupts every step."""

    def __init__(self, total):
        self.pbar = comfy.utils.ProgressBar(total)
        try:
            from tqdm.auto import tqdm
            self.tqdm = tqdm(total=total, desc=NODE)
        except Exception:  # pragma: no cover - tqdm ships with ComfyUI
            self.tqdm = None

    def __call__(self, step, total, loss):
        self.pbar.update_absolute(step + 1, total)
        if self.tqdm is not None:
            self.tqdm.update(1)
            self.tqdm.set_postfix(loss=f"{loss:.5f}")
        throw_if_interrupted()

    def close(self):
        if self.tqdm is not None:
            self.tqdm.close()


# --------------------------------------------------------------------------- tuning
def tune_on_video(model, latent, conditioning, steps=300, lr=3e-5, seed=33, weight_decay=1e-2,
                  max_grad_norm=1.0, mixed_precision="auto", gradient_checkpointing=False):
    """Returns (tuned clone, losses)."""
    info = infl.inflation_info(model)
    if info is None:
        fail(NODE, "the MODEL is not inflated; put 'Inflate T2S Model' between the checkpoint loader "
                   "and this node.")
    if int(steps) <= 0:
        fail(NODE, f"steps must be at least 1 (got {steps}).")
    if not lr > 0:
        fail(NODE, f"learning rate must be > 0 (got {lr}).")
    if mixed_precision not in PRECISIONS:
        fail(NODE, f"mixed_precision must be one of {PRECISIONS}.")
    check_eps_model(NODE, model)
    video = latent_video(NODE, latent, min_frames=2)
    cond = cond_tensor(NODE, conditioning, model, "source conditioning")
    config = TuneConfig(steps=int(steps), lr=float(lr), weight_decay=float(weight_decay),
                        max_grad_norm=float(max_grad_norm), seed=int(seed))
    frames = video.shape[0]
    fingerprint = unpatched_base_fingerprint(model)
    source_temporal = infl.temporal_modules(model)
    train_mp = model.clone()
    progress = _Progress(config.steps)
    try:
        with grad_mode():
            masters_t = {path: copy_temporal(mod, torch.float32, trainable=True)
                         for path, mod in source_temporal.items()}
            infl.set_temporal_modules(train_mp, masters_t)
            runner = UNetRunner(train_mp)
            dm = train_mp.model.diffusion_model
            qkeys = query_keys(train_mp)
            loaded_q = {mp: comfy.utils.get_attr(dm, mp).weight for mp in qkeys}
            base_q = {mp: w.detach().to(torch.float32, copy=True) for mp, w in loaded_q.items()}
            masters_q = {mp: w.clone().requires_grad_(True) for mp, w in base_q.items()}
            params = list(masters_q.values()) + [p for m in masters_t.values() for p in m.parameters()]
            x0 = runner.to_model_space(video).clone()
            ctx = cond.to(runner.device).clone()
            sigmas = runner.sampling.sigmas.detach().to(runner.device, torch.float32).clone()
            extra = {"vp2p_grad_checkpoint": True} if gradient_checkpointing else None
            autocast, scaler, _ = _autocast_factory(mixed_precision, runner.device,
                                                             unet_compute_dtype(runner))
            throw_if_interrupted()
            with autograd_safe(dm), training_weights(dm, masters_q, {id(p) for p in params}) as refresh:
                def predict_eps(x, sigma):
                    refresh()
                    denoised = runner.denoise(x, sigma, [ctx], [COND], extra)[0]
                    return (x - denoised) / sigma
                losses = tune(params, predict_eps, x0, sigmas, config, progress, autocast, scaler)
            if scaler is not None and scaler.skipped:
                log.info("%s: %d of %d steps skipped for fp16 gradient overflow (loss scale now %g)", NODE,
                         scaler.skipped, config.steps, scaler.value)
        tuned = model.clone()
        ref_of = lambda p: source_temporal[p].to_out.weight  # noqa: E731
        infl.set_temporal_modules(tuned, {p: copy_temporal(m, ref_of(p).dtype, ref_of(p).device)
                                          for p, m in masters_t.items()})
        diffs = {qkeys[mp]: (masters_q[mp].detach() - base_q[mp]).cpu() for mp in qkeys}
        tuned.add_patches({k: VP2PDiff((v,)) for k, v in diffs.items()}, 1.0)
        meta = {"format": FORMAT, "version": "1", "base_fingerprint": fingerprint, "frames": str(frames),
                "latent_fingerprint": latent_fingerprint(video), "cond_fingerprint": latent_fingerprint(cond),
                "steps": str(config.steps), "lr": repr(config.lr), "seed": str(config.seed),
                "weight_decay": repr(config.weight_decay), "max_grad_norm": repr(config.max_grad_norm),
                "final_loss": repr(losses[-1]) if losses else "nan",
                "temporal_attention": str(bool(info["temporal_attention"])),
                "video_norm": str(bool(info["video_norm"]))}
        text = _prompt_text(conditioning)
        if text is not None:
            meta["prompt"] = text
        infl.set_tuning_info(tuned, meta)
        return tuned, losses
    finally:
        progress.close()
        # ComfyUI (>= 0.3.5x) keeps only a weak reference to a loaded clone and falls back to
        # its parent once the clone is gone: dropping train_mp is all the unloading it needs.
        del train_mp
        mm.soft_empty_cache()


def tuning_state_dict(tuned) -> dict:
    """The trained tensors of a tuned model: query diffs (all Video-P2P tunings it carries,
    summed) + temporal attention weights."""
    sd = {}
    for key, plist in tuned.patches.items():
        total = None
        for p in plist:
            if isinstance(p[1], VP2PDiff):
                d = p[1][0].float() * p[0]
                total = d if total is None else total + d
        if total is not None:
            sd[DIFF_PREFIX + key[len(infl.PREFIX):]] = total.detach().float().cpu().contiguous()
    for path, mod in infl.temporal_modules(tuned).items():
        for name, t in mod.state_dict().items():
            sd[f"{TEMPORAL_PREFIX}{path}.{infl.TEMPORAL_CHILD}.{name}"] = t.detach().cpu().contiguous()
    return sd


# --------------------------------------------------------------------------- files
def tuning_dirs():
    return [os.path.join(folder_paths.get_output_directory(), SUBDIR),
            os.path.join(folder_paths.models_dir, SUBDIR)]


def list_tunings():
    names = []
    for d in tuning_dirs():
        if os.path.isdir(d):
            for root, _, files in os.walk(d):
                for f in files:
                    if f.endswith(".safetensors"):
                        names.append(os.path.relpath(os.path.join(root, f), d).replace(os.sep, "/"))
    return sorted(set(names))


def resolve_tuning(name: str):
    for d in tuning_dirs():
        path = os.path.abspath(os.path.join(d, name))
        if os.path.commonpath([path, os.path.abspath(d)]) == os.path.abspath(d) and os.path.isfile(path):
            return path
    return None


def save_tuning(tuned, save_name: str) -> str:
    """Write the trained tensors + metadata under output/video_p2p/; returns the file path."""
    import safetensors.torch
    meta = dict((infl.inflation_info(tuned) or {}).get("tuning") or {})
    sd = tuning_state_dict(tuned)
    prefix = f"{SUBDIR}/{save_name.strip().lstrip('/').replace(chr(92), '/')}"
    try:
        folder, filename, counter, _, _ = folder_paths.get_save_image_path(prefix, folder_paths.get_output_directory())
    except Exception as e:
        fail(NODE, f"cannot save to '{save_name}': {e}; use a plain file name.")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{filename}_{counter:05}_.safetensors")
    safetensors.torch.save_file(sd, path, metadata={k: str(v) for k, v in meta.items()})
    log.info("%s: saved tuning to %s", NODE, path)
    return path


def load_tuning(model, name_or_path: str, node: str = LOAD_NODE):
    """A new clone of the inflated `model` carrying the tuning stored in a file."""
    import safetensors
    import safetensors.torch
    info = infl.inflation_info(model)
    if info is None:
        fail(node, "the MODEL is not inflated; put 'Inflate T2S Model' before this node (same settings "
                   "as when tuning).")
    path = name_or_path if os.path.isabs(name_or_path) else resolve_tuning(name_or_path)
    if path is None or not os.path.isfile(path):
        fail(node, f"tuning file '{name_or_path}' not found in output/{SUBDIR}/ or models/{SUBDIR}/; "
                   "run Tune On Video with a save_name first.")
    if not path.endswith(".safetensors"):
        fail(node, "tuning files are .safetensors.")
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        fail(node, f"'{os.path.basename(path)}' is not a Video-P2P tuning file.")
    fp = unpatched_base_fingerprint(model)
    if meta.get("base_fingerprint") != fp:
        fail(node, f"'{os.path.basename(path)}' was tuned on another base model (fingerprint "
                   f"{meta.get('base_fingerprint')} != {fp}); load the checkpoint it was tuned on, or re-tune.")
    sd = safetensors.torch.load_file(path)
    tuned = model.clone()
    qkeys = {f"{infl.PREFIX}{k[len(DIFF_PREFIX):]}": v for k, v in sd.items() if k.startswith(DIFF_PREFIX)}
    known = tuned.model_state_dict().keys()
    unknown = [k for k in qkeys if k not in known]
    if unknown:
        fail(node, f"the file patches weights this model does not have (e.g. {unknown[0]}).")
    current = infl.temporal_modules(model)
    temporal = {}
    for k, v in sd.items():
        if k.startswith(TEMPORAL_PREFIX):
            mod_path, sep, pname = k[len(TEMPORAL_PREFIX):].partition(f".{infl.TEMPORAL_CHILD}.")
            if not sep:
                fail(node, f"unexpected tensor '{k}' in the tuning file.")
            temporal.setdefault(mod_path, {})[pname] = v
    if temporal and not current:
        fail(node, "the file has temporal attention weights but the model was inflated without temporal "
                   "attention; turn temporal_attention on in Inflate T2S Model.")
    missing = sorted(set(current) - set(temporal))
    if temporal and missing:
        fail(node, f"the file has no temporal attention for {missing[0]}; it belongs to another architecture.")
    new_t = {}
    for path, tsd in temporal.items():
        if path not in current:
            fail(node, f"the file has temporal attention for {path}, which this model does not have.")
        mod = copy_temporal(current[path])
        try:
            mod.load_state_dict({k: t.to(mod.to_out.weight.dtype) for k, t in tsd.items()})
        except RuntimeError as e:
            fail(node, f"temporal weights of {path} do not fit this model: {e}")
        new_t[path] = mod
    infl.set_temporal_modules(tuned, new_t)
    for k, v in qkeys.items():
        if tuple(v.shape) != tuple(comfy.utils.get_attr(tuned.model, k).shape):
            fail(node, f"{k} has shape {tuple(v.shape)} in the file; this model's differs.")
    tuned.add_patches({k: VP2PDiff((v,)) for k, v in qkeys.items()}, 1.0)
    infl.set_tuning_info(tuned, dict(meta, file=os.path.basename(path)))
    return tuned


# --------------------------------------------------------------------------- nodes
class VP2PTuneOnVideo:
    """Fine-tune the inflated model's query projections and temporal attention on the video."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An inflated model (Inflate T2S Model)."}),
                "latent": ("LATENT", {"tooltip": "The video: all frames VAE-encoded as one batch."}),
                "conditioning": ("CONDITIONING", {"tooltip": "The source prompt describing the video."}),
                "steps": ("INT", {"default": 300, "min": 1, "max": 100000}),
                "learning_rate": ("FLOAT", {"default": 3e-5, "min": 1e-8, "max": 1.0, "step": 1e-6, "round": False}),
                "seed": ("INT", {"default": 33, "min": 0, "max": 0xffffffffffffffff}),
                "save_name": ("STRING", {"default": "", "tooltip":
                    "If set, the trained weights are saved as output/video_p2p/<name>_NNNNN_.safetensors "
                    "(reload with Load Video Tuning)."}),
            },
            "optional": {
                "mixed_precision": (list(PRECISIONS), {"default": "auto", "tooltip": PRECISION_HELP}),
                "gradient_checkpointing": ("BOOLEAN", {"default": False, "tooltip":
                    "Recompute transformer blocks in the backward pass: less memory, ~30% slower."}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "tune"
    CATEGORY = "video-p2p"
    DESCRIPTION = "Tune the inflated model on the input video (to_q of attn1/attn2 and temporal attention)."

    def tune(self, model, latent, conditioning, steps=300, learning_rate=3e-5, seed=33, save_name="",
             mixed_precision="auto", gradient_checkpointing=False):
        tuned, losses = tune_on_video(model, latent, conditioning, steps, learning_rate, seed,
                                      mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing)
        log.info("%s: %d steps, loss %.5f -> %.5f", NODE, len(losses), losses[0], losses[-1])
        if save_name and save_name.strip():
            save_tuning(tuned, save_name)
        return (tuned,)


class VP2PLoadTuning:
    """Apply a saved tuning to an inflated model instead of re-tuning."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The inflated base model the tuning was made for."}),
            "tuning_file": (list_tunings() or ["(none found)"],),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "video-p2p"
    DESCRIPTION = "Load tuned weights saved by Tune On Video (output/video_p2p or models/video_p2p)."

    def load(self, model, tuning_file):
        return (load_tuning(model, tuning_file),)


NODE_CLASS_MAPPINGS = {"VP2PTuneOnVideo": VP2PTuneOnVideo, "VP2PLoadTuning": VP2PLoadTuning}
NODE_DISPLAY_NAME_MAPPINGS = {"VP2PTuneOnVideo": "Tune On Video", "VP2PLoadTuning": "Load Video Tuning"}
