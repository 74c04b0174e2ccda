"""Where this pack evaluates ComfyUI's UNet.

`run_in_comfy` (inversion, tuning, a loaded inversion's preview) rides ComfyUI's own sampling
path, as core's training node does: a `comfy.samplers.CFGGuider` runs its `sample` with a
`comfy.samplers.Sampler` whose loop is the pack's. ComfyUI thus converts and processes the
conds (ControlNet / T2I-Adapter, hooks, gligen), merges the ModelPatcher's wrappers and
callbacks into transformer_options, loads the model and the additional models
(`prepare_sampling`), runs `pre_run` / `cleanup`, and each UNet evaluation is
`comfy.samplers.calc_cond_batch` (guided ones `comfy.samplers.sampling_function`, so cfg
functions apply) with the processed conds. An embedding that changes during the loop (the null
of null-text inversion) replaces only the `c_crossattn` of the processed uncond entries
(`with_context`): everything else of the uncond (its ControlNet included) stays ComfyUI's.

`UNetRunner` is the older direct path (one area-less cond per chunk, calc_cond_batch's layout),
kept for callers that evaluate tensors without ComfyUI conds; it passes the ModelPatcher's
wrappers as ComfyUI's sampling path does.
A video of F frames is one chunk of F rows; a call with n chunks (e.g. [uncond, cond], or
both Video-P2P branches) has batch n*F, and `cond_or_uncond` has one entry per chunk — the
layout every patch of this pack uses to recover F.
"""
from __future__ import annotations

import contextlib

import torch

import comfy.conds
import comfy.model_management as mm
import comfy.patcher_extension
import comfy.samplers

from ..vp2p_core.frames import CLIP_FRAMES_KEY, LAYOUT_KEY
from . import windows
from .checks import fail

COND, UNCOND = 0, 1


def with_context(conds, context):
    """Processed ComfyUI cond entries with their cross-attention embedding replaced by
    `context` (a tensor that may require grad); ControlNet, hooks and the rest are kept."""
    out = []
    for c in conds:
        model_conds = c.get("model_conds", {})
        if "c_crossattn" not in model_conds:
            fail("the conditioning has no cross-attention embedding to optimise; use a CLIP Text Encode output.")
        d = c.copy()
        d["model_conds"] = dict(model_conds, c_crossattn=comfy.conds.CONDCrossAttn(context))
        d["cross_attn"] = context
        out.append(d)
    return out


