"""The README's "Results in short" (and docs/memory.md's tables), computed from the result files in
bench/results/ (written by the benchmarks), so that no figure in them is typed by hand: `--write`
rewrites the blocks between their markers, `--check` (and tests/core/test_results_summary.py) fails
when a document and the files disagree.

    python -m vp2p_dev.results_summary            print the block
    python -m vp2p_dev.results_summary --write    rewrite it in README.md
    python -m vp2p_dev.results_summary --check    exit 1 if README.md is out of date
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
README = os.path.join(REPO, "README.md")
DEFAULT = "direct-inversion"          # the variant that runs what the nodes run by default


def _json(name, results=RESULTS):
    with open(os.path.join(results, name)) as f:
        return json.load(f)


def _table(name, results=RESULTS):
    """Rows of the first markdown table in a result file, as lists of cell strings (header dropped)."""
    with open(os.path.join(results, name)) as f:
        rows = [ln.strip() for ln in f if ln.strip().startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


def _mean(summary, variant, metric):
    return summary[variant][metric][0]


def hand_written(results=RESULTS):
    """The 20 hand-written toy cases (bench/cases/default.json, model v3)."""
    d = _json("quality_v3.json", results)
    s, per = d["summary"], d["results"]
    cases = [c for c in per if DEFAULT in per[c] and "ddim+target" in per[c]]
    better = sum(per[c][DEFAULT]["bg_psnr"] > per[c]["ddim+target"]["bg_psnr"] for c in cases)
    inv_ratio = _mean(s, "video-p2p", "invert_seconds") / _mean(s, DEFAULT, "invert_seconds")
    return (
        f"On the {len(cases)} hand-written toy cases ([Benchmarks](docs/benchmarks.md)), Video-P2P as the nodes run it "
        f"keeps the background better "
        f"than plain DDIM editing with the target prompt in {better}/{len(cases)} cases "
        f"({_mean(s, DEFAULT, 'bg_psnr'):.1f} against {_mean(s, 'ddim+target', 'bg_psnr'):.1f} dB); edit success "
        f"{_mean(s, DEFAULT, 'edit_success'):.2f} (plain DDIM + target {_mean(s, 'ddim+target', 'edit_success'):.2f}, "
        f"per-frame Image-P2P {_mean(s, 'image-p2p', 'edit_success'):.2f}), flicker "
        f"{_mean(s, DEFAULT, 'flicker') / _mean(s, 'image-p2p', 'flicker'):.2f}x per-frame Image-P2P's; "
        f"in two-object edits the other object keeps its colour and shape in "
        f"{100 * _mean(s, DEFAULT, 'keep_rate'):.0f}% of frames ({_mean(s, DEFAULT, 'keep_psnr'):.1f} dB). "
        f"The paper's shared null-text inversion reconstructs at {_mean(s, 'video-p2p', 'recon_psnr'):.1f} dB "
        f"(decoded) against plain DDIM inversion's {_mean(s, 'ddim-cfg', 'recon_psnr'):.1f}; direct inversion "
        f"(the default) takes 1/{inv_ratio:.0f} of its time and its source branch follows the input's own "
        f"trajectory by construction, so its reconstruction measures nothing: it is judged by its edits.")


DRAWABLE = 0.8      # bench/quality.py's bar: a target the model draws in at least this share of samples


def _mean_of(values):
    values = list(values)
    return sum(values) / len(values)


def drawn(results=RESULTS):
    """The headline: cases drawn at random by the toy world's generator (bench/quality.py --draw)."""
    d = _json("quality_draws.json", results)
    per, t2i = d["results"], d["t2i"]
    cases = [c for c in per if DEFAULT in per[c] and "ddim+target" in per[c]]
    m = lambda v, k, names=cases: _mean_of(per[c][v][k] for c in names)  # noqa: E731
    easy = [c for c in cases if t2i[c] >= DRAWABLE]
    two = [c for c in cases if "keep_psnr" in per[c][DEFAULT]]
    bg_better = sum(per[c][DEFAULT]["bg_psnr"] > per[c]["ddim+target"]["bg_psnr"] for c in cases)
    fl_lower = sum(per[c][DEFAULT]["flicker"] < per[c]["ddim+target"]["flicker"] for c in cases)
    rate = _mean_of(t2i[c] for c in easy)
    text = (f"On {len(cases)} toy cases drawn at random by the toy world's own generator (`{d['case_file']}`, every "
            f"edit kind; [docs/quality.md](docs/quality.md)), Video-P2P as the nodes run it keeps the background better "
            f"than plain DDIM editing with the target prompt in {bg_better}/{len(cases)} cases "
            f"({m(DEFAULT, 'bg_psnr') - m('ddim+target', 'bg_psnr'):+.1f} dB) and flickers less in {fl_lower}/"
            f"{len(cases)}. Where the model itself draws the target (text-to-image rate >= {DRAWABLE}: {len(easy)} "
            f"cases, rate {rate:.2f}) it edits {m(DEFAULT, 'edit_success', easy):.2f} of frames, "
            f"{m(DEFAULT, 'edit_success', easy) / rate:.2f} of the model's rate (DDIM + target "
            f"{m('ddim+target', 'edit_success', easy):.2f}); over all cases {m(DEFAULT, 'edit_success'):.2f} "
            f"({m('ddim+target', 'edit_success'):.2f}). In the {len(two)} two-object edits the object that must not "
            f"change keeps {m(DEFAULT, 'keep_psnr', two):.1f} dB and its colour and shape in "
            f"{100 * m(DEFAULT, 'keep_rate', two):.0f}% of frames, short of the issue's 28 dB / 95%.")
    ipr = _json("quality_draws_image_p2p.json", results)["results"]
    ip = [c for c in ipr if "image-p2p" in ipr[c] and c in per]
    flick = _mean_of(per[c][DEFAULT]["flicker"] / ipr[c]["image-p2p"]["flicker"] for c in ip)
    text += (f" Flicker is {flick:.2f}x per-frame Image-P2P's on the {len(ip)} drawn cases that baseline ran on "
             f"(it costs about 25 s per frame here), against the issue's 0.6x.")
    own = os.path.join(results, "quality_draws_two_shape_own_blend.json")
    if os.path.exists(own):
        o = _json(os.path.basename(own), results)["results"]
        names = [c for c in o if c in per]
        after = {c: (o[c] if c in names else per[c])[DEFAULT] for c in two}
        text += (f" Those figures predate the local blend's reading of an edited word at its own place only, which "
                 f"changes the {len(names)} two-shape draws alone; run again, they keep "
                 f"{_mean_of(o[c][DEFAULT]['keep_psnr'] for c in names):.1f} dB instead of "
                 f"{m(DEFAULT, 'keep_psnr', names):.1f} and edit {_mean_of(o[c][DEFAULT]['edit_success'] for c in names):.2f} "
                 f"of frames instead of {m(DEFAULT, 'edit_success', names):.2f}, so all {len(two)} two-object edits keep "
                 f"{_mean_of(a['keep_psnr'] for a in after.values()):.1f} dB and "
                 f"{100 * _mean_of(a['keep_rate'] for a in after.values()):.0f}% of frames.")
    return text


