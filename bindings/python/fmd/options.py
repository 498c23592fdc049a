"""fmd.Options: the typed key/value bag of hyper-parameters (fmd_options)."""
from __future__ import annotations

import ctypes
import numbers
from typing import Any, Dict, Iterator, Mapping, Optional, Union

from . import _lib

Value = Union[int, float, str, bool]


class Options:
    """Named, typed settings handed to libfmd objects.

    ``Options(batch=64, lr=1e-4, target="jvp")``: Python ints and bools become
    integers, floats numbers, strings strings.  Unknown keys are rejected by
    the object that consumes the options (the error names the key).
    """

    def __init__(self, mapping: Optional[Mapping[str, Value]] = None, **kwargs: Value) -> None:
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_options_create")(ctypes.byref(h)))
        self._h: Optional[int] = h.value
        for k, v in {**(dict(mapping) if mapping else {}), **kwargs}.items():
            self[k] = v

    @property
    def _as_parameter_(self) -> Optional[int]:
        return self._h

    def close(self) -> None:
        """Release the C object now (also done when garbage-collected)."""
        h, self._h = self._h, None
        if h:
            _lib.fn("fmd_options_destroy")(h)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _handle(self) -> int:
        if not self._h:
            raise ValueError("fmd.Options: used after close()")
        return self._h

    def __setitem__(self, key: str, value: Value) -> None:
        k = _lib.cstr(key, "key")
        h = self._handle()
        if isinstance(value, (bool, numbers.Integral)):
            _lib.check(_lib.fn("fmd_options_set_i64")(h, k, int(value)))
        elif isinstance(value, numbers.Real):
            _lib.check(_lib.fn("fmd_options_set_f64")(h, k, float(value)))
        elif isinstance(value, str):
            _lib.check(_lib.fn("fmd_options_set_str")(h, k, value.encode("utf-8")))
        else:
            raise TypeError(f"option '{key}': value must be int, float, bool or str, got "
                            f"{type(value).__name__}")

    def parse(self, key_equals_value: str) -> None:
        """Set one option from the command-line form "key=value"."""
        _lib.check(_lib.fn("fmd_options_parse")(self._handle(),
                                                _lib.cstr(key_equals_value, "key_equals_value")))

    def __getitem__(self, key: str) -> Value:
        k = _lib.cstr(key, "key")
        h = self._handle()
        i = ctypes.c_int64()
        if _lib.fn("fmd_options_get_i64")(h, k, ctypes.byref(i)) == 0:
            return i.value
        # the typed getters refuse other types; the probes' messages are not the user's
        f = ctypes.c_double()
        s = ctypes.c_char_p()
        try:
            if _lib.fn("fmd_options_get_f64")(h, k, ctypes.byref(f)) == 0:
                return f.value
            if _lib.fn("fmd_options_get_str")(h, k, ctypes.byref(s)) == 0:
                return _lib.text(s.value)
        finally:
            _lib.fn("fmd_clear_error")()
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def keys(self) -> list:
        h = self._handle()
        return [_lib.text(_lib.fn("fmd_options_key")(h, i))
                for i in range(_lib.fn("fmd_options_count")(h))]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return _lib.fn("fmd_options_count")(self._handle())

    def items(self) -> list:
        return [(k, self[k]) for k in self.keys()]

    def to_dict(self) -> Dict[str, Value]:
        return dict(self.items())

    def __repr__(self) -> str:
        return "fmd.Options(" + ", ".join(f"{k}={v!r}" for k, v in self.items()) + ")"


def make(opts: Optional[Union[Options, Mapping[str, Value]]] = None, **kwargs: Value) -> Optional[Options]:
    """An Options from an Options, a mapping and/or keywords; None when empty."""
    if isinstance(opts, Options) and not kwargs:
        return opts
    merged: Dict[str, Any] = {}
    if isinstance(opts, Options):
        merged.update(opts.to_dict())
    elif opts is not None:
        merged.update(opts)
    merged.update(kwargs)
    if not merged:
        return None
    return Options(merged)


_FIELDS = ("key", "type", "default", "range", "applies", "help")


def consumers() -> list:
    """The names of the library's option tables ("distiller", "student", ...)."""
    out, i = [], 0
    while True:
        c = _lib.fn("fmd_option_consumer")(i)
        if not c:
            return out
        out.append(_lib.text(c))
        i += 1


def describe(consumer: str) -> list:
    """Every option `consumer` takes, from the library's own table: a list of
    dicts with key, type ("int", "num", "str"), default, range, applies (the
    condition under which the key acts, "" for always) and help."""
    c = _lib.cstr(consumer, "consumer")
    n = _lib.fn("fmd_option_count")(c)
    if n < 0:
        raise ValueError(f"unknown option table {consumer!r} (known: {', '.join(consumers())})")
    buf = ctypes.create_string_buffer(1024)
    rows = []
    for i in range(n):
        row = {}
        for what, name in enumerate(_FIELDS):
            _lib.check(_lib.fn("fmd_option_describe")(c, i, what, buf, len(buf)))
            row[name] = _lib.text(buf.value)
        rows.append(row)
    return rows
