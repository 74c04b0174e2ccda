"""Reuse of the expensive stages (tuning, inversion) by content: a run whose MODEL, video latent,
prompt embedding and settings equal an earlier run's loads that run's result instead of computing
it again, across queue runs in the editor and across the rows of a batch.

The key is a hash of the pack's own fingerprints (`fingerprint.py`: base weights + patches +
inflation of the MODEL, the latent, the embeddings) and every setting the result depends on. A hit
is loaded through the same loaders as Load Video Tuning / Load Inversion, so their fingerprint
checks run on it too. Files are written under a temporary name and renamed, so a run killed while
writing leaves no half-written entry. The cache folder is output/video_p2p/cache/ unless a host
(the batch runner) points it elsewhere with `use_folder`."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile

import folder_paths

from . import inversion as inversions
from . import store, tuning
from .checks import cond_tensor, fail, latent_video
from .fingerprint import _update, latent_fingerprint, model_fingerprint

log = logging.getLogger("video_p2p")

VERSION = "1"              # bump when a stage's result changes for the same inputs
_PLAIN_COND_KEYS = {"pooled_output", "vp2p_text"}
_folder: str | None = None
events: list[dict] = []    # what each lookup did, in order: the batch runner reads and clears it


def folder() -> str:
    return _folder or os.path.join(folder_paths.get_output_directory(), store.SUBDIR, "cache")


def use_folder(path: str | None):
    """Point the cache at `path` (None: back to output/video_p2p/cache)."""
    global _folder
    _folder = os.path.abspath(path) if path else None


def _cond_key(conditioning, model, what: str) -> str:
    """The embedding, pooled output and text of a one-prompt CONDITIONING; anything else on it
    (a ControlNet, hooks, gligen) would change the result without changing this key: refused."""
    cond = cond_tensor(conditioning, model, what)
    extra = conditioning[0][1] if len(conditioning[0]) > 1 else {}
    other = sorted(k for k in (extra or {}) if k not in _PLAIN_COND_KEYS and extra[k] is not None)
    if other:
        fail(f"cache cannot key a {what} that carries {', '.join(other)}: set cache to false on this node "
             "(it then computes as usual).")
    h = hashlib.sha1()
    _update(h, "cond", cond)
    if extra and extra.get("pooled_output") is not None:
        _update(h, "pooled", extra["pooled_output"])
    return h.hexdigest()[:16]


def _key(kind: str, **parts) -> str:
    text = json.dumps({"kind": kind, "version": VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _write(path: str, tensors: dict, metadata: dict):
    import safetensors.torch
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".tmp", dir=os.path.dirname(path))
    os.close(fd)
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        safetensors.torch.save_file(tensors, tmp, metadata={k: str(v) for k, v in metadata.items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _record(stage: str, key: str, hit: bool, path: str):
    events.append({"stage": stage, "key": key, "reused": hit, "file": path})
    log.info("%s: %s cache entry %s", stage, "reused" if hit else "saved", os.path.basename(path))


def tuning_key(model, latent, conditioning, steps, lr, seed, mixed_precision) -> str:
    return _key("tuning", model=model_fingerprint(model), latent=latent_fingerprint(latent_video(latent)),
                cond=_cond_key(conditioning, model, "source conditioning"), steps=int(steps), lr=repr(float(lr)),
                seed=int(seed), precision=mixed_precision)


def tune(model, latent, conditioning, steps, lr, seed, save_name="", mixed_precision="auto",
         gradient_checkpointing=False):
    """Tune On Video with cache on: load the tuning of the same inputs if there is one (through
    load_tuning's checks), else tune and keep the result. Gradient checkpointing is not part of
    the key: it changes memory and time, not the trained weights."""
    key = tuning_key(model, latent, conditioning, steps, lr, seed, mixed_precision)
    path = os.path.join(folder(), f"tuning_{key}.safetensors")
    if os.path.isfile(path):
        tuned = tuning.load_tuning(model, path)
        _record("tuning", key, True, path)
        if save_name and save_name.strip():
            tuning.save_tuning(tuned, save_name)
        return tuned
    tuned = tuning.tune_and_save(model, latent, conditioning, steps, lr, seed, save_name, mixed_precision,
                                 gradient_checkpointing)
    _write(path, *tuning.tuning_payload(tuned))
    _record("tuning", key, False, path)
    return tuned


def inversion_key(model, latent, conditioning, empty_conditioning, steps, cfg, mode, inner_iterations,
                  fixed_point_iterations) -> str:
    return _key("inversion", model=model_fingerprint(model), latent=latent_fingerprint(latent_video(latent)),
                cond=_cond_key(conditioning, model, "source conditioning"),
                empty=_cond_key(empty_conditioning, model, "empty conditioning"), steps=int(steps),
                cfg=repr(float(cfg)), mode=inversions.canonical_mode(mode), inner=int(inner_iterations),
                fixed_point=int(fixed_point_iterations))


def invert(model, latent, conditioning, empty_conditioning, steps, cfg, mode, inner_iterations,
           fixed_point_iterations=0):
    """Shared Null-Text Invert with cache on: (inversion, reconstruction) of the same inputs
    from the cache (checked by load_inversion against this MODEL and latent), else inverted and
    kept, with the reconstruction preview stored beside the inversion's tensors."""
    key = inversion_key(model, latent, conditioning, empty_conditioning, steps, cfg, mode, inner_iterations,
                        fixed_point_iterations)
    path = os.path.join(folder(), f"inversion_{key}.safetensors")
    if os.path.isfile(path):
        inv = inversions.load_inversion(path, model, latent)
        import safetensors
        with safetensors.safe_open(path, framework="pt") as f:
            recon = f.get_tensor("reconstruction")
        _record("inversion", key, True, path)
        return inv, {"samples": recon}
    inv, recon = inversions.invert_video(model, latent, conditioning, empty_conditioning, steps, cfg, mode,
                                         inner_iterations, fixed_point_iterations)
    tensors, metadata = inversions.inversion_payload(inv)
    _write(path, {**tensors, "reconstruction": recon["samples"]}, metadata)
    _record("inversion", key, False, path)
    return inv, recon
