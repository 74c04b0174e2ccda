"""The P2P Controller's widget grammar, in one place: word and scale lists, presets, the
controlled-layer choices, and how the settings become an attention controller. The node
(through the host layer's CLIP access) and the editor's live preview (POST /vp2p/align) both
build one `EditSettings` and call these functions, so they cannot disagree.

`encode(text) -> [token ids]` (without BOS/EOS) is the only thing taken from the text encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from . import control as vc
from . import seq_aligner as sa

MODES = ("swap", "refine", "reweight")
MAX_MAP_WORDS = 4


class PromptError(ValueError):
    """Widget values that cannot make an edit; the message says how to fix them."""


def fail(msg: str):
    raise PromptError(msg)


LAYER_CHOICES = {
    "cross+temporal (paper)": ("cross", "temporal"),
    "cross+temporal+frame": ("cross", "temporal", "frame"),
    "cross only": ("cross",),
    "cross+frame": ("cross", "frame"),
}
PAPER_LAYERS = "cross+temporal (paper)"


# Presets carry the numbers of the official Video-P2P edit configs (configs/*-p2p.yaml), each
# named after what it does. Every official edit wraps its swap/refine controller in a reweight of
# the new word(s); the blend marks the swapped words (word swaps), the object noun in both prompts
# (an added attribute), or nothing (a style). A preset overrides mode, the windows and the blend's
# threshold/start; reweight_words, reweight_scales and blend_words keep what you typed.
CUSTOM = "custom"


@dataclass(frozen=True)
class Preset:
    base: str                    # the alignment under the reweight: "swap" or "refine"
    cross_replace: float
    self_replace: float
    scales: tuple[float, ...]    # the 1st, 2nd, ... new word's scale (the last one repeats)
    blend: str                   # "changed": the swapped words; "object": the noun the added words
    #                              describe, in both prompts; "none": no blend
    official: str                # the official config(s) whose numbers these are


PRESETS = {
    CUSTOM: None,
    "word swap (car-drive)": Preset("swap", 0.2, 0.5, (2.0,), "changed", "car-drive"),
    "word swap, strong reweight (man-motor)": Preset("swap", 0.2, 0.5, (4.0,), "changed", "man-motor"),
    "add an attribute (rabbit-jump, tiger-forest)": Preset("refine", 0.2, 0.5, (2.0,), "object",
                                                            "rabbit-jump, tiger-forest"),
    "add an attribute, strong (penguin-run)": Preset("refine", 0.2, 0.5, (4.0,), "object", "penguin-run"),
    "style, no blend (bird-forest)": Preset("refine", 0.8, 0.7, (5.0, 2.0), "none", "bird-forest"),
}
BLEND_THRESHOLD, BLEND_START = 0.3, 0.2      # the official LocalBlend's
# names earlier versions saved -> today's preset (the hard edit's 0.8 / 0.7 windows are the style config's)
OLD_PRESET_NAMES = {
    "swap + reweight + blend (official)": "word swap (car-drive)",
    "refine + reweight + blend (official)": "add an attribute (rabbit-jump, tiger-forest)",
    "hard edit: cross 0.8 / self 0.7": "style, no blend (bird-forest)",
}
# words a preset never reweights or blends on its own ("children drawing of a bird": children, drawing)
FUNCTION_WORDS = frozenset("a an the of on in at to and with by for from is are was its his her their".split())


# Where the local blend reads a blend word's map. prompt-to-prompt's rule is the union of both
# branches' maps; for a word both prompts have, the source branch's map is the one read on the
# input video itself (the target's copy of it drifts with the edit and spreads wider), so reading
# it alone gives a tighter mask (less repainted background, less flicker) but confines the edit
# to the source object's extent. Words only one prompt has are read where they are either way.
BLEND_BOTH = "source and target (prompt-to-prompt)"
BLEND_SOURCE = "source where both have the word"
BLEND_MAPS = (BLEND_BOTH, BLEND_SOURCE)


def blend_tokens(encode, source_text, target_text, words, maps=BLEND_BOTH):
    """-> (source token positions, target token positions) the local blend reads for `words`.

    A blend word that the edit changes is read only where it is changed: in "a red circle and a blue
    circle" -> "... a blue square", "circle" marks the second circle, not the first one, which the
    edit must keep (reading every occurrence opened the mask over the kept object; measured on drawn
    two-shape toy cases, docs/quality.md). Words the edit does not change (the object noun of a
    colour swap or a refine) are read at every occurrence, as in prompt-to-prompt."""
    if maps not in BLEND_MAPS:
        fail(f"unknown blend_maps {maps!r}; use one of: {', '.join(BLEND_MAPS)}.")
    own_s, own_t = sa.changed_positions(encode, source_text, target_text)
    src_t, tgt_t, missing = [], [], []
    for w in words:
        s = sa.token_indices(encode, source_text, w)
        t = sa.token_indices(encode, target_text, w)
        if not s and not t:
            missing.append(w)
        if own_s.intersection(s) or own_t.intersection(t):      # an edited word: its own places only
            s, t = [p for p in s if p in own_s], [p for p in t if p in own_t]
        src_t += s
        tgt_t += [] if s and maps == BLEND_SOURCE else t
    if missing:
        fail(f"blend word(s) {missing} appear in neither prompt; use words of the prompts.")
    return src_t, tgt_t


@dataclass(frozen=True)
class EditSettings:
    """The P2P Controller's settings by name, from the node's widgets (or the editor preview's
    request) to the controller: one object instead of a positional widget list."""
    source_text: str
    target_text: str
    mode: str = "swap"
    cross_replace: float = 0.2
    self_replace: float = 0.5
    reweight_words: str = ""
    reweight_scales: str = ""
    blend_words: str = ""
    blend_threshold: float = 0.3
    blend_start: float = 0.2
    controlled_layers: str = PAPER_LAYERS
    map_words: str = ""
    preset: str = CUSTOM
    blend_maps: str = BLEND_BOTH
    word_windows: str = ""


def preset_named(name: str | None) -> str:
    """Today's name of a preset value, also one that an earlier version saved."""
    name = name or CUSTOM
    name = OLD_PRESET_NAMES.get(name, name)
    if name not in PRESETS:
        fail(f"unknown preset {name!r}; use one of: {', '.join(PRESETS)}.")
    return name


