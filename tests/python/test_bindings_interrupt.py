"""Ctrl-C in Python: every long call (Distiller.run with and without a callback,
teacher training, solving, teacher sampling, evaluation) raises KeyboardInterrupt
within a fraction of a second and leaves its object usable with the completed
work kept.  Each case runs in a child interpreter that sends itself SIGINT
while the call runs (a stray KeyboardInterrupt cannot reach pytest then).
The signal goes to the process, as a Ctrl-C does (the kernel may deliver it to
the main thread in the middle of a GEMM: the CPU backend keeps it out of
oneDNN's sgemm, which corrupted the heap)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PRELUDE = r'''
import os, signal, sys, threading, time
import numpy as np
import fmd

def interrupted(call, label, after=0.4, limit=0.5):
    """call() must raise KeyboardInterrupt within `limit` s of a SIGINT sent `after` s in."""
    sent = []
    def fire():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Timer(after, fire)
    timer.start()
    try:
        call()
    except KeyboardInterrupt:
        lat = time.monotonic() - sent[0]
        print(f"{label}: KeyboardInterrupt after {lat:.3f} s")
        assert lat < limit, f"{label}: {lat:.3f} s to react"
        return
    finally:
        timer.join()
    raise AssertionError(f"{label}: the call ended without KeyboardInterrupt")

T = fmd.Teacher.mixture("ring8")
'''

CASES = {
    "distiller_run": r'''
d = fmd.Distiller(T, batch=256)
interrupted(lambda: d.run(10**8), "run")
k = d.steps
assert 0 < k < 10**8, k
assert d.run(3) is True and d.steps == k + 3
''',
    "distiller_run_callback": r'''
d = fmd.Distiller(T, batch=256, progress_every=1)
seen = []
interrupted(lambda: d.run(10**8, callback=lambda s: seen.append(s["step"])), "run+callback")
assert seen and 0 < d.steps < 10**8
k = d.steps
d.run(2, callback=lambda s: None)
assert d.steps == k + 2
''',
    "train_teacher": r'''
data = fmd.Dataset.from_mixture(T, 2000)
interrupted(lambda: fmd.train_teacher(data, steps=10**8, width=64, depth=2, batch=64), "train")
t = fmd.train_teacher(data, steps=5, width=16, depth=2, batch=16)
assert t.dim == 2
''',
    "solve_and_sample": r'''
x = fmd.prior_noise(2000, 2, 0, 0) if hasattr(fmd, "prior_noise") else np.random.default_rng(0).standard_normal((2000, 2)).astype(np.float32)
x = np.ascontiguousarray(x, dtype=np.float32)
interrupted(lambda: T.solve(x, solver="euler", steps=10**6), "solve")
interrupted(lambda: T.sample(2000, solver="rk4", steps=10**6), "teacher sample")
assert T.sample(10, steps=2).shape == (10, 2)
''',
    "evaluate": r'''
ev = fmd.Evaluator(T)
interrupted(lambda: ev.teacher(solver="euler", steps=10**6), "evaluate")
r = ev.teacher(solver="euler", steps=2)
assert r
''',
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ctrl_c_raises_keyboard_interrupt(case):
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(REPO / "bindings" / "python"))
    env.setdefault("FMD_LIBRARY", str(REPO / "build" / "libfmd.so"))
    p = subprocess.run([sys.executable, "-c", PRELUDE + CASES[case] + "\nprint('ok')\n"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout + p.stderr
    # nothing swallowed by ctypes on the way
    assert "Exception ignored" not in p.stderr and "Traceback" not in p.stderr, p.stderr
