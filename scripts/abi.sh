#!/usr/bin/env bash
# scripts/abi.sh - the public ABI of libfmd.so against the committed baseline
# tests/abi/libfmd.abi (an abidw dump: exported functions with their symbol
# versions and, from the library's debug info, the types of their parameters
# and results as declared in include/fmd.h).  Needs Debian's abigail-tools.
#
#   scripts/abi.sh check build/libfmd.so    abidiff against the baseline; exit 1
#                                           on an incompatible change (a removed
#                                           or changed function or type), 0 when
#                                           compatible (added functions are fine)
#   scripts/abi.sh dump build/libfmd.so     regenerate tests/abi/libfmd.abi
#
# An incompatible change must bump the SONAME (FMD_ABI_MAJOR in CMakeLists.txt)
# and regenerate the baseline in the same commit; a compatible addition goes in
# a new version node of lib/fmd.map and the baseline is regenerated to include
# it.  Exit 0 with a note when abidiff is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}; lib=${2:-}
[ -n "$mode" ] && [ -n "$lib" ] || { sed -n '2,16p' "$0"; exit 2; }
if ! command -v abidw > /dev/null || ! command -v abidiff > /dev/null; then
  echo "scripts/abi.sh: abigail-tools not installed; ABI check skipped"
  exit 0
fi
base=tests/abi/libfmd.abi
dump() {   # lib out
  abidw --headers-dir include --drop-private-types --no-corpus-path --no-show-locs \
        --no-comp-dir-path --out-file "$2" "$1"
}
case "$mode" in
  dump)
    dump "$lib" "$base"
    echo "scripts/abi.sh: wrote $base ($(grep -c '<elf-symbol ' "$base") symbols)" ;;
  check)
    readelf -S "$lib" | grep -q '\.debug_info' || {
      echo "scripts/abi.sh: $lib has no debug info (configure with FMD_ABI_DEBUGINFO=ON)"; exit 1; }
    set +e
    abidiff --headers-dir2 include --drop-private-types --no-added-syms "$base" "$lib" > /tmp/fmd-abidiff.$$ 2>&1
    rc=$?
    set -e
    # abidiff's status bits: 1 error, 2 usage, 4 ABI change, 8 incompatible change
    if [ $(( rc & 3 )) -ne 0 ] || [ $(( rc & 8 )) -ne 0 ]; then
      cat /tmp/fmd-abidiff.$$; rm -f /tmp/fmd-abidiff.$$
      echo "scripts/abi.sh: incompatible ABI change against $base (status $rc)"; exit 1
    fi
    if [ $(( rc & 4 )) -ne 0 ]; then cat /tmp/fmd-abidiff.$$; fi
    rm -f /tmp/fmd-abidiff.$$
    echo "scripts/abi.sh: ABI compatible with $base" ;;
  *) echo "scripts/abi.sh: unknown mode '$mode' (check or dump)" >&2; exit 2 ;;
esac
