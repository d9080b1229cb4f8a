#!/usr/bin/env bash
# Set up everything the test suite needs, then run it: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests also run the optional Hugging Face adapter on a tiny model, so
# they need torch: pin the CPU build this machine kind keeps on disk first,
# so the extra's "torch>=2.2" does not pull a multi-GB CUDA build.
if [ ! -x .venv/bin/python ]; then "${PYTHON:-python3}" -m venv .venv; fi
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
EXTRAS="[test,transformers]" bash scripts/setup.sh
.venv/bin/ruff check sluiceway tests bench
# The browser tests drive Debian's chromium (tests/test_web_ui.py).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/python -m pytest "$@"
