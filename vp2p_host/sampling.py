"""The Decoupled Sampler: source and target branches from the same inverted noise.

The source branch (the inversion's source prompt + its per-step null embeddings) retraces the
input video; the target branch (target prompt + the inversion's plain empty-prompt embedding:
decoupled guidance) is edited by copying the source branch's attention. ComfyUI's own "ddim"
sampler runs the loop over a DecoupledGuider (a CFGGuider, as core's Guider_PerpNeg is) that
evaluates both branches with ComfyUI's sampling_function and applies vp2p_core's step
(vp2p_core.sampling.two_branch_step) with the attn2 patches of vp2p_host.patches. With every
window at 0 and no blend, each branch is exactly ComfyUI's KSampler (ddim, ddim_uniform).
"""
from __future__ import annotations

import logging
import math

import torch

import comfy.model_patcher
import comfy.samplers
import latent_preview

from ..vp2p_core import control as vc
from ..vp2p_core import inversion as inversion_modes
from ..vp2p_core.sampling import landing_denoised, two_branch_step
from .checks import context_dim, fail
from .fingerprint import model_fingerprint
from .layout import transformer_blocks
from .patches import CONTROL_KEY, Attn2Patch, host_attention
from . import windows
from .progress import throw_if_interrupted
from .unet import COND, UNCOND

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


