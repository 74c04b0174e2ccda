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


def check_eps_model(model):
    import comfy.model_base
    mt = getattr(model.model, "model_type", None)
    if mt is not None and mt != comfy.model_base.ModelType.EPS:
        fail(f"the model predicts {getattr(mt, 'name', mt)}; Video-P2P needs an epsilon-prediction "
                   "SD1.x-family model (e.g. SD1.5).")
    sampling = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") \
        else model.model.model_sampling
    if not hasattr(sampling, "sigmas"):
        fail("the model has no discrete sigma schedule; use an SD1.x-family checkpoint.")
