"""The frame layout of one UNet call: which frames of the clip its batch holds.

Inside the UNet the batch is n chunks (cond / uncond / branches) of `frames` rows each,
chunk-major. For a whole clip the chunk is the clip (row r is frame r); under context windows
it is one window of the clip, possibly with the anchor frame added as a guest so frame
attention can read it. Frame attention, temporal attention, the video norm, the attention
cache and the attention store all read this one object instead of doing batch arithmetic.

Where the layout comes from (transformer_options keys):
- LAYOUT_KEY: a FrameLayout set by whoever drives the call (the pack's context windows,
  tuning's random window) — it wins;
- core ComfyUI's `context_window` (its `index_list`: the window's global frame indices), when
  the batch has that many frames per chunk;
- CLIP_FRAMES_KEY: the clip's frame count (the whole clip is in the batch);
- otherwise one video per entry of `cond_or_uncond`, else the whole batch is one video.
"""
from __future__ import annotations

from dataclasses import dataclass

LAYOUT_KEY = "vp2p_layout"
CLIP_FRAMES_KEY = "vp2p_frames"
ANCHOR = 0          # Video-P2P's frame attention reads the clip's first frame


@dataclass(frozen=True)
class FrameLayout:
    """`index`: the global frame index of each row of a chunk; `total`: frames in the clip;
    `anchor`: the global frame whose keys/values frame attention reads; `guests`: positions in
    the chunk of frames that are there only as the anchor (their outputs are discarded)."""
    total: int
    index: tuple
    anchor: int = ANCHOR
    guests: tuple = ()

    @classmethod
    def whole(cls, total: int) -> "FrameLayout":
        return cls(int(total), tuple(range(int(total))))

    @classmethod
    def window(cls, total: int, index, anchor: int | None = ANCHOR, with_anchor: bool = False) -> "FrameLayout":
        """A window of global frames `index`. with_anchor: put the anchor first as a guest when
        the window lacks it. anchor None: the window's own first frame (plain sliding windows)."""
        index = tuple(int(i) for i in index)
        if anchor is None or (anchor not in index and not with_anchor):
            return cls(int(total), index, index[0])
        if anchor in index:
            return cls(int(total), index, int(anchor))
        return cls(int(total), (int(anchor),) + index, int(anchor), (0,))

    @property
    def frames(self) -> int:
        return len(self.index)

    @property
    def anchor_pos(self) -> int:
        """Row of the anchor frame within a chunk."""
        return self.index.index(self.anchor)

    @property
    def is_whole(self) -> bool:
        return self.index == tuple(range(self.total))

    @property
    def own(self) -> tuple:
        """Positions of the window's own frames (not guests)."""
        return tuple(p for p in range(self.frames) if p not in self.guests)

    @property
    def key(self):
        """Identifies the window (for caches keyed by window): None for the whole clip."""
        return None if self.is_whole else self.index


def _window_index(cw):
    index = getattr(cw, "index_list", None)
    return None if index is None else list(index)


def call_layout(batch: int, transformer_options: dict | None, where: str = "video-p2p") -> FrameLayout:
    """The FrameLayout of a UNet call of `batch` rows (see the module docstring)."""
    opts = transformer_options or {}
    layout = opts.get(LAYOUT_KEY)
    if layout is None:
        chunks = len(opts.get("cond_or_uncond") or ()) or None
        total = opts.get(CLIP_FRAMES_KEY)
        index = _window_index(opts.get("context_window"))
        if index is not None and len(index) and batch % len(index) == 0 and \
                (chunks is None or batch == chunks * len(index)) and (total is None or len(index) != int(total)):
            total = int(total) if total is not None else max(index) + 1
            layout = FrameLayout.window(total, index, ANCHOR if ANCHOR in index else None)
        else:
            if total is None:
                if batch % (chunks or 1):
                    raise ValueError(f"{where}: batch {batch} is not a multiple of the {chunks} conditioning "
                                     "chunks (cond_or_uncond); frames per video cannot be determined.")
                total = batch // (chunks or 1)
            layout = FrameLayout.whole(int(total))
    if layout.frames <= 0 or batch % layout.frames:
        raise ValueError(f"{where}: batch {batch} is not a multiple of {layout.frames} frames per video.")
    return layout


def window_key(transformer_options: dict | None):
    """Which window of the clip a call evaluates (None: the whole clip), for caches that must
    not mix windows: the pack's layout, else core ComfyUI's context window."""
    opts = transformer_options or {}
    layout = opts.get(LAYOUT_KEY)
    if layout is not None:
        return layout.key
    index = _window_index(opts.get("context_window"))
    return None if index is None else tuple(index)
