/* fmd.h - the public API of libfmd, a C library for data-free flow map
 * distillation (FreeFlow, arXiv 2511.19428) and one-step generation.
 *
 * This header is the manual.  If it is not in this file it is not an API.
 *
 * Conventions
 *   - Every exported symbol starts with fmd_, every macro with FMD_.
 *   - Objects are opaque handles created by fmd_<object>_create / _open /
 *     _load and released by fmd_<object>_destroy, which accepts NULL.
 *   - Every call that can fail returns an fmd_status.  On failure
 *     fmd_last_error() returns a message (thread-local) naming the bad
 *     argument, file offset or tensor.  The library never aborts or exits.
 *   - Out-parameters come last and are written only on success.
 *   - The library never frees memory the caller owns; buffers the library
 *     returns are owned by the handle they came from unless stated.
 *   - Hyper-parameters travel in an fmd_options object with typed setters
 *     keyed by name (no structs by value, no varargs across the ABI).
 *   - Thread safety: distinct handles may be used from distinct threads; one
 *     handle must not be used from two threads at once.  The global hooks
 *     (allocator, log callback) are set before any other call.
 *   - Compiles as C99 and as C++.
 */
#ifndef FMD_H
#define FMD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Versions.  The shared object's SONAME carries the ABI major (libfmd.so.0).
 * ---------------------------------------------------------------------- */
#define FMD_VERSION_MAJOR 0
#define FMD_VERSION_MINOR 2
#define FMD_VERSION_PATCH 0
#define FMD_VERSION_HEX ((FMD_VERSION_MAJOR << 16) | (FMD_VERSION_MINOR << 8) | FMD_VERSION_PATCH)
#define FMD_VERSION_STRING "0.2.0"

#if defined(_WIN32)
#define FMD_API
#elif defined(__GNUC__)
#define FMD_API __attribute__((visibility("default")))
#else
#define FMD_API
#endif

/* Runtime version as "MAJOR.MINOR.PATCH" (static string, never NULL). */
FMD_API const char *fmd_version(void);
/* Runtime FMD_VERSION_HEX of the loaded library (compare with the macro). */
FMD_API int fmd_version_hex(void);

/* ------------------------------------------------------------------------
 * Status codes.  Generated from one list; values are never renumbered.
 * ---------------------------------------------------------------------- */
#define FMD_STATUS_LIST(X)                                              \
    X(FMD_OK, 0, "ok")                                                  \
    X(FMD_ERR_INVALID_ARG, 1, "invalid argument")                       \
    X(FMD_ERR_OOM, 2, "out of memory")                                  \
    X(FMD_ERR_IO, 3, "input/output error")                              \
    X(FMD_ERR_FORMAT, 4, "bad or corrupt file format")                  \
    X(FMD_ERR_VERSION, 5, "version mismatch")                           \
    X(FMD_ERR_UNSUPPORTED, 6, "unsupported")                            \
    X(FMD_ERR_BACKEND_UNAVAILABLE, 7, "backend unavailable")            \
    X(FMD_ERR_NONFINITE, 8, "non-finite number (NaN or Inf)")           \
    X(FMD_ERR_CANCELLED, 9, "cancelled")                                \
    X(FMD_ERR_INTERNAL, 10, "internal error")

typedef enum fmd_status {
#define FMD_STATUS_ENUM_(name, value, text) name = value,
    FMD_STATUS_LIST(FMD_STATUS_ENUM_)
#undef FMD_STATUS_ENUM_
    FMD_STATUS_COUNT_ = 11
} fmd_status;

/* A static English description of a status ("invalid argument"); unknown
 * values give "unknown status".  Never NULL. */
FMD_API const char *fmd_status_string(fmd_status status);
/* The symbolic name of a status ("FMD_ERR_INVALID_ARG"), or "FMD_UNKNOWN". */
FMD_API const char *fmd_status_name(fmd_status status);

/* The message of the last failed call on this thread, e.g.
 * "fmd_backend_open: unknown backend name 'gpu' (expected cpu, cuda, auto)".
 * Owned by the library, valid until the next libfmd call on this thread.
 * Empty string when no error has happened.  Never NULL. */
FMD_API const char *fmd_last_error(void);
/* The status of the last failed call on this thread (FMD_OK if none). */
FMD_API fmd_status fmd_last_status(void);
/* Forget the last error of this thread. */
FMD_API void fmd_clear_error(void);

/* ------------------------------------------------------------------------
 * Host memory and logging hooks (for embedded hosts and OOM tests).
 * ---------------------------------------------------------------------- */
typedef void *(*fmd_malloc_fn)(size_t size, void *user);
typedef void *(*fmd_realloc_fn)(void *ptr, size_t size, void *user);
typedef void (*fmd_free_fn)(void *ptr, void *user);

/* Route every host allocation of the library through these functions.
 * All three NULL restores the C library's malloc/realloc/free.  Errors:
 * FMD_ERR_INVALID_ARG when only some are NULL.  Not thread-safe: call it
 * before creating any object, and do not change it while objects that were
 * allocated with the previous hooks are alive. */
FMD_API fmd_status fmd_set_allocator(fmd_malloc_fn malloc_fn, fmd_realloc_fn realloc_fn,
                                     fmd_free_fn free_fn, void *user);

typedef enum fmd_log_level {
    FMD_LOG_ERROR = 0,
    FMD_LOG_WARN = 1,
    FMD_LOG_INFO = 2,
    FMD_LOG_DEBUG = 3
} fmd_log_level;

/* msg is owned by the library and valid only during the call. */
typedef void (*fmd_log_fn)(int level, const char *msg, void *user);

/* Send library log lines of severity <= max_level to fn (NULL: silence, the
 * default).  Not thread-safe with respect to concurrent logging. */
FMD_API void fmd_set_log_callback(fmd_log_fn fn, void *user, int max_level);

/* Polled by the long calls between units of work on the calling thread:
 * every step of fmd_distiller_run and fmd_teacher_train, every velocity
 * evaluation of an ODE solve (fmd_teacher_solve, teacher sampling, the
 * evaluator's reference) and every chunk of student sampling.  Non-zero
 * stops the call with FMD_ERR_CANCELLED, keeping the work completed (a
 * distiller keeps its steps; fmd_teacher_train with option checkpoint saves
 * its state first). */
typedef int (*fmd_cancel_fn)(void *user);
/* Install fn (NULL removes it) for the calling thread only; user is passed
 * back.  Language bindings use it to make an interrupt (Ctrl-C) stop a
 * call promptly.  Never fails. */
FMD_API void fmd_set_cancel_check(fmd_cancel_fn fn, void *user);

/* ------------------------------------------------------------------------
 * Options: a bag of named, typed hyper-parameters (oneDNN-attribute style).
 * Every object that takes settings takes an fmd_options (NULL = defaults).
 * Unknown keys are rejected by the consumer with FMD_ERR_INVALID_ARG naming
 * the key, so typos do not pass silently.
 * ---------------------------------------------------------------------- */
typedef struct fmd_options fmd_options;

/* Create an empty options object into *out (caller owns; destroy with
 * fmd_options_destroy).  Errors: FMD_ERR_INVALID_ARG (out NULL), FMD_ERR_OOM. */
FMD_API fmd_status fmd_options_create(fmd_options **out);
/* Release an options object.  NULL-safe. */
FMD_API void fmd_options_destroy(fmd_options *opts);
/* Set key to a number / an integer / a string (copied).  A later set of the
 * same key replaces the value and its type.  Errors: FMD_ERR_INVALID_ARG for
 * NULL opts/key/value or an empty or over-long (> 63 bytes) key,
 * FMD_ERR_NONFINITE for a NaN/Inf number, FMD_ERR_OOM. */
FMD_API fmd_status fmd_options_set_f64(fmd_options *opts, const char *key, double value);
FMD_API fmd_status fmd_options_set_i64(fmd_options *opts, const char *key, int64_t value);
FMD_API fmd_status fmd_options_set_str(fmd_options *opts, const char *key, const char *value);
/* Parse "key=value" (value typed as integer, number, or else string), the
 * form command lines use.  Errors: FMD_ERR_INVALID_ARG when '=' is missing. */
