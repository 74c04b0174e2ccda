"""Where the pack default's flicker comes from: the background of each edit split by the local
blend's final mask into the part the target branch painted (inside the mask) and the part kept
from the source branch (outside), with bench/quality.py's background and flicker metric.

    python bench/flicker_split.py [--cases bench/cases/default.json] [--names A B] [--threads 2]

Per case: flicker of the whole background, inside and outside the mask, and the share of the
background inside the mask; then the means. Cases without blend words are skipped (no mask).
"""
import argparse
import os

import quality as Q  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=os.path.join(Q.REPO, "bench", "cases", "default.json"))
    ap.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    ap.add_argument("--names", nargs="+")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    import numpy as np
    cases = [c for c in Q.load_cases(os.path.abspath(a.cases)) if not a.names or c["name"] in a.names]
    r = Q.Runner(a.ckpt, a.threads)
    o, rows = r.oracle, []
    for case in cases:
        if not case["blend_words"]:
            print(f"{case['name']:<24} skipped: no blend words")
            continue
        r.inversions = {}
        video, truth, latent, _ = r.prepare(case)
        tuned = r.tune_case(r.inflated(), latent, case)
        ctrl = r.controller(case)
        with r.tl.recording_blend_mask(ctrl) as seen:
            _, edited, _ = r.edit(tuned, latent, case, ctrl, mode="direct-inversion")
        ed = r.decode(edited)
        bg = Q.background(o, ed, truth)
        inside = r.tl.cells_to_pixels(seen["mask"][:, 0].cpu().numpy(), *ed.shape[1:3])
        row = (o.flicker(ed, bg), o.flicker(ed, bg & inside), o.flicker(ed, bg & ~inside),
               float((bg & inside).sum() / max(bg.sum(), 1)))
        rows.append(row)
        print(f"{case['name']:<24} flicker {row[0]:.2f}  inside the mask {row[1]:.2f}  outside {row[2]:.2f}  "
              f"background inside {row[3]:.2f}", flush=True)
    if rows:
        mean = np.nanmean(np.array(rows, float), axis=0)
        print(f"mean over {len(rows)} cases: flicker {mean[0]:.2f}  inside the mask {mean[1]:.2f}  "
              f"outside {mean[2]:.2f}  background inside {mean[3]:.2f}")


if __name__ == "__main__":
    main()
