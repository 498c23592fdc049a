/* testutil.h - a tiny test harness: CHECK macros that count failures, random
 * fills, and normalised-error comparison (ggml's test-backend-ops NMSE). */
#ifndef FMD_TESTUTIL_H
#define FMD_TESTUTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "fmd.h"

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        tu_checks++;                                                                 \
        if (!(cond)) {                                                               \
            tu_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)
#define CHECK_MSG(cond, ...)                                                          \
    do {                                                                             \
        tu_checks++;                                                                 \
        if (!(cond)) {                                                               \
            tu_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)
#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        fmd_status st_ = (expr);                                                         \
        tu_checks++;                                                                     \
        if (st_ != FMD_OK) {                                                             \
            tu_failures++;                                                               \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr,     \
                    fmd_status_name(st_), fmd_last_error());                             \
        }                                                                                \
    } while (0)
#define CHECK_STATUS(expr, want)                                                           \
    do {                                                                                   \
        fmd_status st_ = (expr);                                                           \
        tu_checks++;                                                                       \
        if (st_ != (want)) {                                                               \
            tu_failures++;                                                                 \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                    #expr, fmd_status_name(st_), #want, fmd_last_error());                 \
        }                                                                                  \
    } while (0)

/* Score the EMA student of d and the teacher's k-step Euler sampler on n
 * evaluation samples of T (fmd_evaluator, seed default) into *student and
 * *euler; each call is a CHECK_OK. */
void tu_eval_vs_euler(fmd_teacher *T, fmd_distiller *d, int64_t n, int k,
                      fmd_eval_result *student, fmd_eval_result *euler);

/* Print the summary and return the process exit code (0 pass, 1 fail). */
int tu_finish(const char *name);
/* Print "SKIPPED: why" and return 77 (ctest's skip code). */
int tu_skip(const char *name, const char *why);

/* Open the backend a test runs on: name, or when NULL FMD_TEST_BACKEND
 * (default "cpu").  Returns 0 on success, 77 (skipped) when a non-CPU
 * backend is unavailable (no GPU or no plugin), 1 on any other failure; the
 * reason is printed. */
int tu_open_backend(const char *test, const char *name, fmd_backend **out);

/* Deterministic test randomness (xorshift; independent of the library). */
void tu_seed(uint64_t s);
double tu_uniform(void);                 /* [0, 1) */
double tu_normal(void);
void tu_fill(float *x, int64_t n, float lo, float hi);
void tu_fill_normal(float *x, int64_t n, float scale);

/* A counting host allocator for fmd_set_allocator (OOM sweeps, leak and
 * no-allocation checks): tu_alloc.calls counts malloc/realloc calls,
 * tu_alloc.live the blocks alive.  With fail_at >= 0 the call numbered
 * fail_at (0-based, counted from the last reset of calls) fails, and with
 * sticky every later call fails too.  Install with
 * fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL). */
typedef struct {
    long fail_at;
    int sticky;
    long calls;
    long live;
} tu_alloc_state;
extern tu_alloc_state tu_alloc;
void *tu_malloc(size_t n, void *user);
void *tu_realloc(void *p, size_t n, void *user);
void tu_free(void *p, void *user);

/* A private temporary folder for a test's files: tu_tmp_dir makes
 * /tmp/fmd_NAME_XXXXXX (0, or -1 when it cannot), tu_tmp_path(file) is a path
 * in it (one of four rotating buffers, so a call may take two or three),
 * tu_tmp_remove deletes the folder with the files in it. */
int tu_tmp_dir(const char *name);
const char *tu_tmp_path(const char *file);
void tu_tmp_remove(void);

/* The allocation-failure sweep (with tu_malloc installed): for N = 0, 1, ...
 * make allocation N (and, with tu_alloc.sticky, every later one) fail and run
 * fn, until it succeeds.  Every failing run must return FMD_ERR_OOM and leave
 * no block alive; checked, printed under name.  Returns the number of failure
 * points swept. */
int64_t tu_oom_sweep(const char *name, fmd_status (*fn)(void));

/* Normalised mean squared error sum (a-b)^2 / sum b^2 (b the reference). */
double tu_nmse(const float *a, const float *b, int64_t n);
double tu_max_abs_diff(const float *a, const float *b, int64_t n);
/* max |a-b| / (max |b| + tiny) */
double tu_rel_err(const float *a, const float *b, int64_t n);
#endif
