#!/usr/bin/python3
"""unseen_mixture.py - the library's defaults on a mixture no default was tuned on.

A 6-mode 2-D Gaussian mixture with unequal weights and widths, off-centre,
distilled through the Python bindings with nothing set but the seed
(fmd.Distiller(T, seed=S).run(STEPS)), scored against the teacher's 4- and
8-step Euler on the same 4000 noises (docs/benchmarks.md, "Defaults: no
options").

  FMD_NUM_THREADS=1 /usr/bin/python3 bench/unseen_mixture.py [SEED] [STEPS]
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings",
                                "python"))
import numpy as np  # noqa: E402
import fmd  # noqa: E402

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
w = np.array([0.30, 0.05, 0.20, 0.10, 0.25, 0.10])
mu = np.array([[2.5, 1.0], [-1.5, 3.0], [0.5, -2.0], [-3.0, -0.5], [3.5, -2.5], [-0.5, 1.2]])
sd = np.array([0.15, 0.40, 0.25, 0.10, 0.30, 0.20])
T = fmd.Teacher.gmm(w, mu, sd)
ev = fmd.Evaluator(T, n=4000)
for k in (4, 8):
    r = ev.teacher(solver="euler", steps=k)
    print(f"teacher euler-{k}: map {r['map_error']:.4f} ed {r['energy_distance']:.4f}", flush=True)
t0 = time.time()
d = fmd.Distiller(T, seed=seed)
d.run(steps)
r = ev.student(d.student)
print(f"student (defaults, seed {seed}, {steps} steps): map {r['map_error']:.4f} "
      f"ed {r['energy_distance']:.4f} ({time.time() - t0:.0f} s)")
