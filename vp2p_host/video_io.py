"""Host layer: video files with PyAV (the `av` package ComfyUI itself ships), frames as ComfyUI
IMAGE batches [F,H,W,3] in 0..1 and audio as ComfyUI AUDIO ({"waveform": [1,C,S], "sample_rate"}).

Reading decodes only the frames asked for (start, stride, count) and the audio of the same
time span, resizing each frame as it is decoded into one preallocated batch (FrameSink), so
memory follows the output frames, not the source's resolution or length. Writing produces what
browsers and core's SaveVideo produce: H.264 in yuv420p with AAC audio and the workflow as mp4
metadata tags."""
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


class FrameSink:
    """The kept frames of a source, each resized (and cropped) as it is decoded and written into
    one preallocated IMAGE batch, so memory follows the output, not the source's size or length.

    size = (width, height, multiple, mode) as `resize` takes them, or None to keep the source
    size; `expected` = the number of frames the reader expects to keep (0 if unknown): with it the
    batch is allocated once and returned without a copy."""

    GROW = 16                                   # frames per block when the count is unknown

    def __init__(self, size=None, expected=0, where="the video"):
        self.size, self.expected, self.where = size, int(expected), where
        self.blocks, self.n, self.fill, self.src_hw = [], 0, 0, None

    def _room(self, frame):
        if self.blocks and self.fill < self.blocks[-1].shape[0]:
            return
        cap = self.expected - self.n if self.expected > self.n else self.GROW
        self.blocks.append(torch.empty((cap,) + tuple(frame.shape[1:]), dtype=torch.float32))
        self.fill = 0

    def add(self, frame_u8):
        """One kept frame, uint8 [H,W,3]."""
        hw = tuple(frame_u8.shape[:2])
        exact = self.size is not None and self.size[0] and self.size[1]   # every frame to (width, height)
        if self.src_hw is not None and hw != self.src_hw and not exact:
            raise VideoReadError(f"the frames of {self.where} have different sizes {sorted({self.src_hw, hw})}; "
                                 "set width and height to resize them.")
        self.src_hw = self.src_hw or hw
        if not frame_u8.flags.writeable:        # Pillow's arrays are read-only
            frame_u8 = frame_u8.copy()
        x = torch.from_numpy(np.ascontiguousarray(frame_u8)).float().div_(255.0)[None]
        if self.size is not None:
            x = resize(x, *self.size)
        self._room(x)
        self.blocks[-1][self.fill] = x[0]
        self.fill += 1
        self.n += 1

    def __len__(self):
        return self.n

    def result(self) -> torch.Tensor:
        if len(self.blocks) == 1:
            out = self.blocks[0][:self.fill]
            # a count estimate far above what the source had: do not keep the unused rows alive
            return out.clone() if self.fill * 2 < self.blocks[0].shape[0] else out
        self.blocks[-1] = self.blocks[-1][:self.fill]
        out = torch.cat(self.blocks)
        self.blocks = []
        return out


def read_folder(folder, start=0, count=0, stride=1, size=None):
    """(IMAGE [F,H,W,3], fps) from an image folder in natural file order."""
    files = image_files(folder)
    if not files:
        raise VideoReadError(f"the folder '{folder}' has no images ({', '.join(IMAGE_EXT)}).")
    chosen = files[start::stride][:count or None]
    if not chosen:
        raise VideoReadError(f"no frames in the range: frame_start {start} is past the end of "
                             f"'{os.path.basename(folder)}' ({len(files)} images).")
    sink = FrameSink(size, len(chosen), f"'{folder}'")
    for f in chosen:
        try:
            with Image.open(os.path.join(folder, f)) as img:
                frame = np.asarray(img.convert("RGB"))
        except OSError as e:
            raise VideoReadError(f"cannot read the image '{f}' in '{folder}' ({e}).") from None
        sink.add(frame)
    return sink.result(), FOLDER_FPS / stride


