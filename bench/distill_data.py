#!/usr/bin/python3
"""distill_data.py - the data-based baseline (docs/math.md) on a network
teacher with its real training data, which `fmd distill` cannot feed.

States x_t = (1 - t) x0 + t eps are drawn from the images of an IDX file
(`data_based=1`, fmd_distiller_set_data); everything else is as in
`fmd distill` (the learning rate decays over --steps, the run's length), and
the checkpoint it writes is scored the same way (`fmd eval --student OUT`).

  /usr/bin/python3 bench/distill_data.py --teacher T.fmd --cfg 3 --steps 3000 \\
      --seed 0 --set batch=256 --set lr=3e-4 --out D.fmd

Needs libfmd (build/libfmd.so, or FMD_LIBRARY) and numpy; bench/network_teacher.sh
runs it.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings",
                                "python"))
import fmd  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def value(s: str):
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return s


def load_teacher(path: str, cfg):
    """The teacher at path, guided with scale cfg (None: as saved) on its own interval."""
    T = fmd.Teacher.load(path)
    if cfg is not None:
        g = T.guidance
        T.set_guidance(cfg, g[1], g[2])
    return T


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--images", default=f"{DATA}/train-images-idx3-ubyte.gz")
    ap.add_argument("--labels", default=f"{DATA}/train-labels-idx1-ubyte.gz")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale of the teacher")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a distiller option (repeatable)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    T = load_teacher(a.teacher, a.cfg)
    opts = {"data_based": 1, "seed": a.seed}
    for kv in a.set:
        k, _, v = kv.partition("=")
        opts[k] = value(v)
    ds = fmd.Dataset.load_idx(a.images, a.labels)
    x0, labels = ds.arrays()
    d = fmd.Distiller(T, student_options={"seed": a.seed}, **opts)
    d.set_data(x0, labels)
    d.run(a.steps)
    d.save(a.out)
    s = d.stats
    print(f"wrote {a.out} (step {d.steps}, loss_pred {s['loss_pred']:.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
