"""Quality benchmark: the paper's ablations on the toy world, judged by pixel oracles.

Each case (a JSON case file, see bench/cases/README.md) renders a toy-world video with known
truth, then edits it with Video-P2P and with ablations / baselines on the same video:

  video-p2p          tuned T2S model + shared null-text inversion + decoupled guidance + control
  no tuning          the inflated model untuned
  per-frame null     one optimised null embedding per frame instead of one shared
  no local blend     the case's local-blend words dropped (the object region is not masked)
  no decoupling      the target branch also uses the optimised nulls
  fast               the official fast mode: no optimisation, source branch at guidance 1
  direct-inversion   no optimisation, source branch put back on the inversion trajectory after
                     every step (PnP Inversion, Ju et al. 2024)
  source-blend       direct-inversion with the P2P Controller's blend_maps "source where both have
                     the word": a blend word both prompts have is read on the source branch alone
  ddim-cfg           plain DDIM inversion sampled at CFG with the empty prompt (ablation)
  ddim + target      image model, plain DDIM inversion, target prompt, no attention control
  image-p2p          image model, each frame inverted (null-text) and edited alone with P2P

Metrics (oracles on decoded pixels): reconstruction PSNR of the inversion against the input
video; edit success (share of frames whose object the oracle reads as the target's colour and
shape; with two objects, each read near its known mask: the edited one as the target's AND the
other one unchanged); background PSNR of the edit against the input outside the (dilated)
object masks; flicker (mean frame-to-frame change of the edit minus that of the input, outside
the objects: extra temporal change that the known motion does not explain); seconds per case
(with tuning) and seconds of the inversion alone. Two-object cases add keep_psnr (PSNR of the
object the edit must not change, inside its mask) and keep_rate (share of frames where it keeps
its colour and shape); the tables average them over those cases.

    python bench/quality.py [--cases bench/cases/default.json] [--out artifacts/quality.json]
                            [--variants video-p2p direct-inversion ...] [--limit N] [--names A B]
                            [--set cross_replace=0.8 ...]   # one field set in every case (a sweep)
    python bench/quality.py --draw N --seed S [...]   # N random cases per edit kind instead of a case file
    python bench/quality.py --report artifacts/quality.json     # the tables of a finished run

Drawn cases (`draw_cases`) come from the toy world's own generator (`world.random_spec`: 8-48
frames, moving, growing, half of them turning), N per edit kind (KINDS), from the seed alone.
Each case also gets the model's text-to-image rate for its target (bench/target_t2i.py, `--t2i-samples`
per case; 0 skips it), and the report adds edit success on the cases the model can draw
(rate >= DRAWABLE) beside the overall, so a failure of the method and one of the model read apart.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import _common

REPO = _common.REPO
VARIANTS = ["video-p2p", "no-tuning", "per-frame-null", "no-local-blend", "no-decoupling", "fast",
            "direct-inversion", "source-blend", "ddim-cfg", "ddim+target", "image-p2p"]
# names used by runs before the inversion modes were renamed (for --report of old result files)
OLD_NAMES = {"fast-inversion": "ddim-cfg", "negative-prompt": "fast"}
DEFAULTS = {"steps": 25, "cfg": 7.5, "inner_iterations": 10, "tune_steps": 100, "tune_lr": 3e-5,
            "cross_replace": 0.2, "self_replace": 0.5, "blend_words": "", "blend_threshold": 0.3,
            "blend_start": 0.2, "reweight_words": "", "reweight_scales": "", "mode": "swap", "seed": 33,
            "word_windows": "", "swapped_window": None, "blend_changed": False, "blend_own": False}
# word_windows: the P2P Controller's per-word cross-attention windows; swapped_window (a number): a window
# (0, x) on the target words that differ from the source (written into word_windows, e.g. a short one
# under a long cross_replace); blend_changed: blend on the words that differ between the prompts instead of
# blend_words (for two objects: the edited object's own words, not a word both objects share); blend_own: the
# local blend reads only the token positions of the words that differ (a swap's changed positions), not every
# occurrence of the blend words (a shape word both objects have marks both objects)


def load_cases(path):
    with open(path) as f:
        data = json.load(f)
    defaults = dict(DEFAULTS, **data.get("defaults", {}))
    cases = []
    for i, c in enumerate(data["cases"]):
        case = dict(defaults, **c)
        case.setdefault("name", f"case{i}")
        if "target" not in case or "world" not in case:
            raise SystemExit(f"case {case['name']}: 'world' and 'target' are required")
        cases.append(case)
    return cases


KINDS = ("colour-swap", "shape-swap", "refine", "reweight", "two-colour", "two-shape")
DRAWABLE = 0.8      # a target the model draws in at least this share of text-to-image samples


def draw_cases(world, n, seed):
    """N cases per edit kind, drawn from the toy world's generator (world: vp2p_toy.world) and the
    seed alone: each kind has its own stream, so case i of a kind is the same for any n > i.

    colour-swap / shape-swap: one object, swap its colour / shape word; refine: one object's colour
    or shape word changed by refine's word alignment, or (a third of them) a two-object world whose
    source names only the first object and whose target adds the second with its colour or shape
    changed; reweight: a colour swap with the new colour word reweighted (x1.5, 2 or 3); two-colour /
    two-shape: two objects, one of them (either) gets a new colour (none of the two present) / shape.
    The blend words are the edited object's shape word(s), as in the hand-written cases."""
    import numpy as np
    cases = []
    for k, kind in enumerate(KINDS):
        rng = np.random.default_rng([int(seed), k])
        for i in range(int(n)):
            frames = int(rng.integers(8, 49))
            turn = bool(rng.random() < 0.5)
            sub = str(rng.choice(["colour", "shape", "add"], p=[1 / 3, 1 / 3, 1 / 3])) if kind == "refine" else None
            two = kind.startswith("two-") or sub == "add"
            spec = world.random_spec(rng, frames=frames, motion=True, objects=2 if two else 1, turn=turn)
            case = {"name": f"{kind}-s{seed}-{i}", "kind": kind, "world": spec.to_dict()}
            objs = spec.objects()
            which = int(rng.integers(2)) if kind.startswith("two-") else 1 if sub == "add" else 0
            obj = objs[which]
            change = "colour" if kind in ("colour-swap", "reweight", "two-colour") else                 "shape" if kind in ("shape-swap", "two-shape") else sub if sub != "add" else                 str(rng.choice(["colour", "shape"]))
            if change == "colour":
                new = str(rng.choice([c for c in world.COLOURS if c not in {o.colour for o in objs}]))
                edited = (spec.with_object if which == 0 else spec.with_second)(colour=new)
                blend = obj.shape
            else:
                new = str(rng.choice([x for x in world.SHAPES if x != obj.shape]))
                edited = (spec.with_object if which == 0 else spec.with_second)(shape=new)
                blend = f"{obj.shape}, {new}"
            case.update(target=edited.caption, mode="swap")
            if kind == "refine":
                case["mode"] = "refine"
                if sub == "add":
                    case["source"] = world.caption(spec.colour, spec.shape, spec.background, spec.background_colour)
            elif kind == "reweight":
                case.update(mode="reweight", reweight_words=new, reweight_scales=str(rng.choice([1.5, 2.0, 3.0])))
            said = set((case.get("source", spec.caption) + " " + case["target"]).split())
            case["blend_words"] = ", ".join(w for w in blend.split(", ") if w in said)
            cases.append(case)
    return cases


