#!/usr/bin/env python3
"""Draw docs/figures/flow_map.svg: the teacher's ODE paths from noise (t = 1)
to data (t = 0) for the ring8 mixture, and the one-step jumps z -> f(z, 1) of
a student distilled from it without data.  Uses the fmd Python bindings:

    PYTHONPATH=bindings/python python3 docs/figures/make_flow_map_svg.py [steps]
"""
import sys
from pathlib import Path

import numpy as np

import fmd

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
teacher = fmd.Teacher.mixture("ring8")
d = fmd.Distiller(teacher, batch=128, student_options=dict(width=96, depth=3))
d.run(steps)
student = d.student
score = fmd.Evaluator(teacher, n=1000).student(student)
print("student: map error %.3f, modes %d/%d" % (score["map_error"], score["modes_covered"],
                                                score["modes_total"]))

n, k = 24, 24
z = fmd.prior_noise(n, 2, seed=11)
path = [z.copy()]
x = z.copy()
nfe = 0
for i in range(k):                       # the ODE in k pieces, 2 RK4 steps each
    t0, t1 = 1 - i / k, 1 - (i + 1) / k
    teacher.solve(x, solver="rk4", steps=2, t_start=t0, t_end=t1)
    nfe += teacher.last_nfe
    path.append(x.copy())
path = np.stack(path, 1)                 # (n, k + 1, 2)
jump = student.forward(z, 1.0)
cloud = student.sample(2000, seed=2)
data = teacher.sample_data(3000, seed=3)

W, H, S = 760, 380, 50.0                 # two panels, 50 px per unit


def px(p, ox):
    return ox + W / 4 + S * p[0], H / 2 + 20 - S * p[1]


def inside(p):
    return abs(p[0]) < 3.6 and abs(p[1]) < 3.2


out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
       f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">',
       '<rect width="100%" height="100%" fill="white"/>',
       '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
       '<path d="M0,0 L8,4 L0,8 z" fill="#d62728"/></marker></defs>']
for p in data[:1500]:
    if not inside(p):
        continue
    x0, y0 = px(p, 0)
    out.append(f'<circle cx="{x0:.0f}" cy="{y0:.0f}" r="1" fill="#bbbbbb"/>')
for i in range(n):
    if not (inside(z[i]) and inside(jump[i])):
        continue
    pts = " ".join("%.0f,%.0f" % px(p, 0) for p in path[i])
    out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="1.3"/>')
    a, b = px(z[i], 0), px(jump[i], 0)
    out.append(f'<line x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" y2="{b[1]:.1f}" '
               'stroke="#d62728" stroke-width="1.2" stroke-dasharray="4,3" marker-end="url(#a)"/>')
    out.append(f'<circle cx="{a[0]:.1f}" cy="{a[1]:.1f}" r="2.5" fill="black"/>')
for p in cloud:
    if not inside(p):
        continue
    x0, y0 = px(p, W / 2)
    out.append(f'<circle cx="{x0:.0f}" cy="{y0:.0f}" r="1" fill="#d62728" fill-opacity="0.5"/>')
out += [f'<text x="10" y="20">teacher ODE dx/dt = v(x, t), t: 1 → 0 (blue, RK4, {nfe} NFE);</text>',
        '<text x="10" y="38">student jump f(z, 1) = z − F(z, 1) (red, 1 NFE); z: black dots</text>',
        f'<text x="{W / 2 + 10}" y="20">2000 one-step student samples</text>',
        f'<text x="{W / 2 + 10}" y="38">(ring8 mixture, {steps} data-free steps)</text>',
        f'<line x1="{W / 2}" y1="50" x2="{W / 2}" y2="{H - 10}" stroke="#dddddd"/>', '</svg>']
Path(__file__).with_name("flow_map.svg").write_text("\n".join(out) + "\n")
print("wrote", Path(__file__).with_name("flow_map.svg"))
