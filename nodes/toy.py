"""Toy-world nodes: Load Small SD1.x Checkpoint (VP2P), Toy World Video (VP2P), Toy World Oracle
(VP2P): the procedural world with known truth that the tests and benchmarks run on."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..vp2p_host import checkpoint, toy
from ..vp2p_toy import world
from ._common import check_options, named

LOADER = "Load Small SD1.x Checkpoint (VP2P)"
VIDEO = "Toy World Video (VP2P)"
ORACLE = "Toy World Oracle (VP2P)"


class VP2PLoadSmallCheckpoint(io.ComfyNode):
    """Loads SD1.x-architecture checkpoints of reduced width (the embedded toy-world model)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PLoadSmallCheckpoint",
            display_name=LOADER,
            category="video-p2p/loaders",
            description="Loads SD1.x-architecture checkpoints of reduced width (the embedded toy-world model).",
            inputs=[io.Combo.Input("ckpt_name", options=checkpoint.list_small_checkpoints(), tooltip=
                f"Files in ComfyUI's models/{checkpoint.MODEL_KIND}/ folder (and the toy model shipped with the "
                "pack). Regular SD1.5 checkpoints load with core Load Checkpoint.")],
            outputs=[
                io.Model.Output(tooltip="The checkpoint's UNet (an SD1.x architecture, reduced width)."),
                io.Clip.Output(tooltip="The checkpoint's text encoder (SD1 tokenizer)."),
                io.Vae.Output(tooltip="The checkpoint's autoencoder (TAESD-style)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name=None):
        return check_options(cls, ckpt_name=ckpt_name)

    @classmethod
    @named(LOADER)
    def execute(cls, ckpt_name):
        return io.NodeOutput(*checkpoint.load_by_name(ckpt_name))


class VP2PToyWorldVideo(io.ComfyNode):
    """Renders a toy-world video: one object moving over a textured background."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PToyWorldVideo",
            display_name=VIDEO,
            category="video-p2p/toy world",
            description="A procedural test video with known truth (object mask, colour, shape, motion).",
            inputs=[
                io.Combo.Input("shape", options=list(world.SHAPES), tooltip="The object's shape."),
                io.Combo.Input("colour", options=list(world.COLOURS), tooltip="The object's colour."),
                io.Combo.Input("background", options=list(world.BACKGROUNDS), tooltip="The background texture."),
                io.Combo.Input("background_colour", options=list(world.BG_COLOURS), tooltip="The background colour."),
                io.Int.Input("frames", default=8, min=1, max=256, tooltip="Number of frames."),
                io.Int.Input("size", default=64, min=32, max=512, step=8, tooltip=
                    "Frame size in pixels (the toy model was trained at 64)."),
                io.Float.Input("start_x", default=0.3, min=0.0, max=1.0, step=0.01, tooltip=
                    "Object centre in the first frame (fraction of the width)."),
                io.Float.Input("start_y", default=0.5, min=0.0, max=1.0, step=0.01, tooltip=
                    "Object centre in the first frame (fraction of the height)."),
                io.Float.Input("end_x", default=0.7, min=0.0, max=1.0, step=0.01, tooltip=
                    "Object centre in the last frame (fraction of the width)."),
                io.Float.Input("end_y", default=0.5, min=0.0, max=1.0, step=0.01, tooltip=
                    "Object centre in the last frame (fraction of the height)."),
                io.Float.Input("radius", default=0.22, min=0.05, max=0.45, step=0.01, tooltip=
                    "Object radius as a fraction of the frame size."),
                io.Float.Input("end_radius", default=0.22, min=0.05, max=0.45, step=0.01, tooltip=
                    "Object radius in the last frame (it grows or shrinks linearly)."),
                io.Int.Input("texture_seed", default=0, min=0, max=2 ** 31 - 1, tooltip="Seed of the background texture."),
                io.Float.Input("rotation", default=0.0, min=-360.0, max=360.0, step=1.0, optional=True, tooltip=
                    "The object's rotation in the first frame (degrees)."),
                io.Float.Input("end_rotation", default=0.0, min=-360.0, max=360.0, step=1.0, optional=True, tooltip=
                    "The object's rotation in the last frame (it turns linearly)."),
                io.Combo.Input("second_shape", options=["none"] + list(world.SHAPES), default="none", optional=True,
                               tooltip="A second object ('none': one object). The caption then names both, "
                                       "the first one first: 'a red circle and a blue square on ...'."),
                io.Combo.Input("second_colour", options=list(world.COLOURS), default="blue", optional=True,
                               tooltip="The second object's colour."),
                io.Float.Input("second_start_x", default=0.75, min=0.0, max=1.0, step=0.01, optional=True, tooltip=
                    "Second object's centre in the first frame (fraction of the width)."),
                io.Float.Input("second_start_y", default=0.25, min=0.0, max=1.0, step=0.01, optional=True, tooltip=
                    "Second object's centre in the first frame (fraction of the height)."),
                io.Float.Input("second_end_x", default=0.75, min=0.0, max=1.0, step=0.01, optional=True, tooltip=
                    "Second object's centre in the last frame (fraction of the width)."),
                io.Float.Input("second_end_y", default=0.25, min=0.0, max=1.0, step=0.01, optional=True, tooltip=
                    "Second object's centre in the last frame (fraction of the height)."),
                io.Float.Input("second_radius", default=0.14, min=0.05, max=0.45, step=0.01, optional=True, tooltip=
                    "Second object's radius (fraction of the frame size). The toy model learnt two objects at "
                    "0.11-0.17, apart from each other."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The rendered video, one image per frame."),
                io.String.Output(display_name="caption", tooltip=
                    "The scene described in the toy model's vocabulary (the source prompt)."),
                io.Mask.Output(display_name="object_mask", tooltip="Where the object is, per frame (the truth)."),
                io.String.Output(display_name="spec_json", tooltip="All settings of the scene as JSON."),
                io.Mask.Output(display_name="second_mask", tooltip=
                    "Where the second object is, per frame (all zeros without one)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, shape=None, colour=None, background=None, background_colour=None, second_shape=None,
                        second_colour=None):
        return check_options(cls, shape=shape, colour=colour, background=background,
                             background_colour=background_colour, second_shape=second_shape,
                             second_colour=second_colour)

    @classmethod
    @named(VIDEO)
    def execute(cls, shape, colour, background, background_colour, frames, size, start_x, start_y, end_x, end_y,
                radius, end_radius, texture_seed, rotation=0.0, end_rotation=0.0, second_shape="none",
                second_colour="blue", second_start_x=0.75, second_start_y=0.25, second_end_x=0.75,
                second_end_y=0.25, second_radius=0.14):
        second = None if second_shape == "none" else dict(
            shape=second_shape, colour=second_colour, start=(second_start_x, second_start_y),
            end=(second_end_x, second_end_y), scale=(second_radius, second_radius))
        return io.NodeOutput(*toy.render_video(shape, colour, background, background_colour, frames, size,
                                               (start_x, start_y), (end_x, end_y), (radius, end_radius),
                                               (rotation, end_rotation), texture_seed, second))


class VP2PToyWorldOracle(io.ComfyNode):
    """Reads each frame's object colour and shape from pixels (for toy-world checks)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PToyWorldOracle",
            display_name=ORACLE,
            category="video-p2p/toy world",
            description="Per-frame colour and shape of the toy-world objects, read from the pixels.",
            is_output_node=True,
            inputs=[io.Image.Input("images", tooltip="Frames of a toy-world video (e.g. the decoded edit).")],
            outputs=[io.String.Output(display_name="report", tooltip=
                "JSON list, one entry per frame: the colour, shape and centre the oracle reads for the largest "
                "object, and 'objects': the same for the two largest objects (two-object scenes).")],
        )

    @classmethod
    @named(ORACLE)
    def execute(cls, images):
        report, lines = toy.read_frames(images)
        return io.NodeOutput(report, ui={"text": lines})
