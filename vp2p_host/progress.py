"""The one progress adapter: ComfyUI's progress bar with a latent preview of the frames (ComfyUI's
own previewer, as KSampler's), a console bar for long loops, and ComfyUI's interrupt checked at
every update."""
from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.utils
import latent_preview

PREVIEW_FORMAT = "JPEG"
PREVIEW_FRAMES = 8


def throw_if_interrupted():
    mm.throw_exception_if_processing_interrupted()


def previewer_of(model):
    """ComfyUI's latent previewer for a MODEL (None when the user turned previews off)."""
    return latent_preview.get_previewer(model.load_device, model.get_model_object("latent_format"))


def preview_strip(x0: torch.Tensor, max_frames: int = PREVIEW_FRAMES) -> torch.Tensor:
    """[F, C, h, w] model-space latents -> [1, C, h, k*w]: up to `max_frames` frames (evenly
    spread) side by side, so one preview image shows the video."""
    x0 = x0.detach()
    frames = x0.shape[0]
    if frames > max_frames:
        idx = torch.linspace(0, frames - 1, max_frames).round().long().to(x0.device)
        x0 = x0[idx]
    return torch.cat(list(x0), dim=-1)[None].float()


class Progress:
    """`update(done, loss=None, x0=None)` moves the bar to `done` of `total` (with a preview of
    the model-space latents `x0` when a previewer is on) and stops on interrupt."""

    def __init__(self, total: int, console: str | None = None, preview=None):
        """preview: a MODEL (its ComfyUI previewer is used) or None (no previews)."""
        self.total = int(total)
        self.pbar = comfy.utils.ProgressBar(self.total)
        self.previewer = previewer_of(preview) if preview is not None else None
        self.tqdm = None
        if console:
            from tqdm.auto import tqdm
            self.tqdm = tqdm(total=self.total, desc=console)

    def preview_image(self, x0):
        if self.previewer is None or x0 is None:
            return None
        return self.previewer.decode_latent_to_preview_image(PREVIEW_FORMAT, preview_strip(x0))

    def update(self, done: int, loss: float | None = None, x0: torch.Tensor | None = None):
        self.pbar.update_absolute(done, self.total, self.preview_image(x0))
        if self.tqdm is not None:
            self.tqdm.update(done - self.tqdm.n)
            if loss is not None:
                self.tqdm.set_postfix(loss=f"{loss:.5f}")
        throw_if_interrupted()

    def close(self):
        if self.tqdm is not None:
            self.tqdm.close()
            self.tqdm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
