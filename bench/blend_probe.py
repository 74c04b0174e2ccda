"""Local-blend probe: how much of each frame the blend mask frees, and what that does to the
background, on quality-benchmark cases (one tuning and one inversion per case, then one edit
per threshold).

Prints per case and threshold: the share of pixels inside the blend mask at the last step
(`mask`), the share of the true background inside it (`bg in mask`: background the target
branch may repaint), edit success and background PSNR. An edit with no blend is the
reference row (`off`).

    python bench/blend_probe.py [--cases bench/cases/default.json] [--limit 4] [--thresholds 0.3 0.5 0.7]
"""
import argparse
import os

import quality


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=os.path.join(quality.REPO, "bench", "cases", "default.json"))
    ap.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    import numpy as np
    import torch
    r = quality.Runner(a.ckpt, a.threads)
    vc = r.tl.core.control
    last = {}
    original = vc.LocalBlend.mask

    def recording_mask(self, *args, **kw):
        out = original(self, *args, **kw)
        last["mask"] = out
        return out

    vc.LocalBlend.mask = recording_mask
    print(f"{'case':<20} {'threshold':>9} {'mask':>6} {'bg in mask':>10} {'edit ok':>7} {'bg PSNR':>8}")
    for case in quality.load_cases(a.cases)[:a.limit or None]:
        if not case["blend_words"]:
            continue
        video, truth, latent, want = r.prepare(case)
        tuned = r.tune_case(r.inflated(), latent, case)
        with torch.inference_mode():
            inv, _ = r.inv.invert_video(tuned, latent, r.tl.encode(r.clip, case["source"]),
                                        r.tl.encode(r.clip, ""), case["steps"], case["cfg"], "null-text",
                                        case["inner_iterations"])
        true_bg = ~np.stack([np.asarray(m) > 0.02 for m in truth["masks"]])
        for th in [None] + a.thresholds:
            last.clear()
            spec_c = r.controller(case if th is None else dict(case, blend_threshold=th), blend=th is not None)
            with torch.inference_mode():
                edited, _, _ = r.sampler.decoupled_sample(tuned, inv, spec_c, case["cfg"], "auto")
            met = r.edit_metrics(edited, video, truth, want)
            if "mask" in last:
                m = torch.nn.functional.interpolate(last["mask"].float(), size=video.shape[1:3], mode="nearest")
                m = m[:, 0].cpu().numpy() > 0.5
                cover, bg_in = f"{m.mean():.2f}", f"{(m & true_bg).sum() / true_bg.sum():.2f}"
            else:
                cover = bg_in = "-"
            print(f"{case['name']:<20} {'off' if th is None else th:>9} {cover:>6} {bg_in:>10} "
                  f"{met['edit_success']:>7.2f} {met['bg_psnr']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