def parse_overrides(items, cases):
    """["key=value", ...] -> {key: JSON value (else the plain string)}; a key no case has is refused
    (a typo would otherwise sweep nothing), and so is `name` (the results are keyed by it)."""
    out = {}
    fields = set().union(*cases) - {"name"}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            known = ", ".join(sorted(fields))
            raise SystemExit(f"--set {item!r}: use KEY=VALUE with a case field ({known})")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def expected(world, target, spec):
    """Target colour/shape of a one-object world: the palette words of the target prompt (else
    the source's)."""
    words = target.replace(",", " ").split()
    colour = next((w for w in words if w in world.COLOURS), spec.colour)
    shape = next((w for w in words if w in world.SHAPES), spec.shape)
    return colour, shape


def named_objects(world, text):
    """[(colour, shape)] of every "<colour> <shape>" the text names, in order."""
    words = [w.strip(",.;:") for w in text.split()]
    return [(a, b) for a, b in zip(words, words[1:]) if a in world.COLOURS and b in world.SHAPES]


def expected_objects(world, target, spec):
    """Target (colour, shape) of every object of the world, the first one first. A one-object
    world keeps `expected`'s reading; a two-object world's target must name both objects in
    caption order ("a C S and a C2 S2 on ..."): the objects whose words differ from the world's
    are the edited ones, the others must not change."""
    objs = spec.objects()
    if len(objs) == 1:
        return [expected(world, target, spec)]
    named = named_objects(world, target)
    if len(named) != len(objs):
        raise SystemExit(f"target {target!r}: a {len(objs)}-object world needs a target naming {len(objs)} "
                         f"objects as '<colour> <shape>' in caption order, found {named}")
    return named


