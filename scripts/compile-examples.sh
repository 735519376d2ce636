#!/usr/bin/env bash
# Lowers and compiles the example layers in examples/*.mlir, printing a
# summary of each (kernels, runtime calls, programs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FMOE_BUILD_DIR:-$root/build}"
out="$build/examples"
mkdir -p "$out"
for f in "$root"/examples/*.mlir; do
  name=$(basename "$f" .mlir)
  "$build/bin/fmoe-opt" --lower-moe "$f" -o "$out/$name.lowered.mlir"
  "$build/bin/fmoe-compile" "$f" -o "$out/$name.fmoe"
  echo "== $name: $(grep -o '\.entry [a-z0-9_]*' "$out/$name.lowered.mlir" | wc -l) PTX kernels, $(grep -c 'call @fmoe_rt_' "$out/$name.lowered.mlir") runtime calls"
  "$build/bin/fmoe-module-check" "$out/$name.fmoe" | sed -n '1p;/^program/p'
done
echo "lowered IR and compiled modules are in $out"
