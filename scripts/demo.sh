#!/usr/bin/env bash
# The main job: the toy-world word-swap workflow on the embedded toy model, through ComfyUI's
# real executor. Writes the edited video and a side-by-side under ./output/video_p2p/.
# Extra arguments go to scripts/run_workflow.py (e.g. --set "P2P Controller.target_text=...").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_host.sh
exec .venv/bin/python scripts/run_workflow.py workflows/toy_word_swap.json --output-dir output "$@"
