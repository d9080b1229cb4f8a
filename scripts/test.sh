#!/usr/bin/env bash
# Set up everything the test suite needs, then run it: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="[test]" bash scripts/setup.sh
.venv/bin/ruff check sluiceway tests bench
.venv/bin/python -m pytest "$@"
