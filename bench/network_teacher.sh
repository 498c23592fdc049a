#!/bin/bash
# network_teacher.sh - distil a trained network teacher (the user's case):
# train an MLP flow teacher on Fashion-MNIST, distil it data-free with
# prediction only, with prediction + correction, and as the data-based
# baseline on the teacher's training images for each seed, score every
# student and the teacher's Euler sampler against its Dormand-Prince solution
# (fmd eval), and draw one picture of the samplers on the same noise.
#
#   bench/network_teacher.sh [OUT_DIR]          (default network-out)
#
# Environment (defaults in brackets): FMD [build/bin/fmd],
# STEPS [3000] distillation steps, SEEDS ["0 1 2"], TEACHER_STEPS [20000],
# CFG [3], LR [3e-4], EVAL_N [2000], KINDS ["pred both data"], JOBS [2] runs
# side by side (each on one thread).  Needs Debian's dataset-fashion-mnist
# and /usr/bin/python3 with numpy (the baseline, the table, the picture).  docs/benchmarks.md ("A network teacher")
# records what it printed.  About 25 minutes on 2 cores with the defaults.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-network-out}
FMD=${FMD:-$HERE/build/bin/fmd}
STEPS=${STEPS:-3000}
SEEDS=${SEEDS:-"0 1 2"}
TEACHER_STEPS=${TEACHER_STEPS:-20000}
CFG=${CFG:-3}
LR=${LR:-3e-4}
EVAL_N=${EVAL_N:-2000}
JOBS=${JOBS:-2}
KINDS=${KINDS:-"pred both data"}
FMD_LIBRARY=${FMD_LIBRARY:-$HERE/build/libfmd.so}
data=/usr/share/datasets/fashion-mnist
[ -x "$FMD" ] || { echo "network_teacher.sh: no fmd binary at $FMD (build first)" >&2; exit 2; }
[ -r $data/train-images-idx3-ubyte.gz ] ||
    { echo "network_teacher.sh: $data missing (apt-get install dataset-fashion-mnist)" >&2; exit 2; }
mkdir -p "$out"
cd "$out"
T=teacher.fmd
if [ ! -s $T ]; then
    "$FMD" train-teacher --data idx:$data/train-images-idx3-ubyte.gz,$data/train-labels-idx1-ubyte.gz \
        --out $T --steps "$TEACHER_STEPS" --set width=512 --set depth=4 2> train.log
fi

# one distillation + evaluation: $1 = pred | both | data (the data-based
# baseline on the teacher's own training images, bench/distill_data.py), $2 = seed
run() {
    local kind=$1 seed=$2 name=$1-s$2
    if [ "$kind" = data ]; then
        FMD_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$HERE/bench/distill_data.py" \
            --teacher $T --cfg "$CFG" --steps "$STEPS" --seed "$seed" --set corr=0 --set batch=256 \
            --set lr="$LR" --out "$name.fmd" > "$name.log" 2>&1
    else
        FMD_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$FMD" distill --teacher $T --out "$name.fmd" \
            --steps "$STEPS" --batch 256 --lr "$LR" --cfg "$CFG" --seed "$seed" \
            $([ "$kind" = pred ] && echo --set corr=0) 2> "$name.log"
    fi
    FMD_NUM_THREADS=1 "$FMD" eval --teacher $T --student "$name.fmd" --cfg "$CFG" --n "$EVAL_N" \
        --euler 1,2,4,8,16 --json > "$name.json" 2>> "$name.log"
}
export -f run
export T FMD STEPS LR CFG EVAL_N HERE FMD_LIBRARY
jobs_list=()
for s in $SEEDS; do
    for k in $KINDS; do jobs_list+=("run $k $s"); done
done
printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -I{} bash -c '{}'

/usr/bin/python3 - "$SEEDS" <<'EOF'
import json, os, sys
seeds = sys.argv[1].split()
def load(name):
    return {r["sampler"]: r for r in json.load(open(name + ".json"))["results"]}
first = load(f"pred-s{seeds[0]}")
print(f"{'method':28s} {'map err':>9s} {'energy':>9s}   (floor {first['student 1-step']['energy_floor']:.5f})")
for k, r in first.items():
    if k.startswith("teacher"):
        print(f"{k:28s} {r['map_error']:9.5f} {r['energy_distance']:9.5f}")
for kind in [k for k in ("pred", "both", "data") if os.path.exists(f"{k}-s{seeds[0]}.json")]:
    ms, es = [], []
    for s in seeds:
        r = load(f"{kind}-s{s}")["student 1-step"]
        ms.append(r["map_error"]); es.append(r["energy_distance"])
        print(f"student {kind:5s} seed {s:<9s} {r['map_error']:9.5f} {r['energy_distance']:9.5f}")
    print(f"student {kind:5s} mean           {sum(ms)/len(ms):9.5f} {sum(es)/len(es):9.5f}")
EOF
s0=$(echo $SEEDS | cut -d' ' -f1)
students=()
for k in pred both data; do
    [ -s "$k-s$s0.fmd" ] && students+=(--student "$k=$k-s$s0.fmd")
done
/usr/bin/python3 "$HERE/bench/network_grid.py" --teacher $T --cfg "$CFG" "${students[@]}" \
    --per-class 2 --out grid.png
