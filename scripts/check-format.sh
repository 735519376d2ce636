#!/usr/bin/env bash
# Fails when a C++ file is not formatted with clang-format 22 (.clang-format).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
[ -z "$files" ] && exit 0
clang-format-22 --dry-run -Werror $files
echo "format: ok ($(echo "$files" | wc -w) files)"