def target_spec(spec, want):
    """The world as a perfect edit would show it: every object with its target colour and shape."""
    for i, (o, w) in enumerate(zip(spec.objects(), want)):
        if (o.colour, o.shape) != tuple(w):
            spec = spec.with_object(*w) if i == 0 else spec.with_second(*w)
    return spec


class Runner:
    def __init__(self, ckpt, threads):
        import torch
        _, self.tl = _common.boot()
        if threads:
            torch.set_num_threads(threads)
        import folder_paths
        sc = self.tl.host.checkpoint
        path = ckpt if os.path.isfile(ckpt) else folder_paths.get_full_path(sc.MODEL_KIND, ckpt)
        if not path:
            raise SystemExit(f"checkpoint {ckpt!r} not found")
        self.model, self.clip, self.vae = sc.load_checkpoint(path)
        self.world, self.oracle = self.tl.toy.world, self.tl.toy.oracle
        self.infl, self.tune = self.tl.host.inflation, self.tl.host.tuning
        self.inv, self.sampler = self.tl.host.inversion, self.tl.host.sampling
        self.ctrl = self.tl.pack_nodes.edit.VP2PController
        self.image_model = self.infl.inflate(self.model, False, False, 0, 0)   # frame attn on 1 frame == self-attn
        self.inversions = {}    # per case (run_case resets it): see edit

    def controller(self, case, layers="cross+temporal (paper)", off=False, blend=True, blend_maps=None):
        c = case
        src_changed, tgt_changed = self.tl.core.seq_aligner.changed_words(c["source"], c["target"])
        windows = c.get("word_windows") or ""
        if c.get("swapped_window") is not None:
            windows = ", ".join([w for w in [windows] if w] + [f"{w}:{c['swapped_window']}" for w in tgt_changed])
        blend_words = ", ".join(dict.fromkeys(src_changed + tgt_changed)) if c.get("blend_changed") else c["blend_words"]
        out = self.ctrl.execute(self.clip, c["source"], c["target"], c["mode"], 0.0 if off else c["cross_replace"],
                                0.0 if off else c["self_replace"], c["reweight_words"], c["reweight_scales"],
                                blend_words if blend and not off else "", c["blend_threshold"], c["blend_start"],
                                layers, "", blend_maps=blend_maps or self.tl.core.prompts.BLEND_BOTH,
                                word_windows="" if off else windows)[0]
        lb = out.controller.local_blend
        if c.get("blend_own") and lb is not None:
            src_t, tgt_t = (sorted(p) for p in self.tl.core.seq_aligner.changed_positions(
                self.tl.host.text.clip_encoder(self.clip), c["source"], c["target"]))
            out.controller.local_blend = type(lb)(src_t, tgt_t, threshold=lb.threshold, start=lb.start, pool=lb.pool)
        return out

    def decode(self, latent):
        import torch
        with torch.inference_mode():
            return self.tl.decode_u8(self.vae, latent["samples"])

    def edit(self, model, latent, case, spec, mode="null-text", per_frame=False, decoupled=True):
        """-> (reconstruction, edited latent, seconds of inversion + edit). Variants that differ
        only after the inversion (blend, decoupling) share it within a case (`self.inversions`,
        reset per case); the seconds still count the inversion each time."""
        import torch
        cond, empty = self.tl.encode(self.clip, case["source"]), self.tl.encode(self.clip, "")
        key = (id(model), id(latent), mode, per_frame)
        with torch.inference_mode():
            if key not in self.inversions:     # the value holds model and latent, so their ids stay theirs
                self.inversions[key] = (model, latent, *self.inv.invert_video(
                    model, latent, cond, empty, case["steps"], case["cfg"], mode, case["inner_iterations"],
                    per_frame=per_frame))
            _, _, inv, recon = self.inversions[key]
            t = time.perf_counter()
            edited, _, _ = self.sampler.decoupled_sample(model, inv, spec, case["cfg"], "auto", decoupled=decoupled)
        self.last_inversion_seconds = inv.seconds
        return recon, edited, time.perf_counter() - t + inv.seconds

    def prepare(self, case):
        """Render and encode the case's video; -> (video, truth, latent, expected [(colour, shape)]
        per object)."""
        import torch
        spec = self.world.WorldSpec.from_dict(case["world"])
        case.setdefault("source", spec.caption)
        video, truth = self.world.render(spec)
        with torch.inference_mode():
            latent = {"samples": self.vae.encode(torch.from_numpy(video.astype("float32") / 255.0)).float()}
        return video, truth, latent, expected_objects(self.world, case["target"], spec)

    def inflated(self):
        """The video model as Inflate T2S Model makes it (frame and temporal attention), untuned."""
        return self.infl.inflate(self.model, True, True, 0, 0)

    def tuning(self, inflated, latent, case, steps=None, lr=None):
        """Tune On Video on the case's source prompt and seed (its steps and rate unless given)
        -> (tuned model, loss per step)."""
        import torch
        with torch.inference_mode():
            return self.tune.tune_on_video(inflated, latent, self.tl.encode(self.clip, case["source"]),
                                           case["tune_steps"] if steps is None else steps,
                                           case["tune_lr"] if lr is None else lr, case["seed"])

    def tune_case(self, inflated, latent, case):
        return self.tuning(inflated, latent, case)[0]

    def edit_metrics(self, edited, video, truth, want):
        """Oracle metrics of an edited LATENT: -> {edit_success, bg_psnr, flicker} (+ keep_psnr,
        keep_rate for two-object worlds)."""
        return judge(self.oracle, self.decode(edited), video, truth, want)

    def ceiling(self, case, video, truth, want):
        """The oracle metrics of a perfect edit: the rendered target video through the VAE (what
        any edit can reach at best; the toy autoencoder rounds small shapes)."""
        import torch
        spec = target_spec(self.world.WorldSpec.from_dict(case["world"]), want)
        with torch.inference_mode():
            lat = self.vae.encode(torch.from_numpy(self.world.render(spec)[0].astype("float32") / 255.0)).float()
        return judge(self.oracle, self.decode({"samples": lat}), video, truth, want)

    def run_case(self, case, variants):
        video, truth, latent, want = self.prepare(case)
        self.last_ceiling = self.ceiling(case, video, truth, want)
        print(f"  {case['name']:<18} {'(target via VAE)':<16} "
              + " ".join(f"{k} {val:.3g}" for k, val in self.last_ceiling.items()), flush=True)
        ctrl, off = self.controller(case), self.controller(case, off=True)
        results, tuned, tune_s = {}, None, 0.0
        self.inversions = {}
        needs_tuning = {"video-p2p", "per-frame-null", "no-local-blend", "no-decoupling", "fast",
                        "direct-inversion", "source-blend", "ddim-cfg"}
        inflated = self.inflated()
        if needs_tuning & set(variants):
            t = time.perf_counter()
            tuned = self.tune_case(inflated, latent, case)
            tune_s = time.perf_counter() - t
        runs = {
            "video-p2p": lambda: self.edit(tuned, latent, case, ctrl),
            "no-tuning": lambda: self.edit(inflated, latent, case, ctrl),
            "per-frame-null": lambda: self.edit(tuned, latent, case, ctrl, per_frame=True),
            "no-local-blend": lambda: self.edit(tuned, latent, case, self.controller(case, blend=False)),
            "no-decoupling": lambda: self.edit(tuned, latent, case, ctrl, decoupled=False),
            "fast": lambda: self.edit(tuned, latent, case, ctrl, mode="fast"),
            "direct-inversion": lambda: self.edit(tuned, latent, case, ctrl, mode="direct-inversion"),
            "source-blend": lambda: self.edit(tuned, latent, case, self.controller(
                case, blend_maps=self.tl.core.prompts.BLEND_SOURCE), mode="direct-inversion"),
            "ddim-cfg": lambda: self.edit(tuned, latent, case, ctrl, mode="ddim-cfg"),
            "ddim+target": lambda: self.edit(self.model, latent, case, off, mode="ddim-cfg"),
            "image-p2p": lambda: self.per_frame_p2p(latent, case),
        }
        for v in variants:
            self.last_inversion_seconds = float("nan")
            recon, edited, secs = runs[v]()
            if v in needs_tuning:
                secs += tune_s
            results[v] = {"recon_psnr": self.oracle.psnr(self.decode(recon), video),
                          **self.edit_metrics(edited, video, truth, want), "seconds": secs,
                          "invert_seconds": self.last_inversion_seconds}
            line = " ".join(f"{k} {val:.3g}" for k, val in results[v].items())
            print(f"  {case['name']:<18} {v:<16} {line}", flush=True)
        return results

    def per_frame_p2p(self, latent, case):
        """Image-P2P: every frame inverted and edited alone with the image model (no tuning)."""
        import torch
        ctrl = self.controller(case, layers="cross+frame")
        recons, edits, secs = [], [], 0.0
        for f in range(latent["samples"].shape[0]):
            one = {"samples": latent["samples"][f:f + 1]}
            r, e, s = self.edit(self.image_model, one, case, ctrl)
            recons.append(r["samples"])
            edits.append(e["samples"])
            secs += s
        return {"samples": torch.cat(recons)}, {"samples": torch.cat(edits)}, secs