FMD_API fmd_status fmd_options_parse(fmd_options *opts, const char *key_equals_value);
/* Read a key.  An integer reads as f64 too.  Errors: FMD_ERR_INVALID_ARG when
 * the key is absent or of another type (message names the key). */
FMD_API fmd_status fmd_options_get_f64(const fmd_options *opts, const char *key, double *out);
FMD_API fmd_status fmd_options_get_i64(const fmd_options *opts, const char *key, int64_t *out);
/* *out points into opts, valid until the key is set again or opts destroyed. */
FMD_API fmd_status fmd_options_get_str(const fmd_options *opts, const char *key, const char **out);
/* Number of keys, and the i-th key (0-based, in insertion order; NULL when
 * out of range).  The string is owned by opts. */
FMD_API int fmd_options_count(const fmd_options *opts);
FMD_API const char *fmd_options_key(const fmd_options *opts, int index);

/* What every consumer of options takes, read from the library's own option
 * tables (one per consumer: key, type, range or allowed strings, default,
 * the condition under which the key acts, help), so that a --help text or a
 * documentation table generated from them cannot disagree with the library.
 * Consumers: "distiller" (fmd_distiller_create), "student"
 * (fmd_student_create), "train" (fmd_teacher_train), "sampler"
 * (fmd_sampler_create / _sample), "solver" (fmd_teacher_solve / _sample),
 * "evaluator" (fmd_evaluator_create), "teacher_load" (fmd_teacher_load),
 * "safetensors" (fmd_teacher_load_safetensors), "comm" (fmd_comm_open).  A key given where its
 * condition does not hold is refused (FMD_ERR_INVALID_ARG), so every
 * accepted option acts. */
typedef enum fmd_option_field {
    FMD_OPTION_KEY = 0,       /* "lr"                                              */
    FMD_OPTION_TYPE = 1,      /* "int", "num" or "str"                             */
    FMD_OPTION_DEFAULT = 2,   /* "0.001", "cosine", or words ("the teacher's")     */
    FMD_OPTION_RANGE = 3,     /* "(0, 10]", "[0, inf)", "cosine|linear|none", ""   */
    FMD_OPTION_APPLIES = 4,   /* "" or the condition, e.g. "target=fd", "corr=1"  */
    FMD_OPTION_HELP = 5       /* one line                                          */
} fmd_option_field;
/* The index-th consumer name (static string), NULL past the end. */
FMD_API const char *fmd_option_consumer(int index);
/* Number of keys the consumer takes; -1 for an unknown consumer. */
FMD_API int fmd_option_count(const char *consumer);
/* Field `what` (fmd_option_field) of the index-th key of consumer as text
 * into buf (len bytes, NUL-terminated, truncated when short).  Errors:
 * FMD_ERR_INVALID_ARG (unknown consumer or field, index out of range, buf
 * NULL or len 0). */
FMD_API fmd_status fmd_option_describe(const char *consumer, int index, int what, char *buf,
                                       size_t len);

/* ------------------------------------------------------------------------
 * Backends: compute devices chosen at run time.
 *   "cpu"  - always present (oneDNN / OpenBLAS GEMM, OpenMP loops);
 *            FMD_NUM_THREADS sets its threads, FMD_CPU_GEMM=onednn|openblas|auto
 *            its GEMM provider.
 *   "cuda" - the plugin libfmd-cuda.so, looked up in FMD_BACKEND_PATH (a
 *            directory or a file), then next to libfmd, then by the loader.
 *            FMD_CUDA_DEVICE picks the GPU (default 0); FMD_CUDA_TF32=1 lets
 *            cuBLAS use TF32 tensor cores (off by default, so results match
 *            the CPU's fp32).
 *   "auto" - cuda when the plugin loads and a GPU answers, else cpu.
 * ---------------------------------------------------------------------- */
typedef struct fmd_backend fmd_backend;

/* Number of backend names this build knows ("cpu", "cuda"), and the i-th
 * name (static string; NULL when out of range).  Knowing a name does not
 * mean it can be opened: see fmd_backend_available. */
FMD_API int fmd_backend_count(void);
FMD_API const char *fmd_backend_name_at(int index);
/* 1 when fmd_backend_open(name) would succeed now, else 0 (and the reason is
 * left in fmd_last_error()).  Opens and closes the device to find out. */
FMD_API int fmd_backend_available(const char *name);

/* Open a backend into *out.  name: "cpu", "cuda", "auto", or NULL to honour
 * the FMD_BACKEND environment variable (default "auto").  The caller owns
 * *out and releases it with fmd_backend_destroy after every object created
 * on it.  Errors: FMD_ERR_INVALID_ARG (out NULL, unknown name),
 * FMD_ERR_BACKEND_UNAVAILABLE (plugin missing, no GPU; the message says
 * which), FMD_ERR_VERSION (plugin of another ABI), FMD_ERR_OOM. */
FMD_API fmd_status fmd_backend_open(const char *name, fmd_backend **out);
/* Release a backend.  NULL-safe. */
FMD_API void fmd_backend_destroy(fmd_backend *backend);
/* "cpu" or "cuda" (owned by the backend).  NULL backend gives "". */
FMD_API const char *fmd_backend_name(const fmd_backend *backend);
/* Human description of the device, e.g. "cpu: 2 threads, gemm=onednn" or
 * "cuda: NVIDIA H100 (sm_90, 79 GiB)".  Owned by the backend. */
FMD_API const char *fmd_backend_device(const fmd_backend *backend);
/* Worker threads of a CPU backend (0 for GPU backends or NULL). */
FMD_API int fmd_backend_threads(const fmd_backend *backend);
/* Run the backend's self-check: every op on small random inputs compared
 * with the plain-C reference.  Errors: FMD_ERR_INTERNAL naming the op. */
FMD_API fmd_status fmd_backend_selfcheck(fmd_backend *backend);

/* ==== COMMUNICATORS (fmd_comm) ==== */
/* A communicator joins the processes of a data-parallel job (MPI ranks).
 * libfmd links no transport: "mpi" loads the plugin libfmd-mpi.so at run
 * time (built when Open MPI was found; looked for in option plugin, then
 * FMD_COMM_PATH (file or folder), the folder of libfmd, the loader's path).
 * Start the processes the ordinary way (mpirun -np N prog). */
typedef struct fmd_comm fmd_comm;

/* Open a communicator into *out (caller owns; fmd_comm_close).  kind:
 * "mpi" (initialises MPI unless the program already did), "none" (one
 * process: rank 0 of 1), or NULL / "auto" (mpi when the process was started
 * by an MPI launcher - OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE set -
 * else none).  opts: consumer "comm" (option plugin), may be NULL.  Several
 * "mpi" communicators may be open at once (all span MPI_COMM_WORLD); MPI is
 * finalised when the last one closes and cannot start again in the process.
 * Errors: FMD_ERR_INVALID_ARG (out NULL, unknown kind or option),
 * FMD_ERR_BACKEND_UNAVAILABLE (the plugin could not be loaded or MPI not
 * initialised; the message lists every path tried), FMD_ERR_VERSION (plugin
 * of another ABI), FMD_ERR_OOM. */
FMD_API fmd_status fmd_comm_open(const char *kind, const fmd_options *opts, fmd_comm **out);
/* This process's rank and the number of ranks (NULL: 0 and 1). */
FMD_API int fmd_comm_rank(const fmd_comm *comm);
FMD_API int fmd_comm_size(const fmd_comm *comm);
/* "none: one process" or "mpi: Open MPI v4.1.4, rank 0 of 2" (owned by
 * comm; "" for NULL). */
FMD_API const char *fmd_comm_describe(const fmd_comm *comm);
/* Wait for every rank.  Errors: FMD_ERR_INVALID_ARG (NULL), FMD_ERR_INTERNAL
 * (transport). */
