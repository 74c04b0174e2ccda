"""The one progress adapter: ComfyUI's progress bar (and a console bar for long loops), with
ComfyUI's interrupt checked at every update."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.utils


def throw_if_interrupted():
    mm.throw_exception_if_processing_interrupted()


class Progress:
    """`update(done, loss=None)` moves the bar to `done` of `total` and stops on interrupt."""

    def __init__(self, total: int, console: str | None = None):
        self.total = int(total)
        self.pbar = comfy.utils.ProgressBar(self.total)
        self.tqdm = None
        if console:
            from tqdm.auto import tqdm
            self.tqdm = tqdm(total=self.total, desc=console)

    def update(self, done: int, loss: float | None = None):
        self.pbar.update_absolute(done, self.total)
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
