"""Lifetime of C handles.

Each wrapper owns (or borrows) one handle and keeps strong references to the
objects the C side borrows from (a student keeps its backend, a distiller its
teacher and student), and counts the live objects that use it.  A C object is
destroyed only after every object using it has been destroyed: when the
garbage collector finalizes a whole reference cycle in arbitrary order (as it
does for objects kept by a traceback), a finalizer that finds users still
alive defers the destroy to the last of them.  close() refuses to release an
object that live objects still use."""
from __future__ import annotations

import gc
from typing import Iterable, List, Optional

from . import _lib


class Handle:
    _destroy: str = ""      # name of the fmd_*_destroy function
    _kind: str = "object"

    def __init__(self, h: Optional[int], deps: Iterable[object] = (), owned: bool = True) -> None:
        self._h: Optional[int] = h
        self._owned = owned
        self._nusers = 0
        self._doomed = False
        self._deps: List[Handle] = [d for d in deps if isinstance(d, Handle)]
        for d in self._deps:
            d._nusers += 1

    def _handle(self) -> int:
        if not self._h:
            raise ValueError(f"fmd.{self._kind}: used after close()")
        return self._h

    @property
    def closed(self) -> bool:
        return not self._h

    def _release(self) -> None:
        h, self._h = self._h, None
        if h and self._owned and self._destroy:
            _lib.fn(self._destroy)(h)
        deps, self._deps = self._deps, []
        for d in deps:
            d._user_gone()

    def _user_gone(self) -> None:
        self._nusers -= 1
        if self._nusers == 0 and self._doomed:
            self._release()

    def close(self) -> None:
        """Release the C object now (otherwise done when it is garbage-collected).

        Raises RuntimeError while other live objects still use this one."""
        if not self._h:
            return
        if self._nusers > 0:
            gc.collect()          # users kept only by unreachable cycles go first
        if self._nusers > 0:
            raise RuntimeError(f"fmd.{self._kind}.close(): still used by {self._nusers} live "
                               "object(s) (students, distillers, samplers...); close those first")
        self._release()

    def __del__(self) -> None:
        try:
            self._doomed = True
            if self._nusers == 0:
                self._release()
        except Exception:
            pass

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def handle(obj: Optional[object]) -> Optional[int]:
    """The C handle of an fmd object (None passes through)."""
    if obj is None:
        return None
    return obj._handle()  # type: ignore[attr-defined]