FMD_API fmd_status fmd_comm_barrier(fmd_comm *comm);
/* End the whole job with exit status code (MPI_Abort on every rank; exit
 * for "none" or NULL).  Does not return. */
FMD_API void fmd_comm_abort(fmd_comm *comm, int code);
/* Close (the last open "mpi" communicator finalises MPI when fmd_comm_open
 * initialised it).  NULL-safe; after every distiller that borrows comm is
 * destroyed. */
FMD_API void fmd_comm_close(fmd_comm *comm);

/* ==== TEACHERS (fmd_teacher) ==== */
/* A teacher is a frozen velocity field v(x, t, c) = E[eps - x0 | x_t = x, c]
 * in libfmd's convention (docs/math.md section 1): t = 1 is noise, t = 0 data,
 * x_t = (1 - t) x0 + t eps, samples come from dx/dt = v integrated from
 * t = 1 down to t = 0.  Kinds:
 *   "mixture"  - an exact Gaussian mixture (closed form, double precision),
 *                optionally class-conditional (each component in one class);
 *   "network"  - an MLP or SiT/DiT loaded from .fmd or safetensors;
 *   "callback" - a host C function (e.g. a PyTorch model via ctypes).
 *
 * Where teachers compute: every fmd_teacher_* call takes host buffers.
 * Mixture and callback teachers compute on the host (no backend needed); a
 * network teacher computes on the backend it was loaded onto, which it
 * borrows (destroy the teacher before the backend).  Inside the library
 * (distiller, sampler) any teacher serves any backend.
 *
 * Shapes: x, v (batch, dim) row-major float; t (batch) in [0, 1]; labels
 * (batch) int32 in [0, num_classes], where the value num_classes is the
 * null class (unconditional); labels NULL means the null class for every
 * row.  Unconditional teachers ignore labels.
 *
 * Guidance (classifier-free, with an interval): every teacher carries a
 * guidance setting (default scale 1 = off) used by fmd_teacher_velocity,
 * fmd_teacher_solve / _sample, and by distillers created on it:
 * v_w = v(.|null) + scale (v(.|c) - v(.|null)) for rows with t in
 * [t_lo, t_hi], v(.|c) elsewhere.
 *
 * A teacher handle must not be used from two threads at once (it keeps
 * scratch buffers); distinct teachers are independent. */
typedef struct fmd_teacher fmd_teacher;

/* Mixture from arrays: num_components components in dim dimensions with
 * weights (K; normalised by the library, >= 0), means (K, dim) row-major,
 * stds (K; in [1e-6, 1e6), isotropic), classes (K, in [0, num_classes); NULL when
 * num_classes == 0).  Every class must own a component of positive weight.
 * All arrays are copied.  Caller owns *out (fmd_teacher_destroy).  Errors:
 * FMD_ERR_INVALID_ARG naming the bad entry, FMD_ERR_OOM. */
FMD_API fmd_status fmd_teacher_create_mixture(int dim, int num_components, const double *weights,
                                              const double *means, const double *stds,
                                              const int32_t *classes, int num_classes,
                                              fmd_teacher **out);
/* Built-in mixture by name (docs/teachers.md): "ring8" (2-D, 8 modes on a
 * circle of radius 2, unequal weights and widths), "grid25" (2-D, 5x5 grid),
 * "classes4-d32" (32-D, 4 classes x 4 modes, for guidance).  Caller owns
 * *out.  Errors: FMD_ERR_INVALID_ARG (unknown name; the message lists the
 * known ones), FMD_ERR_OOM. */
FMD_API fmd_status fmd_teacher_create_preset(const char *name, fmd_teacher **out);
/* Mixture from a text spec file (format in docs/teachers.md: lines
 * "dim D", optional "classes C", then "component weight=W std=S
 * mean=m1,...,mD [class=c]"; '#' starts a comment).  Caller owns *out.
 * Errors: FMD_ERR_IO, FMD_ERR_FORMAT (naming the line), FMD_ERR_OOM. */
FMD_API fmd_status fmd_teacher_load_spec(const char *path, fmd_teacher **out);

/* Host velocity callback: write v (batch, dim) for x (batch, dim), t
 * (batch), labels (batch; never NULL for a teacher with classes: the null
 * class is passed explicitly; NULL for an unconditional teacher).  The
 * buffers are owned by the library and valid during the call only.  Return
 * 0 on success; non-zero makes the calling operation fail with
 * FMD_ERR_CANCELLED.  Called from the thread that called into libfmd. */
typedef int (*fmd_velocity_fn)(void *user, float *v, const float *x, const float *t,
                               const int32_t *labels, int64_t batch, int64_t dim);
/* Teacher from a host callback, in libfmd's convention (see above).  user is
 * passed through and never freed.  Caller owns *out.  Errors:
 * FMD_ERR_INVALID_ARG (fn NULL, dim < 1, num_classes < 0), FMD_ERR_OOM. */
FMD_API fmd_status fmd_teacher_create_callback(int64_t dim, int num_classes, fmd_velocity_fn fn,
                                               void *user, fmd_teacher **out);

/* Load a teacher saved by fmd_teacher_save or fmd_teacher_train (.fmd): a
 * network (built on backend, which must outlive the teacher) or a mixture
 * (backend unused, may be NULL).  opts may be NULL; key "time_convention"
 * ("libfmd" or "sit") overrides the file's.  Caller owns *out.  Errors:
 * FMD_ERR_INVALID_ARG (NULL path/out, backend NULL for a network file,
 * unknown option), FMD_ERR_IO, FMD_ERR_FORMAT (names offset or tensor),
 * FMD_ERR_VERSION, FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_teacher_load(fmd_backend *backend, const char *path,
                                    const fmd_options *opts, fmd_teacher **out);
/* Load a network teacher from a safetensors file whose tensor names follow
 * the public SiT/DiT checkpoints (or libfmd's MLP names).  arch: a SiT/DiT
 * preset ("SiT-XL/2", "SiT-B/2", "DiT-S/4", ...), "dit" (sizes from opts:
 * input_size, patch_size, in_channels, hidden_size, depth, num_heads,
 * mlp_ratio) or "mlp" (dim, width, depth, temb_dim, time_scale).  Further
 * opts: num_classes (default 1000 for presets, else 0), input_size (default
 * 32 = latent of 256 px), in_channels (4), learn_sigma (1 for presets),
 * time_scale, time_convention: "sit" (default for SiT-* presets: the
 * original SiT code, t = 0 noise, output x_data - x_noise) or "libfmd"
 * (default otherwise, and what REPA checkpoints use); "sit" is converted on
 * the fly (t -> 1 - t, v -> -v).  Caller owns *out.  Errors:
 * FMD_ERR_INVALID_ARG (bad arch/option; names it), FMD_ERR_IO,
 * FMD_ERR_FORMAT (corrupt file, missing tensor or wrong shape: names the
 * tensor), FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_teacher_load_safetensors(fmd_backend *backend, const char *path,
                                                const char *arch, const fmd_options *opts,
                                                fmd_teacher **out);
/* Save a mixture or network teacher to path (.fmd, atomic: an existing file
 * is replaced only when the new one is complete).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_UNSUPPORTED (callback teacher), FMD_ERR_IO,
 * FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_teacher_save(fmd_teacher *teacher, const char *path);
/* Release a teacher (not its borrowed backend).  NULL-safe. */
FMD_API void fmd_teacher_destroy(fmd_teacher *teacher);

/* "mixture", "network", "callback" (static; "" for NULL). */
FMD_API const char *fmd_teacher_kind(const fmd_teacher *teacher);
/* Numbers per sample (0 for NULL) and number of classes (0: unconditional). */
FMD_API int64_t fmd_teacher_dim(const fmd_teacher *teacher);
FMD_API int fmd_teacher_num_classes(const fmd_teacher *teacher);

