"""Video nodes: Load Video (VP2P), Save Video (VP2P), Side By Side (VP2P). Frames are an IMAGE
batch [F,H,W,3]; files and core's VIDEO type are handled by vp2p_host.video."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..vp2p_host import video as video_host
from ._common import check_options, hidden, named, prefix_check

LOAD = "Load Video (VP2P)"
SAVE = "Save Video (VP2P)"
SBS = "Side By Side (VP2P)"
CATEGORY = "video-p2p/video"


class VP2PLoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PLoadVideo",
            display_name=LOAD,
            category=CATEGORY,
            description="Load a video file, image folder, VIDEO or one clip of a folder of clips as an IMAGE "
                        "batch (one image per frame), with its fps and audio; frames are resized as they are read.",
            inputs=[
                io.Combo.Input("video", options=video_host.input_videos(), upload=io.UploadType.video, tooltip=
                    "A video file or image folder in ComfyUI's input folder (the upload button puts a file there)."),
                io.String.Input("path", default="", tooltip=
                    "Or a full path to a video file / image folder (wins if set)."),
                io.Int.Input("frame_start", default=0, min=0, max=100000, tooltip="First frame to load (0 = the first)."),
                io.Int.Input("frame_count", default=8, min=0, max=10000, tooltip=
                    "Frames to load (0 = all). Video-P2P's reference uses 8."),
                io.Int.Input("stride", default=1, min=1, max=1000, tooltip="Take every n-th frame."),
                io.Int.Input("width", default=512, min=0, max=8192, step=8, tooltip="0 = keep the aspect ratio."),
                io.Int.Input("height", default=512, min=0, max=8192, step=8, tooltip="0 = keep the aspect ratio."),
                io.Combo.Input("multiple_of", options=[8, 64], tooltip=
                    "Sizes are rounded down to this multiple (8 = one latent pixel)."),
                io.Combo.Input("resize_mode", options=["crop", "stretch"], tooltip=
                    "crop keeps the aspect ratio (centre crop)."),
                io.Video.Input("video_input", optional=True, tooltip=
                    "A core VIDEO (Load Video, Create Video, ...): wins over video and path; the frame and size "
                    "controls still apply."),
                io.String.Input("clip_folder", default="", optional=True, tooltip=
                    "A folder of clips (video files or folders of frames; relative to ComfyUI's input folder, or "
                    "a full path): if set, loads clip number clip_index of it in natural name order, instead of "
                    "video and path."),
                io.Int.Input("clip_index", default=0, min=0, max=100000, control_after_generate=True, optional=True,
                             tooltip="Which clip of clip_folder (0 = the first). With 'increment' after each queue, "
                                     "Queue N edits N clips one after the other."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="One image per frame."),
                io.Float.Output(display_name="fps", tooltip="Frames per second of the loaded frames (the file's / stride)."),
                io.Int.Output(display_name="frame_count", tooltip="Number of frames loaded."),
                io.Audio.Output(display_name="audio", tooltip=
                    "The sound of the loaded frames' time span (None if the video has none)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, video=None, multiple_of=None, resize_mode=None):
        return check_options(cls, video=video, multiple_of=multiple_of, resize_mode=resize_mode)

    @classmethod
    def fingerprint_inputs(cls, video, path, clip_folder="", clip_index=0, **kw):
        return video_host.file_mtime(video, path, clip_folder, clip_index)

    @classmethod
    @named(LOAD)
    def execute(cls, video, path, frame_start, frame_count, stride, width, height, multiple_of, resize_mode,
                video_input=None, clip_folder="", clip_index=0):
        return io.NodeOutput(*video_host.load_video(video, path, frame_start, frame_count, stride, width, height,
                                                    multiple_of, resize_mode, video_input, clip_folder, clip_index))


class VP2PSaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PSaveVideo",
            display_name=SAVE,
            category=CATEGORY,
            description="Save frames (and audio) as a video under ComfyUI's output folder, previewed in the editor.",
            is_output_node=True,
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            inputs=[
                io.Image.Input("images", tooltip="Frames to save, in order."),
                io.Float.Input("fps", default=8.0, min=0.1, max=240.0, step=0.5, tooltip=
                    "Frames per second (e.g. Load Video's fps)."),
                io.String.Input("filename_prefix", default=video_host.SAVE_DEFAULT, tooltip=
                    "Saved as output/<prefix>_NNNNN_.<format> (relative to the output folder; empty = "
                    "video_p2p/edit)."),
                io.Combo.Input("format", options=["mp4", "gif", "webp"], tooltip=
                    "mp4: H.264 (yuv420p) with the audio and the workflow embedded, plays in browsers and the "
                    "editor; gif/webp: animated images (no audio)."),
                io.Audio.Input("audio", optional=True, tooltip=
                    "Sound to put in the mp4 (e.g. Load Video's audio), cut to the video's length."),
            ],
            outputs=[
                io.String.Output(display_name="path", tooltip="Full path of the saved file."),
                io.Video.Output(display_name="video", tooltip=
                    "The saved video as core's VIDEO (for Save Video, Get Video Components, ...)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, format=None, filename_prefix=None):
        ok = prefix_check(SAVE, filename_prefix, video_host.SAVE_DEFAULT)
        return ok if ok is not True else check_options(cls, format=format)

    @classmethod
    @named(SAVE)
    def execute(cls, images, fps, filename_prefix, format, audio=None):
        ui, path, video = video_host.save_video(images, fps, filename_prefix, format, audio,
                                                hidden(cls, "prompt"), hidden(cls, "extra_pnginfo"))
        return io.NodeOutput(path, video, ui=ui)


class VP2PSideBySide(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VP2PSideBySide",
            display_name=SBS,
            category=CATEGORY,
            description="Put up to four videos side by side (same frame count), e.g. source | reconstruction | edit.",
            inputs=[
                io.Image.Input("a", tooltip="First video (frames)."),
                io.String.Input("labels", default="source, reconstruction, edit", tooltip=
                    "Comma-separated panel labels."),
                io.Image.Input("b", optional=True, tooltip="Second video."),
                io.Image.Input("c", optional=True, tooltip="Third video."),
                io.Image.Input("d", optional=True, tooltip="Fourth video."),
            ],
            outputs=[io.Image.Output(tooltip="The videos side by side, each panel labelled, one image per frame.")],
        )

    @classmethod
    @named(SBS)
    def execute(cls, a, labels, b=None, c=None, d=None):
        return io.NodeOutput(video_host.side_by_side(a, labels, b, c, d))
