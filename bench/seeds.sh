#!/usr/bin/env bash
# seeds.sh - run bench_gmm for several distiller settings over several seeds,
# every (setting, seed) in its own process at once, and print how each setting
# compares with the first one seed by seed (bench/seeds_summary.py).
#
#   bench/seeds.sh [--bench PATH] [--backend cpu|cuda] [--teacher T] [--seeds "0 1 2 3"]
#                  [--out DIR] [--base "bench_gmm args"] NAME='ROWS ARGS...' ...
#
# Each setting is NAME='ROWS ARGS...': the bench_gmm rows to train (pred,
# both, ...) and the extra arguments, e.g.
#     P='pred'  B='both --set aux_updates=4 --set aux_lr=3e-3 --set alpha=0.1'
# --base holds the arguments every run shares (default: the classes4-d32
# measurement of docs/benchmarks.md, 16000 steps, 16,000 evaluation samples).
# Each run adds --student seed=S --set seed=S and writes DIR/NAME-sS.json and
# DIR/NAME-sS.log; the summary goes to DIR/summary.txt.  Processes run with
# one thread each (FMD_NUM_THREADS=1): start as many as the machine has cores.
set -u
cd "$(dirname "$0")/.."
BENCH=${FMD_BUILD_DIR:-build}/bench/bench_gmm
BACKEND=cpu
TEACHER=classes4-d32
SEEDS="0 1 2 3"
OUTDIR=seeds-out
BASE="--steps 16000 --eval-every 4000 --eval-n 16000 --no-pytorch --quiet --student width=384
 --student temb_dim=64 --set decay_steps=16000 --set lr=2e-3"
CONFIGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bench) BENCH=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    --teacher) TEACHER=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *=*) CONFIGS+=("$1"); shift ;;
    *) echo "seeds.sh: unknown argument '$1' (settings are NAME='ROWS ARGS')" >&2; exit 2 ;;
    esac
done
[ ${#CONFIGS[@]} -gt 0 ] || { echo "seeds.sh: name at least one setting NAME='ROWS ARGS'" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "seeds.sh: $BENCH is not built" >&2; exit 2; }
mkdir -p "$OUTDIR"
PY=${FMD_PYTHON:-python3}
T0=$(date +%s)
pids=()
names=()
for c in "${CONFIGS[@]}"; do
    name=${c%%=*}
    spec=${c#*=}
    rows=${spec%% *}
    extra=""
    [ "$rows" != "$spec" ] && extra=${spec#* }
    for s in $SEEDS; do
        # shellcheck disable=SC2086
        FMD_NUM_THREADS=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$BENCH" --backend "$BACKEND" \
            --teachers "$TEACHER" --rows "$rows" $BASE $extra --student seed="$s" --set seed="$s" \
            --json "$OUTDIR/$name-s$s.json" >"$OUTDIR/$name-s$s.log" 2>&1 &
        pids+=($!)
        names+=("$name-s$s")
    done
done
echo "seeds.sh: ${#pids[@]} runs started ($BACKEND, $TEACHER, seeds $SEEDS)"
fail=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "seeds.sh: ${names[$i]} failed; the end of its log:"
        tail -5 "$OUTDIR/${names[$i]}.log"
        fail=1
    fi
done
echo "seeds.sh: all runs ended after $(( $(date +%s) - T0 )) s"
"$PY" bench/seeds_summary.py "$OUTDIR" "${CONFIGS[@]%%=*}" | tee "$OUTDIR/summary.txt"
exit $fail
