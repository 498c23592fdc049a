"""1,000 create/destroy cycles of every object kind without memory growth
(resident set size read from /proc/self/statm)."""
import gc
import os

import numpy as np
import pytest

import fmd


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cycle(cpu, ring8):
    o = fmd.Options(batch=8, lr=1e-3, target="jvp")
    t = fmd.Teacher.from_callable(lambda x, t, l: -x, 2)
    t.velocity(np.ones((2, 2), np.float32), 0.5)
    g = fmd.Teacher.gmm([1.0, 2.0], [[0.0, 0.0], [1.0, 1.0]], [0.5, 0.5])
    s = fmd.Student.from_teacher(ring8, cpu, width=8, depth=1)
    s.sample(2)
    d = fmd.Distiller(ring8, s, batch=4)
    smp = fmd.Sampler(s, ring8)
    smp.sample(2)
    ds = fmd.Dataset.from_mixture(ring8, 16, seed=1)
    ev = fmd.Evaluator(g, n=4)
    with pytest.raises(fmd.InvalidArgument):
        fmd.Backend("gpu")
    for obj in (ev, ds, smp, d, s, g, t, o):
        obj.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_create_destroy_cycles_do_not_grow(cpu, ring8):
    for _ in range(100):          # warm up allocator pools and caches
        cycle(cpu, ring8)
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        cycle(cpu, ring8)
    gc.collect()
    grown = rss_bytes() - before
    # one cycle allocates well over 100 KiB (student, distiller arenas); a leak of
    # even 4 KiB per cycle would add 4 MB
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown / 1024:.0f} KiB over 1000 cycles"


def test_backend_open_close_cycles():
    for _ in range(20):
        fmd.Backend("cpu").close()
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        with fmd.Backend("cpu") as b:
            assert b.name == "cpu"
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 2 * 1024 * 1024, f"RSS grew by {grown / 1024:.0f} KiB over 1000 backends"
