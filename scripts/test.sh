#!/usr/bin/env bash
# Set up everything the test suite needs, then run it: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[test]" bash scripts/setup.sh
.venv/bin/ruff check sluiceway tests bench
# The browser tests drive Debian's chromium (tests/test_web_ui.py).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/python -m pytest "$@"
