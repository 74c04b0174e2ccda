"""The Decoupled Sampler: source and target branches from the same inverted noise.

The source branch (the inversion's source prompt + its per-step null embeddings) retraces the
input video; the target branch (target prompt + the inversion's plain empty-prompt embedding:
decoupled guidance) is edited by copying the source branch's attention. The loop itself is
vp2p_core.sampling.two_branch_ddim; this module evaluates the branches through the UNet
(vp2p_host.unet) with the attn2 patches of vp2p_host.patches. With every window at 0 and no
blend, each branch is exactly ComfyUI's own DDIM (sampler "ddim", scheduler "ddim_uniform").
"""
from __future__ import annotations

import logging

import torch

import comfy.model_management as mm

from ..vp2p_core import control as vc
from ..vp2p_core.sampling import two_branch_ddim
from .checks import context_dim, fail
from .fingerprint import model_fingerprint
from .layout import transformer_blocks
from .patches import CONTROL_KEY, Attn2Patch, host_attention
from .progress import Progress, throw_if_interrupted
from .unet import COND, UNCOND, UNetRunner

log = logging.getLogger("video-p2p")


def blend_error(latent_hw, store):
    seen = sorted(store.sum) if store is not None else []
    what = (f"the UNet produced cross-attention maps of {seen} tokens, none of which fits the "
            f"{latent_hw[0]}x{latent_hw[1]} latent") if seen else "the UNet produced no cross-attention maps"
    fail(f"the local blend cannot run: {what}. Use an SD1.x model whose attention this pack patches "
         "(no other attention-replacing node after it), or clear blend_words in the P2P Controller.")


def patched_clone(model):
    """A clone with an Attn2Patch on every transformer block (chaining existing attn2 patches)."""
    m = model.clone()
    existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    for _, _, key in transformer_blocks(m):
        prev = existing.get(key) or existing.get(key[:2])
        m.set_model_attn2_replace(Attn2Patch(key, prev), key[0], key[1], key[2])
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


def _source_guidance(inv) -> float:
    """Guidance of the source branch: 1 for the official fast mode (its nulls are the source
    prompt, so guided sampling IS guidance-1 sampling: the unconditional half is skipped)."""
    return float(inv.source_cfg) if hasattr(inv, "source_cfg") else float(inv.cfg)


def check_inputs(model, inv, spec, cfg):
    if cfg <= 0:
        fail("cfg must be > 0.")
    width = context_dim(model)
    if width is not None and spec.width != width:
        fail(f"the controller was built with a text encoder of width {spec.width}, the model expects "
             f"{width}: use the CLIP of this checkpoint in the P2P Controller.")
    fp = model_fingerprint(model)
    if inv.model_fingerprint and inv.model_fingerprint != fp:
        fail("the inversion was made with another model (or other tuning/LoRA); invert the video "
             "with the same MODEL you sample with.")
    inverted_text = getattr(inv, "source_text", None)
    if inverted_text is None:
        log.warning("the inversion does not record its source text (made from a plain CLIP Text Encode or by "
                    "an earlier version): cannot check it against the P2P Controller's source_text.")
    elif inverted_text.strip() != spec.source_text.strip():
        fail(f"the controller's source prompt {spec.source_text.strip()!r} differs from the prompt the video "
             f"was inverted with ({inverted_text.strip()!r}); use the same source text in both.")
    if getattr(inv, "empty_cond", None) is None:
        fail("the inversion has no empty-prompt embedding (a file of an early version): invert the video again.")


