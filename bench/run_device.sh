#!/usr/bin/env bash
# One round on the GPU machine (no LLVM there): build the runtime and the
# torch extension with the compiler off, run the GPU tests and the benchmark.
# The compiled modules come from .fmoe-cache (carried; fill it here first with
#   FMOE_CACHE_DIR=.fmoe-cache python3 bench/prepare_cache.py).
# Usage (device tool): bash bench/run_device.sh  [results go to $OUT or bench/out]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 FMOE_BUILD_DIR="$PWD/build-gpu"
export FMOE_CACHE_DIR="$PWD/.fmoe-cache" FMOE_TEST_CACHE_DIR="$PWD/.fmoe-cache"
nvidia-smi -L | tee "$out/gpu.txt"
git rev-parse HEAD 2>/dev/null | tee -a "$out/gpu.txt"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFMOE_ENABLE_COMPILER=OFF \
  -DFMOE_ENABLE_TESTS=OFF -DPython3_EXECUTABLE="$(command -v python3)" > "$out/cmake.log" 2>&1 \
  && ninja -C build-gpu fmoe_ops > "$out/build.log" 2>&1 || { tail -30 "$out/cmake.log" "$out/build.log"; exit 1; }
echo "== GPU tests"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu-tests.log" | tail -25
echo "== demo (60 steps on the GPU)"
python3 examples/train_lm.py --steps 60 --out "$out" 2>&1 | tr '\r' '\n' | grep -v '^\[' | tee "$out/demo.log"
echo "== benchmark"
python3 bench/bench_moe.py --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