def read_animated(path, start=0, count=0, stride=1, size=None):
    """(IMAGE [F,H,W,3], fps) from an animated gif / webp (the timing of its first frame)."""
    ms, n = None, 0
    try:
        with Image.open(path) as img:
            n = getattr(img, "n_frames", 1)
            keep = len(range(start, n, stride))
            sink = FrameSink(size, min(count, keep) if count else keep, "the animation")
            for i in range(start, n, stride):
                img.seek(i)
                ms = ms or img.info.get("duration")
                sink.add(np.asarray(img.convert("RGB")))
                if count and len(sink) >= count:
                    break
    except OSError as e:
        raise VideoReadError(f"cannot read it as an animated image ({e}).") from None
    if not len(sink):
        raise VideoReadError(f"no frames in the range: frame_start {start} is past the end ({n} frames).")
    fps = 1000.0 / ms if ms else FOLDER_FPS
    return sink.result(), fps / stride


def _audio_planar(frame, layout_channels):
    """One decoded audio frame -> float32 [C,S] (any sample format, planar or packed)."""
    a = frame.to_ndarray()
    if a.dtype.kind == "i":
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    elif a.dtype.kind == "u":
        a = (a.astype(np.float32) - 128.0) / 128.0
    if not frame.format.is_planar:              # packed: [1, S*C] interleaved
        a = a.reshape(-1, layout_channels).T
    return a.astype(np.float32)


def _audio_span(container, stream, first, stop):
    """Samples [first, stop) of an audio stream (counted from its first decoded sample), decoding
    from the start but keeping only the frames that overlap the span."""
    chunks, seen = [], 0
    for fr in container.decode(stream):
        a = _audio_planar(fr, stream.channels or 1)
        n = a.shape[1]
        if seen + n > first:
            chunks.append(a[:, max(0, first - seen):max(0, stop - seen)])
        seen += n
        if seen >= stop:
            break
    return np.concatenate(chunks, axis=1) if chunks else None


def _expected(vs, fps, start, count, stride):
    """How many frames a read will keep, from the stream's frame count (or its duration); 0 if
    the file does not say."""
    n = int(vs.frames or 0)
    if not n and vs.duration and vs.time_base:
        n = int(float(vs.duration * vs.time_base) * fps)
    avail = len(range(start, n, stride)) if n else 0
    if count:
        return min(count, avail) if avail else min(count, FrameSink.GROW)
    return avail


def read_file(source, start=0, count=0, stride=1, with_audio=True, size=None):
    """(IMAGE [F,H,W,3], fps of the result, AUDIO or None) from a video file (path or file
    object). Only the requested frames are converted (and resized to `size` one at a time); fps is
    the file's divided by stride and the audio covers the same time span, so frames and sound
    stay in sync."""
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
        sink = FrameSink(size, _expected(vs, fps, start, count, stride))
        i = 0
        try:
            for frame in container.decode(vs):
                if i >= start and (i - start) % stride == 0:
                    sink.add(frame.to_ndarray(format="rgb24"))
                    if count and len(sink) >= count:
                        break
                i += 1
        except av.error.FFmpegError as e:
            if not len(sink):
                raise VideoReadError(f"cannot decode its frames ({e}).") from None
        if not len(sink):
            if i == 0:
                raise VideoReadError("it has no readable frames (corrupt or empty video).")
            raise VideoReadError(f"no frames in the range: frame_start {start} is past the end ({i} frames).")
        kept = len(sink)
        audio = None
        if with_audio and container.streams.audio:
            aus = container.streams.audio[0]
            sr = int(aus.sample_rate or aus.rate)
            first = int(round(start / fps * sr))
            stop = int(round((start + kept * stride) / fps * sr))
            container.seek(0)
            try:
                wave = _audio_span(container, aus, first, stop)
            except av.error.FFmpegError:
                wave = None
            if wave is not None and wave.shape[1] > 0:
                audio = {"waveform": torch.from_numpy(np.ascontiguousarray(wave))[None], "sample_rate": sr}
    return sink.result(), fps / stride, audio


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


def output_size(w0, h0, width, height, multiple):
    """(w, h) a (w0, h0) frame is resized to: 0 keeps the aspect ratio, rounded down to `multiple`."""
    w = width or (w0 if not height else round(w0 * height / h0))
    h = height or (h0 if not width else round(h0 * width / w0))
    return max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)


def resize(images, width, height, multiple, mode):
    """Resize an IMAGE batch to (width, height) (0 keeps the aspect ratio), each rounded down
    to `multiple`; crop = scale to cover then centre-crop, stretch = scale to fit exactly.
    Antialiased bilinear (area-like when shrinking)."""
    h0, w0 = images.shape[1:3]
    w, h = output_size(w0, h0, width, height, multiple)
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
