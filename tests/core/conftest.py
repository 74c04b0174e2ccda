"""Core tests: vp2p_core and vp2p_toy imported as plain packages, no ComfyUI anywhere."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
