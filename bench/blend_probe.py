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
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402


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
    vc = r.tl.pack("vp2p_core.control")
    last = {}
    original = vc.LocalBlend.mask

    def recording_mask(self, *args, **kw):
        out = original(self, *args, **kw)
        last["mask"] = out
        return out

    vc.LocalBlend.mask = recording_mask
    w, o = r.world, r.oracle
    print(f"{'case':<20} {'threshold':>9} {'mask':>6} {'bg in mask':>10} {'edit ok':>7} {'bg PSNR':>8}")
    for case in quality.load_cases(a.cases)[:a.limit or None]:
        if not case["blend_words"]:
            continue
        spec = w.WorldSpec.from_dict(case["world"])
        case.setdefault("source", spec.caption)
        video, truth = w.render(spec)
        want = quality.expected(w, case["target"], spec)
        with torch.inference_mode():
            latent = {"samples": r.vae.encode(torch.from_numpy(video.astype("float32") / 255.0)).float()}
            model = r.infl.inflate(r.model, True, True, 0, 0)
            tuned, _ = r.tune.tune_on_video(model, latent, r.tl.encode(r.clip, case["source"]),
                                           case["tune_steps"], case["tune_lr"], case["seed"])
            inv, _ = r.inv.invert_video(tuned, latent, r.tl.encode(r.clip, case["source"]),
                                        r.tl.encode(r.clip, ""), case["steps"], case["cfg"], "null-text",
                                        case["inner_iterations"])
        true_bg = ~np.stack([np.asarray(m) > 0.02 for m in truth["masks"]])
        for th in [None] + a.thresholds:
            last.clear()
            spec_c = r.controller(dict(case, blend_threshold=th or 0.3), blend=th is not None)
            with torch.inference_mode():
                edited, _, _ = r.sampler.decoupled_sample(tuned, inv, spec_c, case["cfg"], "auto")
            ed = r.decode(edited)
            seen = o.classify_video(ed)
            ok = sum((s["colour"], s["shape"]) == want for s in seen) / len(seen)
            bg = o.background_mask(truth["masks"], [o.object_mask(f) for f in ed])
            if "mask" in last:
                m = torch.nn.functional.interpolate(last["mask"].float(), size=video.shape[1:3], mode="nearest")
                m = m[:, 0].cpu().numpy() > 0.5
                cover, bg_in = f"{m.mean():.2f}", f"{(m & true_bg).sum() / true_bg.sum():.2f}"
            else:
                cover = bg_in = "-"
            print(f"{case['name']:<20} {'off' if th is None else th:>9} {cover:>6} {bg_in:>10} {ok:>7.2f} "
                  f"{o.background_psnr(ed, video, bg):>8.2f}", flush=True)


if __name__ == "__main__":
    main()
