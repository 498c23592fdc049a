#!/usr/bin/env bash
# scripts/test.sh - install what is missing (Debian, as root), configure,
# build, and run every test.  Exit status is non-zero on any failure.
#
#   scripts/test.sh              release build in build/, all tests (C, python, ABI, install)
#   scripts/test.sh --sanitize   ASan+UBSan debug build in build-asan/, the C tests
#   scripts/test.sh --no-deps    skip the package check
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sanitize=0; deps=1
for a in "$@"; do
  case "$a" in
    --sanitize) sanitize=1 ;;
    --no-deps) deps=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown option '$a' (see --help)" >&2; exit 2 ;;
  esac
done

jobs=$(nproc 2>/dev/null || echo 2)
# ctest runs tests side by side; OpenMP threads that spin while waiting then
# steal each other's cores (measured: ~40x slower distillation steps).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if [ "$deps" = 1 ]; then
  . "$root/scripts/deps.sh"
  fmd_install_deps
fi

if [ "$sanitize" = 1 ]; then
  bdir="$root/build-asan"
  cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Debug -DFMD_SANITIZE=ON -DFMD_CUDA=OFF -DFMD_BUILD_BENCH=OFF
  cmake --build "$bdir" -j"$jobs"
  # C tests only: Python cannot load an ASan library without preloading the runtime.
  # The *_emu tests run the CUDA plugin's source over a host emulation whose
  # fibers (makecontext/swapcontext) ASan does not support; they run in the
  # release pass.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_odr_violation=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions="$root/tests/lsan.supp"
  (cd "$bdir" && ctest --output-on-failure -j"$jobs" -E '^(pytest_|test_install|test_symbols|test_header)|_emu$' )
  exit $?
fi

bdir="$root/build"
cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Release
cmake --build "$bdir" -j"$jobs"
(cd "$bdir" && ctest --output-on-failure -j"$jobs")
# A bounded fuzzing run of the file loaders when clang's libFuzzer is here.
if [ -x "$root/scripts/fuzz.sh" ] && command -v clang > /dev/null; then
  "$root/scripts/fuzz.sh" --seconds 20 --jobs "$jobs"
fi
