"""fmd.Teacher: a frozen velocity field (fmd_teacher).

libfmd's convention: x_t = (1 - t) x0 + t eps, t = 1 is noise, t = 0 data,
v(x, t, c) = E[eps - x0 | x_t = x, c]; samples come from dx/dt = v
integrated from t = 1 down to t = 0.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from . import _arrays as A
from . import _lib
from ._handle import Handle, handle
from .backend import Backend
from .options import make as make_options

PathLike = Union[str, "os.PathLike[str]"]
VelocityFn = Callable[[np.ndarray, np.ndarray, Optional[np.ndarray]], Any]


def prior_noise(n: int, dim: int, seed: int = 0, first_index: int = 0) -> np.ndarray:
    """The prior noise z (n, dim) float32 that samplers and students use for rows
    first_index .. first_index + n - 1 of `seed` (Philox; the same on every backend)."""
    n = A.count(n, "n")
    dim = A.count(dim, "dim")
    if dim < 1:
        raise ValueError("dim must be >= 1")
    z = np.empty((n, dim), dtype=np.float32)
    _lib.check(_lib.fn("fmd_prior_noise")(A.pf(z), n, dim, A.seed_arg(seed),
                                          A.seed_arg(first_index, "first_index")))
    return z


def _real_array(a: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


class Teacher(Handle):
    """A velocity field v(x, t, c).  Build one with a class method:
    :meth:`mixture`, :meth:`gmm`, :meth:`load_spec`, :meth:`load`,
    :meth:`from_safetensors`, :meth:`from_callable`."""

    _destroy = "fmd_teacher_destroy"
    _kind = "Teacher"

    def __init__(self, h: int, backend: Optional[Backend] = None, keep: Any = None,
                 shape: Optional[Tuple[int, ...]] = None) -> None:
        super().__init__(h, deps=[backend] if backend is not None else [])
        self._backend = backend
        self._keep = keep          # the ctypes callback of a callable teacher
        self._shape = shape        # per-sample shape given to from_callable
        self.last_nfe = 0          # velocity evaluations of the last solve/sample

    # ---- constructors ------------------------------------------------------------
    @classmethod
    def mixture(cls, name: str) -> "Teacher":
        """A built-in Gaussian mixture: "ring8", "grid25", "classes4-d32"."""
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_teacher_create_preset")(_lib.cstr(name, "name"), ctypes.byref(h)))
        return cls(h.value)

    @classmethod
    def gmm(cls, weights: Any, means: Any, stds: Any, classes: Any = None,
            num_classes: Optional[int] = None) -> "Teacher":
        """An exact Gaussian mixture: weights (K,), means (K, dim), isotropic stds (K,),
        classes (K,) integer class of each component (num_classes defaults to
        max(classes) + 1).  Arrays are copied."""
        w = _real_array(weights, "weights", 1)
        m = _real_array(means, "means", 2)
        s = _real_array(stds, "stds", 1)
        k, dim = m.shape
        if w.shape != (k,) or s.shape != (k,):
            raise ValueError(f"weights {w.shape} and stds {s.shape} must have shape ({k},) "
                             f"like the rows of means {m.shape}")
        c = None
        nc = 0
        if classes is not None:
            ca = np.asarray(classes)
            if ca.dtype.kind not in "iu":
                raise TypeError(f"classes must hold integers, got dtype {ca.dtype}")
            if ca.shape != (k,):
                raise ValueError(f"classes must have shape ({k},), got {ca.shape}")
            c = np.ascontiguousarray(ca, dtype=np.int32)
            nc = int(num_classes) if num_classes is not None else (int(c.max()) + 1 if k else 0)
        elif num_classes:
            raise ValueError("num_classes needs classes")
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_teacher_create_mixture")(
            int(dim), int(k), A.pd(w), A.pd(m), A.pd(s), A.pi32(c), nc, ctypes.byref(h)))
        return cls(h.value)

    @classmethod
    def load_spec(cls, path: PathLike) -> "Teacher":
        """A mixture from a text spec file (format in docs/teachers.md)."""
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_teacher_load_spec")(_lib.cstr(path, "path"), ctypes.byref(h)))
        return cls(h.value)

    @classmethod
    def load(cls, path: PathLike, backend: Optional[Backend] = None,
             **options: Any) -> "Teacher":
        """A teacher saved by :meth:`save` (.fmd): a network is built on `backend`
        (default: Backend.default()), a mixture needs none.  Options: time_convention."""
        be = backend if backend is not None else Backend.default()
        opts = make_options(**options)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_teacher_load")(handle(be), _lib.cstr(path, "path"),
                                               handle(opts), ctypes.byref(h)))
        return cls(h.value, backend=be)

    @classmethod
    def from_safetensors(cls, path: PathLike, arch: str = "SiT-XL/2",
                         backend: Optional[Backend] = None, **sizes: Any) -> "Teacher":
        """A network teacher from safetensors with the public SiT/DiT tensor names.

        arch: a preset ("SiT-XL/2", "DiT-S/4", ...), "dit" or "mlp".  sizes use
        DiT's constructor names: input_size, patch_size, in_channels,
        hidden_size, depth, num_heads, mlp_ratio, num_classes, learn_sigma (bools
        become 0/1), and for "mlp": dim, width, depth, temb_dim, time_scale;
        also time_convention ("sit" or "libfmd")."""
        be = backend if backend is not None else Backend.default()
        opts = make_options(**sizes)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_teacher_load_safetensors")(
            handle(be), _lib.cstr(path, "path"), _lib.cstr(arch, "arch"), handle(opts),
            ctypes.byref(h)))
        return cls(h.value, backend=be)

    @classmethod
    def from_callable(cls, fn: VelocityFn, dim: int, num_classes: int = 0,
                      shape: Optional[Sequence[int]] = None) -> "Teacher":
        """Any Python function as the teacher: ``fn(x, t, labels) -> v``.

        x is a read-only float32 view (batch, dim) - or (batch, *shape) when
        `shape` is given - of the library's buffer, t (batch,) float32, labels
        (batch,) int32 (the null class is num_classes) or None for an
        unconditional teacher.  fn returns an array-like (numpy array, CPU
        torch tensor) of batch*dim numbers, in libfmd's convention.  An
        exception raised by fn stops the libfmd call and is re-raised from it.
        fn runs on the thread that called into libfmd."""
        if not callable(fn):
            raise TypeError("fn must be callable")
        dim = A.count(dim, "dim")
        num_classes = A.count(num_classes, "num_classes")
        shp: Optional[Tuple[int, ...]] = None
        if shape is not None:
            shp = tuple(int(s) for s in shape)
            if int(np.prod(shp)) != dim:
                raise ValueError(f"shape {shp} does not hold dim = {dim} numbers")

        def tramp(user: Optional[int], v: Any, x: Any, t: Any, labels: Any, batch: int,
                  d: int) -> int:
            try:
                b, d = int(batch), int(d)
                if b == 0:
                    return 0
                xa = np.ctypeslib.as_array(x, shape=(b, d))
                xa.flags.writeable = False
                if shp is not None:
                    xa = xa.reshape((b,) + shp)
                ta = np.ctypeslib.as_array(t, shape=(b,))
                ta.flags.writeable = False
                la = None
                if labels:
                    la = np.ctypeslib.as_array(labels, shape=(b,))
                    la.flags.writeable = False
                r = np.asarray(fn(xa, ta, la))
                if r.dtype.kind not in "fiu":
                    raise TypeError(f"teacher callable returned dtype {r.dtype}, expected floats")
                if r.size != b * d:
                    raise ValueError(f"teacher callable returned shape {r.shape}, expected "
                                     f"({b}, {d}) numbers")
                va = np.ctypeslib.as_array(v, shape=(b * d,))
                va[:] = r.reshape(-1)
                return 0
            except BaseException as e:  # re-raised by the failing libfmd call
                _lib.set_pending(e)
                return 1

        cb = _lib.velocity_fn(tramp)
        h = ctypes.c_void_p()
        _lib.check(_lib.fn("fmd_teacher_create_callback")(dim, num_classes, cb, None,
                                                          ctypes.byref(h)))
        return cls(h.value, keep=(cb, fn), shape=shp)

    @classmethod
    def train(cls, data: Any, backend: Optional[Backend] = None,
              progress: Optional[Callable[[dict], Any]] = None, **options: Any) -> "Teacher":
        """Train a network teacher on an fmd.Dataset by flow matching; see
        fmd.train_teacher."""
        from .data import train_teacher
        return train_teacher(data, backend, progress, **options)

    # ---- properties --------------------------------------------------------------
    @property
    def kind(self) -> str:
        """"mixture", "network" or "callback"."""
        return _lib.text(_lib.fn("fmd_teacher_kind")(self._handle()))

    @property
    def dim(self) -> int:
        """Numbers per sample."""
        return int(_lib.fn("fmd_teacher_dim")(self._handle()))

    @property
    def num_classes(self) -> int:
        """Number of classes (0: unconditional); the label num_classes is the null class."""
        return int(_lib.fn("fmd_teacher_num_classes")(self._handle()))

    @property
    def backend(self) -> Optional[Backend]:
        """The backend a network teacher computes on (None for mixture/callback)."""
        return self._backend

    @property
    def guidance(self) -> Tuple[float, float, float]:
        """(scale, t_lo, t_hi) of classifier-free guidance (scale 1 = off)."""
        s, lo, hi = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        _lib.check(_lib.fn("fmd_teacher_get_guidance")(self._handle(), ctypes.byref(s),
                                                       ctypes.byref(lo), ctypes.byref(hi)))
        return (s.value, lo.value, hi.value)

    def set_guidance(self, scale: float, t_lo: float = 0.0, t_hi: float = 1.0) -> None:
        """Guided velocity v(.|null) + scale (v(.|c) - v(.|null)) for t in [t_lo, t_hi]."""
        _lib.check(_lib.fn("fmd_teacher_set_guidance")(self._handle(), float(scale), float(t_lo),
                                                       float(t_hi)))

    # ---- computing ---------------------------------------------------------------
    def velocity(self, x: np.ndarray, t: Union[float, np.ndarray], labels: Any = None,
                 cfg: Optional[float] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
        """v = v(x, t, labels): x float32 (N, dim) or (N, C, H, W), t float32 (N,) or a
        number, labels int32 (N,) / int / None (null class).  cfg: a guidance
        scale for this call only (the teacher's interval).  Returns v shaped as x
        (written into `out` when given)."""
        x = A.f32(x, "x")
        n = A.batch_rows(x, "x", self.dim)
        ta = A.per_row_f32(t, "t", n)
        la = A.labels_arg(labels, n)
        v = A.out_arg(out, x.shape, "out")
        h = self._handle()
        if cfg is None:
            _lib.check(_lib.fn("fmd_teacher_velocity")(h, A.pf(v), A.pf(x), A.pf(ta), A.pi32(la), n))
            return v
        old = self.guidance
        self.set_guidance(float(cfg), old[1], old[2])
        try:
            _lib.check(_lib.fn("fmd_teacher_velocity")(h, A.pf(v), A.pf(x), A.pf(ta), A.pi32(la), n))
        finally:
            self.set_guidance(*old)
        return v

    def _shape_out(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0],) + self._shape) if self._shape else x

    def solve(self, x: np.ndarray, labels: Any = None, **solver_options: Any) -> np.ndarray:
        """Integrate the ODE in place from t_start (1) to t_end (0); x float32 (N, dim).
        Options: solver (euler, heun, midpoint, rk4, dopri5), steps, shift, rtol,
        atol, t_start, t_end, h0, max_steps.  Returns x; the evaluation count is
        in ``last_nfe``."""
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or not x.flags.c_contiguous \
                or not x.flags.writeable:
            raise TypeError("x must be a writeable C-contiguous float32 numpy.ndarray (solved in place)")
        n = A.batch_rows(x, "x", self.dim)
        la = A.labels_arg(labels, n)
        opts = make_options(**solver_options)
        nfe = ctypes.c_int64()
        _lib.check(_lib.long_call("fmd_teacher_solve", self._handle(), A.pf(x), A.pi32(la), n,
                                                handle(opts), ctypes.byref(nfe)))
        self.last_nfe = nfe.value
        return x

    def sample(self, n: int, solver: str = "euler", steps: int = 8, seed: int = 0,
               labels: Any = None, first_index: int = 0, **solver_options: Any) -> np.ndarray:
        """n samples: prior noise of (seed, first_index + i) integrated by `solver`
        with `steps` steps (see :meth:`solve` for further options)."""
        n = A.count(n, "n")
        la = A.labels_arg(labels, n)
        seed, first_index = A.seed_arg(seed), A.seed_arg(first_index, "first_index")
        x = np.empty((n, self.dim), dtype=np.float32)
        opts = make_options(solver=solver, steps=steps, **solver_options)
        nfe = ctypes.c_int64()
        _lib.check(_lib.long_call("fmd_teacher_sample", self._handle(), A.pf(x), A.pi32(la), n, seed,
                                                 first_index, handle(opts), ctypes.byref(nfe)))
        self.last_nfe = nfe.value
        return self._shape_out(x)

    def sample_data(self, n: int, seed: int = 0, labels: Any = None, first_index: int = 0,
                    return_components: bool = False) -> Any:
        """Exact samples of a mixture's data distribution (n, dim); with
        return_components also the component index of each row."""
        n = A.count(n, "n")
        la = A.labels_arg(labels, n)
        seed, first_index = A.seed_arg(seed), A.seed_arg(first_index, "first_index")
        x = np.empty((n, self.dim), dtype=np.float32)
        comp = np.empty(n, dtype=np.int32) if return_components else None
        _lib.check(_lib.fn("fmd_teacher_sample_data")(self._handle(), n, seed, first_index,
                                                      A.pi32(la), A.pf(x), A.pi32(comp)))
        return (x, comp) if return_components else x

    def save(self, path: PathLike) -> None:
        """Save a mixture or network teacher (.fmd, atomic)."""
        _lib.check(_lib.fn("fmd_teacher_save")(self._handle(), _lib.cstr(path, "path")))

    def __repr__(self) -> str:
        if self.closed:
            return "fmd.Teacher(<closed>)"
        return f"fmd.Teacher(kind={self.kind!r}, dim={self.dim}, num_classes={self.num_classes})"
