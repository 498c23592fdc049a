"""fmd - Python bindings (ctypes) of libfmd: data-free flow map distillation
(FreeFlow) and one-step generation.

    import fmd
    teacher = fmd.Teacher.mixture("ring8")
    d = fmd.Distiller(teacher, batch=256)
    d.run(2000)
    x = d.student.sample(1000, seed=1)      # (1000, 2) float32, one network evaluation

The shared library is found through FMD_LIBRARY, next to this package, in the
source tree's build/ folder, or by the system loader.  See docs/python.md.
"""
from __future__ import annotations

from . import _lib
from .backend import (LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN, Backend, backends, clear_error,
                      last_error, last_status, set_log_callback, status_name, status_string,
                      version, version_hex)
from .comm import Comm
from .distiller import Distiller
from .errors import (BackendUnavailable, Cancelled, FmdError, FmdIOError, FormatError,
                     InternalError, InvalidArgument, NonFinite, OutOfMemory, Unsupported,
                     VersionMismatch)
from .data import Dataset, train_teacher
from .evaluator import Evaluator
from .files import (describe_file, npy_load, npy_save, plot_curves, plot_density_panels,
                    plot_image_grid, write_png)
from .options import Options, consumers as option_consumers, describe as options
from .sampler import Sampler
from .student import Student
from .teacher import Teacher, prior_noise

__version__ = "0.2.0"
library_path: str = _lib.path

__all__ = [
    "version", "version_hex", "backends", "Backend", "Options", "options", "option_consumers", "Teacher", "Student",
    "Distiller", "Comm", "Evaluator", "Sampler", "Dataset", "train_teacher", "prior_noise",
    "write_png", "npy_save", "npy_load", "plot_density_panels", "plot_curves",
    "plot_image_grid", "describe_file", "status_string", "status_name", "last_error",
    "last_status", "clear_error", "set_log_callback", "LOG_ERROR", "LOG_WARN", "LOG_INFO",
    "LOG_DEBUG", "FmdError", "InvalidArgument", "OutOfMemory", "FmdIOError", "FormatError",
    "VersionMismatch", "Unsupported", "BackendUnavailable", "NonFinite", "Cancelled",
    "InternalError", "library_path",
]
