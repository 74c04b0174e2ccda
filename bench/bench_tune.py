"""Benchmark: Tune On Video speed / peak memory vs frames, and chunked frame-attention memory.

Prints seconds per tuning step and peak memory (CUDA: max allocated; CPU: peak RSS above the
baseline, sampled every millisecond) for 8/16/32 frames on the tiny model, then the peak memory
of one frame-attention layer with and without frame chunking.

    python bench/bench_tune.py [--frames 8 16 32] [--latent 16] [--steps 4]
"""
import argparse
import contextlib
import os
import sys
import time

import _common


def bench_tuning(model, clip, frames_list, latent, steps, checkpointing, measure):
    """measure: "time" (s/step, normal allocator) or "memory" (peak, allocator returning memory)."""
    import torch
    _, tl = _common.boot()
    infl, tune = tl.host.inflation, tl.host.tuning
    cond = tl.encode(clip, "a red circle moving right")
    inflated = infl.inflate(model, True, True, 0, 0)
    device = model.load_device
    what = "s/step" if measure == "time" else "peak MiB"
    print(f"\nTune On Video ({what}), tiny model, latent {latent}x{latent}, {steps} steps after a warm-up run, "
          f"device {device}, gradient checkpointing {checkpointing}")
    print(f"{'frames':>6} {what:>9}")
    for frames in frames_list:
        video = tl.video_latent(frames, latent, latent, seed=0)
        with torch.inference_mode(), open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            tune.tune_on_video(inflated, video, cond, 1, 3e-5, 33, gradient_checkpointing=checkpointing)
            with _common.PeakMemory(device) as mem:
                t = time.perf_counter()
                tune.tune_on_video(inflated, video, cond, steps, 3e-5, 33, gradient_checkpointing=checkpointing)
                dt = (time.perf_counter() - t) / steps
        print(f"{frames:>6} {dt if measure == 'time' else mem.peak:>9.3f}", flush=True)


def naive_attention(q, k, v, heads):
    """Materialises the full attention matrix (what chunking is for on backends without
    memory-efficient kernels)."""
    b, _, inner = q.shape
    d = inner // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    p = (q @ k.transpose(-1, -2) * d ** -0.5).softmax(-1)
    return (p @ v).transpose(1, 2).reshape(b, -1, inner)


def bench_frame_attention(frames_list, tokens, inner, heads, device):
    import torch
    _, tl = _common.boot()
    att = tl.core.attention
    host = tl.host.patches.host_attention
    print(f"\nOne frame-attention layer: {tokens} tokens/frame, width {inner}, {heads} heads, fp32, "
          f"2 chunks (cond+uncond), device {device}")
    print(f"{'frames':>6} {'attention':>10} {'chunk':>6} {'peak MiB':>9} {'ms':>8} {'max |diff|':>11}")
    for frames in frames_list:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(2 * frames, tokens, inner, generator=g).to(device) for _ in range(3))
        for name, fn in (("naive", naive_attention), ("comfy", lambda q_, k_, v_, h: host(q_, k_, v_, h))):
            ref = None
            for chunk in (0, 4, 1):
                with torch.inference_mode(), _common.PeakMemory(device) as mem:
                    t = time.perf_counter()
                    out = att.frame_attention(q, k, v, frames, heads, fn, chunk)
                    dt = (time.perf_counter() - t) * 1000
                ref = out if ref is None else ref
                diff = (out - ref).abs().max().item()
                print(f"{frames:>6} {name:>10} {chunk or 'all':>6} {mem.peak:>9.1f} {dt:>8.1f} {diff:>11.2e}")
                del out
        del q, k, v


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--latent", type=int, default=16, help="latent height/width of the video")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--tokens", type=int, default=1024, help="tokens per frame for the attention benchmark")
    ap.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import logging
    logging.disable(logging.INFO)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull), contextlib.redirect_stdout(devnull):
        model, clip, _ = _common.tiny_models()
    if not args.memory:
        bench_tuning(model, clip, args.frames, args.latent, args.steps, args.checkpointing, "time")
        if sys.platform.startswith("linux") and not str(model.load_device).startswith("cuda"):
            # on glibc, memory figures come from a child whose allocations above 64 KiB are their
            # own mappings returned on free, so sampled RSS follows live tensor memory
            import subprocess
            subprocess.run([sys.executable, os.path.abspath(__file__), "--memory"] + sys.argv[1:],
                           env=dict(os.environ, **MALLOC_ENV), check=True)
            return
    bench_tuning(model, clip, args.frames, args.latent, args.steps, args.checkpointing, "memory")
    bench_frame_attention(args.frames, args.tokens, 64, 2, model.load_device)


if __name__ == "__main__":
    main()
