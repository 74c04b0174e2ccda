"""Tune On Video / Load Video Tuning: fit an inflated model to the input video.

The input MODEL is never modified, not even on interrupt or error:
- training runs on a separate clone whose temporal attention modules are fresh fp32 copies;
- the query projections are trained as fp32 master copies temporarily swapped into the
  loaded UNet (with every frozen weight swapped for a grad-free view, or a normal copy where
  ComfyUI created it in inference mode) and everything is restored in `finally`;
- the result is a new clone: the query updates as ComfyUI "diff" weight patches (they compose
  with LoRA patches) and the trained temporal modules as its own object patches.
The UNet is evaluated through ComfyUI's own sampling path (`unet.run_in_comfy`, as core's
training node drives its TrainSampler through a CFGGuider), so a ControlNet / T2I-Adapter on the
source CONDITIONING, hooks and wrappers are part of the tuning loss; the parameters of the
additional models ComfyUI loads for them are swapped for grad-free ones meanwhile. Progress
shows a preview of the model's denoised frames at each step's noise level.
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

from ..vp2p_core.attention import TemporalAttention
from ..vp2p_core.precision import LossScaler, needs_loss_scaling
from ..vp2p_core.tuning import TuneConfig, tune
from . import inflation as infl
from . import store
from .checks import check_eps_model, cond_tensor, fail, latent_video
from .fingerprint import base_fingerprint, latent_fingerprint
from .grad import autograd_safe, grad_mode, swapped_weights
from .layout import PREFIX, query_paths
from .progress import Progress, throw_if_interrupted
from .text import conditioning_text
from .unet import compute_dtype, run_in_comfy
from .windows import check_clip, random_window

FORMAT = "vp2p-tuning"
DIFF_PREFIX = "diff."
TEMPORAL_PREFIX = "temporal."
PRECISIONS = ("auto", "off", "fp16", "bf16")

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
    """{module path under diffusion_model: weight patch key} of every attn1/attn2 to_q of an
    inflated model's transformer blocks."""
    dm = model.model.diffusion_model
    out = {}
    for mod_path in query_paths((infl.inflation_info(model) or {}).get("blocks", {})):
        try:
            comfy.utils.get_attr(dm, mod_path)
        except AttributeError:
            continue
        out[mod_path] = f"{PREFIX}{mod_path}.weight"
    return out


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


