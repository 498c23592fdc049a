#!/usr/bin/env python3
"""regress_map.py - how well the student's MLP can represent a teacher's
one-step map when it is given exact targets: plain regression of z -> Phi(z)
(Phi: the teacher's Dormand-Prince map) with the same MLP form as the libfmd
student at delta = 1 (SiLU, depth hidden layers of the given width, residual
output z + MLP(z)).  The distilled student's map error (bench_gmm) set against
this figure separates capacity from what the distillation objective reaches
(docs/distiller.md, grid25's plateau).

    fmd sample --teacher mixture:grid25 --n 70000 --seed 0 --out phi.npy
    /usr/bin/python3 bench/regress_map.py phi.npy --width 128 --steps 6000

The noise z of row i is fmd_prior_noise(seed 0, index i), read through the
library (FMD_LIBRARY, default build/libfmd.so), so the pairs are exactly the
ones `fmd sample` solved.  Rows 60000+ are held out; the map error printed is
MATH.md section 6's: E|f(z) - Phi(z)|^2 / E|Phi - mean Phi|^2 on them.
"""
import argparse
import ctypes
import math
import os
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("phi", help=".npy of the teacher's map, rows = noise indices 0..n-1, seed 0")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4, help="hidden layers (the student's depth)")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--fourier", type=float, default=0.0,
                    help="scale of 64 random Fourier input features (0: raw z, as the student)")
    ap.add_argument("--train", type=int, default=60000, help="rows for training; the rest is held out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    lib = ctypes.CDLL(os.environ.get("FMD_LIBRARY", "build/libfmd.so"))
    lib.fmd_prior_noise.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                    ctypes.c_uint64, ctypes.c_uint64]
    phi = np.load(a.phi).astype(np.float32)
    n, dim = phi.shape
    if n <= a.train:
        raise SystemExit("regress_map.py: %s has %d rows; need more than --train %d" % (a.phi, n, a.train))
    z = np.empty((n, dim), dtype=np.float32)
    if lib.fmd_prior_noise(z.ctypes.data, n, dim, 0, 0) != 0:
        raise SystemExit("regress_map.py: fmd_prior_noise failed")
    Z, P = torch.from_numpy(z), torch.from_numpy(phi)
    zt, pt, zv, pv = Z[:a.train], P[:a.train], Z[a.train:], P[a.train:]
    var = ((pv - pv.mean(0)) ** 2).sum(1).mean()

    feats = torch.randn(dim, 64) * a.fourier if a.fourier > 0 else None
    din = 128 if feats is not None else dim
    layers = [torch.nn.Linear(din, a.width)] + [torch.nn.Linear(a.width, a.width) for _ in range(a.depth - 1)]
    net = torch.nn.ModuleList(layers + [torch.nn.Linear(a.width, dim)])

    def f(x):
        h = x
        if feats is not None:
            p = x @ feats
            h = torch.cat([torch.sin(p), torch.cos(p)], 1)
        for layer in net[:-1]:
            h = torch.nn.functional.silu(layer(h))
        return x + net[-1](h)

    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    t0 = time.time()
    for s in range(1, a.steps + 1):
        idx = torch.randint(0, a.train, (a.batch,))
        loss = ((f(zt[idx]) - pt[idx]) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % max(1, a.steps // 4) == 0 or s == a.steps:
            with torch.no_grad():
                me = float(((f(zv) - pv) ** 2).sum(1).mean() / var)
            print("width %d depth %d fourier %g step %d: map error %.5f (%.0f s)"
                  % (a.width, a.depth, a.fourier, s, me, time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
