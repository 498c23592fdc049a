#!/usr/bin/env python3
"""Any PyTorch model as the teacher: train a small torch MLP by flow matching
on samples of a 2-D mixture, wrap it with fmd.Teacher.from_callable, and
distil it into a one-step libfmd student.

    python3 torch_teacher.py --train-steps 2000 --steps 1000
"""
import argparse

import numpy as np
import torch
from torch import nn

import fmd


class VelocityNet(nn.Module):
    """v(x, t): a small MLP with the time as an extra input."""

    def __init__(self, dim=2, width=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width),
                                 nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=1))


def train(model, data, steps, batch=256, lr=2e-3):
    """Flow matching in libfmd's convention: x_t = (1 - t) x0 + t eps, target eps - x0."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for i in range(steps):
        x0 = data[torch.randint(0, len(data), (batch,))]
        eps = torch.randn_like(x0)
        t = torch.rand(batch)
        xt = (1 - t[:, None]) * x0 + t[:, None] * eps
        loss = ((model(xt, t) - (eps - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (i + 1) % max(1, steps // 5) == 0:
            print(f"torch teacher step {i + 1}: flow-matching loss {loss.item():.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--student", default="torch_student.fmd")
    args = ap.parse_args()
    torch.manual_seed(0)

    ring = fmd.Teacher.mixture("ring8")
    data = torch.from_numpy(ring.sample_data(20000, seed=0))
    model = VelocityNet()
    train(model, data, args.train_steps)
    model.eval()

    @torch.no_grad()
    def velocity(x, t, labels):
        # x, t are numpy views of libfmd's buffers; return any array-like
        return model(torch.from_numpy(np.array(x)), torch.from_numpy(np.array(t))).numpy()

    teacher = fmd.Teacher.from_callable(velocity, dim=2)
    d = fmd.Distiller(teacher, batch=256, student_options=dict(width=128, depth=3),
                      progress_every=max(1, args.steps // 5))
    d.run(args.steps, lambda s: print(f"distil step {s['step']}: |Delta_G| {s['delta_norm']:.4f}"))

    ev = fmd.Evaluator(teacher, n=500)          # the torch model's own ODE is the reference
    r = ev.student(d.student)
    print(f"one-step student vs the torch teacher's ODE: map error {r['map_error']:.4f}, "
          f"energy distance {r['energy_distance']:.4f} (floor {r['energy_floor']:.4f})")
    d.student.save(args.student)
    print(f"saved {args.student}")


if __name__ == "__main__":
    main()