def background(oracle, ed, truth):
    """Bool [F, H, W]: where an edited video (uint8 [F,H,W,3]) should show the source's static
    background: outside every object's (dilated) truth mask and the objects found in the edit."""
    import numpy as np
    o = oracle
    objs = truth.get("objects", [truth])
    if len(objs) == 1:
        return o.background_mask(truth["masks"], [o.object_mask(f) for f in ed])
    found = [np.any([x["mask"] for x in o.find_objects(f, len(objs))] or [np.zeros(f.shape[:2], bool)], axis=0)
             for f in ed]
    return o.background_mask(*[ob["masks"] for ob in objs], found)


def judge(oracle, ed, video, truth, want):
    """Oracle metrics of an edited video (uint8 [F,H,W,3]) against the source video and its
    truth; want: [(colour, shape)] per object (expected_objects).

    One object: edit success = share of frames whose object (classify, whole frame) is the
    target's. Several objects: a frame succeeds when every object, read near its own truth
    mask, is its target's colour and shape (so the edited one changed and the others did not);
    keep_psnr / keep_rate: the objects the target leaves unchanged (oracle.kept_object; mean
    over them), absent when the target changes every object. The background excludes every
    object's truth mask and the objects found in the edit."""
    import numpy as np
    o = oracle
    objs = truth.get("objects", [truth])
    bg = background(o, ed, truth)
    if len(objs) == 1:
        seen = o.classify_video(ed)
        success = sum((s["colour"], s["shape"]) == tuple(want[0]) for s in seen) / len(seen)
        return {"edit_success": success, "bg_psnr": o.background_psnr(ed, video, bg), "flicker": o.flicker(ed, bg)}
    reads = [o.read_object(ed, ob) for ob in objs]
    ok = [all((r[f]["colour"], r[f]["shape"]) == tuple(w) for r, w in zip(reads, want)) for f in range(len(ed))]
    out = {"edit_success": sum(ok) / len(ok), "bg_psnr": o.background_psnr(ed, video, bg), "flicker": o.flicker(ed, bg)}
    kept = [o.kept_object(ed, video, ob) for ob, w in zip(objs, want) if (ob["colour"], ob["shape"]) == tuple(w)]
    if kept:
        out["keep_psnr"] = float(np.mean([k["psnr"] for k in kept]))
        out["keep_rate"] = float(np.mean([k["rate"] for k in kept]))
    return out


