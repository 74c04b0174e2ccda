"""Long clips: quality and cost of editing through core ComfyUI's context windows.

quality (toy world, bench/cases/long_clip.json: 96 and 192 frames at 64 px whose motion crosses
many windows): the same clip edited
  windowed        Context Windows (Manual) 16/4 pyramid on the inflated model: tuning on a random
                  window per step, direct inversion and the edit window by window, frame 0 in every window
  whole           no windows: the clip as one batch (tuning, inversion and edit)
  naive-chunks    the clip cut into 16-frame chunks, each inverted and edited alone (its own frame 0),
                  with the windowed run's tuned model: the baseline that must show seams
judged by bench/quality.py's oracles (edit success, background PSNR, flicker, two objects' keep
PSNR) plus the seam metric: background flicker of the frame pairs that straddle a window boundary
(the seams of the windowed run's windows, and of the chunks for naive-chunks) over the flicker of
the pairs inside windows (1.0: no seam).

cost: for 16 / 48 / 96 / 192 frames with 16-frame windows (overlap 4): peak memory and seconds
per frame of tuning, direct inversion, null-text inversion (2 inner iterations) and the edit, in
CPU seconds (process time) too, and per UNet row (the windows evaluate the overlaps twice and a
guest frame 0 per window); tiny steps, one subprocess per size and stage. CPU memory is the
stage's peak RSS (the kernel's VmHWM, reset after the model is loaded and again before the edit)
above the RSS after the model is loaded, and torch's allocator peak in a short profiled run; the
clip's own data (latents, the direct inversion's trajectory, the edit's attention-map IMAGE: one
RGB frame per frame) is its own column. On CUDA it is torch.cuda.max_memory_allocated.

    python bench/long_clip.py quality [--cases bench/cases/long_clip.json] [--out FILE] [--names ...]
    python bench/long_clip.py cost [--frames 16 48 96 192] [--steps 4] [--tune-steps 4] [--threads N]
        [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common

REPO = _common.REPO
WINDOW, OVERLAP = 16, 4



VARIANTS = ("windowed", "whole", "naive-chunks")
STAGES = ("tune", "invert", "null-text", "edit")   # invert: direct inversion (the default mode)
NULL_ITERATIONS = 2                                 # null-text's inner iterations per step in the cost run
ALLOCATOR_STEPS = 2                                 # steps of the profiled run that measures torch's peak


def write_table(lines, out, extra=""):
    """Print a result table and, with --out, write it (then `extra`) to that file."""
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n" + extra)

def windowed(model, length=WINDOW, overlap=OVERLAP, fuse="pyramid"):
    """core's Context Windows (Manual), as the node makes it."""
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode
    out = ContextWindowsManualNode.execute(model, length, overlap, "standard_static", 1, False, fuse, 0)
    return getattr(out, "result", out)[0]


def window_lists(frames, length=WINDOW, overlap=OVERLAP):
    """The frame indices of core's standard_static windows (what the handler evaluates)."""
    import comfy.context_windows as cw
    handler = cw.IndexListContextHandler(cw.get_matching_context_schedule("standard_static"),
                                         cw.get_matching_fuse_method("flat"), length, overlap)
    return cw.create_windows_static_standard(frames, handler, {})


def seam_pairs(windows, frames):
    """Frame pairs (t, t+1) that straddle a window boundary: a window starts at t+1 or ends at t."""
    seams = set()
    for w in windows:
        if w[0] > 0:
            seams.add(w[0] - 1)
        if w[-1] < frames - 1:
            seams.add(w[-1])
    return sorted(seams)


def seam_ratio(oracle, ed, bg, seams):
    """Background flicker across the seams over the flicker inside windows (pairs elsewhere)."""
    import numpy as np
    v = ed.astype(np.float32)
    per = []
    for t in range(len(v) - 1):
        m = bg[t] & bg[t + 1]
        per.append(float(np.abs(v[t + 1] - v[t])[m].mean()) if m.any() else float("nan"))
    per = np.array(per)
    inside = np.array([t not in set(seams) for t in range(len(per))])
    a, b = np.nanmean(per[~inside]), np.nanmean(per[inside])
    return float(a / b) if b > 0 else float("nan"), float(a), float(b)


def frame_evaluations(windows, frames):
    """UNet rows per frame of the clip in one evaluation: each window's frames plus the guest frame 0
    of a window without it (1.0 without windows)."""
    return sum(len(w) + (0 not in w) for w in windows) / frames if len(windows) > 1 else 1.0


