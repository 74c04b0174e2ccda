"""How far Tune On Video fits the model to each case's video, per learning rate.

The paper's rate (3e-5) was set for SD1.5; whether it moves a much smaller model as far in the
cases' steps is a question of measurement. Per case and rate: the mean training loss (epsilon
MSE) of the second half of the tuning steps. The tuning draws its timesteps and noise from its
seed, so every rate sees the same draws and the losses pair up; the untuned reference is the
same run at a rate too small to move any weight (1e-12). Printed: per case the losses, then per
rate the mean ratio to the untuned loss.

    python bench/tune_fit.py [--cases FILE] [--names A B] [--limit N] [--lrs 3e-5 3e-4] [--steps N] [--threads 2]
"""
import argparse
import os

import quality

UNTUNED_LR = 1e-12


def late_loss(r, case, latent, lr, steps):
    """Mean tuning loss of the second half of `steps` at `lr`."""
    _, losses = r.tuning(r.inflated(), latent, case, steps, lr)
    tail = losses[len(losses) // 2:]
    return sum(tail) / len(tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=os.path.join(quality.REPO, "bench", "cases", "default.json"))
    ap.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    ap.add_argument("--names", nargs="+")
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4, 1e-3])
    ap.add_argument("--steps", type=int, default=0, help="tuning steps (default: each case's tune_steps)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    cases = [c for c in quality.load_cases(os.path.abspath(a.cases)) if not a.names or c["name"] in a.names]
    cases = cases[:a.limit] if a.limit else cases
    if not cases:
        raise SystemExit("no case selected")
    r = quality.Runner(a.ckpt, a.threads)
    print(f"{len(cases)} cases; mean tuning loss of the second half of the steps, untuned = lr {UNTUNED_LR:g}",
          flush=True)
    ratios = {lr: [] for lr in a.lrs}
    for case in cases:
        _, _, latent, _ = r.prepare(case)
        steps = a.steps or case["tune_steps"]
        base = late_loss(r, case, latent, UNTUNED_LR, steps)
        row = []
        for lr in a.lrs:
            loss = late_loss(r, case, latent, lr, steps)
            ratios[lr].append(loss / base)
            row.append(f"{lr:g} {loss:.4f}")
        print(f"{case['name']:<24} {steps} steps  untuned {base:.4f}  " + "  ".join(row), flush=True)
    for lr in a.lrs:
        x = ratios[lr]
        print(f"lr {lr:g}: loss {sum(x) / len(x):.3f}x the untuned (lower in {sum(v < 1 for v in x)}/{len(x)})")


if __name__ == "__main__":
    main()
