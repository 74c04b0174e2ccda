"""Peak accelerator memory of the pack's stages for SD1.5 at 512x512, estimated without a GPU.

Method: the SD1.5 UNet (ComfyUI's own class in ComfyUI's SD1.5 config) is built and inflated by
the pack (Inflate T2S Model's code: frame attention, temporal attention, video norm) inside
torch's FakeTensorMode, so no weight or activation is allocated; each stage's compute then runs
through the patched model (ComfyUI's BaseModel.apply_model with the pack's attention patches and
wrappers) under torch's MemTracker, which follows every live tensor's storage and reports the
peak of parameters + gradients + optimizer state + activations + temporaries:

  tune step        forward + backward of the tuning loss (trainable: attn1/attn2 to_q, the
                   temporal attention; AdamW fp32 master copies and moments), with and without
                   gradient checkpointing;
  null-text step   one inner step of the shared null optimisation (guided prediction with the
                   unconditional half differentiable, backward to the null), with and without
                   checkpointing; the inversion's DDIM steps and the fast/direct modes are
                   no-grad forwards (the "sampler step" column bounds them);
  sampler step     one step of the Decoupled Sampler (source and target branch, each with its
                   unconditional half: 4 x frames through the UNet, no grad).

The UNet weights are fp16 (as ComfyUI loads SD1.5 on a GPU) and the compute fp16; attention runs
through ComfyUI's optimized attention with PyTorch SDPA (what ComfyUI picks on a current NVIDIA
card), whose memory-efficient kernels keep no attention matrix. Not counted: the CUDA context
(~0.3-0.5 GB), the caching allocator's fragmentation, the text encoder and VAE (ComfyUI unloads
them while the UNet runs), the attention-map store of the controller (see docs/memory.md).

Validation (`--validate`): the same estimate at a size this CPU runs for real (a narrower SD1.x
UNet, 4 frames at 64x64 latents) against MemTracker on real CPU tensors.

    python bench/memory.py                 # the table -> bench/results/memory.txt
    python bench/memory.py --validate
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402

GB = 1024 ** 3


def _boot_sdpa():
    """Boot ComfyUI with PyTorch attention (what a current NVIDIA card gets)."""
    from vp2p_dev import comfy_host
    root = comfy_host.comfy_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    import comfy.options  # noqa: F401
    import comfy.cli_args
    comfy.cli_args.args.use_pytorch_cross_attention = True
    return _common.boot()


def build(unet_cfg, dtype, fake):
    """(ModelPatcher of the inflated UNet, BaseModel) under `fake` (a FakeTensorMode or None)."""
    import torch
    import comfy.model_patcher
    import comfy.supported_models
    import comfy.ops
    import comfy.utils
    _, tl = _common.boot()
    cfg = dict(unet_cfg)
    cfg["dtype"] = dtype
    mc = comfy.supported_models.SD15(cfg)
    mc.set_inference_dtype(dtype, None) if hasattr(mc, "set_inference_dtype") else None
    ctx = fake if fake is not None else contextlib.nullcontext()
    with ctx:
        model = mc.get_model({}, device=torch.device("cpu"))
        if fake is None:            # real run (validation): small seeded weights (torch.empty otherwise)
            torch.manual_seed(0)
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0, 0.02)
        mp = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                              offload_device=torch.device("cpu"))
        inflated = tl.host.inflation.inflate(mp, True, True, 0, 0)
        # the object patches as ModelPatcher.patch_model sets them (its .to() cannot move fake tensors)
        for key, obj in inflated.object_patches.items():
            comfy.utils.set_attr(model, key, obj)
    return inflated, model


def _topts(mp, frames, extra=None):
    import comfy.patcher_extension
    topts = comfy.patcher_extension.copy_nested_dicts(mp.model_options.get("transformer_options", {}))
    comfy.patcher_extension.merge_nested_dicts(topts.setdefault("wrappers", {}), mp.wrappers or {},
                                               copy_dict1=False)
    topts["vp2p_frames"] = frames
    topts.update(extra or {})
    return topts


def _apply(mp, model, x, sigma, ctx, cond_or_uncond, extra=None):
    import torch
    topts = _topts(mp, x.shape[0] // len(cond_or_uncond), extra)
    topts["cond_or_uncond"] = list(cond_or_uncond)
    topts["sigmas"] = sigma
    t = torch.full((x.shape[0],), float(sigma), device=x.device)
    return model.apply_model(x, t, c_crossattn=ctx, transformer_options=topts)


def stage_tune(mp, model, frames, hw, dtype, checkpointing):
    """One tuning step: forward, backward, AdamW step (fp32 masters of the trainable weights)."""
    import torch
    dm = model.diffusion_model
    for p in dm.parameters():
        p.requires_grad_(False)
    train = [m.weight for n, m in dm.named_modules() if n.endswith(("attn1.to_q", "attn2.to_q"))]
    train += [p for n, p in dm.named_parameters() if "vp2p_temporal" in n and "norm" not in n]
    masters = [p.detach().float().clone().requires_grad_(True) for p in train]
    opt = torch.optim.AdamW(masters, lr=3e-5, weight_decay=1e-2)
    for p in train:
        p.requires_grad_(True)
    x = torch.randn(frames, 4, *hw, dtype=torch.float32)
    ctx = torch.randn(1, 77, 768, dtype=torch.float32).repeat(frames, 1, 1)
    extra = {"vp2p_grad_checkpoint": True} if checkpointing else None
    mt = _tracker()
    mt.track_external(dm, opt)
    with mt:
        out = _apply(mp, model, x, 10.0, ctx, [0], extra)
        loss = (out.float() - x).pow(2).mean()
        loss.backward()
        for p, m in zip(train, masters):
            m.grad = p.grad.float()
            p.grad = None
        opt.step()
        opt.zero_grad(set_to_none=True)
        del out, loss
    return mt.get_tracker_snapshot("peak")


def stage_null(mp, model, frames, hw, dtype, checkpointing):
    """One inner step of the shared null optimisation: guided prediction (cond half no-grad,
    uncond half with the null differentiable), MSE to the inverted latent, backward, Adam step."""
    import torch
    dm = model.diffusion_model
    for p in dm.parameters():
        p.requires_grad_(False)
    null = torch.zeros(1, 77, 768, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([null], lr=1e-2)
    x = torch.randn(frames, 4, *hw, dtype=torch.float32)
    cond = torch.randn(1, 77, 768, dtype=torch.float32)
    extra = {"vp2p_grad_checkpoint": True} if checkpointing else None
    mt = _tracker()
    mt.track_external(dm, opt)
    with mt:
        with torch.no_grad():
            c = _apply(mp, model, x, 10.0, cond.repeat(frames, 1, 1), [0])
        u = _apply(mp, model, x, 10.0, null.repeat(frames, 1, 1), [1], extra)
        guided = u + 7.5 * (c - u)
        loss = (guided.float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del c, u, guided, loss
    return mt.get_tracker_snapshot("peak")


def stage_sample(mp, model, frames, hw, dtype, checkpointing=False):
    """One Decoupled Sampler step: both branches with their unconditional halves in one batch."""
    import torch
    dm = model.diffusion_model
    for p in dm.parameters():
        p.requires_grad_(False)
    x = torch.randn(4 * frames, 4, *hw, dtype=torch.float32)
    ctx = torch.randn(4 * frames, 77, 768, dtype=torch.float32)
    mt = _tracker()
    mt.track_external(dm)
    with mt, torch.no_grad():
        out = _apply(mp, model, x, 10.0, ctx, [1, 0, 1, 0])
        del out
    return mt.get_tracker_snapshot("peak")


STAGES = {"tune step": stage_tune, "null-text inner step": stage_null, "sampler step": stage_sample}


def _tracker():
    """torch's MemTracker (live storages of every op's inputs and outputs, by category), without
    its per-parameter gradient hooks (they refuse frozen weights; gradients are op outputs and
    counted anyway)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)
    return Tracker()