def quality_table(results, cases, args):
    lines = [f"long-clip quality ({os.path.relpath(args.cases, REPO)}; steps {cases[0]['steps']}, tune_steps "
             f"{cases[0]['tune_steps']}, lr {cases[0]['tune_lr']}, direct-inversion, windows {WINDOW}/{OVERLAP} "
             f"{args.fuse}; tuning seed {sorted({c['seed'] for c in cases})}; CPU s: process time, "
             f"{args.threads or 'default'} torch thread(s))",
             "| case | frames | variant | edit success | bg PSNR | keep PSNR | flicker | seam ratio | input seam ratio "
             "| wall s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in results.items():
        for v, m in d["results"].items():
            lines.append(f"| {name} | {d['frames']} | {v} | {m['edit_success']:.3f} | {m['bg_psnr']:.2f} | "
                         f"{m.get('keep_psnr', float('nan')):.2f} | {m['flicker']:.2f} | {m['seam_ratio']:.2f} | "
                         f"{m['input_seam_ratio']:.2f} | {m['seconds']:.0f} | {m['cpu_seconds']:.0f} |")
    return lines


def quality(args):
    import torch
    import quality as q
    r = q.Runner(args.ckpt, args.threads)
    cases = q.load_cases(args.cases)
    if args.names:
        cases = [c for c in cases if c["name"] in args.names]
    for c in cases:
        c.update({k: v for k, v in (("steps", args.steps), ("tune_steps", args.tune_steps), ("seed", args.seed))
                  if v is not None})
    variants = set(args.variants)
    results = {}
    for case in cases:
        video, truth, latent, want = r.prepare(case)
        frames = latent["samples"].shape[0]
        spec = r.controller(case)
        out = {}
        t0, c0 = time.perf_counter(), time.process_time()
        win_model = windowed(r.inflated(), fuse=args.fuse)
        tuned_w = r.tuning(win_model, latent, case)[0]
        rec, ed_w, secs = r.edit(tuned_w, latent, case, spec, mode="direct-inversion")
        out["windowed"] = (ed_w, time.perf_counter() - t0, time.process_time() - c0, window_lists(frames))
        if "whole" in variants:
            t0, c0 = time.perf_counter(), time.process_time()
            tuned = r.tuning(r.inflated(), latent, case)[0]
            _, ed, _ = r.edit(tuned, latent, case, spec, mode="direct-inversion")
            out["whole"] = (ed, time.perf_counter() - t0, time.process_time() - c0, window_lists(frames))
        if "naive-chunks" in variants:
            t0, c0 = time.perf_counter(), time.process_time()
            plain = tuned_w.clone()
            plain.model_options.pop("context_handler", None)
            chunks = [list(range(s, min(s + WINDOW, frames))) for s in range(0, frames, WINDOW)]
            parts = []
            for c in chunks:
                r.inversions = {}
                parts.append(r.edit(plain, {"samples": latent["samples"][c]}, case, spec,
                                    mode="direct-inversion")[1]["samples"])
            out["naive-chunks"] = ({"samples": torch.cat(parts)}, time.perf_counter() - t0,
                                   time.process_time() - c0, chunks)
        out = {k: v for k, v in out.items() if k in variants}
        r.inversions = {}
        res = {}
        for name, (lat, secs, cpu, wins) in out.items():
            ed_u8 = r.decode(lat)
            m = q.judge(r.oracle, ed_u8, video, truth, want)
            bg = q.background(r.oracle, ed_u8, truth)
            ratio, across, inside = seam_ratio(r.oracle, ed_u8, bg, seam_pairs(wins, frames))
            src_ratio, _, _ = seam_ratio(r.oracle, video, bg, seam_pairs(wins, frames))
            m.update(seam_ratio=ratio, seam_flicker=across, inside_flicker=inside, input_seam_ratio=src_ratio,
                     seconds=secs, cpu_seconds=cpu)
            res[name] = m
            print(f"  {case['name']:<20} {name:<13} " + " ".join(f"{k} {v:.3g}" for k, v in m.items()), flush=True)
        results[case["name"]] = {"frames": frames, "results": res}
        if args.out and len(results) < len(cases):     # a partial table survives a stopped run
            write_table([f"PARTIAL: {len(results)} of {len(cases)} cases"] + quality_table(results, cases, args),
                        args.out, "\n" + json.dumps(results, indent=1) + "\n")
    write_table(quality_table(results, cases, args), args.out, "\n" + json.dumps(results, indent=1) + "\n")


# --------------------------------------------------------------------------- cost
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def reset_peak_rss():
    """Start the kernel's peak-RSS mark (VmHWM) afresh, so the model's loading does not count (Linux):
    -> whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb():
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024


def cost_one(frames, steps, tune_steps, stage, threads=0, allocator=False):
    """One size, one stage, in this process: -> dict of figures. `allocator`: the stage runs under
    torch's profiler and the figure is the peak of bytes live in torch's CPU allocator (what a GPU's
    allocator would hold; the process RSS also keeps what the C allocator does not give back)."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    _, tl = _common.boot()
    model, clip, _ = _common.tiny_models()
    infl = tl.host.inflation.inflate(model, True, True, 0, 0)
    m = windowed(infl) if frames > WINDOW else infl
    lat = tl.video_latent(frames, 8, 8)
    cond, empty = tl.encode(clip, "a red circle"), tl.encode(clip, "")
    cuda = torch.cuda.is_available()
    base = rss_mb()
    fresh = reset_peak_rss()
    measure = _common.allocator_peak if allocator else (lambda fn: fn())
    t, c = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        if stage == "tune":
            torch_peak = measure(lambda: tl.host.tuning.tune_on_video(m, lat, cond, steps=tune_steps, lr=1e-4))
        else:
            mode = "null-text" if stage == "null-text" else "direct-inversion"
            run = lambda: tl.host.inversion.invert_video(m, lat, cond, empty, steps, 7.5, mode,  # noqa: E731
                                                         NULL_ITERATIONS)
            if stage != "edit":
                torch_peak = measure(run)
            else:
                inv, _ = run()
                spec = tl.pack_nodes.edit.VP2PController.execute(
                    clip, "a red circle", "a blue circle", "swap", 0.2, 0.5, "", "", "circle", 0.3, 0.2,
                    "cross+temporal (paper)", "").result[0]
                fresh = reset_peak_rss()       # the edit's own peak (the trajectory it reads stays counted)
                t, c = time.perf_counter(), time.process_time()
                torch_peak = measure(lambda: tl.host.sampling.decoupled_sample(m, inv, spec, 7.5))
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    # the clip's own data: its latents (and the inversion's trajectory), and for the edit the attention-map
    # IMAGE it returns, one 64x64 RGB fp32 frame per frame of the clip (as large as the decoded clip). The
    # allocator figure of the edit counts what the edit allocates: not the trajectory made before it.
    latent, image = frames * 4 * 8 * 8 * 4, frames * 64 * 64 * 3 * 4
    trajectory = steps + 1 if stage != "tune" and not (allocator and stage == "edit") else 0
    clip_mb = (latent * (3 + trajectory) + (image if stage == "edit" else 0)) / 2 ** 20
    if allocator:
        return {"frames": frames, "stage": stage, "torch_peak_mb": torch_peak / 2 ** 20, "torch_clip_data_mb": clip_mb}
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else
            (peak_rss_since_reset_mb() if fresh else _common.peak_rss_mb()) - base)
    wins = window_lists(frames) if frames > WINDOW else [list(range(frames))]
    # UNet rows per frame of the clip in one evaluation: a tuning step evaluates one window (+ frame 0)
    rows = (len(wins[0]) + (len(wins) > 1)) / frames if stage == "tune" else frame_evaluations(wins, frames)
    return {"frames": frames, "stage": stage, "windows": len(wins), "rows_per_frame": rows, "seconds": secs,
            "s_per_frame": secs / frames, "cpu_seconds": cpu, "cpu_s_per_frame": cpu / frames, "peak_mb": peak,
            "clip_data_mb": clip_mb,
            "memory": "cuda max allocated" if cuda else "peak RSS of the stage - RSS after load"}


