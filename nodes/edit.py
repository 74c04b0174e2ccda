"""Edit nodes: P2P Controller (the prompt-to-prompt edit) and Decoupled Sampler."""
from __future__ import annotations

from ..vp2p_core import prompts
from ..vp2p_host import sampling, text
from ._common import CATEGORY, named

CONTROLLER = "P2P Controller"
SAMPLER = "Decoupled Sampler"


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
                "controlled_layers": (list(prompts.LAYER_CHOICES), {"tooltip":
                    "Which attention layers the edit controls: the paper controls cross-attention and "
                    "temporal attention; adding frame attention keeps even more of the source."}),
                "map_words": ("STRING", {"default": "", "tooltip":
                    "Words whose cross-attention the sampler shows in its attention_maps image "
                    "(empty = the changed words)."}),
            },
            "optional": {"previous": ("VP2P_CONTROLLER", {"tooltip":
                "reweight mode only: a swap/refine controller of the same prompts to reweight on top of."}),
                "preset": (list(prompts.PRESETS), {"default": prompts.CUSTOM, "tooltip": prompts.PRESET_HELP})},
        }

    RETURN_TYPES = ("VP2P_CONTROLLER", "CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("controller", "source", "target")
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = "Align the source and target prompts and choose which attention the edit copies (prompt-to-prompt)."

    @named(CONTROLLER)
    def build(self, clip, source_text, target_text, mode, cross_replace, self_replace, reweight_words,
              reweight_scales, blend_words, blend_threshold, blend_start, controlled_layers, map_words,
              previous=None, preset=prompts.CUSTOM):
        return text.build_control(clip, source_text, target_text, mode, cross_replace, self_replace, reweight_words,
                                  reweight_scales, blend_words, blend_threshold, blend_start, controlled_layers,
                                  map_words, previous=previous, preset=preset)


class VP2PDecoupledSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The same (tuned) model the video was inverted with."}),
                "inversion": ("VP2P_INVERSION", {"tooltip": "From Shared Null-Text Invert (or Load Inversion)."}),
                "controller": ("VP2P_CONTROLLER", {"tooltip": "From P2P Controller."}),
                "cfg": ("FLOAT", {"default": 7.5, "min": 1.0, "max": 30.0, "step": 0.5, "tooltip":
                    "Guidance of the target (edited) branch, against the inversion's plain empty-prompt embedding. The source "
                    "branch keeps the inversion's cfg and optimised null embeddings."}),
                "branch_batching": (["auto", "batched", "source-first"], {"tooltip":
                    "batched: both branches in one UNet call (fastest); source-first: source then target "
                    "per step, caching the source attention (half the activation memory, identical edits "
                    "up to float rounding); auto: batched if it fits in free memory."}),
            }
        }

    RETURN_TYPES = ("LATENT", "LATENT", "IMAGE")
    RETURN_NAMES = ("edited", "source", "attention_maps")
    DESCRIPTION = "Edit the inverted video: the source branch retraces it, the target branch follows the target prompt with the source's attention."
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    @named(SAMPLER)
    def sample(self, model, inversion, controller, cfg, branch_batching):
        return sampling.decoupled_sample(model, inversion, controller, cfg, branch_batching)
