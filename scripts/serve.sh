#!/usr/bin/env bash
# Quick start: set up (first run only) and serve the embedded model on http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sluiceway serve "$@"
