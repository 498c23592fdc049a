"""py_mpi.py - the Python bindings under mpirun -np N (tests/mpi.cmake), no mpi4py:
fmd.Comm("mpi"), a data-parallel fmd.Distiller(..., comm=comm) whose Python
teacher is called with this rank's rows only, its student against one
process's, and fmd.train_teacher(..., comm=comm) against one process's."""
import sys

import numpy as np

import fmd

TOL = 1e-5  # as tests/mpi/mpi_distill.c: summation order is the only difference
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


comm = fmd.Comm("mpi")
R, N = comm.rank, comm.size
check(N >= 2, f"needs 2+ ranks, got {N}")
check(comm.description.startswith("mpi:"), f"description {comm.description!r}")
check(fmd.Comm("none").size == 1, "Comm('none') is one process")
try:
    fmd.Comm("tcp")
    check(False, "Comm('tcp') was accepted")
except fmd.InvalidArgument:
    pass

ring = fmd.Teacher.mixture("ring8")
rows = []


def velocity(x, t, labels):
    rows.append(x.shape[0])
    return ring.velocity(np.array(x), np.array(t))


T = fmd.Teacher.from_callable(velocity, dim=2)
kw = dict(batch=12, seed=5, student_options=dict(width=16, seed=3))
d = fmd.Distiller(T, comm=comm, **kw)
rows.clear()
d.run(20)
check(rows and max(rows) <= 12 // N, f"rank {R}: the teacher saw batches {sorted(set(rows))}, "
      f"more than the rank's {12 // N} rows")
ref = fmd.Distiller(T, **kw)
ref.run(20)
z = fmd.prior_noise(64, 2, seed=9)
a, b = d.student.forward(z, 1.0), ref.student.forward(z, 1.0)
rel = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
check(rel < TOL, f"rank {R}: the student differs from one process's by {rel:.3g}")
check(abs(d.stats["loss_pred"] - ref.stats["loss_pred"]) <= TOL * abs(ref.stats["loss_pred"]),
      f"rank {R}: loss_pred {d.stats['loss_pred']} vs {ref.stats['loss_pred']}")

data = fmd.Dataset.from_mixture(ring, 500, seed=1)
opts = dict(steps=5, batch=12, width=32, lr_warmup=1)
tp = fmd.train_teacher(data, comm=comm, **opts)
t1 = fmd.train_teacher(data, **opts)
x = fmd.prior_noise(32, 2, seed=4)
va, vb = tp.velocity(x, 0.5), t1.velocity(x, 0.5)
relt = float(np.max(np.abs(va - vb)) / np.max(np.abs(vb)))
check(relt < TOL, f"rank {R}: the trained teacher differs from one process's by {relt:.3g}")
if R == 0:
    print(f"python, {N} ranks: student rel. difference {rel:.3g}, teacher {relt:.3g}")
del d, ref
comm.close()
sys.exit(1 if failures else 0)
