#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test fmoe.
# Does nothing when everything is already there.
set -euo pipefail

APT_PACKAGES=(
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools libzstd-dev
  ninja-build clang-format-22 ccache cmake g++ libgtest-dev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  # lit is run from llvm-22-tools; the torch CUDA wheel needs no driver here.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python packages (the fmoe package, its tests and the demo).
if [ -f "$(dirname "$0")/requirements.txt" ]; then
  python3 - "$(dirname "$0")/requirements.txt" <<'PY' || python3 -m pip install -q -r "$(dirname "$0")/requirements.txt"
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if want and have.split("+")[0] != want:
        sys.exit(1)
PY
fi

# CUTLASS headers for the sm90 fused-epilogue grouped GEMMs (PyPI wheel).
bash "$(dirname "$0")/fetch-cutlass.sh"
