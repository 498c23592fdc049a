"""Loading libfmd.so and declaring the C signatures (ctypes).

The library is looked up in this order:
  1. the path in the environment variable FMD_LIBRARY;
  2. next to this package (fmd/libfmd.so*: `pip install bindings/python` bundles the
     CMake-built library, see setup.py);
  3. the build tree of a source checkout (<repo>/build/libfmd.so);
  4. the system loader (libfmd.so.0, then ctypes.util.find_library("fmd")).

Every public function of fmd.h has an entry in SIGNATURES with its restype and
argtypes.  A function the loaded library does not export (an older build) is
listed in MISSING and raises Unsupported when called.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint64, c_void_p)
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import errors

ABI_MAJOR = 0

# ---- callback and struct types (mirror fmd.h) --------------------------------------
malloc_fn = CFUNCTYPE(c_void_p, c_size_t, c_void_p)
realloc_fn = CFUNCTYPE(c_void_p, c_void_p, c_size_t, c_void_p)
free_fn = CFUNCTYPE(None, c_void_p, c_void_p)
log_fn = CFUNCTYPE(None, c_int, c_char_p, c_void_p)
cancel_fn = CFUNCTYPE(c_int, c_void_p)
velocity_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), POINTER(c_float), POINTER(c_float),
                        POINTER(c_int32), c_int64, c_int64)


class DistillStats(Structure):
    """struct fmd_distill_stats."""
    _fields_ = [("struct_size", c_size_t), ("step", c_int64), ("loss_pred", c_double),
                ("loss_corr", c_double), ("loss_aux", c_double), ("delta_norm", c_double),
                ("vdiff_norm", c_double), ("lambda", c_double), ("lr", c_double),
                ("grad_norm", c_double), ("steps_per_s", c_double)]

    def to_dict(self) -> Dict[str, float]:
        return {name: getattr(self, name) for name, _ in self._fields_ if name != "struct_size"}


class EvalResult(Structure):
    """struct fmd_eval_result."""
    _fields_ = [("struct_size", c_size_t), ("n", c_int64), ("map_error", c_double),
                ("energy_distance", c_double), ("energy_floor", c_double),
                ("modes_covered", c_int), ("modes_total", c_int), ("mass_error", c_double),
                ("seconds", c_double), ("nfe", c_int64)]

    def to_dict(self) -> Dict[str, float]:
        return {name: getattr(self, name) for name, _ in self._fields_ if name != "struct_size"}


class TrainStats(Structure):
    """struct fmd_train_stats."""
    _fields_ = [("struct_size", c_size_t), ("step", c_int64), ("steps", c_int64),
                ("loss", c_double), ("loss_avg", c_double), ("lr", c_double),
                ("grad_norm", c_double), ("steps_per_s", c_double), ("eta_s", c_double)]

    def to_dict(self) -> Dict[str, float]:
        return {name: getattr(self, name) for name, _ in self._fields_ if name != "struct_size"}


progress_fn = CFUNCTYPE(c_int, POINTER(DistillStats), c_void_p)
train_progress_fn = CFUNCTYPE(c_int, POINTER(TrainStats), c_void_p)
reward_fn = CFUNCTYPE(c_double, POINTER(c_float), c_int64, c_int32, c_void_p)
reward_batch_fn = CFUNCTYPE(c_int, POINTER(c_double), POINTER(c_float), POINTER(c_int32), c_int64,
                            c_int64, c_void_p)

# Opaque handles travel as void pointers; out-parameters as void**.
H = c_void_p
PH = POINTER(c_void_p)
PF = POINTER(c_float)
PD = POINTER(c_double)
PI32 = POINTER(c_int32)
PI64 = POINTER(c_int64)
S = c_int  # fmd_status

# name: (restype, argtypes) - one entry per public function of include/fmd.h.
SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    # versions, status, errors
    "fmd_version": (c_char_p, []),
    "fmd_version_hex": (c_int, []),
    "fmd_status_string": (c_char_p, [c_int]),
    "fmd_status_name": (c_char_p, [c_int]),
    "fmd_last_error": (c_char_p, []),
    "fmd_last_status": (c_int, []),
    "fmd_clear_error": (None, []),
    # hooks
    "fmd_set_allocator": (S, [malloc_fn, realloc_fn, free_fn, c_void_p]),
    "fmd_set_log_callback": (None, [log_fn, c_void_p, c_int]),
    "fmd_set_cancel_check": (None, [cancel_fn, c_void_p]),
    # options
    "fmd_options_create": (S, [PH]),
    "fmd_options_destroy": (None, [H]),
    "fmd_options_set_f64": (S, [H, c_char_p, c_double]),
    "fmd_options_set_i64": (S, [H, c_char_p, c_int64]),
    "fmd_options_set_str": (S, [H, c_char_p, c_char_p]),
    "fmd_options_parse": (S, [H, c_char_p]),
    "fmd_options_get_f64": (S, [H, c_char_p, PD]),
    "fmd_options_get_i64": (S, [H, c_char_p, PI64]),
    "fmd_options_get_str": (S, [H, c_char_p, POINTER(c_char_p)]),
    "fmd_options_count": (c_int, [H]),
    "fmd_options_key": (c_char_p, [H, c_int]),
    "fmd_option_consumer": (c_char_p, [c_int]),
    "fmd_option_count": (c_int, [c_char_p]),
    "fmd_option_describe": (S, [c_char_p, c_int, c_int, c_char_p, c_size_t]),
    # backends
    "fmd_backend_count": (c_int, []),
    "fmd_backend_name_at": (c_char_p, [c_int]),
    "fmd_backend_available": (c_int, [c_char_p]),
    "fmd_backend_open": (S, [c_char_p, PH]),
    "fmd_backend_destroy": (None, [H]),
    "fmd_backend_name": (c_char_p, [H]),
    "fmd_backend_device": (c_char_p, [H]),
    "fmd_backend_threads": (c_int, [H]),
    "fmd_backend_selfcheck": (S, [H]),
    # teachers
    "fmd_teacher_create_mixture": (S, [c_int, c_int, PD, PD, PD, PI32, c_int, PH]),
    "fmd_teacher_create_preset": (S, [c_char_p, PH]),
    "fmd_teacher_load_spec": (S, [c_char_p, PH]),
    "fmd_teacher_create_callback": (S, [c_int64, c_int, velocity_fn, c_void_p, PH]),
    "fmd_teacher_load": (S, [H, c_char_p, H, PH]),
    "fmd_teacher_load_safetensors": (S, [H, c_char_p, c_char_p, H, PH]),
    "fmd_teacher_save": (S, [H, c_char_p]),
    "fmd_teacher_destroy": (None, [H]),
    "fmd_teacher_kind": (c_char_p, [H]),
    "fmd_teacher_dim": (c_int64, [H]),
    "fmd_teacher_num_classes": (c_int, [H]),
    "fmd_teacher_set_guidance": (S, [H, c_double, c_double, c_double]),
    "fmd_teacher_get_guidance": (S, [H, PD, PD, PD]),
    "fmd_teacher_velocity": (S, [H, PF, PF, PF, PI32, c_int64]),
    "fmd_teacher_sample_data": (S, [H, c_int64, c_uint64, c_uint64, PI32, PF, PI32]),
    "fmd_teacher_solve": (S, [H, PF, PI32, c_int64, H, PI64]),
    "fmd_teacher_sample": (S, [H, PF, PI32, c_int64, c_uint64, c_uint64, H, PI64]),
    "fmd_prior_noise": (S, [PF, c_int64, c_int64, c_uint64, c_uint64]),
    # data sets and teacher training
    "fmd_dataset_create": (S, [PF, PI32, c_int64, c_int64, c_int, PH]),
    "fmd_dataset_from_mixture": (S, [H, c_int64, c_uint64, PH]),
    "fmd_dataset_load_idx": (S, [c_char_p, c_char_p, PH]),
    "fmd_dataset_load_idx_opts": (S, [c_char_p, c_char_p, H, PH]),
    "fmd_dataset_destroy": (None, [H]),
    "fmd_dataset_size": (c_int64, [H]),
    "fmd_dataset_dim": (c_int64, [H]),
    "fmd_dataset_num_classes": (c_int, [H]),
    "fmd_dataset_get": (S, [H, c_int64, PF, PI32]),
    "fmd_teacher_train": (S, [H, H, H, train_progress_fn, c_void_p, PH]),
    "fmd_teacher_train_comm": (S, [H, H, H, H, train_progress_fn, c_void_p, PH]),
    # communicators
    "fmd_comm_open": (S, [c_char_p, H, PH]),
    "fmd_comm_rank": (c_int, [H]),
    "fmd_comm_size": (c_int, [H]),
    "fmd_comm_describe": (c_char_p, [H]),
    "fmd_comm_barrier": (S, [H]),
    "fmd_comm_abort": (None, [H, c_int]),
    "fmd_comm_close": (None, [H]),
    # students
    "fmd_student_create": (S, [H, H, H, PH]),
    "fmd_student_load": (S, [c_char_p, H, PH]),
    "fmd_student_save": (S, [H, c_char_p]),
    "fmd_student_forward": (S, [H, PF, PF, PI32, c_int64, PF]),
    "fmd_student_dim": (c_int64, [H]),
    "fmd_student_num_classes": (c_int, [H]),
    "fmd_student_num_params": (c_int64, [H]),
    "fmd_student_made": (c_char_p, [H, c_char_p]),
    "fmd_student_destroy": (None, [H]),
    # distiller
    "fmd_distiller_create": (S, [H, H, H, H, PH]),
    "fmd_distiller_set_data": (S, [H, PF, PI32, c_int64]),
    "fmd_distiller_step": (S, [H]),
    "fmd_distiller_run": (S, [H, c_int64, progress_fn, c_void_p]),
    "fmd_distiller_stats": (S, [H, POINTER(DistillStats)]),
    "fmd_distiller_steps": (c_int64, [H]),
    "fmd_distiller_planned_steps": (c_int64, [H]),
    "fmd_distiller_ema_student": (S, [H, PH]),
    "fmd_distiller_save": (S, [H, c_char_p]),
    "fmd_distiller_resume": (S, [H, c_char_p]),
    "fmd_distiller_set_comm": (S, [H, H]),
    "fmd_distiller_destroy": (None, [H]),
    # evaluator
    "fmd_evaluator_create": (S, [H, H, PH]),
    "fmd_evaluator_student": (S, [H, H, POINTER(EvalResult)]),
    "fmd_evaluator_teacher": (S, [H, H, POINTER(EvalResult)]),
    "fmd_evaluator_noise": (PF, [H, PI64, PI64]),
    "fmd_evaluator_labels": (PI32, [H]),
    "fmd_evaluator_destroy": (None, [H]),
    # sampler
    "fmd_sampler_create": (S, [H, H, H, PH]),
    "fmd_sampler_destroy": (None, [H]),
    "fmd_sampler_dim": (c_int64, [H]),
    "fmd_sampler_num_classes": (c_int, [H]),
    "fmd_sampler_sample": (S, [H, PI32, c_int64, c_uint64, c_uint64, H, PF, c_int64, PI64]),
    "fmd_sampler_best_of_n": (S, [H, PI32, c_int64, c_uint64, c_uint64, c_int64, reward_fn,
                                  reward_batch_fn, c_void_p, H, PF, c_int64, PF, c_int64, PD,
                                  PI64]),
    # pictures and files
    "fmd_write_png": (S, [c_char_p, POINTER(ctypes.c_uint8), c_int, c_int, c_int]),
    "fmd_npy_save": (S, [c_char_p, c_char_p, c_int, PI64, c_void_p]),
    "fmd_npy_load": (S, [c_char_p, POINTER(c_char_p), POINTER(c_int), PI64, c_int,
                         POINTER(c_void_p)]),
    "fmd_npy_free": (None, [c_void_p]),
    "fmd_plot_density_panels": (S, [c_char_p, c_int, POINTER(PF), PI64, POINTER(c_char_p), PD,
                                    c_int]),
    "fmd_plot_curves": (S, [c_char_p, PD, POINTER(PD), POINTER(c_char_p), c_int, c_int64,
                            c_char_p, c_int, c_int, c_int]),
    "fmd_plot_image_grid": (S, [c_char_p, PF, c_int64, c_int, c_int, c_int, c_int, c_float,
                                c_float]),
    "fmd_file_describe": (S, [c_char_p, c_int, c_char_p, c_size_t, POINTER(c_size_t)]),
}


def _candidates() -> List[str]:
    out: List[str] = []
    env = os.environ.get("FMD_LIBRARY")
    if env:
        return [env]  # an explicit choice is never silently replaced
    here = Path(__file__).resolve().parent
    out += [str(p) for p in sorted(here.glob("libfmd.so*"))]  # bundled by setup.py
    repo = here.parent.parent.parent
    if (repo / "include" / "fmd.h").is_file():  # a source checkout (not site-packages)
        out.append(str(repo / "build" / "libfmd.so"))
    out.append("libfmd.so.0")
    found = ctypes.util.find_library("fmd")
    if found:
        out.append(found)
    return out


def _load() -> Tuple[ctypes.CDLL, str]:
    tried = []
    for cand in _candidates():
        if os.sep in cand and not os.path.exists(cand):
            tried.append(f"{cand} (absent)")
            continue
        try:
            return ctypes.CDLL(cand), cand
        except OSError as e:
            tried.append(f"{cand} ({e})")
    raise ImportError("fmd: cannot load libfmd.so; build it (cmake) and reinstall the package "
                      "(pip install bindings/python bundles build/libfmd.so), install it "
                      "(cmake --install), or set FMD_LIBRARY to its path. Tried: " + "; ".join(tried))


lib, path = _load()
MISSING: List[str] = []


def _declare() -> None:
    for name, (restype, argtypes) in SIGNATURES.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            MISSING.append(name)
            continue
        f.restype = restype
        f.argtypes = argtypes


_declare()


class _Absent:
    """Stands for a function the loaded library does not export."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        raise errors.Unsupported(f"{self.name}: not exported by the loaded libfmd ({path}); "
                                 "rebuild the library", 6)


