"""Video in/out with opencv: frames are an IMAGE batch [F,H,W,3] in 0..1 (the convention of
ComfyUI and VideoHelperSuite, so either pack's nodes plug in)."""
from __future__ import annotations

import os
import re

import cv2
import numpy as np
import torch
from PIL import Image

import folder_paths

from .unet_runner import fail

LOAD_NODE = "Load Video (VP2P)"
SAVE_NODE = "Save Video (VP2P)"
SBS_NODE = "Side By Side (VP2P)"
VIDEO_EXT = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def natural_key(name):
    """Sort key that orders frame files as numbers do (2 before 10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _image_files(folder):
    return sorted((f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXT)), key=natural_key)


def _input_videos():
    """'(none)' (use the path input), then videos and image folders in ComfyUI's input folder;
    folders without frames (such as core's input/3d) are not offered."""
    d = folder_paths.get_input_directory()
    found = []
    if os.path.isdir(d):
        for f in os.listdir(d):
            full = os.path.join(d, f)
            if f.lower().endswith(VIDEO_EXT) or (os.path.isdir(full) and _image_files(full)):
                found.append(f)
    return ["(none)"] + sorted(found, key=natural_key)


def _resolve(video, path):
    p = (path or "").strip()
    if not p:
        if not video or video == "(none)":
            fail(LOAD_NODE, "choose a video from ComfyUI's input folder or give a path.")
        p = os.path.join(folder_paths.get_input_directory(), video)
    if not os.path.exists(p):
        fail(LOAD_NODE, f"'{p}' does not exist: check the path (videos are looked up in ComfyUI's input folder).")
    return p


def read_frames(path, start=0, count=0, stride=1):
    """uint8 RGB frames [F,H,W,3] and fps from a video file or an image folder."""
    if os.path.isdir(path):
        files = _image_files(path)
        if not files:
            fail(LOAD_NODE, f"the folder '{path}' has no images ({', '.join(IMAGE_EXT)}).")
        frames = []
        for f in files[start::stride][:count or None]:
            img = cv2.imread(os.path.join(path, f), cv2.IMREAD_COLOR)
            if img is None:
                fail(LOAD_NODE, f"cannot read the image '{f}' in '{path}' (corrupt or unsupported).")
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        fps = 8.0
    else:
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            fail(LOAD_NODE, f"cannot open '{path}' as a video (corrupt file or unsupported codec).")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 8.0
        frames, i = [], 0
        try:
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                if i >= start and (i - start) % stride == 0:
                    frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
                    if count and len(frames) >= count:
                        break
                i += 1
        finally:
            cap.release()
        if not frames and i == 0:
            fail(LOAD_NODE, f"'{path}' has no readable frames (corrupt or empty video).")
    if not frames:
        fail(LOAD_NODE, f"no frames in the range: frame_start {start} is past the end of '{os.path.basename(path)}'.")
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        fail(LOAD_NODE, f"the frames have different sizes {sorted(sizes)}; set width and height to resize them.")
    return np.stack(frames), fps / stride


def resize_frames(frames, width, height, multiple, mode):
    """Resize to (width, height) (0 keeps the source side), then round down to `multiple`."""
    h0, w0 = frames.shape[1:3]
    w = width or (w0 if not height else round(w0 * height / h0))
    h = height or (h0 if not width else round(h0 * width / w0))
    w, h = max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)
    if (w, h) == (w0, h0):
        return frames
    out = []
    for f in frames:
        if mode == "crop":
            s = max(w / w0, h / h0)
            r = cv2.resize(f, (max(w, round(w0 * s)), max(h, round(h0 * s))), interpolation=cv2.INTER_AREA)
            y, x = (r.shape[0] - h) // 2, (r.shape[1] - w) // 2
            out.append(r[y:y + h, x:x + w])
        else:
            out.append(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def to_image(frames_u8):
    return torch.from_numpy(frames_u8.astype(np.float32) / 255.0)


def to_uint8(images):
    return np.ascontiguousarray((images[..., :3].float().clamp(0, 1) * 255).round().byte().cpu().numpy())


class VP2PLoadVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": (_input_videos(), {"tooltip": "A video file or image folder in ComfyUI's input folder."}),
            "path": ("STRING", {"default": "", "tooltip": "Or a full path to a video file / image folder (wins if set)."}),
            "frame_start": ("INT", {"default": 0, "min": 0, "max": 100000}),
            "frame_count": ("INT", {"default": 8, "min": 0, "max": 10000, "tooltip":
                "Frames to load (0 = all). Video-P2P's reference uses 8."}),
            "stride": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Take every n-th frame."}),
            "width": ("INT", {"default": 512, "min": 0, "max": 8192, "step": 8, "tooltip": "0 = keep the aspect ratio."}),
            "height": ("INT", {"default": 512, "min": 0, "max": 8192, "step": 8, "tooltip": "0 = keep the aspect ratio."}),
            "multiple_of": ([8, 64], {"tooltip": "Sizes are rounded down to this multiple (8 = one latent pixel)."}),
            "resize_mode": (["crop", "stretch"], {"tooltip": "crop keeps the aspect ratio (centre crop)."}),
        }}

    RETURN_TYPES = ("IMAGE", "FLOAT", "INT")
    RETURN_NAMES = ("frames", "fps", "frame_count")
    FUNCTION = "load"
    CATEGORY = "video-p2p/video"
    DESCRIPTION = "Load a video file or image folder as an IMAGE batch (one image per frame)."

    def load(self, video, path, frame_start, frame_count, stride, width, height, multiple_of, resize_mode):
        frames, fps = read_frames(_resolve(video, path), frame_start, frame_count, stride)
        frames = resize_frames(frames, width, height, int(multiple_of), resize_mode)
        return (to_image(frames), fps, int(frames.shape[0]))

    @classmethod
    def IS_CHANGED(cls, video, path, **kw):
        p = (path or "").strip() or os.path.join(folder_paths.get_input_directory(), video or "")
        return os.path.getmtime(p) if os.path.exists(p) else ""


