#!/usr/bin/env bash
# Build llama.cpp's own llama-server (for bench/embedded.py only) from the source that the
# llama-cpp-python sdist vendors, with the same portable flags as scripts/llama-wheel.sh.
# Prints the binary's path. Takes about 5 minutes on 2 cores; cached afterwards.
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
OUT=${SLUICEWAY_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluiceway}/llama-server-$VERSION
if [ -x "$OUT/bin/llama-server" ]; then echo "$OUT/bin/llama-server"; exit 0; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VERSION" >&2
tar xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
[ "$(uname -m)" = x86_64 ] || FLAGS="-DGGML_NATIVE=OFF"
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON $FLAGS >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$OUT/bin" && cp "$WORK/build/bin/llama-server" "$OUT/bin/"
echo "$OUT/bin/llama-server"
