#!/bin/sh
# abort.sh MPIRUN PYTHON - a rank that fails (rather than dies) ends the whole
# job: tests/mpi/py_abort.py under mpirun -np 2 must exit non-zero within
# BOUND seconds with rank 1's message on stderr.
set -u
BOUND=30
err=$(mktemp)
trap 'rm -f "$err"' EXIT
t0=$(date +%s)
timeout $((BOUND + 30)) "$1" --allow-run-as-root --oversubscribe -np 2 "$2" \
    "$(dirname "$0")/py_abort.py" >/dev/null 2>"$err"
rc=$?
dt=$(($(date +%s) - t0))
echo "a failing rank: the job ended after $dt s with exit status $rc"
fail=0
[ $rc != 0 ] || { echo "FAIL: exit status 0"; fail=1; }
[ $dt -le $BOUND ] || { echo "FAIL: took $dt s (bound $BOUND s)"; fail=1; }
grep -q "rank 1 failed: .*rank 1 teacher failure" "$err" || {
    echo "FAIL: rank 1's message is not on stderr:"; cat "$err"; fail=1; }
grep -q "the run finished" "$err" && { echo "FAIL: a rank finished the run"; fail=1; }
exit $fail
