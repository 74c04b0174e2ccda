"""Decoupled Sampler node: source and target branches from the same inverted noise.

The source branch (source prompt + the inversion's per-step optimised null embedding)
retraces the input video; the target branch (target prompt + the plain empty-prompt
embedding: decoupled guidance) is edited by copying the source branch's attention.
With every window at 0 and no blend, each branch is exactly ComfyUI's own DDIM
(sampler "ddim", scheduler "ddim_uniform").
"""
from __future__ import annotations

import logging

import torch

import comfy.model_management as mm
import comfy.utils

from ..vp2p_core import control as vc
from ..vp2p_core.inversion import GUIDANCE_ONE_MODES
from .fingerprint import model_fingerprint
from .unet_runner import COND, UNCOND, UNetRunner, context_dim, euler_step, fail, throw_if_interrupted

NODE = "Decoupled Sampler"
log = logging.getLogger("video-p2p")


def transformer_block_keys(diffusion_model):
    """(block_name, number, transformer_index) of every transformer block, as ComfyUI names them."""
    keys = []
    for name, _ in diffusion_model.named_modules():
        parts = name.split(".")
        if len(parts) >= 4 and parts[-2] == "transformer_blocks":
            if parts[0] == "input_blocks":
                keys.append(("input", int(parts[1]), int(parts[-1])))
            elif parts[0] == "output_blocks":
                keys.append(("output", int(parts[1]), int(parts[-1])))
            elif parts[0] == "middle_block":
                keys.append(("middle", 0, int(parts[-1])))
    return keys


def source_guidance(inv) -> float:
    """Guidance of the source branch: 1 for the official fast mode (its nulls are the source
    prompt, so guided sampling IS guidance-1 sampling: the unconditional half is skipped)."""
    return 1.0 if getattr(inv, "mode", None) in GUIDANCE_ONE_MODES else float(inv.cfg)


def blend_error(latent_hw, store):
    seen = sorted(store.sum) if store is not None else []
    what = (f"the UNet produced cross-attention maps of {seen} tokens, none of which fits the "
            f"{latent_hw[0]}x{latent_hw[1]} latent") if seen else "the UNet produced no cross-attention maps"
    fail(NODE, f"the local blend cannot run: {what}. Use an SD1.x model whose attention this pack patches "
               "(no other attention-replacing node after it), or clear blend_words in the P2P Controller.")


def _fast_attention():
    from comfy.ldm.modules import attention
    return lambda q, k, v, heads: attention.optimized_attention(q, k, v, heads)


def make_attn2_patch(key, previous=None):
    fast = _fast_attention()

    def attn2(q, k, v, extra_options):
        ctx = extra_options.get("vp2p_control")
        heads = extra_options["n_heads"]
        if ctx is not None and ctx.wants("cross", key):
            return ctx.attend("cross", key, q, k, v, heads, extra_options)
        if previous is not None:
            return previous(q, k, v, extra_options)
        return fast(q, k, v, heads)
    return attn2


def patched_clone(model):
    m = model.clone()
    existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for key in transformer_block_keys(m.model.diffusion_model):
        prev = existing.get(key) or existing.get(key[:2])
        m.set_model_attn2_replace(make_attn2_patch(key, prev), key[0], key[1], key[2])
    return m


def attention_map_image(store, spec, hw, latent_hw, frames, scale=8):
    """One panel per frame: the chosen words' cross-attention side by side (heat colours)."""
    if store is None or hw not in store.sum or not spec.map_tokens:
        return torch.zeros(frames, latent_hw[0] * scale, latent_hw[1] * scale, 3)
    h, w = vc.resolution_of(hw, latent_hw)
    maps = store.maps(hw, h, w) / max(store.steps, 1)   # [2, F, h, w, tokens]
    panels = []
    for label, branch, toks in spec.map_tokens:
        m = maps[0 if branch == "src" else 1][..., toks].sum(-1)   # [F, h, w]
        m = m / m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        m = torch.nn.functional.interpolate(m[:, None], size=(latent_hw[0] * scale, latent_hw[1] * scale),
                                            mode="bilinear", align_corners=False)[:, 0]
        heat = torch.stack([m.clamp(0, 1), (2 * m - 1).clamp(0, 1) * 0.9, (1 - 2 * m).clamp(0, 1) * 0.6], -1)
        panels.append(heat)
    return torch.cat(panels, dim=2).cpu()