/* Set / read the guidance (see above).  scale finite (1 = off; 0 gives the
 * unconditional field), 0 <= t_lo <= t_hi <= 1.  Setting a scale other than
 * 1 on an unconditional teacher is FMD_ERR_INVALID_ARG. */
FMD_API fmd_status fmd_teacher_set_guidance(fmd_teacher *teacher, double scale, double t_lo,
                                            double t_hi);
FMD_API fmd_status fmd_teacher_get_guidance(const fmd_teacher *teacher, double *scale,
                                            double *t_lo, double *t_hi);

/* v (batch, dim) = guided velocity at x, t, labels (host buffers owned by
 * the caller; v must not alias x).  Errors: FMD_ERR_INVALID_ARG (NULL
 * buffer, batch < 0, t outside [0, 1] or label outside [0, num_classes]:
 * the message names the row), FMD_ERR_CANCELLED (callback refused),
 * FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_teacher_velocity(fmd_teacher *teacher, float *v, const float *x,
                                        const float *t, const int32_t *labels, int64_t batch);

/* Exact samples of a mixture teacher's data distribution (not guided):
 * row i of x_out (n, dim) is a pure function of (seed, first_index + i).
 * labels (n) or NULL: when given, row i is drawn from class labels[i] (the
 * null class draws from all); component_out (n) or NULL receives the
 * component index of each row.  Errors: FMD_ERR_INVALID_ARG (NULL x_out,
 * bad label), FMD_ERR_UNSUPPORTED (not a mixture). */
FMD_API fmd_status fmd_teacher_sample_data(const fmd_teacher *teacher, int64_t n, uint64_t seed,
                                           uint64_t first_index, const int32_t *labels,
                                           float *x_out, int32_t *component_out);

/* Integrate the teacher's ODE in place: x (batch, dim) holds the state at
 * t_start (noise) on entry and the result at t_end on return, with the
 * teacher's guidance.  opts (may be NULL): solver = euler | heun | midpoint
 * | rk4 | dopri5 (default dopri5), steps (fixed-step methods, default 32),
 * shift (time grid t = s u / (1 + (s - 1) u), default 1 = uniform), rtol,
 * atol (dopri5, default 1e-5 each), t_start (1), t_end (0), h0, max_steps.
 * Fixed-step methods evaluate all rows at shared times; dopri5 adapts one
 * step size per row, so a row's result does not depend on the batch.  The
 * state is kept in double precision.  nfe_out (may be NULL) receives the
 * number of batched velocity evaluations (for dopri5 the largest per-row
 * count).  Errors: FMD_ERR_INVALID_ARG (NULL x, unknown option, bad value,
 * bad label), FMD_ERR_NONFINITE, FMD_ERR_INTERNAL (dopri5 exceeded
 * max_steps), FMD_ERR_CANCELLED, FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_teacher_solve(fmd_teacher *teacher, float *x, const int32_t *labels,
                                     int64_t batch, const fmd_options *opts, int64_t *nfe_out);
/* Draw noise z ~ N(0, I) and solve: x_out (batch, dim).  Row i's noise is
 * a pure function of (seed, first_index + i): z[i][j] = Philox normal of
 * (seed, stream "prior", (first_index + i) * dim + j), the same noise the
 * sampler gives the student.  Other arguments and errors as
 * fmd_teacher_solve. */
FMD_API fmd_status fmd_teacher_sample(fmd_teacher *teacher, float *x_out, const int32_t *labels,
                                      int64_t batch, uint64_t seed, uint64_t first_index,
                                      const fmd_options *opts, int64_t *nfe_out);
/* Fill z (n, dim) with the prior noise of fmd_teacher_sample (above).
 * Long calls (over 32,768 floats) run on the OpenMP threads; the values
 * never depend on the thread count.  Errors: FMD_ERR_INVALID_ARG (z NULL
 * with n > 0, n < 0, dim < 1). */
FMD_API fmd_status fmd_prior_noise(float *z, int64_t n, int64_t dim, uint64_t seed,
                                   uint64_t first_index);

/* ---- data sets and teacher training by flow matching -------------------- */
/* A data set: n samples of dim floats (host memory owned by the data set),
 * optional int32 labels in [0, num_classes), and for images the shape
 * (channels, height, width) with dim = channels * height * width. */
typedef struct fmd_dataset fmd_dataset;

/* Copy n samples x (n, dim) and labels (n, in [0, num_classes); NULL when
 * num_classes == 0) into a new data set.  num_classes = -1 takes the
 * largest label + 1 (0 when labels is NULL); at most 2^24 classes.  Caller
 * owns *out (fmd_dataset_destroy).  Errors: FMD_ERR_INVALID_ARG (NULL, n <
 * 1, dim < 1, num_classes outside [-1, 2^24], a negative or out-of-range
 * label - the message names its index and value), FMD_ERR_NONFINITE,
 * FMD_ERR_OOM. */
FMD_API fmd_status fmd_dataset_create(const float *x, const int32_t *labels, int64_t n,
                                      int64_t dim, int num_classes, fmd_dataset **out);
/* n exact samples of a mixture teacher's data distribution (seed; row i is
 * a pure function of (seed, i)); labels are the component's class when the
 * mixture has classes.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_UNSUPPORTED
 * (not a mixture teacher), FMD_ERR_OOM. */
FMD_API fmd_status fmd_dataset_from_mixture(const fmd_teacher *mixture, int64_t n, uint64_t seed,
                                            fmd_dataset **out);
/* Images and labels from IDX files (MNIST / Fashion-MNIST layout, gzip or
 * plain; Debian's dataset-fashion-mnist puts them in
 * /usr/share/datasets/fashion-mnist/).  Pixels are scaled to [-1, 1];
 * shape (1, H, W).  labels_path may be NULL (no labels); otherwise its count
 * must match and num_classes = largest label + 1.  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_FORMAT (naming file and offset),
 * FMD_ERR_UNSUPPORTED, FMD_ERR_OOM. */
FMD_API fmd_status fmd_dataset_load_idx(const char *images_path, const char *labels_path,
                                        fmd_dataset **out);
/* fmd_dataset_load_idx with options (consumer "dataset_idx"; NULL = the
 * defaults): max_bytes (default 1073741824 = 1 GiB, at most 2^31) caps the
 * data of each file, after decompression for gzip.  The declared size is
 * checked against the cap and, for a plain file, against the file's size
 * before anything of that size is allocated; gzip data is read into a
 * buffer that grows as bytes arrive.  Caller owns *out.  Errors: those of
 * fmd_dataset_load_idx; FMD_ERR_FORMAT naming max_bytes when a file
 * declares more; FMD_ERR_INVALID_ARG for an unknown or out-of-range key. */
FMD_API fmd_status fmd_dataset_load_idx_opts(const char *images_path, const char *labels_path,
                                             const fmd_options *opts, fmd_dataset **out);
/* Release a data set.  NULL-safe. */
FMD_API void fmd_dataset_destroy(fmd_dataset *data);
/* Samples, numbers per sample, classes (0 for NULL / unlabeled). */
FMD_API int64_t fmd_dataset_size(const fmd_dataset *data);
FMD_API int64_t fmd_dataset_dim(const fmd_dataset *data);
FMD_API int fmd_dataset_num_classes(const fmd_dataset *data);
/* Copy sample i into x (dim floats) and its label into *label (may be NULL;
 * -1 when unlabeled).  Errors: FMD_ERR_INVALID_ARG (NULL, i out of range). */
FMD_API fmd_status fmd_dataset_get(const fmd_dataset *data, int64_t i, float *x, int32_t *label);

/* Progress of fmd_teacher_train.  struct_size is sizeof(fmd_train_stats). */
typedef struct fmd_train_stats {
    size_t struct_size;
    int64_t step;          /* steps completed                              */
    int64_t steps;         /* steps requested                              */
    double loss;           /* flow-matching loss of the last step          */
    double loss_avg;       /* mean loss since the previous report          */
    double lr;             /* learning rate of the last step               */
    double grad_norm;      /* gradient norm before clipping                */
    double steps_per_s;    /* since the previous report                    */
    double eta_s;          /* estimated seconds to the end                 */
} fmd_train_stats;
/* Called every progress_every steps and after the last step; stats valid
 * during the call.  Return non-zero to cancel (FMD_ERR_CANCELLED). */
