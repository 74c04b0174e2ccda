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


def throw_if_interrupted():
    mm.throw_exception_if_processing_interrupted()


def compute_dtype(runner: UNetRunner):
    """The dtype the UNet computes in (ComfyUI's manual cast dtype, else its weight dtype)."""
    m = runner.model
    dt = getattr(m, "manual_cast_dtype", None)
    if dt is None and hasattr(m, "get_dtype"):
        dt = m.get_dtype()
    return dt if dt is not None else torch.float32