def long_clips(results=RESULTS):
    """Context windows on long toy clips (bench/long_clip.py quality / cost, bench/long_clip_http.py)."""
    runs = []
    for name in ("long_clip_quality.txt", "long_clip_quality_seed34.txt"):     # tuning seed 33 (default), 34
        by = {}
        for case, frames, variant, es, bg, keep, fl, seam, *_ in _table(name, results):
            by.setdefault(variant, []).append((int(frames), float(es), float(seam)))
        runs.append(by)
    sizes = " / ".join(f"{f}" for f, _, _ in runs[0]["windowed"])
    lines = [f"Long clips through core's Context Windows (Manual), 16/4, toy clips of {sizes} frames, tuning "
             f"seeds 33 and 34 ([docs/long_clips.md](docs/long_clips.md)):", "",
             "| | windowed | whole clip | naive 16-frame chunks |", "|---|---|---|---|"]
    for label, i in (("edit success", 1), ("seam ratio (1.0 = no seam)", 2)):
        for seed, by in zip((33, 34), runs):
            lines.append(f"| {label}, {seed} | " + " | ".join(" / ".join(f"{r[i]:.2f}" for r in by[v]) if v in by
                                                               else "-" for v in ("windowed", "whole", "naive-chunks"))
                         + " |")
    with open(os.path.join(results, "long_clip_cost.txt")) as f:
        ratio = {}
        for ln in f.read().split("192 frames over 16 frames")[1].splitlines():
            cells = [c.strip() for c in ln.strip().strip("|").split("|")]
            if len(cells) == 7 and cells[0] in ("tune", "invert", "null-text", "edit"):
                ratio[cells[0]] = [float(c) for c in cells[1:]]
    with open(os.path.join(results, "long_clip_http.txt")) as f:
        http = re.findall(r"^ComfyUI (\S+) .*\n.*\n  status: success; VP2PSaveVideo \S+: (\d+) frames", f.read(), re.M)
    stages = (("tune", "tuning"), ("invert", "direct inversion"), ("null-text", "null-text"), ("edit", "edit"))
    per_row = [ratio[k][1] for k in ("tune", "invert", "edit")]
    lines += ["", f"From 16 to 192 frames the CPU time per UNet row stays {min(per_row):.2f}-{max(per_row):.2f}x, except "
              f"null-text's {ratio['null-text'][1]:.2f}x (its backward recomputes each window); per frame the edit costs "
              f"{ratio['edit'][0]:.2f}x (the windows' overlap and frame 0 evaluate more rows). Peak memory in torch's "
              "allocator, 192 over 16 frames, as measured / less the clip's own data (latents, trajectory, "
              "attention-map image): " + ", ".join(f"{label} {ratio[k][4]:.2f} / {ratio[k][5]:.2f}x" for k, label in stages)
              + " (process RSS, less clip data: "
              + ", ".join(f"{ratio[k][3]:.2f}x" for k, _ in stages) + "). The shipped "
              + " and ".join(f"{n}-frame" for n in sorted({n for _, n in http})) + " workflow edits through the HTTP API "
              f"on ComfyUI " + " and ".join(v for v, _ in http) + "."]
    return "\n".join(lines)


