/* util.h - internal helpers shared by every part of libfmd: errors, host
 * memory through the allocator hooks, logging.  Not part of the public API. */
#ifndef FMD_UTIL_H
#define FMD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "fmd.h"

#if defined(__GNUC__)
#define FMD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FMD_PRINTF(a, b)
#endif

/* Set this thread's last error and return st.  The message should name the
 * function and the bad argument: "fmd_x_create: dim must be > 0 (got -3)". */
fmd_status fmd_seterr(fmd_status st, const char *fmt, ...) FMD_PRINTF(2, 3);
/* Set status st with the current message prefixed: "prefix: <last error>". */
fmd_status fmd_err_prefix(fmd_status st, const char *prefix);
/* FMD_OK, or FMD_ERR_CANCELLED (message naming fn) when the calling
 * thread's cancel check (fmd_set_cancel_check) asks to stop. */
fmd_status fmd_cancel_poll(const char *fn);
/* Hold (on = 1) and release (on = 0) the polls of the calling thread, nested:
 * a training step polls before it starts, not half-way through. */
void fmd_cancel_hold(int on);

/* Host memory through the hooks of fmd_set_allocator.  fmd_xmalloc and
 * fmd_xcalloc set FMD_ERR_OOM as the last error on failure (naming what). */
void *fmd_malloc(size_t n);
void *fmd_calloc(size_t count, size_t size);   /* zeroed; overflow-checked */
void *fmd_realloc(void *p, size_t n);
void fmd_free(void *p);
char *fmd_strdup(const char *s);
void *fmd_xcalloc(size_t count, size_t size, const char *what);

/* Copy every key of src (may be NULL) into dst, keeping its type. */
fmd_status fmd_options_copy_into(fmd_options *dst, const fmd_options *src);

/* Log a line at level (fmd_log_level) through the host's callback. */
void fmd_log(int level, const char *fmt, ...) FMD_PRINTF(2, 3);

/* Checks at the API boundary: return FMD_ERR_INVALID_ARG with a message. */
#define FMD_CHECK_ARG(cond, ...)                                   \
    do {                                                           \
        if (!(cond)) return fmd_seterr(FMD_ERR_INVALID_ARG, __VA_ARGS__); \
    } while (0)

/* Seconds from a monotonic clock. */
double fmd_now(void);

#endif
