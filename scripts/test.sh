#!/usr/bin/env bash
# scripts/test.sh - install what is missing (Debian, as root), configure,
# build, and run every test.  Exit status is non-zero on any failure.
#
#   scripts/test.sh              release build in build/, all tests (C, python, ABI, install)
#   scripts/test.sh --sanitize   ASan+UBSan debug build in build-asan/, the C tests
#   scripts/test.sh --no-deps    skip the package check
#   scripts/test.sh --summary LOG   print the summary line of a ctest log (used at the end)
# The release run takes about 10 minutes on 2 cores; its last line is the summary:
#   scripts/test.sh: 61 passed, 0 failed, 2 skipped (of 63 tests); fuzz ok; 603 s
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# One line from a ctest log: passed / failed / skipped, the failed tests' names.
summary() {
  local log=$1 total failed skipped passed names
  total=$(sed -n 's/.*tests passed, [0-9]* tests* failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests* failed out of.*/\1/p' "$log" | tail -1)
  skipped=$(grep -c 'Test  *#[0-9]*: .*\*\*\*Skipped' "$log" || true)
  [ -n "$total" ] || { echo "no ctest summary in $log"; return 1; }
  passed=$((total - failed - skipped))
  names=$(sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (\(Failed\|Timeout\|SEGFAULT\|Not Run\|Subprocess aborted\|Exception\).*/\1/p' "$log" | tr '\n' ' ')
  printf '%s passed, %s failed, %s skipped (of %s tests)%s' "$passed" "$failed" "$skipped" "$total" \
    "${names:+; failed: ${names% }}"
}

sanitize=0; deps=1
while [ $# -gt 0 ]; do
  a=$1; shift
  case "$a" in
    --summary) summary "$1"; echo; exit 0 ;;
    --sanitize) sanitize=1 ;;
    --no-deps) deps=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown option '$a' (see --help)" >&2; exit 2 ;;
  esac
done
t0=$(date +%s)

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
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_odr_violation=0:allocator_may_return_null=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions="$root/tests/lsan.supp"
  # The mpi_* tests run in the release pass: under LeakSanitizer Open MPI's
  # own modules (dlopened, unnamed in the reports) leak at exit.
  (cd "$bdir" && ctest --output-on-failure -j"$jobs" -E '^(pytest_|test_install|test_symbols|test_header|mpi_)|_emu$' )
  exit $?
fi

bdir="$root/build"
cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Release
cmake --build "$bdir" -j"$jobs"
rc=0
(cd "$bdir" && ctest --output-on-failure -j"$jobs") 2>&1 | tee "$bdir/ctest.log" || rc=1
# A bounded fuzzing run of the file loaders when clang's libFuzzer is here; its
# statistics go to build/fuzz.log so that the summary stays the last line.
fuzz="fuzz skipped (no clang)"
if [ -x "$root/scripts/fuzz.sh" ] && command -v clang > /dev/null; then
  if "$root/scripts/fuzz.sh" --seconds 20 --jobs "$jobs" > "$bdir/fuzz.log" 2>&1; then fuzz="fuzz ok"
  else fuzz="fuzz FAILED (build/fuzz.log)"; rc=1; fi
fi
echo "scripts/test.sh: $(summary "$bdir/ctest.log" || echo "ctest did not finish"); $fuzz; $(( $(date +%s) - t0 )) s"
exit $rc
