"""Edit nodes: P2P Controller (the prompt-to-prompt edit), Decoupled Sampler and Decoupled Guider."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..vp2p_core import prompts
from ..vp2p_host import sampling, text
from . import legacy
from ._common import CATEGORY, EXPERIMENTAL, Controller, Inversion, check_options, named, with_memory

CONTROLLER = "P2P Controller"
SAMPLER = "Decoupled Sampler"
GUIDER = "Decoupled Guider"
PRESET_HELP = ("custom: the widgets as set. The others carry one official Video-P2P edit config's numbers (see "
               "docs/editing.md): the swap or refine alignment wrapped in a reweight of the target's new words, "
               "windows cross 0.2 / self 0.5 and a local blend (threshold 0.3 from 20% of the steps) on the swapped "
               "words (word swap: new word x2; strong: x4) or on the object noun in both prompts (add an attribute: "
               "the added word x2; strong: x4); style: cross 0.8 / self 0.7, no blend, the new words x5 then x2. "
               "They override mode and the windows; reweight_words, reweight_scales and blend_words are kept "
               "where set.")
BLEND_MAPS_HELP = ("Which branch's attention marks the local blend for a blend word that both prompts have: both "
                   "(prompt-to-prompt's union), or the source's alone (read on the input video: a tighter mask "
                   "that repaints less background, but the edited object cannot grow past the source one). A "
                   "word only one prompt has is always read there.")
BRANCH_COND_HELP = ("optional: the P2P Controller's {} conditioning after Apply ControlNet or similar; the "
                    "prompt must be the controller's")


class VP2PController(io.ComfyNode):
    """Aligns the source and target prompts and chooses which attention the edit copies."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PController",
            display_name=CONTROLLER,
            category=CATEGORY,
            description="Align the source and target prompts and choose which attention the edit copies "
                        "(prompt-to-prompt).",
            is_experimental=EXPERIMENTAL,
            inputs=[
                io.Clip.Input("clip", tooltip="The checkpoint's CLIP: encodes both prompts and tokenises them "
                                              "for the alignment."),
                io.String.Input("source_text", multiline=True, default="a man riding a bike", tooltip=
                    "Describes the input video; must be the prompt the video was tuned and inverted with."),
                io.String.Input("target_text", multiline=True, default="a man riding a motorbike", tooltip=
                    "The edited description. swap: same number of words, some replaced; refine: words "
                    "added or removed; reweight: the same prompt (or an edit) with some words stronger."),
                io.Combo.Input("mode", options=["swap", "refine", "reweight"], tooltip=
                    "swap = AttentionReplace (word swap), refine = AttentionRefine (added/removed words), "
                    "reweight = AttentionReweight (scale words' attention; chain on a swap/refine via previous)."),
                io.Float.Input("cross_replace", default=0.2, min=0.0, max=1.0, step=0.05, tooltip=
                    "Fraction of the first sampling steps in which the target copies the source's "
                    "cross-attention (paper: 0.2). Higher keeps more of the source layout and shape."),
                io.Float.Input("self_replace", default=0.5, min=0.0, max=1.0, step=0.05, tooltip=
                    "Fraction of the first steps in which temporal (and, if chosen, frame) attention is "
                    "copied from the source (paper: 0.5). Higher keeps motion and background; lower "
                    "allows bigger shape changes."),
                io.String.Input("reweight_words", default="", tooltip=
                    "reweight mode: comma-separated words of the target prompt to strengthen/weaken."),
                io.String.Input("reweight_scales", default="", tooltip=
                    "One scale for all reweight words or one per word, e.g. '2' or '2, 0.5' (1 = unchanged)."),
                io.String.Input("blend_words", default="", tooltip=
                    "Local blend: comma-separated words (of either prompt) whose attention marks the region "
                    "that may change; outside it every frame keeps the source. A word the edit changes is read "
                    "only where it changes (a shape word both objects have marks the edited one). Empty = no blend."),
                io.Float.Input("blend_threshold", default=0.3, min=0.0, max=1.0, step=0.05, tooltip=
                    "Local blend mask = normalised attention of the blend words above this value (below 1). "
                    "Raise it if too much changes, lower it if the edit is cut off."),
                io.Float.Input("blend_start", default=0.2, min=0.0, max=1.0, step=0.05, tooltip=
                    "Fraction of steps after which the local blend is applied."),
                io.Combo.Input("controlled_layers", options=list(prompts.LAYER_CHOICES), tooltip=
                    "Which attention layers the edit controls: the paper controls cross-attention and "
                    "temporal attention; adding frame attention keeps even more of the source."),
                io.String.Input("map_words", default="", tooltip=
                    "Words whose cross-attention the sampler shows in its attention_maps image "
                    "(empty = the changed words)."),
                Controller.Input("previous", optional=True, tooltip=
                    "reweight mode only: a swap/refine controller of the same prompts to reweight on top of."),
                io.Combo.Input("preset", options=list(prompts.PRESETS), default=prompts.CUSTOM, optional=True,
                               tooltip=PRESET_HELP),
                io.Combo.Input("blend_maps", options=list(prompts.BLEND_MAPS), default=prompts.BLEND_BOTH,
                               optional=True, tooltip=BLEND_MAPS_HELP),
                io.String.Input("word_windows", default="", optional=True, tooltip=prompts.WORD_WINDOWS_HELP),
            ],
            outputs=[
                Controller.Output(display_name="controller", tooltip=
                    "The edit (aligned tokens, attention control, local blend) for the Decoupled Sampler "
                    "or Decoupled Guider."),
                io.Conditioning.Output(display_name="source", tooltip=
                    "The source prompt encoded once (it carries the text): tune and invert the video with it."),
                io.Conditioning.Output(display_name="target", tooltip="The target prompt encoded."),
            ],
        )

    @classmethod
    def validate_inputs(cls, mode=None, controlled_layers=None, preset=None, blend_maps=None):
        return check_options(cls, mode=mode, controlled_layers=controlled_layers, blend_maps=blend_maps,
                             preset=legacy.preset_value(preset))

    @classmethod
    @named(CONTROLLER)
    def execute(cls, clip, source_text, target_text, mode, cross_replace, self_replace, reweight_words,
                reweight_scales, blend_words, blend_threshold, blend_start, controlled_layers, map_words,
                previous=None, preset=prompts.CUSTOM, blend_maps=prompts.BLEND_BOTH, word_windows=""):
        settings = prompts.EditSettings(
            source_text=source_text, target_text=target_text, mode=mode, cross_replace=cross_replace,
            self_replace=self_replace, reweight_words=reweight_words, reweight_scales=reweight_scales,
            blend_words=blend_words, blend_threshold=blend_threshold, blend_start=blend_start,
            controlled_layers=controlled_layers, map_words=map_words, preset=preset, blend_maps=blend_maps,
            word_windows=word_windows or "")
        return io.NodeOutput(*text.build_control(clip, settings, previous=previous))