# --------------------------------------------------------------------------- tuning
def tune_on_video(model, latent, conditioning, steps=300, lr=3e-5, seed=33, weight_decay=1e-2,
                  max_grad_norm=1.0, mixed_precision="auto", gradient_checkpointing=True):
    """Returns (tuned clone, losses)."""
    info = infl.inflation_info(model)
    if info is None:
        fail("the MODEL is not inflated; put 'Inflate T2S Model' between the checkpoint loader "
                   "and this node.")
    if int(steps) <= 0:
        fail(f"steps must be at least 1 (got {steps}).")
    if not lr > 0:
        fail(f"learning rate must be > 0 (got {lr}).")
    if mixed_precision not in PRECISIONS:
        fail(f"mixed_precision must be one of {PRECISIONS}.")
    check_eps_model(model)
    video = latent_video(latent, min_frames=2)
    cond = cond_tensor(conditioning, model, "source conditioning")
    config = TuneConfig(steps=int(steps), lr=float(lr), weight_decay=float(weight_decay),
                        max_grad_norm=float(max_grad_norm), seed=int(seed))
    frames = video.shape[0]
    # a MODEL with core's context windows: one random window (+ frame 0) per step
    window = random_window(check_clip(model, frames, video.shape[-2:]), frames)
    fingerprint = base_fingerprint(model)
    source_temporal = infl.temporal_modules(model)
    train_mp = model.clone()
    progress = Progress(config.steps, console="Tune On Video", preview=model)
    try:
        with grad_mode():
            masters_t = {path: copy_temporal(mod, torch.float32, trainable=True)
                         for path, mod in source_temporal.items()}
            infl.set_temporal_modules(train_mp, masters_t)
            state = {}

            def body(ev):
                dm = ev.diffusion_model
                qkeys = query_keys(train_mp)
                loaded_q = {mp: comfy.utils.get_attr(dm, mp).weight for mp in qkeys}
                base_q = {mp: w.detach().to(torch.float32, copy=True) for mp, w in loaded_q.items()}
                masters_q = {mp: w.clone().requires_grad_(True) for mp, w in base_q.items()}
                state.update(qkeys=qkeys, base_q=base_q, masters_q=masters_q)
                params = list(masters_q.values()) + [p for m in masters_t.values() for p in m.parameters()]
                x0 = ev.to_model_space(video).clone()
                sigmas = ev.sampling.sigmas.detach().to(ev.device, torch.float32).clone()
                autocast, scaler, _ = _autocast_factory(mixed_precision, ev.device, compute_dtype(ev))
                seen = {}
                throw_if_interrupted()
                with contextlib.ExitStack() as stack:
                    for module in ev.additional_modules():    # e.g. a ControlNet: used, never trained
                        stack.enter_context(autograd_safe(module))
                        stack.enter_context(swapped_weights(module))
                    stack.enter_context(autograd_safe(dm))
                    refresh = stack.enter_context(swapped_weights(dm, masters_q, {id(p) for p in params}))

                    def predict_eps(x, sigma, layout=None):
                        refresh()
                        denoised = ev.denoise(x, sigma, True, layout=layout)
                        seen["x0"] = denoised.detach()
                        return (x - denoised) / sigma
                    losses = tune(params, predict_eps, x0, sigmas, config,
                                  lambda step, total, loss: progress.update(step + 1, loss, seen.get("x0")),
                                  autocast, scaler, window)
                return losses, scaler

            extra = {"vp2p_grad_checkpoint": True} if gradient_checkpointing else None
            schedule = torch.cat([train_mp.get_model_object("model_sampling").sigmas.float().flip(0).cpu(),
                                  torch.zeros(1)])
            losses, scaler = run_in_comfy(train_mp, conditioning, None, video.shape, schedule, body, extra)
            qkeys, base_q, masters_q = state["qkeys"], state["base_q"], state["masters_q"]
            if scaler is not None and scaler.skipped:
                log.info("tuning: %d of %d steps skipped for fp16 gradient overflow (loss scale now %g)",
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
        text = conditioning_text(conditioning)
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


def tune_and_save(model, latent, conditioning, steps, lr, seed, save_name="", mixed_precision="auto",
                  gradient_checkpointing=True):
    """Tune On Video: the tuned clone, saved when `save_name` is set (checked before tuning, so a
    name outside the output folder fails at once, not after the long run)."""
    if save_name and save_name.strip():
        store.output_prefix(save_name, "tuning", store.SUBDIR, "save_name")
    tuned, losses = tune_on_video(model, latent, conditioning, steps, lr, seed, mixed_precision=mixed_precision,
                                  gradient_checkpointing=gradient_checkpointing)
    log.info("tuning: %d steps, loss %.5f -> %.5f", len(losses), losses[0], losses[-1])
    if save_name and save_name.strip():
        save_tuning(tuned, save_name)
    return tuned


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
            sd[DIFF_PREFIX + key[len(PREFIX):]] = total.detach().float().cpu().contiguous()
    for path, mod in infl.temporal_modules(tuned).items():
        for name, t in mod.state_dict().items():
            sd[f"{TEMPORAL_PREFIX}{path}.{infl.TEMPORAL_CHILD}.{name}"] = t.detach().cpu().contiguous()
    return sd


# --------------------------------------------------------------------------- files
MAKER = "run Tune On Video with a save_name"


def list_tunings() -> list[str]:
    return store.list_files(FORMAT)


def tuning_file_problem(name: str) -> str | None:
    """What is wrong with a tuning file (None when it opens): Load Video Tuning's validation."""
    return store.problem(name, FORMAT, "tuning", MAKER)[0]


def tuning_payload(tuned) -> tuple[dict, dict]:
    """(tensors, metadata) of a tuning file: what Tune On Video's save_name and the stage cache write."""
    meta = dict((infl.inflation_info(tuned) or {}).get("tuning") or {})
    meta.pop("file", None)     # where a loaded tuning came from (load_tuning), not part of its content
    return tuning_state_dict(tuned), meta


def save_tuning(tuned, save_name: str) -> str:
    """Write the trained tensors + metadata under output/video_p2p/; returns the file path."""
    path = store.save(save_name, *tuning_payload(tuned), default="tuning", input_name="save_name")
    log.info("saved tuning to %s", path)
    return path


def load_tuning(model, name_or_path: str):
    """A new clone of the inflated `model` carrying the tuning stored in a file."""
    info = infl.inflation_info(model)
    if info is None:
        fail("the MODEL is not inflated; put 'Inflate T2S Model' before this node (same settings "
             "as when tuning).")
    path, meta = store.open_file(name_or_path, FORMAT, "tuning", MAKER)
    fp = base_fingerprint(model)
    if meta.get("base_fingerprint") != fp:
        fail(f"'{os.path.basename(path)}' was tuned on another base model (fingerprint "
                   f"{meta.get('base_fingerprint')} != {fp}); load the checkpoint it was tuned on, or re-tune.")
    sd = store.load_tensors(path, "tuning", MAKER)
    tuned = model.clone()
    qkeys = {f"{PREFIX}{k[len(DIFF_PREFIX):]}": v for k, v in sd.items() if k.startswith(DIFF_PREFIX)}
    known = tuned.model_state_dict().keys()
    unknown = [k for k in qkeys if k not in known]
    if unknown:
        fail(f"the file patches weights this model does not have (e.g. {unknown[0]}).")
    current = infl.temporal_modules(model)
    temporal = {}
    for k, v in sd.items():
        if k.startswith(TEMPORAL_PREFIX):
            mod_path, sep, pname = k[len(TEMPORAL_PREFIX):].partition(f".{infl.TEMPORAL_CHILD}.")
            if not sep:
                fail(f"unexpected tensor '{k}' in the tuning file.")
            temporal.setdefault(mod_path, {})[pname] = v
    if temporal and not current:
        fail("the file has temporal attention weights but the model was inflated without temporal "
                   "attention; turn temporal_attention on in Inflate T2S Model.")
    missing = sorted(set(current) - set(temporal))
    if temporal and missing:
        fail(f"the file has no temporal attention for {missing[0]}; it belongs to another architecture.")
    new_t = {}
    for path, tsd in temporal.items():
        if path not in current:
            fail(f"the file has temporal attention for {path}, which this model does not have.")
        mod = copy_temporal(current[path])
        try:
            mod.load_state_dict({k: t.to(mod.to_out.weight.dtype) for k, t in tsd.items()})
        except RuntimeError as e:
            fail(f"temporal weights of {path} do not fit this model: {e}")
        new_t[path] = mod
    infl.set_temporal_modules(tuned, new_t)
    for k, v in qkeys.items():
        if tuple(v.shape) != tuple(comfy.utils.get_attr(tuned.model, k).shape):
            fail(f"{k} has shape {tuple(v.shape)} in the file; this model's differs.")
    tuned.add_patches({k: VP2PDiff((v,)) for k, v in qkeys.items()}, 1.0)
    infl.set_tuning_info(tuned, dict(meta, file=os.path.basename(path)))
    return tuned


