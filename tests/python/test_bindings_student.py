"""fmd.Student and fmd.Sampler: creation, forward, one-step sampling on the
shared prior noise, save/load, Best-of-N with a Python reward, argument checks."""
import numpy as np
import pytest

import fmd
from fmd import _lib


@pytest.fixture
def student(ring8, cpu):
    return fmd.Student.from_teacher(ring8, cpu, width=16, depth=2, seed=3)


def test_create_and_properties(student, cpu):
    assert (student.dim, student.num_classes) == (2, 0)
    W, F, D = 16, 256, 2
    # t/d embedders (F->W, W->W), in_proj, one hidden layer, out_proj
    want = 2 * (F * W + W + W * W + W) + (D * W + W) + (W * W + W) + (W * D + D)
    assert student.num_params == want
    assert student.backend is cpu and "num_params" in repr(student)
    with pytest.raises(fmd.InvalidArgument, match="widht"):
        fmd.Student.from_teacher(fmd.Teacher.mixture("ring8"), cpu, widht=3)
    with pytest.raises(TypeError):
        fmd.Student.from_teacher("ring8")
    c = fmd.Student.from_teacher(fmd.Teacher.mixture("classes4-d32"), cpu, width=8, depth=1)
    assert (c.dim, c.num_classes) == (32, 4)


def test_forward_and_sample(student):
    z = fmd.prior_noise(10, 2, seed=4)
    f1 = student.forward(z, 1.0)
    assert f1.shape == (10, 2) and f1.dtype == np.float32
    np.testing.assert_array_equal(student.sample(10, seed=4), f1)
    np.testing.assert_array_equal(student.sample(4, seed=4, first_index=6), f1[6:])
    np.testing.assert_array_equal(student.forward(z, 0.0), z)     # f(z, 0) = z
    d = np.linspace(0, 1, 10).astype(np.float32)
    fd = student.forward(z, d)
    np.testing.assert_array_equal(fd[-1], f1[-1])
    out = np.empty_like(z)
    assert student.forward(z, 1.0, out=out) is out
    with pytest.raises(ValueError, match="alias"):
        student.forward(z, 1.0, out=z)
    with pytest.raises(fmd.InvalidArgument, match="delta"):
        student.forward(z, 1.5)


def test_forward_rejects_bad_arrays_before_c(student, monkeypatch):
    calls = []
    real = _lib.fn
    monkeypatch.setattr(_lib, "fn", lambda name: (calls.append(name), real(name))[1])
    z = np.zeros((3, 2), np.float32)
    for exc, f in [(TypeError, lambda: student.forward(z.astype(np.float16), 1.0)),
                   (ValueError, lambda: student.forward(np.zeros((3, 5), np.float32), 1.0)),
                   (TypeError, lambda: student.forward(z, np.ones(3))),
                   (ValueError, lambda: student.forward(z, np.ones(4, np.float32))),
                   (TypeError, lambda: student.forward(z, 1.0, labels=np.zeros(3))),
                   (TypeError, lambda: student.sample(1.5))]:
        calls.clear()
        with pytest.raises(exc):
            f()
        # (*_destroy: finalizers of other tests' handles, run whenever the
        # garbage collector happens to run - not calls made by forward)
        assert [c for c in calls if c != "fmd_student_dim" and not c.endswith("_destroy")] == []


def test_save_load(student, tmp_path, cpu):
    p = tmp_path / "s.fmd"
    student.save(p)
    s2 = fmd.Student.load(p, cpu)
    assert s2.num_params == student.num_params
    np.testing.assert_array_equal(s2.sample(8, seed=1), student.sample(8, seed=1))
    with pytest.raises(fmd.FmdIOError):
        student.save(tmp_path / "no" / "dir" / "s.fmd")


