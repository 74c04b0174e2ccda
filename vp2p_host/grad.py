"""Backprop through ComfyUI's UNet without touching ComfyUI's code.

ComfyUI's transformer blocks add residuals in place (`x += n`) after LayerNorm has saved
`x` for its backward, which makes autograd fail. While gradients are needed (tuning,
null-text optimisation), a forward pre-hook hands each such LayerNorm a copy of its input;
values are unchanged, the hooks are removed on exit (also on error or interrupt), and only
the modules of the model being optimised are touched. The same holds for a ControlNet's residuals:
the UNet adds them in place (`h += ctrl`) to the skip activations that the next block has
already saved, so the first layer of each input block and of the middle block also gets a copy
of its input.
"""
from __future__ import annotations

import contextlib

import torch


def _clone_input(module, args):
    if args and torch.is_tensor(args[0]) and torch.is_grad_enabled():
        return (args[0].clone(),) + tuple(args[1:])
    return None


@contextlib.contextmanager
def autograd_safe(diffusion_model: torch.nn.Module):
    handles = []
    try:
        blocks = list(getattr(diffusion_model, "input_blocks", None) or [])
        if isinstance(getattr(diffusion_model, "middle_block", None), torch.nn.Module):
            blocks.append(diffusion_model.middle_block)
        for m in blocks:   # ComfyUI runs a block's layers one by one: hook the first layer
            first = m[0] if isinstance(m, torch.nn.Sequential) and len(m) else m
            handles.append(first.register_forward_pre_hook(_clone_input))
        for m in diffusion_model.modules():
            if hasattr(m, "attn1") and hasattr(m, "norm1"):
                for name in ("norm_in", "norm1", "norm2", "norm3"):
                    norm = getattr(m, name, None)
                    if isinstance(norm, torch.nn.Module):
                        handles.append(norm.register_forward_pre_hook(_clone_input))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def grad_mode():
    """Gradients inside ComfyUI's inference mode (as ComfyUI's own training node does)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def swapped_weights(diffusion_model: torch.nn.Module, masters: dict | None = None, trainable_ids=()):
    """Swap the loaded UNet's parameters for autograd, restoring the original objects on exit
    (also on error or interrupt).

    Every parameter becomes a grad-free Parameter (a copy only where ComfyUI created it as an
    inference tensor, which autograd cannot save), except those whose id is in
    `trainable_ids` (left alone) and the weights of the modules in `masters` ({module path:
    fp32 master weight}), which are used through a cast of the master so gradients reach it.
    Yields `refresh()`, which re-casts the masters after an optimiser step."""
    masters = masters or {}
    trainable_ids = set(trainable_ids)
    swaps = []
    casts = []
    try:
        for name, mod in diffusion_model.named_modules():
            for pname, p in list(mod._parameters.items()):
                if p is None or id(p) in trainable_ids:
                    continue
                if pname == "weight" and name in masters:
                    casts.append((mod, p.dtype, masters[name]))
                    new = masters[name].to(p.dtype)
                else:
                    new = torch.nn.Parameter(p.clone() if p.is_inference() else p.detach(), requires_grad=False)
                swaps.append((mod, pname, p))
                mod._parameters[pname] = new

        def refresh():
            for mod, dtype, master in casts:
                mod._parameters["weight"] = master.to(dtype)
        yield refresh
    finally:
        for mod, pname, p in reversed(swaps):
            mod._parameters[pname] = p
