#!/usr/bin/env python3
"""seeds_summary.py - the table of bench/seeds.sh.

    seeds_summary.py DIR NAME [NAME ...]

Reads DIR/NAME-sS.json (bench_gmm --json, one student row each) and prints,
per setting: the final energy distance and map error of every seed, their
mean and standard deviation, the slowest steps/s, and, for every setting but
the first, in how many seeds its energy distance (and map error) is <= the
first setting's on the same seed.  Standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys


def load(d, name):
    out = {}
    for p in glob.glob(os.path.join(d, name + "-s*.json")):
        m = re.search(r"-s(\d+)\.json$", p)
        try:
            j = json.load(open(p))
            row = j["teachers"][0]["rows"][-1]
        except (OSError, ValueError, KeyError, IndexError):
            continue
        out[int(m.group(1))] = row
    return out


def ms(v):
    if not v:
        return "-"
    if len(v) == 1:
        return "%.6f" % v[0]
    return "%.6f ± %.6f" % (statistics.mean(v), statistics.stdev(v))


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: seeds_summary.py DIR NAME [NAME ...]")
    d, names = sys.argv[1], sys.argv[2:]
    runs = {n: load(d, n) for n in names}
    ref = runs[names[0]]
    device = ""
    for p in glob.glob(os.path.join(d, "*.json")):
        try:
            device = json.load(open(p))["device"]
            break
        except (OSError, ValueError, KeyError):
            pass
    print("# %s; reference setting %s" % (device, names[0]))
    print("| setting | seeds | energy distance per seed | ED mean ± sd | map error mean ± sd "
          "| ED ≤ %s | map ≤ %s | slowest steps/s |" % (names[0], names[0]))
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        r = runs[n]
        seeds = sorted(r)
        ed = [r[s]["energy_distance"] for s in seeds]
        me = [r[s]["map_error"] for s in seeds]
        per = " / ".join("%.6f" % x for x in ed)
        if n == names[0]:
            le = lm = "-"
        else:
            both = [s for s in seeds if s in ref]
            le = "%d of %d" % (sum(r[s]["energy_distance"] <= ref[s]["energy_distance"] for s in both),
                               len(both))
            lm = "%d of %d" % (sum(r[s]["map_error"] <= ref[s]["map_error"] for s in both), len(both))
        sps = min((r[s]["steps_per_s"] for s in seeds), default=0)
        print("| %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
            n, ",".join(map(str, seeds)) or "none", per or "-", ms(ed), ms(me), le, lm, sps))
    print()
    print("Learning curves (step:map/ED), per seed:")
    for n in names:
        for s in sorted(runs[n]):
            c = runs[n][s].get("curve", [])
            print("  %s s%d %s" % (n, s, " ".join(
                "%d:%.4f/%.5f" % (k["step"], k["map_error"] or 0, k["energy_distance"] or 0) for k in c)))


if __name__ == "__main__":
    main()