typedef int (*fmd_train_progress_fn)(const fmd_train_stats *stats, void *user);

/* Train a network teacher on data by flow matching (docs/math.md section 2:
 * x_t = (1 - t) x0 + t eps, regress v(x_t, t, c) onto eps - x0) with AdamW,
 * an EMA of the weights (the returned teacher uses the EMA weights), class
 * dropout to the null class (for guidance), gradient clipping, and periodic
 * checkpoints.  The network lives on backend (borrowed by the teacher).
 * Options (opts may be NULL), with defaults:
 *   arch "mlp" | "dit" | a SiT/DiT preset ("SiT-S/2"; image data only);
 *   mlp: width 256, depth 4, temb_dim 256, time_scale 30;
 *   dit: patch_size 2, hidden_size 256, depth 6, num_heads 4, mlp_ratio 4
 *        (input_size and in_channels from the data set's image shape);
 *   steps 5000, batch 256, lr 1e-3, warmup 100 (linear), lr_decay "cosine" |
 *   "const" (cosine), min_lr 0.1 * lr (cosine floor), weight_decay 0,
 *   beta1 0.9, beta2 0.999, eps 1e-8, grad_clip 1 (0 = off), ema 0.999,
 *   class_dropout 0.1 (labeled data only), conditional 1 (0 trains an
 *   unconditional teacher on labeled data), t_dist "uniform" | "logit_normal"
 *   (uniform; logit_normal uses t_mean 0, t_std 1), seed 0,
 *   progress_every 100, checkpoint "" (a .fmd path, checked before the
 *   first step; the EMA teacher and the training state - raw weights, AdamW
 *   moments, step, the options and a fingerprint of the data - are saved
 *   there atomically every checkpoint_every steps, default 1000, when the
 *   progress callback cancels, and at the end; it loads as a teacher),
 *   resume "" (such a checkpoint: the run continues from its step with the
 *   options it records, bit for bit as if it had not stopped; a different
 *   value given for a recorded option is refused except steps, so is other
 *   data or a checkpoint already at steps).
 * Reproducible: the same data, options and backend give the same weights.
 * Caller owns *out.  Errors: FMD_ERR_INVALID_ARG (NULL, unknown option or
 * bad value - names the key; dit arch on non-image data), FMD_ERR_NONFINITE
 * (loss or gradient NaN/Inf: names the step), FMD_ERR_CANCELLED, FMD_ERR_IO
 * (checkpoint: an unwritable path before any step), FMD_ERR_FORMAT and
 * FMD_ERR_VERSION (resume: not a training checkpoint), FMD_ERR_OOM, backend errors.  On error *out is not set and
 * the last checkpoint written stays valid.
 * Floating point: on x86 the call runs with flush-to-zero and
 * denormals-are-zero set on the calling thread and the OpenMP workers
 * (subnormal floats made training up to 3x slower); each thread's mode is
 * restored before it returns, progress callbacks (and a callback teacher's
 * function) run in the caller's mode on the calling thread while the workers
 * keep flushing until the call returns.  FMD_FLUSH_DENORMALS=0 in the
 * environment turns this off. */
FMD_API fmd_status fmd_teacher_train(fmd_backend *backend, const fmd_dataset *data,
                                     const fmd_options *opts, fmd_train_progress_fn progress,
                                     void *user, fmd_teacher **out);
/* fmd_teacher_train data-parallel over comm (NULL or one rank: exactly
 * fmd_teacher_train): every rank passes the same data and options, computes
 * rows [r B/N, (r+1) B/N) of the global batch B (option batch; each row drawn
 * by its global index, as in one process), and the loss and gradients are
 * summed over the ranks before the one AdamW + EMA step, so every rank
 * returns the same teacher.  Only rank 0 writes the checkpoint.  Call it on
 * every rank; an error on one rank leaves the others waiting (end the job
 * with fmd_comm_abort).  Errors: those of fmd_teacher_train,
 * FMD_ERR_INVALID_ARG (B not divisible by the world size), FMD_ERR_INTERNAL
 * (transport). */
FMD_API fmd_status fmd_teacher_train_comm(fmd_comm *comm, fmd_backend *backend,
                                          const fmd_dataset *data, const fmd_options *opts,
                                          fmd_train_progress_fn progress, void *user,
                                          fmd_teacher **out);
/* ==== END TEACHERS ==== */

/* ==== STUDENTS AND DISTILLER (fmd_student, fmd_distiller) ==== */
/* A student is a one-step flow map f(z, delta, c) = z - delta * F(z, delta, c)
 * from the prior N(0, I): f(z, 1, c) is a sample in one network evaluation,
 * f(z, delta, c) the teacher's ODE from t = 1 stopped at t = 1 - delta.
 * A distiller trains a student from a teacher without data (FreeFlow,
 * docs/math.md sections 5-8).  The option keys, their defaults and the measured
 * reasons for them are listed in docs/distiller.md. */
typedef struct fmd_student fmd_student;
typedef struct fmd_distiller fmd_distiller;

/* Create a student for `teacher` on `backend` into *out (caller owns; free
 * with fmd_student_destroy; the teacher may be destroyed afterwards).
 *   Network teacher: the student is the teacher's architecture in student
 *   form with the teacher's weights copied and a zero-initialised delta
 *   projection; its time embedder reads the start time 1, so at the start
 *   F(z, delta) = v(z, 1): f(z, delta) = z - delta v(z, 1) is the teacher's
 *   Euler step (f(z, 1) its one-step Euler sample), exact as delta -> 0.
 *   Mixture and callback teachers: a fresh MLP of options width (default
 *   256), depth (4), temb_dim (256), time_scale (30), delta_scale (30); its
 *   initial map does not match the teacher (the distiller trains it).
 *   seed (0) seeds the initialisation.
 * opts may be NULL.  Errors: FMD_ERR_INVALID_ARG (NULL argument, unknown or
 * ill-typed option - the message names the key, a size option on a network
 * teacher), FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_student_create(fmd_teacher *teacher, fmd_backend *backend,
                                      const fmd_options *opts, fmd_student **out);
/* Load a student from a .fmd file written by fmd_student_save, or the EMA
 * student of a distiller checkpoint (fmd_distiller_save), onto backend.
 * Caller owns *out.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_FORMAT
 * (corrupt file, or a teacher-form model), FMD_ERR_VERSION, FMD_ERR_OOM. */
FMD_API fmd_status fmd_student_load(const char *path, fmd_backend *backend, fmd_student **out);
/* Save the student's weights and architecture to path (.fmd, atomic: an
 * existing file is replaced only once the new one is complete).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_student_save(fmd_student *student, const char *path);
/* out(n, D) = f(z, delta, labels) = z - delta * F(z, delta, labels) for host
 * buffers: z (n, D) row-major, delta (n) in [0, 1] (1 = one-step sample),
 * labels (n) int32 in [0, num_classes] (num_classes = the null class; NULL
 * when the student has no classes).  The caller owns every buffer; out must
 * not alias z.  Sizes the activation arena itself, growing it with larger
 * calls: passes of up to 1024 rows on the CPU, up to 16,384 on a GPU (arena
 * under 1 GiB; where a larger arena cannot be had, the passes stay smaller).
 * A distiller using this student sized the arena for its batch: on the CPU
 * the passes keep that size, on a GPU they grow, never below the batch.
 * Errors:
 * FMD_ERR_INVALID_ARG (NULL buffer, delta or label out of range - the
 * message names the index), FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_student_forward(fmd_student *student, const float *z, const float *delta,
                                       const int32_t *labels, int64_t n, float *out);
/* Numbers per sample D, number of classes (0: unconditional), number of
 * trainable parameters.  NULL gives 0. */
