"""Inversion nodes: Shared Null-Text Invert, Save Inversion (VP2P), Load Inversion (VP2P)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..vp2p_core.inversion import MODES
from ..vp2p_host import cache as stage_cache
from ..vp2p_host import inversion as inversions
from ..vp2p_host import store
from . import legacy
from ._common import CATEGORY, EXPERIMENTAL, Inversion, named, prefix_check, with_memory

INVERT = "Shared Null-Text Invert"
SAVE = "Save Inversion (VP2P)"
LOAD = "Load Inversion (VP2P)"
MODE_OPTIONS = [m for m, spec in MODES.items() if spec.offered]
DEFAULT_MODE = "direct-inversion"
MODE_HELP = " ".join(f"{m}: {MODES[m].summary}" for m in MODE_OPTIONS) + " " + legacy.INVERSION_MODES_NOTE


class VP2PSharedNullTextInvert(io.ComfyNode):
    """Invert a video for editing: x_T plus one optimised null-text embedding per step."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PSharedNullTextInvert",
            display_name=INVERT,
            category=CATEGORY,
            description=with_memory("VP2PSharedNullTextInvert", "DDIM-invert the video with the source prompt; direct-inversion keeps the trajectory for "
                        "the sampler, null-text optimises a shared null-text embedding per step so CFG sampling "
                        "retraces it; outputs the inversion and its reconstruction."),
            is_experimental=EXPERIMENTAL,
            inputs=[
                io.Model.Input("model", tooltip="The (inflated, tuned) model you will edit with."),
                io.Latent.Input("latent", tooltip="The video: all frames VAE-encoded as one batch."),
                io.Conditioning.Input("conditioning", tooltip="The source prompt describing the video."),
                io.Conditioning.Input("empty_conditioning", tooltip=
                    "CLIP Text Encode with an EMPTY text (same CLIP): the unconditional embedding that "
                    "null-text optimisation starts from, and the target branch's unconditional embedding."),
                io.Int.Input("steps", default=50, min=2, max=1000, tooltip=
                    "DDIM steps (scheduler ddim_uniform); use the same for editing."),
                io.Float.Input("cfg", default=7.5, min=0.01, max=30.0, step=0.1, round=0.01, tooltip=
                    "The guidance scale the source branch will be sampled with."),
                io.Combo.Input("mode", options=MODE_OPTIONS, default=DEFAULT_MODE, tooltip=MODE_HELP),
                io.Int.Input("inner_iterations", default=10, min=1, max=100, tooltip=
                    "Max optimiser updates per step (null-text), with early stopping."),
                io.Int.Input("fixed_point_iterations", default=0, min=0, max=20, optional=True, tooltip=
                    "Extra UNet calls per inversion step solving the DDIM step exactly (0 = the paper's "
                    "plain DDIM inversion). 2-3 make guidance-1 sampling retrace the video almost exactly."),
                io.Boolean.Input("cache", default=False, optional=True, tooltip=
                    "Reuse by content: if this MODEL, video, prompt and these settings were inverted before, load that result "
                    "(output/video_p2p/cache/, checked like the loaders do) instead of inverting again; else invert and keep "
                    "the result there. Off: compute every time."),
            ],
            outputs=[
                Inversion.Output(display_name="inversion", tooltip=
                    "x_T, the schedule, the per-step null embeddings (or trajectory), the source and empty-prompt "
                    "embeddings and the source text: everything the Decoupled Sampler needs of the video."),
                io.Latent.Output(display_name="reconstruction", tooltip=
                    "The video sampled back from the inversion with the source prompt (how faithful it is)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, mode=None):
        return legacy.inversion_mode_check(mode, MODE_OPTIONS)

    @classmethod
    @named(INVERT)
    def execute(cls, model, latent, conditioning, empty_conditioning, steps=50, cfg=7.5,
                mode=DEFAULT_MODE, inner_iterations=10, fixed_point_iterations=0, cache=False):
        legacy.tell_renamed(INVERT, mode)
        if cache:
            return io.NodeOutput(*stage_cache.invert(model, latent, conditioning, empty_conditioning, steps, cfg,
                                                     mode, inner_iterations, fixed_point_iterations))
        return io.NodeOutput(*inversions.invert_video(model, latent, conditioning, empty_conditioning, steps, cfg,
                                                      mode, inner_iterations, fixed_point_iterations))


class VP2PSaveInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PSaveInversion",
            display_name=SAVE,
            category=CATEGORY,
            description="Save an inversion (x_T, null embeddings, schedule) to reuse it without inverting again.",
            is_output_node=True,
            inputs=[
                Inversion.Input("inversion", tooltip="From Shared Null-Text Invert."),
                io.String.Input("filename_prefix", default="inversion", tooltip=
                    "Saved as output/video_p2p/<prefix>_NNNNN_.safetensors."),
            ],
            outputs=[],
        )

    @classmethod
    def validate_inputs(cls, filename_prefix=None):
        return prefix_check(SAVE, filename_prefix, "inversion", store.SUBDIR)

    @classmethod
    @named(SAVE)
    def execute(cls, inversion, filename_prefix="inversion"):
        path = inversions.save_inversion(inversion, filename_prefix)
        return io.NodeOutput(ui={"text": [store.display_name(path)]})


class VP2PLoadInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PLoadInversion",
            display_name=LOAD,
            category=CATEGORY,
            description="Load an inversion saved by Save Inversion (VP2P), checked against the model and video.",
            inputs=[
                io.Combo.Input("inversion_file", options=inversions.list_inversions() or ["(none found)"], tooltip=
                    "An inversion saved by Save Inversion (VP2P) (output/video_p2p/ or models/video_p2p/)."),
                io.Model.Input("model", tooltip="The model you edit with; must be the one that inverted."),
                io.Latent.Input("latent", optional=True, tooltip="The video latent; checked against the inverted one."),
            ],
            outputs=[Inversion.Output(display_name="inversion", tooltip=
                "The saved inversion, for the Decoupled Sampler (as Shared Null-Text Invert outputs it).")],
        )

    @classmethod
    def validate_inputs(cls, inversion_file=None):
        # not only "is it listed": a damaged or foreign file is named with what is wrong and the fix
        problem = None if inversion_file is None else inversions.inversion_file_problem(inversion_file)
        return True if problem is None else f"{LOAD}: {problem}"

    @classmethod
    def fingerprint_inputs(cls, inversion_file, **kwargs):
        return store.file_state(inversion_file)

    @classmethod
    @named(LOAD)
    def execute(cls, inversion_file, model, latent=None):
        return io.NodeOutput(inversions.load_inversion(inversion_file, model, latent))