def _object_noun(source_text: str, target_text: str, added: list[str]) -> str | None:
    """The word an added attribute describes: the first word after the added ones that the source
    also has ("a origami rabbit jumping" -> rabbit)."""
    strip = lambda w: w.strip(",.;:!?\"'")  # noqa: E731
    src = {strip(w) for w in sa.split_words(source_text)}
    words = [strip(w) for w in sa.split_words(target_text)]
    last = max((i for i, w in enumerate(words) if w in added), default=None)
    if last is None:
        return None
    return next((w for w in words[last + 1:] if w in src and w.lower() not in FUNCTION_WORDS), None)


def resolve_preset(settings: EditSettings) -> tuple[EditSettings, str | None]:
    """-> (the settings a preset turns these into, base mode swap/refine); unchanged and None for
    'custom'. A preset's settings have mode 'reweight' on top of the base mode. The editor
    preview uses the same function."""
    preset = preset_named(settings.preset)
    p = PRESETS[preset]
    if p is None:
        return replace(settings, preset=preset), None
    source_text, target_text = settings.source_text, settings.target_text
    n_src, n_tgt = len(sa.split_words(source_text)), len(sa.split_words(target_text))
    if p.base == "swap" and n_src != n_tgt:
        fail(f"preset '{preset}' swaps words, but the prompts have {n_src} and {n_tgt} words: use a "
             "refine preset (add an attribute, or style) to add or remove words.")
    src_changed, tgt_changed = sa.changed_words(source_text, target_text)
    content = lambda ws: [w for w in ws if w.lower() not in FUNCTION_WORDS]  # noqa: E731
    reweight_words = (settings.reweight_words or "").strip() or ", ".join(dict.fromkeys(content(tgt_changed)))
    if not reweight_words:
        fail(f"preset '{preset}' reweights the target's new words, but no word of the target is new: "
             "set reweight_words, or use preset 'custom'.")
    scales = (settings.reweight_scales or "").strip()
    if not scales:
        n = len(parse_words(reweight_words))
        scales = ", ".join(f"{p.scales[min(i, len(p.scales) - 1)]:g}" for i in range(n))
    blend_words = (settings.blend_words or "").strip()
    if not blend_words and p.blend == "changed":
        blend_words = ", ".join(dict.fromkeys(content(src_changed) + content(tgt_changed)))
    elif not blend_words and p.blend == "object":
        noun = _object_noun(source_text, target_text, tgt_changed)
        if noun is None:
            fail(f"preset '{preset}' blends on the noun the added words describe, but no word after them is in "
                 "both prompts: set blend_words to the object's noun.")
        blend_words = noun
    out = replace(settings, preset=preset, mode="reweight", cross_replace=p.cross_replace,
                  self_replace=p.self_replace, blend_threshold=BLEND_THRESHOLD, blend_start=BLEND_START,
                  reweight_words=reweight_words, reweight_scales=scales, blend_words=blend_words)
    return out, p.base


