"""End-to-end tests of the `fmd` command-line tool (run by ctest as pytest_cli).

train-teacher (small) -> distill -> sample -> eval on a mixture, plus the demo
with few steps.  PNGs are decoded by the small zlib-based decoder below (CRC of
every chunk, all five filter types); .npy files are loaded with numpy.  Bad
flags, missing and corrupt files must give one line on stderr and a non-zero
exit, never a crash.
"""
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest

FMD = os.environ.get("FMD_CLI", "fmd")
ENV = dict(os.environ, FMD_NUM_THREADS="1", FMD_BACKEND="cpu")


def run(*args, ok=True, cwd=None):
    p = subprocess.run([FMD, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd,
                       timeout=600)
    if ok:
        assert p.returncode == 0, f"fmd {' '.join(map(str, args))} failed:\n{p.stderr}"
    return p


def png_decode(path):
    """(width, height, channels, pixels as a uint8 array (h, w, c))."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad PNG signature"
    off, idat, ihdr = 8, b"", None
    while off < len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        typ, body = data[off + 4:off + 8], data[off + 8:off + 8 + n]
        (crc,) = struct.unpack(">I", data[off + 8 + n:off + 12 + n])
        assert zlib.crc32(typ + body) & 0xFFFFFFFF == crc, f"bad CRC in {typ!r}"
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        elif typ == b"IEND":
            break
        off += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0
    ch = {0: 1, 2: 3, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * ch
    assert len(raw) == h * (stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - ch] if x >= ch else 0
            b = prev[x]
            c = prev[x - ch] if x >= ch else 0
            if f == 0:
                pr = 0
            elif f == 1:
                pr = a
            elif f == 2:
                pr = b
            elif f == 3:
                pr = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + pr) & 255
        out[y] = cur
        prev = cur
    return w, h, ch, out.reshape(h, w, ch)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def test_help_everywhere():
    for cmd in ["info", "train-teacher", "distill", "sample", "eval", "demo"]:
        p = run(cmd, "--help")
        assert p.stdout.startswith(f"usage: fmd {cmd}"), p.stdout
        assert "--quiet" in p.stdout and "--json" in p.stdout
    assert "commands:" in run("--help").stdout


def test_end_to_end(work):
    t, s = work / "t.fmd", work / "s.fmd"
    small = ["--set", "width=32", "--set", "depth=2", "--set", "temb_dim=16", "--set", "batch=128"]
    p = run("train-teacher", "--data", "mixture:ring8", "--n", 4000, "--out", t, "--steps", 300,
            *small, "--json")
    info = json.loads(p.stdout)
    assert info["dim"] == 2 and info["steps"] == 300 and t.exists()
    d = json.loads(run("info", t, "--json").stdout)
    assert d["format"] == "fmd" and d["crc_ok"] and int(d["num_params"]) > 0
    p = run("distill", "--teacher", t, "--out", s, "--steps", 40, "--set", "batch=64",
            "--curve", work / "curve.png", "--json")
    r = json.loads(p.stdout)
    assert r["steps"] == 40 and s.exists()
    w, h, ch, _ = png_decode(work / "curve.png")
    assert (w, h, ch) == (720, 400, 3)
    # resume continues to the new total
    r = json.loads(run("distill", "--teacher", t, "--out", s, "--steps", 50, "--set", "batch=64",
                       "--resume", "--json").stdout)
    assert r["steps"] == 50
    # samples: .npy with the right shape; a split run gives the same rows
    run("sample", "--student", s, "--n", 10, "--seed", 3, "--out", work / "all.npy")
    run("sample", "--student", s, "--n", 4, "--seed", 3, "--out", work / "a.npy")
    run("sample", "--student", s, "--n", 6, "--seed", 3, "--first-index", 4, "--out", work / "b.npy")
    x = np.load(work / "all.npy")
    assert x.shape == (10, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    y = np.concatenate([np.load(work / "a.npy"), np.load(work / "b.npy")])
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)  # GEMM blocking may depend on n
    # teacher solver and student+finish; a density PNG of the right size
    run("sample", "--teacher", t, "--solver", "euler", "--steps", 4, "--n", 50, "--out",
        work / "t.npy")
    assert np.load(work / "t.npy").shape == (50, 2)
    run("sample", "--student", s, "--teacher", t, "--delta", 0.5, "--finish", "--solver", "heun",
        "--steps", 2, "--n", 300, "--out", work / "f.png")
    w, h, ch, px = png_decode(work / "f.png")
    assert (w, h, ch) == (8 + 384 + 8, 19 + 384 + 8, 3) and px.std() > 0
    # Best-of-N toward a point moves samples toward it
    run("sample", "--student", s, "--n", 40, "--best-of", 16, "--reward", "near:2,0",
        "--out", work / "bon.npy")
    bon = np.load(work / "bon.npy")
    plain = np.load(work / "all.npy")
    target = np.array([2.0, 0.0])
    assert np.linalg.norm(bon - target, axis=1).mean() < np.linalg.norm(plain - target, axis=1).mean()
    # eval --json: metrics of the student and the teacher's Euler steps
    ev = json.loads(run("eval", "--teacher", t, "--student", s, "--n", 300, "--euler", "1,4",
                        "--json").stdout)
    names = [r["sampler"] for r in ev["results"]]
    assert names == ["student 1-step", "teacher euler 1", "teacher euler 4"]
    assert all(np.isfinite(r["map_error"]) for r in ev["results"])
    # image grid from an explicit shape
    run("sample", "--teacher", "mixture:classes4-d32", "--solver", "euler", "--steps", 2,
        "--n", 5, "--class", 1, "--cfg", 2, "--shape", "1x4x8", "--out", work / "g.png")
    w, h, ch, _ = png_decode(work / "g.png")
    assert (w, h, ch) == (3 * (8 + 2) + 2, 2 * (4 + 2) + 2, 1)


def test_distill_teacher_pool(work):
    """The pool mix from the command line: data_based=1 with data_pool draws
    the teacher's own samples (no data file), and --resume regenerates the
    pool (a different pool size is refused, naming both values)."""
    s = work / "pool.fmd"
    pool = ["--set", "batch=64", "--set", "data_based=1", "--set", "data_pool=500",
            "--set", "data_pool_steps=8", "--set", "data_frac=0.25"]
    r = json.loads(run("distill", "--teacher", "mixture:classes4-d32", "--cfg", 3, "--out", s,
                       "--steps", 10, *pool, "--json").stdout)
    assert r["steps"] == 10 and s.exists()
    r = json.loads(run("distill", "--teacher", "mixture:classes4-d32", "--cfg", 3, "--out", s,
                       "--steps", 15, *pool, "--resume", "--json").stdout)
    assert r["steps"] == 15
    bad = [a.replace("data_pool=500", "data_pool=501") for a in pool]
    p = run("distill", "--teacher", "mixture:classes4-d32", "--cfg", 3, "--out", s, "--steps", 20,
            *bad, "--resume", ok=False)
    one_line_error(p, 2)
    assert "'data_pool' = 501 here" in p.stderr and "trained with 500" in p.stderr


def test_demo_small(work):
    out = work / "demo"
    p = run("demo", "--out", out, "--steps", 20, "--n", 2000, "--eval-n", 300, "--quiet")
    assert "student 1-step" in p.stdout and "teacher euler 8" in p.stdout
    w, h, ch, px = png_decode(out / "demo.png")
    assert (w, h, ch) == (8 + 3 * (320 + 8), 19 + 320 + 8, 3)
    assert px[:19].min() < 60  # titles drawn
    w, h, ch, _ = png_decode(out / "loss.png")
    assert (w, h) == (720, 400)
    d = json.loads(run("info", out / "student.fmd", "--json").stdout)
    assert d["crc_ok"]


def test_npy_both_ways(work):
    # numpy-written arrays (with labels) as training data
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    lab = (np.arange(300) % 3).astype(np.int32)
    np.save(work / "x.npy", x)
    np.save(work / "l.npy", lab)
    r = json.loads(run("train-teacher", "--data", f"npy:{work / 'x.npy'},{work / 'l.npy'}",
                       "--out", work / "tx.fmd", "--steps", 5, "--set", "width=16", "--set",
                       "depth=1", "--set", "temb_dim=8", "--json").stdout)
    assert r["dim"] == 3 and r["classes"] == 3
    np.save(work / "x64.npy", x.astype(np.float64))
    one_line_error(run("train-teacher", "--data", f"npy:{work / 'x64.npy'}", "--out",
                       work / "ty.fmd", ok=False), 1)
    # the teacher's 1-step Euler maps every noise to the data mean: identical rows
    run("sample", "--teacher", "mixture:ring8", "--solver", "euler", "--steps", 1, "--n", 64,
        "--out", work / "e1.npy")
    e1 = np.load(work / "e1.npy")
    assert e1.shape == (64, 2) and e1.dtype == np.float32
    np.testing.assert_allclose(e1, np.broadcast_to(e1.mean(0), e1.shape), atol=1e-5)
    # and the many-step teacher spreads them onto the ring of radius 2
    run("sample", "--teacher", "mixture:ring8", "--n", 200, "--out", work / "ring.npy")
    radius = np.linalg.norm(np.load(work / "ring.npy"), axis=1)
    assert 1.6 < np.median(radius) < 2.4


def test_info_safetensors(work):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                         "__metadata__": {"made_by": "test"}}).encode()
    header += b" " * (-len(header) % 8)
    path = work / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + x.tobytes())
    d = json.loads(run("info", path, "--json").stdout)
    assert d["format"] == "safetensors" and d["elements"] == 6
    assert d["tensors"] == [{"name": "w", "dtype": "F32", "shape": [2, 3]}]
    assert "w" in run("info", path).stdout
    path.write_bytes(struct.pack("<Q", 10 ** 9) + header)
    one_line_error(run("info", path, ok=False), 1)


def one_line_error(p, code=None):
    assert p.returncode in (1, 2), f"exit {p.returncode}: {p.stderr}"
    if code is not None:
        assert p.returncode == code
    lines = p.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("fmd"), p.stderr
    return lines[0]


def test_errors(work):
    one_line_error(run(ok=False), 2)
    one_line_error(run("bogus", ok=False), 2)
    one_line_error(run("distill", "--bogus", ok=False), 2)
    one_line_error(run("sample", "--n", "abc", ok=False), 2)
    one_line_error(run("sample", "--teacher", "mixture:ring8", "--n", 4, "--out", work / "x.txt",
                       ok=False), 2)
    one_line_error(run("distill", "--teacher", "mixture:nope", "--out", work / "x.fmd", ok=False), 2)
    one_line_error(run("sample", "--student", work / "missing.fmd", "--n", 2, "--out",
                       work / "x.npy", ok=False), 1)
    one_line_error(run("info", work / "missing.fmd", ok=False), 1)
    one_line_error(run("distill", "--teacher", "mixture:ring8", "--out", work / "none.fmd",
                       "--resume", ok=False), 1)
    one_line_error(run("distill", "--teacher", "mixture:ring8", "--out", work / "x.fmd",
                       "--set", "no_such_key=1", ok=False), 2)
    (work / "junk.fmd").write_bytes(os.urandom(300))
    one_line_error(run("info", work / "junk.fmd", ok=False), 1)
    one_line_error(run("sample", "--student", work / "junk.fmd", "--n", 2, "--out",
                       work / "x.npy", ok=False), 1)
    one_line_error(run("eval", "--teacher", work / "junk.fmd", ok=False), 1)


def test_corrupt_checkpoints(work):
    t = work / "tc.fmd"
    run("train-teacher", "--data", "mixture:ring8", "--n", 500, "--out", t, "--steps", 5,
        "--set", "width=16", "--set", "depth=1", "--set", "temb_dim=8", "--quiet")
    good = t.read_bytes()
    for k, cut in enumerate(range(0, len(good), max(1, len(good) // 16))):
        bad = work / f"cut{k}.fmd"
        bad.write_bytes(good[:cut])
        one_line_error(run("info", bad, ok=False), 1)
        one_line_error(run("sample", "--teacher", bad, "--n", 2, "--out", work / "x.npy",
                           ok=False), 1)
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0xFF
    (work / "flip.fmd").write_bytes(bytes(flipped))
    one_line_error(run("sample", "--teacher", work / "flip.fmd", "--n", 2, "--out",
                       work / "x.npy", ok=False), 1)
    # a corrupt .npy as training data
    (work / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}\n" + b"\0" * 8)
    one_line_error(run("train-teacher", "--data", f"npy:{work / 'bad.npy'}", "--out",
                       work / "y.fmd", ok=False), 1)
