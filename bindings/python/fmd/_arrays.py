"""Checks of numpy arguments, done in Python before anything reaches C.

Arrays are passed to C without a copy when they are C-contiguous and of the
exact dtype; a wrong dtype raises TypeError, a wrong shape ValueError.
Non-contiguous arrays of the right dtype are copied once.
"""
from __future__ import annotations

import ctypes
import numbers
from typing import Optional, Sequence, Union

import numpy as np

from . import _lib

ArrayLike = np.ndarray


def _array(a: object, name: str, dtype: type) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of {np.dtype(dtype).name}, got "
                        f"{type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype.name} "
                        f"(convert with {name}.astype(numpy.{np.dtype(dtype).name}))")
    return np.ascontiguousarray(a)


def f32(a: object, name: str) -> np.ndarray:
    return _array(a, name, np.float32)


def f64(a: object, name: str) -> np.ndarray:
    return _array(a, name, np.float64)


def i32(a: object, name: str) -> np.ndarray:
    return _array(a, name, np.int32)


def batch_rows(x: np.ndarray, name: str, dim: int) -> int:
    """x is (N, dim) or (N, ...) with prod(...) == dim; returns N."""
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, {dim}) or (N, C, H, W), got {x.shape}")
    per = int(np.prod(x.shape[1:]))
    if per != dim:
        raise ValueError(f"{name} has {per} numbers per row (shape {x.shape}), expected {dim}")
    return int(x.shape[0])


def per_row_f32(v: Union[float, np.ndarray], name: str, n: int) -> np.ndarray:
    """A scalar broadcast to (n,), or a float32 array of shape (n,)."""
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.ndarray)):
        return np.full(n, float(v), dtype=np.float32)
    a = f32(v, name)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def labels_arg(labels: Optional[Union[int, np.ndarray]], n: int) -> Optional[np.ndarray]:
    """None, an int broadcast to (n,), or an int32 array of shape (n,)."""
    if labels is None:
        return None
    if isinstance(labels, numbers.Integral) and not isinstance(labels, (bool, np.ndarray)):
        return np.full(n, int(labels), dtype=np.int32)
    a = i32(labels, "labels")
    if a.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {a.shape}")
    return a


def out_arg(out: Optional[np.ndarray], shape: Sequence[int], name: str = "out") -> np.ndarray:
    """A fresh float32 array, or the caller's (checked, written in place)."""
    if out is None:
        return np.empty(tuple(shape), dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise TypeError(f"{name} must be a float32 numpy.ndarray")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    if int(np.prod(out.shape)) != int(np.prod(shape)) or out.shape[:1] != tuple(shape)[:1]:
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    return out


def count(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return int(n)


def seed_arg(s: object, name: str = "seed") -> int:
    s = count(s, name)
    if s >= 1 << 64:
        raise ValueError(f"{name} must be < 2**64")
    return s


def pf(a: Optional[np.ndarray]) -> Optional[ctypes._Pointer]:
    return None if a is None else a.ctypes.data_as(_lib.PF)


def pd(a: Optional[np.ndarray]) -> Optional[ctypes._Pointer]:
    return None if a is None else a.ctypes.data_as(_lib.PD)


def pi32(a: Optional[np.ndarray]) -> Optional[ctypes._Pointer]:
    return None if a is None else a.ctypes.data_as(_lib.PI32)
