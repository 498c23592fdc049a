"""fmd.Comm: the processes of a data-parallel job (fmd_comm)."""
from __future__ import annotations

import ctypes
from typing import Any, Optional

from . import _lib
from ._handle import Handle, handle
from .options import make as make_options


class Comm(Handle):
    """``Comm("mpi")``, ``Comm("none")`` or ``Comm("auto")`` (MPI when the script was
    started by mpirun, else one process).

    Pass it to ``fmd.Distiller(..., comm=comm)`` or ``fmd.train_teacher(...,
    comm=comm)``; start the script with ``mpirun -np N python3 script.py`` (no
    mpi4py needed).  The MPI transport is the plugin libfmd-mpi.so (option
    ``plugin=PATH``, else FMD_COMM_PATH or the folder of libfmd); without it
    ``Comm("mpi")`` raises BackendUnavailable.  MPI is finalised when the last
    MPI communicator of the process closes and cannot start again after that."""

    _destroy = "fmd_comm_close"
    _kind = "Comm"

    def __init__(self, kind: Optional[str] = "auto", **options: Any) -> None:
        ckind = None if kind is None else _lib.cstr(kind, "kind")
        opts = make_options(**options)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_comm_open")(ckind, handle(opts), ctypes.byref(h)))
        super().__init__(h.value)

    @property
    def rank(self) -> int:
        """This process's rank, 0 .. size-1."""
        return int(_lib.fn("fmd_comm_rank")(self._handle()))

    @property
    def size(self) -> int:
        """The number of ranks."""
        return int(_lib.fn("fmd_comm_size")(self._handle()))

    @property
    def description(self) -> str:
        """"none: one process" or "mpi: Open MPI v4.1.4, rank 0 of 2"."""
        return _lib.text(_lib.fn("fmd_comm_describe")(self._handle()))

    def barrier(self) -> None:
        """Wait for every rank."""
        _lib.check(_lib.fn("fmd_comm_barrier")(self._handle()))

    def abort(self, code: int = 1) -> None:
        """End every process of the job with exit status code (does not return)."""
        _lib.fn("fmd_comm_abort")(self._handle(), int(code))