def test_sampler_student_and_teacher(student, ring8):
    smp = fmd.Sampler(student, ring8)
    assert (smp.dim, smp.num_classes) == (2, 0)
    x = smp.sample(12, seed=5)
    np.testing.assert_array_equal(x, student.sample(12, seed=5))
    assert smp.last_nfe == 1
    xt = smp.sample(12, seed=5, method="teacher", solver="euler", steps=4)
    np.testing.assert_allclose(xt, ring8.sample(12, steps=4, seed=5), rtol=1e-5, atol=1e-5)
    assert smp.last_nfe == 4
    out = np.empty((12, 2), np.float32)
    assert smp.sample(12, seed=5, out=out) is out
    with pytest.raises(fmd.InvalidArgument, match="bogus"):
        smp.sample(2, bogus=1)
    only_t = fmd.Sampler(teacher=ring8, method="teacher", solver="euler", steps=2)
    assert only_t.sample(3).shape == (3, 2)
    with pytest.raises(fmd.InvalidArgument):
        fmd.Sampler()
    with pytest.raises(TypeError):
        fmd.Sampler(ring8)


def test_best_of_n_python_reward(student):
    smp = fmd.Sampler(student)
    target = np.array([2.0, 0.0], np.float32)
    seen = []

    def reward(x, label):
        seen.append(label)
        return -float(np.sum((x - target) ** 2))
    x1, z1, s1 = smp.best_of_n(6, reward, candidates=1, seed=2)
    np.testing.assert_array_equal(x1, smp.sample(6, seed=2))     # N = 1 is plain sampling
    x8, z8, s8 = smp.best_of_n(6, reward, candidates=8, seed=2)
    assert len(seen) == 6 + 48
    assert np.all(s8 >= s1 - 1e-12)                               # a superset never loses
    np.testing.assert_allclose(s8, -np.sum((x8 - target) ** 2, axis=1), rtol=1e-5)
    # 6 rows here, 48 candidate rows in one pass there: equal to the rounding
    # of the matrix products, whose blocking depends on the rows (fmd.h)
    np.testing.assert_allclose(student.forward(z8, 1.0), x8, rtol=1e-5, atol=1e-6)
    xb, zb, sb = smp.best_of_n(6, lambda x, l: -np.sum((x - target) ** 2, axis=1), candidates=8,
                               seed=2, batched=True)
    np.testing.assert_array_equal(xb, x8)
    np.testing.assert_allclose(sb, s8, rtol=1e-6)

    def bad(x, label):
        raise KeyError("reward failed")
    with pytest.raises(KeyError, match="reward failed"):
        smp.best_of_n(2, bad, candidates=2)
    with pytest.raises(KeyError):
        smp.best_of_n(2, lambda x, l: (_ for _ in ()).throw(KeyError("b")), candidates=2,
                      batched=True)
    with pytest.raises(fmd.NonFinite):
        smp.best_of_n(2, lambda x, l: float("nan"), candidates=2)
    with pytest.raises(TypeError):
        smp.best_of_n(2, "reward")


def test_conditional_student_labels(cpu):
    t = fmd.Teacher.mixture("classes4-d32")
    s = fmd.Student.from_teacher(t, cpu, width=16, depth=1)
    z = fmd.prior_noise(8, 32, seed=1)
    lab = (np.arange(8) % 5).astype(np.int32)           # 4 = the null class
    f = s.forward(z, 1.0, lab)
    assert f.shape == (8, 32)
    # GEMM rounding depends on the batch size (blocking): equal to float precision, not bit-exact
    np.testing.assert_allclose(s.forward(z, 1.0, 2)[0], s.forward(z[:1], 1.0, np.array([2], np.int32))[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(s.sample(8, seed=1, labels=lab), f)
    np.testing.assert_array_equal(s.forward(z, 1.0), s.forward(z, 1.0, 4))   # None = null class
    with pytest.raises(fmd.InvalidArgument, match="label"):
        s.forward(z, 1.0, np.full(8, 5, np.int32))
    d = fmd.Distiller(t, s, batch=16)
    assert np.isfinite(d.step()["loss_pred"])
    smp = fmd.Sampler(d.student, t)
    assert smp.num_classes == 4 and smp.sample(4, labels=1).shape == (4, 32)
