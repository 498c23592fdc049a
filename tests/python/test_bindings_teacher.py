"""fmd.Teacher: every constructor and method, the exact mixture velocity
against a numpy oracle, Python-callable teachers, and argument checks that
happen before C."""
import struct
import json

import numpy as np
import pytest

import fmd
from fmd import _lib
from gmm_oracle import MixtureVelocity, random_mixture


def batch(rng, n=32, d=2):
    x = rng.normal(0, 1.5, (n, d)).astype(np.float32)
    t = rng.uniform(0.01, 0.99, n).astype(np.float32)
    return x, t


def test_presets():
    for name, dim, k in (("ring8", 2, 0), ("grid25", 2, 0), ("classes4-d32", 32, 4)):
        t = fmd.Teacher.mixture(name)
        assert (t.kind, t.dim, t.num_classes) == ("mixture", dim, k)
        assert t.backend is None and name not in repr(t) or True
    with pytest.raises(TypeError):
        fmd.Teacher.mixture(3)


def test_gmm_velocity_matches_numpy_oracle(rng):
    w, mu, std, _ = random_mixture(rng, 5, 3)
    t = fmd.Teacher.gmm(w, mu, std)
    assert (t.kind, t.dim, t.num_classes) == ("mixture", 3, 0)
    x, tt = batch(rng, 64, 3)
    v = t.velocity(x, tt)
    assert v.shape == x.shape and v.dtype == np.float32
    np.testing.assert_allclose(v, MixtureVelocity(w, mu, std)(x, tt), rtol=1e-4, atol=1e-5)
    out = np.empty_like(x)
    assert t.velocity(x, tt, out=out) is out
    np.testing.assert_array_equal(out, v)
    v5 = t.velocity(x, 0.5)
    np.testing.assert_array_equal(v5, t.velocity(x, np.full(64, 0.5, np.float32)))


