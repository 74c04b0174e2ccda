"""Video nodes: Load Video (VP2P), Save Video (VP2P), Side By Side (VP2P). Frames are an IMAGE
batch [F,H,W,3]; files and core's VIDEO type are handled by vp2p_host.video."""
from __future__ import annotations

from ..vp2p_host import compat
from ..vp2p_host import video as video_host
from ._common import named

LOAD = "Load Video (VP2P)"
SAVE = "Save Video (VP2P)"
SBS = "Side By Side (VP2P)"


class VP2PLoadVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": (video_host.input_videos(), {compat.VIDEO_UPLOAD: True, "tooltip":
                "A video file or image folder in ComfyUI's input folder (the upload button puts a file there)."}),
            "path": ("STRING", {"default": "", "tooltip": "Or a full path to a video file / image folder (wins if set)."}),
            "frame_start": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "First frame to load (0 = the first)."}),
            "frame_count": ("INT", {"default": 8, "min": 0, "max": 10000, "tooltip":
                "Frames to load (0 = all). Video-P2P's reference uses 8."}),
            "stride": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Take every n-th frame."}),
            "width": ("INT", {"default": 512, "min": 0, "max": 8192, "step": 8, "tooltip": "0 = keep the aspect ratio."}),
            "height": ("INT", {"default": 512, "min": 0, "max": 8192, "step": 8, "tooltip": "0 = keep the aspect ratio."}),
            "multiple_of": ([8, 64], {"tooltip": "Sizes are rounded down to this multiple (8 = one latent pixel)."}),
            "resize_mode": (["crop", "stretch"], {"tooltip": "crop keeps the aspect ratio (centre crop)."}),
        }, "optional": {
            "video_input": ("VIDEO", {"tooltip": "A core VIDEO (Load Video, Create Video, ...): wins over video and "
                                                 "path; the frame and size controls still apply."}),
        }}

    RETURN_TYPES = ("IMAGE", "FLOAT", "INT", "AUDIO")
    RETURN_NAMES = ("frames", "fps", "frame_count", "audio")
    OUTPUT_TOOLTIPS = ("One image per frame.", "Frames per second of the loaded frames (the file's / stride).",
                       "Number of frames loaded.",
                       "The sound of the loaded frames' time span (None if the video has none).")
    FUNCTION = "load"
    CATEGORY = "video-p2p/video"
    DESCRIPTION = "Load a video file, image folder or VIDEO as an IMAGE batch (one image per frame), with its fps and audio."

    @named(LOAD)
    def load(self, video, path, frame_start, frame_count, stride, width, height, multiple_of, resize_mode,
             video_input=None):
        return video_host.load_video(video, path, frame_start, frame_count, stride, width, height, multiple_of,
                                     resize_mode, video_input)

    @classmethod
    def IS_CHANGED(cls, video, path, **kw):
        return video_host.file_mtime(video, path)


class VP2PSaveVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames to save, in order."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 240.0, "step": 0.5, "tooltip": "Frames per second (e.g. Load Video's fps)."}),
            "filename_prefix": ("STRING", {"default": "video_p2p/edit", "tooltip": "Saved as output/<prefix>_NNNNN_.<format>."}),
            "format": (["mp4", "gif", "webp"], {"tooltip":
                "mp4: H.264 (yuv420p) with the audio and the workflow embedded, plays in browsers and the editor; "
                "gif/webp: animated images (no audio)."}),
        }, "optional": {
            "audio": ("AUDIO", {"tooltip": "Sound to put in the mp4 (e.g. Load Video's audio), cut to the video's length."}),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ("STRING", "VIDEO")
    RETURN_NAMES = ("path", "video")
    OUTPUT_TOOLTIPS = ("Full path of the saved file.", "The saved video as core's VIDEO (for Save Video, "
                                                        "Get Video Components, ...).")
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "video-p2p/video"
    DESCRIPTION = "Save frames (and audio) as a video under ComfyUI's output folder, previewed in the editor."

    @named(SAVE)
    def save(self, images, fps, filename_prefix, format, audio=None, prompt=None, extra_pnginfo=None):
        ui, path, video = video_host.save_video(images, fps, filename_prefix, format, audio, prompt, extra_pnginfo)
        return {"ui": ui, "result": (path, video)}


class VP2PSideBySide:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("IMAGE", {"tooltip": "First video (frames)."}), "labels": ("STRING", {"default": "source, reconstruction, edit",
                                                                     "tooltip": "Comma-separated panel labels."})},
                "optional": {"b": ("IMAGE", {"tooltip": "Second video."}), "c": ("IMAGE", {"tooltip": "Third video."}),
                             "d": ("IMAGE", {"tooltip": "Fourth video."})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "combine"
    CATEGORY = "video-p2p/video"
    DESCRIPTION = "Put up to four videos side by side (same frame count), e.g. source | reconstruction | edit."

    @named(SBS)
    def combine(self, a, labels, b=None, c=None, d=None):
        return (video_host.side_by_side(a, labels, b, c, d),)
