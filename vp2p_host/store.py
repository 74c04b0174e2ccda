"""The one artefact store: tunings and inversions as safetensors (tensors + string metadata
with a `format` tag) under ComfyUI's output/video_p2p/ (written) and models/video_p2p/ (read
too). Nothing else is written, and no pickle is ever loaded.

A stored file can break after it was made (disk full, an interrupted copy): every reader here
turns an unreadable file into an error naming the file and the fix, and the loaders' lists keep
a damaged file (its format cannot be read) so a workflow that names it is told why it fails.
Every writer of the pack takes its file name prefix through `output_prefix`."""
from __future__ import annotations

import os

import folder_paths

from .checks import fail

SUBDIR = "video_p2p"
PACK_FORMAT = "vp2p-"           # every format tag of the pack starts with this


def dirs() -> list[str]:
    return [os.path.join(folder_paths.get_output_directory(), SUBDIR),
            os.path.join(folder_paths.models_dir, SUBDIR)]


def read_metadata(path: str) -> dict:
    """The file's metadata; raises the library's error for an unreadable file (see `damage`)."""
    import safetensors
    with safetensors.safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def damage(path: str, error: Exception) -> str:
    """Why a file could not be read, in a user's words (the library's text in brackets)."""
    size = os.path.getsize(path) if os.path.exists(path) else -1
    if size == 0:
        return "it is empty (0 bytes)"
    return f"it is cut short or not a safetensors file ({size} bytes; {str(error).strip() or type(error).__name__})"


def _probe(path) -> tuple[str | None, bool]:
    """(format tag or None, readable)."""
    try:
        return read_metadata(path).get("format"), True
    except Exception:
        return None, False


def list_files(fmt: str) -> list[str]:
    """Names (relative to the store folders, '/'-separated) of the files of format `fmt`, and of
    the files whose header cannot be read (so a damaged file stays where the user left it, and
    choosing it says what is wrong). Readable files of another format are not offered."""
    names = set()
    for d in dirs():
        if not os.path.isdir(d):
            continue
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if not f.endswith(".safetensors"):
                    continue
                found, readable = _probe(p)
                if found == fmt or not readable:
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


def problem(name: str, fmt: str, what: str, maker: str) -> tuple[str | None, str | None, dict]:
    """(what is wrong or None, path, metadata) of the stored file a name stands for: what the
    loaders' validate_inputs report before anything runs, and what `open_file` raises. `maker`
    says how a file is made ('run Tune On Video with a save_name')."""
    path = resolve(name)
    if path is None:
        return (f"{what} file '{name}' not found in output/{SUBDIR}/ or models/{SUBDIR}/; {maker} first.",
                None, {})
    if not path.endswith(".safetensors"):
        return f"{what} files are .safetensors.", path, {}
    try:
        meta = read_metadata(path)
    except Exception as e:
        return damaged(name, what, maker, path, e), path, {}
    if meta.get("format") != fmt:
        found = meta.get("format")
        kind = f"a {found} file" if found and found.startswith(PACK_FORMAT) else "without the pack's format tag"
        return (f"'{os.path.basename(path)}' is not a Video-P2P {what} file ({kind}): choose another, "
                f"or {maker} first.", path, meta)
    return None, path, meta


def damaged(name: str, what: str, maker: str, path: str, error: Exception) -> str:
    return (f"the {what} file '{name}' is damaged: {damage(path, error)}. Delete it and {maker} again, "
            "or copy the file again from where it came from.")


def open_file(name: str, fmt: str, what: str, maker: str) -> tuple[str, dict]:
    """(path, metadata) of a stored file of format `fmt`, or an actionable error."""
    msg, path, meta = problem(name, fmt, what, maker)
    if msg is not None:
        fail(msg)
    return path, meta


def load_tensors(path: str, what: str, maker: str) -> dict:
    """All tensors of a stored file whose header was read; a file that breaks in between (or
    whose data is damaged) gets the same error as a damaged header."""
    import safetensors.torch
    try:
        return safetensors.torch.load_file(path)
    except Exception as e:
        fail(damaged(os.path.basename(path), what, maker, path, e))


def output_prefix(prefix: str, default: str, base: str = "", input_name: str = "filename_prefix") -> str:
    """The one check of every file name prefix the pack writes with: relative to ComfyUI's
    output folder (below `base` in it); an empty or whitespace prefix, or one without a file
    name ('edits/'), takes the default's name so no run writes a nameless file that the next
    run overwrites; a prefix outside the output folder is refused with the fix."""
    raw = prefix if isinstance(prefix, str) else ""
    p = raw.strip().replace("\\", "/")
    if not p:
        return default
    if os.path.isabs(p) or p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        fail(f"{input_name} '{raw}' is a full path; files are saved under ComfyUI's output folder only: "
             f"use a relative prefix such as '{default}'.")
    norm = os.path.normpath(p).replace("\\", "/")
    if norm == ".." or norm.startswith("../"):
        fail(f"{input_name} '{raw}' points outside ComfyUI's output folder ('..'): use a relative prefix "
             f"such as '{default}'.")
    if p.endswith("/") or os.path.basename(norm) in ("", "."):
        norm = (norm.rstrip("/.") + "/" if norm not in (".", "") else "") + os.path.basename(default)
    out = os.path.abspath(folder_paths.get_output_directory())
    target = os.path.abspath(os.path.join(out, base, norm))
    if os.path.commonpath([out, target]) != out:
        fail(f"{input_name} '{raw}' points outside ComfyUI's output folder: use a relative prefix such as "
             f"'{default}'.")
    return norm


def save(prefix: str, tensors: dict, metadata: dict, default: str, input_name: str = "filename_prefix") -> str:
    """Write output/video_p2p/<prefix>_NNNNN_.safetensors; returns the path."""
    import safetensors.torch
    prefix = output_prefix(prefix, default, SUBDIR, input_name)
    folder, filename, counter, _, _ = folder_paths.get_save_image_path(
        f"{SUBDIR}/{prefix}", folder_paths.get_output_directory())
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