def write_video(frames_u8, path, fps, fmt):
    if fmt == "mp4":
        h, w = frames_u8.shape[1:3]
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            fail(SAVE_NODE, "opencv cannot write mp4 here; choose gif or webp.")
        try:
            for f in frames_u8:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    else:
        imgs = [Image.fromarray(f) for f in frames_u8]
        kw = {"lossless": True} if fmt == "webp" else {}
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=max(1, round(1000 / fps)), loop=0, **kw)


class VP2PSaveVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames to save, in order."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 0.1, "max": 240.0, "step": 0.5}),
            "filename_prefix": ("STRING", {"default": "video_p2p/edit"}),
            "format": (["mp4", "gif", "webp"], {"tooltip": "mp4 (mp4v) for players; gif/webp also preview in the UI."}),
        }}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "video-p2p/video"
    DESCRIPTION = "Save frames as a video under ComfyUI's output folder (with an animated preview)."

    def save(self, images, fps, filename_prefix, format):
        if images.ndim != 4 or images.shape[0] == 0:
            fail(SAVE_NODE, "got no frames to save.")
        frames = to_uint8(images)
        out_dir = folder_paths.get_output_directory()
        full, name, counter, sub, _ = folder_paths.get_save_image_path(filename_prefix, out_dir, frames.shape[2],
                                                                        frames.shape[1])
        base = f"{name}_{counter:05}_"
        path = os.path.join(full, f"{base}.{format}")
        write_video(frames, path, fps, format)
        preview = path if format != "mp4" else os.path.join(full, f"{base}.webp")
        if format == "mp4":                     # the stock frontend previews images, not mp4
            write_video(frames, preview, fps, "webp")
        ui = {"images": [{"filename": os.path.basename(preview), "subfolder": sub, "type": "output"}],
              "animated": (True,)}
        return {"ui": ui, "result": (path,)}


class VP2PSideBySide:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("IMAGE",), "labels": ("STRING", {"default": "source, reconstruction, edit",
                                                                     "tooltip": "Comma-separated panel labels."})},
                "optional": {"b": ("IMAGE",), "c": ("IMAGE",), "d": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "combine"
    CATEGORY = "video-p2p/video"
    DESCRIPTION = "Put up to four videos side by side (same frame count), e.g. source | reconstruction | edit."

    def combine(self, a, labels, b=None, c=None, d=None):
        vids = [(n, v) for n, v in (("a", a), ("b", b), ("c", c), ("d", d)) if v is not None]
        counts = {n: v.shape[0] for n, v in vids}
        if len(set(counts.values())) > 1:
            fail(SBS_NODE, f"the videos have different frame counts {counts}: load the same frames for each.")
        h = a.shape[1]
        names = [s.strip() for s in labels.split(",")] if labels.strip() else []
        panels = []
        for i, (_, v) in enumerate(vids):
            f = to_uint8(v)
            if f.shape[1] != h:
                f = np.stack([cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h), interpolation=cv2.INTER_AREA)
                              for x in f])
            if i < len(names) and names[i]:
                scale = max(0.25, h / 256)
                for x in f:
                    cv2.putText(x, names[i], (3, int(12 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale,
                                (255, 255, 255), 1, cv2.LINE_AA)
            panels.append(f)
        return (to_image(np.concatenate(panels, axis=2).copy()),)


NODE_CLASS_MAPPINGS = {"VP2PLoadVideo": VP2PLoadVideo, "VP2PSaveVideo": VP2PSaveVideo, "VP2PSideBySide": VP2PSideBySide}
NODE_DISPLAY_NAME_MAPPINGS = {"VP2PLoadVideo": LOAD_NODE, "VP2PSaveVideo": SAVE_NODE, "VP2PSideBySide": SBS_NODE}
