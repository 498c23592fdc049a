#!/usr/bin/env bash
# scripts/fuzz.sh - build the libFuzzer targets of the file loaders with clang
# (ASan + libFuzzer coverage over the whole library) in build-fuzz/, and run
# each for a bounded time on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>).  Exit status 1 when a target crashes, leaks,
# hangs or runs out of memory; the input that did it is left in
# build-fuzz/crashes/<target>/.  Exit 0 with a note when clang or libFuzzer
# is missing (nothing to run).
#
#   scripts/fuzz.sh                 60 s per target
#   scripts/fuzz.sh --seconds 20    20 s per target (what scripts/test.sh uses)
#   scripts/fuzz.sh --minutes 10    a campaign: 10 minutes per target
#   scripts/fuzz.sh --target fmd    only these targets (space-separated list of
#                                   fmd fmd_model safetensors teacher_st npy idx spec)
#   scripts/fuzz.sh --jobs 2        targets run 2 at a time (default 1)
# Each run prints the target's executions, coverage (cov: edges) and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=60
targets="fmd fmd_model safetensors teacher_st npy idx spec"
jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --target) targets="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "scripts/fuzz.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if ! command -v clang > /dev/null || ! command -v clang++ > /dev/null; then
  echo "scripts/fuzz.sh: clang not found; fuzzing skipped"
  exit 0
fi
probe=$(mktemp -d)
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}\n' > "$probe/p.c"
if ! clang -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" 2> /dev/null; then
  rm -rf "$probe"
  echo "scripts/fuzz.sh: clang has no libFuzzer runtime; fuzzing skipped"
  exit 0
fi
rm -rf "$probe"

bdir="$root/build-fuzz"
mkdir -p "$bdir"
CC=clang CXX=clang++ cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=Debug -DFMD_FUZZ=ON \
  -DFMD_CUDA=OFF -DFMD_BUILD_BENCH=OFF \
  -DCMAKE_C_FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address" \
  -DCMAKE_CXX_FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address" \
  > "$bdir/configure.log" 2>&1 || { cat "$bdir/configure.log"; exit 1; }
build_targets=""
for t in $targets; do build_targets="$build_targets --target fuzz_$t"; done
cmake --build "$bdir" -j2 $build_targets

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_odr_violation=0
export OMP_WAIT_POLICY=PASSIVE FMD_NUM_THREADS=1
run_one() {   # target: 0 when clean
  local t=$1 work="$bdir/corpus-run/$1" crashes="$bdir/crashes/$1"
  rm -rf "$work"
  mkdir -p "$work" "$crashes"
  cp "$root/tests/fuzz/corpus/$t/"* "$work/"
  if ! "$bdir/tests/fuzz/fuzz_$t" "$work" -max_total_time="$seconds" -max_len=65536 \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$crashes/" \
        -print_final_stats=1 > "$bdir/fuzz_$t.log" 2>&1; then
    echo "scripts/fuzz.sh: fuzz_$t FAILED (input in $crashes/, log $bdir/fuzz_$t.log):"
    tail -40 "$bdir/fuzz_$t.log"
    return 1
  fi
  local cov
  cov=$(grep -Eo "cov: [0-9]+" "$bdir/fuzz_$t.log" | tail -1)
  echo "scripts/fuzz.sh: fuzz_$t ${seconds}s: $(grep -E '^stat::number_of_executed_units' "$bdir/fuzz_$t.log" | awk '{print $2}') execs, ${cov:-cov: ?} edges, $(grep -E '^stat::peak_rss_mb' "$bdir/fuzz_$t.log" | awk '{print $2}') MB peak RSS"
}
status=0
pids=()
names=()
for t in $targets; do
  echo "scripts/fuzz.sh: fuzz_$t for ${seconds}s"
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
