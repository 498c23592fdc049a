"""Exceptions raised for libfmd status codes.

Every failing C call raises the subclass of FmdError of its status; the
message is fmd_last_error() (it names the bad argument, row, key, file offset
or tensor).  `status` holds the numeric code and `status_name` its name in
fmd.h.  Where a Python base class fits, the exception derives from it too
(InvalidArgument is a ValueError, OutOfMemory a MemoryError, FmdIOError an
OSError, Unsupported a NotImplementedError).
"""
from __future__ import annotations

from typing import Dict, Type


class FmdError(Exception):
    """Base of every libfmd error."""
    status: int = -1
    status_name: str = "FMD_UNKNOWN"

    def __init__(self, message: str = "", status: int = -1) -> None:
        super().__init__(message)
        self.message = message
        if status >= 0:
            self.status = status

    def __str__(self) -> str:
        return self.message or self.status_name


class InvalidArgument(FmdError, ValueError):
    status, status_name = 1, "FMD_ERR_INVALID_ARG"


class OutOfMemory(FmdError, MemoryError):
    status, status_name = 2, "FMD_ERR_OOM"


class FmdIOError(FmdError, OSError):
    status, status_name = 3, "FMD_ERR_IO"

    def __init__(self, message: str = "", status: int = -1) -> None:
        FmdError.__init__(self, message, status)

    def __str__(self) -> str:
        return self.message or self.status_name


class FormatError(FmdError):
    status, status_name = 4, "FMD_ERR_FORMAT"


class VersionMismatch(FmdError):
    status, status_name = 5, "FMD_ERR_VERSION"


class Unsupported(FmdError, NotImplementedError):
    status, status_name = 6, "FMD_ERR_UNSUPPORTED"


class BackendUnavailable(FmdError):
    status, status_name = 7, "FMD_ERR_BACKEND_UNAVAILABLE"


class NonFinite(FmdError, ArithmeticError):
    status, status_name = 8, "FMD_ERR_NONFINITE"


class Cancelled(FmdError):
    status, status_name = 9, "FMD_ERR_CANCELLED"


class InternalError(FmdError):
    status, status_name = 10, "FMD_ERR_INTERNAL"


BY_STATUS: Dict[int, Type[FmdError]] = {
    cls.status: cls
    for cls in (InvalidArgument, OutOfMemory, FmdIOError, FormatError, VersionMismatch,
                Unsupported, BackendUnavailable, NonFinite, Cancelled, InternalError)
}


def from_status(status: int, message: str) -> FmdError:
    """The exception object for a non-zero status (FmdError for unknown codes)."""
    cls = BY_STATUS.get(status)
    if cls is None:
        return FmdError(message or f"unknown status {status}", status)
    return cls(message, status)
