"""One place where this pack calls ComfyUI's UNet outside ComfyUI's samplers.

It reproduces what ComfyUI's `calc_cond_uncond_batch` does for a single area-less cond per
chunk (same concatenation, same `transformer_options`, same `model_function_wrapper`), so a
loop built on it is numerically the same as ComfyUI's own samplers when nothing else differs.
A video of F frames is one chunk of F rows; a call with n chunks (e.g. [uncond, cond], or
both Video-P2P branches) has batch n*F, and `cond_or_uncond` has one entry per chunk — the
layout every patch of this pack uses to recover F.
"""
from __future__ import annotations

import torch

import comfy.model_management as mm

COND, UNCOND = 0, 1


class NodeInputError(ValueError):
    """Bad input, with the node's name and the fix in the message."""


def fail(node: str, msg: str):
    raise NodeInputError(f"{node}: {msg}")


def latent_video(node: str, latent: dict, min_frames: int = 1) -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        fail(node, "expected a LATENT (e.g. from VAE Encode of the video frames).")
    x = latent["samples"]
    if x.ndim != 4 or x.shape[0] == 0:
        fail(node, f"the latent is empty or not [frames, 4, h, w] (got {tuple(x.shape)}).")
    if x.shape[0] < min_frames:
        fail(node, f"needs a video latent with at least {min_frames} frames (got {x.shape[0]}); "
                   "encode all frames of the video as one batch (frames = batch).")
    if latent.get("noise_mask") is not None:
        fail(node, "masked latents are not supported; remove Set Latent Noise Mask.")
    return x


def cond_tensor(node: str, cond, model=None, what="conditioning") -> torch.Tensor:
    """The cross-attention tensor of a single-entry CONDITIONING, checked against the UNet width."""
    if not isinstance(cond, (list, tuple)) or len(cond) == 0:
        fail(node, f"{what} is empty; connect a CLIP Text Encode output.")
    if len(cond) > 1:
        fail(node, f"{what} has {len(cond)} entries (combined/area conds); give one prompt's conditioning.")
    c = cond[0][0]
    if (cond[0][1] or {}).get("area") is not None or (cond[0][1] or {}).get("mask") is not None:
        fail(node, f"{what} carries an area or mask; Video-P2P needs a plain prompt conditioning.")
    if model is not None:
        width = context_dim(model)
        if width is not None and c.shape[-1] != width:
            fail(node, f"{what} has width {c.shape[-1]} but the model's cross-attention expects {width}: "
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


def check_eps_model(node: str, model):
    import comfy.model_base
    mt = getattr(model.model, "model_type", None)
    if mt is not None and mt != comfy.model_base.ModelType.EPS:
        fail(node, f"the model predicts {getattr(mt, 'name', mt)}; Video-P2P needs an epsilon-prediction "
                   "SD1.x-family model (e.g. SD1.5).")
    sampling = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") \
        else model.model.model_sampling
    if not hasattr(sampling, "sigmas"):
        fail(node, "the model has no discrete sigma schedule; use an SD1.x-family checkpoint.")


class UNetRunner:
    """Loads the MODEL like ComfyUI's samplers do and evaluates denoised predictions."""

    def __init__(self, model, memory_required: int = 0):
        self.patcher = model
        mm.load_models_gpu([model], memory_required=memory_required) if memory_required else \
            mm.load_models_gpu([model])
        self.model = model.model
        self.device = model.load_device
        self.sampling = self.model.model_sampling
        self.latent_format = self.model.latent_format
        self.options = model.model_options

    def to_model_space(self, latent: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_in(latent.to(self.device, torch.float32))

    def to_latent_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_out(x).cpu()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, contexts, cond_or_uncond,
                extra_options: dict | None = None):
        """Denoised prediction for each chunk. x: [F,...] shared by all chunks, or a list of
        per-chunk tensors; contexts: per-chunk [1 or F, tokens, dim]."""
        xs = x if isinstance(x, (list, tuple)) else [x] * len(contexts)
        frames = xs[0].shape[0]
        timestep = sigma if sigma.ndim == 1 and sigma.shape[0] == frames else \
            xs[0].new_ones([frames]) * sigma
        input_x = torch.cat(list(xs))
        ctx = torch.cat([c.to(self.device).repeat(frames // c.shape[0], 1, 1) for c in contexts])
        timestep_ = torch.cat([timestep] * len(contexts))
        topts = dict(self.options.get("transformer_options", {}))
        topts["cond_or_uncond"] = list(cond_or_uncond)
        topts["sigmas"] = timestep
        if extra_options:
            topts.update(extra_options)
        c = {"c_crossattn": ctx, "transformer_options": topts}
        wrapper = self.options.get("model_function_wrapper")
        if wrapper is not None:
            out = wrapper(self.model.apply_model, {"input": input_x, "timestep": timestep_, "c": c,
                                                   "cond_or_uncond": list(cond_or_uncond)})
        else:
            out = self.model.apply_model(input_x, timestep_, **c)
        return out.chunk(len(contexts))

    def cfg_denoise(self, x, sigma, cond, uncond, cfg, extra_options=None):
        """ComfyUI's CFG for one video: batch [uncond, cond] exactly as calc_cond_uncond_batch."""
        if abs(cfg - 1.0) < 1e-9:
            return self.denoise(x, sigma, [cond], [COND], extra_options)[0]
        u, c = self.denoise(x, sigma, [uncond, cond], [UNCOND, COND], extra_options)
        return u + (c - u) * cfg


def euler_step(x, denoised, sigma, sigma_next):
    """ComfyUI's 'ddim' sampler step (Euler on the EPS ODE in sigma space), same arithmetic."""
    d = (x - denoised) / sigma
    return x + d * (sigma_next - sigma)


def throw_if_interrupted():
    mm.throw_exception_if_processing_interrupted()
