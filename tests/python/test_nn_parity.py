"""PyTorch parity of libfmd's network engine (lib/nn).

The MLP and the SiT/DiT models are restated here in PyTorch from the DiT/SiT
papers' reference code (TimestepEmbedder, LabelEmbedder, timm Attention and
Mlp with tanh-GELU, adaLN-Zero blocks, FinalLayer, MAE 2-D sin-cos position
table, unpatchify), plus libfmd's student extension (a second timestep
embedder of delta, `d_embedder`, added to the conditioning).  Random weights
are written to safetensors (plain struct/json), tests/nn_driver runs libfmd on
them, and the test compares, against PyTorch in float64:
  - forward outputs within 1e-4 relative,
  - parameter gradients of sum(dout * out) within 1e-3 relative (per tensor),
  - input gradients within 1e-3 relative,
  - the JVP along (t, delta) within 1e-3 relative of
    torch.autograd.functional.jvp.
"""
import json
import math
import os
import struct
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

DRIVER = os.environ.get("FMD_NN_DRIVER")
pytestmark = pytest.mark.skipif(not DRIVER or not os.path.exists(DRIVER),
                                reason="FMD_NN_DRIVER (the nn_driver program) not given")
torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- safetensors
def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32"
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[base + b:base + e], dtype="<f4").reshape(v["shape"])
    return out


# ---------------------------------------------------------------- the models
def timestep_embedding(t, dim, scale, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=t.dtype) / half)
    args = (t * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq, scale):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq, self.scale = freq, scale

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.freq, self.scale))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)   # + the null class

    def forward(self, y):
        return self.embedding_table(y)


class MLPNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        W, F = c["width"], c["temb_dim"]
        self.c = c
        self.t_embedder = TimestepEmbedder(W, F, c["time_scale"])
        if c["num_classes"]:
            self.y_embedder = LabelEmbedder(c["num_classes"], W)
        if c["student"]:
            self.d_embedder = TimestepEmbedder(W, F, c["delta_scale"])
        self.in_proj = nn.Linear(c["dim"], W)
        self.hidden = nn.ModuleList([nn.Linear(W, W) for _ in range(c["depth"] - 1)])
        self.out_proj = nn.Linear(W, c["dim"])

    def forward(self, x, t, delta=None, y=None):
        cond = self.t_embedder(t)
        if self.c["student"]:
            cond = cond + self.d_embedder(delta)
        if self.c["num_classes"]:
            cond = cond + self.y_embedder(y)
        h = torch.nn.functional.silu(self.in_proj(x) + cond)
        for lin in self.hidden:
            h = torch.nn.functional.silu(lin(h))
        return self.out_proj(h)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):          # timm's Attention (qkv_bias=True)
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, C, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(C, heads)
        self.norm2 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(C, int(C * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, sc1))
        x = x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, sc2))
        return x


