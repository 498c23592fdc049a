"""fmd.Dataset (fmd_dataset) and teacher training by flow matching."""
from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from . import _arrays as A
from . import _lib
from ._handle import Handle, handle
from .backend import Backend
from .comm import Comm
from .options import make as make_options
from .teacher import Teacher

PathLike = Union[str, "os.PathLike[str]"]


class Dataset(Handle):
    """Samples (n, dim) float32 with optional int32 labels, held by libfmd."""

    _destroy = "fmd_dataset_destroy"
    _kind = "Dataset"

    def __init__(self, x: np.ndarray, labels: Any = None, num_classes: Optional[int] = None) -> None:
        """Copy x (n, dim) float32 and labels (n,) int32 in [0, num_classes)
        (num_classes defaults to max(labels) + 1)."""
        x = A.f32(x, "x")
        n = x.shape[0] if x.ndim >= 2 else 0
        if x.ndim < 2:
            raise ValueError(f"x must have shape (n, dim) or (n, C, H, W), got {x.shape}")
        dim = int(np.prod(x.shape[1:]))
        la = A.labels_arg(labels, n)
        if la is None:
            nc = 0
        else:
            nc = int(num_classes) if num_classes is not None else (int(la.max()) + 1 if n else 0)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_dataset_create")(A.pf(x), A.pi32(la), n, dim, nc, ctypes.byref(h)))
        super().__init__(h.value)

    @classmethod
    def _wrap(cls, h: int) -> "Dataset":
        obj = cls.__new__(cls)
        Handle.__init__(obj, h)
        return obj

    @classmethod
    def from_mixture(cls, teacher: Teacher, n: int, seed: int = 0) -> "Dataset":
        """n exact samples of a mixture teacher (labels = class of the component)."""
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_dataset_from_mixture")(teacher._handle(), A.count(n, "n"),
                                                       A.seed_arg(seed), ctypes.byref(h)))
        return cls._wrap(h.value)

    @classmethod
    def load_idx(cls, images: PathLike, labels: Optional[PathLike] = None,
                 **options: Any) -> "Dataset":
        """Images (scaled to [-1, 1], shape (1, H, W)) and labels from IDX files (MNIST
        layout).  Options: max_bytes (the cap on each file's data, default 1 GiB)."""
        h = ctypes.c_void_p()
        lp = None if labels is None else _lib.cstr(labels, "labels")
        opts = make_options(**options)
        _lib.check(_lib.fn("fmd_dataset_load_idx_opts")(_lib.cstr(images, "images"), lp,
                                                        handle(opts), ctypes.byref(h)))
        return cls._wrap(h.value)

    def __len__(self) -> int:
        return int(_lib.fn("fmd_dataset_size")(self._handle()))

    @property
    def dim(self) -> int:
        return int(_lib.fn("fmd_dataset_dim")(self._handle()))

    @property
    def num_classes(self) -> int:
        return int(_lib.fn("fmd_dataset_num_classes")(self._handle()))

    def get(self, i: int) -> Tuple[np.ndarray, int]:
        """Sample i as (x (dim,) float32, label or -1)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError("i must be an int")
        x = np.empty(self.dim, dtype=np.float32)
        lab = ctypes.c_int32()
        _lib.check(_lib.fn("fmd_dataset_get")(self._handle(), int(i), A.pf(x), ctypes.byref(lab)))
        return x, int(lab.value)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        n = len(self)
        if isinstance(i, (int, np.integer)) and -n <= i < 0:
            i += n
        return self.get(i)

    def arrays(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """All samples (n, dim) and labels (n,) (None when unlabeled), copied out."""
        n, d = len(self), self.dim
        x = np.empty((n, d), dtype=np.float32)
        lab = np.empty(n, dtype=np.int32)
        c = ctypes.c_int32()
        get = _lib.fn("fmd_dataset_get")
        h = self._handle()
        for i in range(n):
            _lib.check(get(h, i, A.pf(x[i]), ctypes.byref(c)))
            lab[i] = c.value
        return x, (lab if self.num_classes else None)


def train_teacher(data: Dataset, backend: Optional[Backend] = None,
                  progress: Optional[Callable[[Dict[str, float]], Any]] = None,
                  comm: Optional[Comm] = None, **options: Any) -> Teacher:
    """Train a network teacher on `data` by flow matching (fmd_teacher_train).

    options: arch, width, depth, steps, batch, lr, ... (see fmd.h).
    progress(stats_dict) is called every progress_every steps; returning
    False cancels (raises Cancelled); an exception it raises propagates.
    With `comm` (an fmd.Comm of N ranks) training is data-parallel
    (fmd_teacher_train_comm): call it on every rank with the same data."""
    if not isinstance(data, Dataset):
        raise TypeError("data must be an fmd.Dataset")
    be = backend or Backend.default()
    opts = make_options(**options)
    cb = _lib.train_progress_fn()
    if progress is not None:
        if not callable(progress):
            raise TypeError("progress must be callable or None")

        def tramp(stats: Any, user: Optional[int]) -> int:
            try:
                return 1 if progress(stats.contents.to_dict()) is False else 0
            except BaseException as e:
                _lib.set_pending(e)
                return 1
        cb = _lib.train_progress_fn(tramp)
    h = ctypes.c_void_p()
    if comm is not None and not isinstance(comm, Comm):
        raise TypeError("comm must be an fmd.Comm or None")
    _lib.check(_lib.long_call("fmd_teacher_train_comm", handle(comm), handle(be), data._handle(),
                              handle(opts), cb, None, ctypes.byref(h)))
    return Teacher(h.value, backend=be)
