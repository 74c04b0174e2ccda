"""The one artefact store: tunings and inversions as safetensors (tensors + string metadata
with a `format` tag) under ComfyUI's output/video_p2p/ (written) and models/video_p2p/ (read
too). Nothing else is written, and no pickle is ever loaded."""
from __future__ import annotations

import os

import folder_paths

from .checks import fail

SUBDIR = "video_p2p"


def dirs() -> list[str]:
    return [os.path.join(folder_paths.get_output_directory(), SUBDIR),
            os.path.join(folder_paths.models_dir, SUBDIR)]


def read_metadata(path: str) -> dict:
    import safetensors
    with safetensors.safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def _format(path):
    try:
        return read_metadata(path).get("format")
    except Exception:
        return None


def list_files(fmt: str) -> list[str]:
    """Names (relative to the store folders, '/'-separated) of the files of format `fmt`."""
    names = set()
    for d in dirs():
        if not os.path.isdir(d):
            continue
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if f.endswith(".safetensors") and _format(p) == fmt:
                    names.add(os.path.relpath(p, d).replace(os.sep, "/"))
    return sorted(names)


def resolve(name: str) -> str | None:
    """The file a listed name (or an absolute path) stands for; None if there is none."""
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    for d in dirs():
        base = os.path.abspath(d)
        path = os.path.abspath(os.path.join(d, name))
        if os.path.commonpath([path, base]) == base and os.path.isfile(path):
            return path
    return None


def open_file(name: str, fmt: str, what: str, how_to_make: str) -> tuple[str, dict]:
    """(path, metadata) of a stored file of format `fmt`, or an actionable error."""
    path = resolve(name)
    if path is None:
        fail(f"{what} file '{name}' not found in output/{SUBDIR}/ or models/{SUBDIR}/; {how_to_make}")
    if not path.endswith(".safetensors"):
        fail(f"{what} files are .safetensors.")
    meta = read_metadata(path)
    if meta.get("format") != fmt:
        fail(f"'{os.path.basename(path)}' is not a Video-P2P {what} file.")
    return path, meta


def save(prefix: str, tensors: dict, metadata: dict, default: str) -> str:
    """Write output/video_p2p/<prefix>_NNNNN_.safetensors; returns the path."""
    import safetensors.torch
    prefix = (prefix or "").strip().lstrip("/").replace("\\", "/") or default
    try:
        folder, filename, counter, _, _ = folder_paths.get_save_image_path(
            f"{SUBDIR}/{prefix}", folder_paths.get_output_directory())
    except Exception as e:
        fail(f"cannot save to '{prefix}': {e}; use a plain file name prefix.")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{filename}_{counter:05}_.safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    safetensors.torch.save_file(tensors, path, metadata={k: str(v) for k, v in metadata.items()})
    return path


def display_name(path: str) -> str:
    """A saved file's name as the loaders list it (relative to output/video_p2p/)."""
    return os.path.relpath(path, dirs()[0]).replace(os.sep, "/")


def file_state(name: str) -> str:
    """Changes whenever the file a name stands for does (for IS_CHANGED)."""
    path = resolve(name)
    if path is None:
        return name
    st = os.stat(path)
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"