def control_cost(results=RESULTS):
    """Attention control against the same sampler without control (bench/bench_edit.py in perf_cpu.txt)."""
    ratios = []
    with open(os.path.join(results, "perf_cpu.txt")) as f:
        block = f.read().split("=====")[1]
    for ln in block.splitlines():
        m = re.match(r"\s*(\d+)\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s*$", ln)
        if m and m.group(2) != "off":
            ratios.append(float(m.group(4)))
    return (f"Attention control runs at {min(ratios):.2f}-{max(ratios):.2f}x the time of the same sampler "
            f"without control (CPU, 8 and 32 frames).")


def memory_peaks(results=RESULTS):
    """{(stage, frames, checkpointing 'on'/'off'/'-'): GB} of bench/results/memory.txt."""
    return {(st, int(f) if f != "-" else 0, ck): float(gb) for st, f, ck, gb in _table("memory.txt", results)}


def pipeline_peak(peak, frames):
    """The whole pipeline with the default settings: the largest of its stages (checkpointing on,
    the paper's control layers)."""
    return max(v for (st, f, ck), v in peak.items()
               if f == frames and ck != "off" and "frame control" not in st)


def validation_error(results=RESULTS):
    return max(abs(float(r[4].rstrip("%"))) for r in _table("memory_validation.txt", results))


def memory(results=RESULTS):
    """Estimated peaks at SD1.5 size (bench/memory.py) per method node, with the validation error."""
    peak = memory_peaks(results)
    frames = sorted({f for _, f, _ in peak if f})
    rows = [("Tune On Video (one step, checkpointing on)", "tune step"),
            ("Shared Null-Text Invert (null-text, checkpointing on)", "null-text inner step"),
            ("Decoupled Sampler (paper's control layers)", "sampler step"),
            ("whole pipeline, default settings", None)]
    lines = [f"Estimated peak GPU memory, SD1.5 at 512x512 fp16 (GB; the inflated UNet's weights, "
             f"{peak[('inflated UNet weights', 0, '-')]:.2f} GB, included; a memory model that needs no GPU, within "
             f"{validation_error(results):.1f}% of torch's allocator peaks at a size run here; "
             f"[docs/memory.md](docs/memory.md)):", "",
             "| node | " + " | ".join(f"{f} frames" for f in frames) + " |",
             "|---|" + "---|" * len(frames)]
    for label, stage in rows:
        vals = [pipeline_peak(peak, f) if stage is None else
                next(v for (st, fr, ck), v in peak.items() if st == stage and fr == f and ck != "off")
                for f in frames]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    lines.append("| real GPU run (`bench/gpu_sd15.py`) | " + " | ".join("not measured: no GPU" for _ in frames) + " |")
    return "\n".join(lines)