FMD_API int64_t fmd_student_dim(const fmd_student *student);
FMD_API int fmd_student_num_classes(const fmd_student *student);
FMD_API int64_t fmd_student_num_params(const fmd_student *student);
/* How the student was made, as the distiller records it (kept by
 * fmd_student_save as metadata "made.KEY"; read from student files and
 * distiller checkpoints by fmd_student_load): "teacher" (the teacher's
 * identity), "distill_steps", "guidance", "guidance_lo", "guidance_hi" (the
 * classifier-free guidance the distillation used: evaluate against the
 * teacher with that guidance) and every other stored distiller option
 * ("target", "batch", "lr", ...), as text.  NULL when not recorded (a
 * student created in memory, or saved by libfmd 0.1) or for NULL
 * arguments.  Owned by the student, valid until it is destroyed or the
 * distiller records again. */
FMD_API const char *fmd_student_made(const fmd_student *student, const char *key);
/* Release a student.  NULL-safe.  Must not be used by a live distiller. */
FMD_API void fmd_student_destroy(fmd_student *student);

/* Training statistics of the last step (fmd_distiller_stats and the
 * progress callback).  Set struct_size = sizeof(fmd_distill_stats) before
 * calling fmd_distiller_stats; fields beyond struct_size are not written. */
typedef struct fmd_distill_stats {
    size_t struct_size;
    int64_t step;          /* steps completed                                     */
    double loss_pred;      /* mean w*|Delta_G|^2 over prediction rows             */
    double loss_corr;      /* mean |v_N - v|^2 over correction rows               */
    double loss_aux;       /* flow-matching loss of the auxiliary network         */
    double delta_norm;     /* mean |Delta_G| (prediction residual)                */
    double vdiff_norm;     /* mean |v_N - v| (correction direction)               */
    double lambda;         /* correction weight (gradient balancing)              */
    double lr;             /* student learning rate of the step                   */
    double grad_norm;      /* student gradient norm before clipping               */
    double steps_per_s;    /* since the previous progress report                  */
} fmd_distill_stats;

/* Progress callback of fmd_distiller_run, called every progress_every steps
 * and after the last step.  stats is valid during the call only.  Return 0
 * to continue, non-zero to cancel (run returns FMD_ERR_CANCELLED). */
typedef int (*fmd_distill_progress_fn)(const fmd_distill_stats *stats, void *user);

/* Create a distiller into *out (caller owns; fmd_distiller_destroy).  It
 * borrows teacher and student, which must outlive it and must not be used
 * from another thread meanwhile; the student's weights are trained in place
 * and the student must live on `backend`.  The distiller owns an EMA copy of
 * the student (fmd_distiller_ema_student), the auxiliary network g (a copy
 * of a network teacher; "teacher + zero-initialised residual MLP" for
 * mixture and callback teachers, so v_N = v at the start), and the AdamW
 * state.  Everything a step needs is allocated here, and the teacher pool
 * of option data_pool is drawn here (2 teacher calls
 * per Heun step and sample).  opts may be NULL (defaults, see
 * docs/distiller.md).  Errors: FMD_ERR_INVALID_ARG (NULL argument,
 * student/teacher mismatch, unknown option or bad value - the message names
 * the key), FMD_ERR_NONFINITE (a pool sample), FMD_ERR_OOM, backend and
 * teacher errors. */
FMD_API fmd_status fmd_distiller_create(fmd_teacher *teacher, fmd_student *student,
                                        fmd_backend *backend, const fmd_options *opts,
                                        fmd_distiller **out);
/* Data of the data-based baseline (option data_based=1, docs/math.md
 * section 9): x0 (n, D) host samples and labels (n) in [0, num_classes) (NULL for an
 * unconditional teacher); copied, replacing any data before (also the
 * teacher pool that option data_pool draws at create).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_NONFINITE (a NaN/Inf sample), FMD_ERR_OOM. */
FMD_API fmd_status fmd_distiller_set_data(fmd_distiller *d, const float *x0, const int32_t *labels,
                                          int64_t n);
/* One distillation step (docs/math.md section 8).  Allocates nothing.  Errors:
 * FMD_ERR_NONFINITE when a loss, teacher velocity or gradient is NaN/Inf -
 * the message names the step and the term, and no weight, moment or step
 * counter has changed; FMD_ERR_INVALID_ARG (data_based without data);
 * backend and teacher errors.  Floating point as fmd_teacher_train:
 * subnormals flushed during the call, the caller's mode restored. */
FMD_API fmd_status fmd_distiller_step(fmd_distiller *d);
/* Run `steps` steps, calling progress (may be NULL) every progress_every
 * steps and after the last one.  With option checkpoint=PATH the state is
 * saved (atomically) every checkpoint_every steps and at the end; a failed
 * or cancelled run leaves the last checkpoint as it was.  Errors: those of
 * fmd_distiller_step and fmd_distiller_save, FMD_ERR_CANCELLED.  Floating
 * point as fmd_teacher_train (the progress callback runs in the caller's
 * mode). */
FMD_API fmd_status fmd_distiller_run(fmd_distiller *d, int64_t steps,
                                     fmd_distill_progress_fn progress, void *user);
/* Statistics of the last step into *out (see fmd_distill_stats).  Errors:
 * FMD_ERR_INVALID_ARG (NULL, struct_size too small). */
FMD_API fmd_status fmd_distiller_stats(const fmd_distiller *d, fmd_distill_stats *out);
/* Steps completed (0 for NULL). */
FMD_API int64_t fmd_distiller_steps(const fmd_distiller *d);
/* The planned length of the run (option steps): the step at which the
 * learning rate's decay ends.  0 until it is known (option steps unset and
 * no run yet); a resumed distiller has its checkpoint's.  0 for NULL. */
FMD_API int64_t fmd_distiller_planned_steps(const fmd_distiller *d);
/* The EMA student (borrowed: owned by d, valid until d is destroyed; use it
 * for sampling, fmd_student_forward or fmd_student_save).  Errors:
 * FMD_ERR_INVALID_ARG. */
FMD_API fmd_status fmd_distiller_ema_student(fmd_distiller *d, fmd_student **out);
/* Save the whole training state to path (.fmd, atomic): the EMA student
 * (loadable with fmd_student_load), the raw student, the auxiliary network,
 * both AdamW moments, the step (which is the RNG position) and the settings
 * that must match on resume.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO,
 * FMD_ERR_OOM, backend errors. */
FMD_API fmd_status fmd_distiller_save(fmd_distiller *d, const char *path);
/* Restore a state saved by fmd_distiller_save into d, which must have been
 * created with the same teacher kind, student architecture and options
 * (batch, seed, objectives are checked).  Continuing gives bit-identical
 * weights to an uninterrupted run on the same backend and thread count.
 * Every setting and tensor shape is checked before anything is read into d
 * (such errors leave d unchanged); a corrupt payload found while reading
 * leaves d's weights undefined (resume again from a good file).  Errors: FMD_ERR_IO, FMD_ERR_FORMAT,
 * FMD_ERR_VERSION, FMD_ERR_INVALID_ARG (mismatch, naming the setting). */
FMD_API fmd_status fmd_distiller_resume(fmd_distiller *d, const char *path);
/* Release a distiller (not the borrowed teacher and student).  NULL-safe. */
FMD_API void fmd_distiller_destroy(fmd_distiller *d);
/* Make d data-parallel over comm (docs/distributed.md): of the global batch
 * B (option batch) this rank computes rows [r B/N, (r+1) B/N), drawing every
 * random number by the row's global index exactly as one process does; the
 * gradients of the student and of g and the step's statistics are summed
 * over the ranks before the one clip + AdamW + EMA step, so every rank holds
 * the same weights (rank 0's are broadcast here) and sees the same
 * statistics.  Every comm_check_every steps (option comm_check_every) a
 * checksum of the weights is compared across the ranks.  Only rank 0 writes
 * checkpoints (fmd_distiller_save on another rank writes nothing and returns
 * FMD_OK); every rank resumes from the same file, on any world size that
 * divides B.  Call it on every rank, collectively, before the first step and
 * before fmd_distiller_resume; NULL or a one-rank comm is the single process.
 * d borrows comm, which must outlive it.  An error on one rank returns on
 * that rank only while the others wait in the next collective: end the job
 * with fmd_comm_abort (the fmd tool does).  Errors: FMD_ERR_INVALID_ARG (d
 * NULL, steps already taken, B not divisible by the world size - naming
 * both), FMD_ERR_OOM, transport errors (FMD_ERR_INTERNAL). */
