/* testutil.c - see testutil.h. */
#include <dirent.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"

int tu_failures = 0;
int tu_checks = 0;
static uint64_t tu_state = 0x9E3779B97F4A7C15ull;

int tu_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

int tu_skip(const char *name, const char *why)
{
    printf("%s: SKIPPED: %s\n", name, why);
    return 77;
}

int tu_open_backend(const char *test, const char *name, fmd_backend **out)
{
    if (!name) name = getenv("FMD_TEST_BACKEND");
    if (!name || !*name) name = "cpu";
    fmd_status st = fmd_backend_open(name, out);
    if (st == FMD_OK) return 0;
    if (st == FMD_ERR_BACKEND_UNAVAILABLE && strcmp(name, "cpu") != 0)
        return tu_skip(test, fmd_last_error());
    fprintf(stderr, "%s: cannot open backend '%s': %s\n", test, name, fmd_last_error());
    return 1;
}

void tu_seed(uint64_t s) { tu_state = s * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t next(void)
{
    uint64_t x = tu_state;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return tu_state = x;
}

double tu_uniform(void) { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }

double tu_normal(void)
{
    double u1 = tu_uniform(), u2 = tu_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_fill(float *x, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)tu_uniform();
}

void tu_fill_normal(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = scale * (float)tu_normal();
}

double tu_nmse(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (!(num == num)) return INFINITY;
    return den > 0 ? num / den : num;
}

double tu_max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;  /* NaN propagates */
    }
    return m;
}

double tu_rel_err(const float *a, const float *b, int64_t n)
{
    double mb = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(b[i]) > mb) mb = fabs(b[i]);
    return tu_max_abs_diff(a, b, n) / (mb + 1e-30);
}

tu_alloc_state tu_alloc = {-1, 0, 0, 0};

static int tu_alloc_fails(void)
{
    long k = tu_alloc.calls++;
    return tu_alloc.fail_at >= 0 && (tu_alloc.sticky ? k >= tu_alloc.fail_at : k == tu_alloc.fail_at);
}

void *tu_malloc(size_t n, void *user)
{
    (void)user;
    if (tu_alloc_fails()) return NULL;
    void *p = malloc(n);
    if (p) tu_alloc.live++;
    return p;
}

void *tu_realloc(void *p, size_t n, void *user)
{
    (void)user;
    if (tu_alloc_fails()) return NULL;
    void *q = realloc(p, n);
    if (q && !p) tu_alloc.live++;
    return q;
}

void tu_free(void *p, void *user)
{
    (void)user;
    if (p) {
        tu_alloc.live--;
        free(p);
    }
}

void tu_eval_vs_euler(fmd_teacher *T, fmd_distiller *d, int64_t n, int k,
                      fmd_eval_result *student, fmd_eval_result *euler)
{
    fmd_options *eo = NULL, *ek = NULL;
    fmd_evaluator *ev = NULL;
    fmd_student *ema = NULL;
    memset(student, 0, sizeof *student);
    memset(euler, 0, sizeof *euler);
    student->struct_size = euler->struct_size = sizeof *student;
    CHECK_OK(fmd_options_create(&eo));
    CHECK_OK(fmd_options_set_i64(eo, "n", n));
    CHECK_OK(fmd_options_create(&ek));
    CHECK_OK(fmd_options_set_str(ek, "solver", "euler"));
    CHECK_OK(fmd_options_set_i64(ek, "steps", k));
    CHECK_OK(fmd_evaluator_create(T, eo, &ev));
    CHECK_OK(fmd_distiller_ema_student(d, &ema));
    if (ev && ema) {
        CHECK_OK(fmd_evaluator_student(ev, ema, student));
        CHECK_OK(fmd_evaluator_teacher(ev, ek, euler));
    }
    fmd_evaluator_destroy(ev);
    fmd_options_destroy(eo);
    fmd_options_destroy(ek);
}

static char g_tmp_dir[256];

int tu_tmp_dir(const char *name)
{
    snprintf(g_tmp_dir, sizeof g_tmp_dir, "/tmp/fmd_%s_XXXXXX", name);
    return mkdtemp(g_tmp_dir) ? 0 : -1;
}

const char *tu_tmp_path(const char *file)
{
    static char b[4][512];
    static int k;
    k = (k + 1) & 3;
    snprintf(b[k], sizeof b[k], "%s/%s", g_tmp_dir, file);
    return b[k];
}

void tu_tmp_remove(void)
{
    DIR *d = g_tmp_dir[0] ? opendir(g_tmp_dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tu_tmp_path(e->d_name));
    if (d) closedir(d);
    if (g_tmp_dir[0]) rmdir(g_tmp_dir);
}

int64_t tu_oom_sweep(const char *name, fmd_status (*fn)(void))
{
    int64_t n;
    int wrong = 0, leaks = 0;
    fmd_status st = FMD_ERR_OOM;
    for (n = 0; n < 100000 && st != FMD_OK; n++) {
        tu_alloc.calls = 0;
        tu_alloc.fail_at = n;
        long live0 = tu_alloc.live;
        st = fn();
        tu_alloc.fail_at = -1;
        if (st != FMD_OK && st != FMD_ERR_OOM) {
            if (wrong++ < 3)
                fprintf(stderr, "%s: allocation %lld failed -> %s (%s)\n", name, (long long)n,
                        fmd_status_name(st), fmd_last_error());
            st = FMD_ERR_OOM;   /* keep sweeping */
        }
        if (tu_alloc.live != live0) {
            if (leaks++ < 3)
                fprintf(stderr, "%s: allocation %lld failed -> %ld blocks leaked\n", name,
                        (long long)n, tu_alloc.live - live0);
            tu_alloc.live = live0;
        }
    }
    printf("%s: %lld allocation points swept\n", name, (long long)(n - 1));
    CHECK_MSG(st == FMD_OK, "%s never succeeded (last: %s)", name, fmd_last_error());
    CHECK_MSG(wrong == 0, "%s: %d failures returned a status other than FMD_ERR_OOM", name, wrong);
    CHECK_MSG(leaks == 0, "%s: %d failure points leaked", name, leaks);
    return n - 1;
}