@torch.no_grad()
def decoupled_sample(model, inv, spec, cfg, branch_batching="auto", decoupled=True):
    """-> (edited LATENT, source LATENT, attention-map IMAGE). `decoupled=False` (benchmark
    ablation only) gives the target branch the source's optimised nulls."""
    check_inputs(model, inv, spec, cfg)
    steps = len(inv.sigmas) - 1
    frames = inv.x_T.shape[0]
    latent_hw = tuple(inv.x_T.shape[-2:])
    clone = patched_clone(model)
    runner = UNetRunner(clone)
    dev = runner.device
    ctrl = spec.controller
    # the blend/preview resolution is read from the maps the UNet produces in the first step
    # (all resolutions are recorded then), so it matches the UNet's rounding at any latent size
    state = {"store": vc.AttentionStore() if ctrl.local_blend is not None or spec.map_tokens else None,
             "resolution": None}
    if branch_batching == "auto":
        branch_batching = "batched"
        if dev.type != "cpu":
            need = clone.model.memory_required([4 * frames] + list(inv.x_T.shape[1:])) \
                if hasattr(clone.model, "memory_required") else 0
            if need > mm.get_free_memory(dev):
                branch_batching = "source-first"
    fast = lambda q, k, v, heads: host_attention(q, k, v, heads)  # noqa: E731
    tgt_cond = spec.target_cond.to(dev)
    src_cond = inv.source_cond.to(dev)
    tgt_uncond = inv.empty_cond.to(dev)
    src_cfg = _source_guidance(inv)
    # direct inversion: the source branch is put back on the inversion trajectory after every
    # step; its own prediction only serves the attention the target copies, so its
    # unconditional half is not evaluated (nor for the official fast mode, sampled at guidance 1)
    trajectory = getattr(inv, "trajectory", None)
    if trajectory is not None and tuple(trajectory.shape[:2]) != (steps + 1, frames):
        fail(f"the inversion's trajectory has shape {tuple(trajectory.shape)}, expected {steps + 1} "
             f"steps of {frames} frames: invert again.")
    src_guided = trajectory is None and src_cfg != 1.0
    src_roles = [vc.SRC_U, vc.SRC_C] if src_guided else [vc.SRC_C]
    src_kinds = [UNCOND, COND] if src_guided else [COND]

    def denoise_step(i, x_src, x_tgt):
        sigma = inv.sigmas[i].to(dev)
        src_null = inv.null_embeddings[i].to(dev)
        t_uncond = tgt_uncond if decoupled else src_null
        src_ctx = [src_null, src_cond] if src_guided else [src_cond]
        store, res = state["store"], state["resolution"]
        store_hw = None if res is None else {res[0]}
        extra = {"vp2p_frames": frames}
        if branch_batching == "batched":
            roles = src_roles + [vc.TGT_U, vc.TGT_C]
            ctx = vc.StepContext(None if ctrl.is_identity() and store is None else ctrl, roles, i, steps,
                                 fast, store, store_hw)
            out = runner.denoise([x_src] * len(src_roles) + [x_tgt, x_tgt], sigma,
                                 src_ctx + [t_uncond, tgt_cond], src_kinds + [UNCOND, COND],
                                 dict(extra, **{CONTROL_KEY: ctx}))
            src_out, (tu, tc) = out[:len(src_roles)], out[len(src_roles):]
        else:
            cache = {}
            ctx = vc.StepContext(ctrl, src_roles, i, steps, fast, store, store_hw, cache)
            src_out = runner.denoise([x_src] * len(src_roles), sigma, src_ctx, src_kinds,
                                     dict(extra, **{CONTROL_KEY: ctx}))
            ctx = vc.StepContext(ctrl, [vc.TGT_U, vc.TGT_C], i, steps, fast, store, store_hw, cache)
            tu, tc = runner.denoise([x_tgt, x_tgt], sigma, [t_uncond, tgt_cond], [UNCOND, COND],
                                    dict(extra, **{CONTROL_KEY: ctx}))
        if src_guided:
            su, sc = src_out
            den_src = su + (sc - su) * src_cfg
        else:
            den_src = src_out[0]
        den_tgt = tu + (tc - tu) * cfg
        if store is not None:
            store.end_step()
            if res is None:
                picked = vc.pick_blend_resolution(store.sum, latent_hw)
                if picked is None:
                    if ctrl.local_blend is not None:
                        blend_error(latent_hw, store)
                    log.warning("no cross-attention maps fit the %s latent; attention_maps is blank.", latent_hw)
                    state["store"] = None
                else:
                    state["resolution"] = picked
                    store.keep_only(picked[0])
        return den_src, den_tgt

    hooks = []
    if ctrl.local_blend is not None:
        def blend(i, n, x_src, x_tgt):
            store, res = state["store"], state["resolution"]
            if ctrl.local_blend.active(i, n) and (store is None or res is None or res[0] not in store.sum):
                blend_error(latent_hw, store)
            return ctrl.local_blend.step_callback(i, n, x_src, x_tgt, store, res)
        hooks.append(blend)
    bar = Progress(steps)
    x_src, x_tgt = two_branch_ddim(denoise_step, inv.x_T.to(dev).float(), inv.sigmas.to(dev), trajectory, hooks,
                                   throw_if_interrupted, lambda i, n: bar.update(i + 1))
    edited = {"samples": runner.to_latent_space(x_tgt)}
    source = {"samples": runner.to_latent_space(x_src)}
    res = state["resolution"]
    maps_img = attention_map_image(state["store"], spec, res[0] if res else None, latent_hw, frames)
    return (edited, source, maps_img)
