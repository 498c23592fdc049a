#!/usr/bin/env python3
"""corr_bias.py - how far the correction's teacher field is from the noising
velocity of what a (nearly) converged student generates, per guidance setting
of the correction (docs/distiller.md, "The correction on a guided teacher").

A student is first distilled with prediction only (no correction) on the
guided teacher; it then stands in for the teacher's guided ODE distribution.
For each setting a fresh distiller is made on a copy of it with the student
frozen (lr 1e-12, correction rows only) and the auxiliary network fitted to
the student's noised samples (setting B: 4 updates per step at lr 3e-3); the
printed figure is the mean |v_N - v| over the last 150 of 500 steps (with
corr_ref=samples: |v_N - g_ref|, g_ref fitted alongside from the same start).  For an
exact student and an exact fit it would be 0 where the correction is
unbiased; the w = 1 control (teacher and student without guidance) gives the
fitting floor.

    PYTHONPATH=bindings/python FMD_LIBRARY=build/libfmd.so FMD_NUM_THREADS=1 \\
        /usr/bin/python3 bench/corr_bias.py [--teacher classes4-d32] [--cfg 3] [--steps 3000]
        [--per-r | --short | --aux-lr [--fit-steps 1200]]
"""
import argparse
import os
import tempfile
import time

import numpy as np

import fmd

SETTINGS = [
    ("library default: scale w for r <= 0.7, 1 above", {}),
    ("scale w at every r", dict(corr_guidance_hi=1.0)),
    ("scale w for r <= 0.6, 1 above", dict(corr_guidance_hi=0.6)),
    ("scale w for r <= 0.5, 1 above", dict(corr_guidance_hi=0.5)),
    ("scale w for r <= 0.4, 1 above", dict(corr_guidance_hi=0.4)),
    ("scale w for r <= 0.3, 1 above", dict(corr_guidance_hi=0.3)),
    ("scale 1 at every r (no guidance)", dict(corr_guidance=1.0)),
    ("scale 1.5 at every r", dict(corr_guidance=1.5, corr_guidance_hi=1.0)),
    ("scale 2 at every r", dict(corr_guidance=2.0, corr_guidance_hi=1.0)),
    ("reference network g_ref (corr_ref=samples), default guidance", dict(corr_ref="samples")),
]


def student_for(teacher, be, steps, width, path):
    t0 = time.time()
    d = fmd.Distiller(teacher, None, be, student_options=dict(width=width, temb_dim=64), corr=0,
                      lr=2e-3, decay_steps=steps, seed=0)
    d.run(steps)
    d.student.save(path)
    return time.time() - t0


def mismatch(teacher, be, path, opts):
    s = fmd.Student.load(path, be)
    d = fmd.Distiller(teacher, s, be, pred=0, corr=1, lr=1e-12, aux_updates=4, aux_lr=3e-3,
                      alpha=0.1, seed=1, **opts)
    v = []
    for i in range(500):
        st = d.step()
        if i >= 350:
            v.append(st["vdiff_norm"])
    return float(np.mean(v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="classes4-d32")
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=3000, help="pred-only steps of the stand-in student")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--per-r", action="store_true",
                    help="hold r fixed (r_scale 1e-3) at several values and print the mismatch per r")
    ap.add_argument("--short", action="store_true",
                    help="only the library default and the reference network (and their controls)")
    ap.add_argument("--aux-lr", action="store_true",
                    help="fit g at aux_lr 3e-3, 1e-3, 3e-4 and print the mismatch and how much "
                         "g's flow-matching loss fell")
    ap.add_argument("--fit-steps", type=int, default=1200, help="--aux-lr: steps of g per aux_lr")
    args = ap.parse_args()
    if args.aux_lr:
        return by_aux_lr(args)
    if args.per_r:
        return per_r(args)
    be = fmd.Backend("cpu")
    t1, p1, tw, pw = stand_ins(args, be)
    print("# %s, CFG %g; stand-in students: pred-only, %d steps, MLP 4 x %d" %
          (args.teacher, args.cfg, args.steps, args.width))
    print("| correction teacher | mean abs(v_N - v) |")
    print("|---|---|")
    print("| control: teacher and student without guidance (w = 1) | %.3f |" %
          mismatch(t1, be, p1, {}), flush=True)
    print("| control, reference network g_ref (corr_ref=samples) | %.3f |" %
          mismatch(t1, be, p1, dict(corr_ref="samples")), flush=True)
    for name, o in SETTINGS:
        if args.short and o and "corr_ref" not in o:
            continue
        print("| %s | %.3f |" % (name, mismatch(tw, be, pw, o)), flush=True)


