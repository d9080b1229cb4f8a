#!/usr/bin/env bash
# Build (once) and install a *portable* llama-cpp-python wheel into the venv given as $1.
#
# Why not plain `pip install llama-cpp-python`: that compiles llama.cpp with
# GGML_NATIVE, i.e. -march=native, and on a VM whose CPU advertises AMX it
# enables ggml's AMX kernels, which the VM cannot execute (SIGILL in
# ggml_backend_amx_mul_mat). pip's wheel cache is keyed on the source, not on
# CMAKE_ARGS, so a native wheel built once would be reused forever. We build
# with fixed, conservative flags into our own cache, keyed on version + flags,
# and install that exact file.
set -euo pipefail
VENV=${1:?usage: llama-wheel.sh VENV}
LOCK="$(cd "$(dirname "$0")/.." && pwd)/requirements/lock.txt"
# The version the lock pins (requirements/pins.txt chooses it), so the wheel satisfies `pip install -c lock`.
VERSION=${LLAMA_CPP_PYTHON_VERSION:-$(sed -n 's/^llama-cpp-python==//p' "$LOCK")}
[ -n "$VERSION" ] || { echo "llama-wheel: no llama-cpp-python pin in $LOCK" >&2; exit 1; }
case "$(uname -m)" in
  x86_64|amd64)
    # x86-64-v3 (Haswell, 2013, and every AMD since Zen): AVX2/FMA/F16C/BMI2.
    # No AVX-512 and no AMX: present on some CPUs, not executable on all VMs.
    FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
  *) FLAGS="-DGGML_NATIVE=OFF" ;;  # aarch64 and others: the compiler's generic baseline
esac
# Not needed by sluiceway: multimodal (mtmd), tests, examples, tools.
FLAGS="$FLAGS -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
PYTAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
KEY=$(printf '%s %s %s %s' "$VERSION" "$(uname -m)" "$PYTAG" "$FLAGS" | sha256sum | cut -c1-16)
CACHE=${SLUICEWAY_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluiceway/wheels}/llama-cpp-python-$VERSION-$KEY
MARKER="$VENV/.llama-cpp-portable"
if [ "$(cat "$MARKER" 2>/dev/null)" = "$KEY" ]; then exit 0; fi  # this venv has it already
if ! ls "$CACHE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  if [ -n "${LLAMA_WHEEL_NO_BUILD:-}" ]; then  # tests: use the cached wheel or fail, never compile
    echo "llama-wheel: no cached wheel in $CACHE (run scripts/setup.sh first)" >&2
    exit 3
  fi
  echo "setup: compiling llama.cpp (portable build, about 10 minutes on 2 cores; done once per machine)" >&2
  mkdir -p "$CACHE.tmp"
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$VENV/bin/python" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
    -w "$CACHE.tmp" "llama-cpp-python==$VERSION"
  rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-*.whl
"$VENV/bin/python" -m pip install -q -c "$LOCK" "$CACHE"/llama_cpp_python-*.whl  # its pure-Python deps
echo "$KEY" > "$MARKER"