def parse_words(s: str) -> list[str]:
    """Comma- (or semicolon-) separated words of a widget."""
    return [w.strip() for w in (s or "").replace(";", ",").split(",") if w.strip()]


def parse_scales(s: str, n: int) -> list[float]:
    """One scale for all n words, or one per word; empty = 1 for all."""
    try:
        vals = [float(v) for v in parse_words(s)]
    except ValueError:
        fail("reweight_scales must be numbers, e.g. '2' or '2, 0.5'.")
    if not vals:
        return [1.0] * n
    if len(vals) == 1:
        return vals * n
    if len(vals) != n:
        fail(f"{len(vals)} reweight scales for {n} reweight words: give one scale, or one per word.")
    return vals


# Per-word cross-attention windows (prompt-to-prompt's dict form of cross_replace_steps): a word of
# the target prompt gets its own window, every other token keeps cross_replace. At a step, a token
# whose window is open takes the edited (source-derived) attention column, the others the target's
# own; a word window equal to cross_replace changes nothing.
WORD_WINDOWS_HELP = ("Optional per-word cross-attention windows next to cross_replace, comma-separated "
                     "'word:end' or 'word:start-end' (fractions of the steps), e.g. 'motorbike:0.4' or "
                     "'motorbike:0.1-0.6'. Words of the target prompt; each keeps the source's attention for its "
                     "own window, every other token for cross_replace's. Empty = cross_replace for all words. "
                     "A short window on the swapped word frees its shape; a long one on the rest keeps layout.")


def parse_word_windows(s: str) -> list[tuple[str, tuple[float, float]]]:
    """The word_windows widget -> [(word, (start, end))], in the order written (a later entry
    for the same token wins)."""
    out = []
    for item in parse_words(s):
        word, sep, spec = item.rpartition(":")
        word = word.strip()
        form = "'word:end' or 'word:start-end' with fractions of the steps, e.g. 'motorbike:0.4' or 'motorbike:0.1-0.6'"
        if not sep or not word:
            fail(f"word_windows entry {item!r} has no window: write {form}.")
        start, dash, end = spec.strip().partition("-")
        try:
            win = (float(start), float(end)) if dash else (0.0, float(start))
        except ValueError:
            fail(f"word_windows entry {item!r}: the window must be numbers; write {form}.")
        if not 0.0 <= win[0] <= win[1] <= 1.0:
            fail(f"word_windows entry {item!r}: a window must satisfy 0 <= start <= end <= 1; write {form}.")
        out.append((word, win))
    return out


