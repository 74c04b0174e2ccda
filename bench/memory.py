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
  sampler step     one step of the Decoupled Sampler as its guider runs it: the source branch
                   (2 x frames rows: prompt and null), then the target branch (2 x frames), no
                   grad, the controller editing (paper layers cross + temporal; "frame control"
                   adds the optional frame-attention layers) and its source -> target cache held
                   between the two calls.

The UNet weights are fp16 (as ComfyUI loads SD1.5 on a GPU) and the compute fp16; attention runs
through ComfyUI's optimized attention with PyTorch SDPA (what ComfyUI picks on a current NVIDIA
card), whose memory-efficient kernels keep no attention matrix. Not counted: the CUDA context
(~0.3-0.5 GB), the caching allocator's fragmentation, the text encoder and VAE (ComfyUI unloads
them while the UNet runs), the attention-map store of the controller (see docs/memory.md).

Validation (`--validate`): the same estimate at a size this CPU runs for real (a narrower SD1.x
UNet, 4 frames at 256x256, fp32) against the peak that torch's CPU allocator reports for the same
stage on real tensors (profiler allocation events), stated as a relative error per stage.

    python bench/memory.py --out bench/results/memory.txt              # 8/16/24 frames at 512x512
    python bench/memory.py --validate --out bench/results/memory_validation.txt
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
        mt.reset_mod_stats()     # a second forward of the same modules (the peak is kept)
        u = _apply(mp, model, x, 10.0, null.repeat(frames, 1, 1), [1], extra)
        guided = u + 7.5 * (c - u)
        loss = (guided.float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del c, u, guided, loss
    return mt.get_tracker_snapshot("peak")


def _sample_step(layers):
    def stage(mp, model, frames, hw, dtype, checkpointing=False):
        """One Decoupled Sampler step as its guider runs it: the source branch (prompt + the step's
        null, 2 x frames rows), then the target branch (2 x frames), with the P2P controller active
        (cross and self windows open, as in the first steps) and its source -> target cache held
        between the two calls."""
        import torch
        _, tl = _common.boot()             # the pack's modules as ComfyUI loaded them
        vc, patches = tl.core.control, tl.host.patches
        CONTROL_KEY, host_attention = patches.CONTROL_KEY, patches.host_attention
        COND, UNCOND = tl.host.unet.COND, tl.host.unet.UNCOND
        dm = model.diffusion_model
        for p in dm.parameters():
            p.requires_grad_(False)
        ctrl = vc.AttentionReplace(torch.eye(77), cross_replace=1.0, self_replace=1.0, layers=layers)
        x = torch.randn(2 * frames, 4, *hw, dtype=torch.float32)
        ctx = torch.randn(2 * frames, 77, 768, dtype=torch.float32)
        mt = _tracker()
        mt.track_external(dm)
        with mt, torch.no_grad():
            cache = {}
            for roles in ({COND: vc.SRC_C, UNCOND: vc.SRC_U}, {COND: vc.TGT_C, UNCOND: vc.TGT_U}):
                sc = vc.StepContext(ctrl, roles, 0, 50, host_attention, cache=cache)
                out = _apply(mp, model, x, 10.0, ctx, [1, 0], {CONTROL_KEY: sc})
                del out
                mt.reset_mod_stats()     # the next branch runs the same modules again (the peak is kept)
            del cache
        return mt.get_tracker_snapshot("peak")
    return stage


stage_sample = _sample_step(("cross", "temporal"))


STAGES = {"tune step": stage_tune, "null-text inner step": stage_null, "sampler step": stage_sample,
          "sampler step (frame control)": _sample_step(("cross", "temporal", "frame"))}


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


def weights_bytes(unet_cfg, dtype):
    """Bytes of the inflated UNet's parameters and buffers (what the MODEL holds on the card)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    key = (repr(sorted(unet_cfg.items(), key=str)), dtype, True)
    if key not in _BUILT:
        mode = FakeTensorMode(allow_non_fake_inputs=False)
        _BUILT[key] = (mode,) + build(unet_cfg, dtype, mode)
    dm = _BUILT[key][2].diffusion_model
    return sum(t.numel() * t.element_size() for t in list(dm.parameters()) + list(dm.buffers()))


def table(frames_list=(8, 16, 24), size=512, stages=tuple(STAGES), off_frames=None, report=None):
    """-> [(stage, frames, checkpointing, peak bytes, seconds)]; checkpointing off is estimated at
    `off_frames` only (all when None); `report(rows)` after every row (partial tables survive)."""
    import torch
    cfg = sd15_config()
    hw = (size // 8, size // 8)
    rows = [("inflated UNet weights", 0, False, weights_bytes(cfg, torch.float16), 0.0)]
    for frames in frames_list:
        for stage in stages:
            with_off = not stage.startswith("sampler") and (off_frames is None or frames in off_frames)
            for ck in ((True, False) if with_off else (True,) if not stage.startswith("sampler") else (False,)):
                t0 = time.perf_counter()
                b = estimate(cfg, frames, hw, torch.float16, stage, ck)
                rows.append((stage, frames, ck, b, time.perf_counter() - t0))
                print(f"{stage:28s} {frames:3d} frames  checkpointing {'on ' if ck else 'off'}  "
                      f"{b / GB:7.2f} GB   ({time.perf_counter() - t0:.0f} s)", flush=True)
                if report:
                    report(rows)
    return rows


def measured(unet_cfg, frames, hw, dtype, stage, checkpointing):
    """The stage on real CPU tensors: weights resident before it + the allocator's peak during it."""
    import torch
    key = (repr(sorted(unet_cfg.items(), key=str)), dtype, False)
    if key not in _BUILT:
        _BUILT[key] = (None,) + build(unet_cfg, dtype, None)
    _, mp, model = _BUILT[key]
    dm = model.diffusion_model
    resident = sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in list(dm.parameters()) + list(dm.buffers())}.values())
    torch.manual_seed(0)
    return resident + _common.allocator_peak(lambda: STAGES[stage](mp, model, frames, hw, dtype, checkpointing))


