"""Word-attention localisation of a toy-world model, measured through the pack as a user's edit
sees it (vp2p_dev/devkit.py attention_probe): held-out moving toy videos are encoded, inverted
(Shared Null-Text Invert) and edited by the Decoupled Sampler with a P2P Controller word swap of
one object's shape word, a local blend on that word and the attention-map output for it.

Per video and in total: `peak in` = share of frames whose attention-map image peaks in a latent
cell the object covers > 1/4 (`peak px`: on a pixel it covers > 1/2); `blend/obj` = area of the
local-blend mask the sampler applied at the last step over the object's area (mean; the pack's
mask is the word's map max-pooled 3x3 at the blend resolution, then > threshold x its max);
`mask/frame` = share of the frame inside that mask; `raw/obj` = the same ratio for the word's
map > threshold before the max-pool (what a blend without the max-pool would free); for
two-object videos, the share of the other object inside the mask (what the edit may repaint of
the object that must not change). `--change colour` swaps the object's colour instead of its
shape: the shape word is then in both prompts and the mask is the union of both branches' maps.

    python bench/attention_probe.py [CKPT] [--videos 6] [--steps 25] [--threads 1] [--image-model]
                                 [--change shape|colour] [--blend-maps "source where both have the word"]
"""
import argparse

import _common


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt", nargs="?", default=None,
                    help="checkpoint file (default: $VP2P_TOY_MODEL, else the shipped toy model)")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=777, help="rng of the videos (held out: not a training seed)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=7.5)
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--mode", default="direct-inversion", help="inversion mode (a key of vp2p_core.inversion.MODES)")
    ap.add_argument("--change", choices=["shape", "colour"], default="shape",
                    help="what the edit swaps: the object's shape word (the blend reads the source's map) or its "
                         "colour word (the shape word stays: the blend reads both branches' maps)")
    ap.add_argument("--blend-maps", default=None,
                    help="the P2P Controller's blend_maps (default: its default, both branches' maps)")
    ap.add_argument("--image-model", action="store_true", help="do not inflate the model (default: inflated, untuned)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    import torch
    _, tl = _common.boot()
    if a.threads:
        torch.set_num_threads(a.threads)
    path = tl.toy_model_path(a.ckpt)
    model, clip, vae = tl.load_toy(path)
    print(f"model {path}: {a.videos} videos x {a.frames} frames, {a.steps} steps, {a.mode}, "
          f"{'image model' if a.image_model else 'inflated (untuned)'}, blend threshold {a.threshold}, {a.change} swap"
          + (f", blend_maps {a.blend_maps!r}" if a.blend_maps else ""))
    print(f"{'video':<5} {'edit':<66} {'peak in':>7} {'peak px':>7} {'blend/obj':>9} {'mask/frame':>10} "
          f"{'raw/obj':>7} {'s':>5}")
    results = []
    for i, (spec, obj) in enumerate(tl.attention_probe_specs(a.videos, a.seed, a.frames)):
        r = tl.attention_probe(model, clip, vae, spec, obj, steps=a.steps, cfg=a.cfg, threshold=a.threshold,
                               mode=a.mode, inflate=not a.image_model, change=a.change, blend_maps=a.blend_maps)
        results.append(r)
        s = tl.attention_probe_summary([r])
        edit = f"{r['caption'].split(' on ')[0]} -> {r['target'].split(' on ')[0]}"
        print(f"{i:<5} {edit:<66} {s['peak_in']:>7.2f} {s['peak_px']:>7.2f} {s['blend_ratio_mean']:>9.2f} "
              f"{s['blend_frame_mean']:>10.2f} {s['raw_ratio_mean']:>7.2f} {r['seconds']:>5.1f}", flush=True)
        per_frame = " ".join(f"{'+' if row['peak_in'] else '-'}{row['blend_ratio']:.1f}" for row in r["rows"])
        print(f"      frames (peak in +/-, blend/obj): {per_frame}")
    s = tl.attention_probe_summary(results)
    print(f"total {s['frames']} frames: peak in {s['peak_in']:.2f}, peak px {s['peak_px']:.2f}, blend/obj mean "
          f"{s['blend_ratio_mean']:.2f} median {s['blend_ratio_median']:.2f} (worst video mean "
          f"{s['video_blend_ratio_max']:.2f}), mask/frame {s['blend_frame_mean']:.2f}, raw/obj mean "
          f"{s['raw_ratio_mean']:.2f} median {s['raw_ratio_median']:.2f}")
    for k in (1, 2):
        sub = [r for r in results if r["objects"] == k]
        if sub:
            t = tl.attention_probe_summary(sub)
            print(f"  {k}-object videos ({len(sub)}): peak in {t['peak_in']:.2f}, blend/obj mean "
                  f"{t['blend_ratio_mean']:.2f}, mask/frame {t['blend_frame_mean']:.2f}, raw/obj mean "
                  f"{t['raw_ratio_mean']:.2f}"
                  + (f", other object inside the mask {t['other_in_mask_mean']:.2f}" if "other_in_mask_mean" in t else ""))


if __name__ == "__main__":
    main()
