"""fmd.Student: the one-step flow map f(z, delta, c) = z - delta F(z, delta, c) (fmd_student)."""
from __future__ import annotations

import ctypes
import os
from typing import Any, Optional, Union

import numpy as np

from . import _arrays as A
from . import _lib
from ._handle import Handle, handle
from .backend import Backend
from .options import make as make_options
from .teacher import Teacher, prior_noise

PathLike = Union[str, "os.PathLike[str]"]


class Student(Handle):
    """A student network.  f(z, 1, c) is a sample in one network evaluation."""

    _destroy = "fmd_student_destroy"
    _kind = "Student"

    def __init__(self, h: int, backend: Backend, owner: Any = None) -> None:
        # owner: the distiller a borrowed (EMA) student belongs to
        super().__init__(h, deps=[backend, owner], owned=owner is None)
        self._backend = backend

    @classmethod
    def from_teacher(cls, teacher: Teacher, backend: Optional[Backend] = None,
                     **options: Any) -> "Student":
        """A student for `teacher` on `backend` (default: the teacher's backend or
        Backend.default()).  A network teacher gives its own architecture with
        the teacher's weights; mixture and callback teachers a fresh MLP with
        options width (256), depth (4), temb_dim (256), time_scale (30),
        delta_scale (30), seed (0)."""
        if not isinstance(teacher, Teacher):
            raise TypeError("teacher must be an fmd.Teacher")
        be = backend or teacher.backend or Backend.default()
        opts = make_options(**options)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_student_create")(teacher._handle(), handle(be), handle(opts),
                                                 ctypes.byref(h)))
        return cls(h.value, be)

    @classmethod
    def load(cls, path: PathLike, backend: Optional[Backend] = None) -> "Student":
        """A student saved by :meth:`save` or the EMA student of a distiller checkpoint."""
        be = backend or Backend.default()
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_student_load")(_lib.cstr(path, "path"), handle(be),
                                               ctypes.byref(h)))
        return cls(h.value, be)

    def save(self, path: PathLike) -> None:
        """Save weights and architecture (.fmd, atomic)."""
        _lib.check(_lib.fn("fmd_student_save")(self._handle(), _lib.cstr(path, "path")))

    @property
    def dim(self) -> int:
        return int(_lib.fn("fmd_student_dim")(self._handle()))

    @property
    def num_classes(self) -> int:
        return int(_lib.fn("fmd_student_num_classes")(self._handle()))

    @property
    def num_params(self) -> int:
        return int(_lib.fn("fmd_student_num_params")(self._handle()))

    def made(self, key: str) -> Optional[str]:
        """How the student was made, as recorded by the distiller (fmd_student_made):
        "teacher", "distill_steps", "guidance", "guidance_lo", "guidance_hi" and every
        stored distiller option, as text; None when not recorded."""
        v = _lib.fn("fmd_student_made")(self._handle(), _lib.cstr(key, "key"))
        return v.decode("utf-8", "replace") if v is not None else None

    @property
    def backend(self) -> Backend:
        return self._backend

    def forward(self, z: np.ndarray, delta: Union[float, np.ndarray], labels: Any = None,
                out: Optional[np.ndarray] = None) -> np.ndarray:
        """f(z, delta, labels) = z - delta F(z, delta, labels): z float32 (N, dim) or
        (N, C, H, W), delta float32 (N,) or a number in [0, 1], labels int32 (N,),
        an int, or None (the null class of a conditional student).  Returns an array shaped as z (or fills `out`)."""
        z = A.f32(z, "z")
        n = A.batch_rows(z, "z", self.dim)
        d = A.per_row_f32(delta, "delta", n)
        la = A.labels_arg(labels, n)
        o = A.out_arg(out, z.shape, "out")
        if la is None:
            k = self.num_classes
            if k:   # as for teachers and samplers: no labels = the null class
                la = np.full(n, k, dtype=np.int32)
        if o is z or (o.size and np.shares_memory(o, z)):
            raise ValueError("out must not alias z")
        _lib.check(_lib.fn("fmd_student_forward")(self._handle(), A.pf(z), A.pf(d), A.pi32(la),
                                                  n, A.pf(o)))
        return o

    def sample(self, n: int, seed: int = 0, labels: Any = None, first_index: int = 0) -> np.ndarray:
        """n one-step samples f(z, 1, labels) from the prior noise of (seed,
        first_index + i), the same noise fmd.prior_noise and the teacher use."""
        n = A.count(n, "n")
        z = prior_noise(n, self.dim, seed, first_index)
        return self.forward(z, 1.0, labels)

    def __repr__(self) -> str:
        if self.closed:
            return "fmd.Student(<closed>)"
        return (f"fmd.Student(dim={self.dim}, num_classes={self.num_classes}, "
                f"num_params={self.num_params})")
