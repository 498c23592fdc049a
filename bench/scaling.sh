#!/bin/sh
# bench/scaling.sh [BUILD_DIR] - weak and strong scaling of a data-parallel
# distillation step over MPI ranks, one thread per rank (bench/scaling.c).
#   strong: the global batch B fixed, split over N ranks; efficiency
#           E = t(1) / (N t(N)) (t: seconds per step; 1 = ideal);
#   weak:   b rows per rank, batch N b; efficiency E = t(1, b) / t(N, N b).
# Environment: RANKS (default "1 2"), B (strong global batch, 512), b (weak
# rows per rank, 256), WIDTH (256), DEPTH (4), STEPS (50).  Prints one line
# per run (with the share of the step the gradient sums take) and the table.
set -eu
BUILD=${1:-build}
RANKS=${RANKS:-1 2}
B=${B:-512}
b=${b:-256}
WIDTH=${WIDTH:-256}
DEPTH=${DEPTH:-4}
STEPS=${STEPS:-50}
BIN=$BUILD/bench/bench_scaling
[ -x "$BIN" ] || { echo "bench/scaling.sh: build $BIN first (cmake --build $BUILD --target bench_scaling fmd_mpi)" >&2; exit 1; }
export FMD_COMM_PATH=$BUILD FMD_NUM_THREADS=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
run() { # ranks batch
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$1" "$BIN" --batch "$2" \
        --steps "$STEPS" --width "$WIDTH" --depth "$DEPTH"
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for n in $RANKS; do
    echo "strong $(run "$n" "$B")" | tee -a "$out"
    echo "weak $(run "$n" $((n * b)))" | tee -a "$out"
done
echo
echo "| scaling | ranks | global batch | rows/rank | ms/step | efficiency | gradient sums ms (share) |"
echo "|---|---|---|---|---|---|---|"
awk '{ mode = $1; n = $3; t = $11
       if (n == 1) base[mode] = t
       e = (mode == "strong") ? base[mode] / (n * t) : base[mode] / t
       printf "| %s | %d | %d | %d | %.2f | %.2f | %.2f (%.0f%%) |\n", mode, n, $5, $7, t, e, $13, 100 * $15 }' "$out"
