#!/usr/bin/env bash
# Set up everything the test suite needs, then run it: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests also run the optional Hugging Face adapter on a tiny model, so
# they need torch: the lock pins the CPU build this machine kind keeps on disk
# (requirements/pins.txt), so the extra does not pull a multi-GB CUDA build.
# "[test]" is every extra plus the test tools, at the versions of requirements/lock.txt.
EXTRAS="[test]" bash scripts/setup.sh
.venv/bin/ruff check sluiceway tests bench
# The browser tests drive Debian's chromium (tests/test_web_ui.py).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/python -m pytest "$@"
