"""PyTorch eager baseline for bench/nn.c (the network engine's throughput).

Same models (restated in tests/python/test_nn_parity.py), same sizes, batch
and thread count:
  (a) MLP d=2, width 256, depth 4, batch 1024;
  (b) SiT-S/2-like DiT on 32x32x4 latents (hidden 384, depth 12, 6 heads,
      1000 classes, learn_sigma), batch 32.
forward = inference under torch.no_grad(); fwd+bwd = forward, backward of
sum(out*out)-like upstream gradient, grads set to None each iteration.

  /usr/bin/python3 bench/pytorch_nn.py [--threads N] [--iters-mlp K] [--iters-sit K]
                                       [--fmd build/bench/bench_nn]
--fmd runs the C benchmark with FMD_NUM_THREADS=N first, in the same run.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
import torch  # noqa: E402
import test_nn_parity as ref  # noqa: E402

torch.set_default_dtype(torch.float32)


def mlp_flops(W=256, D=2, depth=4, F=256):
    return 2.0 * (F * W + W * W) + 2.0 * (D * W + (depth - 1) * W * W + W * D)


def dit_flops(c):
    P, C, Cin = c["patch_size"], c["hidden_size"], c["in_channels"]
    T = (c["input_size"] // P) ** 2
    Hm, F = C * c["mlp_ratio"], c["temb_dim"]
    Cout = 2 * Cin if c["learn_sigma"] else Cin
    blk = 2 * T * C * 3 * C + 4 * T * T * C + 2 * T * C * C + 4 * T * C * Hm + 2 * C * 6 * C
    return (2 * T * Cin * P * P * C + 2 * (F * C + C * C) + c["dit_depth"] * blk + 4 * C * C
            + 2 * T * C * P * P * Cout)


def bench(name, model, x, t, y, iters, flops):
    B = x.shape[0]
    for mode in ("forward", "fwd+bwd"):
        times = []
        for it in range(iters + 1):
            t0 = time.perf_counter()
            if mode == "forward":
                with torch.no_grad():
                    model(x, t, None, y)
            else:
                model.zero_grad(set_to_none=True)
                out = model(x, t, None, y)
                out.backward(out.detach())
            dt = time.perf_counter() - t0
            if it > 0:
                times.append(dt)
        mean = sum(times) / len(times)
        f = flops * B * (3.0 if mode == "fwd+bwd" else 1.0)
        print(f"torch {name:4s} {mode:12s} batch {B:5d}: {B / mean:10.1f} samples/s  "
              f"{f / mean * 1e-9:7.1f} GFLOP/s  (mean {mean:.4f} s, best {min(times):.4f} s, "
              f"{iters} iters)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=int(os.environ.get("FMD_NUM_THREADS", "2")))
    ap.add_argument("--iters-mlp", type=int, default=50)
    ap.add_argument("--iters-sit", type=int, default=3)
    ap.add_argument("--only", choices=["mlp", "sit"])
    ap.add_argument("--fmd", help="path of bench_nn to run first with the same thread count")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if a.fmd:
        env = dict(os.environ, FMD_NUM_THREADS=str(a.threads))
        cmd = [a.fmd] + (["--only", a.only] if a.only else [])
        subprocess.run(cmd, env=env, check=True)
    g = torch.Generator().manual_seed(0)
    if a.only in (None, "mlp"):
        cfg = dict(arch="mlp", student=0, num_classes=0, dim=2, width=256, depth=4, temb_dim=256,
                   time_scale=30.0, delta_scale=30.0)
        m = ref.MLPNet(cfg).float()
        x = torch.randn(1024, 2, generator=g)
        t = torch.rand(1024, generator=g)
        bench("mlp", m, x, t, None, a.iters_mlp, mlp_flops())
    if a.only in (None, "sit"):
        cfg = dict(arch="dit", student=0, num_classes=1000, input_size=32, patch_size=2,
                   in_channels=4, hidden_size=384, dit_depth=12, num_heads=6, mlp_ratio=4.0,
                   learn_sigma=1, temb_dim=256, time_scale=1000.0, delta_scale=1000.0)
        m = ref.DiT(cfg).float()
        x = torch.randn(32, 4, 32, 32, generator=g)
        t = torch.rand(32, generator=g)
        y = torch.randint(0, 1000, (32,), generator=g)
        bench("sit", m, x, t, y, a.iters_sit, dit_flops(cfg))


if __name__ == "__main__":
    main()