KEEP_KEYS = ["keep_psnr", "keep_rate"]


def summarise(all_results, variants):
    """{variant: {metric: (mean, std)}} over the cases that have the metric (keep_* only
    exist for two-object cases; runs before them have none)."""
    import numpy as np
    keys = ["recon_psnr", "edit_success", "bg_psnr", "flicker", "seconds", "invert_seconds"]
    if any(k in m for r in all_results.values() for m in r.values() for k in KEEP_KEYS):
        keys += KEEP_KEYS
    table = {}
    for v in variants:
        rows = [r[v] for r in all_results.values() if v in r]
        table[v] = {}
        for k in keys:
            vals = np.array([row[k] for row in rows if k in row], float)
            vals = vals[np.isfinite(vals)]
            table[v][k] = (float(vals.mean()), float(vals.std())) if len(vals) else (float("nan"), float("nan"))
    return table


def markdown(table, n_cases, case_file, n_two=0):
    keep = any(k in m for m in table.values() for k in KEEP_KEYS)
    head = ("| variant | recon PSNR dB | edit success | background PSNR dB | flicker | s/case | s/inversion |"
            + (" keep PSNR dB | keep rate |" if keep else "") + "\n|---|---|---|---|---|---|---|"
            + ("---|---|" if keep else ""))
    rows = []
    for v, m in table.items():
        f = lambda k, p=1: f"{m[k][0]:.{p}f} ± {m[k][1]:.{p}f}"  # noqa: E731
        inv_s = m.get("invert_seconds", (float("nan"),))[0]
        row = (f"| {v} | {f('recon_psnr')} | {f('edit_success', 2)} | {f('bg_psnr')} | {f('flicker', 2)} | "
               f"{m['seconds'][0]:.0f} | {'-' if inv_s != inv_s else f'{inv_s:.1f}'} |")
        if keep:
            row += f" {f('keep_psnr')} | {f('keep_rate', 2)} |"
        rows.append(row)
    note = (f"; keep PSNR / keep rate: the object a two-object edit must not change, mean over the {n_two} "
            "two-object cases (PSNR inside its mask, share of frames it keeps colour and shape)") if keep else ""
    path, sep, rest = case_file.partition(" with ")     # " with <key>=<value> in every case" (--set)
    return f"{n_cases} cases from `{path}`{sep}{rest} (mean ± std over cases{note})\n\n" + head + "\n" + "\n".join(rows)