class Evaluator:
    """The UNet as ComfyUI's sampler sees it, inside `run_in_comfy`: processed conds,
    this run's model_options (a clone), the loaded model and additional models."""

    def __init__(self, guider, model_options, seed, frames, extra_options=None):
        self.guider = guider
        self.model = guider.inner_model
        self.patcher = guider.model_patcher
        self.conds = guider.conds
        self.loaded_models = list(getattr(guider, "loaded_models", []) or [])
        self.options = model_options
        topts = self.options.setdefault("transformer_options", {})
        topts[CLIP_FRAMES_KEY] = int(frames)
        topts.update(extra_options or {})
        windows.install(self.options, frames)   # a MODEL with core's context windows: anchored windows
        self.frames = int(frames)
        self.seed = seed
        self.device = self.patcher.load_device
        self.sampling = self.model.model_sampling
        self.latent_format = self.model.latent_format

    @property
    def diffusion_model(self):
        return self.model.diffusion_model

    def additional_modules(self):
        """The torch modules of the additional models ComfyUI loaded for this run (ControlNets...)."""
        return [m.model for m in self.loaded_models if isinstance(getattr(m, "model", None), torch.nn.Module)]

    def to_model_space(self, latent):
        return self.latent_format.process_in(latent.to(self.device, torch.float32))

    def to_latent_space(self, x):
        return self.latent_format.process_out(x).cpu()

    def _timestep(self, x, sigma):
        sigma = torch.as_tensor(sigma, device=x.device)
        return sigma if sigma.ndim == 1 and sigma.shape[0] == x.shape[0] else x.new_ones([x.shape[0]]) * sigma

    def uncond(self, context=None):
        neg = self.conds.get("negative") or []
        return neg if context is None else with_context(neg, context)

    def window_options(self, layout):
        """This run's options for a batch that is one window of the clip (`layout`, a
        vp2p_core.frames.FrameLayout): the layout published, the context handler left out."""
        if layout is None:
            return self.options
        mo = dict(self.options)
        mo.pop(windows.HANDLER_KEY, None)
        mo["transformer_options"] = dict(mo.get("transformer_options") or {}, **{LAYOUT_KEY: layout})
        return mo

    def denoise(self, x, sigma, is_cond=True, context=None, layout=None):
        """Denoised prediction of one chunk: the positive conds, or the negative ones (with
        `context` as their embedding when given), as calc_cond_batch evaluates them. `layout`:
        x holds only those frames of the clip (tuning's window)."""
        if is_cond:
            pos = self.conds["positive"] if context is None else with_context(self.conds["positive"], context)
            conds = [pos, None]
        else:
            conds = [None, self.uncond(context)]
        hints = windows.window_hints(conds, layout.total, layout.index) if layout is not None and not layout.is_whole \
            else contextlib.nullcontext()
        with hints:
            out = comfy.samplers.calc_cond_batch(self.model, conds, x, self._timestep(x, sigma),
                                                 self.window_options(layout))
        return out[0 if is_cond else 1]

    def cfg_denoise(self, x, sigma, cfg, uncond_context=None):
        """ComfyUI's guided prediction (sampling_function: calc_cond_batch, pre-cfg and cfg
        functions) with the positive conds and the negative ones (embedding `uncond_context`)."""
        return comfy.samplers.sampling_function(self.model, x, self._timestep(x, sigma), self.uncond(uncond_context),
                                                self.conds["positive"], float(cfg), model_options=self.options,
                                                seed=self.seed)


class _PackLoop(comfy.samplers.Sampler):
    """A ComfyUI sampler whose loop is `body(Evaluator)` (as core's training node's sampler)."""

    def __init__(self, body, frames, extra_options=None):
        self.body = body
        self.frames = frames
        self.extra_options = extra_options
        self.result = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        ev = Evaluator(model_wrap, extra_args["model_options"], extra_args.get("seed"), self.frames,
                       self.extra_options)
        self.result = self.body(ev)
        return noise


def run_in_comfy(model, positive, negative, shape, sigmas, body, extra_options=None, seed=0):
    """Run `body(Evaluator)` inside ComfyUI's sampling setup for `model` with the CONDITIONING
    lists `positive` / `negative` (negative may be None) and a latent of `shape` [F, C, h, w];
    `sigmas` is the schedule the loop follows (transformer_options' sample_sigmas). Returns
    what `body` returns."""
    windows.check_clip(model, shape[0], shape[-2:])
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, "negative": negative if negative is not None else []})
    loop = _PackLoop(body, shape[0], extra_options)
    zeros = torch.zeros(tuple(shape), dtype=torch.float32)
    guider.sample(zeros, zeros.clone(), loop, torch.as_tensor(sigmas).float().cpu(), seed=seed)
    return loop.result


def conditioning_of(tensor):
    """A one-entry CONDITIONING for a bare embedding (e.g. a saved inversion's)."""
    return [[tensor, {}]]


def throw_if_interrupted():
    mm.throw_exception_if_processing_interrupted()


def compute_dtype(evaluator):
    """The dtype the UNet computes in (ComfyUI's manual cast dtype, else its weight dtype);
    `evaluator` is anything with the loaded BaseModel as `.model`."""
    m = evaluator.model
    dt = getattr(m, "manual_cast_dtype", None)
    if dt is None and hasattr(m, "get_dtype"):
        dt = m.get_dtype()
    return dt if dt is not None else torch.float32