VALIDATION = dict(model_channels=64, num_heads=4, context_dim=768)   # a narrower SD1.x UNet


def validate(frames=4, size=256, stages=tuple(STAGES)):
    """The fake estimate against the same stage on real CPU tensors (allocator peak), at a size
    this CPU runs: -> [(stage, checkpointing, estimate, measured, relative error)]."""
    import torch
    cfg = dict(sd15_config(), **VALIDATION)
    hw = (size // 8, size // 8)
    out = []
    for stage in stages:
        for ck in ((False, True) if not stage.startswith("sampler") else (False,)):
            est = estimate(cfg, frames, hw, torch.float32, stage, ck, fake=True)
            real = measured(cfg, frames, hw, torch.float32, stage, ck)
            err = (est - real) / real
            out.append((stage, ck, est, real, err))
            print(f"{stage:28s} checkpointing {'on ' if ck else 'off'}  estimate {est / 2**20:8.1f} MiB  "
                  f"measured {real / 2**20:8.1f} MiB  error {100 * err:+.2f}%", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--frames", default=None, help="comma-separated (default 8,16,24; --validate: 4)")
    ap.add_argument("--size", type=int, default=None, help="default 512 (--validate: 256)")
    ap.add_argument("--off-frames", default="8", help="frame counts estimated with checkpointing off too "
                    "(comma-separated; empty: all)")
    ap.add_argument("--out", default=None, help="write the printed table to this file")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of: " + ", ".join(STAGES))
    a = ap.parse_args(argv)
    a.out = a.out and os.path.abspath(a.out)        # booting ComfyUI changes the working directory
    _boot_sdpa()
    import torch
    if a.validate:
        frames, size = int(a.frames or 4), a.size or 256
        rows = validate(frames, size, a.stages.split(","))
        lines = [f"memory model validation: estimate (FakeTensorMode + MemTracker) vs torch's CPU allocator peak on "
                 f"real tensors; SD1.x UNet narrowed to {VALIDATION}, {frames} frames at {size}x{size}, fp32; "
                 f"torch {torch.__version__}",
                 "| stage | checkpointing | estimate MiB | measured MiB | error |", "|---|---|---|---|---|"]
        lines += [f"| {st} | {'on' if ck else 'off'} | {e / 2**20:.1f} | {r / 2**20:.1f} | {100 * err:+.2f}% |"
                  for st, ck, e, r, err in rows]
    else:
        a.frames, a.size = a.frames or "8,16,24", a.size or 512
        head = [f"estimated peak memory, SD1.5 UNet (ComfyUI's SD15 config) fp16 at {a.size}x{a.size}, "
                f"PyTorch attention; torch {torch.__version__} (bench/memory.py)",
                "| stage | frames | checkpointing | peak GB |", "|---|---|---|---|"]

        def lines_of(rows):
            return head + [f"| {st} | {f or '-'} | {'-' if st.startswith(('sampler', 'inflated')) else 'on' if ck else 'off'} "
                           f"| {b / GB:.2f} |" for st, f, ck, b, _ in rows]

        def report(rows):
            if a.out:
                with open(a.out, "w") as fh:
                    fh.write("\n".join(lines_of(rows)) + "\n")
        rows = table(tuple(int(f) for f in a.frames.split(",")), a.size, a.stages.split(","),
                     tuple(int(f) for f in a.off_frames.split(",")) if a.off_frames else None, report)
        lines = lines_of(rows)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
