#!/usr/bin/env bash
# Create .venv and install sluiceway: the default install (what serving the embedded
# model needs), plus the extras named in EXTRAS, e.g. EXTRAS="[redis,postgres]"
# (test.sh: "[test]", i.e. every extra and the test tools).
# Every version comes from requirements/lock.txt (a constraints file: only what is
# needed is installed, at the locked version); scripts/lock.sh regenerates it.
# Idempotent: re-running is quick once the llama.cpp wheel is built and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=requirements/lock.txt
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -c "$LOCK" --upgrade pip
# llama.cpp, compiled once per machine as a portable build (never -march=native: see llama-wheel.sh),
# installed before the package so that pip finds the requirement satisfied and builds nothing itself.
bash scripts/llama-wheel.sh .venv
.venv/bin/python -m pip install -q -c "$LOCK" -e ".${EXTRAS:-}"
# The embedded voice (eSpeak NG) and audio conversion (sox: mp3/flac out, uploads in) are Debian packages.
if ! { command -v espeak-ng && command -v sox && sox -h | grep -q "^AUDIO FILE FORMATS:.* mp3"; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox libsox-fmt-mp3 >/dev/null
  else
    echo "setup: install espeak-ng, sox and libsox-fmt-mp3 for the embedded voice (voice mode, /v1/audio/speech)" >&2
  fi
fi
# The web UI's browser libraries (marked, DOMPurify, highlight.js), pinned by sluiceway/web/package-lock.json.
if [ -f sluiceway/web/node_modules/.package-lock.json ] \
  && [ sluiceway/web/node_modules/.package-lock.json -nt sluiceway/web/package-lock.json ]; then
  :  # up to date
elif command -v npm >/dev/null; then
  npm ci --prefix sluiceway/web --no-audit --no-fund --loglevel=error >/dev/null
else
  echo "setup: npm not found; the web UI will render replies as plain text" >&2
fi
