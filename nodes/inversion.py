"""Inversion nodes: Shared Null-Text Invert, Save Inversion (VP2P), Load Inversion (VP2P)."""
from __future__ import annotations

from ..vp2p_host import inversion as inversions
from ..vp2p_host import store
from ._common import CATEGORY, named

INVERT = "Shared Null-Text Invert"
SAVE = "Save Inversion (VP2P)"
LOAD = "Load Inversion (VP2P)"


class VP2PSharedNullTextInvert:
    """Invert a video for editing: x_T plus one optimised null-text embedding per step."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The (inflated, tuned) model you will edit with."}),
            "latent": ("LATENT", {"tooltip": "The video: all frames VAE-encoded as one batch."}),
            "conditioning": ("CONDITIONING", {"tooltip": "The source prompt describing the video."}),
            "empty_conditioning": ("CONDITIONING", {"tooltip":
                "CLIP Text Encode with an EMPTY text (same CLIP): the unconditional embedding that "
                "null-text optimisation starts from, and the target branch's unconditional embedding."}),
            "steps": ("INT", {"default": 50, "min": 2, "max": 1000, "tooltip":
                "DDIM steps (scheduler ddim_uniform); use the same for editing."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.01, "max": 30.0, "step": 0.1, "round": 0.01, "tooltip":
                "The guidance scale the source branch will be sampled with."}),
            "mode": (list(inversions.NODE_MODES), {"default": inversions.DEFAULT_MODE, "tooltip": inversions.MODE_HELP}),
            "inner_iterations": ("INT", {"default": 10, "min": 1, "max": 100, "tooltip":
                "Max optimiser updates per step (null-text), with early stopping."}),
        }, "optional": {
            "fixed_point_iterations": ("INT", {"default": 0, "min": 0, "max": 20, "tooltip":
                "Extra UNet calls per inversion step solving the DDIM step exactly (0 = the paper's "
                "plain DDIM inversion). 2-3 make guidance-1 sampling retrace the video almost exactly."}),
        }}

    RETURN_TYPES = ("VP2P_INVERSION", "LATENT")
    RETURN_NAMES = ("inversion", "reconstruction")
    FUNCTION = "invert"
    CATEGORY = CATEGORY
    DESCRIPTION = ("DDIM-invert the video with the source prompt; direct-inversion keeps the trajectory for the "
                   "sampler, null-text optimises a shared null-text embedding "
                   "per step so CFG sampling retraces it; outputs the inversion and its reconstruction.")

    @classmethod
    def VALIDATE_INPUTS(cls, mode):
        # accepts the values earlier versions saved (LEGACY_MODES), which the combo no longer lists
        if mode in inversions.NODE_MODES or mode in inversions.LEGACY_MODES:
            return True
        return f"mode must be one of {', '.join(inversions.NODE_MODES)} (got {mode!r})"

    @named(INVERT)
    def invert(self, model, latent, conditioning, empty_conditioning, steps=50, cfg=7.5,
               mode=inversions.DEFAULT_MODE, inner_iterations=10, fixed_point_iterations=0):
        return inversions.invert_video(model, latent, conditioning, empty_conditioning, steps, cfg, mode,
                                      inner_iterations, fixed_point_iterations)


class VP2PSaveInversion:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inversion": ("VP2P_INVERSION", {"tooltip": "From Shared Null-Text Invert."}),
            "filename_prefix": ("STRING", {"default": "inversion", "tooltip":
                "Saved as output/video_p2p/<prefix>_NNNNN_.safetensors."}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    DESCRIPTION = "Save an inversion (x_T, null embeddings, schedule) to reuse it without inverting again."

    @named(SAVE)
    def save(self, inversion, filename_prefix="inversion"):
        return {"ui": {"text": [store.display_name(inversions.save_inversion(inversion, filename_prefix))]}}


class VP2PLoadInversion:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "inversion_file": (inversions.list_inversions() or ["(none found)"], {"tooltip": "An inversion saved by Save Inversion (VP2P) (output/video_p2p/ or models/video_p2p/)."}),
                "model": ("MODEL", {"tooltip": "The model you edit with; must be the one that inverted."}),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "The video latent; checked against the inverted one."}),
            },
        }

    RETURN_TYPES = ("VP2P_INVERSION",)
    RETURN_NAMES = ("inversion",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Load an inversion saved by Save Inversion (VP2P), checked against the model and video."

    @classmethod
    def IS_CHANGED(cls, inversion_file, **kwargs):
        return store.file_state(inversion_file)

    @named(LOAD)
    def load(self, inversion_file, model, latent=None):
        return (inversions.load_inversion(inversion_file, model, latent),)
