"""fmd.Distiller: FreeFlow training of a student from a teacher, without data."""
from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np

from . import _arrays as A
from . import _lib
from ._handle import Handle, handle
from .backend import Backend
from .comm import Comm
from .options import make as make_options
from .student import Student
from .teacher import Teacher

PathLike = Union[str, "os.PathLike[str]"]
ProgressFn = Callable[[Dict[str, float]], Any]


class Distiller(Handle):
    """``Distiller(teacher, student=None, backend=None, student_options=None, **options)``.

    Without `student` a fresh one is made with Student.from_teacher(teacher,
    backend, **student_options).  options are the distiller's keys (batch,
    seed, lr, ema, target, ... - see docs/distiller.md).  With `comm` (an
    fmd.Comm of N ranks) the distiller is data-parallel: each rank computes
    batch/N rows of every step (fmd_distiller_set_comm).  The distiller keeps
    the teacher and student alive; the student is trained in place and
    :attr:`student` is the EMA copy to sample from and save."""

    _destroy = "fmd_distiller_destroy"
    _kind = "Distiller"

    def __init__(self, teacher: Teacher, student: Optional[Student] = None,
                 backend: Optional[Backend] = None,
                 student_options: Optional[Mapping[str, Any]] = None,
                 comm: Optional[Comm] = None, **options: Any) -> None:
        if not isinstance(teacher, Teacher):
            raise TypeError("teacher must be an fmd.Teacher")
        if comm is not None and not isinstance(comm, Comm):
            raise TypeError("comm must be an fmd.Comm or None")
        if student is None:
            student = Student.from_teacher(teacher, backend, **dict(student_options or {}))
        elif not isinstance(student, Student):
            raise TypeError("student must be an fmd.Student or None")
        elif student_options:
            raise ValueError("student_options apply only when the distiller makes the student")
        be = backend or student.backend
        opts = make_options(**options)
        h = ctypes.c_void_p()
        _lib.check(_lib.long_call("fmd_distiller_create", teacher._handle(), student._handle(),
                                                   handle(be), handle(opts), ctypes.byref(h)))
        super().__init__(h.value, deps=[teacher, student, be, comm])
        self._teacher, self._raw, self._backend, self._comm = teacher, student, be, comm
        if comm is not None:
            _lib.check(_lib.fn("fmd_distiller_set_comm")(self._handle(), comm._handle()))
        self._options = dict(options)

    @classmethod
    def resume(cls, path: PathLike, teacher: Teacher, student: Optional[Student] = None,
               backend: Optional[Backend] = None,
               student_options: Optional[Mapping[str, Any]] = None,
               comm: Optional[Comm] = None, **options: Any) -> "Distiller":
        """A distiller restored from a checkpoint written by :meth:`save`.  The
        teacher, student architecture and options (batch, seed, objectives)
        must be those of the saved run."""
        d = cls(teacher, student, backend, student_options, comm=comm, **options)
        d.restore(path)
        return d

    def restore(self, path: PathLike) -> None:
        """Load the state of a checkpoint into this distiller (fmd_distiller_resume)."""
        _lib.check(_lib.fn("fmd_distiller_resume")(self._handle(), _lib.cstr(path, "path")))

    def set_data(self, x0: np.ndarray, labels: Any = None) -> None:
        """Samples for the data-based baseline (option data_based=1); copied, replacing
        any data before (also the teacher pool that option data_pool=N draws)."""
        x0 = A.f32(x0, "x0")
        n = A.batch_rows(x0, "x0", self._raw.dim)
        la = A.labels_arg(labels, n)
        _lib.check(_lib.fn("fmd_distiller_set_data")(self._handle(), A.pf(x0), A.pi32(la), n))

    def step(self) -> Dict[str, float]:
        """One distillation step; returns :attr:`stats`."""
        _lib.check(_lib.fn("fmd_distiller_step")(self._handle()))
        return self.stats

    def run(self, steps: int, callback: Optional[ProgressFn] = None) -> bool:
        """Run `steps` steps.  callback(stats_dict) is called every progress_every
        steps and after the last; returning False cancels (run returns False).
        An exception raised by the callback stops the run and propagates.
        Returns True when every step ran."""
        steps = A.count(steps, "steps")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable or None")
        state = {"cancelled": False}
        cb = _lib.progress_fn()
        if callback is not None:
            def tramp(stats: Any, user: Optional[int]) -> int:
                try:
                    if callback(stats.contents.to_dict()) is False:
                        state["cancelled"] = True
                        return 1
                    return 0
                except BaseException as e:
                    _lib.set_pending(e)
                    return 1
            cb = _lib.progress_fn(tramp)
        st = _lib.long_call("fmd_distiller_run", self._handle(), steps, cb, None)
        if st == 9 and state["cancelled"]:  # FMD_ERR_CANCELLED asked for by the callback
            _lib.take_pending()
            return False
        _lib.check(st)
        return True

    @property
    def stats(self) -> Dict[str, float]:
        """Statistics of the last step: step, loss_pred, loss_corr, loss_aux,
        delta_norm, vdiff_norm, lambda, lr, grad_norm, steps_per_s."""
        s = _lib.DistillStats()
        s.struct_size = ctypes.sizeof(_lib.DistillStats)
        _lib.check(_lib.fn("fmd_distiller_stats")(self._handle(), ctypes.byref(s)))
        return s.to_dict()

    @property
    def steps(self) -> int:
        """Steps completed."""
        return int(_lib.fn("fmd_distiller_steps")(self._handle()))

    @property
    def planned_steps(self) -> int:
        """The planned length of the run (option steps; the first run's length
        when unset; 0 before it is known): the learning rate decays over it."""
        return int(_lib.fn("fmd_distiller_planned_steps")(self._handle()))

    @property
    def student(self) -> Student:
        """The EMA student (owned by the distiller; the wrapper keeps the distiller alive)."""
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_distiller_ema_student")(self._handle(), ctypes.byref(h)))
        return Student(h.value, self._backend, owner=self)

    @property
    def raw_student(self) -> Student:
        """The student trained in place (not averaged)."""
        return self._raw

    @property
    def teacher(self) -> Teacher:
        return self._teacher

    def save(self, path: PathLike) -> None:
        """Save the whole training state (.fmd, atomic); Student.load reads its EMA student."""
        _lib.check(_lib.fn("fmd_distiller_save")(self._handle(), _lib.cstr(path, "path")))

    def __repr__(self) -> str:
        if self.closed:
            return "fmd.Distiller(<closed>)"
        return f"fmd.Distiller(steps={self.steps}, teacher={self._teacher!r})"
