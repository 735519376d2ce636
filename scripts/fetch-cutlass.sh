#!/usr/bin/env bash
# Fetches the CUTLASS / CuTe C++ headers into third_party/cutlass/include.
#
# Source: PyPI's nvidia-cutlass wheel, which carries the headers under
# cutlass_library/source/include. Only that include tree is kept (a few MiB),
# so that it can be carried to a GPU machine that has no network.
# Does nothing when the headers are already there.
set -euo pipefail

VERSION="${CUTLASS_VERSION:-4.2.0.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/third_party/cutlass"

if [ -f "$DEST/include/cutlass/cutlass.h" ] && [ -f "$DEST/include/cute/tensor.hpp" ]; then
  echo "fetch-cutlass: headers already in $DEST/include"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-cutlass: downloading nvidia-cutlass==$VERSION"
python3 -m pip download -q --no-deps --disable-pip-version-check \
  "nvidia-cutlass==$VERSION" -d "$TMP"
WHEEL="$(ls "$TMP"/nvidia_cutlass-*.whl 2>/dev/null | head -n1)"
if [ -z "$WHEEL" ]; then
  echo "fetch-cutlass: no wheel was downloaded" >&2
  exit 1
fi

# Unpack only the include tree (a wheel is a zip archive; python's zipfile
# avoids depending on unzip).
python3 - "$WHEEL" "$TMP/x" <<'PY'
import sys, zipfile
prefix = "cutlass_library/source/include/"
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit("fetch-cutlass: the wheel has no " + prefix)
    for n in names:
        z.extract(n, sys.argv[2])
PY

mkdir -p "$DEST"
rm -rf "$DEST/include.tmp"
mv "$TMP/x/cutlass_library/source/include" "$DEST/include.tmp"
echo "$VERSION" > "$DEST/include.tmp/.nvidia-cutlass-version"
rm -rf "$DEST/include"
mv "$DEST/include.tmp" "$DEST/include"
echo "fetch-cutlass: headers in $DEST/include ($(du -sm "$DEST/include" | cut -f1) MiB)"
