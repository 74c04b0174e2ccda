"""Input checks of the host layer and its error type.

Host code says what is wrong and how to fix it; it does not know which node called it. The
node layer (nodes/_common.py) puts the node's display name in front."""
from __future__ import annotations

import torch

class InputError(ValueError):
    """Bad input, with the fix in the message. Raised by the host layer without a node name;
    the node layer re-raises it as NodeInputError with its display name in front."""


class NodeInputError(InputError):
    """An InputError as the user sees it: '<node display name>: <what is wrong and the fix>'."""


class MissingFileError(InputError, FileNotFoundError):
    """A file the user named is not where ComfyUI looks for it."""


class NodeMissingFileError(NodeInputError, FileNotFoundError):
    """A MissingFileError with the node's display name."""


def fail(msg: str):
    raise InputError(msg)


def latent_video(latent: dict, min_frames: int = 1) -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        fail("expected a LATENT (e.g. from VAE Encode of the video frames).")
    x = latent["samples"]
    if x.ndim != 4 or x.shape[0] == 0:
        fail(f"the latent is empty or not [frames, 4, h, w] (got {tuple(x.shape)}).")
    if x.shape[0] < min_frames:
        fail(f"needs a video latent with at least {min_frames} frames (got {x.shape[0]}); "
                   "encode all frames of the video as one batch (frames = batch).")
    if latent.get("noise_mask") is not None:
        fail("masked latents are not supported; remove Set Latent Noise Mask.")
    return x


def cond_tensor(cond, model=None, what="conditioning") -> torch.Tensor:
    """The cross-attention tensor of a single-entry CONDITIONING, checked against the UNet width."""
    if not isinstance(cond, (list, tuple)) or len(cond) == 0:
        fail(f"{what} is empty; connect a CLIP Text Encode output.")
    if len(cond) > 1:
        fail(f"{what} has {len(cond)} entries (combined/area conds); give one prompt's conditioning.")
    c = cond[0][0]
    if (cond[0][1] or {}).get("area") is not None or (cond[0][1] or {}).get("mask") is not None:
        fail(f"{what} carries an area or mask; Video-P2P needs a plain prompt conditioning.")
    if model is not None:
        width = context_dim(model)
        if width is not None and c.shape[-1] != width:
            fail(f"{what} has width {c.shape[-1]} but the model's cross-attention expects {width}: "
                       "encode the prompt with the CLIP that belongs to this checkpoint.")
    return c


def context_dim(model):
    cfg = getattr(model.model, "model_config", None)
    if cfg is not None:
        cd = cfg.unet_config.get("context_dim")
        if isinstance(cd, (list, tuple)):
            cd = cd[0]
        return cd
    return None


SD1_FIX = "load an SD1.x-family checkpoint (SD1.5 or a fine-tune of it) for Video-P2P"


def _prediction(model):
    """What the MODEL predicts, as a short name, or None for epsilon (what Video-P2P needs)."""
    import comfy.model_base
    import comfy.model_sampling
    mt = getattr(model.model, "model_type", None)
    if mt is not None and mt != comfy.model_base.ModelType.EPS:
        return getattr(mt, "name", str(mt))
    sampling = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") \
        else model.model.model_sampling
    # a sampling patch (e.g. core ModelSamplingDiscrete set to v_prediction) changes the maths
    if getattr(type(sampling), "calculate_denoised", None) is not comfy.model_sampling.EPS.calculate_denoised:
        return type(sampling).__name__
    return None


def check_eps_model(model):
    pred = _prediction(model)
    if pred is not None:
        fail(f"the model predicts {pred}; Video-P2P needs an epsilon-prediction SD1.x-family model "
             "(e.g. SD1.5): remove the sampling patch (ModelSampling* node) or " + SD1_FIX + ".")
    sampling = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") \
        else model.model.model_sampling
    if not hasattr(sampling, "sigmas"):
        fail("the model has no discrete sigma schedule; use an SD1.x-family checkpoint.")


def check_inflatable(model):
    """The first check every MODEL meets in the pack (Inflate T2S Model): an SD1.x-family
    epsilon-prediction UNet, with a clear error naming the fix for anything else."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    if dm is None or not hasattr(dm, "input_blocks"):
        fail(f"expected an SD1.x-family UNet MODEL (input/middle/output blocks), got "
             f"{type(dm).__name__ if dm is not None else 'no UNet'}: {SD1_FIX}.")
    adm = getattr(model.model, "adm_channels", 0) or 0
    if adm or getattr(dm, "num_classes", None) is not None:
        fail(f"this MODEL takes pooled/size ('y', {adm} ADM channels) conditioning, as SDXL-style "
             f"models do; Video-P2P supports SD1.x-family UNets only: {SD1_FIX}.")
    check_eps_model(model)