def attention_map_image(store, spec, hw, latent_hw, frames, scale=8, chunk=16):
    """One panel per frame: the chosen words' cross-attention side by side (heat colours).
    Written into the output `chunk` frames at a time: the IMAGE is the clip's size, its
    intermediates stay a window's (a long clip's whole-clip temporaries would be several times it)."""
    H, W = latent_hw[0] * scale, latent_hw[1] * scale
    if store is None or hw not in store.sum or not spec.map_tokens:
        return torch.zeros(frames, H, W, 3)
    h, w = vc.resolution_of(hw, latent_hw)
    maps = store.maps(hw, h, w)                  # [2, F, h, w, columns]
    steps = max(store.steps, 1)
    out = torch.empty(frames, H, W * len(spec.map_tokens), 3)
    for p, (label, branch, toks) in enumerate(spec.map_tokens):
        cols = store.columns(toks)
        for s in range(0, frames, chunk):
            m = (maps[0 if branch == "src" else 1, s:s + chunk] / steps)[..., cols].sum(-1)   # [f, h, w]
            m = m / m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
            m = torch.nn.functional.interpolate(m[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            heat = torch.stack([m.clamp(0, 1), (2 * m - 1).clamp(0, 1) * 0.9, (1 - 2 * m).clamp(0, 1) * 0.6], -1)
            out[s:s + chunk, :, p * W:(p + 1) * W] = heat.cpu()
    return out


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


def branch_conditioning(given, tensor, what):
    """A branch's ComfyUI CONDITIONING: the one the user wired (e.g. the controller's output
    through Apply ControlNet), checked to carry the controller's prompt, else the plain prompt."""
    if given is None:
        return [[tensor, {}]]
    if not isinstance(given, (list, tuple)) or len(given) != 1:
        fail(f"{what} must be one prompt's conditioning (got {len(given) if given else 0} entries).")
    c = given[0][0]
    if c.shape != tensor.shape or not torch.equal(c.float().cpu(), tensor.float().cpu()):
        fail(f"{what} carries another prompt than the P2P Controller's: connect the controller's "
             f"conditioning output through Apply ControlNet (or similar) into {what}, without re-encoding it.")
    return given


class DecoupledGuider(comfy.samplers.CFGGuider):
    """Video-P2P's two branches as one ComfyUI guider, run by ComfyUI's own samplers.

    The sampled latent is [source frames; target frames]. Each step evaluates the source branch
    (source prompt, the inversion's null of the step) and then the target branch (target prompt,
    the plain empty prompt) with ComfyUI's sampling_function, i.e. calc_cond_batch and the cfg
    functions, so ControlNets, hooks, wrappers and memory management apply to both; the source
    leaves its attention in a cache for the target to copy. Where Video-P2P rewrites a step
    (local blend, direct inversion) the prediction handed back is the one whose DDIM step lands
    on the rewritten latent (vp2p_core.sampling.landing_denoised)."""

    def __init__(self, model_patcher, inv, spec, cfg, decoupled=True):
        super().__init__(model_patcher)
        self.inv, self.spec, self.decoupled = inv, spec, decoupled
        self.set_cfg(float(cfg))
        self.steps = len(inv.sigmas) - 1
        self.frames = inv.x_T.shape[0]
        self.latent_hw = tuple(inv.x_T.shape[-2:])
        self.ctrl = spec.controller
        # what the inversion's mode means for the source branch (vp2p_core.inversion.MODES): put back
        # on the stored trajectory (its prediction then only serves the attention the target copies),
        # and its guidance (1 skips the unconditional half; fast's nulls are the source prompt)
        mode = inversion_modes.MODES[inv.mode]
        self.trajectory = inv.trajectory if mode.keeps_trajectory else None
        self.source_cfg = mode.source_cfg(inv.cfg)
        self.reset()

    def reset(self):
        """Fresh per-run state (attention maps, blend resolution, the last step's exact latents)."""
        lb = self.ctrl.local_blend
        tokens = [t for _, _, toks in self.spec.map_tokens for t in toks]
        if lb is not None:
            tokens += lb.src_tokens + lb.tgt_tokens
        self.store = vc.AttentionStore(tokens) if tokens else None
        self.resolution = None
        self.final = None

    def set_branch_conds(self, source=None, target=None):
        """A branch's unconditional half (the step's null, the empty prompt) carries the ControlNet
        of the branch's conditioning, as Apply ControlNet puts it on positive and negative alike."""
        inv, spec = self.inv, self.spec
        target = branch_conditioning(target, spec.target_cond, "target_conditioning")
        source = branch_conditioning(source, inv.source_cond, "source_conditioning")

        def uncond(tensor, branch):
            control = branch[0][1].get("control")
            return [[tensor, {} if control is None else {"control": control}]]
        conds = {"positive": target, "negative": uncond(inv.empty_cond, target), "source": source}
        for i in range(self.steps):
            conds[f"null_{i}"] = uncond(inv.null_embeddings[i], source)
        self.inner_set_conds(conds)

    def _options(self, model_options, ctx):
        mo = comfy.model_patcher.create_model_options_clone(model_options)
        topts = mo.setdefault("transformer_options", {})
        topts[CONTROL_KEY] = ctx
        topts["vp2p_frames"] = self.frames
        windows.install(mo, self.frames)    # core's context windows, anchored on the clip's frame 0
        return mo

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        throw_if_interrupted()
        sigmas = model_options["transformer_options"]["sample_sigmas"]
        sigma = timestep[0]
        i = int(torch.argmin((sigmas[:-1].to(sigma) - sigma).abs()))
        sigma_next = sigmas[i + 1].to(sigma)
        x_src, x_tgt = x.chunk(2)
        t_src, t_tgt = timestep.chunk(2)
        ctrl, store = self.ctrl, self.store
        store_hw = None if self.resolution is None else {self.resolution[0]}
        active = None if ctrl.is_identity() and store is None else ctrl
        cache = {}
        src_ctx = vc.StepContext(active, {COND: vc.SRC_C, UNCOND: vc.SRC_U}, i, self.steps, host_attention, store,
                                 store_hw, cache)
        tgt_ctx = vc.StepContext(active, {COND: vc.TGT_C, UNCOND: vc.TGT_U}, i, self.steps, host_attention, store,
                                 store_hw, cache)
        null = self.conds[f"null_{i}"]
        t_uncond = self.conds["negative"] if self.decoupled else null
        branches = [(x_src, t_src, null, self.conds["source"], self.source_cfg, self._options(model_options, src_ctx)),
                    (x_tgt, t_tgt, t_uncond, self.conds["positive"], self.cfg, self._options(model_options, tgt_ctx))]
        den_src, den_tgt = self._predict_branches(branches, cache, seed)
        if store is not None:
            self._end_step(store)
        lb = ctrl.local_blend
        blend = lb is not None and lb.active(i, self.steps)
        if self.trajectory is None and not blend:
            return torch.cat([den_src, den_tgt])
        if blend and (self.store is None or self.resolution is None or self.resolution[0] not in self.store.sum):
            blend_error(self.latent_hw, self.store)
        hooks = [lambda i_, n, xs, xt: lb.step_callback(i_, n, xs, xt, self.store, self.resolution)] if blend else []
        nxt_src, nxt_tgt = two_branch_step(i, self.steps, x_src, x_tgt, den_src, den_tgt, sigma, sigma_next,
                                           self.trajectory, hooks)
        # only a rewritten branch gets a landing prediction: the other keeps ComfyUI's own step
        src_rewritten, tgt_rewritten = self.trajectory is not None, blend
        if i == self.steps - 1:        # the sampler lands there up to rounding: keep them exactly
            self.final = (nxt_src if src_rewritten else None, nxt_tgt if tgt_rewritten else None)
        return torch.cat([landing_denoised(x_src, nxt_src, sigma, sigma_next) if src_rewritten else den_src,
                          landing_denoised(x_tgt, nxt_tgt, sigma, sigma_next) if tgt_rewritten else den_tgt])

    def _predict_branches(self, branches, cache, seed):
        """Each branch's guided prediction by ComfyUI's sampling_function, source first. Through
        context windows both branches run window by window (AnchoredWindows.execute_branches) and
        the fused conds are handed to sampling_function, whose pre-cfg and cfg functions then act
        as on a plain run: the same result as two windowed sampling_function calls, while the
        source->target cache holds one window instead of every window of the step. A MODEL that
        already carries a sampler_calc_cond_batch_function (another pack's) keeps the two calls."""
        sampling_function = comfy.samplers.sampling_function
        x, _, _, _, _, mo = branches[0]
        handler = mo.get(windows.HANDLER_KEY)
        if not isinstance(handler, windows.AnchoredWindows) or "sampler_calc_cond_batch_function" in mo or \
                not handler.should_use_context(self.inner_model, None, x, None, mo):
            return [sampling_function(self.inner_model, x_, t_, unc, cond, cfg, mo_, seed)
                    for x_, t_, unc, cond, cfg, mo_ in branches]
        calls = []
        for x_, t_, unc, cond, cfg, mo_ in branches:
            cfg1 = math.isclose(cfg, 1.0) and not mo_.get("disable_cfg1_optimization", False)
            inner = {k: v for k, v in mo_.items() if k != windows.HANDLER_KEY}   # shares transformer_options
            calls.append(([cond, None if cfg1 else unc], x_, t_, inner))
        fused = handler.execute_branches(comfy.samplers.calc_cond_batch, self.inner_model, calls, cache.clear)
        out = []
        for (x_, t_, unc, cond, cfg, mo_), conds_out in zip(branches, fused):
            mo_ = dict(mo_, sampler_calc_cond_batch_function=lambda args, o=conds_out: o)
            out.append(sampling_function(self.inner_model, x_, t_, unc, cond, cfg, mo_, seed))
        return out

    def _end_step(self, store):
        """Per-step bookkeeping of the attention maps; the first step fixes the resolution the
        blend and the preview read (all the UNet produced are recorded then, so it matches the
        UNet's rounding at any latent size)."""
        store.end_step()
        if self.resolution is not None:
            return
        picked = vc.pick_blend_resolution(store.sum, self.latent_hw)
        if picked is None:
            if self.ctrl.local_blend is not None:
                blend_error(self.latent_hw, store)
            log.warning("no cross-attention maps fit the %s latent; attention_maps is blank.", self.latent_hw)
            self.store = None
        else:
            self.resolution = picked
            store.keep_only(picked[0])

    def run(self, callback=None):
        """Samples both branches from the inversion's x_T -> (source, edited) model-space-free latents."""
        self.reset()
        x_T = self.inv.x_T.float()
        fmt = self.model_patcher.model.latent_format
        latent = fmt.process_out(torch.cat([x_T, x_T]))
        out = super().sample(torch.zeros_like(latent), latent, comfy.samplers.sampler_object("ddim"),
                             self.inv.sigmas.float(), callback=callback, disable_pbar=True, seed=0)
        halves = list(out.chunk(2))
        for k, exact in enumerate(self.final or ()):
            if exact is not None:
                halves[k] = fmt.process_out(exact)
        return [t.float().cpu() for t in halves]

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        """SamplerCustomAdvanced's entry: the edit starts from the inversion's noise, not from
        `noise`/`latent_image`, and runs on the inversion's own schedule; returns the edited frames."""
        if len(sigmas) != len(self.inv.sigmas) or not torch.allclose(sigmas.float().cpu(), self.inv.sigmas.float(),
                                                                      rtol=1e-4, atol=1e-6):
            fail(f"the sigmas differ from the inversion's schedule ({self.steps} steps, ddim_uniform): use "
                 f"BasicScheduler with scheduler ddim_uniform and steps {self.steps} (denoise 1.0).")
        if denoise_mask is not None:
            fail("a latent noise mask is not supported: the local blend of the P2P Controller limits the edit.")
        cb = None if callback is None else (lambda step, x0, x, total: callback(step, x0.chunk(2)[1], x.chunk(2)[1],
                                                                                   total))
        src, edited = self.run(cb)
        return self.model_patcher.model.latent_format.process_in(edited)


def decoupled_guider(model, inv, spec, cfg, source=None, target=None, decoupled=True):
    """The Decoupled Guider node's GUIDER (the edit through SamplerCustomAdvanced)."""
    check_inputs(model, inv, spec, cfg)
    windows.check_clip(model, inv.x_T.shape[0], inv.x_T.shape[-2:])
    _check_trajectory(inv)
    guider = DecoupledGuider(patched_clone(model), inv, spec, cfg, decoupled)
    guider.set_branch_conds(source, target)
    return guider


def _check_trajectory(inv):
    steps, frames = len(inv.sigmas) - 1, inv.x_T.shape[0]
    trajectory = getattr(inv, "trajectory", None)
    if trajectory is not None and tuple(trajectory.shape[:2]) != (steps + 1, frames):
        fail(f"the inversion's trajectory has shape {tuple(trajectory.shape)}, expected {steps + 1} "
             f"steps of {frames} frames: invert again.")


@torch.no_grad()
def decoupled_sample(model, inv, spec, cfg, branch_batching="auto", decoupled=True, source=None, target=None):
    """-> (edited LATENT, source LATENT, attention-map IMAGE), through ComfyUI's ddim sampler.
    `branch_batching` is kept for saved workflows: ComfyUI's calc_cond_batch evaluates each
    branch (its uncond and cond batched), source first. `decoupled=False` (benchmark ablation
    only) gives the target branch the source's optimised nulls."""
    guider = decoupled_guider(model, inv, spec, cfg, source, target, decoupled)
    steps = guider.steps
    preview = latent_preview.prepare_callback(guider.model_patcher, steps)

    def callback(step, x0, x, total):          # preview the edited frames
        preview(step, x0.chunk(2)[1], x, total)

    source_lat, edited_lat = guider.run(callback)
    res = guider.resolution
    maps_img = attention_map_image(guider.store, spec, res[0] if res else None, guider.latent_hw, guider.frames)
    return ({"samples": edited_lat}, {"samples": source_lat}, maps_img)
