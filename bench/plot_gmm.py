#!/usr/bin/env python3
"""Learning curves of a bench_gmm --json file as PNG plots, drawn by libfmd's
own plot writer through the Python bindings (no matplotlib needed).

    PYTHONPATH=bindings/python FMD_LIBRARY=build/libfmd.so \\
        /usr/bin/python3 bench/plot_gmm.py RESULT.json OUT_PREFIX

writes OUT_PREFIX-TEACHER-map.png and OUT_PREFIX-TEACHER-energy.png for every
teacher in the file: each student row's curve (EMA student, log scale)
against steps, with the teacher's Euler-8 and Euler-16 levels and, for the
energy distance, the finite-sample floor as flat reference lines.
"""
import json
import sys

import fmd


def short(name):
    """Legend label: 'student pred+corr' -> 'pred+corr', 'teacher Euler-8' -> 'Euler-8'."""
    for p in ("student ", "teacher "):
        if name.startswith(p):
            return name[len(p):]
    return name.replace(" baseline", "")


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        res = json.load(f)
    for t in res["teachers"]:
        rows = [r for r in t["rows"] if len(r.get("curve") or []) > 1]
        if not rows:
            continue
        steps = [c["step"] for c in rows[0]["curve"]]
        rows = [r for r in rows if [c["step"] for c in r["curve"]] == steps]
        refs = {r["name"]: r for r in t["rows"] if r["name"] in ("teacher Euler-8", "teacher Euler-16")}
        for key, label in (("map_error", "map"), ("energy_distance", "energy")):
            ys = [[c[key] if c[key] is not None else float("nan") for c in r["curve"]] for r in rows]
            names = [short(r["name"]) for r in rows]
            for name, r in sorted(refs.items(), key=lambda kv: int(kv[0].split("-")[-1])):
                if r.get(key) is not None:
                    ys.append([r[key]] * len(steps))
                    names.append(short(name))
            if key == "energy_distance" and t.get("energy_floor"):
                ys.append([t["energy_floor"]] * len(steps))
                names.append("floor")
            out = f"{argv[2]}-{t['name']}-{label}.png"
            title = f"{t['name']}: {'map error' if label == 'map' else 'energy distance'} vs steps"
            fmd.plot_curves(out, ys, x=steps, names=names, title=title, log_y=True,
                            width=720, height=420)
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
