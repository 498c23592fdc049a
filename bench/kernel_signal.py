#!/usr/bin/env python3
"""kernel_signal.py - where in noise level the correction has a signal.

The correction term of corr_field=kernel with corr_ref=samples at a one-step
sample xhat is  (m_pool(x_r) - m_bank(x_r)) / r,  x_r = (1 - r) xhat + r n,
where m_S(x) is the posterior mean of the empirical distribution S at noise
level r (docs/distiller.md, "Kernel field").  This script evaluates that term,
in numpy from sample files, at fixed points:

- the student's one-step samples xhat_i (bank: other student samples), and
- a control where teacher samples stand in for the student (bank: other
  teacher samples): there the term is pure finite-sample noise.

Averaged over R draws of (r, n, bank, pool) per point it prints, per band of
r, the mean |term| for both, and the cosine between the student's averaged
term and the exact error Phi(z_i) - xhat_i (the correction moves xhat by
+eta * term, so a positive cosine is the right direction).

Sample files are float32 (n, D) .npy, e.g. from `fmd sample` (one class per
file on a conditional teacher: pass --class to fmd sample):

    fmd sample --student S.fmd --n 8192 --seed 0 --out stu0.npy      # points
    fmd sample --teacher T --n 8192 --seed 0 --out phi0.npy          # Phi(z), same noise
    fmd sample --student S.fmd --n 8192 --seed 5 --out stu5.npy      # student bank
    fmd sample --teacher T --n 8192 --seed 1 --out tea1.npy          # control points
    fmd sample --teacher T --n 8192 --seed 2 --out tea2.npy          # pool
    fmd sample --teacher T --n 8192 --seed 3 --out tea3.npy          # control bank
    /usr/bin/python3 bench/kernel_signal.py stu0.npy phi0.npy stu5.npy tea1.npy tea2.npy tea3.npy

With --png OUT.png (and PYTHONPATH=bindings/python FMD_LIBRARY=build/libfmd.so) it also draws,
against r, the ratio |term| student / control and the cosine, with libfmd's plot writer.
"""
import argparse

import numpy as np


def kmean(x, r, bank):
    """Posterior mean of the empirical distribution `bank` at (x, r), per row."""
    lg = ((1 - r) / r**2)[:, None] * (x @ bank.T)
    lg -= ((1 - r) ** 2 / (2 * r**2))[:, None] * (bank**2).sum(1)[None, :]
    lg -= lg.max(1, keepdims=True)
    g = np.exp(lg)
    g /= g.sum(1, keepdims=True)
    return g @ bank


def terms(rng, pts, bank_src, pool_src, m, draws, r_loc, r_scale):
    n, d = pts.shape
    out = np.zeros((draws, n, d))
    rs = np.zeros((draws, n))
    for k in range(draws):
        r = 1 / (1 + np.exp(-(r_loc + r_scale * rng.standard_normal(n))))
        xr = (1 - r)[:, None] * pts + r[:, None] * rng.standard_normal((n, d))
        bank = bank_src[rng.choice(len(bank_src), m, replace=False)]
        pool = pool_src[rng.choice(len(pool_src), m, replace=False)]
        out[k] = (kmean(xr, r, pool) - kmean(xr, r, bank)) / r[:, None]
        rs[k] = r
    return out, rs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in ("points", "phi", "student_bank", "control_points", "pool", "control_bank"):
        ap.add_argument(f)
    ap.add_argument("--m", type=int, default=4096, help="bank and pool rows (kernel_bank)")
    ap.add_argument("--n", type=int, default=1024, help="points evaluated")
    ap.add_argument("--draws", type=int, default=64, help="draws averaged per point")
    ap.add_argument("--r-loc", type=float, default=0.8)
    ap.add_argument("--r-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", help="also plot ratio and cosine against r into this PNG")
    ap.add_argument("--title", default="", help="title of the --png plot")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    ld = lambda f: np.load(f).astype(np.float64)
    pts, phi, sb = ld(a.points)[: a.n], ld(a.phi)[: a.n], ld(a.student_bank)
    cp, pool, cb = ld(a.control_points)[: a.n], ld(a.pool), ld(a.control_bank)
    ts, rs = terms(rng, pts, sb, pool, a.m, a.draws, a.r_loc, a.r_scale)
    tc, rc = terms(rng, cp, cb, pool, a.m, a.draws, a.r_loc, a.r_scale)
    err = phi - pts
    en = np.linalg.norm(err, axis=1)
    print(f"{a.n} points, {a.draws} draws each, bank/pool {a.m}, r ~ logit-normal({a.r_loc}, {a.r_scale}); "
          f"|Phi - xhat| mean {en.mean():.4f}")
    print("| r band | share of draws | mean |term|, student | mean |term|, control | "
          "cos(student's mean term, Phi - xhat) |")
    print("|---|---|---|---|---|")
    bands = ((0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 0.85), (0.85, 1.0), (0, 1.0))
    for lo, hi in bands:
        b = band(ts, rs, tc, rc, err, en, lo, hi, min_draws=1)
        if b is None:
            continue
        label = "all" if (lo, hi) == (0, 1.0) else f"[{lo}, {hi})"
        print(f"| {label} | {b[0]:.2f} | {b[1]:.4f} | {b[2]:.4f} | {b[3]:+.3f} |")
    if a.png:
        plot(a, ts, rs, tc, rc, err, en)


def band(ts, rs, tc, rc, err, en, lo, hi, min_draws):
    """For draws with r in [lo, hi): share of the student's draws, mean |term| for
    the student and the control, and the mean cosine between each point's mean
    term and its exact error; None when a side has fewer than min_draws draws."""
    ms, mc = (rs >= lo) & (rs < hi), (rc >= lo) & (rc < hi)
    cnt = ms.sum(0)
    ok = (cnt > 0) & (en > 0)
    if ms.sum() < min_draws or mc.sum() < min_draws or not ok.any():
        return None
    mean_t = np.where(ms[..., None], ts, 0).sum(0)[ok] / cnt[ok][:, None]
    cos = (mean_t * err[ok]).sum(1) / (np.linalg.norm(mean_t, axis=1) * en[ok] + 1e-300)
    return (ms.mean(), np.linalg.norm(ts[ms], axis=1).mean(), np.linalg.norm(tc[mc], axis=1).mean(),
            cos.mean())


def plot(a, ts, rs, tc, rc, err, en):
    """Ratio |term| student / control and the cosine with the exact error, per r bin."""
    import fmd  # libfmd's PNG writer, through the Python bindings

    edges = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97, 1.0]
    xs, ratio, cosm = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        b = band(ts, rs, tc, rc, err, en, lo, hi, min_draws=64)
        if b is None:
            continue
        xs.append(0.5 * (lo + hi))
        ratio.append(b[1] / b[2])
        cosm.append(b[3])
    fmd.plot_curves(a.png, [ratio, cosm, [1.0] * len(xs), [0.0] * len(xs)], x=xs,
                    names=["|term| student / control", "cos(mean term, Phi - xhat)",
                           "ratio 1: no signal", "cos 0"],
                    title=a.title or "kernel correction term against noise level r", width=720,
                    height=420)
    print(a.png)

if __name__ == "__main__":
    main()