def paired(all_results, variants, ref="video-p2p"):
    """Per-case differences to `ref` (ref minus variant, so > 0 means ref is better for PSNR
    and edit success, and < 0 means ref flickers less): case-to-case spread dwarfs most
    effects, so the comparison that matters is within a case."""
    import numpy as np
    cols = [("recon_psnr", 1), ("edit_success", 1), ("bg_psnr", 1), ("flicker", -1)]
    keep = any(k in m for r in all_results.values() for m in r.values() for k in KEEP_KEYS)
    if keep:
        cols += [("keep_psnr", 1), ("keep_rate", 1)]
    rows = []
    for v in variants:
        if v == ref:
            continue
        cells = []
        for k, better in cols:
            d = np.array([r[ref][k] - r[v][k] for r in all_results.values()
                          if ref in r and v in r and k in r[ref] and k in r[v]], float)
            d = d[np.isfinite(d)]
            wins = int((better * d > 0).sum())
            p = 2 if k in ("edit_success", "keep_rate") else 1
            cells.append(f"{d.mean():+.{p}f} ± {d.std():.{p}f} ({wins}/{len(d)})" if len(d) else "-")
        rows.append(f"| {v} | " + " | ".join(cells) + " |")
    head = (f"| {ref} minus | recon PSNR dB | edit success | background PSNR dB | flicker |"
            + (" keep PSNR dB | keep rate |" if keep else "") + "\n|---|---|---|---|---|" + ("---|---|" if keep else ""))
    return (f"Paired per case: {ref} minus each variant, mean ± std over cases (cases where {ref} is "
            "better; lower flicker is better)\n\n" + head + "\n" + "\n".join(rows))


def drawable(all_results, variants, t2i, bar=DRAWABLE):
    """Edit success beside the model's own text-to-image rate of the targets: over all cases with a
    rate, over the drawable ones (rate >= bar), and the method's share of the model's rate there."""
    import numpy as np
    names = [c for c in all_results if c in t2i]
    easy = [c for c in names if t2i[c] >= bar]
    rate = lambda cs: float(np.mean([t2i[c] for c in cs])) if cs else float("nan")  # noqa: E731
    rows = []
    for v in variants:
        def success(cs):
            vals = [all_results[c][v]["edit_success"] for c in cs if v in all_results[c]]
            return float(np.mean(vals)) if vals else float("nan")
        ok_all, ok_easy = success(names), success(easy)
        rows.append(f"| {v} | {ok_all:.2f} | {ok_easy:.2f} | {ok_easy / rate(easy) if easy else float('nan'):.2f} |")
    kinds = {}
    for c in names:
        kinds.setdefault(c.rsplit("-s", 1)[0], []).append(c)
    per_kind = ", ".join(f"{k} {sum(t2i[c] >= bar for c in cs)}/{len(cs)}" for k, cs in kinds.items())
    return (f"Text-to-image rate of the targets (the model drawing the target caption alone): mean {rate(names):.2f} "
            f"over {len(names)} cases; {len(easy)} cases drawable (rate >= {bar}), mean rate {rate(easy):.2f} there"
            + (f" (drawable per kind: {per_kind})" if len(kinds) > 1 else "") + ".\n\n"
            "| variant | edit success, all | edit success, drawable | drawable: share of the t2i rate |\n|---|---|---|---|\n"
            + "\n".join(rows))