def _cfg_input():
    """The target branch's guidance: one widget for the sampler and the guider."""
    return io.Float.Input("cfg", default=7.5, min=1.0, max=30.0, step=0.5, tooltip=
        "Guidance of the target (edited) branch, against the inversion's plain empty-prompt embedding. The "
        "source branch keeps the inversion's cfg and optimised null embeddings.")


def _edit_inputs():
    return [io.Model.Input("model", tooltip="The same (tuned) model the video was inverted with."),
            Inversion.Input("inversion", tooltip="From Shared Null-Text Invert (or Load Inversion)."),
            Controller.Input("controller", tooltip="From P2P Controller.")]


def _branch_inputs():
    return [io.Conditioning.Input("source_conditioning", optional=True, tooltip=BRANCH_COND_HELP.format("source")),
            io.Conditioning.Input("target_conditioning", optional=True, tooltip=BRANCH_COND_HELP.format("target"))]


class VP2PDecoupledSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PDecoupledSampler",
            display_name=SAMPLER,
            category=CATEGORY,
            description=with_memory("VP2PDecoupledSampler", "Edit the inverted video: the source branch retraces it, the target branch follows the "
                        "target prompt with the source's attention."),
            is_experimental=EXPERIMENTAL,
            inputs=_edit_inputs() + [
                _cfg_input(),
                legacy.branch_batching_input(),
            ] + _branch_inputs(),
            outputs=[
                io.Latent.Output(display_name="edited", tooltip="The edited video (one latent per frame)."),
                io.Latent.Output(display_name="source", tooltip=
                    "The source branch: the video reconstructed from the inversion (shows what the edit keeps)."),
                io.Image.Output(display_name="attention_maps", tooltip=
                    "Cross-attention of the map words (or the changed words) per frame, source and target rows."),
            ],
        )

    @classmethod
    def validate_inputs(cls, branch_batching=None):
        return check_options(cls, branch_batching=branch_batching)

    @classmethod
    @named(SAMPLER)
    def execute(cls, model, inversion, controller, cfg, branch_batching, source_conditioning=None,
                target_conditioning=None):
        return io.NodeOutput(*sampling.decoupled_sample(model, inversion, controller, cfg, branch_batching,
                                                        source=source_conditioning, target=target_conditioning))


class VP2PDecoupledGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PDecoupledGuider",
            display_name=GUIDER,
            category=CATEGORY,
            description="Video-P2P's decoupled two-branch edit as a GUIDER for SamplerCustomAdvanced (use the "
                        "ddim sampler and the inversion's schedule: BasicScheduler ddim_uniform with the "
                        "inversion's steps); outputs the edited latent",
            is_experimental=EXPERIMENTAL,
            inputs=_edit_inputs() + [_cfg_input()] + _branch_inputs(),
            outputs=[io.Guider.Output(tooltip=
                "For SamplerCustomAdvanced: its output is the edited video; the source branch runs alongside.")],
        )

    @classmethod
    @named(GUIDER)
    def execute(cls, model, inversion, controller, cfg, source_conditioning=None, target_conditioning=None):
        return io.NodeOutput(sampling.decoupled_guider(model, inversion, controller, cfg,
                                                       source=source_conditioning, target=target_conditioning))
