"""Fingerprints that tie saved artefacts (tuning deltas, inversions) to the model they came from.

Hashing every weight of a real checkpoint would take seconds, so each tensor contributes its
shape and a fixed strided sample of its values: different checkpoints, fine-tunes and LoRA
stacks differ in those samples with overwhelming probability.
"""
from __future__ import annotations

import hashlib

import torch

_SAMPLES = 64


def _update(h, name, t):
    h.update(name.encode())
    if not torch.is_tensor(t):
        h.update(repr(t).encode())
        return
    h.update(repr(tuple(t.shape)).encode())
    flat = t.detach().reshape(-1)
    if flat.numel() > _SAMPLES:
        idx = torch.linspace(0, flat.numel() - 1, _SAMPLES).long().to(flat.device)
        flat = flat[idx]
    h.update(flat.float().cpu().numpy().tobytes())


PREFIX = "diffusion_model."


def base_fingerprint(model) -> str:
    """The base UNet weights only (what tuning deltas are valid for), the same whether or not
    some clone's weight patches are applied right now: ComfyUI patches the shared modules in
    place while a model is loaded and keeps the originals in `backup` (shared by all clones)."""
    h = hashlib.sha1()
    sd = model.model.diffusion_model.state_dict()
    for key, b in (getattr(model, "backup", None) or {}).items():
        if key.startswith(PREFIX) and key[len(PREFIX):] in sd:
            sd[key[len(PREFIX):]] = getattr(b, "weight", b)
    for name, t in sorted(sd.items()):
        if "temporal" in name:
            continue
        _update(h, name, t)
    return h.hexdigest()[:16]


def model_fingerprint(model) -> str:
    """Base weights + weight patches (LoRA, tuning deltas) + object patches (inflation)."""
    h = hashlib.sha1(base_fingerprint(model).encode())
    for key in sorted(model.patches):
        for p in model.patches[key]:
            h.update(key.encode())
            h.update(repr(p[0]).encode())
            vals = p[1]
            for t in (vals if isinstance(vals, (tuple, list)) else (vals,)):
                if isinstance(t, (tuple, list)):
                    for u in t:
                        _update(h, key, u)
                else:
                    _update(h, key, t)
    for key in sorted(model.object_patches):
        obj = model.object_patches[key]
        h.update(key.encode())
        if isinstance(obj, torch.nn.Module):
            for name, t in sorted(obj.state_dict().items()):
                if "temporal" in name:
                    _update(h, name, t)
    return h.hexdigest()[:16]


def latent_fingerprint(x: torch.Tensor) -> str:
    h = hashlib.sha1()
    _update(h, "latent", x)
    return h.hexdigest()[:16]
