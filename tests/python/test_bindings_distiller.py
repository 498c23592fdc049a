"""fmd.Distiller and fmd.Evaluator: steps, runs with a Python progress
callback (cancel, exceptions), checkpoints and bit-identical resume, and a
Python-callable teacher (numpy mixture velocity) distilled end to end."""
import numpy as np
import pytest

import fmd
from gmm_oracle import MixtureVelocity, random_mixture

SMALL = dict(width=32, depth=2, seed=1)


def make(teacher, cpu, **opts):
    s = fmd.Student.from_teacher(teacher, cpu, **SMALL)
    return fmd.Distiller(teacher, s, batch=32, **opts)


def test_step_run_stats(ring8, cpu):
    d = make(ring8, cpu)
    assert d.steps == 0 and d.teacher is ring8
    st = d.step()
    assert st["step"] == 1 and d.steps == 1
    assert set(st) == {"step", "loss_pred", "loss_corr", "loss_aux", "delta_norm", "vdiff_norm",
                       "lambda", "lr", "grad_norm", "steps_per_s"}
    assert all(np.isfinite(v) for v in st.values())
    seen = []
    assert d.run(5, callback=lambda s: seen.append(s["step"])) is True
    assert seen == [6] and d.steps == 6 and d.stats["step"] == 6
    assert d.run(0) is True
    with pytest.raises(ValueError):
        d.run(-1)
    with pytest.raises(TypeError):
        d.run(2, callback=3)
    assert "steps=6" in repr(d)


def test_progress_cancel_and_exception(ring8, cpu):
    d = make(ring8, cpu, progress_every=2)
    seen = []

    def cb(s):
        seen.append(s["step"])
        return s["step"] < 4
    assert d.run(10, cb) is False
    assert seen == [2, 4] and d.steps == 4

    def boom(s):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here") as ei:
        d.run(10, boom)
    assert isinstance(ei.value.__cause__, fmd.Cancelled)
    assert d.steps == 6


def test_options_errors(ring8, cpu):
    s = fmd.Student.from_teacher(ring8, cpu, **SMALL)
    with pytest.raises(fmd.InvalidArgument, match="bacth"):
        fmd.Distiller(ring8, s, bacth=3)
    with pytest.raises(fmd.InvalidArgument, match="target"):
        fmd.Distiller(ring8, s, target="nope")
    other = fmd.Student.from_teacher(fmd.Teacher.mixture("classes4-d32"), cpu, width=8, depth=1)
    with pytest.raises(fmd.InvalidArgument, match="dimension"):
        fmd.Distiller(ring8, other)
    with pytest.raises(TypeError):
        fmd.Distiller("ring8")
    with pytest.raises(ValueError):
        fmd.Distiller(ring8, s, student_options={"width": 8})


def test_default_student_and_lifetimes(cpu):
    t = fmd.Teacher.mixture("ring8")
    d = fmd.Distiller(t, backend=cpu, batch=16, student_options=dict(width=8, depth=1))
    raw = d.raw_student
    assert raw.num_params > 0 and raw.backend is cpu
    with pytest.raises(RuntimeError, match="still used"):
        t.close()
    with pytest.raises(RuntimeError, match="still used"):
        raw.close()
    ema = d.student
    d.step()
    with pytest.raises(RuntimeError, match="still used"):
        d.close()          # the borrowed EMA student is alive
    assert ema.sample(3).shape == (3, 2)
    del ema
    d.close()
    raw.close()
    t.close()


def test_ema_student_outlives_distiller_reference(ring8, cpu):
    d = make(ring8, cpu)
    d.run(3)
    ema = d.student
    want = ema.sample(4, seed=9)
    del d
    np.testing.assert_array_equal(ema.sample(4, seed=9), want)


