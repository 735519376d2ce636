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
#
# Every check runs; the timing runs for the epilogues whose checks passed
# (a FAIL does not stop it), and the exit status is non-zero on any FAIL.
#
# A/B of BiasAct's and DAct's second-output store: the kernels are built with
# the smem-staged store (FMOE_FUSED_AUX_STORE_SMEM=1, the default), and
# BiasGeluNT/DGeluNN a second time with the register store of run 20
# (=0) into check_fused_gemm_legacyaux, which then runs every check again
# and times BiasAct and DAct (its SUMMARY lines start with [legacy-aux]).
# AUX_AB=0 skips that second build and run.
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
LOG="$OUT_DIR/fused_gemm.log"
BUILD="${BUILD_DIR:-build-fused-gemm}"
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

say "== fused grouped GEMM: $(date -u +%FT%TZ) on $(hostname)"
say "nvcc: $("$NVCC" --version | tail -n 2 | head -n 1)"
say "cutlass headers: $(cat "$CUTLASS_INC/.nvidia-cutlass-version" 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit \
    --format=csv 2>&1 | tee -a "$LOG"
fi

mkdir -p "$BUILD"
FLAGS=(-std=c++17 -O3 -DNDEBUG -arch=sm_90a --expt-relaxed-constexpr
       -I "$CUTLASS_INC" -I lib/Runtime/CUDA)
AUX_AB="${AUX_AB:-1}"
SOURCES=(
  lib/Runtime/CUDA/FusedGroupedGemm.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90NoneNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90NoneNN.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90BiasNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90BiasGeluNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90DGeluNN.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90DGradGeluNN.cu
  bench/fused_gemm/check_fused_gemm.cu
)
# The A/B variants: built from these sources with LEGACY_FLAGS into
# $BUILD/<name>.legacyaux.o.
LEGACY_SOURCES=(
  lib/Runtime/CUDA/FusedGroupedGemmSm90BiasGeluNT.cu
  lib/Runtime/CUDA/FusedGroupedGemmSm90DGeluNN.cu
)
LEGACY_FLAGS=(-DFMOE_FUSED_AUX_STORE_SMEM=0)

# One background nvcc per translation unit (the CUTLASS ones take about a
# minute each).
jobs_src=("${SOURCES[@]}")
jobs_obj=()
jobs_legacy=()
for src in "${SOURCES[@]}"; do
  jobs_obj+=("$BUILD/$(basename "${src%.cu}").o")
  jobs_legacy+=(0)
done
if [ "$AUX_AB" != 0 ]; then
  for src in "${LEGACY_SOURCES[@]}"; do
    jobs_src+=("$src")
    jobs_obj+=("$BUILD/$(basename "${src%.cu}").legacyaux.o")
    jobs_legacy+=(1)
  done
fi
say "== build ($BUILD, ${#jobs_src[@]} translation units in parallel)"
start=$(date +%s)
pids=()
objs=()
HEADERS=(lib/Runtime/CUDA/FusedGroupedGemm*.h lib/Runtime/CUDA/FusedGroupedGemmSm90.cuh)
up_to_date() { # object newer than its source and every header
  [ -f "$1" ] && [ "$1" -nt "$2" ] || return 1
  for h in "${HEADERS[@]}"; do [ "$1" -nt "$h" ] || return 1; done
}
for i in "${!jobs_src[@]}"; do
  src="${jobs_src[$i]}"
  obj="${jobs_obj[$i]}"
  extra=()
  what="$src"
  if [ "${jobs_legacy[$i]}" = 1 ]; then
    extra=("${LEGACY_FLAGS[@]}")
    what="$src (${LEGACY_FLAGS[*]})"
  fi
  objs+=("$obj")
  if [ -z "${REBUILD:-}" ] && up_to_date "$obj" "$src"; then
    echo "  $what: up to date" > "$obj.log"
    continue
  fi
  rm -f "$obj"
  ( t0=$(date +%s)
    if "$NVCC" "${FLAGS[@]}" "${extra[@]}" -c "$src" -o "$obj" > "$obj.log" 2>&1; then
      echo "  built $what in $(( $(date +%s) - t0 )) s" >> "$obj.log"
    else
      echo "  FAILED to build $what" >> "$obj.log"
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
main_objs=()
legacy_objs=()
for i in "${!jobs_src[@]}"; do
  if [ "${jobs_legacy[$i]}" = 1 ]; then continue; fi
  main_objs+=("${jobs_obj[$i]}")
  sub="${jobs_obj[$i]}"
  for j in "${!jobs_src[@]}"; do
    if [ "${jobs_legacy[$j]}" = 1 ] && [ "${jobs_src[$j]}" = "${jobs_src[$i]}" ]; then
      sub="${jobs_obj[$j]}"
    fi
  done
  legacy_objs+=("$sub")
done
if ! "$NVCC" -arch=sm_90a -o "$BUILD/check_fused_gemm" "${main_objs[@]}" 2>&1 | tee -a "$LOG"; then
  say "run.sh: link failed"
  exit 1
fi
if [ "$AUX_AB" != 0 ] &&
   ! "$NVCC" -arch=sm_90a -o "$BUILD/check_fused_gemm_legacyaux" "${legacy_objs[@]}" 2>&1 | tee -a "$LOG"; then
  say "run.sh: link (legacy aux store) failed"
  exit 1
fi
say "== built in $(( $(date +%s) - start )) s"

say "== run"
# A hung kernel (say, a tile scheduler that never finishes) must not hold
# the machine: stop the program after RUN_TIMEOUT seconds.
timeout "${RUN_TIMEOUT:-420}" "$BUILD/check_fused_gemm" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ]; then
  say "run.sh: check_fused_gemm timed out after ${RUN_TIMEOUT:-420} s (hang?)"
fi
say "== exit status $rc"

if [ "$AUX_AB" != 0 ]; then
  say "== run: legacy aux store (BiasGeluNT, DGeluNN built with ${LEGACY_FLAGS[*]}); timing BiasAct, DAct"
  timeout "${RUN_TIMEOUT:-420}" "$BUILD/check_fused_gemm_legacyaux" "$@" \
    --only-timing-for=BiasAct,DAct --tag=legacy-aux 2>&1 | tee -a "$LOG"
  rc2=${PIPESTATUS[0]}
  if [ "$rc2" -eq 124 ]; then
    say "run.sh: check_fused_gemm_legacyaux timed out after ${RUN_TIMEOUT:-420} s (hang?)"
  fi
  say "== exit status (legacy aux store) $rc2"
  if [ "$rc" -eq 0 ]; then rc=$rc2; fi
fi
exit "$rc"
