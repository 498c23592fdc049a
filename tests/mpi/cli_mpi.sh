#!/bin/sh
# cli_mpi.sh MPIRUN FMD - `fmd distill` under mpirun (tests/mpi.cmake):
#   1. mpirun -np 2 fmd distill / train-teacher: exit 0, progress and "wrote"
#      from rank 0 only, the files load;
#   2. --comm none with an MPI launcher's variable set runs one process
#      (auto would look for MPI), and --comm bogus is a usage error;
#   3. kill -9 of rank 1 mid-run ends the whole job within BOUND seconds with
#      a non-zero exit, and the last checkpoint still loads.
set -u
MPIRUN=$1
FMD=$2
BOUND=30
MPI="$MPIRUN --allow-run-as-root --oversubscribe"
fail=0
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
no() { echo "FAIL: $*"; fail=1; }

# 1
$MPI -np 2 "$FMD" distill --teacher mixture:ring8 --out a.fmd --steps 20 --batch 16 \
    --student-set width=32 >out 2>err || no "mpirun -np 2 fmd distill exited $?: $(cat err)"
[ "$(grep -c '^wrote a.fmd' out)" = 1 ] || no "expected one 'wrote' line (rank 0), got: $(cat out)"
[ "$(grep -c 'data-parallel over 2 ranks' err)" = 1 ] || no "rank 0 should report 2 ranks once: $(cat err)"
"$FMD" sample --student a.fmd --n 4 --out s.npy >/dev/null 2>&1 || no "a.fmd does not load as a student"

# 1b: train-teacher the same way
$MPI -np 2 "$FMD" train-teacher --data mixture:ring8 --n 500 --out t.fmd --steps 10 \
    --set batch=16 --set width=32 >out 2>err || no "mpirun -np 2 fmd train-teacher exited $?: $(cat err)"
[ "$(grep -c '^wrote t.fmd' out)" = 1 ] || no "train-teacher: expected one 'wrote' line, got: $(cat out)"
"$FMD" info t.fmd >/dev/null 2>&1 || no "t.fmd is not a readable file"

# 2
OMPI_COMM_WORLD_SIZE=2 "$FMD" distill --teacher mixture:ring8 --out b.fmd --steps 5 --batch 16 \
    --student-set width=32 --comm none >out 2>err || no "--comm none exited $?: $(cat err)"
grep -q 'data-parallel' err && no "--comm none ran data-parallel: $(cat err)"
"$FMD" distill --teacher mixture:ring8 --out c.fmd --steps 5 --comm tcp >out 2>err
rc=$?
{ [ $rc != 0 ] && grep -q "'tcp'" err; } || no "--comm tcp: exit $rc, message $(cat err)"

# 3
$MPI -np 2 "$FMD" distill --teacher mixture:ring8 --out k.fmd --steps 100000000 --batch 16 \
    --student-set width=32 --checkpoint-every 20 --quiet >kout 2>&1 &
mp=$!
i=0
while [ ! -f k.fmd ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
victim=""
for p in $(pgrep -P $mp); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=1$'; then victim=$p; fi
done
if [ ! -f k.fmd ] || [ -z "$victim" ]; then
    no "no checkpoint or no rank 1 to kill (checkpoint: $(ls k.fmd 2>&1), ranks: $(pgrep -P $mp))"
    kill $mp 2>/dev/null
else
    sleep 0.5
    kill -9 "$victim"
    t0=$(date +%s)
    while kill -0 $mp 2>/dev/null && [ $(($(date +%s) - t0)) -le $BOUND ]; do sleep 0.2; done
    if kill -0 $mp 2>/dev/null; then
        no "the job still runs $BOUND s after rank 1 was killed"
        kill -9 $mp
    fi
    wait $mp
    rc=$?
    echo "kill -9 of rank 1: job ended after $(($(date +%s) - t0)) s with exit status $rc"
    [ $rc != 0 ] || no "the job exited 0 after a rank was killed"
    "$FMD" sample --student k.fmd --n 4 --out k.npy >/dev/null 2>&1 || no "the last checkpoint does not load"
fi
[ $fail = 0 ] && echo "cli_mpi: all checks passed"
exit $fail
