"""fmd.Dataset, teacher training, and the picture/file helpers."""
import numpy as np
import pytest

import fmd


def test_dataset_from_arrays_and_mixture(rng):
    x = rng.normal(0, 1, (10, 3)).astype(np.float32)
    lab = (np.arange(10) % 3).astype(np.int32)
    ds = fmd.Dataset(x, lab)
    assert (len(ds), ds.dim, ds.num_classes) == (10, 3, 3)
    xi, li = ds[4]
    np.testing.assert_array_equal(xi, x[4])
    assert li == 1 and ds[-1][1] == lab[-1]
    xa, la = ds.arrays()
    np.testing.assert_array_equal(xa, x)
    np.testing.assert_array_equal(la, lab)
    u = fmd.Dataset(x)
    assert u.num_classes == 0 and u.get(0)[1] == -1 and u.arrays()[1] is None
    with pytest.raises(fmd.InvalidArgument):
        ds.get(10)
    with pytest.raises(TypeError):
        fmd.Dataset(x.astype(np.float64))
    with pytest.raises(ValueError):
        fmd.Dataset(np.zeros(3, np.float32))
    with pytest.raises(fmd.NonFinite):
        fmd.Dataset(np.full((2, 2), np.nan, np.float32))
    m = fmd.Dataset.from_mixture(fmd.Teacher.mixture("ring8"), 50, seed=3)
    assert (len(m), m.dim) == (50, 2)
    np.testing.assert_array_equal(m.arrays()[0], fmd.Teacher.mixture("ring8").sample_data(50, seed=3))
    with pytest.raises(fmd.Unsupported):
        fmd.Dataset.from_mixture(fmd.Teacher.from_callable(lambda x, t, l: x, 2), 5)
    with pytest.raises(fmd.FmdIOError):
        fmd.Dataset.load_idx("/nonexistent/images-idx3-ubyte")


def test_train_teacher_small(cpu):
    data = fmd.Dataset.from_mixture(fmd.Teacher.mixture("ring8"), 256, seed=1)
    seen = []
    t = fmd.Teacher.train(data, cpu, progress=lambda s: seen.append(s["step"]), steps=20,
                          batch=32, width=16, depth=2, temb_dim=16, progress_every=10)
    assert (t.kind, t.dim, t.backend) == ("network", 2, cpu)
    assert seen == [10, 20]
    assert np.all(np.isfinite(t.sample(8, steps=4)))
    assert t.velocity(np.zeros((2, 2), np.float32), 0.5).shape == (2, 2)
    with pytest.raises(fmd.Cancelled):
        fmd.train_teacher(data, cpu, progress=lambda s: False, steps=20, batch=8, width=8,
                          depth=1, progress_every=5)
    with pytest.raises(fmd.InvalidArgument, match="bogus"):
        fmd.train_teacher(data, cpu, bogus=1)
    with pytest.raises(TypeError):
        fmd.train_teacher(np.zeros((3, 2), np.float32))


def test_png_npy_plots_describe(tmp_path, cpu, rng):
    img = (np.arange(6 * 5 * 3) % 256).astype(np.uint8).reshape(6, 5, 3)
    fmd.write_png(tmp_path / "a.png", img)
    fmd.write_png(tmp_path / "g.png", img[:, :, 0])
    for name in ("a.png", "g.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TypeError):
        fmd.write_png(tmp_path / "b.png", img.astype(np.float32))
    with pytest.raises(ValueError):
        fmd.write_png(tmp_path / "b.png", img[0, 0])
    a = rng.normal(0, 1, (4, 3, 2)).astype(np.float32)
    fmd.npy_save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)
    np.testing.assert_array_equal(fmd.npy_load(tmp_path / "a.npy"), a)
    i = np.arange(7, dtype=np.int32)
    np.save(tmp_path / "i.npy", i)
    np.testing.assert_array_equal(fmd.npy_load(tmp_path / "i.npy"), i)
    np.save(tmp_path / "d.npy", i.astype(np.float64))
    with pytest.raises(fmd.Unsupported):
        fmd.npy_load(tmp_path / "d.npy")
    with pytest.raises(TypeError):
        fmd.npy_save(tmp_path / "x.npy", i.astype(np.int64))
    pts = [rng.normal(0, 1, (200, 2)).astype(np.float32) for _ in range(2)]
    fmd.plot_density_panels(tmp_path / "p.png", pts, titles=["a", "b"], panel_px=64)
    fmd.plot_curves(tmp_path / "c.png", [np.arange(10.0), np.arange(10.0) ** 2], names=["x", "x2"],
                    title="t", log_y=True, width=200, height=150)
    fmd.plot_image_grid(tmp_path / "grid.png", rng.uniform(-1, 1, (4, 1, 6, 6)).astype(np.float32))
    for name in ("p.png", "c.png", "grid.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        fmd.plot_density_panels(tmp_path / "p.png", [np.zeros((3, 3), np.float32)])
    s = fmd.Student.from_teacher(fmd.Teacher.mixture("ring8"), cpu, width=8, depth=1)
    s.save(tmp_path / "s.fmd")
    text = fmd.describe_file(tmp_path / "s.fmd")
    assert "out_proj.weight" in text
    info = fmd.describe_file(tmp_path / "s.fmd", json=True)
    assert isinstance(info, dict) and "out_proj.weight" in str(info)
    with pytest.raises(fmd.FmdIOError):
        fmd.describe_file(tmp_path / "absent.fmd")


def test_dataset_load_idx(tmp_path):
    import struct
    img = (np.arange(3 * 4 * 5) * 7 % 256).astype(np.uint8).reshape(3, 4, 5)
    (tmp_path / "img.idx").write_bytes(struct.pack(">IIII", 0x803, 3, 4, 5) + img.tobytes())
    lab = np.array([2, 0, 1], np.uint8)
    (tmp_path / "lab.idx").write_bytes(struct.pack(">II", 0x801, 3) + lab.tobytes())
    ds = fmd.Dataset.load_idx(tmp_path / "img.idx", tmp_path / "lab.idx")
    assert (len(ds), ds.dim, ds.num_classes) == (3, 20, 3)
    x, labels = ds.arrays()
    np.testing.assert_allclose(x, img.reshape(3, 20) / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(labels, lab)
    assert fmd.Dataset.load_idx(tmp_path / "img.idx").num_classes == 0
    (tmp_path / "short.idx").write_bytes(struct.pack(">IIII", 0x803, 3, 4, 5) + img.tobytes()[:10])
    with pytest.raises(fmd.FormatError, match="short.idx"):
        fmd.Dataset.load_idx(tmp_path / "short.idx")
