"""Core tests: vp2p_core and vp2p_toy imported as plain packages (the repository root is on
pytest's pythonpath), no ComfyUI anywhere."""
