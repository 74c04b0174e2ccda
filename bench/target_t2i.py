"""Can the model draw what an edit asks for? Text-to-image rate of each case's target caption.

An edit that fails on a target the model cannot draw from its caption alone says little about the
method; one that fails on a target it draws well does. Per case: `--samples` images of the
target caption from seeded noise (core KSampler, ddim, the case's steps and CFG, the case's frame
size), each read as `quality.judge` reads an edited frame where no truth mask exists: one object
by `oracle.classify`, several by `oracle.find_objects` (right when the found (colour, shape) are
exactly the wanted ones). `--against` prints a finished quality run's edit success beside it.

    python bench/target_t2i.py [--cases FILE] [--samples 16] [--against RUN.json --variant V] [--threads 2]
"""
import argparse
import json
import os

import quality


def target_rate(r, case, samples, seed):
    """-> share of `samples` text-to-image samples of the case's target caption the oracle reads
    as the edit's wanted objects."""
    import torch
    spec = r.world.WorldSpec.from_dict(case["world"])
    want = quality.expected_objects(r.world, case["target"], spec)
    with torch.inference_mode():
        frames = r.tl.text_to_image_u8(r.model, r.clip, r.vae, case["target"], samples, case["steps"], case["cfg"],
                                       seed, spec.size)
    ok = []
    for f in frames:
        if len(want) == 1:
            got = r.oracle.classify(f)
            ok.append((got["colour"], got["shape"]) == tuple(want[0]))
        else:
            ok.append(r.oracle.matches(r.oracle.find_objects(f, k=len(want)), want))
    return sum(ok) / len(ok)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=os.path.join(quality.REPO, "bench", "cases", "default.json"))
    ap.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1000, help="case i samples with seed + i")
    ap.add_argument("--against", help="a bench/quality.py result file: print its edit success beside")
    ap.add_argument("--variant", default="direct-inversion", help="the variant of --against to print")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    a.cases = os.path.abspath(a.cases)
    against = {}
    if a.against:
        with open(a.against) as f:
            against = {c: v[a.variant]["edit_success"] for c, v in json.load(f)["results"].items() if a.variant in v}
    cases = quality.load_cases(a.cases)
    r = quality.Runner(a.ckpt, a.threads)
    print(f"{len(cases)} cases, {a.samples} text-to-image samples of each target caption"
          + (f"; edit success of {a.variant} from {os.path.basename(a.against)}" if against else ""), flush=True)
    rates = []
    for i, case in enumerate(cases):
        rate = target_rate(r, case, a.samples, a.seed + i)
        rates.append(rate)
        edit = f"  edit success {against[case['name']]:.2f}" if case["name"] in against else ""
        print(f"{case['name']:<24} target t2i {rate:.2f}{edit}   {case['target']!r}", flush=True)
    print(f"mean over {len(rates)} cases: target t2i {sum(rates) / len(rates):.2f}")


if __name__ == "__main__":
    main()