class VP2PDecoupledSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The same (tuned) model the video was inverted with."}),
                "inversion": ("VP2P_INVERSION", {"tooltip": "From Shared Null-Text Invert (or Load Inversion)."}),
                "controller": ("VP2P_CONTROLLER", {"tooltip": "From P2P Controller."}),
                "cfg": ("FLOAT", {"default": 7.5, "min": 1.0, "max": 30.0, "step": 0.5, "tooltip":
                    "Guidance of the target (edited) branch, against the plain empty prompt. The source "
                    "branch keeps the inversion's cfg and optimised null embeddings."}),
                "branch_batching": (["auto", "batched", "source-first"], {"tooltip":
                    "batched: both branches in one UNet call (fastest); source-first: source then target "
                    "per step, caching the source attention (half the activation memory, identical edits "
                    "up to float rounding); auto: batched if it fits in free memory."}),
            }
        }

    RETURN_TYPES = ("LATENT", "LATENT", "IMAGE")
    RETURN_NAMES = ("edited", "source", "attention_maps")
    DESCRIPTION = "Edit the inverted video: the source branch retraces it, the target branch follows the target prompt with the source's attention."
    FUNCTION = "sample"
    CATEGORY = "video-p2p"

    def sample(self, model, inversion, controller, cfg, branch_batching):
        return decoupled_sample(model, inversion, controller, cfg, branch_batching)


