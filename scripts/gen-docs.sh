#!/usr/bin/env bash
# Regenerates docs/generated/ (the dialect's and the passes' reference) from
# the TableGen definitions. With --check, fails when they are out of date.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FMOE_BUILD_DIR:-$root/build}"
ninja -C "$build" mlir-doc >/dev/null
if [ "${1:-}" = "--check" ]; then
  cmp -s "$build/docs/Dialects/FMoEDialect.md" "$root/docs/generated/Dialect.md" &&
    cmp -s "$build/docs/FMoEPasses.md" "$root/docs/generated/Passes.md" ||
    { echo "docs/generated is out of date: run scripts/gen-docs.sh"; exit 1; }
  echo "docs: up to date"
else
  cp "$build/docs/Dialects/FMoEDialect.md" "$root/docs/generated/Dialect.md"
  cp "$build/docs/FMoEPasses.md" "$root/docs/generated/Passes.md"
fi
