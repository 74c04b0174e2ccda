"""Model nodes: Inflate T2S Model, Tune On Video, Load Video Tuning."""
from __future__ import annotations

from ..vp2p_host import inflation, tuning
from ._common import CATEGORY, named

INFLATE = "Inflate T2S Model"
TUNE = "Tune On Video"
LOAD_TUNING = "Load Video Tuning"
PRECISION_HELP = ("auto: autocast in the dtype the UNet computes in (fp16/bf16 on GPUs, off for fp32), with "
                  "dynamic loss scaling when that is fp16; the trained weights are always fp32 master copies. "
                  "off: no autocast (an fp16 UNet is still loss-scaled). fp16 / bf16: force that autocast dtype.")


class VP2PInflateT2SModel:
    """Image model -> text-to-set model (frame attention, temporal attention, video norm)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SD1.x-family image MODEL (never modified: the result is a patched clone)."}),
            "temporal_attention": ("BOOLEAN", {"default": True, "tooltip":
                "Add zero-initialised attention across frames after every transformer block "
                "(trained by Tune On Video; the untuned model is unchanged by it)."}),
            "video_norm": ("BOOLEAN", {"default": True, "tooltip":
                "ResBlock and output GroupNorms use statistics over all frames of the video, "
                "as in the reference implementation."}),
            "frame_chunk": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip":
                "Frames per frame-attention call (0 = all at once). Smaller uses less memory, "
                "same result."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "tooltip":
                "Seed of the temporal attention's initial weights."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "inflate"
    CATEGORY = CATEGORY
    DESCRIPTION = "Inflate an SD1.x image model into Video-P2P's text-to-set model (a patched clone)."

    @named(INFLATE)
    def inflate(self, model, temporal_attention=True, video_norm=True, frame_chunk=0, seed=0):
        return (inflation.inflate(model, temporal_attention, video_norm, frame_chunk, seed),)


class VP2PTuneOnVideo:
    """Fine-tune the inflated model's query projections and temporal attention on the video."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An inflated model (Inflate T2S Model)."}),
                "latent": ("LATENT", {"tooltip": "The video: all frames VAE-encoded as one batch."}),
                "conditioning": ("CONDITIONING", {"tooltip": "The source prompt describing the video."}),
                "steps": ("INT", {"default": 300, "min": 1, "max": 100000, "tooltip": "Optimiser steps (paper: 300-500)."}),
                "learning_rate": ("FLOAT", {"default": 3e-5, "min": 1e-8, "max": 1.0, "step": 1e-6, "round": False, "tooltip": "AdamW learning rate (paper: 3e-5)."}),
                "seed": ("INT", {"default": 33, "min": 0, "max": 0xffffffffffffffff, "tooltip": "Seed of the timesteps and noise drawn for training (paper: 33)."}),
                "save_name": ("STRING", {"default": "", "tooltip":
                    "If set, the trained weights are saved as output/video_p2p/<name>_NNNNN_.safetensors "
                    "(reload with Load Video Tuning)."}),
            },
            "optional": {
                "mixed_precision": (list(tuning.PRECISIONS), {"default": "auto", "tooltip": PRECISION_HELP}),
                "gradient_checkpointing": ("BOOLEAN", {"default": False, "tooltip":
                    "Recompute transformer blocks in the backward pass: less memory, ~30% slower."}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "tune"
    CATEGORY = CATEGORY
    DESCRIPTION = "Tune the inflated model on the input video (to_q of attn1/attn2 and temporal attention)."

    @named(TUNE)
    def tune(self, model, latent, conditioning, steps=300, learning_rate=3e-5, seed=33, save_name="",
             mixed_precision="auto", gradient_checkpointing=False):
        return (tuning.tune_and_save(model, latent, conditioning, steps, learning_rate, seed, save_name,
                                     mixed_precision, gradient_checkpointing),)


class VP2PLoadTuning:
    """Apply a saved tuning to an inflated model instead of re-tuning."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The inflated base model the tuning was made for."}),
            "tuning_file": (tuning.list_tunings() or ["(none found)"], {"tooltip": "A tuning saved by Tune On Video (output/video_p2p/ or models/video_p2p/)."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Load tuned weights saved by Tune On Video (output/video_p2p or models/video_p2p)."

    @named(LOAD_TUNING)
    def load(self, model, tuning_file):
        return (tuning.load_tuning(model, tuning_file),)