GOALS = {"drawable_share": 0.90, "bg_over_ddim_target": 3.0, "flicker_vs_image_p2p": 0.6, "keep_psnr": 28.0,
         "keep_rate": 0.95}     # issue 38's goals for the pack default on drawn cases


def goals(all_results, t2i, method="direct-inversion", bar=DRAWABLE):
    """Issue 38's goals for `method` (the pack default), each from the cases that have what it needs:
    edit success on the drawable cases >= 0.90 of the model's mean t2i rate there; background >= 3 dB
    above ddim+target (mean paired difference); flicker <= 0.6x image-p2p (ratio of the means over the
    cases that have both); two-object cases: keep PSNR >= 28 dB and keep rate >= 0.95 (means). A goal
    without the cases to judge it reads "not measured"."""
    import numpy as np
    g, rows = GOALS, []

    def row(goal, value, ok, n, fmt):
        verdict = "not measured" if n == 0 else "held" if ok else "not held"
        rows.append(f"| {goal} | {'-' if n == 0 else fmt.format(value)} | {n} | {verdict} |")

    have = {c: r for c, r in all_results.items() if method in r}
    easy = [c for c in have if c in (t2i or {}) and t2i[c] >= bar]
    share = (np.mean([have[c][method]["edit_success"] for c in easy]) / np.mean([t2i[c] for c in easy])) if easy else 0.0
    row(f"drawable cases: edit success >= {g['drawable_share']:.2f} of the t2i rate", share,
        share >= g["drawable_share"], len(easy), "{:.2f}")
    both = [c for c, r in have.items() if "ddim+target" in r]
    d = np.mean([have[c][method]["bg_psnr"] - have[c]["ddim+target"]["bg_psnr"] for c in both]) if both else 0.0
    row(f"background >= {g['bg_over_ddim_target']:.0f} dB above ddim+target", d, d >= g["bg_over_ddim_target"],
        len(both), "{:+.1f} dB")
    both = [c for c, r in have.items() if "image-p2p" in r]
    ratio = (np.mean([have[c][method]["flicker"] for c in both]) / np.mean([have[c]["image-p2p"]["flicker"] for c in both])
             if both else 0.0)
    row(f"flicker <= {g['flicker_vs_image_p2p']}x image-p2p", ratio, ratio <= g["flicker_vs_image_p2p"], len(both),
        "{:.2f}x")
    two = [c for c, r in have.items() if "keep_psnr" in r[method]]
    kp = np.mean([have[c][method]["keep_psnr"] for c in two]) if two else 0.0
    kr = np.mean([have[c][method]["keep_rate"] for c in two]) if two else 0.0
    row(f"two objects: the other one keeps >= {g['keep_psnr']:.0f} dB", kp, kp >= g["keep_psnr"], len(two), "{:.1f} dB")
    row(f"two objects: keep rate >= {g['keep_rate']}", kr, kr >= g["keep_rate"], len(two), "{:.2f}")
    return (f"Goals of issue 38 for {method}\n\n| goal | measured | cases | verdict |\n|---|---|---|---|\n"
            + "\n".join(rows))


def report(all_results, variants, n_cases, case_file, ref="video-p2p", ceilings=None, t2i=None):
    table = summarise(all_results, variants)
    n_two = sum(any(k in m for m in r.values() for k in KEEP_KEYS) for r in all_results.values())
    md = markdown(table, n_cases, case_file, n_two)
    if ceilings:
        c = summarise({k: {"target": dict(v, recon_psnr=float("nan"), seconds=float("nan"),
                                          invert_seconds=float("nan"))} for k, v in ceilings.items()
                       if k in all_results}, ["target"])["target"]
        md += ("\n\nA perfect edit (the rendered target video through the VAE) scores edit success "
               f"{c['edit_success'][0]:.2f} ± {c['edit_success'][1]:.2f}, background PSNR {c['bg_psnr'][0]:.1f} dB, "
               f"flicker {c['flicker'][0]:.2f} ± {c['flicker'][1]:.2f}"
               + (f", keep rate {c['keep_rate'][0]:.2f} ± {c['keep_rate'][1]:.2f}" if "keep_rate" in c else "")
               + ": the ceiling of the oracles on this autoencoder.")
    if t2i:
        md += "\n\n" + drawable(all_results, variants, t2i)
    if ref in variants and len(variants) > 1:
        md += "\n\n" + paired(all_results, variants, ref)
    if "direct-inversion" in variants and t2i:
        md += "\n\n" + goals(all_results, t2i)
    return table, md


