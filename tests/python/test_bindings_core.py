"""fmd Python bindings: loading, versions, backends, options, errors, and the
guard that every public function of include/fmd.h is bound with the right
number of arguments."""
import ctypes
import os
import re
from pathlib import Path

import numpy as np
import pytest

import fmd
from fmd import _lib

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "fmd.h"


def header_functions():
    """{name: number of parameters} of every FMD_API function in fmd.h."""
    src = HEADER.read_text()
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    src = re.sub(r"//[^\n]*", " ", src)
    out = {}
    for m in re.finditer(r"FMD_API\s+[^;{]*?\b(fmd_\w+)\s*\(([^;]*?)\)\s*;", src, flags=re.S):
        params = m.group(2).strip()
        out[m.group(1)] = 0 if params in ("", "void") else params.count(",") + 1
    return out


def test_header_parser_finds_functions():
    funcs = header_functions()
    assert "fmd_version" in funcs and funcs["fmd_version"] == 0
    assert funcs["fmd_teacher_create_mixture"] == 8
    assert len(funcs) > 40


def test_every_header_function_is_bound():
    funcs = header_functions()
    unbound = sorted(set(funcs) - set(_lib.SIGNATURES))
    assert not unbound, f"public functions without a binding in fmd/_lib.py: {unbound}"
    stale = sorted(set(_lib.SIGNATURES) - set(funcs))
    assert not stale, f"bindings of functions no longer in fmd.h: {stale}"
    wrong = {n: (len(_lib.SIGNATURES[n][1]), k) for n, k in funcs.items()
             if len(_lib.SIGNATURES[n][1]) != k}
    assert not wrong, f"argument counts differ (binding, header): {wrong}"


def test_bound_functions_have_types():
    for name in _lib.SIGNATURES:
        if name in _lib.MISSING:
            continue
        f = getattr(_lib.lib, name)
        assert f.argtypes is not None, name
        assert f.restype == _lib.SIGNATURES[name][0], name


def test_missing_symbol_raises_unsupported():
    absent = _lib._Absent("fmd_nothing")
    with pytest.raises(fmd.Unsupported, match="fmd_nothing"):
        absent()


def test_library_lookup_honours_env():
    assert os.path.realpath(fmd.library_path) == os.path.realpath(
        os.environ.get("FMD_LIBRARY", fmd.library_path))


def test_version():
    v = fmd.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", v)
    major, minor, patch = map(int, v.split("."))
    assert fmd.version_hex() == (major << 16) | (minor << 8) | patch
    assert major == _lib.ABI_MAJOR


def test_backends_and_backend(cpu):
    b = fmd.backends()
    assert b["cpu"] is True and "cuda" in b
    assert cpu.name == "cpu"
    assert cpu.device.startswith("cpu")
    assert cpu.threads >= 1
    cpu.selfcheck()
    assert "cpu" in repr(cpu)
    with fmd.Backend("auto") as auto:
        assert auto.name in ("cpu", "cuda")
    assert auto.closed and "closed" in repr(auto)
    with pytest.raises(ValueError, match="after close"):
        auto.name
    assert fmd.Backend.default() is fmd.Backend.default()


def test_backend_close_refused_while_used():
    be = fmd.Backend("cpu")
    s = fmd.Student.from_teacher(fmd.Teacher.mixture("ring8"), be, width=8, depth=1)
    with pytest.raises(RuntimeError, match="still used"):
        be.close()
    assert s.dim == 2
    s.close()
    be.close()
    assert be.closed


def test_options_roundtrip():
    o = fmd.Options(batch=64, lr=1e-4, target="jvp", flag=True)
    assert len(o) == 4 and o.keys() == ["batch", "lr", "target", "flag"]
    assert o["batch"] == 64 and isinstance(o["batch"], int)
    assert o["lr"] == pytest.approx(1e-4)
    assert o["target"] == "jvp"
    assert o["flag"] == 1
    o["batch"] = "big"
    assert o["batch"] == "big" and fmd.last_error() == ""
    o.parse("steps=12")
    assert o["steps"] == 12 and "steps" in o
    with pytest.raises(KeyError):
        o["absent"]
    assert o.to_dict()["target"] == "jvp" and "batch" in repr(o)
    with pytest.raises(TypeError):
        o["x"] = [1, 2]
    with pytest.raises(fmd.InvalidArgument, match="="):
        o.parse("no_equals_sign")
    with pytest.raises(fmd.NonFinite):
        o["nan"] = float("nan")
    with pytest.raises(fmd.InvalidArgument):
        o["k" * 80] = 1
    o.close()
    with pytest.raises(ValueError):
        len(o)


