"""The one preamble of scripts/: what users run from here as files (`python scripts/x.py`)
reaches the maintainer package vp2p_dev through the repository root, appended to sys.path (so
ComfyUI's own top-level modules, e.g. `nodes`, keep precedence over the pack's folders)."""
import importlib
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)


def forward(name: str, target: str):
    """A module moved to `target`: importing `name` gives that module itself (one copy), and
    running it as a script runs the target's command line."""
    if name == "__main__":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.modules[name] = importlib.import_module(target)
