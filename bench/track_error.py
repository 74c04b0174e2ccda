"""How closely edited objects follow the source's motion: the oracle's track error (mean distance
in px between the object centre found in each edited frame and the known one) of the pack
default (tuned, direct inversion) with and without its local blend, for default cases by name.

    python bench/track_error.py [--names swap-red-green swap-circle-square long24-rotate-square]
                                [--ckpt CKPT] [--threads 2]
"""
import argparse
import os

import quality


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--names", nargs="+", default=["swap-red-green", "swap-circle-square", "long24-rotate-square"])
    ap.add_argument("--cases", default=os.path.join(quality.REPO, "bench", "cases", "default.json"))
    ap.add_argument("--ckpt", default=os.path.join(quality.REPO, "models", "toy_world", "toy_world_sd1.safetensors"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    r = quality.Runner(a.ckpt, a.threads)
    for case in [c for c in quality.load_cases(a.cases) if c["name"] in a.names]:
        video, truth, latent, _ = r.prepare(case)
        tuned = r.tune_case(r.inflated(), latent, case)
        errs = []
        for blend in (True, False):
            _, ed, _ = r.edit(tuned, latent, case, r.controller(case, blend=blend), mode="direct-inversion")
            errs.append(r.oracle.track_error(r.decode(ed), truth["centres"]))
        print(f"{case['name']}: with blend {errs[0]:.1f} px, without {errs[1]:.1f} px, "
              f"input {r.oracle.track_error(video, truth['centres']):.1f} px", flush=True)


if __name__ == "__main__":
    main()
