"""P2P Controller node: builds the prompt-to-prompt edit (swap / refine / reweight, local blend)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..vp2p_core import control as vc
from ..vp2p_core import seq_aligner as sa
from .unet_runner import fail

NODE = "P2P Controller"
LAYER_CHOICES = {
    "cross+temporal (paper)": ("cross", "temporal"),
    "cross+temporal+frame": ("cross", "temporal", "frame"),
    "cross only": ("cross",),
    "cross+frame": ("cross", "frame"),
}


# Presets carry the settings of the official Video-P2P edit configs: every official edit wraps
# its swap/refine controller in a reweight of the edited word(s) and adds a local blend on the
# edited object; windows are cross 0.2 / self 0.5, or cross 0.8 / self 0.7 for hard edits (shape
# changes). A preset overrides mode, cross_replace, self_replace, blend_threshold and
# blend_start; reweight_words / blend_words / reweight_scales keep what you typed and, where
# empty, default to the words that differ between the prompts (scale 2).
CUSTOM = "custom"
PRESETS = {
    CUSTOM: None,
    "swap + reweight + blend (official)": {"mode": "swap", "cross_replace": 0.2, "self_replace": 0.5},
    "refine + reweight + blend (official)": {"mode": "refine", "cross_replace": 0.2, "self_replace": 0.5},
    "hard edit: cross 0.8 / self 0.7": {"mode": "auto", "cross_replace": 0.8, "self_replace": 0.7},
}
PRESET_COMMON = {"reweight_scales": "2", "blend_threshold": 0.3, "blend_start": 0.2}
PRESET_HELP = ("custom: the widgets as set. The others apply an official Video-P2P edit config: the swap or "
               "refine alignment wrapped in a reweight (x2) of the changed words, a local blend on them "
               "(threshold 0.3 from 20% of the steps), windows cross 0.2 / self 0.5 (hard edit: 0.8 / 0.7, "
               "swap or refine by word count). They override mode and the windows; reweight_words, "
               "blend_words and reweight_scales are kept where set (set blend_words to the object's noun "
               "for the tightest mask).")


def resolve_preset(preset, source_text, target_text, mode, cross_replace, self_replace, reweight_words,
                   reweight_scales, blend_words, blend_threshold, blend_start):
    """The widget values a preset turns the inputs into (unchanged for 'custom'); the editor preview
    uses the same function. Returns a dict of the widget names above, with mode 'reweight' plus
    'base_mode' (swap/refine) for the presets."""
    vals = dict(mode=mode, cross_replace=cross_replace, self_replace=self_replace, reweight_words=reweight_words,
                reweight_scales=reweight_scales, blend_words=blend_words, blend_threshold=blend_threshold,
                blend_start=blend_start, base_mode=None)
    preset = preset or CUSTOM
    if preset not in PRESETS:
        fail(NODE, f"unknown preset {preset!r}; use one of: {', '.join(PRESETS)}.")
    p = PRESETS[preset]
    if p is None:
        return vals
    n_src, n_tgt = len(sa.split_words(source_text)), len(sa.split_words(target_text))
    base = p["mode"] if p["mode"] != "auto" else ("swap" if n_src == n_tgt else "refine")
    if base == "swap" and n_src != n_tgt:
        fail(NODE, f"preset '{preset}' swaps words, but the prompts have {n_src} and {n_tgt} words: use the "
                   "refine preset to add or remove words.")
    src_changed, tgt_changed = sa.changed_words(source_text, target_text)
    if not (reweight_words or "").strip() and not tgt_changed:
        fail(NODE, f"preset '{preset}' reweights the target's new words, but no word of the target is new: "
                   "set reweight_words, or use preset 'custom'.")
    vals.update(mode="reweight", base_mode=base, cross_replace=p["cross_replace"], self_replace=p["self_replace"],
                blend_threshold=PRESET_COMMON["blend_threshold"], blend_start=PRESET_COMMON["blend_start"])
    if not (reweight_words or "").strip():
        vals["reweight_words"] = ", ".join(tgt_changed)
    if not (reweight_scales or "").strip():
        vals["reweight_scales"] = PRESET_COMMON["reweight_scales"]
    if not (blend_words or "").strip():
        vals["blend_words"] = ", ".join(dict.fromkeys(src_changed + tgt_changed))
    return vals


def clip_encoder(clip):
    """Token ids without BOS/EOS from the CLIP's own tokenizer (what CLIPTextEncode uses)."""
    tok = clip.tokenizer
    inner = getattr(tok, "clip_l", None) or getattr(tok, f"clip_{getattr(tok, 'clip_name', 'l')}", None) or tok
    hf = getattr(inner, "tokenizer", None)
    if hf is None:
        fail(NODE, "this CLIP has no CLIP BPE tokenizer; use an SD1.x checkpoint's CLIP.")
    return lambda text: hf(text)["input_ids"][1:-1]


