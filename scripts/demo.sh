#!/usr/bin/env bash
# scripts/demo.sh - install what is missing (Debian, as root), build, and run
# the main job: `fmd demo` distills the built-in ring8 teacher into a one-step
# student without data, writes demo-out/demo.png (teacher many-step, teacher
# 1-step Euler, student 1-step) and demo-out/loss.png, and prints the metric
# table.  Extra arguments go to `fmd demo` (e.g. --steps 1000, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
fmd_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
out=demo-out
prev=""
for a in "$@"; do
  if [ "$prev" = "--out" ]; then out=$a; fi
  case "$a" in --out=*) out=${a#--out=} ;; esac
  prev=$a
done
build/bin/fmd demo --out "$out" "$@"
echo
echo "pictures: $(pwd)/$out/demo.png and $(pwd)/$out/loss.png"
