"""fmd.Backend: a compute device (fmd_backend), and the module-level helpers."""
from __future__ import annotations

import ctypes
import threading
from typing import Callable, Dict, Optional

from . import _lib
from ._handle import Handle


def version() -> str:
    """Version of the loaded libfmd, "MAJOR.MINOR.PATCH"."""
    return _lib.text(_lib.fn("fmd_version")())


def version_hex() -> int:
    """FMD_VERSION_HEX of the loaded library."""
    return int(_lib.fn("fmd_version_hex")())


def status_string(status: int) -> str:
    """English text of a status code ("invalid argument")."""
    return _lib.text(_lib.fn("fmd_status_string")(int(status)))


def status_name(status: int) -> str:
    """Symbolic name of a status code ("FMD_ERR_INVALID_ARG")."""
    return _lib.text(_lib.fn("fmd_status_name")(int(status)))


def last_error() -> str:
    """Message of the last failed libfmd call on this thread ("" if none)."""
    return _lib.last_error()


def last_status() -> int:
    """Status of the last failed libfmd call on this thread (0 if none)."""
    return int(_lib.fn("fmd_last_status")())


def clear_error() -> None:
    """Forget the last error of this thread."""
    _lib.fn("fmd_clear_error")()


def backends() -> Dict[str, bool]:
    """Backend names this build knows, each with whether it can be opened now."""
    n = _lib.fn("fmd_backend_count")()
    out = {}
    for i in range(n):
        name = _lib.fn("fmd_backend_name_at")(i)
        out[_lib.text(name)] = bool(_lib.fn("fmd_backend_available")(name))
    return out


LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3
_log_keep: Optional[object] = None


def set_log_callback(fn: Optional[Callable[[int, str], None]], max_level: int = LOG_INFO) -> None:
    """Send library log lines (level, text) of severity <= max_level to fn; None silences.

    fn must not raise; an exception it raises is swallowed (logging cannot fail).
    """
    global _log_keep
    if fn is None:
        _lib.fn("fmd_set_log_callback")(_lib.log_fn(), None, 0)
        _log_keep = None
        return
    if not callable(fn):
        raise TypeError("fn must be callable or None")

    def tramp(level: int, msg: bytes, user: Optional[int]) -> None:
        try:
            fn(int(level), _lib.text(msg))
        except BaseException:  # a log line must never break the library call
            pass

    cb = _lib.log_fn(tramp)
    _lib.fn("fmd_set_log_callback")(cb, None, int(max_level))
    _log_keep = cb  # kept alive while the library may call it


class Backend(Handle):
    """A compute device: ``Backend("cpu")``, ``Backend("cuda")``, ``Backend("auto")``.

    ``Backend(None)`` honours the FMD_BACKEND environment variable.  Objects
    created on a backend keep a reference to it, so it is released last.
    """

    _destroy = "fmd_backend_destroy"
    _kind = "Backend"
    _default: Optional["Backend"] = None
    _default_lock = threading.Lock()

    def __init__(self, name: Optional[str] = "auto") -> None:
        cname = None if name is None else _lib.cstr(name, "name")
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_backend_open")(cname, ctypes.byref(h)))
        super().__init__(h.value)

    @classmethod
    def default(cls) -> "Backend":
        """A shared backend opened with ``Backend(None)`` on first use."""
        with cls._default_lock:
            if cls._default is None or cls._default.closed:
                cls._default = Backend(None)
            return cls._default

    @property
    def name(self) -> str:
        """"cpu" or "cuda"."""
        return _lib.text(_lib.fn("fmd_backend_name")(self._handle()))

    @property
    def device(self) -> str:
        """Human description of the device."""
        return _lib.text(_lib.fn("fmd_backend_device")(self._handle()))

    @property
    def threads(self) -> int:
        """Worker threads of a CPU backend (0 for GPUs)."""
        return int(_lib.fn("fmd_backend_threads")(self._handle()))

    def selfcheck(self) -> None:
        """Compare every device op with the reference; raises InternalError naming a bad op."""
        _lib.check(_lib.fn("fmd_backend_selfcheck")(self._handle()))

    def __repr__(self) -> str:
        if self.closed:
            return "fmd.Backend(<closed>)"
        return f"fmd.Backend({self.name!r}: {self.device})"
