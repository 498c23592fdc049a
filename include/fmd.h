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
#define FMD_VERSION_MINOR 1
#define FMD_VERSION_PATCH 0
#define FMD_VERSION_HEX ((FMD_VERSION_MAJOR << 16) | (FMD_VERSION_MINOR << 8) | FMD_VERSION_PATCH)
#define FMD_VERSION_STRING "0.1.0"

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

/* ------------------------------------------------------------------------
 * Backends: compute devices chosen at run time.
 *   "cpu"  - always present (oneDNN / OpenBLAS GEMM, OpenMP loops);
 *            FMD_NUM_THREADS sets its threads, FMD_CPU_GEMM=onednn|openblas|auto
 *            its GEMM provider.
 *   "cuda" - the plugin libfmd-cuda.so, looked up in FMD_BACKEND_PATH (a
 *            directory or a file), then next to libfmd, then by the loader.
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

/* ==== TEACHERS (fmd_teacher) ==== */
typedef struct fmd_teacher fmd_teacher;
/* ==== END TEACHERS ==== */

/* ==== STUDENTS AND DISTILLER (fmd_student, fmd_distiller) ==== */
typedef struct fmd_student fmd_student;
typedef struct fmd_distiller fmd_distiller;
/* ==== END STUDENTS AND DISTILLER ==== */

/* ==== SAMPLER (fmd_sampler) ==== */
typedef struct fmd_sampler fmd_sampler;
/* ==== END SAMPLER ==== */

#ifdef __cplusplus
}
#endif
#endif /* FMD_H */