def word_window_tokens(encode, target_text: str, s: str) -> list[tuple[list[int], tuple[float, float]]]:
    """The word_windows widget -> [(target token positions, window)] for the controller."""
    out = []
    for word, win in parse_word_windows(s):
        try:
            toks = sa.token_indices(encode, target_text, word)
        except sa.AlignmentError as e:
            raise PromptError(str(e)) from None
        if not toks:
            fail(f"word_windows word {word!r} is not in the target prompt {target_text!r}: a window applies to a "
                 "target word's attention, so name a word of the target prompt (for a swap, the new word).")
        out.append((toks, win))
    return out


def default_map_words(source_text: str, target_text: str) -> list[str]:
    """The words the attention-map preview shows when none are given: the changed words."""
    return sa.changed_words(source_text, target_text)[1][:MAX_MAP_WORDS]


@dataclass
class VP2PControl:
    """VP2P_CONTROLLER: the attention controller, both prompts' texts and the target prompt's
    embedding. The source prompt's embedding and the empty prompt's come from the inversion."""
    controller: vc.AttentionControl
    source_text: str
    target_text: str
    target_cond: torch.Tensor
    map_tokens: list = field(default_factory=list)   # [(label, "src"|"tgt", [token idx])]
    mode: str = "swap"

    @property
    def width(self):
        return self.target_cond.shape[-1]


def build_controller(encode, settings: EditSettings, previous: VP2PControl | None = None):
    """The settings -> (AttentionControl, map tokens, mode label)."""
    source_text, target_text = settings.source_text, settings.target_text
    if not source_text.strip() or not target_text.strip():
        fail("source_text and target_text must not be empty.")
    preset = settings.preset or CUSTOM
    if preset != CUSTOM and previous is not None:
        fail(f"preset '{preset}' builds its own swap/refine + reweight chain: disconnect "
                   "'previous', or use preset 'custom'.")
    settings, base_mode = resolve_preset(settings)
    mode, blend_threshold = settings.mode, settings.blend_threshold
    kw = dict(cross_replace=settings.cross_replace, self_replace=settings.self_replace,
              layers=LAYER_CHOICES[settings.controlled_layers],
              word_windows=word_window_tokens(encode, target_text, settings.word_windows))
    blend = None
    bwords = parse_words(settings.blend_words)
    if bwords:
        if blend_threshold >= 1.0:
            fail(f"blend_threshold {blend_threshold:g} masks nothing (the blend words' attention is scaled to a "
                 "maximum of 1 and must exceed the threshold), so every frame would stay the source: use a "
                 "value below 1 (the reference's is 0.3), or clear blend_words for no blend.")
        src_t, tgt_t = blend_tokens(encode, source_text, target_text, bwords, settings.blend_maps or BLEND_BOTH)
        blend = vc.LocalBlend(src_t, tgt_t, threshold=blend_threshold, start=settings.blend_start)
    kw["local_blend"] = blend
    try:
        if mode == "swap":
            ctrl = vc.AttentionReplace(sa.swap_mapper(encode, source_text, target_text), **kw)
        elif mode == "refine":
            mapper, alphas = sa.refine_alignment(encode, source_text, target_text)
            ctrl = vc.AttentionRefine(mapper, alphas, **kw)
        else:
            words = parse_words(settings.reweight_words)
            if not words:
                fail("mode reweight needs reweight_words (comma-separated words of the target prompt).")
            eq = sa.equalizer(encode, target_text, words, parse_scales(settings.reweight_scales, len(words)))
            prev = None
            if previous is not None:
                if previous.target_text.strip() != target_text.strip() or \
                        previous.source_text.strip() != source_text.strip():
                    fail("a chained (previous) controller must use the same source and target texts.")
                prev = previous.controller
            elif base_mode == "refine":
                mapper, alphas = sa.refine_alignment(encode, source_text, target_text)
                prev = vc.AttentionRefine(mapper, alphas, **kw)
            elif base_mode == "swap":
                prev = vc.AttentionReplace(sa.swap_mapper(encode, source_text, target_text), **kw)
            elif source_text.strip() != target_text.strip():
                # reweighting an edited prompt: align first, as prompt-to-prompt does
                try:
                    prev = vc.AttentionReplace(sa.swap_mapper(encode, source_text, target_text), **kw)
                except sa.AlignmentError:
                    mapper, alphas = sa.refine_alignment(encode, source_text, target_text)
                    prev = vc.AttentionRefine(mapper, alphas, **kw)
            ctrl = vc.AttentionReweight(eq, prev=prev, **kw)
    except sa.AlignmentError as e:
        raise PromptError(str(e)) from None
    if previous is not None and mode != "reweight":
        fail("only mode 'reweight' can be chained on a previous controller.")
    labels = parse_words(settings.map_words) or default_map_words(source_text, target_text) or bwords
    map_tokens = []
    for w in labels:
        t = sa.token_indices(encode, target_text, w)
        if t:
            map_tokens.append((w, "tgt", t))
            continue
        s = sa.token_indices(encode, source_text, w)
        if s:
            map_tokens.append((w, "src", s))
        else:
            fail(f"map word '{w}' appears in neither prompt.")
    return ctrl, map_tokens, (mode if base_mode is None else f"{base_mode}+reweight")


