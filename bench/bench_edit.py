"""Benchmark: cost of attention control in the Decoupled Sampler.

Times the same sampler (same UNet evaluations: both branches, CFG, same steps) with control
off (every window 0, no blend, no maps: ComfyUI's fast attention everywhere) and with control
on (paper windows cross 0.2 / self 0.5 on cross + temporal attention, local blend and
attention maps; and every step controlled), on an inflated tiny model. Ratios are measured
in one run, alternating the variants; absolute seconds only mean something on a GPU.

    python bench/bench_edit.py [--frames 8 32] [--latent 16] [--steps 10] [--repeat 3]
    python bench/bench_edit.py --scaling 8 16 32 64     # frame scaling of the paper setting
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

VARIANTS = {
    "off": dict(cross_replace=0.0, self_replace=0.0),
    "paper windows": dict(cross_replace=0.2, self_replace=0.5),
    "paper + blend + maps": dict(cross_replace=0.2, self_replace=0.5, blend_words="circle",
                                 map_words="blue"),
    "every step": dict(cross_replace=1.0, self_replace=1.0, blend_words="circle", map_words="blue"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batching", default="auto", choices=["auto", "batched", "source-first"])
    ap.add_argument("--scaling", type=int, nargs="*", default=None,
                    help="instead: seconds per frame and peak memory of the paper setting for these frame counts")
    a = ap.parse_args()
    import torch
    _, tl = _common.boot()
    model, clip, _ = _common.tiny_models(channel_mult=(1, 2), model_channels=32)
    model = tl.host.inflation.inflate(model, True, True, 0, 0)
    ctrl, sampler = tl.pack_nodes.edit.VP2PController, tl.host.sampling
    base = dict(reweight_words="", reweight_scales="", blend_words="", blend_threshold=0.3, blend_start=0.2,
                controlled_layers="cross+temporal (paper)", map_words="")
    specs = {k: ctrl.execute(clip, "a red circle", "a blue circle", "swap", **dict(base, **v))[0]
             for k, v in VARIANTS.items()}
    dev = model.load_device
    print(f"Decoupled Sampler, tiny inflated model, latent {a.latent}x{a.latent}, {a.steps} steps, "
          f"batching {a.batching}, device {dev}, torch threads {torch.get_num_threads()}; best of {a.repeat}")
    if a.scaling:
        return scaling(a, tl, model, clip, specs["paper + blend + maps"], sampler)
    print(f"{'frames':>6} {'variant':>22} {'s':>8} {'ratio':>6} {'peak MiB':>9}")
    for frames in a.frames:
        noise = torch.randn(frames, 4, a.latent, a.latent, generator=torch.Generator().manual_seed(0))
        inv = tl.noise_inversion(model, clip, "a red circle", noise, steps=a.steps)
        best = {k: float("inf") for k in specs}
        peak = {}
        sampler.decoupled_sample(model, inv, specs["off"], 7.5, a.batching)   # warm-up
        for _ in range(a.repeat):
            for k, spec in specs.items():
                with _common.PeakMemory(dev) as mem:
                    t = time.perf_counter()
                    sampler.decoupled_sample(model, inv, spec, 7.5, a.batching)
                    best[k] = min(best[k], time.perf_counter() - t)
                peak[k] = max(peak.get(k, 0.0), mem.peak)
        for k in specs:
            print(f"{frames:>6} {k:>22} {best[k]:>8.3f} {best[k] / best['off']:>6.3f} {peak[k]:>9.1f}", flush=True)


def scaling(a, tl, model, clip, spec, sampler):
    import torch
    print(f"{'frames':>6} {'s':>8} {'s/frame':>8} {'peak MiB':>9} {'MiB/frame':>9}")
    for frames in a.scaling:
        noise = torch.randn(frames, 4, a.latent, a.latent, generator=torch.Generator().manual_seed(0))
        inv = tl.noise_inversion(model, clip, "a red circle", noise, steps=a.steps)
        sampler.decoupled_sample(model, inv, spec, 7.5, a.batching)   # warm-up
        with _common.PeakMemory(model.load_device) as mem:
            t = time.perf_counter()
            sampler.decoupled_sample(model, inv, spec, 7.5, a.batching)
            dt = time.perf_counter() - t
        print(f"{frames:>6} {dt:>8.3f} {dt / frames:>8.4f} {mem.peak:>9.1f} {mem.peak / frames:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
