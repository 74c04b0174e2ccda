"""Old-workflow compatibility, in one place: values and widgets that workflows saved by earlier
versions of the pack carry and that must keep loading (node ids, input names and option values
never change). The meaning of old inversion-mode names lives in vp2p_core.inversion.MODES
(`old_names`, and `v1_file_names` for inversion files); this module is what the nodes do with them."""
from __future__ import annotations

import logging

from comfy_api.v0_0_2 import io

from ..vp2p_core.inversion import MODES
from ..vp2p_core.prompts import OLD_PRESET_NAMES

log = logging.getLogger("video-p2p")

# ---------------------------------------------------------------- Shared Null-Text Invert: mode
INVERSION_MODES_NOTE = ("(In workflows saved before the modes were renamed, 'fast' meant plain DDIM at CFG; "
                        "'negative-prompt' is the old name of 'fast'.)")
# a value an earlier version saved for one mode that now names another mode
_RENAMED = {old: m for m, spec in MODES.items() for old in spec.v1_file_names if old in MODES}
_told = set()


def inversion_mode_check(mode, offered) -> bool | str:
    """validate_inputs of the mode combo: the offered modes and the old names of offered modes,
    which the combo no longer lists."""
    if mode is None or mode in offered or any(mode in MODES[m].old_names for m in offered):
        return True
    return f"mode must be one of {', '.join(offered)} (got {mode!r})"


def tell_renamed(node_name: str, mode: str):
    """Once per session: a mode whose name meant another mode in workflows saved before the rename."""
    if mode in _RENAMED and mode not in _told:
        _told.add(mode)
        log.info("%s: mode '%s' is the official Video-P2P fast mode (source branch at guidance 1). Workflows "
                 "saved before the modes were renamed got '%s' (plain DDIM inversion sampled at CFG) with it, "
                 "which reconstructs the video much worse; for the paper's method use 'null-text', for exact "
                 "reconstruction at no cost 'direct-inversion'.", node_name, mode, _RENAMED[mode])


# ---------------------------------------------------------------- Decoupled Sampler: branch_batching
BRANCH_BATCHING = ("auto", "batched", "source-first")


def branch_batching_input():
    """A widget that no longer changes anything, kept so that saved workflows load."""
    return io.Combo.Input("branch_batching", options=list(BRANCH_BATCHING), tooltip=
        "Kept for saved workflows; every value gives the same edit: ComfyUI's sampler "
        "evaluates the source branch, then the target branch (each with its unconditional "
        "half, batched by ComfyUI's calc_cond_batch), caching the source attention.")


# ---------------------------------------------------------------- P2P Controller: preset
def preset_value(preset):
    """Today's preset for a value that earlier versions saved (the old names of the presets, which the
    combo no longer lists); core's resolve_preset reads the same table when it builds the edit."""
    return OLD_PRESET_NAMES.get(preset, preset)
