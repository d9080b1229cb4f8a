#!/usr/bin/env bash
# Regenerate requirements/lock.txt: every package of the default install, of every
# extra and of the test tools, pinned, resolved from pyproject.toml's bounds and
# requirements/pins.txt (the versions chosen by hand: llama-cpp-python, torch).
# setup.sh and test.sh (so CI) install with it as a constraints file (pip -c), so an
# install gets exactly these versions of whatever it needs, and nothing more.
#
# Run it after changing dependencies in pyproject.toml or pins.txt; UPGRADE=1 also
# moves every package to its newest release within the bounds (otherwise versions
# already locked are kept while they still fit). Resolved for CPython 3.11 on Linux
# x86-64, the machine CI runs on.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=$(sed -n 's/^uv==//p' requirements/lock.txt)  # the test tools' uv, as locked
UV_VERSION=${UV_VERSION:-0.13.9}
FIND_LINKS=${FIND_LINKS:-/opt/wheels}  # where the CPU torch wheel lies (pip's find-links here)

# uv, pinned, in a venv of its own (not the project's)
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/sluiceway/lock-tools
if [ "$("$TOOLS/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  "${PYTHON:-python3}" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q "uv==$UV_VERSION"
fi

ARGS=(--extra test --python-version 3.11 -c requirements/pins.txt --custom-compile-command scripts/lock.sh)
if [ -d "$FIND_LINKS" ]; then ARGS+=(--find-links "$FIND_LINKS"); fi
if [ "${UPGRADE:-0}" = 1 ]; then ARGS+=(--upgrade); fi
"$TOOLS/bin/uv" pip compile -q pyproject.toml "${ARGS[@]}" -o requirements/lock.txt
echo "lock: requirements/lock.txt: $(grep -c '==' requirements/lock.txt) packages pinned"
