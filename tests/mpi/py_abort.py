"""py_abort.py - a rank that fails ends the job (tests/mpi/abort.sh runs it under mpirun -np 2):
rank 1's Python teacher raises at its 5th call, rank 1 prints the error and calls
Comm.abort(3), which ends rank 0 too (it waits in the step's sums)."""
import sys

import numpy as np

import fmd

comm = fmd.Comm("mpi")
ring = fmd.Teacher.mixture("ring8")
calls = [0]


def velocity(x, t, labels):
    calls[0] += 1
    if comm.rank == 1 and calls[0] == 5:
        raise RuntimeError("rank 1 teacher failure (deliberate)")
    return ring.velocity(np.array(x), np.array(t))


T = fmd.Teacher.from_callable(velocity, dim=2)
d = fmd.Distiller(T, comm=comm, batch=12, student_options=dict(width=16))
try:
    d.run(1000000)
except Exception as e:  # the rank that failed: its message, then end every rank
    print(f"rank {comm.rank} failed: {e}", file=sys.stderr, flush=True)
    comm.abort(3)
print(f"rank {comm.rank}: the run finished, but rank 1 should have failed", file=sys.stderr)
sys.exit(0)