FMD_API fmd_status fmd_distiller_set_comm(fmd_distiller *d, fmd_comm *comm);

/* Evaluation against a teacher (docs/math.md section 11).  An evaluator draws n
 * noises z (and labels row i -> i mod num_classes for a teacher with
 * classes), solves the teacher's ODE from each with adaptive Dormand-Prince
 * (rtol = atol = 1e-6, the teacher's guidance) to get the reference map
 * Phi(z), draws two further independent teacher sample sets (reference and
 * floor), and keeps them, so that many students or solvers can be scored
 * on the same noise. */
typedef struct fmd_evaluator fmd_evaluator;

typedef struct fmd_eval_result {
    size_t struct_size;       /* set to sizeof(fmd_eval_result) by the caller   */
    int64_t n;                /* samples                                        */
    double map_error;         /* E|x(z) - Phi(z)|^2 / E|Phi - mean Phi|^2       */
    double energy_distance;   /* samples vs the reference teacher sample set    */
    double energy_floor;      /* two independent teacher sample sets (n each)   */
    int modes_covered;        /* mixture teachers: modes the samples cover      */
    int modes_total;          /* modes the reference samples visit; -1 if not a
                               * mixture teacher (then modes_covered is -1)     */
    double mass_error;        /* max over modes |fraction - reference fraction| */
    double seconds;           /* wall time to produce the n samples             */
    int64_t nfe;              /* network/velocity evaluations per sample        */
} fmd_eval_result;

/* Create an evaluator into *out (caller owns; fmd_evaluator_destroy).  It
 * borrows the teacher (must outlive it).  opts (may be NULL): n (2000),
 * seed (1234), rtol (1e-6), atol (1e-6).  A mode counts as covered when it
 * receives at least 20 % of the samples the reference set puts there; only
 * modes that hold at least 0.5 % of the reference samples are counted.
 * Errors: FMD_ERR_INVALID_ARG (unknown option naming the key, bad value),
 * FMD_ERR_OOM, teacher errors. */
FMD_API fmd_status fmd_evaluator_create(fmd_teacher *teacher, const fmd_options *opts,
                                        fmd_evaluator **out);
/* Score a student's one-step samples f(z, 1, c) (1 NFE).  out->struct_size
 * must be set.  Errors: FMD_ERR_INVALID_ARG (NULL, dimension or class
 * mismatch, small struct_size), student errors. */
FMD_API fmd_status fmd_evaluator_student(fmd_evaluator *ev, fmd_student *student,
                                         fmd_eval_result *out);
/* Score the teacher's own solver on the same noise; solver_opts as
 * fmd_teacher_solve (e.g. solver=euler, steps=8; NULL = dopri5 1e-5).
 * Errors: as fmd_teacher_solve, FMD_ERR_INVALID_ARG. */
FMD_API fmd_status fmd_evaluator_teacher(fmd_evaluator *ev, const fmd_options *solver_opts,
                                         fmd_eval_result *out);
/* The n noises z (n, D) and labels (n; NULL for an unconditional teacher)
 * used by the evaluator (owned by it). */
FMD_API const float *fmd_evaluator_noise(const fmd_evaluator *ev, int64_t *n, int64_t *dim);
FMD_API const int32_t *fmd_evaluator_labels(const fmd_evaluator *ev);
/* Release.  NULL-safe. */
FMD_API void fmd_evaluator_destroy(fmd_evaluator *ev);
/* ==== END STUDENTS AND DISTILLER ==== */

/* ==== SAMPLER (fmd_sampler) ==== */
/* A sampler generates samples from a student (one network evaluation per
 * sample), from a teacher (any solver of fmd_teacher_solve), or from both
 * (a student jump to t = 1 - delta finished by the teacher's solver), and
 * runs Best-of-N noise search (docs/math.md section 12).
 *
 * Noise: sample i of a call with (seed, first_index) starts from
 * z_i = fmd_prior_noise(seed, first_index + i), the same noise that
 * fmd_teacher_sample uses (teacher and student start from the same z), so
 * sample i depends only on (seed, first_index + i): splitting a call into
 * batches of any size gives the same samples.  Teacher paths are then
 * bit-identical (rows are integrated independently); student paths agree to
 * the rounding of the backend's matrix products, whose blocking may depend
 * on the batch size (about 1e-6 relative on the CPU).
 *
 * Per-call options (the opts argument of fmd_sampler_sample and
 * fmd_sampler_best_of_n, may be NULL; a key absent from opts takes its value
 * from the options given to fmd_sampler_create, else the default below;
 * unknown keys are FMD_ERR_INVALID_ARG naming the key).  A sampler must not
 * be used from two threads at once:
 *   method    "student" (default when the sampler has a student) or
 *             "teacher" (integrate the teacher's ODE from z);
 *   delta     student jump in (0, 1] (default 1): f(z, delta) is the state
 *             at t = 1 - delta; delta = 1 is the one-step sample;
 *   finish    0/1 (default 0): after the student jump, integrate the
 *             teacher from t = 1 - delta to 0 with the solver below (needs a
 *             teacher; fixed-step solvers spread their steps over
 *             [0, 1 - delta]);
 *   solver, steps, shift, rtol, atol
 *             the teacher's solver (fmd_teacher_solve; default dopri5);
 *   cfg, cfg_lo, cfg_hi
 *             classifier-free guidance of every teacher evaluation of the
 *             call (scale, interval; defaults: the teacher's setting, which
 *             is restored afterwards).  A student's guidance is fixed when
 *             it is distilled, so cfg on a pure student call is
 *             FMD_ERR_INVALID_ARG;
 *   refine    0/1 (best-of-N only, default 0): integrate the teacher's ODE
 *             from the best noise (needs a teacher).
 * A student is a flow map from the prior only (it starts at t = 1), so
 * "k-step student sampling" is not offered: finish=1 with a small delta is
 * the cheap hybrid instead. */
typedef struct fmd_sampler fmd_sampler;

/* Create a sampler into *out (caller owns; fmd_sampler_destroy).  student
 * and teacher are borrowed (they must outlive the sampler and must not be
 * used from another thread during its calls); either may be NULL but not
 * both.  With both, their dimensions and class counts must agree.  opts
 * (may be NULL) sets the default per-call options (copied).  Errors:
 * FMD_ERR_INVALID_ARG (NULL out, no model, mismatch, unknown option naming
 * the key), FMD_ERR_OOM. */
FMD_API fmd_status fmd_sampler_create(fmd_student *student, fmd_teacher *teacher,
                                      const fmd_options *opts, fmd_sampler **out);
/* Release a sampler (not the borrowed student and teacher).  NULL-safe. */
FMD_API void fmd_sampler_destroy(fmd_sampler *sampler);
/* Numbers per sample and number of classes (0: unconditional; 0 for NULL). */
FMD_API int64_t fmd_sampler_dim(const fmd_sampler *sampler);
FMD_API int fmd_sampler_num_classes(const fmd_sampler *sampler);

