#!/usr/bin/env bash
# The main job: set up a fresh machine, build fmoe, and train a small MoE
# Transformer language model whose MoE layers run through fmoe.compile (on the
# GPU when there is one, else on the CPU). Extra arguments go to the demo,
# e.g. `bash scripts/run.sh --steps 100`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FMOE_BUILD_DIR:-$root/build}"
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh" >/dev/null
FMOE_BUILD_DIR="$build" python3 "$root/examples/train_lm.py" --out "$build/demo" "$@"
