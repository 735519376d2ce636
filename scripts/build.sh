#!/usr/bin/env bash
# Configures and builds fmoe into build/: the compiler and its tools, the
# runtime, the PyTorch custom ops and the C++ unit tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FMOE_BUILD_DIR:-$root/build}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE="$(command -v python3)"
fi
ninja -C "$build" fmoe-opt fmoe-compile fmoe-module-check fmoe-unittests fmoe-runtime-tests fmoe_ops mlir-doc