@torch.no_grad()
def decoupled_sample(model, inv, spec, cfg, branch_batching="auto", decoupled=True):
    if cfg <= 0:
        fail(NODE, "cfg must be > 0.")
    width = context_dim(model)
    if width is not None and spec.width != width:
        fail(NODE, f"the controller was built with a text encoder of width {spec.width}, the model expects "
                   f"{width}: use the CLIP of this checkpoint in the P2P Controller.")
    fp = model_fingerprint(model)
    if inv.model_fingerprint and inv.model_fingerprint != fp:
        fail(NODE, "the inversion was made with another model (or other tuning/LoRA); invert the video "
                   "with the same MODEL you sample with.")
    if spec.source_cond.shape != inv.source_cond.shape or \
            not torch.allclose(spec.source_cond.float().cpu(), inv.source_cond.float().cpu(), atol=1e-5):
        fail(NODE, "the controller's source prompt differs from the prompt the video was inverted with; "
                   "use the same source text in both.")
    steps = len(inv.sigmas) - 1
    frames = inv.x_T.shape[0]
    latent_hw = tuple(inv.x_T.shape[-2:])
    clone = patched_clone(model)
    runner = UNetRunner(clone)
    dev = runner.device
    sigmas = inv.sigmas.to(dev)
    x_src = inv.x_T.to(dev).float()
    x_tgt = x_src.clone()
    ctrl = spec.controller
    # the blend/preview resolution is read from the maps the UNet produces in the first step
    # (all resolutions are recorded then), so it matches the UNet's rounding at any latent size
    blend_hw = None
    need_store = ctrl.local_blend is not None or bool(spec.map_tokens)
    store = vc.AttentionStore() if need_store else None
    if branch_batching == "auto":
        branch_batching = "batched"
        if dev.type != "cpu":
            need = clone.model.memory_required([4 * frames] + list(inv.x_T.shape[1:])) \
                if hasattr(clone.model, "memory_required") else 0
            if need > mm.get_free_memory(dev):
                branch_batching = "source-first"
    fast = _fast_attention()
    tgt_cond = spec.target_cond.to(dev)
    src_cond = inv.source_cond.to(dev)
    tgt_uncond = spec.uncond.to(dev)
    src_cfg = source_guidance(inv)
    # direct inversion: the source branch is put back on the inversion trajectory after every
    # step; its own prediction only serves the attention the target copies, so its
    # unconditional half is not evaluated (nor for the official fast mode, sampled at guidance 1)
    trajectory = getattr(inv, "trajectory", None)
    if trajectory is not None and tuple(trajectory.shape[:2]) != (steps + 1, frames):
        fail(NODE, f"the inversion's trajectory has shape {tuple(trajectory.shape)}, expected {steps + 1} "
                   f"steps of {frames} frames: invert again.")
    src_guided = trajectory is None and src_cfg != 1.0
    src_roles = [vc.SRC_U, vc.SRC_C] if src_guided else [vc.SRC_C]
    src_kinds = [UNCOND, COND] if src_guided else [COND]
    pbar = comfy.utils.ProgressBar(steps)
    for i in range(steps):
        throw_if_interrupted()
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        src_null = inv.null_embeddings[i].to(dev)
        t_uncond = tgt_uncond if decoupled else src_null
        src_ctx = [src_null, src_cond] if src_guided else [src_cond]
        extra = {"vp2p_frames": frames}
        store_hw = None if blend_hw is None else {blend_hw}
        if branch_batching == "batched":
            roles = src_roles + [vc.TGT_U, vc.TGT_C]
            ctx = vc.StepContext(None if ctrl.is_identity() and store is None else ctrl, roles, i, steps,
                                 fast, store, store_hw)
            extra["vp2p_control"] = ctx
            out = runner.denoise([x_src] * len(src_roles) + [x_tgt, x_tgt], sigma,
                                 src_ctx + [t_uncond, tgt_cond], src_kinds + [UNCOND, COND], extra)
            src_out, (tu, tc) = out[:len(src_roles)], out[len(src_roles):]
        else:
            cache = {}
            ctx = vc.StepContext(ctrl, src_roles, i, steps, fast, store, store_hw, cache)
            src_out = runner.denoise([x_src] * len(src_roles), sigma, src_ctx, src_kinds,
                                     dict(extra, vp2p_control=ctx))
            ctx = vc.StepContext(ctrl, [vc.TGT_U, vc.TGT_C], i, steps, fast, store, store_hw, cache)
            tu, tc = runner.denoise([x_tgt, x_tgt], sigma, [t_uncond, tgt_cond], [UNCOND, COND],
                                    dict(extra, vp2p_control=ctx))
        if src_guided:
            su, sc = src_out
            den_src = su + (sc - su) * src_cfg
        else:
            den_src = src_out[0]
        den_tgt = tu + (tc - tu) * cfg
        if store is not None:
            store.end_step()
            if blend_hw is None:
                picked = vc.pick_blend_resolution(store.sum, latent_hw)
                if picked is None:
                    if ctrl.local_blend is not None:
                        blend_error(latent_hw, store)
                    log.warning("%s: no cross-attention maps fit the %s latent; attention_maps is blank.",
                                NODE, latent_hw)
                    store = None
                else:
                    blend_hw = picked[0]
                    store.keep_only(blend_hw)
        if trajectory is not None:
            x_src = trajectory[i + 1].to(dev).float()
        else:
            x_src = euler_step(x_src, den_src, sigma, sigma_next)
        x_tgt = euler_step(x_tgt, den_tgt, sigma, sigma_next)
        lb = ctrl.local_blend
        if lb is not None and lb.active(i, steps):
            if store is None or blend_hw not in store.sum:
                blend_error(latent_hw, store)
            h, w = vc.resolution_of(blend_hw, latent_hw)
            maps = store.maps(blend_hw, h, w)
            mask = lb.mask(maps[0], maps[1], latent_hw).to(dev)
            x_tgt = lb.apply(x_src, x_tgt, mask)
        pbar.update_absolute(i + 1, steps)
    edited = {"samples": runner.to_latent_space(x_tgt)}
    source = {"samples": runner.to_latent_space(x_src)}
    maps_img = attention_map_image(store, spec, blend_hw, latent_hw, frames)
    return (edited, source, maps_img)


NODE_CLASS_MAPPINGS = {"VP2PDecoupledSampler": VP2PDecoupledSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"VP2PDecoupledSampler": "Decoupled Sampler"}
