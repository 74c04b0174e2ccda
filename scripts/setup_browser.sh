#!/usr/bin/env bash
# Headless Chromium + its driver (Debian packages chromium, chromium-driver) and selenium in
# the repo's .venv, for tests/test_web.py. Idempotent; nothing is downloaded outside apt/PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have_driver() { command -v chromedriver >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromedriver ]; }
have_browser() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

if have_browser && have_driver; then
  echo "[setup_browser] chromium and chromedriver already installed"
else
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "[setup_browser] no apt-get here: install Chromium and its matching chromedriver with your" \
         "package manager (tests/test_web.py looks for chromium and chromedriver on PATH)" >&2
    exit 1
  fi
  SUDO=()
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
      echo "[setup_browser] need root or passwordless sudo for: apt-get install chromium chromium-driver" >&2
      exit 1
    fi
  fi
  echo "[setup_browser] apt-get install chromium chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

if .venv/bin/python -c "import selenium" 2>/dev/null; then
  echo "[setup_browser] selenium already installed"
else
  echo "[setup_browser] pip install selenium"
  CONSTRAINTS=()
  [ -f .host/constraints.txt ] && CONSTRAINTS=(-c .host/constraints.txt)
  .venv/bin/python -m pip --disable-pip-version-check -q install "${CONSTRAINTS[@]}" "selenium>=4.20,<5"
fi
echo "[setup_browser] $( (chromium --version || chromium-browser --version) 2>/dev/null | head -1)"
