#!/usr/bin/env bash
# Run the whole test-suite in a real ComfyUI, installing what it needs on first use.
#   bash scripts/test.sh                      both supported ComfyUI versions (0.3.75, then 0.3.52)
#   VP2P_COMFYUI=0.3.52 bash scripts/test.sh  one version;  COMFYUI_PATH=... your own checkout
#   bash scripts/test.sh -k sampler           extra arguments go to pytest
# Prints, per version, the pytest summary line and the wall time; fails if any version fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${COMFYUI_PATH:-}" ]; then LEGS=(custom); else LEGS=(${VP2P_COMFYUI:-0.3.75 0.3.52}); fi

# headless Chromium + driver + selenium for tests/test_web.py (which fails, saying how to
# install them, if this could not install them: no root, no apt)
browser_ready=0
summary=()
status=0
for leg in "${LEGS[@]}"; do
  [ "$leg" = custom ] || export VP2P_COMFYUI="$leg"
  bash scripts/setup_host.sh || { summary+=("ComfyUI $leg: host setup failed"); status=1; continue; }
  if [ $browser_ready = 0 ]; then
    bash scripts/setup_browser.sh || echo "[test] WARNING: browser setup failed; tests/test_web.py will fail" >&2
    browser_ready=1
  fi
  echo "[test] ComfyUI $leg: pytest $*"
  # later legs leave out the version-independent benchmark / toy-model files (tests/host/conftest.py)
  [ ${#summary[@]} -gt 0 ] && export VP2P_REPEAT_LEG=1
  start=$(date +%s)
  log="$(mktemp)"
  .venv/bin/python -m pytest --durations=25 "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - start ))
  line="$(grep -E '^=*.* (passed|failed|error|no tests ran).* in [0-9.]+s' "$log" | tail -1 | sed 's/=//g;s/^ *//;s/ *$//')"
  rm -f "$log"
  summary+=("ComfyUI $leg: ${line:-pytest exited with $rc} (wall ${secs} s)")
  [ "$rc" = 0 ] || status=1
done
echo
echo "[test] summary"
printf '  %s\n' "${summary[@]}"
exit $status
