"""Benchmark: cost of attention control in the Decoupled Sampler.

Times the same sampler (same UNet evaluations: both branches, CFG, same steps) with control
off (every window 0, no blend, no maps: ComfyUI's fast attention everywhere) and with control
on (paper windows cross 0.2 / self 0.5 on cross + temporal attention, local blend and
attention maps; and every step controlled), on an inflated tiny model. Ratios are measured
in one run, alternating the variants; absolute seconds only mean something on a GPU.

    python bench/bench_edit.py [--frames 8 32] [--latent 16] [--steps 10] [--repeat 3]
    python bench/bench_edit.py --scaling 8 16 32 64     # frame scaling of the paper setting
    python bench/bench_edit.py --own-loop               # ComfyUI's sampler vs the previous own loop
"""
import argparse
import time

import _common

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
    ap.add_argument("--own-loop", action="store_true",
                    help="instead: the edit through ComfyUI's sampler against the previous own loop (ratio)")
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
    if a.own_loop:
        return loop_comparison(a, tl, model, clip, specs["paper + blend + maps"], sampler)
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


def own_loop_sample(tl, model, inv, spec, cfg):
    """The pack's edit as it ran before it rode ComfyUI's sampler: its own two-branch loop
    (vp2p_core.sampling.two_branch_ddim) over its own UNet runner, both branches in one batched
    UNet call per step. Kept here only as the speed reference for the guider."""
    import torch
    core, host = tl.core, tl.host
    vc = core.control
    clone = host.sampling.patched_clone(model)
    runner = tl.UNetRunner(clone)
    dev, frames, steps = runner.device, inv.x_T.shape[0], len(inv.sigmas) - 1
    ctrl = spec.controller
    store = vc.AttentionStore() if ctrl.local_blend is not None or spec.map_tokens else None
    state = {"res": None}
    src_cond, tgt_cond, empty = inv.source_cond.to(dev), spec.target_cond.to(dev), inv.empty_cond.to(dev)
    COND, UNCOND = host.unet.COND, host.unet.UNCOND
    roles = [vc.SRC_U, vc.SRC_C, vc.TGT_U, vc.TGT_C]

    def denoise_step(i, x_src, x_tgt):
        ctx = vc.StepContext(ctrl, roles, i, steps, host.patches.host_attention, store,
                             None if state["res"] is None else {state["res"][0]})
        su, sc, tu, tc = runner.denoise([x_src, x_src, x_tgt, x_tgt], inv.sigmas[i].to(dev),
                                        [inv.null_embeddings[i].to(dev), src_cond, empty, tgt_cond],
                                        [UNCOND, COND, UNCOND, COND],
                                        {"vp2p_frames": frames, host.patches.CONTROL_KEY: ctx})
        if store is not None:
            store.end_step()
            if state["res"] is None:
                state["res"] = vc.pick_blend_resolution(store.sum, tuple(inv.x_T.shape[-2:]))
        return su + (sc - su) * inv.cfg, tu + (tc - tu) * cfg

    hooks = [] if ctrl.local_blend is None else \
        [lambda i, n, xs, xt: ctrl.local_blend.step_callback(i, n, xs, xt, store, state["res"])]
    with torch.no_grad():
        return core.sampling.two_branch_ddim(denoise_step, inv.x_T.to(dev).float(), inv.sigmas.to(dev), None, hooks)


def loop_comparison(a, tl, model, clip, spec, sampler):
    """The guider (ComfyUI's sampler + calc_cond_batch) against the previous own loop, same edit."""
    import torch
    print(f"{'frames':>6} {'own loop s':>10} {'guider s':>9} {'ratio':>6}")
    for frames in a.frames:
        noise = torch.randn(frames, 4, a.latent, a.latent, generator=torch.Generator().manual_seed(0))
        inv = tl.noise_inversion(model, clip, "a red circle", noise, steps=a.steps)
        own_loop_sample(tl, model, inv, spec, 7.5)
        sampler.decoupled_sample(model, inv, spec, 7.5, a.batching)     # warm-up both
        best = {"own": float("inf"), "guider": float("inf")}
        for _ in range(a.repeat):
            t = time.perf_counter()
            own_loop_sample(tl, model, inv, spec, 7.5)
            best["own"] = min(best["own"], time.perf_counter() - t)
            t = time.perf_counter()
            sampler.decoupled_sample(model, inv, spec, 7.5, a.batching)
            best["guider"] = min(best["guider"], time.perf_counter() - t)
        print(f"{frames:>6} {best['own']:>10.3f} {best['guider']:>9.3f} {best['guider'] / best['own']:>6.3f}",
              flush=True)


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