def merge_runs(paths):
    """Results of several result files, merged case by case (a later file's variant wins):
    -> (results, ceilings, case_file)."""
    results, ceilings, files, t2i = {}, {}, [], {}
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        files.append(d.get("case_file", "?"))
        for c, res in d["results"].items():
            results.setdefault(c, {}).update({OLD_NAMES.get(v, v): r for v, r in res.items()})
        ceilings.update(d.get("ceilings") or {})
        t2i.update(d.get("t2i") or {})
    return results, ceilings, " + ".join(dict.fromkeys(files)), t2i


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=os.path.join(REPO, "bench", "cases", "default.json"))
    ap.add_argument("--ckpt", default="toy_world_sd1.safetensors")
    ap.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    ap.add_argument("--names", nargs="+", help="only the cases with these names")
    ap.add_argument("--ref", default="video-p2p", help="the variant the paired table compares against")
    ap.add_argument("--out", default=os.path.join(REPO, "artifacts", "quality.json"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", metavar="KEY=VALUE", nargs="+", default=[],
                    help="set a case field in every case, over the case file's own value (a JSON value, "
                         "e.g. cross_replace=0.8); recorded in the output")
    ap.add_argument("--draw", type=int, default=0, metavar="N",
                    help="N cases per edit kind drawn by draw_cases from --seed, instead of --cases")
    ap.add_argument("--seed", type=int, default=0, help="the seed of --draw")
    ap.add_argument("--t2i-samples", type=int, default=16,
                    help="text-to-image samples of each target caption (bench/target_t2i.py); 0 = none")
    ap.add_argument("--t2i-seed", type=int, default=1000, help="case i samples with this seed + i")
    ap.add_argument("--report", metavar="JSON", nargs="+",
                    help="print the tables of finished runs again (no new run); several files (e.g. runs of "
                         "different variants on the same cases) are merged case by case")
    a = ap.parse_args()
    a.out, a.cases = os.path.abspath(a.out), os.path.abspath(a.cases)   # before ComfyUI's boot changes the cwd
    if a.report:
        results, ceilings, case_file, t2i = merge_runs(a.report)
        variants = list(dict.fromkeys(v for r in results.values() for v in r))
        print(report(results, variants, len(results), case_file, a.ref, ceilings, t2i)[1])
        return
    if a.draw:
        cases = [dict(DEFAULTS, **c) for c in draw_cases(_common.boot()[1].toy.world, a.draw, a.seed)]
    else:
        cases = load_cases(a.cases)
    overrides = parse_overrides(a.set, cases)
    for c in cases:
        c.update(overrides)
    if a.names:
        unknown = set(a.names) - {c["name"] for c in cases}
        if unknown:
            raise SystemExit(f"no case named {sorted(unknown)} in {a.cases}")
        cases = [c for c in cases if c["name"] in a.names]
    cases = cases[:a.limit or None]
    r = Runner(a.ckpt, a.threads)
    print(f"{len(cases)} cases, variants: {' '.join(a.variants)}", flush=True)
    all_results, ceilings = {}, {}
    t0 = time.time()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    case_file = (f"quality.py --draw {a.draw} --seed {a.seed}" if a.draw else os.path.relpath(a.cases, REPO)) + (" with " + ", ".join(f"{k}={v}" for k, v in overrides.items())
                                                 + " in every case" if overrides else "")
    t2i = {}
    for i, case in enumerate(cases):
        if a.t2i_samples:
            import target_t2i
            t2i[case["name"]] = target_t2i.target_rate(r, case, a.t2i_samples, a.t2i_seed + i)
            print(f"  {case['name']:<18} {'(target t2i)':<16} rate {t2i[case['name']]:.2f} "
                  f"of {a.t2i_samples}: {case['target']!r}", flush=True)
        all_results[case["name"]] = r.run_case(case, a.variants)
        ceilings[case["name"]] = r.last_ceiling
        table, md = report(all_results, a.variants, len(all_results), case_file, a.ref, ceilings, t2i)
        with open(a.out, "w") as f:     # after every case, so a long run that stops keeps its results
            json.dump({"case_file": case_file, "overrides": overrides, "cases": cases, "results": all_results,
                       "summary": table, "markdown": md, "seconds": time.time() - t0, "ceilings": ceilings,
                       "t2i": t2i, "t2i_samples": a.t2i_samples}, f, indent=1, default=str)
    print("\n" + md)
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
