"""Host layer: what differs between the ComfyUI versions the pack supports (>= 0.3.52), in one
place. The host's video code (vp2p_host.video) takes core's video types from here; nothing else
tests versions. Like the nodes, it reads the versioned API pinned at `comfy_api.v0_0_2`.

Measured differences that matter to the pack (0.3.52 against 0.3.75):
- core's VIDEO from a file (`VideoFromFile`) exposes its file through `get_stream_source()`
  only since 0.3.6x; 0.3.52 keeps it private. `video_file_source` hides that, so the pack's
  loader can decode just the frames it needs instead of every frame of a long clip.
- core's `VideoFromComponents.save_to` in 0.3.52 writes only the first audio channel; the pack
  therefore writes its mp4 itself (vp2p_host/video_io.py, the same PyAV on every version).
Identical on both (and used as is): `comfy_api.v0_0_2.InputImpl` / `Types`, `VideoComponents`
(images, frame_rate, audio, metadata), the `video_upload` combo option, the
`{"images": [...], "animated": (True,)}` preview that core's SaveVideo returns (for videos), and
`args.disable_metadata`.
"""
from __future__ import annotations

import io

from comfy.cli_args import args
from comfy_api.v0_0_2 import InputImpl, Types

VideoFromFile = InputImpl.VideoFromFile
VideoFromComponents = InputImpl.VideoFromComponents
VideoComponents = Types.VideoComponents


def video_file_source(video):
    """The file (path or BytesIO, rewound) behind a core VIDEO read from a file, else None."""
    if not isinstance(video, VideoFromFile):
        return None
    getter = getattr(video, "get_stream_source", None)
    if getter is not None:                        # ComfyUI >= 0.3.6x
        return getter()
    src = getattr(video, "_VideoFromFile__file", None)   # 0.3.52: the private attribute
    if isinstance(src, io.BytesIO):
        src.seek(0)
    return src


def metadata_enabled() -> bool:
    """False when ComfyUI runs with --disable-metadata (then no workflow is embedded)."""
    return not getattr(args, "disable_metadata", False)


def preview_ui(files):
    """UI output that the editor shows as a preview: [(filename, subfolder)]. Only videos are
    flagged `animated`: the editor plays flagged files in a <video> element, which cannot play
    a gif or an animated webp (an <img> animates them)."""
    ui = {"images": [{"filename": f, "subfolder": s, "type": "output"} for f, s in files]}
    if all(f.lower().endswith((".mp4", ".webm", ".mov")) for f, _ in files):
        ui["animated"] = (True,)
    return ui
