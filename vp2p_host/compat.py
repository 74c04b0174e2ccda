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
- core's context windows (comfy/context_windows.py, identical in 0.3.52 and 0.3.75): its
  `set_step` compares the whole timestep with the sampler's sigmas, so the pack's per-frame
  timestep vector fails with "The size of tensor a (51) must match the size of tensor b (16)",
  and a sigma outside the sampler's list (inversion's and tuning's evaluations) with "No
  sample_sigmas matched current timestep". `set_context_step` takes the step from the nearest
  sigma of the schedule instead; the other helpers name the handler API the pack relies on.
"""
from __future__ import annotations

import io

import torch

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


# --------------------------------------------------------------------------- context windows
def set_context_step(handler, timestep, model_options):
    """The context handler's step (its uniform schedules shift windows by it) from the first
    entry of `timestep`: the nearest sigma of the run's schedule (core's own set_step raises for
    a per-frame timestep vector and for sigmas outside the sampler's list)."""
    sigmas = (model_options.get("transformer_options") or {}).get("sample_sigmas")
    t = torch.as_tensor(timestep).reshape(-1)[0]
    step = 0
    if sigmas is not None and len(sigmas):
        step = int(torch.argmin((sigmas.to(t) - t).abs()))
    handler._step = step


def context_window(index_list):
    """core's window object for a list of global frame indices (frames are dim 0)."""
    import comfy.context_windows
    return comfy.context_windows.IndexListContextWindow(list(index_list), dim=0)


def fuse_is_relative(handler) -> bool:
    """The relative fuse method normalises as it goes (no division by counts at the end)."""
    import comfy.context_windows
    return getattr(handler.fuse_method, "name", None) == comfy.context_windows.ContextFuseMethods.RELATIVE


def run_callbacks(handler, name, *args):
    """core's IndexListCallbacks of `name` registered on the handler."""
    import comfy.patcher_extension
    for cb in comfy.patcher_extension.get_all_callbacks(name, getattr(handler, "callbacks", {}) or {}):
        cb(*args)


def throw_if_interrupted():
    import comfy.model_management
    comfy.model_management.throw_exception_if_processing_interrupted()