/* Generate n samples into out (n, dim), row i from the noise of
 * (seed, first_index + i).  labels (n) int32 in [0, num_classes]
 * (num_classes = the null class) or NULL (the null class for every row).
 * out_len is the number of floats out holds; it must be >= n * dim.  opts:
 * the per-call options above (NULL = the sampler's defaults).  nfe_out (may
 * be NULL) receives the network/velocity evaluations per sample (for
 * dopri5 the largest per-row count).  The caller owns every buffer.
 * Errors: FMD_ERR_INVALID_ARG (NULL sampler/out, n < 0, out_len too small,
 * label out of range naming the row, unknown option or bad value naming
 * the key, method without its model), FMD_ERR_NONFINITE, FMD_ERR_OOM,
 * student, teacher and backend errors.  On error out is unspecified. */
FMD_API fmd_status fmd_sampler_sample(fmd_sampler *sampler, const int32_t *labels, int64_t n,
                                      uint64_t seed, uint64_t first_index, const fmd_options *opts,
                                      float *out, int64_t out_len, int64_t *nfe_out);

/* Reward of one candidate sample x (dim numbers, label its class or the
 * null class); higher is better.  x is owned by the library and valid
 * during the call only.  A NaN reward is FMD_ERR_NONFINITE. */
typedef double (*fmd_reward_fn)(const float *x, int64_t dim, int32_t label, void *user);
/* Batched reward: write scores (n) for x (n, dim), labels (n).  Return 0 on
 * success; non-zero cancels the search (FMD_ERR_CANCELLED). */
typedef int (*fmd_reward_batch_fn)(double *scores, const float *x, const int32_t *labels,
                                   int64_t n, int64_t dim, void *user);

/* Best-of-N noise search (docs/math.md section 12).  For each of the n samples,
 * `candidates` noises are drawn: candidate 0 is the sample's ordinary noise
 * (so candidates = 1 equals fmd_sampler_sample) and candidate j >= 1 is a
 * Philox draw of (seed, first_index + i, j), so the search for sample i
 * depends only on (seed, first_index + i, j) and a larger N searches a
 * superset.  Every candidate is generated by the call's method (a student
 * one-step sample costs 1 NFE) and scored by exactly one of reward (called
 * per candidate) or reward_batch (called on blocks of candidates); the
 * highest score wins (ties: the lowest j).  out (n, dim) receives the
 * winning samples, or with refine=1 the teacher's ODE solution from the
 * winning noise.  noise_out (n, dim) or NULL receives the winning noises,
 * scores_out (n) or NULL their scores (of the unrefined candidate).
 * out_len / noise_len are the floats out / noise_out hold (>= n * dim;
 * noise_len is ignored when noise_out is NULL).  candidates in
 * [1, 65536].  nfe_out as fmd_sampler_sample, summed over the search and
 * the refinement.  Errors: those of fmd_sampler_sample, FMD_ERR_INVALID_ARG
 * (both or neither reward given, bad candidates, refine without teacher),
 * FMD_ERR_NONFINITE (NaN reward, naming sample and candidate),
 * FMD_ERR_CANCELLED. */
FMD_API fmd_status fmd_sampler_best_of_n(fmd_sampler *sampler, const int32_t *labels, int64_t n,
                                         uint64_t seed, uint64_t first_index, int64_t candidates,
                                         fmd_reward_fn reward, fmd_reward_batch_fn reward_batch,
                                         void *user, const fmd_options *opts, float *out,
                                         int64_t out_len, float *noise_out, int64_t noise_len,
                                         double *scores_out, int64_t *nfe_out);
/* ==== END SAMPLER ==== */

/* ==== PICTURES AND FILES (png, npy, plots, file info) ==== */
/* Small self-contained writers and readers the `fmd` tool uses, public so
 * that hosts can make the same pictures.  PNGs are written with zlib's
 * deflate and crc32 (no libpng).  Every path is written atomically where
 * stated; every function returns FMD_ERR_IO naming the path when the file
 * cannot be opened or written. */

/* Write an 8-bit PNG: pixels (height, width, channels) row-major, channels
 * 1 (gray), 3 (RGB) or 4 (RGBA); width and height in [1, 65536].  Errors:
 * FMD_ERR_INVALID_ARG (NULL, bad size or channels), FMD_ERR_IO, FMD_ERR_OOM. */
FMD_API fmd_status fmd_write_png(const char *path, const uint8_t *pixels, int width, int height,
                                 int channels);

/* Write a .npy file (format 1.0, C order, little-endian): dtype "f4"
 * (data is float) or "i4" (data is int32_t), shape[0..ndim-1], ndim in
 * [1, 8], every dimension >= 0.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO. */
FMD_API fmd_status fmd_npy_save(const char *path, const char *dtype, int ndim,
                                const int64_t *shape, const void *data);
/* Read a .npy file (format 1.x or 2.x, C order, '<f4' or '<i4'; the header
 * dictionary is parsed strictly).  *data_out is allocated through the
 * allocator hooks (fmd_set_allocator) and released with fmd_npy_free; *dtype_out
 * receives "f4" or "i4" (static), shape_out[0..*ndim_out-1] the shape
 * (shape_cap entries available, at most 8 needed).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_FORMAT (bad magic, header, dtype,
 * Fortran order, size that does not match the file; the message names the
 * offset or field), FMD_ERR_UNSUPPORTED (another dtype, big-endian),
 * FMD_ERR_OOM. */
FMD_API fmd_status fmd_npy_load(const char *path, const char **dtype_out, int *ndim_out,
                                int64_t *shape_out, int shape_cap, void **data_out);
/* Release data returned by fmd_npy_load.  NULL-safe. */
FMD_API void fmd_npy_free(void *data);

/* Density panels of 2-D point sets side by side, one PNG: panel p shows a
 * square-root scaled 2-D histogram of points[p] (counts[p] rows of (x, y) floats),
 * titled titles[p] (ASCII; may be NULL) in a built-in bitmap font.  bounds
 * (xmin, xmax, ymin, ymax) or NULL (the range of all points, padded, made
 * square) is shared by the panels.  panel_px in [32, 2048] is each panel's
 * side.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_OOM. */
FMD_API fmd_status fmd_plot_density_panels(const char *path, int panels,
                                           const float *const *points, const int64_t *counts,
                                           const char *const *titles, const double *bounds,
                                           int panel_px);
/* Line plot of nseries series ys[s] (n values each, against x (n) or the
 * index when x is NULL) with a title, a legend of names[s] (may be NULL),
 * axis ranges written in the corners, and log10 y when log_y (non-positive
 * values are skipped).  Non-finite values are skipped.  width in
 * [160, 4096], height in [120, 4096].  Errors: FMD_ERR_INVALID_ARG,
 * FMD_ERR_IO, FMD_ERR_OOM. */
FMD_API fmd_status fmd_plot_curves(const char *path, const double *x, const double *const *ys,
                                   const char *const *names, int nseries, int64_t n,
                                   const char *title, int log_y, int width, int height);
/* A grid of images: x (n, channels, height, width) floats (the SiT layout),
 * mapped linearly from [lo, hi] to 0..255 and clipped; channels 1 or 3; cols
 * images per row (0: about sqrt(n)); a 2-pixel gap between images.
 * Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_OOM. */
FMD_API fmd_status fmd_plot_image_grid(const char *path, const float *x, int64_t n, int channels,
                                       int height, int width, int cols, float lo, float hi);

/* A human-readable (json = 0) or JSON (json = 1) description of a .fmd
 * file: format version, metadata, every tensor's name, dtype and shape, the
 * parameter count, and the result of checking every tensor's CRC32.  The
 * text is written into buf (buf_len bytes, NUL-terminated, truncated when
 * short); *needed_out (may be NULL) receives the full length + 1.  A file
 * that opens but fails a CRC check still gives its description, with the
 * failure in it, and returns FMD_ERR_FORMAT.  Errors: FMD_ERR_INVALID_ARG,
 * FMD_ERR_IO, FMD_ERR_FORMAT, FMD_ERR_VERSION, FMD_ERR_OOM. */
FMD_API fmd_status fmd_file_describe(const char *path, int json, char *buf, size_t buf_len,
                                     size_t *needed_out);
/* ==== END PICTURES AND FILES ==== */

#ifdef __cplusplus
}
#endif
#endif /* FMD_H */
