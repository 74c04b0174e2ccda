"""What every node class shares: the V3 API of ComfyUI (through its versioned module), the
category, the pack's own socket types, the display name put on the host layer's errors (host
code says what is wrong and the fix; the node says who it is) and the combo check."""
from __future__ import annotations

import functools

from comfy_api.v0_0_2 import io

from ..vp2p_core.prompts import PromptError
from ..vp2p_host.checks import InputError, NodeInputError, NodeMissingFileError

CATEGORY = "video-p2p"
# research-grade nodes carry ComfyUI's experimental flag: the editor shows them with a BETA badge
# (and still lists them; its "Show experimental nodes in search" setting is on by default)
EXPERIMENTAL = True

# the pack's socket types (saved workflows name them: never rename)
Inversion = io.Custom("VP2P_INVERSION")
Controller = io.Custom("VP2P_CONTROLLER")


# what each method node's description ends with: its estimated peak memory at SD1.5 size, as
# bench/memory.py wrote it to bench/results/memory.txt (tests/host/test_node_docs.py checks the match)
PEAK_MEMORY = {
    "VP2PInflateT2SModel":
        "Inflated SD1.5 UNet: 1.69 GB of fp16 weights (bench/memory.py).",
    "VP2PTuneOnVideo":
        "Estimated peak GPU memory at SD1.5 512x512 fp16 (per tuning step, gradient checkpointing on): 4.5 GB at 8 frames, 7.2 GB at 16 frames, 10.0 GB at 24 frames (bench/memory.py).",
    "VP2PSharedNullTextInvert":
        "Estimated peak GPU memory at SD1.5 512x512 fp16 (null-text mode, checkpointing on; the other modes need less): 4.4 GB at 8 frames, 7.2 GB at 16 frames, 9.9 GB at 24 frames (bench/memory.py).",
    "VP2PDecoupledSampler":
        "Estimated peak GPU memory at SD1.5 512x512 fp16 (both branches, paper's control layers): 3.5 GB at 8 frames, 5.3 GB at 16 frames, 7.0 GB at 24 frames (bench/memory.py).",
}


def with_memory(node_id: str, description: str) -> str:
    return f"{description} {PEAK_MEMORY[node_id]}"


def named(display_name: str):
    """Decorator for a node's execute: host/core input errors come out as NodeInputError
    '<display name>: <message>'."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except NodeInputError:
                raise
            except (InputError, PromptError) as e:
                cls = NodeMissingFileError if isinstance(e, FileNotFoundError) else NodeInputError
                raise cls(f"{display_name}: {e}") from None
        return call
    return wrap


def check_options(node, **values):
    """A node's validate_inputs for its combos: True, or what is wrong. ComfyUI checks a combo
    value against its options only for V1 definitions; the V3 combos of the supported versions
    (0.3.52 to 0.3.7x) reach the node unchecked, so the nodes check them here, before anything
    runs, as before. A value that comes from a link (None while validating) is not checked."""
    schema = node.define_schema()                               # (the executor's class clone is locked)
    inputs = {i.id: i for i in schema.inputs}
    for name, value in values.items():
        options = inputs[name].options
        if value is not None and value not in options:
            shown = ", ".join(map(str, options[:20])) + (" ..." if len(options) > 20 else "")
            return f"{schema.display_name}: {name} must be one of {shown} (got {value!r})"
    return True


def prefix_check(display_name: str, prefix, default: str, base: str = "", input_name: str = "filename_prefix"):
    """validate_inputs of a file name prefix (vp2p_host.store.output_prefix, the one rule of every
    writer): True, or the error naming the node and the fix, before anything runs."""
    from ..vp2p_host import store
    if not isinstance(prefix, str):          # from a link: checked when the node runs
        return True
    try:
        store.output_prefix(prefix, default, base, input_name)
    except InputError as e:
        return f"{display_name}: {e}"
    return True


def hidden(node, name: str):
    """A hidden input (prompt, extra_pnginfo) of a running node; None when the node is called
    directly rather than by ComfyUI's executor."""
    return getattr(node.hidden, name) if node.hidden is not None else None
