"""Peak memory of Load Video (VP2P) against the size of the frames it outputs.

Method: each load runs in a fresh subprocess (python, torch, PyAV and the pack's reader
imported, nothing else); the figure is the process's resident-set high-water mark
(getrusage ru_maxrss) after the load minus its resident set just before it, so it counts
everything the load touched: PyAV's decoder buffers, the decoded source frame, the float
copy that is resized, and the output batch. The sources are H.264 clips written with PyAV into
a temporary folder (a 4000x4000 clip and a long 1080p one; ultrafast preset, so making them
takes most of the run).

    python bench/loader_memory.py                 # bench/results/loader_memory.txt (~10 min on 2 busy cores)
    python bench/loader_memory.py --big-frames 16 --long-frames 48 --stride 4 --full-size-frames 4
                                                  # quicker, with the old full-size-first way for comparison
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1024 * 1024


def make_clip(path, frames, w, h, fps=24):
    """A moving gradient clip (H.264, yuv420p, ultrafast) written frame by frame."""
    import av
    import numpy as np
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx * 255 // max(1, w - 1)) ^ (yy * 255 // max(1, h - 1))).astype(np.uint8)
    with av.open(path, mode="w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "30"}
        for i in range(frames):
            x = np.empty((h, w, 3), np.uint8)
            x[..., 0] = base + np.uint8(i * 3 % 256)
            x[..., 1] = np.roll(base, 4 * i, axis=1)
            x[..., 2] = 128
            out.mux(vs.encode(av.VideoFrame.from_ndarray(x, format="rgb24")))
        out.mux(vs.encode(None))


def child(args):
    """Runs in the subprocess: load, then print the memory figures as JSON."""
    sys.path.insert(0, REPO)
    import torch  # noqa: F401  (imported before the baseline, as in ComfyUI)
    from vp2p_host import video_io

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    t = time.perf_counter()
    size = (args.width, args.height, 8, "crop")
    if args.full_size:      # how the loader worked before: decode the frames at full size, then resize
        images, fps, _ = video_io.read_file(args.src, args.start, args.count, args.stride, with_audio=False)
        images = video_io.resize(images, *size)
    else:
        images, fps, _ = video_io.read_file(args.src, args.start, args.count, args.stride, with_audio=False,
                                            size=size)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024      # KiB on Linux
    out = images.numel() * images.element_size()
    print(json.dumps({"frames": images.shape[0], "shape": list(images.shape), "output_bytes": out,
                      "peak_over_baseline": peak - before, "seconds": seconds}))


def measure(src, start, count, stride, width, height, full_size=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", src, str(start), str(count), str(stride),
           str(width), str(height)] + (["--full-size"] if full_size else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", type=int, default=4000, help="side of the square source (default 4000)")
    ap.add_argument("--big-frames", type=int, default=64, help="frames of the square source (default 64)")
    ap.add_argument("--long-frames", type=int, default=720, help="frames of the 1080p source (default 720 = 30 s)")
    ap.add_argument("--stride", type=int, default=12, help="stride for the long source (default 12)")
    ap.add_argument("--size", type=int, default=512, help="output width = height (default 512)")
    ap.add_argument("--full-size-frames", type=int, default=0, help=
                    "also load this many frames of the square source the way the loader did before (all at full "
                    "size, then resized), for comparison (default 0 = skip; 16 frames of 4000x4000 need ~5 GB)")
    ap.add_argument("--full-size", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=6, metavar=("SRC", "START", "COUNT", "STRIDE", "W", "H"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        src, *nums = a.child
        start, count, stride, w, h = map(int, nums)
        child(argparse.Namespace(src=src, start=start, count=count, stride=stride, width=w, height=h,
                                 full_size=a.full_size))
        return
    with tempfile.TemporaryDirectory(prefix="vp2p_loader_mem_") as d:
        big = os.path.join(d, "big.mp4")
        long = os.path.join(d, "long_1080p.mp4")
        t = time.perf_counter()
        make_clip(big, a.big_frames, a.big, a.big)
        make_clip(long, a.long_frames, 1920, 1080)
        print(f"sources: {a.big}x{a.big} x {a.big_frames} frames ({os.path.getsize(big) / MB:.1f} MB), "
              f"1920x1080 x {a.long_frames} frames at 24 fps ({os.path.getsize(long) / MB:.1f} MB); "
              f"made in {time.perf_counter() - t:.0f} s")
        print("peak = RSS high-water of a fresh process during the load minus its RSS just before; "
              "output = the IMAGE batch's bytes (float32)")
        print(f"{'source':<28} {'load':<34} {'output MB':>9} {'peak MB':>8} {'peak/output':>11} "
              f"{'peak-1.5x out MB':>16} {'s':>5}")
        cases = [(big, f"{a.big}x{a.big}", 0, 16, 1, False), (big, f"{a.big}x{a.big}", 0, a.big_frames, 1, False),
                 (long, f"1080p x {a.long_frames}", 0, 0, a.stride, False)]
        if a.full_size_frames:
            cases.append((big, f"{a.big}x{a.big}, full size first", 0, a.full_size_frames, 1, True))
        for src, name, start, count, stride, full_size in cases:
            r = measure(src, start, count, stride, a.size, a.size, full_size)
            out, peak = r["output_bytes"] / MB, r["peak_over_baseline"] / MB
            load = f"{r['frames']} frames (count {count or 'all'}, stride {stride}) -> {a.size}x{a.size}"
            print(f"{name:<28} {load:<34} {out:>9.1f} {peak:>8.1f} {peak / out:>11.2f} {peak - 1.5 * out:>16.1f} "
                  f"{r['seconds']:>5.1f}")


if __name__ == "__main__":
    main()
