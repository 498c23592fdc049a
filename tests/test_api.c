/* test_api.c - the foundation's public API: versions, status strings,
 * last-error messages, options, backend registry errors, allocator hooks
 * with an out-of-memory sweep (fail the N-th allocation: every N must give
 * FMD_ERR_OOM and leak nothing). */
#include <stdlib.h>
#include <string.h>
#include "fmd.h"
#include "testutil.h"


static int g_logs = 0;
static void on_log(int level, const char *msg, void *user) { (void)level; (void)msg; (*(int *)user)++; }

/* A workload touching every allocating path of the foundation. */
static fmd_status workload(void)
{
    fmd_options *o = NULL;
    fmd_status st = fmd_options_create(&o);
    if (st) return st;
    for (int i = 0; i < 40 && st == FMD_OK; i++) {
        char k[32];
        snprintf(k, sizeof k, "key%d", i);
        st = (i % 3 == 0) ? fmd_options_set_str(o, k, "value") : fmd_options_set_f64(o, k, i);
    }
    if (st == FMD_OK) st = fmd_options_parse(o, "lr=0.001");
    fmd_options_destroy(o);
    if (st) return st;
    fmd_backend *be = NULL;
    st = fmd_backend_open("cpu", &be);
    if (st == FMD_OK) st = fmd_backend_selfcheck(be);
    fmd_backend_destroy(be);
    return st;
}