def test_status_table_matches_library():
    for code in range(11):
        assert fmd.status_name(code).startswith("FMD_")
        assert fmd.status_string(code)
    assert fmd.status_name(999) == "FMD_UNKNOWN"
    for code, cls in fmd.errors.BY_STATUS.items():
        assert cls.status_name == fmd.status_name(code), code
        e = fmd.errors.from_status(code, "msg")
        assert type(e) is cls and e.status == code and str(e) == "msg"
        assert isinstance(e, fmd.FmdError)
    assert sorted(fmd.errors.BY_STATUS) == list(range(1, 11))
    assert type(fmd.errors.from_status(77, "")) is fmd.FmdError


def test_error_carries_last_error_message():
    with pytest.raises(fmd.InvalidArgument) as ei:
        fmd.Backend("gpu")
    msg = str(ei.value)
    assert "gpu" in msg and msg == fmd.last_error()
    assert ei.value.status == 1 and fmd.last_status() == 1
    assert isinstance(ei.value, ValueError)
    fmd.clear_error()
    assert fmd.last_error() == "" and fmd.last_status() == 0


# Each status provoked through a real libfmd call.
def test_status_invalid_arg():
    with pytest.raises(fmd.InvalidArgument, match="known: ring8"):
        fmd.Teacher.mixture("no-such-mixture")


def test_status_oom():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.realloc.restype = ctypes.c_void_p
    libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    state = {"fail": False}
    m = _lib.malloc_fn(lambda n, u: None if state["fail"] else libc.malloc(n))
    r = _lib.realloc_fn(lambda p, n, u: None if state["fail"] else libc.realloc(p, n))
    f = _lib.free_fn(lambda p, u: libc.free(p))
    _lib.check(_lib.fn("fmd_set_allocator")(m, r, f, None))
    try:
        state["fail"] = True
        with pytest.raises(fmd.OutOfMemory) as ei:
            fmd.Teacher.mixture("ring8")
        assert isinstance(ei.value, MemoryError) and str(ei.value)
        state["fail"] = False
        assert fmd.Teacher.mixture("ring8").dim == 2
    finally:
        state["fail"] = False
        _lib.check(_lib.fn("fmd_set_allocator")(_lib.malloc_fn(), _lib.realloc_fn(),
                                                _lib.free_fn(), None))
    with pytest.raises(fmd.InvalidArgument, match="NULL"):
        _lib.check(_lib.fn("fmd_set_allocator")(m, _lib.realloc_fn(), f, None))


def test_status_io(tmp_path):
    with pytest.raises(fmd.FmdIOError) as ei:
        fmd.Student.load(tmp_path / "absent.fmd")
    assert "absent.fmd" in str(ei.value) and isinstance(ei.value, OSError)


def test_status_format(tmp_path):
    p = tmp_path / "junk.fmd"
    p.write_bytes(b"not a checkpoint at all" * 4)
    with pytest.raises(fmd.FormatError, match="junk.fmd"):
        fmd.Student.load(p)


def test_status_version(tmp_path, cpu):
    p = tmp_path / "s.fmd"
    fmd.Student.from_teacher(fmd.Teacher.mixture("ring8"), cpu, width=8, depth=1).save(p)
    b = bytearray(p.read_bytes())
    b[8:12] = (1000).to_bytes(4, "little")
    p.write_bytes(bytes(b))
    with pytest.raises(fmd.VersionMismatch, match="version"):
        fmd.Student.load(p, cpu)


def test_status_unsupported(tmp_path):
    t = fmd.Teacher.from_callable(lambda x, t, l: -x, 2)
    with pytest.raises(fmd.Unsupported, match="callback"):
        t.save(tmp_path / "t.fmd")
    with pytest.raises(fmd.Unsupported):
        t.sample_data(4)


def test_status_backend_unavailable():
    if fmd.backends()["cuda"]:
        pytest.skip("a CUDA device is present: cuda opens")
    with pytest.raises(fmd.BackendUnavailable) as ei:
        fmd.Backend("cuda")
    assert str(ei.value) == fmd.last_error() and str(ei.value)


