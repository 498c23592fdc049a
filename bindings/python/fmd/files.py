"""Pictures and files: PNG, .npy, density panels, curves, image grids, and
descriptions of .fmd files (the writers the `fmd` tool uses)."""
from __future__ import annotations

import ctypes
import json as _json
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import _arrays as A
from . import _lib

PathLike = Union[str, "os.PathLike[str]"]


def write_png(path: PathLike, pixels: np.ndarray) -> None:
    """Write uint8 pixels (H, W) gray, or (H, W, C) with C in 1, 3, 4, as a PNG."""
    p = A._array(pixels, "pixels", np.uint8)
    if p.ndim == 2:
        h, w, c = p.shape[0], p.shape[1], 1
    elif p.ndim == 3:
        h, w, c = p.shape
    else:
        raise ValueError(f"pixels must have shape (H, W) or (H, W, C), got {p.shape}")
    _lib.check(_lib.fn("fmd_write_png")(_lib.cstr(path, "path"),
                                        p.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                        int(w), int(h), int(c)))


def npy_save(path: PathLike, array: np.ndarray) -> None:
    """Write a float32 or int32 array as .npy (libfmd's writer)."""
    if not isinstance(array, np.ndarray):
        raise TypeError("array must be a numpy.ndarray")
    if array.dtype == np.float32:
        dt = b"f4"
    elif array.dtype == np.int32:
        dt = b"i4"
    else:
        raise TypeError(f"array must be float32 or int32, got {array.dtype}")
    a = np.ascontiguousarray(array)
    if not 1 <= a.ndim <= 8:
        raise ValueError("array must have 1 to 8 dimensions")
    shape = np.array(a.shape, dtype=np.int64)
    _lib.check(_lib.fn("fmd_npy_save")(_lib.cstr(path, "path"), dt, a.ndim,
                                       shape.ctypes.data_as(_lib.PI64), a.ctypes.data_as(ctypes.c_void_p)))


def npy_load(path: PathLike) -> np.ndarray:
    """Read a float32 / int32 .npy file with libfmd's strict reader (a copy)."""
    dt = ctypes.c_char_p()
    nd = ctypes.c_int()
    shape = np.zeros(8, dtype=np.int64)
    data = ctypes.c_void_p()
    _lib.check(_lib.fn("fmd_npy_load")(_lib.cstr(path, "path"), ctypes.byref(dt), ctypes.byref(nd),
                                       shape.ctypes.data_as(_lib.PI64), 8, ctypes.byref(data)))
    try:
        shp = tuple(int(s) for s in shape[:nd.value])
        dtype = np.float32 if dt.value == b"f4" else np.int32
        n = int(np.prod(shp)) if shp else 1
        out = np.empty(shp, dtype=dtype)
        if n:
            ctypes.memmove(out.ctypes.data, data.value, n * 4)
        return out
    finally:
        _lib.fn("fmd_npy_free")(data)


def plot_density_panels(path: PathLike, points: Sequence[np.ndarray],
                        titles: Optional[Sequence[str]] = None,
                        bounds: Optional[Sequence[float]] = None, panel_px: int = 256) -> None:
    """One PNG of log-density panels of 2-D point sets (each (m, 2) float32)."""
    pts = [A.f32(p, f"points[{i}]") for i, p in enumerate(points)]
    for i, p in enumerate(pts):
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"points[{i}] must have shape (m, 2), got {p.shape}")
    k = len(pts)
    parr = (_lib.PF * k)(*[A.pf(p) for p in pts])
    counts = np.array([p.shape[0] for p in pts], dtype=np.int64)
    tarr = None
    if titles is not None:
        if len(titles) != k:
            raise ValueError("titles must have one entry per panel")
        tarr = (ctypes.c_char_p * k)(*[None if t is None else _lib.cstr(t, "title") for t in titles])
    b = None
    if bounds is not None:
        b = np.ascontiguousarray(bounds, dtype=np.float64)
        if b.shape != (4,):
            raise ValueError("bounds must be (xmin, xmax, ymin, ymax)")
    _lib.check(_lib.fn("fmd_plot_density_panels")(_lib.cstr(path, "path"), k, parr,
                                                  counts.ctypes.data_as(_lib.PI64), tarr,
                                                  A.pd(b), int(panel_px)))


def plot_curves(path: PathLike, ys: Sequence[Any], x: Any = None,
                names: Optional[Sequence[str]] = None, title: str = "", log_y: bool = False,
                width: int = 640, height: int = 400) -> None:
    """A PNG line plot of the series ys (each n numbers) against x (n) or the index."""
    series = [np.ascontiguousarray(y, dtype=np.float64).reshape(-1) for y in ys]
    if not series:
        raise ValueError("ys must hold at least one series")
    n = series[0].size
    if any(s.size != n for s in series):
        raise ValueError("every series must have the same length")
    xa = None
    if x is not None:
        xa = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        if xa.size != n:
            raise ValueError(f"x has {xa.size} values, the series {n}")
    k = len(series)
    yarr = (_lib.PD * k)(*[A.pd(s) for s in series])
    narr = None
    if names is not None:
        if len(names) != k:
            raise ValueError("names must have one entry per series")
        narr = (ctypes.c_char_p * k)(*[_lib.cstr(s, "name") for s in names])
    _lib.check(_lib.fn("fmd_plot_curves")(_lib.cstr(path, "path"), A.pd(xa), yarr, narr, k, n,
                                          _lib.cstr(title, "title"), int(bool(log_y)), int(width),
                                          int(height)))


def plot_image_grid(path: PathLike, x: np.ndarray, cols: int = 0, lo: float = -1.0,
                    hi: float = 1.0) -> None:
    """A PNG grid of images x (n, C, H, W) float32 (C 1 or 3), [lo, hi] -> 0..255."""
    x = A.f32(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, C, H, W), got {x.shape}")
    n, c, h, w = x.shape
    _lib.check(_lib.fn("fmd_plot_image_grid")(_lib.cstr(path, "path"), A.pf(x), n, c, h, w,
                                              int(cols), float(lo), float(hi)))


def describe_file(path: PathLike, json: bool = False) -> Any:
    """Describe a .fmd file: text, or with json=True the parsed JSON (a dict).
    A CRC failure raises FormatError."""
    p = _lib.cstr(path, "path")
    need = ctypes.c_size_t()
    f = _lib.fn("fmd_file_describe")
    size = 1 << 14
    while True:
        buf = ctypes.create_string_buffer(size)
        _lib.check(f(p, int(bool(json)), buf, size, ctypes.byref(need)))
        if need.value <= size:
            break
        size = need.value
    text = buf.value.decode("utf-8", "replace")
    return _json.loads(text) if json else text
