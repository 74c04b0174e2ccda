"""Performance benchmark: every figure the README reports, in one run on the tiny model.

  1. control overhead of the Decoupled Sampler (edit / the same UNet evaluations without control),
     and the edit through ComfyUI's sampler against the pack's previous own loop
  2. frame scaling of an edit (8 / 16 / 32 / 64 frames: seconds per frame, peak memory)
  3. inversion cost by mode (null-text / fast / direct-inversion / ddim-cfg) and reconstruction PSNR
  4. Tune On Video seconds per step and peak memory (8 / 16 / 32 frames)

Each part is its own script (bench/bench_*.py, runnable alone with more options); this runs
them one after the other so they never compete for the CPU. Absolute seconds are only
meaningful on the machine they were taken on; ratios are the portable figures. For a GPU at
real size, see bench/gpu_sd15.py.

    python bench/perf.py [--quick]
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps/frames (a smoke run)")
    a = ap.parse_args()
    q = a.quick
    parts = [
        ("control overhead", ["bench_edit.py", "--frames", *(["4"] if q else ["8", "32"]), "--steps", "2" if q else "10",
                              "--repeat", "1" if q else "3"]),
        ("ComfyUI's sampler vs the previous own loop", ["bench_edit.py", "--own-loop", "--frames",
                                                         *(["4"] if q else ["8", "32"]), "--steps", "2" if q else "10",
                                                         "--repeat", "1" if q else "3"]),
        ("frame scaling", ["bench_edit.py", "--scaling", *(["2", "4"] if q else ["8", "16", "32", "64"]),
                           "--steps", "2" if q else "10"]),
        ("inversion by mode", ["bench_invert.py", "--frames", *(["4"] if q else ["8", "16"]), "--steps",
                               "3" if q else "50"]),
        ("tuning", ["bench_tune.py", "--frames", *(["4"] if q else ["8", "16", "32"]), "--steps", "1" if q else "4"]),
    ]
    t0 = time.time()
    for title, cmd in parts:
        print(f"\n===== {title}: python bench/{' '.join(cmd)}", flush=True)
        rc = subprocess.call([sys.executable, os.path.join(HERE, cmd[0]), *cmd[1:]])
        if rc:
            print(f"{title} failed with exit code {rc}")
            return rc
    print(f"\nall benchmarks: {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
