#!/usr/bin/env bash
# scripts/demo.sh - install what is missing, build, and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
fmd_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
if [ -x build/tools/fmd/fmd ]; then
  build/tools/fmd/fmd demo --out demo-out
elif [ -x build/examples/example_distill_ring8 ]; then
  build/examples/example_distill_ring8
else
  build/examples/example_backend_info
fi
