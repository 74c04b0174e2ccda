"""Benchmark: Shared Null-Text Invert, seconds and reconstruction quality per mode.

For each frame count and mode of vp2p_core.inversion.MODES (direct-inversion, null-text, fast =
official fast, and the ddim-cfg ablation = plain DDIM inversion sampled at CFG; plus null-text
with fixed-point refined inversion) on the inflated tiny model: inversion seconds (the node's whole work,
reconstruction included), mean optimiser updates per step, and the PSNR of the CFG-guided
reconstruction against the input, in latent space (peak = the input latent's value range)
and decoded with the model's VAE (images in [0, 1]). The tiny model is random, so the PSNRs
compare modes; they say nothing about a real checkpoint. Absolute seconds only mean something
on the machine they were taken on; the ratios to ddim-cfg (the plain DDIM inversion with its
guided reconstruction) are the portable figures. direct-inversion's reconstruction is the end of
the inversion trajectory (where the sampler puts its source branch back), so it is exact.

    python bench/bench_invert.py [--frames 8 16] [--latent 16] [--steps 50] [--inner 10] [--cfg 7.5]
"""
import argparse
import math
import time

import _common

BASELINE = "ddim-cfg"      # plain DDIM inversion: the times are also given as ratios to it


def variants(modes):
    """(label, mode, fixed-point iterations): every mode of the table, then null-text refined."""
    return [(m, m, 0) for m in modes] + [("null-text + fixed-point 3", "null-text", 3)]


def psnr(a, b, peak):
    mse = float((a.float() - b.float()).pow(2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(peak * peak / mse)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--plain", action="store_true", help="the image model instead of the inflated one")
    a = ap.parse_args()
    import torch
    _, tl = _common.boot()
    model, clip, vae = _common.tiny_models()
    if not a.plain:
        model = tl.host.inflation.inflate(model, True, True, 0, 0)
    inv_mod = tl.host.inversion
    cond, empty = tl.encode(clip, "a red circle moving right"), tl.encode(clip, "")
    print(f"Shared Null-Text Invert, tiny {'image' if a.plain else 'inflated'} model, latent {a.latent}x{a.latent}, "
          f"{a.steps} steps, cfg {a.cfg}, inner iterations {a.inner}, device {model.load_device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'frames':>6} {'mode':>25} {'seconds':>8} {'updates/step':>12} {'PSNR latent':>11} {'PSNR decoded':>12}")
    for frames in a.frames:
        video = tl.video_latent(frames, a.latent, a.latent, seed=0)
        x0 = video["samples"]
        peak = float(x0.max() - x0.min())
        with torch.inference_mode():
            ref_img = vae.decode(x0)
            inv_mod.invert_video(model, video, cond, empty, 2, a.cfg, "fast")      # warm-up
            seconds = {}
            for label, mode, fixed_point in variants(tl.core.inversion.MODES):
                t = time.perf_counter()
                inv, rec = inv_mod.invert_video(model, video, cond, empty, a.steps, a.cfg, mode, a.inner, fixed_point)
                seconds[label] = time.perf_counter() - t
                updates = sum(inv.iterations) / len(inv.iterations)
                p_lat = psnr(rec["samples"], x0, peak)
                p_img = psnr(vae.decode(rec["samples"]), ref_img, 1.0)
                print(f"{frames:>6} {label:>25} {seconds[label]:>8.2f} {updates:>12.1f} {p_lat:>11.2f} {p_img:>12.2f}",
                      flush=True)
        for label in (m for m in tl.core.inversion.MODES if m != BASELINE):
            print(f"{frames:>6} {label + f' / {BASELINE} time':>25} {seconds[label] / seconds[BASELINE]:>8.1f}x")


if __name__ == "__main__":
    main()
