#!/usr/bin/python3
"""network_grid.py - one picture comparing a network teacher's samplers with
distilled one-step students on the same noise (images, one column per class).

Rows, top to bottom: the teacher's adaptive Dormand-Prince solution, its
Euler sampler at each --euler step count, then each student's one-step sample
f(z, 1).  Every row uses the same prior noise z (seed, index i) and class
i mod num_classes, so a column shows one noise through every method.

  /usr/bin/python3 bench/network_grid.py --teacher T.fmd --cfg 3 \\
      --student "pred-only=P.fmd" --student "pred+corr=B.fmd" --out grid.png

Needs libfmd (build/libfmd.so, or FMD_LIBRARY) and numpy; bench/network_teacher.sh
runs it.  The row order is printed so a caption can name the rows.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings",
                                "python"))
import fmd  # noqa: E402
from distill_data import load_teacher  # noqa: E402  (bench/, this script's folder)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale of the teacher rows")
    ap.add_argument("--euler", default="1,4", help="teacher Euler step counts (comma list)")
    ap.add_argument("--per-class", type=int, default=1, help="noises per class (rows per method)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    T = load_teacher(a.teacher, a.cfg)
    K = max(T.num_classes, 1)
    n = K * a.per_class
    labels = (np.arange(n) % K).astype(np.int32) if T.num_classes else None
    z = fmd.prior_noise(n, T.dim, seed=a.seed)
    rows, names = [], []
    x = z.copy()
    rows.append(T.solve(x, labels, solver="dopri5"))
    names.append(f"teacher Dormand-Prince ({T.last_nfe} NFE)")
    for k in [int(s) for s in a.euler.split(",") if s]:
        x = z.copy()
        rows.append(T.solve(x, labels, solver="euler", steps=k))
        names.append(f"teacher Euler-{k}")
    for spec in a.student:
        name, _, path = spec.partition("=")
        S = fmd.Student.load(path)
        rows.append(S.forward(z, 1.0, labels))
        names.append(f"student {name} (1 NFE)")
    side = int(round(np.sqrt(T.dim)))
    if side * side != T.dim:
        print(f"network_grid: dim {T.dim} is not a square image", file=sys.stderr)
        return 2
    imgs = np.concatenate(rows).reshape(-1, 1, side, side).astype(np.float32)
    fmd.plot_image_grid(a.out, imgs, cols=n, lo=-1.0, hi=1.0)
    for i, nm in enumerate(names):
        print(f"row {i + 1}: {nm}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
