#!/usr/bin/env bash
# Builds bench/fused_gemm/check_fused_gemm (the sm90 fused grouped GEMM of
# lib/Runtime/CUDA/FusedGroupedGemm*.cu and its test) with nvcc, runs it on
# the current GPU and writes everything to ${OUT:-bench/out}/fused_gemm.log.
#
#   bash bench/fused_gemm/run.sh            # from the repository root
#   bash bench/fused_gemm/run.sh --quick    # skip the two largest shapes
#   bash bench/fused_gemm/run.sh --only-timing-for=None,DAct,DGrad
#                                           # time only these epilogues
#                                           # (None,Bias,BiasAct,DAct,DGrad)
#   SCHEDULE=pingpong bash bench/fused_gemm/run.sh
#                                           # every kind with the ping-pong
#                                           # schedule (default: each kind's
#                                           # own); log fused_gemm-pingpong.log
#   NO_RUN=1 bash bench/fused_gemm/run.sh   # build only
#
# Every check runs; the timing runs for the epilogues whose checks passed
# (a FAIL does not stop it), and the exit status is non-zero on any FAIL.
#
# Needs an sm_90 GPU, nvcc (CUDA 12.4+) and the CUTLASS headers in
# third_party/cutlass/include (scripts/fetch-cutlass.sh; this script never
# touches the network). Objects go to ${BUILD_DIR:-build-fused-gemm} and are
# reused while newer than their sources (REBUILD=1 forces a full build).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-bench/out}"
mkdir -p "$OUT_DIR"
SCHEDULE="${SCHEDULE:-}"
case "$SCHEDULE" in
  "") SUFFIX=""; DEFINES=() ;;
  pingpong) SUFFIX="-pingpong"; DEFINES=(-DFMOE_FUSED_SCHEDULE_PINGPONG=1) ;;
  cooperative) SUFFIX="-cooperative"; DEFINES=(-DFMOE_FUSED_SCHEDULE_PINGPONG=0) ;;
  *) echo "run.sh: SCHEDULE must be pingpong or cooperative"; exit 1 ;;
esac
LOG="$OUT_DIR/fused_gemm$SUFFIX.log"
BUILD="${BUILD_DIR:-build-fused-gemm$SUFFIX}"
CUTLASS_INC="third_party/cutlass/include"

: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

if [ ! -f "$CUTLASS_INC/cutlass/cutlass.h" ] || [ ! -f "$CUTLASS_INC/cute/tensor.hpp" ]; then
  say "run.sh: the CUTLASS headers are missing from $ROOT/$CUTLASS_INC."
  say "run.sh: run scripts/fetch-cutlass.sh where there is network and carry third_party/cutlass here."
  exit 1
fi

NVCC="${NVCC:-}"
if [ -z "$NVCC" ]; then
  if command -v nvcc >/dev/null 2>&1; then NVCC=nvcc
  elif [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc
  else say "run.sh: nvcc not found (set NVCC)"; exit 1
  fi
fi

say "== fused grouped GEMM: $(date -u +%FT%TZ) on $(hostname), schedule ${SCHEDULE:-per kind}"
say "nvcc: $("$NVCC" --version | tail -n 2 | head -n 1)"
say "cutlass headers: $(cat "$CUTLASS_INC/.nvidia-cutlass-version" 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit \
    --format=csv 2>&1 | tee -a "$LOG"
fi

mkdir -p "$BUILD"
FLAGS=(-std=c++17 -O3 -DNDEBUG -arch=sm_90a --expt-relaxed-constexpr
       -I "$CUTLASS_INC" -I lib/Runtime/CUDA -I include "${DEFINES[@]}")
SOURCES=(
  lib/Runtime/CUDA/FusedGroupedGemm.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90NoneNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90NoneNN.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90BiasNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90BiasGeluNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90DGeluNN.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90DGradGeluNN.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90AccNN.cu
  bench/fused_gemm/check_fused_gemm.cu
)
# One background nvcc per translation unit (the CUTLASS ones take about a
# minute each).
say "== build ($BUILD, ${#SOURCES[@]} translation units in parallel)"
start=$(date +%s)
pids=()
objs=()
HEADERS=(lib/Runtime/CUDA/FusedGroupedGemm*.h lib/Runtime/CUDA/FusedGroupedGemmSm90.cuh)
up_to_date() { # object newer than its source and every header
  [ -f "$1" ] && [ "$1" -nt "$2" ] || return 1
  for h in "${HEADERS[@]}"; do [ "$1" -nt "$h" ] || return 1; done
}
for src in "${SOURCES[@]}"; do
  obj="$BUILD/$(basename "${src%.cu}").o"
  objs+=("$obj")
  if [ -z "${REBUILD:-}" ] && up_to_date "$obj" "$src"; then
    echo "  $src: up to date" > "$obj.log"
    continue
  fi
  rm -f "$obj"
  ( t0=$(date +%s)
    if "$NVCC" "${FLAGS[@]}" -c "$src" -o "$obj" > "$obj.log" 2>&1; then
      echo "  built $src in $(( $(date +%s) - t0 )) s" >> "$obj.log"
    else
      echo "  FAILED to build $src" >> "$obj.log"
      exit 1
    fi ) &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then failed=1; fi
done
for obj in "${objs[@]}"; do
  # The compiler's diagnostics (long kernel names cut).
  grep -v '^$' "$obj.log" | cut -c1-400 | tee -a "$LOG"
done
if [ "$failed" -ne 0 ]; then
  say "run.sh: build failed"
  exit 1
fi
if ! "$NVCC" -arch=sm_90a -o "$BUILD/check_fused_gemm" "${objs[@]}" 2>&1 | tee -a "$LOG"; then
  say "run.sh: link failed"
  exit 1
fi
say "== built in $(( $(date +%s) - start )) s"
if [ -n "${NO_RUN:-}" ]; then exit 0; fi

say "== run"
# A hung kernel (say, a tile scheduler that never finishes) must not hold
# the machine: stop the program after RUN_TIMEOUT seconds.
timeout "${RUN_TIMEOUT:-420}" "$BUILD/check_fused_gemm" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ]; then
  say "run.sh: check_fused_gemm timed out after ${RUN_TIMEOUT:-420} s (hang?)"
fi
say "== exit status $rc"

exit "$rc"