def peak_bytes(snapshot):
    return max(v["Total"] for v in snapshot.values())


_BUILT: dict = {}


def estimate(unet_cfg, frames, hw, dtype, stage, checkpointing, fake=True):
    """Peak tracked bytes of one stage (a fresh fake model each time)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    key = (repr(sorted(unet_cfg.items(), key=str)), dtype, fake)
    if key not in _BUILT:           # one (fake) model per configuration and process
        mode = FakeTensorMode(allow_non_fake_inputs=False) if fake else None
        _BUILT[key] = (mode,) + build(unet_cfg, dtype, mode)
    mode, mp, model = _BUILT[key]
    ctx = mode if mode is not None else contextlib.nullcontext()
    with ctx:
        torch.manual_seed(0)
        return peak_bytes(STAGES[stage](mp, model, frames, hw, dtype, checkpointing))


def sd15_config():
    from vp2p_dev import sd15_random
    return sd15_random.unet_config()


def table(frames_list=(8, 16, 24), size=512, stages=tuple(STAGES)):
    import torch
    cfg = sd15_config()
    hw = (size // 8, size // 8)
    rows = []
    for frames in frames_list:
        for stage in stages:
            for ck in ((True, False) if stage != "sampler step" else (False,)):
                t0 = time.perf_counter()
                b = estimate(cfg, frames, hw, torch.float16, stage, ck)
                rows.append((stage, frames, ck, b, time.perf_counter() - t0))
                print(f"{stage:22s} {frames:3d} frames  checkpointing {'on ' if ck else 'off'}  "
                      f"{b / GB:7.2f} GB   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def validate():
    """Fake estimate vs the same computation on real CPU tensors, at a size this CPU runs."""
    import torch
    cfg = dict(sd15_config())
    cfg.update(model_channels=64, num_heads=4, context_dim=768)
    out = []
    for stage in STAGES:
        for ck in ((False, True) if stage != "sampler step" else (False,)):
            est = estimate(cfg, 4, (16, 16), torch.float32, stage, ck, fake=True)
            real = estimate(cfg, 4, (16, 16), torch.float32, stage, ck, fake=False)
            err = (est - real) / real
            out.append((stage, ck, est, real, err))
            print(f"{stage:22s} checkpointing {'on ' if ck else 'off'}  estimate {est / 2**20:8.1f} MiB  "
                  f"real {real / 2**20:8.1f} MiB  error {100 * err:+.2f}%", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--frames", default="8,16,24")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default=None, help="write the printed table to this file")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of: " + ", ".join(STAGES))
    a = ap.parse_args(argv)
    _boot_sdpa()
    if a.validate:
        validate()
    else:
        table(tuple(int(f) for f in a.frames.split(",")), a.size, a.stages.split(","))


if __name__ == "__main__":
    main()
