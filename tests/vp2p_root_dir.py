"""pytest plugin: collect the repository root as a plain folder, not as a Python package.

The root holds the pack's `__init__.py` (ComfyUI imports the folder as a package), so pytest
would import it as a package named after the folder, which fails for a clone in a folder whose
name is not an identifier (`comfyui-video-p2p`) and otherwise loads a second copy of the pack.
"""
import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path, parent):
    if path == parent.config.rootpath:
        return pytest.Dir.from_parent(parent, path=path)