def preview(encode, body: dict) -> dict:
    """What the controller's widget values will do, word by word (the editor's live preview):
    seq_aligner.describe() after the same preset resolution and checks as build_controller;
    bad input comes back as ok=False with the node's message."""
    if not isinstance(body, dict):
        return {"ok": False, "error": "expected a JSON object"}
    text = lambda key: str(body.get(key) or "")  # noqa: E731
    settings = EditSettings(source_text=text("source"), target_text=text("target"), mode=text("mode") or "swap",
                            reweight_words=text("reweight_words"), reweight_scales=text("reweight_scales"),
                            blend_words=text("blend_words"), preset=text("preset") or CUSTOM,
                            word_windows=text("word_windows"))
    try:
        if body.get("cross_replace") not in (None, ""):      # (a linked widget sends nothing)
            settings = replace(settings, cross_replace=float(body["cross_replace"]))
    except (TypeError, ValueError):
        return {"ok": False, "error": "cross_replace must be a number"}
    if settings.mode not in MODES:
        return {"ok": False, "error": f"unknown mode {settings.mode!r}"}
    label = None
    try:
        settings, base_mode = resolve_preset(settings)     # what a preset turns the widgets into
        if base_mode is not None:
            label = f"{base_mode}+reweight ({settings.preset})"
        mode, words = settings.mode, parse_words(settings.reweight_words)
        scales = parse_scales(settings.reweight_scales, len(words)) if mode == "reweight" and words else \
            [float(s) for s in parse_words(settings.reweight_scales) or ["1"]]
    except (PromptError, ValueError) as e:
        return {"ok": False, "error": str(e) if isinstance(e, PromptError) else
                "reweight_scales must be numbers, e.g. '2' or '2, 0.5'"}
    out = sa.describe(encode, settings.source_text, settings.target_text, mode, words,
                      parse_words(settings.blend_words), scales)
    if label is not None:
        out["mode"] = label
    if out["ok"]:
        _preview_windows(encode, settings, out)
    return out


def _preview_windows(encode, settings: EditSettings, out: dict):
    """The preview's cross-attention windows: the global one, and `window` [start, end] on each
    target word that has its own (word_windows); a bad entry makes the preview's error."""
    try:
        out["cross_window"] = list(vc.window(settings.cross_replace))
        windows = word_window_tokens(encode, settings.target_text, settings.word_windows)
    except (PromptError, ValueError) as e:
        out.update(ok=False, error=str(e))
        return
    own = {}
    for toks, win in windows:
        own.update({t: list(win) for t in toks})
    for entry, (_, ids, pos) in zip(out["target"], sa.tokenize(encode, settings.target_text)):
        hit = [own[p] for p in range(pos, pos + len(ids)) if p in own]
        if hit:
            entry["window"] = hit[-1]
