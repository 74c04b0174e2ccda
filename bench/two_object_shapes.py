"""Why a toy model draws two-object scenes worse than one object: text-to-image shape accuracy
by drawn size, and whether a wrong shape is the other object's (a leak between the words).

One object: every colour x shape pair (`devkit.toy_accuracy`), the shape read by the oracle,
binned by the area the oracle found. Two objects: held-out two-object captions
(`devkit.toy_two_object_accuracy`), each found object matched to the wanted object of its colour;
its shape is right, the other object's (a leak; impossible in same-shape pairs), or the third.
DDIM 50, CFG 7.5, as the model card's accuracy table; `--cfg 3,5,7.5` repeats both for each scale
(does the guidance scale, not the weights, hold the figures back?).

    python bench/two_object_shapes.py [CKPT] [--per-pair 4] [--captions 24] [--cfg 7.5] [--threads 2]
"""
import argparse
import collections

import _common

BINS = ((0, 200), (200, 300), (300, 450), (450, 700), (700, 10 ** 6))


def by_area(pairs):
    """[(area, right)] -> lines of accuracy per area bin."""
    lines = []
    for lo, hi in BINS:
        hits = [ok for a, ok in pairs if lo <= a < hi]
        if hits:
            top = f"{hi}" if hi < 10 ** 6 else "+"
            lines.append(f"    area {lo}-{top} px: {sum(hits)}/{len(hits)} = {sum(hits) / len(hits):.3f}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt", nargs="?", default=None,
                    help="checkpoint file (default: $VP2P_TOY_MODEL, else the shipped toy model)")
    ap.add_argument("--per-pair", type=int, default=4, help="one-object samples per colour x shape pair")
    ap.add_argument("--captions", type=int, default=24, help="two-object captions (3 samples each)")
    ap.add_argument("--cfg", default="7.5", help="guidance scales, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    _, tl = _common.boot()
    torch.set_num_threads(a.threads)
    model = tl.load_toy(a.ckpt)
    for cfg in (float(c) for c in a.cfg.split(",")):
        print(f"== CFG {cfg:g}")
        report(tl, model, a, cfg)


def report(tl, model, a, cfg):
    _, _, rows = tl.toy_accuracy(*model, per_pair=a.per_pair, steps=50, cfg=cfg, seed=500)
    one = [(area or 0, shape == got) for _, shape, _, got, area in rows]
    print(f"one object: shape right {sum(ok for _, ok in one)}/{len(one)}")
    print("\n".join(by_area(one)))

    acc, rows = tl.toy_two_object_accuracy(*model, captions=a.captions, per_caption=3, steps=50, cfg=cfg,
                                           seed=100, with_objects=True)
    kinds, two = collections.Counter(), []
    for want, _, ok, objects in rows:
        same = want[0][1] == want[1][1]
        kinds[f"{'same' if same else 'different'}-shape pairs"] += 1
        kinds[f"{'same' if same else 'different'}-shape pairs both right"] += ok
        wanted = dict(want)
        for o in objects:
            if o["colour"] not in wanted:
                kinds["objects of an unnamed colour"] += 1
                continue
            shape = wanted.pop(o["colour"])
            other = next(s for c, s in want if c != o["colour"])
            two.append((o["area"], o["shape"] == shape))
            kinds["shape right" if o["shape"] == shape else
                  "shape of the other object" if o["shape"] == other else "a third shape"] += 1
        kinds["named objects not found"] += len(wanted)
    print(f"two objects: both right {acc:.3f} of {len(rows)} samples; found objects of a named colour: shape right "
          f"{sum(ok for _, ok in two)}/{len(two)}")
    print("\n".join(by_area(two)))
    for k in sorted(kinds):
        print(f"  {k}: {kinds[k]}")


if __name__ == "__main__":
    main()