def encode_text(clip, text):
    tokens = clip.tokenize(text)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[cond, {"pooled_output": pooled}]]


def parse_words(s: str):
    return [w.strip() for w in (s or "").replace(";", ",").split(",") if w.strip()]


def parse_scales(s: str, n: int):
    vals = [float(v) for v in parse_words(s)] if s and s.strip() else []
    if not vals:
        return [1.0] * n
    if len(vals) == 1:
        return vals * n
    if len(vals) != n:
        fail(NODE, f"{len(vals)} reweight scales for {n} reweight words: give one scale, or one per word.")
    return vals


@dataclass
class VP2PControl:
    """What the Decoupled Sampler needs: the attention controller, both prompts and the
    plain empty-prompt embedding used by the target branch (decoupled guidance)."""
    controller: vc.AttentionControl
    source_text: str
    target_text: str
    source_cond: torch.Tensor
    target_cond: torch.Tensor
    uncond: torch.Tensor
    map_tokens: list = field(default_factory=list)   # [(label, "src"|"tgt", [token idx])]
    mode: str = "swap"

    @property
    def width(self):
        return self.target_cond.shape[-1]


class VP2PController:
    """Aligns the source and target prompts and chooses which attention the edit copies."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The checkpoint's CLIP: encodes both prompts and tokenises them "
                                             "for the alignment."}),
                "source_text": ("STRING", {"multiline": True, "default": "a man riding a bike", "tooltip":
                    "Describes the input video; must be the prompt the video was tuned and inverted with."}),
                "target_text": ("STRING", {"multiline": True, "default": "a man riding a motorbike", "tooltip":
                    "The edited description. swap: same number of words, some replaced; refine: words "
                    "added or removed; reweight: the same prompt (or an edit) with some words stronger."}),
                "mode": (["swap", "refine", "reweight"], {"tooltip":
                    "swap = AttentionReplace (word swap), refine = AttentionRefine (added/removed words), "
                    "reweight = AttentionReweight (scale words' attention; chain on a swap/refine via previous)."}),
                "cross_replace": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                    "Fraction of the first sampling steps in which the target copies the source's "
                    "cross-attention (paper: 0.2). Higher keeps more of the source layout and shape."}),
                "self_replace": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                    "Fraction of the first steps in which temporal (and, if chosen, frame) attention is "
                    "copied from the source (paper: 0.5). Higher keeps motion and background; lower "
                    "allows bigger shape changes."}),
                "reweight_words": ("STRING", {"default": "", "tooltip":
                    "reweight mode: comma-separated words of the target prompt to strengthen/weaken."}),
                "reweight_scales": ("STRING", {"default": "", "tooltip":
                    "One scale for all reweight words or one per word, e.g. '2' or '2, 0.5' (1 = unchanged)."}),
                "blend_words": ("STRING", {"default": "", "tooltip":
                    "Local blend: comma-separated words (of either prompt) whose attention marks the region "
                    "that may change; outside it every frame keeps the source. Empty = no blend."}),
                "blend_threshold": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                    "Local blend mask = normalised attention of the blend words above this value. "
                    "Raise it if too much changes, lower it if the edit is cut off."}),
                "blend_start": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                    "Fraction of steps after which the local blend is applied."}),
                "controlled_layers": (list(LAYER_CHOICES), {"tooltip":
                    "Which attention layers the edit controls: the paper controls cross-attention and "
                    "temporal attention; adding frame attention keeps even more of the source."}),
                "map_words": ("STRING", {"default": "", "tooltip":
                    "Words whose cross-attention the sampler shows in its attention_maps image "
                    "(empty = the changed words)."}),
            },
            "optional": {"previous": ("VP2P_CONTROLLER", {"tooltip":
                "reweight mode only: a swap/refine controller of the same prompts to reweight on top of."}),
                "preset": (list(PRESETS), {"default": CUSTOM, "tooltip": PRESET_HELP})},
        }

    RETURN_TYPES = ("VP2P_CONTROLLER", "CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("controller", "source", "target")
    FUNCTION = "build"
    CATEGORY = "video-p2p"
    DESCRIPTION = "Align the source and target prompts and choose which attention the edit copies (prompt-to-prompt)."

    def build(self, clip, source_text, target_text, mode, cross_replace, self_replace, reweight_words,
              reweight_scales, blend_words, blend_threshold, blend_start, controlled_layers, map_words,
              previous=None, preset=CUSTOM):
        if not source_text.strip() or not target_text.strip():
            fail(NODE, "source_text and target_text must not be empty.")
        encode = clip_encoder(clip)
        base_mode = None
        if (preset or CUSTOM) != CUSTOM:
            if previous is not None:
                fail(NODE, f"preset '{preset}' builds its own swap/refine + reweight chain: disconnect "
                           "'previous', or use preset 'custom'.")
            v = resolve_preset(preset, source_text, target_text, mode, cross_replace, self_replace, reweight_words,
                               reweight_scales, blend_words, blend_threshold, blend_start)
            mode, cross_replace, self_replace = v["mode"], v["cross_replace"], v["self_replace"]
            reweight_words, reweight_scales, blend_words = v["reweight_words"], v["reweight_scales"], v["blend_words"]
            blend_threshold, blend_start, base_mode = v["blend_threshold"], v["blend_start"], v["base_mode"]
        kw = dict(cross_replace=cross_replace, self_replace=self_replace,
                  layers=LAYER_CHOICES[controlled_layers])
        blend = None
        bwords = parse_words(blend_words)
        if bwords:
            src_t, tgt_t, missing = [], [], []
            for w in bwords:
                s = sa.token_indices(encode, source_text, w)
                t = sa.token_indices(encode, target_text, w)
                if not s and not t:
                    missing.append(w)
                src_t += s
                tgt_t += t
            if missing:
                fail(NODE, f"blend word(s) {missing} appear in neither prompt; use words of the prompts.")
            blend = vc.LocalBlend(src_t, tgt_t, threshold=blend_threshold, start=blend_start)
        kw["local_blend"] = blend
        try:
            if mode == "swap":
                ctrl = vc.AttentionReplace(sa.swap_mapper(encode, source_text, target_text), **kw)
            elif mode == "refine":
                mapper, alphas = sa.refine_alignment(encode, source_text, target_text)
                ctrl = vc.AttentionRefine(mapper, alphas, **kw)
            else:
                words = parse_words(reweight_words)
                if not words:
                    fail(NODE, "mode reweight needs reweight_words (comma-separated words of the target prompt).")
                eq = sa.equalizer(encode, target_text, words, parse_scales(reweight_scales, len(words)))
                prev = None
                if previous is not None:
                    if previous.target_text.strip() != target_text.strip() or \
                            previous.source_text.strip() != source_text.strip():
                        fail(NODE, "a chained (previous) controller must use the same source and target texts.")
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
            fail(NODE, str(e))
        if previous is not None and mode != "reweight":
            fail(NODE, "only mode 'reweight' can be chained on a previous controller.")
        src = encode_text(clip, source_text)
        tgt = encode_text(clip, target_text)
        uncond = encode_text(clip, "")[0][0]
        labels = parse_words(map_words) or self._changed_words(source_text, target_text) or bwords
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
                fail(NODE, f"map word '{w}' appears in neither prompt.")
        spec = VP2PControl(ctrl, source_text, target_text, src[0][0], tgt[0][0], uncond, map_tokens,
                           mode if base_mode is None else f"{base_mode}+reweight")
        return (spec, src, tgt)

    @staticmethod
    def _changed_words(src, tgt):
        s, t = src.split(), tgt.split()
        return [w.strip(",.") for w in t if w not in s][:4]


NODE_CLASS_MAPPINGS = {"VP2PController": VP2PController}
NODE_DISPLAY_NAME_MAPPINGS = {"VP2PController": "P2P Controller"}
