"""fmd.Evaluator: scores students and teacher solvers against the teacher's exact ODE map."""
from __future__ import annotations

import ctypes
from typing import Any, Dict, Optional

import numpy as np

from . import _lib
from ._handle import Handle, handle
from .options import make as make_options
from .student import Student
from .teacher import Teacher


class Evaluator(Handle):
    """``Evaluator(teacher, n=2000, seed=1234, rtol=1e-6, atol=1e-6)``: draws n
    noises, the reference map Phi(z) (adaptive Dormand-Prince) and two teacher
    sample sets once, then scores any number of students or solvers on them."""

    _destroy = "fmd_evaluator_destroy"
    _kind = "Evaluator"

    def __init__(self, teacher: Teacher, **options: Any) -> None:
        if not isinstance(teacher, Teacher):
            raise TypeError("teacher must be an fmd.Teacher")
        opts = make_options(**options)
        h = ctypes.c_void_p()
        _lib.check(_lib.long_call("fmd_evaluator_create", teacher._handle(), handle(opts),
                                                   ctypes.byref(h)))
        super().__init__(h.value, deps=[teacher])
        self._teacher = teacher

    @staticmethod
    def _result() -> "_lib.EvalResult":
        r = _lib.EvalResult()
        r.struct_size = ctypes.sizeof(_lib.EvalResult)
        return r

    def student(self, student: Student) -> Dict[str, float]:
        """Score one-step samples f(z, 1, c): n, map_error, energy_distance,
        energy_floor, modes_covered, modes_total, mass_error, seconds, nfe."""
        if not isinstance(student, Student):
            raise TypeError("student must be an fmd.Student")
        r = self._result()
        _lib.check(_lib.long_call("fmd_evaluator_student", self._handle(), student._handle(),
                                                    ctypes.byref(r)))
        return r.to_dict()

    def teacher(self, **solver_options: Any) -> Dict[str, float]:
        """Score the teacher's own solver (options as Teacher.solve; none = dopri5)."""
        opts = make_options(**solver_options)
        r = self._result()
        _lib.check(_lib.long_call("fmd_evaluator_teacher", self._handle(), handle(opts), ctypes.byref(r)))
        return r.to_dict()

    @property
    def noise(self) -> np.ndarray:
        """The n noises z (n, dim) used for every score (a copy)."""
        n, d = ctypes.c_int64(), ctypes.c_int64()
        p = _lib.fn("fmd_evaluator_noise")(self._handle(), ctypes.byref(n), ctypes.byref(d))
        if not p or n.value == 0:
            return np.empty((n.value, d.value), dtype=np.float32)
        return np.ctypeslib.as_array(p, shape=(n.value, d.value)).copy()

    @property
    def labels(self) -> Optional[np.ndarray]:
        """The labels (n,) of the noises (a copy), None for an unconditional teacher."""
        p = _lib.fn("fmd_evaluator_labels")(self._handle())
        if not p:
            return None
        n, d = ctypes.c_int64(), ctypes.c_int64()
        _lib.fn("fmd_evaluator_noise")(self._handle(), ctypes.byref(n), ctypes.byref(d))
        return np.ctypeslib.as_array(p, shape=(n.value,)).copy()