R_VALUES = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 0.95]
AUX_LRS = [3e-3, 1e-3, 3e-4]


def stand_ins(args, be):
    """The teacher without guidance and with CFG args.cfg, each with its stand-in
    student (pred-only) saved in a temporary directory: (t1, path1, tw, pathw)."""
    tmp = tempfile.mkdtemp(prefix="fmd_corr_bias_")
    t1 = fmd.Teacher.mixture(args.teacher)
    t1.set_guidance(1.0, 0.0, 1.0)
    p1 = os.path.join(tmp, "w1.fmd")
    student_for(t1, be, args.steps, args.width, p1)
    tw = fmd.Teacher.mixture(args.teacher)
    tw.set_guidance(args.cfg, 0.0, 1.0)
    pw = os.path.join(tmp, "w.fmd")
    student_for(tw, be, args.steps, args.width, pw)
    return t1, p1, tw, pw


def fit_by_lr(teacher, be, path, opts, aux_lr, steps):
    """g fitted for `steps` steps at aux_lr against the frozen student: the mismatch
    mean |v_N - v| over the last 100 steps, and how much g's flow-matching loss fell
    (mean of the first 100 steps minus mean of the last half).  The draws are the
    same at every aux_lr (same seed, frozen student), so the losses compare on
    common noise; a fall <= 0 means g fits the student's noised samples no
    better than the teacher field it started from."""
    s = fmd.Student.load(path, be)
    d = fmd.Distiller(teacher, s, be, pred=0, corr=1, lr=1e-12, aux_updates=4, aux_lr=aux_lr,
                      alpha=0.1, seed=1, **opts)
    st = [d.step() for _ in range(steps)]
    v = [x["vdiff_norm"] for x in st]
    la = [x["loss_aux"] for x in st]
    return float(np.mean(v[-100:])), float(np.mean(la[:100]) - np.mean(la[steps // 2:]))


def by_aux_lr(args):
    """Does the auxiliary network learn the student's noising velocity at each aux_lr?"""
    be = fmd.Backend("cpu")
    t1, p1, tw, pw = stand_ins(args, be)
    print("# %s, CFG %g; stand-in students: pred-only, %d steps, MLP 4 x %d; g fitted %d steps "
          "(4 updates each) per aux_lr" % (args.teacher, args.cfg, args.steps, args.width,
                                           args.fit_steps))
    print("| correction (frozen stand-in student) | aux_lr | mean abs(v_N - v), last 100 | "
          "fall of g's loss |")
    print("|---|---|---|---|")
    cases = [("control w = 1, teacher's field", t1, p1, {}),
             ("w = %g, teacher's field (default interval)" % args.cfg, tw, pw, {}),
             ("w = %g, g_ref (corr_ref=samples)" % args.cfg, tw, pw, dict(corr_ref="samples"))]
    for name, t, p, o in cases:
        for lr in AUX_LRS:
            m, fall = fit_by_lr(t, be, p, o, lr, args.fit_steps)
            print("| %s | %g | %.3f | %+.4f |" % (name, lr, m, fall), flush=True)


def per_r(args):
    """The mismatch at fixed r: where in noise level the guided field's bias lives."""
    be = fmd.Backend("cpu")
    t1, p1, tw, pw = stand_ins(args, be)
    print("# %s, CFG %g; stand-in students: pred-only, %d steps, MLP 4 x %d; r held fixed" %
          (args.teacher, args.cfg, args.steps, args.width))
    print("| r | control w = 1 | w for r <= 0.7 (default) | w at every r | no guidance | g_ref |")
    print("|---|---|---|---|---|---|")
    for r in R_VALUES:
        loc = dict(r_loc=float(np.log(r / (1 - r))), r_scale=1e-3)
        row = [mismatch(t1, be, p1, loc),
               mismatch(tw, be, pw, loc),
               mismatch(tw, be, pw, dict(loc, corr_guidance_hi=1.0)),
               mismatch(tw, be, pw, dict(loc, corr_guidance=1.0)),
               mismatch(tw, be, pw, dict(loc, corr_ref="samples"))]
        print("| %.2f | %s |" % (r, " | ".join("%.3f" % v for v in row)), flush=True)


if __name__ == "__main__":
    main()