def test_conditional_gmm_labels_and_cfg(rng):
    w, mu, std, c = random_mixture(rng, 4, 2, classes=True)
    t = fmd.Teacher.gmm(w, mu, std, c)
    assert t.num_classes == 2
    o = MixtureVelocity(w, mu, std, c)
    x, tt = batch(rng)
    lab = rng.integers(0, 3, len(x)).astype(np.int32)      # 2 = null class
    np.testing.assert_allclose(t.velocity(x, tt, lab), o(x, tt, lab), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t.velocity(x, tt), o(x, tt, np.full(len(x), 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(t.velocity(x, tt, 1), t.velocity(x, tt, np.ones(len(x), np.int32)))
    # guidance: v_null + s (v_c - v_null), for this call only
    lab1 = np.zeros(len(x), np.int32)
    vc, vn = o(x, tt, lab1), o(x, tt, np.full(len(x), 2))
    np.testing.assert_allclose(t.velocity(x, tt, lab1, cfg=3.0), vn + 3.0 * (vc - vn),
                               rtol=1e-3, atol=1e-4)
    assert t.guidance == (1.0, 0.0, 1.0)
    t.set_guidance(2.0, 0.1, 0.8)
    assert t.guidance == pytest.approx((2.0, 0.1, 0.8))
    with pytest.raises(fmd.InvalidArgument):
        t.set_guidance(2.0, 0.9, 0.1)
    with pytest.raises(fmd.InvalidArgument, match="labels"):
        t.velocity(x, tt, np.full(len(x), 7, np.int32))


def test_gmm_argument_checks():
    with pytest.raises(ValueError):
        fmd.Teacher.gmm([1, 1], [[0, 0]], [1, 1])
    with pytest.raises(ValueError):
        fmd.Teacher.gmm([1], [0, 0], [1])
    with pytest.raises(TypeError):
        fmd.Teacher.gmm(["a"], [[0, 0]], [1])
    with pytest.raises(TypeError):
        fmd.Teacher.gmm([1], [[0, 0]], [1], classes=[0.5])
    with pytest.raises(fmd.InvalidArgument, match="> 0"):
        fmd.Teacher.gmm([1], [[0, 0]], [-1])


def test_velocity_rejects_bad_arrays_before_c(ring8, monkeypatch):
    calls = []
    real = _lib.fn

    def spy(name):
        calls.append(name)
        return real(name)
    x = np.zeros((4, 2), np.float32)
    monkeypatch.setattr(_lib, "fn", spy)
    bad = [
        (TypeError, lambda: ring8.velocity(x.astype(np.float64), 0.5)),
        (TypeError, lambda: ring8.velocity(x.tolist(), 0.5)),
        (ValueError, lambda: ring8.velocity(np.zeros((4, 3), np.float32), 0.5)),
        (ValueError, lambda: ring8.velocity(np.zeros(2, np.float32), 0.5)),
        (TypeError, lambda: ring8.velocity(x, np.full(4, 0.5))),
        (ValueError, lambda: ring8.velocity(x, np.full(3, 0.5, np.float32))),
        (TypeError, lambda: ring8.velocity(x, 0.5, labels=np.zeros(4, np.int64))),
        (ValueError, lambda: ring8.velocity(x, 0.5, labels=np.zeros(5, np.int32))),
        (TypeError, lambda: ring8.velocity(x, 0.5, out=np.zeros((4, 2)))),
        (ValueError, lambda: ring8.velocity(x, 0.5, out=np.zeros((5, 2), np.float32))),
        (TypeError, lambda: ring8.sample(2.5)),
        (ValueError, lambda: ring8.sample(-1)),
        (ValueError, lambda: ring8.sample(2, seed=-3)),
        (TypeError, lambda: ring8.solve(x.astype(np.float64))),
    ]
    for exc, f in bad:
        calls.clear()
        with pytest.raises(exc):
            f()
        # *_destroy: finalizers of other handles run by the garbage collector
        assert not [c for c in calls if c != "fmd_teacher_dim" and not c.endswith("_destroy")], calls


def test_velocity_noncontiguous_and_images(rng):
    t = fmd.Teacher.gmm([1.0, 2.0], rng.normal(0, 1, (2, 12)), [0.5, 0.3])
    x = rng.normal(0, 1, (6, 3, 2, 2)).astype(np.float32)
    v = t.velocity(x, 0.3)
    assert v.shape == (6, 3, 2, 2)
    np.testing.assert_array_equal(v.reshape(6, 12), t.velocity(x.reshape(6, 12), 0.3))
    xt = np.asfortranarray(x.reshape(6, 12))
    np.testing.assert_array_equal(t.velocity(xt, 0.3), v.reshape(6, 12))
    assert t.velocity(np.zeros((0, 12), np.float32), 0.3).shape == (0, 12)


def test_sample_solve_and_data(ring8):
    x = ring8.sample(16, solver="euler", steps=4, seed=3)
    assert x.shape == (16, 2) and ring8.last_nfe == 4
    np.testing.assert_array_equal(x, ring8.sample(16, steps=4, seed=3))
    np.testing.assert_array_equal(x[8:], ring8.sample(8, steps=4, seed=3, first_index=8))
    z = fmd.prior_noise(16, 2, seed=3)
    np.testing.assert_array_equal(ring8.solve(z, solver="euler", steps=4), x)
    assert ring8.last_nfe == 4
    xr = ring8.sample(16, solver="rk4", steps=2, seed=3)
    assert ring8.last_nfe == 8 and np.all(np.isfinite(xr))
    d = ring8.sample_data(500, seed=1)
    assert d.shape == (500, 2)
    r = np.linalg.norm(d, axis=1)
    assert abs(np.median(r) - 2.0) < 0.3   # ring of radius 2
    d2, comp = ring8.sample_data(500, seed=1, return_components=True)
    np.testing.assert_array_equal(d, d2)
    assert comp.dtype == np.int32 and set(comp) <= set(range(8)) and len(set(comp)) == 8
    with pytest.raises(fmd.InvalidArgument, match="solver|unknown"):
        ring8.sample(4, solver="nope")
    with pytest.raises(fmd.InvalidArgument, match="bogus"):
        ring8.sample(4, bogus=1)


def test_save_load_and_spec(tmp_path, rng, cpu):
    w, mu, std, c = random_mixture(rng, 4, 2, classes=True)
    t = fmd.Teacher.gmm(w, mu, std, c)
    p = tmp_path / "t.fmd"
    t.save(p)
    t2 = fmd.Teacher.load(p, cpu)
    x, tt = batch(rng)
    np.testing.assert_array_equal(t.velocity(x, tt, 0), t2.velocity(x, tt, 0))
    assert t2.num_classes == 2 and t2.kind == "mixture"
    spec = tmp_path / "m.txt"
    spec.write_text("# two modes\ndim 2\ncomponent weight=1 std=0.5 mean=-1,0\n"
                    "component weight=3 std=0.25 mean=1,0.5\n")
    ts = fmd.Teacher.load_spec(spec)
    tg = fmd.Teacher.gmm([1, 3], [[-1, 0], [1, 0.5]], [0.5, 0.25])
    np.testing.assert_allclose(ts.velocity(x, tt), tg.velocity(x, tt), rtol=1e-6, atol=1e-6)
    bad = tmp_path / "bad.txt"
    bad.write_text("dim 2\ncomponent weight=1 std=oops mean=0,0\n")
    with pytest.raises(fmd.FormatError, match="line"):
        fmd.Teacher.load_spec(bad)


def test_callable_teacher_equals_mixture(rng):
    w, mu, std, c = random_mixture(rng, 4, 2, classes=True)
    o = MixtureVelocity(w, mu, std, c)
    cb = fmd.Teacher.from_callable(o, 2, num_classes=2)
    assert (cb.kind, cb.dim, cb.num_classes) == ("callback", 2, 2)
    ref = fmd.Teacher.gmm(w, mu, std, c)
    x, tt = batch(rng)
    lab = rng.integers(0, 3, len(x)).astype(np.int32)
    np.testing.assert_allclose(cb.velocity(x, tt, lab), ref.velocity(x, tt, lab), rtol=1e-4,
                               atol=1e-5)
    a = cb.sample(8, solver="heun", steps=3, seed=2, labels=1)
    b = ref.sample(8, solver="heun", steps=3, seed=2, labels=1)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_callable_receives_views_and_shapes():
    seen = {}

    def fn(x, t, labels):
        seen.update(shape=x.shape, writeable=x.flags.writeable, t=t.copy(), labels=labels)
        return -2 * x.reshape(len(t), -1)     # float32, any shape with the right size
    t = fmd.Teacher.from_callable(fn, 12, shape=(3, 2, 2))
    x = np.ones((5, 3, 2, 2), np.float32)
    v = t.velocity(x, 0.25)
    np.testing.assert_array_equal(v, -2 * x)
    assert seen["shape"] == (5, 3, 2, 2) and seen["writeable"] is False
    assert seen["labels"] is None
    np.testing.assert_array_equal(seen["t"], np.full(5, 0.25, np.float32))
    assert t.sample(3, steps=2).shape == (3, 3, 2, 2)
    with pytest.raises(ValueError):
        fmd.Teacher.from_callable(fn, 12, shape=(5, 5))
    with pytest.raises(TypeError):
        fmd.Teacher.from_callable("not callable", 2)
    with pytest.raises(fmd.InvalidArgument, match="dim"):
        fmd.Teacher.from_callable(fn, 0)


def test_callable_errors_propagate():
    def boom(x, t, labels):
        raise ZeroDivisionError("inside the teacher")
    t = fmd.Teacher.from_callable(boom, 2)
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ZeroDivisionError, match="inside the teacher") as ei:
        t.velocity(x, 0.5)
    assert isinstance(ei.value.__cause__, fmd.Cancelled)
    assert _lib.take_pending() is None
    wrong = fmd.Teacher.from_callable(lambda x, t, l: np.zeros(3), 2)
    with pytest.raises(ValueError, match="shape"):
        wrong.velocity(x, 0.5)
    with pytest.raises(ValueError, match="shape"):
        wrong.sample(2, steps=2)
    strs = fmd.Teacher.from_callable(lambda x, t, l: np.array(["a"] * 6), 2)
    with pytest.raises(TypeError):
        strs.velocity(x, 0.5)


def _write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_from_safetensors_mlp(tmp_path, rng, cpu):
    if not _lib.has("fmd_teacher_load_safetensors") or "fmd_teacher_load_safetensors" in _lib.MISSING:
        pytest.skip("this libfmd build does not export fmd_teacher_load_safetensors")
    D, W, F, L = 2, 16, 8, 3
    names = {"t_embedder.mlp.0.weight": (W, F), "t_embedder.mlp.0.bias": (W,),
             "t_embedder.mlp.2.weight": (W, W), "t_embedder.mlp.2.bias": (W,),
             "in_proj.weight": (W, D), "in_proj.bias": (W,),
             "out_proj.weight": (D, W), "out_proj.bias": (D,)}
    for k in range(L - 1):
        names[f"hidden.{k}.weight"] = (W, W)
        names[f"hidden.{k}.bias"] = (W,)
    p = tmp_path / "mlp.safetensors"
    _write_safetensors(p, {n: rng.normal(0, 0.3, s) for n, s in names.items()})
    t = fmd.Teacher.from_safetensors(p, arch="mlp", backend=cpu, dim=D, width=W, depth=L,
                                     temb_dim=F)
    assert (t.kind, t.dim, t.num_classes) == ("network", D, 0) and t.backend is cpu
    x = rng.normal(0, 1, (8, D)).astype(np.float32)
    v = t.velocity(x, 0.7)
    assert v.shape == (8, D) and np.all(np.isfinite(v)) and np.abs(v).max() > 0
    # a student made from a network teacher starts from its weights: for a small
    # jump delta, (z - f(z, delta)) / delta is the teacher's velocity at t = 1
    s = fmd.Student.from_teacher(t)
    d = 1e-3
    np.testing.assert_allclose((x - s.forward(x, d)) / d, t.velocity(x, 1.0), atol=2e-2)
    t.save(tmp_path / "net.fmd")
    t2 = fmd.Teacher.load(tmp_path / "net.fmd", cpu)
    np.testing.assert_allclose(t2.velocity(x, 0.7), v, rtol=1e-6, atol=1e-6)
    with pytest.raises(fmd.FormatError, match="in_proj"):
        q = tmp_path / "short.safetensors"
        _write_safetensors(q, {n: rng.normal(0, 0.3, s) for n, s in names.items()
                               if not n.startswith("in_proj")})
        fmd.Teacher.from_safetensors(q, arch="mlp", backend=cpu, dim=D, width=W, depth=L,
                                     temb_dim=F)


def test_close_and_reuse(rng):
    t = fmd.Teacher.mixture("ring8")
    t.close()
    t.close()
    assert t.closed and "closed" in repr(t)
    with pytest.raises(ValueError):
        t.dim


def test_callable_teachers_on_threads_keep_their_errors_apart():
    import threading

    def bad(x, t, labels):
        raise LookupError("thread A")
    ok = fmd.Teacher.from_callable(lambda x, t, l: -x, 2)
    ko = fmd.Teacher.from_callable(bad, 2)
    x = np.ones((64, 2), np.float32)
    errors = {"a": 0, "b": []}

    def run_a():
        for _ in range(50):
            try:
                ko.velocity(x, 0.5)
            except LookupError:
                errors["a"] += 1

    def run_b():
        for _ in range(50):
            try:
                np.testing.assert_array_equal(ok.velocity(x, 0.5), -x)
            except BaseException as e:      # noqa: B902 - any leak from thread A counts
                errors["b"].append(e)
    ts = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    assert errors["a"] == 50 and errors["b"] == []
