"""Host layer: video files with PyAV (the `av` package ComfyUI itself ships), frames as ComfyUI
IMAGE batches [F,H,W,3] in 0..1 and audio as ComfyUI AUDIO ({"waveform": [1,C,S], "sample_rate"}).

Reading decodes only the frames asked for (start, stride, count) and the audio of the same
time span; writing produces what browsers and core's SaveVideo produce: H.264 in yuv420p with
AAC audio and the workflow as mp4 metadata tags."""
from __future__ import annotations

import json
import math
import os
import re
from fractions import Fraction

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ANIMATED_EXT = (".gif", ".webp")     # read with Pillow (FFmpeg does not decode animated webp)
FOLDER_FPS = 8.0


class VideoReadError(ValueError):
    """The file cannot be read as asked; the message says why (the node adds its name)."""


def natural_key(name):
    """Sort key that orders frame files as numbers do (2 before 10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def image_files(folder):
    return sorted((f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXT)), key=natural_key)


def _frames_tensor(frames_u8):
    return torch.from_numpy(np.stack(frames_u8)).float().div_(255.0)


def _check_sizes(frames, where):
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise VideoReadError(f"the frames of {where} have different sizes {sorted(sizes)}; "
                             "set width and height to resize them.")


def read_folder(folder, start=0, count=0, stride=1):
    """(IMAGE [F,H,W,3], fps) from an image folder in natural file order."""
    files = image_files(folder)
    if not files:
        raise VideoReadError(f"the folder '{folder}' has no images ({', '.join(IMAGE_EXT)}).")
    chosen = files[start::stride][:count or None]
    if not chosen:
        raise VideoReadError(f"no frames in the range: frame_start {start} is past the end of "
                             f"'{os.path.basename(folder)}' ({len(files)} images).")
    frames = []
    for f in chosen:
        try:
            with Image.open(os.path.join(folder, f)) as img:
                frames.append(np.asarray(img.convert("RGB")))
        except OSError as e:
            raise VideoReadError(f"cannot read the image '{f}' in '{folder}' ({e}).") from None
    _check_sizes(frames, f"'{folder}'")
    return _frames_tensor(frames), FOLDER_FPS / stride


def read_animated(path, start=0, count=0, stride=1):
    """(IMAGE [F,H,W,3], fps) from an animated gif / webp (the timing of its first frame)."""
    frames, i, ms = [], 0, None
    try:
        with Image.open(path) as img:
            n = getattr(img, "n_frames", 1)
            for i in range(start, n, stride):
                img.seek(i)
                ms = ms or img.info.get("duration")
                frames.append(np.asarray(img.convert("RGB")))
                if count and len(frames) >= count:
                    break
    except OSError as e:
        raise VideoReadError(f"cannot read it as an animated image ({e}).") from None
    if not frames:
        raise VideoReadError(f"no frames in the range: frame_start {start} is past the end ({n} frames).")
    fps = 1000.0 / ms if ms else FOLDER_FPS
    return _frames_tensor(frames), fps / stride


def _audio_planar(stream_frames, layout_channels):
    """Decoded audio frames -> float32 [C,S] (any sample format, planar or packed)."""
    chunks = []
    for fr in stream_frames:
        a = fr.to_ndarray()
        if a.dtype.kind == "i":
            a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
        elif a.dtype.kind == "u":
            a = (a.astype(np.float32) - 128.0) / 128.0
        if not fr.format.is_planar:                 # packed: [1, S*C] interleaved
            a = a.reshape(-1, layout_channels).T
        chunks.append(a.astype(np.float32))
    return np.concatenate(chunks, axis=1) if chunks else None


def read_file(source, start=0, count=0, stride=1, with_audio=True):
    """(IMAGE [F,H,W,3], fps of the result, AUDIO or None) from a video file (path or file
    object). Only the requested frames are converted; fps is the file's divided by stride and
    the audio covers the same time span, so frames and sound stay in sync."""
    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoReadError(f"cannot open it as a video ({e.__class__.__name__}: {e}); the file is corrupt "
                             "or not a video.") from None
    with container:
        if not container.streams.video:
            raise VideoReadError("the file has no video stream.")
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else FOLDER_FPS
        frames, i = [], 0
        try:
            for frame in container.decode(vs):
                if i >= start and (i - start) % stride == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if count and len(frames) >= count:
                        break
                i += 1
        except av.error.FFmpegError as e:
            if not frames:
                raise VideoReadError(f"cannot decode its frames ({e}).") from None
        if not frames:
            if i == 0:
                raise VideoReadError("it has no readable frames (corrupt or empty video).")
            raise VideoReadError(f"no frames in the range: frame_start {start} is past the end ({i} frames).")
        _check_sizes(frames, "the video")
        audio = None
        if with_audio and container.streams.audio:
            aus = container.streams.audio[0]
            container.seek(0)
            try:
                wave = _audio_planar(container.decode(aus), aus.channels or 1)
            except av.error.FFmpegError:
                wave = None
            if wave is not None and wave.shape[1] > 0:
                sr = int(aus.sample_rate or aus.rate)
                t0 = start / fps
                t1 = (start + len(frames) * stride) / fps
                wave = wave[:, int(round(t0 * sr)):int(round(t1 * sr))]
                if wave.shape[1] > 0:
                    audio = {"waveform": torch.from_numpy(np.ascontiguousarray(wave))[None], "sample_rate": sr}
    return _frames_tensor(frames), fps / stride, audio


def select_frames(images, start=0, count=0, stride=1):
    """The start/stride/count selection on an IMAGE batch that is already decoded."""
    n = images.shape[0]
    if start >= n:
        raise VideoReadError(f"no frames in the range: frame_start {start} is past the end ({n} frames).")
    idx = list(range(start, n, stride))[:count or None]
    return images[idx]


def slice_audio(audio, fps, start, frames, stride):
    """The part of an AUDIO that plays with the selected frames (fps of the source)."""
    if audio is None or fps <= 0:
        return audio
    sr = int(audio["sample_rate"])
    a, b = int(round(start / fps * sr)), int(round((start + frames * stride) / fps * sr))
    wave = audio["waveform"][..., a:b]
    return {"waveform": wave, "sample_rate": sr} if wave.shape[-1] > 0 else None


def resize(images, width, height, multiple, mode):
    """Resize an IMAGE batch to (width, height) (0 keeps the aspect ratio), each rounded down
    to `multiple`; crop = scale to cover then centre-crop, stretch = scale to fit exactly.
    Antialiased bilinear (area-like when shrinking)."""
    h0, w0 = images.shape[1:3]
    w = width or (w0 if not height else round(w0 * height / h0))
    h = height or (h0 if not width else round(h0 * width / w0))
    w, h = max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)
    if (w, h) == (w0, h0):
        return images
    x = images.movedim(-1, 1)
    if mode == "crop":
        s = max(w / w0, h / h0)
        sw, sh = max(w, round(w0 * s)), max(h, round(h0 * s))
        x = F.interpolate(x, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
        y0, x0 = (sh - h) // 2, (sw - w) // 2
        x = x[:, :, y0:y0 + h, x0:x0 + w]
    else:
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0, 1).movedim(1, -1).contiguous()


def to_uint8(images):
    return np.ascontiguousarray((images[..., :3].float().clamp(0, 1) * 255).round().byte().cpu().numpy())


def frame_rate(fps) -> Fraction:
    return Fraction(round(float(fps) * 1000), 1000)


def write_mp4(path, images, fps, audio=None, metadata=None, crf=18):
    """H.264 (yuv420p, browser-playable) mp4 with optional AAC audio (mono or stereo, cut to
    the video's length) and metadata tags (values JSON-encoded, as core's SaveVideo does).
    Odd sizes are padded by one edge pixel (yuv420p needs even sizes)."""
    frames = to_uint8(images)
    n, h, w = frames.shape[:3]
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    rate = frame_rate(fps)
    with av.open(path, mode="w", options={"movflags": "use_metadata_tags"}) as out:
        for key, value in (metadata or {}).items():
            out.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w + pw, h + ph, "yuv420p"
        vs.options = {"crf": str(crf)}
        aus = None
        if audio is not None:
            wave = audio["waveform"]
            wave = wave[0] if wave.ndim == 3 else wave          # [C,S]
            wave = wave[:2].float().cpu()
            sr = int(audio["sample_rate"])
            wave = wave[:, :math.ceil(sr * n / float(rate))]
            if wave.shape[1] > 0:
                aus = out.add_stream("aac", rate=sr)
                aus.layout = "stereo" if wave.shape[0] == 2 else "mono"
        for f in frames:
            out.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")))
        out.mux(vs.encode(None))
        if aus is not None:
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave.numpy()), format="fltp", layout=aus.layout.name)
            af.sample_rate, af.pts = sr, 0
            out.mux(aus.encode(af))
            out.mux(aus.encode(None))


def write_animated(path, images, fps, fmt):
    """Animated gif or lossless webp (both preview in the editor as images)."""
    imgs = [Image.fromarray(f) for f in to_uint8(images)]
    kw = {"lossless": True} if fmt == "webp" else {}
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=max(1, round(1000 / fps)), loop=0, **kw)
