"""gpu_torch.py - PyTorch CUDA reference for bench_gpu's one-step sampling
figures: the same network shapes (an MLP with d=2, width 256, depth 4 at
batch 65536; a SiT-B/2-sized DiT, latent 32x32x4, patch 2, hidden 768, depth
12, 12 heads, 1000 classes, at batch 64) evaluated once per sample in float32
with TF32 off (as libfmd's default), then with TF32 on.  Prints samples/s.
Distillation steps are libfmd-specific and not reproduced here.

    python3 bench/gpu_torch.py [--seconds S]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def temb(t, dim, max_period=10000.0, scale=1000.0):
    half = dim // 2
    f = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = (t * scale)[:, None] * f[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


class MLP(nn.Module):
    def __init__(self, d=2, width=256, depth=4, tdim=256):
        super().__init__()
        self.tdim = tdim
        self.t = nn.Sequential(nn.Linear(tdim, width), nn.SiLU(), nn.Linear(width, width))
        self.d = nn.Sequential(nn.Linear(tdim, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(d, width)
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.out = nn.Linear(width, d)

    def forward(self, x, t, delta):
        h = self.inp(x) + self.t(temb(t, self.tdim, scale=30.0)) + self.d(temb(delta, self.tdim, scale=30.0))
        for lin in self.hidden:
            h = F.silu(lin(h))
        return self.out(h)


class Block(nn.Module):
    def __init__(self, h, heads, ratio=4.0):
        super().__init__()
        self.heads = heads
        self.n1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(h, 3 * h)
        self.proj = nn.Linear(h, h)
        self.n2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(h, int(h * ratio))
        self.fc2 = nn.Linear(int(h * ratio), h)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h))

    def forward(self, x, c):
        B, T, H = x.shape
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=1)
        y = self.n1(x) * (1 + sc1[:, None]) + s1[:, None]
        q, k, v = self.qkv(y).reshape(B, T, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(H // self.heads), dim=-1) @ v
        x = x + g1[:, None] * self.proj(a.transpose(1, 2).reshape(B, T, H))
        y = self.n2(x) * (1 + sc2[:, None]) + s2[:, None]
        return x + g2[:, None] * self.fc2(F.gelu(self.fc1(y), approximate="tanh"))


class DiT(nn.Module):
    def __init__(self, size=32, patch=2, cin=4, h=768, depth=12, heads=12, classes=1000):
        super().__init__()
        self.p, self.cin, self.size = patch, cin, size
        self.emb = nn.Conv2d(cin, h, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2, h) * 0.02)
        self.t = nn.Sequential(nn.Linear(256, h), nn.SiLU(), nn.Linear(h, h))
        self.d = nn.Sequential(nn.Linear(256, h), nn.SiLU(), nn.Linear(h, h))
        self.y = nn.Embedding(classes + 1, h)
        self.blocks = nn.ModuleList([Block(h, heads) for _ in range(depth)])
        self.nf = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.adaf = nn.Sequential(nn.SiLU(), nn.Linear(h, 2 * h))
        self.lin = nn.Linear(h, patch * patch * cin)

    def forward(self, x, t, delta, y):
        B = x.shape[0]
        h = self.emb(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t(temb(t, 256)) + self.d(temb(delta, 256)) + self.y(y)
        for blk in self.blocks:
            h = blk(h, c)
        s, sc = self.adaf(c).chunk(2, dim=1)
        h = self.lin(self.nf(h) * (1 + sc[:, None]) + s[:, None])
        g, p = self.size // self.p, self.p
        return h.reshape(B, g, g, p, p, self.cin).permute(0, 5, 1, 3, 2, 4).reshape(B, self.cin, self.size, self.size)


def rate(fn, batch, seconds):
    fn()
    torch.cuda.synchronize()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        torch.cuda.synchronize()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and reps >= 3:
            return reps * batch / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("PyTorch: no CUDA device")
        return
    dev = torch.device("cuda")
    print(f"# PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}; one-step samples/s (host buffers in/out)")
    torch.manual_seed(0)
    mlp = MLP().to(dev).eval()
    dit = DiT().to(dev).eval()
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        with torch.no_grad():
            n = 65536
            z = torch.randn(n, 2)
            one = torch.ones(n, device=dev)

            def run_mlp():
                x = z.to(dev)
                (x - mlp(x, 1 - one, one)).cpu()

            r1 = rate(run_mlp, n, args.seconds)
            n2 = 64
            z2 = torch.randn(n2, 4, 32, 32)
            one2 = torch.ones(n2, device=dev)
            lab = torch.arange(n2, device=dev) % 1000

            def run_dit():
                x = z2.to(dev)
                (x - dit(x, 1 - one2, one2, lab)).cpu()

            r2 = rate(run_dit, n2, args.seconds)
        print(f"torch    {'tf32' if tf32 else 'fp32'}  mlp (n={n}) {r1:14.1f}   SiT-B/2 (n={n2}) {r2:10.1f}")


if __name__ == "__main__":
    main()