def fn(name: str) -> Callable[..., Any]:
    """The declared C function `name` (raises Unsupported if this build lacks it)."""
    if name in MISSING:
        return _Absent(name)
    return getattr(lib, name)


def has(name: str) -> bool:
    return name in SIGNATURES and name not in MISSING


_v = lib.fmd_version_hex()
if (_v >> 16) != ABI_MAJOR:
    raise ImportError(f"fmd: {path} has ABI major {_v >> 16}, these bindings need {ABI_MAJOR}")

# ---- errors ------------------------------------------------------------------------
# A Python exception raised inside a callback (teacher velocity, progress) makes the
# callback return non-zero; the C call then fails and check() re-raises it.
_pending = threading.local()


def set_pending(exc: BaseException) -> None:
    if getattr(_pending, "exc", None) is None:
        _pending.exc = exc


def take_pending() -> Optional[BaseException]:
    exc = getattr(_pending, "exc", None)
    _pending.exc = None
    return exc


# ---- Ctrl-C during long calls ------------------------------------------------------
# While a long C call runs on the main thread, SIGINT only sets a flag (the default
# handler would raise KeyboardInterrupt at an arbitrary point, possibly inside a ctypes
# callback, where it cannot propagate); the library polls fmd_set_cancel_check between
# steps, gets the flag and stops with FMD_ERR_CANCELLED keeping the work done, and the
# previous handler (KeyboardInterrupt by default) is called once the call has returned.
_interrupt = {"hit": False, "depth": 0}


