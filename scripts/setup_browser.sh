#!/usr/bin/env bash
# Headless Chromium + its driver (Debian packages) and selenium, for tests/test_web.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! { command -v chromedriver >/dev/null || [ -x /usr/lib/chromium/chromedriver ]; }; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      echo "setup_browser: need root (or passwordless sudo) to apt-get install chromium chromium-driver" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
.venv/bin/python -c "import selenium" 2>/dev/null || .venv/bin/pip install -q "selenium>=4.20"
echo "browser: $(chromium --version 2>/dev/null | head -1)"
