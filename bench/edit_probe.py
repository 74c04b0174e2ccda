"""Where drawable shape swaps and one-of-two-object edits are lost: several edit settings on the
same drawn cases, each case tuned and inverted once (direct inversion, the pack default) and
edited once per setting, judged by quality.judge; the model's text-to-image rate of each target
beside it (bench/target_t2i.py). The settings are quality.py case fields:

  default         the case as drawn (cross_replace 0.2, blend on the edited shape word(s))
  word-0          per-word window 0 on the target's changed words (their columns never copied)
  cross0.8+word0.2  cross_replace 0.8 for every token, 0.2 for the changed words (prompt-to-prompt's
                  short window for the swapped word, long one for the rest)
  blend-changed   blend on the words that differ between the prompts (two objects: the edited
                  object's own words, not a shape word the other object may share)
  self-0.2        self_replace 0.2 instead of 0.5 (the temporal/frame maps of the source, which
                  hold the old shape, copied for fewer steps)
  blend-changed+word-0  blend-changed and word-0 together
  blend-own       the blend reads only the changed words' own token positions (a shape word the other
                  object also has is not read there)
  blend-own+word-0  blend-own and word-0 together

`--names` edits only the named drawn cases (e.g. the ones a quality.py run lost); `--t2i-from RUN.json`
takes each case's text-to-image rate from a finished quality.py run of the same draws instead of
sampling it again (the same cases have the same rate there).

    python bench/edit_probe.py --kinds shape-swap two-colour two-shape --draw 1 --seed 100
                               [--settings default word-0 ...] [--set steps=10 tune_steps=20] [--t2i-samples 8]
                               [--names shape-swap-s38-1 ...] [--t2i-from bench/results/quality_draws.json]
"""
import argparse
import json
import os
import time

import _common
import quality
import target_t2i

SETTINGS = {
    "default": {},
    "word-0": {"swapped_window": 0.0},
    "cross0.8+word0.2": {"cross_replace": 0.8, "swapped_window": 0.2},
    "blend-changed": {"blend_changed": True},
    "self-0.2": {"self_replace": 0.2},
    "blend-changed+word-0": {"blend_changed": True, "swapped_window": 0.0},
    "blend-own": {"blend_own": True},
    "blend-own+word-0": {"blend_own": True, "swapped_window": 0.0},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["shape-swap", "two-colour", "two-shape"], choices=quality.KINDS)
    ap.add_argument("--draw", type=int, default=1, help="cases per kind")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--set", metavar="KEY=VALUE", nargs="+", default=[], help="case fields for every case")
    ap.add_argument("--t2i-samples", type=int, default=8)
    ap.add_argument("--names", nargs="+", help="only these drawn cases")
    ap.add_argument("--t2i-from", metavar="JSON", help="text-to-image rates of a quality.py run of the same draws")
    ap.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(_common.REPO, "artifacts", "edit_probe.json"))
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    a.t2i_from = a.t2i_from and os.path.abspath(a.t2i_from)    # before ComfyUI's boot changes the cwd
    r = quality.Runner(a.ckpt, a.threads)
    cases = [dict(quality.DEFAULTS, **c) for c in quality.draw_cases(r.world, a.draw, a.seed) if c["kind"] in a.kinds]
    if a.names:
        unknown = set(a.names) - {c["name"] for c in cases}
        if unknown:
            raise SystemExit(f"no drawn case named {sorted(unknown)} (--draw {a.draw} --seed {a.seed}, kinds {a.kinds})")
        cases = [c for c in cases if c["name"] in a.names]
    known = {}
    if a.t2i_from:
        with open(a.t2i_from) as f:
            known = json.load(f).get("t2i") or {}
    overrides = quality.parse_overrides(a.set, cases)
    print(f"{len(cases)} cases (--draw {a.draw} --seed {a.seed}, kinds {' '.join(a.kinds)}), "
          f"overrides {overrides}, settings {' '.join(a.settings)}", flush=True)
    rows, t0 = {}, time.time()
    for i, case in enumerate(cases):
        case.update(overrides)
        rate = known[case["name"]] if case["name"] in known else \
            target_t2i.target_rate(r, case, a.t2i_samples, 1000 + i) if a.t2i_samples else float("nan")
        video, truth, latent, want = r.prepare(case)
        r.inversions = {}
        tuned = r.tune_case(r.inflated(), latent, case) if case["tune_steps"] else r.inflated()   # 0: untuned
        rows[case["name"]] = {"t2i": rate, "frames": case["world"]["frames"], "target": case["target"]}
        for s in a.settings:
            c = dict(case, **SETTINGS[s])
            _, edited, _ = r.edit(tuned, latent, c, r.controller(c), mode="direct-inversion")
            m = r.edit_metrics(edited, video, truth, want)
            rows[case["name"]][s] = m
            print(f"  {case['name']:<18} t2i {rate:.2f} {s:<17} " + " ".join(f"{k} {v:.3g}" for k, v in m.items()),
                  flush=True)
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            # paths in the file relative to the repository, so a result file names no machine's folders
            args = {k: os.path.relpath(v, _common.REPO) if k in ("out", "t2i_from") and v else v
                    for k, v in vars(a).items()}
            json.dump({"args": args, "overrides": overrides, "rows": rows, "seconds": time.time() - t0}, f,
                      indent=1)
    print("\n" + table(rows, a.settings))
    print(f"\ntotal {time.time() - t0:.0f} s")


def table(rows, settings):
    """Mean edit success (and keep rate where two objects) per setting: all cases, drawable ones."""
    import numpy as np
    easy = [n for n, r in rows.items() if r["t2i"] >= quality.DRAWABLE]
    lines = [f"{len(rows)} cases, {len(easy)} drawable (t2i >= {quality.DRAWABLE})", "",
             "| setting | edit success, all | edit success, drawable | bg PSNR dB | flicker | "
             "keep PSNR dB (two objects) | keep rate (two objects) |",
             "|---|---|---|---|---|---|---|"]
    for s in settings:
        mean = lambda names, k: np.mean([rows[n][s][k] for n in names if s in rows[n] and k in rows[n][s]]  # noqa: E731
                                        or [np.nan])
        lines.append(f"| {s} | {mean(list(rows), 'edit_success'):.2f} | {mean(easy, 'edit_success'):.2f} | "
                     f"{mean(list(rows), 'bg_psnr'):.1f} | {mean(list(rows), 'flicker'):.2f} | "
                     f"{mean(list(rows), 'keep_psnr'):.1f} | {mean(list(rows), 'keep_rate'):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
