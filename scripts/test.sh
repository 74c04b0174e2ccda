#!/usr/bin/env bash
# Run the whole test-suite in a real ComfyUI (installs the host on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_host.sh
bash scripts/setup_browser.sh      # headless Chromium + driver + selenium for tests/test_web.py
exec .venv/bin/python -m pytest "$@"
