"""Model nodes: Inflate T2S Model, Tune On Video, Load Video Tuning."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..vp2p_host import cache as stage_cache
from ..vp2p_host import inflation, store, tuning
from ._common import CATEGORY, EXPERIMENTAL, check_options, named, prefix_check, with_memory

INFLATE = "Inflate T2S Model"
TUNE = "Tune On Video"
LOAD_TUNING = "Load Video Tuning"
PRECISION_HELP = ("auto: autocast in the dtype the UNet computes in (fp16/bf16 on GPUs, off for fp32), with "
                  "dynamic loss scaling when that is fp16; the trained weights are always fp32 master copies. "
                  "off: no autocast (an fp16 UNet is still loss-scaled). fp16 / bf16: force that autocast dtype.")


class VP2PInflateT2SModel(io.ComfyNode):
    """Image model -> text-to-set model (frame attention, temporal attention, video norm)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PInflateT2SModel",
            display_name=INFLATE,
            category=CATEGORY,
            description=with_memory("VP2PInflateT2SModel", "Inflate an SD1.x image model into Video-P2P's text-to-set model (a patched clone)."),
            is_experimental=EXPERIMENTAL,
            inputs=[
                io.Model.Input("model", tooltip=
                    "An SD1.x-family image MODEL (never modified: the result is a patched clone)."),
                io.Boolean.Input("temporal_attention", default=True, tooltip=
                    "Add zero-initialised attention across frames after every transformer block "
                    "(trained by Tune On Video; the untuned model is unchanged by it)."),
                io.Boolean.Input("video_norm", default=True, tooltip=
                    "ResBlock and output GroupNorms use statistics over all frames of the video, "
                    "as in the reference implementation."),
                io.Int.Input("frame_chunk", default=0, min=0, max=1024, tooltip=
                    "Frames per frame-attention call (0 = all at once). Smaller uses less memory, same result."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, tooltip=
                    "Seed of the temporal attention's initial weights."),
            ],
            outputs=[io.Model.Output(tooltip=
                "The inflated model: a patched clone that treats the batch as the frames of one video "
                "(tune it on the video next).")],
        )

    @classmethod
    @named(INFLATE)
    def execute(cls, model, temporal_attention=True, video_norm=True, frame_chunk=0, seed=0):
        return io.NodeOutput(inflation.inflate(model, temporal_attention, video_norm, frame_chunk, seed))


class VP2PTuneOnVideo(io.ComfyNode):
    """Fine-tune the inflated model's query projections and temporal attention on the video."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PTuneOnVideo",
            display_name=TUNE,
            category=CATEGORY,
            description=with_memory("VP2PTuneOnVideo", "Tune the inflated model on the input video (to_q of attn1/attn2 and temporal attention)."),
            is_experimental=EXPERIMENTAL,
            inputs=[
                io.Model.Input("model", tooltip="An inflated model (Inflate T2S Model)."),
                io.Latent.Input("latent", tooltip="The video: all frames VAE-encoded as one batch."),
                io.Conditioning.Input("conditioning", tooltip="The source prompt describing the video."),
                io.Int.Input("steps", default=300, min=1, max=100000, tooltip="Optimiser steps (paper: 300-500)."),
                io.Float.Input("learning_rate", default=3e-5, min=1e-8, max=1.0, step=1e-6, round=False,
                               tooltip=
                               "AdamW learning rate (paper: 3e-5, set for SD1.5). A much smaller model may need "
                               "more: the toy model's loss barely moves at 3e-5 in 100 steps (docs/benchmarks.md)."),
                io.Int.Input("seed", default=33, min=0, max=0xffffffffffffffff, tooltip=
                    "Seed of the timesteps and noise drawn for training (paper: 33)."),
                io.String.Input("save_name", default="", tooltip=
                    "If set, the trained weights are saved as output/video_p2p/<name>_NNNNN_.safetensors "
                    "(reload with Load Video Tuning)."),
                io.Combo.Input("mixed_precision", options=list(tuning.PRECISIONS), default="auto", optional=True,
                               tooltip=PRECISION_HELP),
                io.Boolean.Input("gradient_checkpointing", default=True, optional=True, tooltip=
                    "Recompute each transformer block in the backward pass instead of keeping its "
                    "activations: the same gradients, far less memory, ~30% slower (the official tuning "
                    "configs use it too). Off only for short clips on a large card."),
                io.Boolean.Input("cache", default=False, optional=True, tooltip=
                    "Reuse by content: if this MODEL, video, prompt and these settings were tuned before, load that result "
                    "(output/video_p2p/cache/, checked like the loaders do) instead of tuning again; else tune and keep "
                    "the result there. Off: compute every time."),
            ],
            outputs=[io.Model.Output(tooltip=
                "The tuned model (a clone carrying the trained weights as patches): invert and edit with it.")],
        )

    @classmethod
    def validate_inputs(cls, mixed_precision=None, save_name=None):
        if isinstance(save_name, str) and save_name.strip():
            ok = prefix_check(TUNE, save_name, "tuning", store.SUBDIR, "save_name")
            if ok is not True:
                return ok
        return check_options(cls, mixed_precision=mixed_precision)

    @classmethod
    @named(TUNE)
    def execute(cls, model, latent, conditioning, steps=300, learning_rate=3e-5, seed=33, save_name="",
                mixed_precision="auto", gradient_checkpointing=True, cache=False):
        if cache:
            return io.NodeOutput(stage_cache.tune(model, latent, conditioning, steps, learning_rate, seed, save_name,
                                                  mixed_precision, gradient_checkpointing))
        return io.NodeOutput(tuning.tune_and_save(model, latent, conditioning, steps, learning_rate, seed, save_name,
                                                  mixed_precision, gradient_checkpointing))


class VP2PLoadTuning(io.ComfyNode):
    """Apply a saved tuning to an inflated model instead of re-tuning."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PLoadTuning",
            display_name=LOAD_TUNING,
            category=CATEGORY,
            description="Load tuned weights saved by Tune On Video (output/video_p2p or models/video_p2p).",
            inputs=[
                io.Model.Input("model", tooltip="The inflated base model the tuning was made for."),
                io.Combo.Input("tuning_file", options=tuning.list_tunings() or ["(none found)"], tooltip=
                    "A tuning saved by Tune On Video (output/video_p2p/ or models/video_p2p/)."),
            ],
            outputs=[io.Model.Output(tooltip="The inflated model with the saved tuning applied (a clone).")],
        )

    @classmethod
    def validate_inputs(cls, tuning_file=None):
        # not only "is it listed": a damaged or foreign file is named with what is wrong and the fix
        problem = None if tuning_file is None else tuning.tuning_file_problem(tuning_file)
        return True if problem is None else f"{LOAD_TUNING}: {problem}"

    @classmethod
    def fingerprint_inputs(cls, tuning_file, **kwargs):
        return store.file_state(tuning_file)

    @classmethod
    @named(LOAD_TUNING)
    def execute(cls, model, tuning_file):
        return io.NodeOutput(tuning.load_tuning(model, tuning_file))
