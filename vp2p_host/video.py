"""Video in and out for the video nodes: frames are an IMAGE batch [F,H,W,3] in 0..1 (the
convention of ComfyUI and VideoHelperSuite), files go through PyAV (video_io) and core's VIDEO
type (compat), so core's Load Video, Get Video Components, Create Video and Save Video connect
both ways."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

import folder_paths

from . import compat, store, video_io
from .checks import fail

SAVE_DEFAULT = "video_p2p/edit"     # Save Video's prefix, also when the widget is left empty
VIDEO_EXT = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v")
IMAGE_EXT = video_io.IMAGE_EXT
natural_key = video_io.natural_key
to_uint8 = video_io.to_uint8


def input_videos():
    """'(none)' (use the path or video_input), then videos and image folders in ComfyUI's input
    folder; folders without frames (such as core's input/3d) are not offered."""
    d = folder_paths.get_input_directory()
    found = []
    if os.path.isdir(d):
        for f in os.listdir(d):
            full = os.path.join(d, f)
            if f.lower().endswith(VIDEO_EXT) or (os.path.isdir(full) and video_io.image_files(full)):
                found.append(f)
    return ["(none)"] + sorted(found, key=natural_key)


def _resolve(video, path):
    p = (path or "").strip()
    if not p:
        if not video or video == "(none)":
            fail("choose or upload a video (video), give a path, or connect a VIDEO to video_input.")
        p = folder_paths.get_annotated_filepath(video)
    if not os.path.exists(p):
        fail(f"'{p}' does not exist: check the path (videos are looked up in ComfyUI's input folder).")
    return p


def to_image(frames_u8):
    return torch.from_numpy(np.asarray(frames_u8).astype(np.float32) / 255.0)


def clip_files(folder):
    """The clips of a folder in natural order: video files and folders of frames."""
    found = []
    for f in os.listdir(folder):
        full = os.path.join(folder, f)
        if (os.path.isfile(full) and f.lower().endswith(VIDEO_EXT)) or (os.path.isdir(full) and
                                                                       video_io.image_files(full)):
            found.append(f)
    return sorted(found, key=natural_key)


def pick_clip(clip_folder, clip_index):
    """The path of clip number `clip_index` of a folder (relative to ComfyUI's input folder, or a
    full path): what Load Video reads when clip_folder is set, so "Queue N" with the index
    incrementing edits N clips."""
    f = clip_folder.strip()
    folder = f if os.path.isabs(f) else os.path.join(folder_paths.get_input_directory(), f)
    if not os.path.isdir(folder):
        fail(f"clip_folder '{f}' is not a folder: give a folder of clips, relative to ComfyUI's input folder "
             "or a full path (or leave it empty to load video / path).")
    clips = clip_files(folder)
    if not clips:
        fail(f"clip_folder '{f}' has no clips (video files {', '.join(VIDEO_EXT)} or folders of images).")
    if not 0 <= int(clip_index) < len(clips):
        fail(f"clip_index {clip_index} is past the last clip of '{f}' ({len(clips)} clips, index 0 to "
             f"{len(clips) - 1}): set clip_index back to 0 (Queue {len(clips)} with 'increment' edits each "
             "clip once).")
    return os.path.join(folder, clips[int(clip_index)])


def load_frames(video, path, frame_start, frame_count, stride, video_input=None, size=None, clip_folder="",
                clip_index=0):
    """(IMAGE, fps, AUDIO or None) of the chosen frames, from a VIDEO, a folder of clips, a path
    or an input file; size = (width, height, multiple, mode) resizes each frame as it is read."""
    what = "the VIDEO input" if video_input is not None else None
    try:
        if video_input is not None:
            src = compat.video_file_source(video_input)
            if src is not None:                     # core Load Video: decode only what is needed
                return video_io.read_file(src, frame_start, frame_count, stride, size=size)
            comp = video_input.get_components()     # any other VIDEO (e.g. core Create Video): in memory
            fps = float(comp.frame_rate) or video_io.FOLDER_FPS
            images = video_io.select_frames(comp.images, frame_start, frame_count, stride)
            audio = video_io.slice_audio(comp.audio, fps, frame_start, images.shape[0], stride)
            if size is not None:
                images = video_io.resize(images, *size)
            return images, fps / stride, audio
        p = pick_clip(clip_folder, clip_index) if (clip_folder or "").strip() else _resolve(video, path)
        what = f"'{os.path.basename(p)}'"
        if os.path.isdir(p):
            images, fps = video_io.read_folder(p, frame_start, frame_count, stride, size=size)
            return images, fps, None
        if p.lower().endswith(video_io.ANIMATED_EXT):
            images, fps = video_io.read_animated(p, frame_start, frame_count, stride, size=size)
            return images, fps, None
        return video_io.read_file(p, frame_start, frame_count, stride, size=size)
    except video_io.VideoReadError as e:
        fail(f"{what}: {e}")


def file_mtime(video, path, clip_folder="", clip_index=0):
    """Changes when the chosen file does (ComfyUI re-runs the loader then)."""
    from .checks import InputError
    p = (path or "").strip()
    if (clip_folder or "").strip():
        try:
            p = pick_clip(clip_folder, clip_index)
        except InputError:
            return ""
    elif not p and video and video != "(none)":
        p = folder_paths.get_annotated_filepath(video)
    return f"{p}:{os.path.getmtime(p)}" if p and os.path.exists(p) else ""


def load_video(video, path, frame_start, frame_count, stride, width, height, multiple_of, resize_mode,
               video_input=None, clip_folder="", clip_index=0):
    """-> (IMAGE, fps, frame count, AUDIO or None)."""
    images, fps, audio = load_frames(video, path, frame_start, frame_count, stride, video_input,
                                     (width, height, int(multiple_of), resize_mode), clip_folder, clip_index)
    return images, float(fps), int(images.shape[0]), audio


def save_video(images, fps, filename_prefix, format, audio=None, prompt=None, extra_pnginfo=None):
    """Write the frames; -> (ui preview dict, path, VIDEO)."""
    if images.ndim != 4 or images.shape[0] == 0:
        fail("got no frames to save: connect an IMAGE batch with at least one frame.")
    out_dir = folder_paths.get_output_directory()
    prefix = store.output_prefix(filename_prefix, SAVE_DEFAULT)
    full, name, counter, sub, _ = folder_paths.get_save_image_path(prefix, out_dir, images.shape[2],
                                                                    images.shape[1])
    path = os.path.join(full, f"{name}_{counter:05}_.{format}")
    if format == "mp4":
        meta = None
        if compat.metadata_enabled():
            meta = dict(extra_pnginfo or {})
            if prompt is not None:
                meta["prompt"] = prompt
        try:
            video_io.write_mp4(path, images, fps, audio, meta)
        except Exception as e:                  # encoder missing or refusing the frames
            fail(f"could not write H.264 mp4 ({e.__class__.__name__}: {e}); choose gif or webp.")
        video = compat.VideoFromFile(path)
    else:
        video_io.write_animated(path, images, fps, format)
        video = compat.VideoFromComponents(compat.VideoComponents(
            images=images[..., :3], frame_rate=video_io.frame_rate(fps), audio=audio))
    return compat.preview_ui([(os.path.basename(path), sub)]), path, video


_FONT_CACHE = {}


def _font(px):
    if px not in _FONT_CACHE:
        try:
            _FONT_CACHE[px] = ImageFont.load_default(size=px)
        except TypeError:                           # Pillow < 10.1: one bitmap size
            _FONT_CACHE[px] = ImageFont.load_default()
    return _FONT_CACHE[px]


def side_by_side(a, labels, b=None, c=None, d=None):
    """Up to four videos side by side (same frame count), labelled."""
    vids = [(n, v) for n, v in (("a", a), ("b", b), ("c", c), ("d", d)) if v is not None]
    counts = {n: v.shape[0] for n, v in vids}
    if len(set(counts.values())) > 1:
        fail(f"the videos have different frame counts {counts}: load the same frames for each.")
    h = a.shape[1]
    names = [s.strip() for s in labels.split(",")] if labels.strip() else []
    panels = []
    for i, (_, v) in enumerate(vids):
        v = v[..., :3].float()
        if v.shape[1] != h:
            w = round(v.shape[2] * h / v.shape[1])
            v = F.interpolate(v.movedim(-1, 1), size=(h, w), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1).movedim(1, -1)
        f = to_uint8(v)
        if i < len(names) and names[i]:
            px = max(8, round(11 * max(0.25, h / 256)))
            for j, x in enumerate(f):
                img = Image.fromarray(x)
                ImageDraw.Draw(img).text((3, 2), names[i], fill=(255, 255, 255), font=_font(px))
                f[j] = np.asarray(img)
        panels.append(f)
    return to_image(np.concatenate(panels, axis=2))
