"""The toy world: procedural videos with known truth, and pixel oracles (numpy/opencv only)."""
