"""Backprop through ComfyUI's UNet without touching ComfyUI's code.

ComfyUI's transformer blocks add residuals in place (`x += n`) after LayerNorm has saved
`x` for its backward, which makes autograd fail. While gradients are needed (tuning,
null-text optimisation), a forward pre-hook hands each such LayerNorm a copy of its input;
values are unchanged, the hooks are removed on exit (also on error or interrupt), and only
the modules of the model being optimised are touched.
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