def _poll_interrupt(user: Optional[int]) -> int:
    return 1 if _interrupt["hit"] else 0


_poll_cb = cancel_fn(_poll_interrupt)


def _on_sigint(sig: int, frame: Any) -> None:
    _interrupt["hit"] = True


def long_call(name: str, *args: Any) -> int:
    """Call the C function `name` so that Ctrl-C stops it within one step of work and
    raises KeyboardInterrupt here (the object keeps the work completed).  Returns the
    status."""
    import signal
    f = fn(name)
    main = threading.current_thread() is threading.main_thread()
    prev = signal.getsignal(signal.SIGINT) if main and _interrupt["depth"] == 0 else None
    if not callable(prev) or prev is _on_sigint:
        prev = None  # SIG_IGN / SIG_DFL / not the main thread / nested: leave it alone
    if prev is not None:
        _interrupt["hit"] = False
        signal.signal(signal.SIGINT, _on_sigint)
        if has("fmd_set_cancel_check"):
            fn("fmd_set_cancel_check")(_poll_cb, None)
    _interrupt["depth"] += 1
    try:
        st = f(*args)
    finally:
        _interrupt["depth"] -= 1
        if prev is not None:
            if has("fmd_set_cancel_check"):
                fn("fmd_set_cancel_check")(cancel_fn(), None)
            signal.signal(signal.SIGINT, prev)
    if prev is not None and _interrupt["hit"]:
        _interrupt["hit"] = False
        take_pending()
        prev(signal.SIGINT, None)  # the default raises KeyboardInterrupt
    return st


def last_error() -> str:
    return lib.fmd_last_error().decode("utf-8", "replace")


def check(status: int) -> None:
    """Raise the exception of a non-zero status, with fmd_last_error()."""
    pending = take_pending()
    if status == 0:
        return
    err = errors.from_status(status, last_error())
    if pending is not None:
        raise pending from err
    raise err


def cstr(s: Any, name: str) -> bytes:
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
    if isinstance(s, bytes):
        return s
    if not isinstance(s, str):
        raise TypeError(f"{name} must be a str, got {type(s).__name__}")
    return s.encode("utf-8")


def text(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""