int main(void)
{
    /* versions */
    CHECK(strcmp(fmd_version(), FMD_VERSION_STRING) == 0);
    CHECK(fmd_version_hex() == FMD_VERSION_HEX);
    /* status strings generated from one list */
    CHECK(strcmp(fmd_status_string(FMD_OK), "ok") == 0);
    CHECK(strcmp(fmd_status_name(FMD_ERR_NONFINITE), "FMD_ERR_NONFINITE") == 0);
    CHECK(strcmp(fmd_status_string((fmd_status)999), "unknown status") == 0);
    for (int s = 0; s < FMD_STATUS_COUNT_; s++) CHECK(strcmp(fmd_status_name((fmd_status)s), "FMD_UNKNOWN") != 0);

    /* backend registry errors */
    fmd_backend *be = NULL;
    CHECK_STATUS(fmd_backend_open("gpu", &be), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "'gpu'") != NULL);
    CHECK(fmd_last_status() == FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_backend_open("cpu", NULL), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "out") != NULL);
    setenv("FMD_BACKEND_PATH", "/nonexistent/dir/libfmd-cuda.so", 1);
    CHECK_STATUS(fmd_backend_open("cuda", &be), FMD_ERR_BACKEND_UNAVAILABLE);
    CHECK(strstr(fmd_last_error(), "/nonexistent/dir/libfmd-cuda.so") != NULL);
    CHECK(fmd_backend_available("cuda") == 0);
    CHECK_OK(fmd_backend_open("auto", &be)); /* falls back to the CPU */
    CHECK(be && strcmp(fmd_backend_name(be), "cpu") == 0);
    fmd_backend_destroy(be);
    unsetenv("FMD_BACKEND_PATH");
    setenv("FMD_BACKEND", "tpu", 1);
    CHECK_STATUS(fmd_backend_open(NULL, &be), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "FMD_BACKEND") != NULL);
    setenv("FMD_BACKEND", "cpu", 1);
    setenv("FMD_NUM_THREADS", "0", 1);
    CHECK_STATUS(fmd_backend_open(NULL, &be), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "FMD_NUM_THREADS") != NULL);
    setenv("FMD_NUM_THREADS", "1", 1);
    setenv("FMD_CPU_GEMM", "mkl", 1);
    CHECK_STATUS(fmd_backend_open(NULL, &be), FMD_ERR_INVALID_ARG);
    setenv("FMD_CPU_GEMM", "openblas", 1);
    be = NULL;
    CHECK_OK(fmd_backend_open(NULL, &be));
    CHECK(fmd_backend_threads(be) == 1);
    CHECK(strstr(fmd_backend_device(be), "openblas") != NULL);
    fmd_backend_destroy(be);
    unsetenv("FMD_BACKEND"); unsetenv("FMD_NUM_THREADS"); unsetenv("FMD_CPU_GEMM");
    fmd_backend_destroy(NULL);
    CHECK(strcmp(fmd_backend_name(NULL), "") == 0);
    CHECK(fmd_backend_count() == 2 && strcmp(fmd_backend_name_at(0), "cpu") == 0 && fmd_backend_name_at(2) == NULL);
    CHECK(fmd_backend_available("cpu") == 1);
    CHECK_STATUS(fmd_backend_selfcheck(NULL), FMD_ERR_INVALID_ARG);

    /* options */
    fmd_options *o = NULL;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_f64(o, "lr", 3e-4));
    CHECK_OK(fmd_options_set_i64(o, "batch", 512));
    CHECK_OK(fmd_options_set_str(o, "target", "teacher-step"));
    CHECK_OK(fmd_options_parse(o, "steps=1000"));
    CHECK_OK(fmd_options_parse(o, "alpha=0.3"));
    CHECK_OK(fmd_options_parse(o, "delta=uniform"));
    CHECK_STATUS(fmd_options_parse(o, "novalue"), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_options_set_f64(o, "x", 0.0 / 0.0), FMD_ERR_NONFINITE);
    CHECK_STATUS(fmd_options_set_f64(o, "", 1.0), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_options_set_str(o, "k", NULL), FMD_ERR_INVALID_ARG);
    char longkey[100];
    memset(longkey, 'k', 99); longkey[99] = 0;
    CHECK_STATUS(fmd_options_set_i64(o, longkey, 1), FMD_ERR_INVALID_ARG);
    double d; int64_t i; const char *s;
    CHECK_OK(fmd_options_get_f64(o, "lr", &d)); CHECK(d == 3e-4);
    CHECK_OK(fmd_options_get_f64(o, "batch", &d)); CHECK(d == 512.0);
    CHECK_OK(fmd_options_get_i64(o, "steps", &i)); CHECK(i == 1000);
    CHECK_OK(fmd_options_get_f64(o, "alpha", &d)); CHECK(d == 0.3);
    CHECK_OK(fmd_options_get_str(o, "delta", &s)); CHECK(strcmp(s, "uniform") == 0);
    CHECK_STATUS(fmd_options_get_i64(o, "lr", &i), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_options_get_f64(o, "missing", &d), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "missing") != NULL);
    CHECK(fmd_options_count(o) == 6);
    CHECK(strcmp(fmd_options_key(o, 0), "lr") == 0 && fmd_options_key(o, 6) == NULL);
    CHECK_OK(fmd_options_set_i64(o, "lr", 1)); /* replace with another type */
    CHECK(fmd_options_count(o) == 6);
    fmd_options_destroy(o);
    fmd_options_destroy(NULL);
    fmd_clear_error();
    CHECK(fmd_last_error()[0] == 0 && fmd_last_status() == FMD_OK);

    /* log callback */
    fmd_set_log_callback(on_log, &g_logs, FMD_LOG_DEBUG);
    fmd_backend_open("nope", &be);
    CHECK(g_logs > 0);
    fmd_set_log_callback(NULL, NULL, 0);

    /* allocator hooks: partial set rejected; counting shows no leak */
    CHECK_STATUS(fmd_set_allocator(tu_malloc, NULL, tu_free, NULL), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL));
    tu_alloc.fail_at = -1;
    CHECK_OK(workload());
    CHECK_MSG(tu_alloc.live == 0, "%ld blocks leaked by the workload", tu_alloc.live);
    /* OOM sweep: fail the N-th allocation for every N until the workload passes */
    int n_oom = 0, n;
    for (n = 0; n < 100000; n++) {
        tu_alloc.calls = 0;
        tu_alloc.fail_at = n;
        tu_alloc.live = 0;
        fmd_status st = workload();
        CHECK_MSG(st == FMD_OK || st == FMD_ERR_OOM, "alloc #%d failed gave %s", n, fmd_status_name(st));
        CHECK_MSG(tu_alloc.live == 0, "alloc #%d failed: %ld blocks leaked", n, tu_alloc.live);
        if (st == FMD_OK) break;
        n_oom++;
    }
    printf("OOM sweep: %d failure points, all returned FMD_ERR_OOM without leaks\n", n_oom);
    CHECK(n_oom > 10);
    tu_alloc.fail_at = -1;
    CHECK_OK(fmd_set_allocator(NULL, NULL, NULL, NULL));
    return tu_finish("test_api");
}
