#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, build, the format
# check, the compiler's lit suite, the C++ unit tests and the Python tests
# (GPU tests skip where there is no GPU).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FMOE_BUILD_DIR:-$root/build}"
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
bash "$root/scripts/check-format.sh"
bash "$root/scripts/gen-docs.sh" --check
echo "== lit (check-fmoe)"
/usr/lib/llvm-22/bin/lit -sv "$build/test"
echo "== C++ unit tests (ctest)"
ctest --test-dir "$build" --output-on-failure
echo "== Python tests (pytest)"
cd "$root"
FMOE_BUILD_DIR="$build" python3 -m pytest -q tests