def test_status_nonfinite():
    with pytest.raises(fmd.NonFinite, match="lr"):
        fmd.Options(lr=float("inf"))


def test_status_cancelled(ring8, cpu):
    s = fmd.Student.from_teacher(ring8, cpu, width=8, depth=1)
    d = fmd.Distiller(ring8, s, batch=8)
    cb = _lib.progress_fn(lambda stats, user: 1)
    with pytest.raises(fmd.Cancelled, match="cancelled"):
        _lib.check(_lib.fn("fmd_distiller_run")(d._handle(), 2, cb, None))


def test_status_internal(ring8):
    x = fmd.prior_noise(4, 2, seed=1)
    with pytest.raises(fmd.InternalError, match="max_steps"):
        ring8.solve(x, solver="dopri5", max_steps=2, rtol=1e-12, atol=1e-12)


def test_log_callback(ring8):
    lines = []
    fmd.set_log_callback(lambda level, msg: lines.append((level, msg)), fmd.LOG_DEBUG)
    try:
        with pytest.raises(fmd.InvalidArgument):
            fmd.Backend("gpu")
    finally:
        fmd.set_log_callback(None)
    assert any("gpu" in m for _, m in lines), lines
    assert all(0 <= lv <= fmd.LOG_DEBUG for lv, _ in lines)
    n = len(lines)
    with pytest.raises(fmd.InvalidArgument):
        fmd.Backend("gpu")
    assert len(lines) == n
    with pytest.raises(TypeError):
        fmd.set_log_callback(42)


def test_prior_noise():
    z = fmd.prior_noise(6, 3, seed=5)
    assert z.shape == (6, 3) and z.dtype == np.float32
    z2 = fmd.prior_noise(3, 3, seed=5, first_index=3)
    np.testing.assert_array_equal(z[3:], z2)
    assert not np.array_equal(z, fmd.prior_noise(6, 3, seed=6))
    with pytest.raises(ValueError):
        fmd.prior_noise(-1, 3)
    with pytest.raises(TypeError):
        fmd.prior_noise(2.0, 3)


def test_struct_layouts_match_header():
    src = re.sub(r"/\*.*?\*/", " ", HEADER.read_text(), flags=re.S)
    ctype = {"size_t": ctypes.c_size_t, "int64_t": ctypes.c_int64, "double": ctypes.c_double,
             "int": ctypes.c_int, "float": ctypes.c_float, "int32_t": ctypes.c_int32}
    mine = {"fmd_distill_stats": _lib.DistillStats, "fmd_eval_result": _lib.EvalResult,
            "fmd_train_stats": _lib.TrainStats}
    found = dict(re.findall(r"typedef struct (fmd_\w+) \{(.*?)\} \1;", src, flags=re.S))
    assert set(found) == set(mine), f"structs in fmd.h {sorted(found)} vs bound {sorted(mine)}"
    for name, body in found.items():
        fields = re.findall(r"([a-z_0-9]+)\s+([a-z_0-9]+)\s*;", body)
        want = [(f, ctype[t]) for t, f in fields]
        assert [(f, t) for f, t in mine[name]._fields_] == want, name


def test_callback_types_match_header():
    src = re.sub(r"/\*.*?\*/", " ", HEADER.read_text(), flags=re.S)
    found = {m.group(1): m.group(2) for m in
             re.finditer(r"typedef [^;()]*\(\*(fmd_\w+_fn)\)\s*\(([^;]*?)\)\s*;", src, flags=re.S)}
    mine = {"fmd_malloc_fn": _lib.malloc_fn, "fmd_realloc_fn": _lib.realloc_fn,
            "fmd_free_fn": _lib.free_fn, "fmd_log_fn": _lib.log_fn,
            "fmd_velocity_fn": _lib.velocity_fn, "fmd_distill_progress_fn": _lib.progress_fn,
            "fmd_train_progress_fn": _lib.train_progress_fn, "fmd_reward_fn": _lib.reward_fn,
            "fmd_reward_batch_fn": _lib.reward_batch_fn, "fmd_cancel_fn": _lib.cancel_fn}
    assert set(found) == set(mine), f"callback types in fmd.h {sorted(found)} vs bound {sorted(mine)}"
    for name, params in found.items():
        assert len(mine[name]._argtypes_) == params.count(",") + 1, name
