#!/usr/bin/env python3
"""pytorch_freeflow.py - the FreeFlow step of libfmd (docs/math.md) in
PyTorch, on the same MLP, for the speed comparison of bench/gmm.c.

Same algorithm and defaults as lib/algo/freeflow.c: batch split 75/25
(prediction / correction), discrete teacher-step target (one Heun step of the
teacher from 1 - delta' to 1 - delta, h = 0.1 by default as the benchmark
uses), plain MSE, correction with the auxiliary network "teacher +
zero-initialised residual MLP" and gradient balancing lambda = alpha *
mean|Delta| / (mean|v_N - v| + eps), AdamW, gradient clipping, EMA, one
auxiliary update per step.  The teacher is the exact Gaussian mixture given
by --spec (JSON written by bench_gmm: dim, weights, means, stds).

Prints one JSON line: {"steps_per_s": ..., "cpu_steps_per_s": ..., ...}
(wall clock and process CPU time; on a shared machine the CPU-time figure is
the one to compare).  --device cuda runs it on the GPU (each step ends with
.item(), a synchronisation, as libfmd's step ends with one).
Run with Debian's interpreter (/usr/bin/python3), which sees python3-torch.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as Fn


class TimestepEmbedder(nn.Module):
    """DiT's TimestepEmbedder: sinusoid of t*scale, Linear, SiLU, Linear."""

    def __init__(self, freq, width, scale, zero_last=False):
        super().__init__()
        self.freq, self.scale = freq, scale
        self.l0 = nn.Linear(freq, width)
        self.l2 = nn.Linear(width, width)
        if zero_last:
            nn.init.zeros_(self.l2.weight)
            nn.init.zeros_(self.l2.bias)

    def forward(self, t):
        half = self.freq // 2
        f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
        a = (t * self.scale)[:, None] * f[None, :]
        emb = torch.cat([torch.cos(a), torch.sin(a)], dim=1)
        return self.l2(Fn.silu(self.l0(emb)))


class MLP(nn.Module):
    """libfmd's MLP flow model (lib/nn/mlp.c)."""

    def __init__(self, dim, width, depth, freq, student, scale=30.0):
        super().__init__()
        self.t_emb = TimestepEmbedder(freq, width, scale)
        self.d_emb = TimestepEmbedder(freq, width, scale, zero_last=True) if student else None
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth - 1)])
        self.out = nn.Linear(width, dim)

    def forward(self, x, t, d=None):
        c = self.t_emb(t)
        if self.d_emb is not None:
            c = c + self.d_emb(d)
        a = Fn.silu(self.inp(x) + c)
        for h in self.hidden:
            a = Fn.silu(h(a))
        return self.out(a)


class Mixture:
    """Exact velocity of a Gaussian mixture under x_t = (1-t) x0 + t eps."""

    def __init__(self, spec, dev):
        self.w = torch.tensor(spec["weights"], dtype=torch.float32, device=dev)
        self.mu = torch.tensor(spec["means"], dtype=torch.float32, device=dev)
        self.s = torch.tensor(spec["stds"], dtype=torch.float32, device=dev)
        self.d = spec["dim"]

    def velocity(self, x, t):
        t = t[:, None]                                    # (B,1)
        s2 = self.s[None, :] ** 2                         # (1,K)
        sig2 = (1 - t) ** 2 * s2 + t ** 2                 # (B,K)
        m = (1 - t)[:, :, None] * self.mu[None]           # (B,K,d)
        r = x[:, None, :] - m                             # (B,K,d)
        logg = torch.log(self.w)[None] - 0.5 * self.d * torch.log(sig2) \
            - (r * r).sum(-1) / (2 * sig2)
        g = torch.softmax(logg, dim=1)                    # (B,K)
        coef = (t - (1 - t) * s2) / sig2                  # (B,K)
        vk = coef[:, :, None] * r - self.mu[None]         # (B,K,d)
        return (g[:, :, None] * vk).sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--temb", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--h", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--aux-lr", type=float, default=1e-3)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = json.load(open(args.spec))
    T = Mixture(spec, dev)
    D = T.d
    S = MLP(D, args.width, args.depth, args.temb, True).to(dev)
    A = MLP(D, args.width, args.depth, args.temb, False).to(dev)
    nn.init.zeros_(A.out.weight)
    nn.init.zeros_(A.out.bias)
    ema = [p.detach().clone() for p in S.parameters()]
    opt = torch.optim.AdamW(S.parameters(), lr=args.lr, weight_decay=0.0)
    aopt = torch.optim.AdamW(A.parameters(), lr=args.aux_lr, weight_decay=0.0)
    B = args.batch
    Bc = max(1, round(B * 0.25))
    Bp = B - Bc

    def step():
        z = torch.randn(B, D, device=dev)
        dl = torch.rand(Bp, device=dev)
        dl = torch.where(torch.rand(Bp, device=dev) < 0.25, torch.ones_like(dl), dl)
        with torch.no_grad():
            dp = torch.clamp(dl - args.h, min=0.0)
            h = dl - dp
            zp = z[:Bp]
            Fp = S(zp, 1 - dp, dp)
            xa = zp - dp[:, None] * Fp
            v1 = T.velocity(xa, 1 - dp)
            xe = xa - h[:, None] * v1
            v2 = T.velocity(xe, 1 - dl)
            tgt = (dp[:, None] * Fp + h[:, None] * 0.5 * (v1 + v2)) / dl[:, None]
        dall = torch.cat([dl, torch.ones(Bc, device=dev)])
        F = S(z, 1 - dall, dall)
        res = F[:Bp] - tgt
        lp = (res * res).sum(1).mean()
        xhat = (z[Bp:] - F[Bp:]).detach()
        r = torch.sigmoid(0.8 + torch.randn(Bc, device=dev))
        n = torch.randn(Bc, D, device=dev)
        xr = (1 - r)[:, None] * xhat + r[:, None] * n
        with torch.no_grad():
            vt = T.velocity(xr, r)
        R = A(xr, r)
        vdiff = R.detach()
        lam = args.alpha * res.detach().norm(dim=1).mean() / (vdiff.norm(dim=1).mean() + 1e-3)
        lc = lam * (F[Bp:] * vdiff).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        (lp + lc).backward()
        torch.nn.utils.clip_grad_norm_(S.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, S.parameters()):
                e.mul_(args.ema).add_(p, alpha=1 - args.ema)
        la = ((vt + R - (n - xhat)) ** 2).sum(1).mean()
        aopt.zero_grad(set_to_none=True)
        la.backward()
        torch.nn.utils.clip_grad_norm_(A.parameters(), 1.0)
        aopt.step()
        return lp.item()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    c0 = time.process_time()
    lp = 0.0
    for _ in range(args.steps):
        lp = step()
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    print(json.dumps({"steps_per_s": args.steps / dt, "cpu_steps_per_s": args.steps / dc,
                      "steps": args.steps, "loss_pred": lp,
                      "threads": torch.get_num_threads(), "device": args.device,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