# what each node's description says about its memory (checked against the table by the tests)
NODE_STAGES = {"VP2PTuneOnVideo": "tune step", "VP2PSharedNullTextInvert": "null-text inner step",
               "VP2PDecoupledSampler": "sampler step"}


def memory_note(node_id, results=RESULTS):
    """The sentence a node's description ends with: its estimated peak at SD1.5 size."""
    peak = memory_peaks(results)
    if node_id == "VP2PInflateT2SModel":
        w = peak[("inflated UNet weights", 0, "-")]
        return f"Inflated SD1.5 UNet: {w:.2f} GB of fp16 weights (bench/memory.py)."
    stage = NODE_STAGES[node_id]
    rows = sorted((f, v) for (st, f, ck), v in peak.items() if st == stage and ck != "off")
    what = {"tune step": "per tuning step, gradient checkpointing on",
            "null-text inner step": "null-text mode, checkpointing on; the other modes need less",
            "sampler step": "both branches, paper's control layers"}[stage]
    return (f"Estimated peak GPU memory at SD1.5 512x512 fp16 ({what}): "
            + ", ".join(f"{v:.1f} GB at {f} frames" for f, v in rows) + " (bench/memory.py).")


SECTIONS = (drawn, hand_written, long_clips, control_cost, memory)


def _file(name, results=RESULTS):
    with open(os.path.join(results, name)) as f:
        return f.read().strip()


def memory_tables(results=RESULTS):
    """docs/memory.md's tables: bench/memory.py's output files as they are."""
    return (f"`bench/results/memory.txt`:\n\n{_file('memory.txt', results)}\n\n"
            f"`bench/results/memory_validation.txt`:\n\n{_file('memory_validation.txt', results)}")


def long_clip_cost_table(results=RESULTS):
    """docs/long_clips.md's cost table: bench/long_clip.py cost's output file as it is."""
    return f"`bench/results/long_clip_cost.txt`:\n\n{_file('long_clip_cost.txt', results)}"


# each generated block: the file that holds it and the function that writes it
BLOCKS = {"results-summary": (README, lambda results: "\n\n".join(fn(results) for fn in SECTIONS)),
          "memory-tables": (os.path.join(REPO, "docs", "memory.md"), memory_tables),
          "long-clip-cost": (os.path.join(REPO, "docs", "long_clips.md"), long_clip_cost_table)}


def markers(name):
    return (f"<!-- {name}: generated by `python -m vp2p_dev.results_summary --write` from bench/results -->",
            f"<!-- /{name} -->")


def render(results=RESULTS, name="results-summary") -> str:
    begin, end = markers(name)
    return f"{begin}\n{BLOCKS[name][1](results)}\n{end}"


def current(name="results-summary") -> str:
    path = BLOCKS[name][0]
    begin, end = markers(name)
    with open(path) as f:
        text = f.read()
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < 0:
        raise SystemExit(f"{path}: the {name} markers are missing")
    return text[i:j + len(end)]


def write(results=RESULTS):
    for name, (path, _) in BLOCKS.items():
        with open(path) as f:
            text = f.read()
        old = current(name)
        with open(path, "w") as f:
            f.write(text.replace(old, render(results, name)))


def stale():
    """The names of the generated blocks that differ from what the files give."""
    return [name for name in BLOCKS if current(name) != render(name=name)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    if a.write:
        write()
    elif a.check:
        if stale():
            print(f"out of date: {', '.join(stale())}: python -m vp2p_dev.results_summary --write")
            return 1
    else:
        print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
