"""fmd.Sampler: generation from a student, a teacher or both, and Best-of-N
noise search with a Python reward (fmd_sampler)."""
from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional, Tuple

import numpy as np

from . import _arrays as A
from . import _lib
from ._handle import Handle, handle
from .options import make as make_options
from .student import Student
from .teacher import Teacher

RewardFn = Callable[..., Any]


class Sampler(Handle):
    """``Sampler(student=None, teacher=None, **defaults)``; either model may be
    None but not both.  Per-call options (also accepted as defaults): method
    ("student" / "teacher"), delta, finish, solver, steps, shift, rtol, atol,
    cfg, cfg_lo, cfg_hi, refine.  Sample i always starts from the prior noise
    of (seed, first_index + i)."""

    _destroy = "fmd_sampler_destroy"
    _kind = "Sampler"

    def __init__(self, student: Optional[Student] = None, teacher: Optional[Teacher] = None,
                 **defaults: Any) -> None:
        if student is not None and not isinstance(student, Student):
            raise TypeError("student must be an fmd.Student or None")
        if teacher is not None and not isinstance(teacher, Teacher):
            raise TypeError("teacher must be an fmd.Teacher or None")
        opts = make_options(**defaults)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_sampler_create")(handle(student), handle(teacher), handle(opts),
                                                 ctypes.byref(h)))
        super().__init__(h.value, deps=[student, teacher])
        self.last_nfe = 0   # evaluations per sample of the last call

    @property
    def dim(self) -> int:
        return int(_lib.fn("fmd_sampler_dim")(self._handle()))

    @property
    def num_classes(self) -> int:
        return int(_lib.fn("fmd_sampler_num_classes")(self._handle()))

    def sample(self, n: int, seed: int = 0, labels: Any = None, first_index: int = 0,
               out: Optional[np.ndarray] = None, **options: Any) -> np.ndarray:
        """n samples (n, dim) float32; options override the sampler's defaults."""
        n = A.count(n, "n")
        la = A.labels_arg(labels, n)
        seed, first_index = A.seed_arg(seed), A.seed_arg(first_index, "first_index")
        dim = self.dim
        o = A.out_arg(out, (n, dim))
        opts = make_options(**options)
        nfe = ctypes.c_int64()
        _lib.check(_lib.long_call("fmd_sampler_sample", self._handle(), A.pi32(la), n, seed, first_index,
                                                 handle(opts), A.pf(o), o.size, ctypes.byref(nfe)))
        self.last_nfe = nfe.value
        return o

    def best_of_n(self, n: int, reward: RewardFn, candidates: int = 8, seed: int = 0,
                  labels: Any = None, first_index: int = 0, batched: bool = False,
                  **options: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best-of-N noise search.  For each of n samples, `candidates` noises
        are tried and the candidate with the highest reward wins.

        reward(x, label) -> float scores one candidate (x (dim,) float32 view,
        label an int, the null class for unconditional); with batched=True
        reward(x, labels) -> scores gets a block x (m, dim) and labels (m,) and
        returns m numbers.  Returns (samples (n, dim), winning noises (n, dim),
        scores (n,)).  An exception raised by reward stops the search and
        propagates."""
        if not callable(reward):
            raise TypeError("reward must be callable")
        n = A.count(n, "n")
        cands = A.count(candidates, "candidates")
        la = A.labels_arg(labels, n)
        seed, first_index = A.seed_arg(seed), A.seed_arg(first_index, "first_index")
        dim = self.dim
        out = np.empty((n, dim), dtype=np.float32)
        noise = np.empty((n, dim), dtype=np.float32)
        scores = np.empty(n, dtype=np.float64)
        opts = make_options(**options)

        if batched:
            def tramp_b(sc: Any, x: Any, lab: Any, m: int, d: int, user: Optional[int]) -> int:
                try:
                    m, d = int(m), int(d)
                    if m == 0:
                        return 0
                    xa = np.ctypeslib.as_array(x, shape=(m, d))
                    xa.flags.writeable = False
                    lb = np.ctypeslib.as_array(lab, shape=(m,)) if lab else np.zeros(m, np.int32)
                    r = np.asarray(reward(xa, lb), dtype=np.float64).reshape(-1)
                    if r.size != m:
                        raise ValueError(f"batched reward returned {r.size} scores for {m} candidates")
                    np.ctypeslib.as_array(sc, shape=(m,))[:] = r
                    return 0
                except BaseException as e:
                    _lib.set_pending(e)
                    return 1
            one, batch = _lib.reward_fn(), _lib.reward_batch_fn(tramp_b)
        else:
            def tramp(x: Any, d: int, label: int, user: Optional[int]) -> float:
                try:
                    xa = np.ctypeslib.as_array(x, shape=(int(d),))
                    xa.flags.writeable = False
                    return float(reward(xa, int(label)))
                except BaseException as e:   # NaN makes the search fail; re-raised then
                    _lib.set_pending(e)
                    return float("nan")
            one, batch = _lib.reward_fn(tramp), _lib.reward_batch_fn()
        nfe = ctypes.c_int64()
        _lib.check(_lib.long_call("fmd_sampler_best_of_n",
            self._handle(), A.pi32(la), n, seed, first_index,
            cands, one, batch, None, handle(opts), A.pf(out), out.size, A.pf(noise), noise.size,
            A.pd(scores), ctypes.byref(nfe)))
        self.last_nfe = nfe.value
        return out, noise, scores
