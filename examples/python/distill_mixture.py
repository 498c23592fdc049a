#!/usr/bin/env python3
"""Distil a Gaussian-mixture teacher into a one-step student, without data.

The teacher here is a plain numpy function (the exact velocity of a 2-D
mixture), wrapped with fmd.Teacher.from_callable; the built-in C mixture with
the same parameters scores the result.

    python3 distill_mixture.py --steps 2000 --student ring.fmd --png ring.png
"""
import argparse

import numpy as np

import fmd

W = np.array([1.0, 2.0, 1.0, 2.0])
MU = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
STD = np.array([0.3, 0.2, 0.3, 0.2])


def mixture_velocity(x, t, labels):
    """v(x, t) = E[eps - x0 | x_t = x] for x_t = (1 - t) x0 + t eps (libfmd's convention)."""
    x, t = x.astype(np.float64), t.astype(np.float64)[:, None, None]
    a = 1.0 - t                                               # (B, 1, 1)
    s2 = a ** 2 * STD[None, :, None] ** 2 + t ** 2            # (B, K, 1)
    r = x[:, None, :] - a * MU[None]                          # (B, K, d)
    logp = (np.log(W) - 0.5 * x.shape[1] * np.log(s2[..., 0])
            - 0.5 * (r ** 2).sum(-1) / s2[..., 0])               # log N(x; (1-t) mu_k, s2_k I)
    p = np.exp(logp - logp.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)                              # posterior of each component
    e_eps = t / s2 * r
    e_x0 = MU[None] + a * STD[None, :, None] ** 2 / s2 * r
    return (p[..., None] * (e_eps - e_x0)).sum(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--student", default="mixture_student.fmd")
    ap.add_argument("--png", default="")
    args = ap.parse_args()

    print(f"libfmd {fmd.version()} at {fmd.library_path}; backends {fmd.backends()}")
    teacher = fmd.Teacher.from_callable(mixture_velocity, dim=2)
    exact = fmd.Teacher.gmm(W, MU, STD)
    backend = fmd.Backend("auto")
    student = fmd.Student.from_teacher(teacher, backend, width=args.width, depth=3)
    d = fmd.Distiller(teacher, student, batch=args.batch, progress_every=max(1, args.steps // 10))

    def progress(s):
        print(f"step {s['step']:6d}  |Delta_G| {s['delta_norm']:.4f}  "
              f"|v_N - v| {s['vdiff_norm']:.4f}  {s['steps_per_s']:.0f} steps/s")
    d.run(args.steps, progress)

    ev = fmd.Evaluator(exact, n=1000)
    r = ev.student(d.student)
    e = ev.teacher(solver="euler", steps=1)
    print(f"one-step student : map error {r['map_error']:.4f}, energy distance "
          f"{r['energy_distance']:.4f}, modes {r['modes_covered']}/{r['modes_total']}")
    print(f"teacher, 1 Euler : map error {e['map_error']:.4f}, energy distance "
          f"{e['energy_distance']:.4f}")
    d.student.save(args.student)
    print(f"saved the EMA student to {args.student}")
    if args.png:
        x = d.student.sample(4000, seed=1)
        ref = exact.sample_data(4000, seed=1)
        fmd.plot_density_panels(args.png, [ref, x], titles=["data", "one-step student"])
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