class FinalLayer(nn.Module):
    def __init__(self, C, p, out_ch):
        super().__init__()
        self.norm_final = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(C, p * p * out_ch)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    def __init__(self, p, cin, C):
        super().__init__()
        self.proj = nn.Conv2d(cin, C, kernel_size=p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def get_2d_sincos_pos_embed(embed_dim, grid_size):     # MAE's, as DiT uses it
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb_h = one_d(embed_dim // 2, grid[0])
    emb_w = one_d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


class DiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, p = c["hidden_size"], c["patch_size"]
        self.c = c
        self.cin = c["in_channels"]
        self.out_ch = 2 * self.cin if c["learn_sigma"] else self.cin
        self.p = p
        self.x_embedder = PatchEmbed(p, self.cin, C)
        self.t_embedder = TimestepEmbedder(C, c["temb_dim"], c["time_scale"])
        if c["num_classes"]:
            self.y_embedder = LabelEmbedder(c["num_classes"], C)
        if c["student"]:
            self.d_embedder = TimestepEmbedder(C, c["temb_dim"], c["delta_scale"])
        T = (c["input_size"] // p) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, T, C), requires_grad=False)
        self.pos_embed.data.copy_(torch.from_numpy(
            get_2d_sincos_pos_embed(C, c["input_size"] // p)).unsqueeze(0))
        self.blocks = nn.ModuleList([DiTBlock(C, c["num_heads"], c["mlp_ratio"])
                                     for _ in range(c["dit_depth"])])
        self.final_layer = FinalLayer(C, p, self.out_ch)

    def unpatchify(self, x):
        c, p = self.out_ch, self.p
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, h * p)

    def forward(self, x, t, delta=None, y=None):
        x = self.x_embedder(x) + self.pos_embed
        cond = self.t_embedder(t)
        if self.c["num_classes"]:
            cond = cond + self.y_embedder(y)
        if self.c["student"]:
            cond = cond + self.d_embedder(delta)
        for blk in self.blocks:
            x = blk(x, cond)
        x = self.unpatchify(self.final_layer(x, cond))
        return x[:, :self.cin] if self.c["learn_sigma"] else x


# ---------------------------------------------------------------- the check
def randomize(model, gen):
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("bias"):
            std = 0.1
        elif "embedding_table" in name:
            std = 0.5
        else:
            fan_in = p.shape[1] if p.dim() == 2 else int(np.prod(p.shape[1:]))
            std = 0.7 / math.sqrt(fan_in)
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def relerr(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))


def run_case(tmp_path, cfg, B, seed):
    gen = torch.Generator().manual_seed(seed)
    model = MLPNet(cfg) if cfg["arch"] == "mlp" else DiT(cfg)
    randomize(model, gen)
    # bring the torch weights to float32 values so both sides use the same numbers
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())
    # pos_embed is left out so that libfmd's own 2-D sin-cos table is compared
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items() if k != "pos_embed"}
    write_safetensors(tmp_path / "w.safetensors", sd, metadata=cfg)

    if cfg["arch"] == "mlp":
        xshape = (B, cfg["dim"])
    else:
        xshape = (B, cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    f32 = lambda a: torch.from_numpy(np.asarray(a, np.float32).astype(np.float64))
    x = f32(torch.randn(xshape, generator=gen).numpy())
    t = f32(torch.rand(B, generator=gen).numpy() * 0.9 + 0.05)
    delta = f32(torch.rand(B, generator=gen).numpy() * 0.9 + 0.05)
    tan_t = f32(torch.randn(B, generator=gen).numpy())
    tan_d = f32(torch.randn(B, generator=gen).numpy())
    nc = cfg["num_classes"]
    labels = torch.randint(0, nc + 1, (B,), generator=gen) if nc else None
    D = int(np.prod(xshape[1:]))
    dout = f32(torch.randn((B, D), generator=gen).numpy())
    inputs = {"x": x.reshape(B, D).numpy(), "t": t.numpy(), "dout": dout.numpy(),
              "tan_t": tan_t.numpy()}
    if cfg["student"]:
        inputs["delta"] = delta.numpy()
        inputs["tan_delta"] = tan_d.numpy()
    if nc:
        inputs["labels"] = labels.numpy().astype(np.float32)
    write_safetensors(tmp_path / "in.safetensors", inputs)

    r = subprocess.run([DRIVER, str(tmp_path / "w.safetensors"), str(tmp_path / "in.safetensors"),
                        str(tmp_path / "out.safetensors")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = read_safetensors(tmp_path / "out.safetensors")

    # PyTorch: forward, gradients of sum(dout*out), JVP
    xg = x.clone().requires_grad_(True)
    d_arg = delta if cfg["student"] else None
    out = model(xg, t, d_arg, labels)
    (out.reshape(B, D) * dout).sum().backward()
    if cfg["student"]:
        _, tout = torch.autograd.functional.jvp(
            lambda tt, dd: model(x, tt, dd, labels), (t, delta), (tan_t, tan_d))
    else:
        _, tout = torch.autograd.functional.jvp(lambda tt: model(x, tt, None, labels), (t,), (tan_t,))

    e_out = relerr(got["out"], out.detach().reshape(B, D).numpy())
    e_jvp = relerr(got["tout"], tout.reshape(B, D).numpy())
    e_dx = relerr(got["dx"], xg.grad.reshape(B, D).numpy())
    print(f"\n{cfg['arch']}: forward {e_out:.2e}  jvp {e_jvp:.2e}  dx {e_dx:.2e}", end="")
    assert e_out < 1e-4, f"forward rel err {e_out:.3g}"
    assert e_jvp < 1e-3, f"jvp rel err {e_jvp:.3g}"
    assert e_dx < 1e-3, f"input grad rel err {e_dx:.3g}"
    assert float(np.max(np.abs(tout.numpy()))) > 1e-3, "vacuous jvp"
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted("grad." + n for n in names) == sorted(k for k in got if k.startswith("grad."))
    worst = (0.0, "")
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        ref = p.grad.numpy()
        if np.max(np.abs(ref)) == 0:
            assert np.max(np.abs(got["grad." + n])) == 0, n
            continue
        e = relerr(got["grad." + n].reshape(ref.shape), ref)
        worst = max(worst, (e, n))
        assert e < 1e-3, f"grad of {n}: rel err {e:.3g}"
    print(f"  worst param grad {worst[0]:.2e} ({worst[1]})", end="")


MLP_CASES = [
    dict(arch="mlp", student=0, num_classes=4, dim=3, width=32, depth=3, temb_dim=32,
         time_scale=30.0, delta_scale=30.0),
    dict(arch="mlp", student=1, num_classes=5, dim=2, width=64, depth=4, temb_dim=64,
         time_scale=30.0, delta_scale=30.0),
]

SIT_BASE = dict(arch="dit", temb_dim=256, mlp_ratio=4.0)
SIT_CASES = [
    # SiT-S width (384, 6 heads) / patch 2, learn_sigma, classes, student, DiT's t*1000
    dict(SIT_BASE, student=1, num_classes=10, input_size=8, patch_size=2, in_channels=4,
         hidden_size=384, dit_depth=2, num_heads=6, learn_sigma=1, time_scale=1000.0,
         delta_scale=1000.0),
    # a small SiT / patch 4, t in [0, 1] (SiT's convention), teacher
    dict(SIT_BASE, student=0, num_classes=5, input_size=16, patch_size=4, in_channels=3,
         hidden_size=96, dit_depth=3, num_heads=4, learn_sigma=0, time_scale=1.0,
         delta_scale=1.0),
    # unconditional student, patch 8, mlp_ratio 2
    dict(SIT_BASE, student=1, num_classes=0, input_size=16, patch_size=8, in_channels=2,
         hidden_size=64, dit_depth=2, num_heads=2, learn_sigma=0, time_scale=30.0,
         delta_scale=30.0, mlp_ratio=2.0, temb_dim=64),
]


@pytest.mark.parametrize("cfg", MLP_CASES, ids=["mlp-teacher-classes", "mlp-student-classes"])
def test_mlp_parity(tmp_path, cfg):
    run_case(tmp_path, cfg, B=7, seed=1)


@pytest.mark.parametrize("cfg", SIT_CASES, ids=["sit-s2-student", "sit-p4-teacher", "sit-p8-uncond"])
def test_sit_parity(tmp_path, cfg):
    run_case(tmp_path, cfg, B=3, seed=2)


def test_sit_s2_names_and_shapes(tmp_path):
    """libfmd's SiT-S/2 (32x32x4 latents, 1000 classes, learn_sigma) has exactly
    the parameter names and shapes of the PyTorch model's state_dict."""
    cfg = dict(SIT_BASE, arch="dit", student=0, num_classes=1000, input_size=32, patch_size=2,
               in_channels=4, hidden_size=384, dit_depth=12, num_heads=6, learn_sigma=1,
               time_scale=1000.0, delta_scale=1000.0)
    write_safetensors(tmp_path / "cfg.safetensors", {}, metadata=cfg)
    r = subprocess.run([DRIVER, "--views", str(tmp_path / "cfg.safetensors"),
                        str(tmp_path / "views.json")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.load(open(tmp_path / "views.json"))
    model = DiT(cfg)
    want = [[n, list(p.shape)] for n, p in model.named_parameters() if p.requires_grad]
    assert got["params"] == want
    assert got["buffers"] == [["pos_embed", [1, 256, 384]]]
    assert got["num_params"] == sum(int(np.prod(s)) for _, s in want)


def test_dit_xl2_parameter_count():
    """The PyTorch restatement used as the oracle has DiT-XL/2's published
    parameter count (675,129,632 for 256x256 images, 1000 classes, counting
    the fixed pos_embed as DiT's sum(p.numel()) does), i.e. it is the DiT/SiT
    architecture."""
    cfg = dict(SIT_BASE, arch="dit", student=0, num_classes=1000, input_size=32, patch_size=2,
               in_channels=4, hidden_size=1152, dit_depth=28, num_heads=16, learn_sigma=1,
               time_scale=1000.0, delta_scale=1000.0)
    n = 0
    for name, shape in _param_shapes(cfg):
        n += int(np.prod(shape))
    assert n == 675129632


def _param_shapes(cfg):
    # without allocating 675 M numbers: the blocks are identical, so count one
    c1 = dict(cfg, dit_depth=1)
    m1 = DiT(c1)
    per_block = sum(int(np.prod(p.shape)) for n, p in m1.named_parameters()
                    if n.startswith("blocks.0."))
    for n, p in m1.named_parameters():
        if not n.startswith("blocks."):
            yield n, tuple(p.shape)
    for _ in range(cfg["dit_depth"]):
        yield "block", (per_block,)
