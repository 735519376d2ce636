#!/usr/bin/env bash
# One round on the GPU machine (no LLVM there): build the runtime and the
# torch extension with the compiler off, run the GPU tests and the benchmark.
# The compiled modules come from .fmoe-cache (carried; fill it here first with
#   FMOE_CACHE_DIR=.fmoe-cache python3 bench/prepare_cache.py).
# Usage (device tool): bash bench/run_device.sh [ep|bench|host|quick] [bench args...]
#   (results go to $OUT/single.tgz, $OUT/ep.tgz or $OUT/bench.tgz). With `ep` (a machine of
#   several GPUs): the NCCL tests and bench/bench_ep.py on 1, 2, ... all GPUs instead; with
#   `bench`: only bench/bench_moe.py (no tests, no demo); with `host`: bench/host_overhead.py
#   on every shape, with the runtime's per-command host timing (FMOE_HOST_TIMING=1); with
#   `quick "<pytest -k expression>"`: the GPU tests that match, then the benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=single
[ "${1:-}" = ep ] && mode=ep
[ "${1:-}" = bench ] && mode=bench
[ "${1:-}" = host ] && mode=host
[ "${1:-}" = quick ] && mode=quick
# Logs are written to a scratch folder and packed into one archive,
# $OUT/<mode>.tgz (the device tool brings back only a few files).
dest="${OUT:-bench/out}"
mkdir -p "$dest"
out=$(mktemp -d)
trap 'tar czf "$dest/$mode.tgz" -C "$out" .' EXIT
export PYTHONUNBUFFERED=1 FMOE_BUILD_DIR="$PWD/build-gpu"
export FMOE_CACHE_DIR="$PWD/.fmoe-cache" FMOE_TEST_CACHE_DIR="$PWD/.fmoe-cache"
nvidia-smi -L | tee "$out/gpu.txt"
# The commit the carried modules were compiled from (bench/prepare_cache.py).
echo "source: $(cat .fmoe-cache/SOURCE 2>/dev/null || echo unknown)" | tee -a "$out/gpu.txt"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFMOE_ENABLE_COMPILER=OFF \
  -DFMOE_ENABLE_TESTS=OFF -DPython3_EXECUTABLE="$(command -v python3)" > "$out/cmake.log" 2>&1 \
  && ninja -C build-gpu fmoe_ops > "$out/build.log" 2>&1 || { tail -30 "$out/cmake.log" "$out/build.log"; exit 1; }
if [ "${1:-}" = ep ]; then
  shift
  gpus=$(nvidia-smi -L | wc -l)
  echo "== expert-parallel tests over NCCL ($gpus GPUs)"
  python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_distributed.py 2>&1 \
    | tee "$out/ep-tests.log" | tail -8
  for n in 1 2 4 8; do
    [ "$n" -le "$gpus" ] || break
    echo "== bench_ep on $n GPUs"
    torchrun --standalone --nproc-per-node "$n" bench/bench_ep.py --json "$out/ep-${n}gpu.json" "$@" \
      2>&1 | grep -v "^W\|OMP_NUM_THREADS\|^\*\*\*" | tee "$out/ep-${n}gpu.log"
    [ "$n" -gt 1 ] || continue
    # The same on the runtime's own NCCL communicator.
    echo "== bench_ep on $n GPUs, FMOE_COMMUNICATOR=nccl"
    FMOE_COMMUNICATOR=nccl torchrun --standalone --nproc-per-node "$n" bench/bench_ep.py \
      --json "$out/ep-${n}gpu-nccl.json" "$@" \
      2>&1 | grep -v "^W\|OMP_NUM_THREADS\|^\*\*\*" | tee "$out/ep-${n}gpu-nccl.log"
  done
  exit 0
fi
if [ "$mode" = host ]; then
  for shape in classic mixtral_gelu fine_grained; do
    FMOE_HOST_TIMING=1 python3 bench/host_overhead.py --shape "$shape" 2>&1 | tee "$out/host-$shape.log"
  done
  exit 0
fi
if [ "$mode" = quick ]; then
  # quick "<pytest -k expression>" [bench_moe.py arguments]: the GPU tests
  # that match, then the benchmark (for a short device budget).
  shift
  expr="$1"
  shift
  echo "== GPU tests -k '$expr'"
  python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py -k "$expr" 2>&1 \
    | tee "$out/gpu-tests.log" | tail -8
  python3 bench/bench_moe.py --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
  exit 0
fi
if [ "$mode" = bench ]; then
  shift
  python3 bench/bench_moe.py --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
  exit 0
fi
echo "== GPU tests"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu-tests.log" | tail -25
echo "== demo (60 steps on the GPU)"
python3 examples/train_lm.py --steps 60 --out "$out" 2>&1 | tr '\r' '\n' | grep -v '^\[' | tee "$out/demo.log"
echo "== benchmark"
python3 bench/bench_moe.py --json "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
