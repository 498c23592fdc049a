/* alloc.c - host allocations through the hooks of fmd_set_allocator, so that
 * an embedded host can supply its own heap and tests can fail the N-th
 * allocation (zlib's infcover, libuv's loop_init_oom). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "util.h"

static void *std_malloc(size_t n, void *u) { (void)u; return malloc(n); }
static void *std_realloc(void *p, size_t n, void *u) { (void)u; return realloc(p, n); }
static void std_free(void *p, void *u) { (void)u; free(p); }

static fmd_malloc_fn g_malloc = std_malloc;
static fmd_realloc_fn g_realloc = std_realloc;
static fmd_free_fn g_free = std_free;
static void *g_user = NULL;

fmd_status fmd_set_allocator(fmd_malloc_fn m, fmd_realloc_fn r, fmd_free_fn f, void *user)
{
    if (!m && !r && !f) {
        g_malloc = std_malloc; g_realloc = std_realloc; g_free = std_free; g_user = NULL;
        return FMD_OK;
    }
    FMD_CHECK_ARG(m && r && f, "fmd_set_allocator: malloc_fn, realloc_fn and free_fn must be "
                               "all set or all NULL");
    g_malloc = m; g_realloc = r; g_free = f; g_user = user;
    return FMD_OK;
}

void *fmd_malloc(size_t n) { return g_malloc(n ? n : 1, g_user); }
void *fmd_realloc(void *p, size_t n) { return g_realloc(p, n ? n : 1, g_user); }
void fmd_free(void *p) { if (p) g_free(p, g_user); }

void *fmd_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = fmd_malloc(count * size);
    if (p && count && size) memset(p, 0, count * size);
    return p;
}

void *fmd_xcalloc(size_t count, size_t size, const char *what)
{
    void *p = fmd_calloc(count, size);
    if (!p) fmd_seterr(FMD_ERR_OOM, "out of memory allocating %s (%zu x %zu bytes)", what, count, size);
    return p;
}

char *fmd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fmd_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

double fmd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
