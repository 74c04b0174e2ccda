"""GPU benchmark at real size: a random-initialised SD1.5-sized UNet (320 channels, mult
1/2/4/4, 2 res blocks, 8 heads, context 768) on 512x512 videos (64x64 latents).

Prints, per frame count and precision: Tune On Video s/step, inversion seconds (fast and
null-text), edit seconds (Decoupled Sampler, paper windows) and peak VRAM of each stage.
No weights are needed (none can be downloaded here): speed and memory do not depend on them.

    python bench/gpu_sd15.py [--frames 8 24] [--precision fp32 fp16] [--steps 50] [--tune-steps 10]
    python bench/gpu_sd15.py --tiny        # smoke run of the script itself on CPU
"""
import argparse
import time

import _common


def sd15_config(tiny=False):
    _, tl = _common.boot()
    sc = tl.host.checkpoint
    if tiny:
        return tl.tiny_config(seed=0)
    u = sc.unet_config(model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2, context_dim=768,
                       attention_levels=[0, 1, 2])
    u.update(num_heads=8, num_head_channels=-1)
    return {"unet": u, "clip": sc.clip_config(hidden=768, layers=12, heads=12, intermediate=3072),
            "latent_scale": 0.18215, "seed": 0}


def stage(device, fn):
    with _common.PeakMemory(device) as mem:
        t = time.perf_counter()
        out = fn()
        if str(device).startswith("cuda"):
            import torch
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
    return dt, mem.peak, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 24])
    ap.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16"])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tune-steps", type=int, default=10)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    import torch
    _, tl = _common.boot()
    import comfy.model_management as mm
    sc = tl.host.checkpoint
    infl, tune, inv_mod = tl.host.inflation, tl.host.tuning, tl.host.inversion
    ctrl_node, sampler = tl.pack_nodes.edit.VP2PController, tl.host.sampling
    cfg = sd15_config(a.tiny)
    latent = 8 if a.tiny else 64
    clip = sc.build_clip(cfg)
    src, tgt = "a man riding a bike", "a man riding a motorbike"
    cond, empty = tl.encode(clip, src), tl.encode(clip, "")
    spec = ctrl_node.execute(clip, src, tgt, "swap", 0.2, 0.5, "", "", "", 0.3, 0.2, "cross+temporal (paper)", "")[0]
    dev = mm.get_torch_device()
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}), "
          f"latent {latent}x{latent}, {a.steps} DDIM steps, tuning {a.tune_steps} steps, torch {torch.__version__}")
    print(f"{'frames':>6} {'prec':>5} {'tune s/step':>11} {'tune GiB':>8} {'fast inv s':>10} "
          f"{'null-text s':>11} {'inv GiB':>8} {'edit s':>7} {'edit GiB':>8}")
    for precision in a.precision:
        # the UNet dtype is ComfyUI's own choice (fp16 on CUDA) unless fp32 is forced, as with --force-fp32
        mm.FORCE_FP32 = precision == "fp32"
        for frames in a.frames:
            model = sc.build_model(cfg)
            if precision == "fp16" and model.model.get_dtype() != torch.float16:
                print(f"(skipping fp16: ComfyUI chose {model.model.get_dtype()} on this device)")
                break
            inflated = infl.inflate(model, True, True, 0, 0)
            video = {"samples": torch.randn(frames, 4, latent, latent, generator=torch.Generator().manual_seed(0))}
            mp = "fp16" if precision == "fp16" and dev.type == "cuda" else "off"
            t_tune, m_tune, (tuned, _) = stage(dev, lambda: tune.tune_on_video(
                inflated, video, cond, a.tune_steps, 3e-5, 33, mixed_precision=mp,
                gradient_checkpointing=a.checkpointing))
            t_fast, _, _ = stage(dev, lambda: inv_mod.invert_video(tuned, video, cond, empty, a.steps, 7.5, "fast"))
            t_null, m_inv, (inv, _) = stage(dev, lambda: inv_mod.invert_video(
                tuned, video, cond, empty, a.steps, 7.5, "null-text", a.inner))
            t_edit, m_edit, _ = stage(dev, lambda: sampler.decoupled_sample(tuned, inv, spec, 7.5, "auto"))
            print(f"{frames:>6} {precision:>5} {t_tune / a.tune_steps:>11.3f} {m_tune / 1024:>8.2f} {t_fast:>10.1f} "
                  f"{t_null:>11.1f} {m_inv / 1024:>8.2f} {t_edit:>7.1f} {m_edit / 1024:>8.2f}", flush=True)
            del model, inflated, tuned, inv
            mm.soft_empty_cache()


if __name__ == "__main__":
    main()