def _run_one(frames, steps, tune_steps, stage, threads, allocator=False):
    cmd = [sys.executable, os.path.abspath(__file__), "_one", str(frames), str(steps), str(tune_steps), stage,
           str(threads)] + (["allocator"] if allocator else [])
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not line:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(line[-1])


def cost(args):
    """Each size and stage twice, in subprocesses: timed with the RSS peak, then (CPU only) a short
    run of ALLOCATOR_STEPS steps under the profiler for torch's allocator peak."""
    rows = []
    if args.out:
        open(args.out + ".jsonl", "w").close()
    for frames in args.frames:
        for stage in STAGES:
            row = _run_one(frames, args.steps, args.tune_steps, stage, args.threads)
            if not row["memory"].startswith("cuda"):
                row.update(_run_one(frames, ALLOCATOR_STEPS, ALLOCATOR_STEPS, stage, args.threads, True))
            rows.append(row)
            if args.out:                       # partial tables survive a stopped run
                with open(args.out + ".jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
            print(row, flush=True)
    write_table(cost_table(rows, args), args.out)


def cost_table(rows, args):
    """The cost table and, where both sizes ran, each stage's ratio of the largest clip to the 16-frame
    one: CPU s/frame raw and per UNet row (the windows evaluate overlaps twice and a guest frame 0),
    memory as RSS and as torch's allocator peak, each less the clip's own data."""
    alloc = "torch_peak_mb" in rows[0]
    lines = [f"long-clip cost (tiny SD1.x UNet, 64 px, windows {WINDOW}/{OVERLAP} from 48 frames on; "
             f"{args.steps} inversion/edit steps, null-text {NULL_ITERATIONS} inner iterations, {args.tune_steps} "
             f"tuning steps; {args.threads or 'default'} torch thread(s); memory: {rows[0]['memory']}"
             + (f"; torch peak: bytes live in torch's CPU allocator (profiler), in a run of {ALLOCATOR_STEPS} steps"
                if alloc else "") + "; a 2-core CPU shared with other jobs: wall times are indicative, CPU s are "
             "process time)",
             "| frames | stage | windows | UNet rows/frame | wall s | CPU s | CPU s/frame | CPU s/row | peak MB | "
             "clip data MB |" + (" torch peak MB | its clip data MB |" if alloc else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if alloc else "")]
    for r_ in rows:
        lines.append(f"| {r_['frames']} | {r_['stage']} | {r_['windows']} | {r_['rows_per_frame']:.3f} | "
                     f"{r_['seconds']:.1f} | {r_['cpu_seconds']:.1f} | {r_['cpu_s_per_frame']:.4f} | "
                     f"{r_['cpu_s_per_frame'] / r_['rows_per_frame']:.4f} | {r_['peak_mb']:.0f} | "
                     f"{r_['clip_data_mb']:.2f} |"
                     + (f" {r_['torch_peak_mb']:.1f} | {r_['torch_clip_data_mb']:.2f} |" if alloc else ""))
    by = {(r_["frames"], r_["stage"]): r_ for r_ in rows}
    big = max(r_["frames"] for r_ in rows)
    ratios = []
    for stage in STAGES:
        a, b = by.get((16, stage)), by.get((big, stage))
        if a and b and big != 16:
            raw = b["cpu_s_per_frame"] / a["cpu_s_per_frame"]
            norm = raw / (b["rows_per_frame"] / a["rows_per_frame"])
            mem = (b["peak_mb"] - b["clip_data_mb"]) / max(a["peak_mb"], 1e-9)
            cells = [f"{raw:.2f}", f"{norm:.2f}", f"{b['peak_mb'] / max(a['peak_mb'], 1e-9):.2f}", f"{mem:.2f}"]
            if alloc:
                cells += [f"{b['torch_peak_mb'] / max(a['torch_peak_mb'], 1e-9):.2f}",
                          f"{(b['torch_peak_mb'] - b['torch_clip_data_mb']) / max(a['torch_peak_mb'], 1e-9):.2f}"]
            ratios.append(f"| {stage} | " + " | ".join(cells) + " |")
    if ratios:
        lines += ["", f"{big} frames over 16 frames (goal: <= 1.3 for s/frame and for memory less the clip data)",
                  "| stage | CPU s/frame | CPU s/row | peak MB | peak MB less clip data |"
                  + (" torch peak | torch peak less clip data |" if alloc else ""),
                  "|---|---|---|---|---|" + ("---|---|" if alloc else "")]
        lines += ratios
    return lines


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        frames, steps, tune_steps, stage, threads = sys.argv[2:7]
        print(json.dumps(cost_one(int(frames), int(steps), int(tune_steps), stage, int(threads),
                                  allocator=sys.argv[7:8] == ["allocator"])))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    qa = sub.add_parser("quality")
    qa.add_argument("--cases", default=os.path.join(REPO, "bench", "cases", "long_clip.json"))
    qa.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    qa.add_argument("--threads", type=int, default=0)
    qa.add_argument("--names", nargs="*")
    qa.add_argument("--steps", type=int, help="inversion/edit steps of every case (a short run)")
    qa.add_argument("--tune-steps", type=int, help="tuning steps of every case")
    qa.add_argument("--seed", type=int, help="the tuning seed of every case (a second run for the spread)")
    qa.add_argument("--fuse", default="pyramid", help="core's fuse method of the windowed variant")
    qa.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS,
                    help="the variants reported (windowed always runs: naive-chunks reuse its tuning)")
    qa.add_argument("--out")
    ca = sub.add_parser("cost")
    ca.add_argument("--frames", type=int, nargs="*", default=[16, 48, 96, 192])
    ca.add_argument("--steps", type=int, default=4)
    ca.add_argument("--tune-steps", type=int, default=4)
    ca.add_argument("--threads", type=int, default=0, help="torch threads of each size's process (0: default)")
    ca.add_argument("--out")
    args = ap.parse_args()
    for k in ("out", "cases"):       # the ComfyUI boot changes the working directory
        if getattr(args, k, None):
            setattr(args, k, os.path.abspath(getattr(args, k)))
    (quality if args.cmd == "quality" else cost)(args)


if __name__ == "__main__":
    main()
