"""Fingerprints that tie saved artefacts (tuning deltas, inversions) to the model they came from.

Hashing every weight of a real checkpoint would take seconds, so each tensor contributes its
shape and a fixed strided sample of its values: different checkpoints, fine-tunes and LoRA
stacks differ in those samples with overwhelming probability.
"""
from __future__ import annotations

import hashlib

import torch

_SAMPLES = 64


_PLAIN = (str, int, float, bool, type(None))


def _update(h, name, t):
    h.update(name.encode())
    if not torch.is_tensor(t):
        _update_value(h, name, t)
        return
    h.update(repr(tuple(t.shape)).encode())
    flat = t.detach().reshape(-1)
    if flat.numel() > _SAMPLES:
        # clamped: float32 positions round past the end for tensors over 2**24 values (SD1.5 has
        # such weights); smaller tensors keep the positions (and fingerprints) they always had
        idx = torch.linspace(0, flat.numel() - 1, _SAMPLES).long().clamp_(max=flat.numel() - 1).to(flat.device)
        flat = flat[idx]
    h.update(flat.float().cpu().numpy().tobytes())


def _update_value(h, name, v):
    """A non-tensor patch value by content, never by repr() of an object (which may hold a
    memory address, e.g. ComfyUI's LoRA weight adapters): plain values by repr, containers
    item by item, other objects by class name and their attributes (weights, alpha...)."""
    if isinstance(v, _PLAIN):
        h.update(repr(v).encode())
    elif isinstance(v, (tuple, list)):
        h.update(f"<{type(v).__name__} {len(v)}>".encode())
        for u in v:
            _update(h, name, u)
    elif isinstance(v, dict):
        h.update(f"<dict {len(v)}>".encode())
        for k in sorted(v, key=repr):
            _update(h, f"{name}.{k}", v[k])
    elif isinstance(v, (set, frozenset)):
        h.update(repr(sorted(repr(u) for u in v)).encode())
    else:
        h.update(f"<{type(v).__module__}.{type(v).__qualname__}>".encode())
        attrs = getattr(v, "__dict__", None)
        if attrs is None or callable(v) and not attrs:
            return
        for k in sorted(attrs):
            if not k.startswith("_") and not callable(attrs[k]):
                _update(h, f"{name}.{k}", attrs[k])


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