def test_save_resume_bit_identical(ring8, cpu, tmp_path):
    a = make(ring8, cpu)
    a.run(6)
    a.save(tmp_path / "ck.fmd")
    a.run(4)
    b = fmd.Distiller.resume(tmp_path / "ck.fmd", ring8,
                             fmd.Student.from_teacher(ring8, cpu, **SMALL), batch=32)
    assert b.steps == 6
    b.run(4)
    np.testing.assert_array_equal(a.student.sample(16, seed=3), b.student.sample(16, seed=3))
    np.testing.assert_array_equal(a.raw_student.sample(16, seed=3),
                                  b.raw_student.sample(16, seed=3))
    ema = fmd.Student.load(tmp_path / "ck.fmd", cpu)
    assert ema.num_params == a.student.num_params
    with pytest.raises(fmd.InvalidArgument, match="batch"):
        fmd.Distiller.resume(tmp_path / "ck.fmd", ring8,
                             fmd.Student.from_teacher(ring8, cpu, **SMALL), batch=16)


def test_checkpoint_option(ring8, cpu, tmp_path):
    p = tmp_path / "auto.fmd"
    d = make(ring8, cpu, checkpoint=str(p), checkpoint_every=2)
    d.run(3)
    assert p.exists()
    s = fmd.Student.load(p, cpu)
    np.testing.assert_array_equal(s.sample(4), d.student.sample(4))


def test_data_based_baseline(ring8, cpu):
    d = make(ring8, cpu, data_based=1)
    with pytest.raises(fmd.InvalidArgument):
        d.step()
    d.set_data(ring8.sample_data(64, seed=2))
    assert np.isfinite(d.step()["loss_pred"])
    with pytest.raises(TypeError):
        d.set_data(np.zeros((4, 2)))
    with pytest.raises(ValueError):
        d.set_data(np.zeros((4, 3), np.float32))


def test_teacher_pool_option(ring8, cpu):
    # data_pool: the distiller draws the data-based rows' pool from the teacher
    with pytest.raises(fmd.InvalidArgument, match="data_pool"):
        make(ring8, cpu, data_pool=128)
    d = make(ring8, cpu, data_based=1, data_pool=128, data_pool_steps=4, data_frac=0.5)
    assert np.isfinite(d.step()["loss_pred"])
    with pytest.raises(fmd.InvalidArgument, match="data_pool"):
        make(ring8, cpu, data_based=1).step()


def test_callable_teacher_distilled_end_to_end(rng, cpu):
    w, mu, std, _ = random_mixture(rng, 3, 2)
    oracle = MixtureVelocity(w, mu, std)
    py_teacher = fmd.Teacher.from_callable(oracle, 2)
    c_teacher = fmd.Teacher.gmm(w, mu, std)
    d_py = make(py_teacher, cpu)
    d_c = make(c_teacher, cpu)
    # the numpy velocity drives the same training as the exact C mixture
    for _ in range(3):
        a, b = d_py.step(), d_c.step()
        for k in ("loss_pred", "loss_corr", "delta_norm", "grad_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-6), k
    assert oracle.calls > 0
    ev = fmd.Evaluator(c_teacher, n=256, seed=5)
    before = ev.student(d_py.student)["map_error"]
    assert d_py.run(80) is True
    after = ev.student(d_py.student)
    assert np.isfinite(after["map_error"]) and after["nfe"] == 1 and after["n"] == 256
    assert after["map_error"] < 0.8 * before, (before, after)


def test_evaluator(ring8, cpu):
    ev = fmd.Evaluator(ring8, n=128, seed=2)
    z = ev.noise
    assert z.shape == (128, 2) and ev.labels is None
    r = ev.teacher(solver="euler", steps=4)
    assert r["nfe"] == 4 and r["modes_total"] >= 1 and 0 <= r["map_error"]
    exact = ev.teacher()
    assert exact["map_error"] < r["map_error"]
    s = fmd.Student.from_teacher(ring8, cpu, **SMALL)
    rs = ev.student(s)
    assert rs["nfe"] == 1 and rs["n"] == 128
    with pytest.raises(fmd.InvalidArgument, match="bogus"):
        fmd.Evaluator(ring8, bogus=1)
    ec = fmd.Evaluator(fmd.Teacher.mixture("classes4-d32"), n=8)
    assert ec.labels.shape == (8,) and ec.labels.dtype == np.int32
    with pytest.raises(fmd.InvalidArgument):
        ev.student(fmd.Student.from_teacher(fmd.Teacher.mixture("classes4-d32"), cpu, width=8,
                                            depth=1))
