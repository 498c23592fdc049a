/* test_fpmode.c - the scoped flush-to-zero / denormals-are-zero mode of
 * training calls (lib/util/fpmode.c):
 *   - enter / leave set and restore the mode on the calling thread and on
 *     every OpenMP worker, nested scopes count, exception flags raised
 *     inside stay raised, a caller that already flushes keeps flushing,
 *     FMD_FLUSH_DENORMALS=0 turns it off;
 *   - inside the scope oneDNN's GEMM, split over the workers, treats
 *     subnormal operands as zero (the point of it), outside it does not;
 *   - pause / resume give a callback the caller's mode, and an API call made
 *     from the callback leaves it so;
 *   - fmd_distiller_run, fmd_distiller_step and fmd_teacher_train: the
 *     progress callbacks and a callback teacher's function see the caller's
 *     mode on the calling thread while the workers flush (so the scope is
 *     on), and every thread has its own mode back when the call returns.
 * Off x86 the scope does nothing and the test reports SKIPPED. */
#include <float.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "backend.h"
#include "util/fpmode.h"

#define MAXT 64
#define FTZ_DAZ 0x8040u
/* MXCSR without its sticky exception flags (bits 0-5): what a mode is */
#define CTL(v) ((v) & ~0x3fu)

static int nthreads;

/* Raw mode of each thread of a team of nthreads (thread 0 = caller). */
static void team_modes(unsigned *m)
{
    for (int i = 0; i < MAXT; i++) m[i] = 0;
#pragma omp parallel num_threads(nthreads)
    {
        int id = omp_get_thread_num();
        if (id < MAXT) m[id] = CTL(fmd_fpmode_get_raw());
    }
}

/* 1 when every worker (threads 1..n-1) flushes; 1 trivially with one thread. */
static int workers_flush(void)
{
    unsigned m[MAXT];
    team_modes(m);
    for (int i = 1; i < nthreads && i < MAXT; i++)
        if ((m[i] & FTZ_DAZ) != FTZ_DAZ) return 0;
    return 1;
}

static int same_modes(const unsigned *a, const unsigned *b)
{
    for (int i = 0; i < nthreads && i < MAXT; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* C = A B with A all subnormal (1e-39) and B ones, 256^3 through the CPU
 * backend (oneDNN, split over the threads); returns how many C entries are
 * nonzero. */
static int64_t gemm_nonzero(fmd_backend *be)
{
    enum { N = 256 };
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N),
          *c = malloc(sizeof(float) * N * N);
    int64_t nz = -1;
    if (a && b && c) {
        for (int i = 0; i < N * N; i++) {
            a[i] = 1e-39f;
            b[i] = 1.0f;
            c[i] = -1.0f;
        }
        be->ops->gemm(be, 0, 0, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        nz = 0;
        for (int i = 0; i < N * N; i++) nz += c[i] != 0.0f;
    }
    free(a);
    free(b);
    free(c);
    return nz;
}

static void test_scope(fmd_backend *be)
{
    unsigned before[MAXT], after[MAXT];
    unsigned caller = CTL(fmd_fpmode_get_raw());
    team_modes(before);
    CHECK(fmd_fpmode_flushing() == 0);

    fmd_fpmode_enter(nthreads);
    CHECK_MSG(fmd_fpmode_flushing() == 1, "enter: the calling thread does not flush");
    CHECK_MSG(workers_flush(), "enter: a worker does not flush");
    CHECK_MSG(gemm_nonzero(be) == 0, "inside the scope the GEMM saw subnormal operands");
    fmd_fpmode_enter(nthreads); /* nested */
    fmd_fpmode_leave(nthreads);
    CHECK_MSG(fmd_fpmode_flushing() == 1 && workers_flush(), "an inner leave ended the outer scope");
    fmd_fpmode_leave(nthreads);
    team_modes(after);
    CHECK_MSG(CTL(fmd_fpmode_get_raw()) == caller, "leave: caller's mode %#x, now %#x", caller,
              CTL(fmd_fpmode_get_raw()));
    CHECK_MSG(same_modes(before, after), "leave: a worker's mode was not restored");
    CHECK_MSG(gemm_nonzero(be) == 256 * 256, "outside the scope the GEMM flushed subnormals");

    /* pause / resume around a callback, with an API-style scope inside it */
    fmd_fpmode_enter(nthreads);
    fmd_fpmode_pause_state ps;
    fmd_fpmode_pause(&ps);
    CHECK_MSG(CTL(fmd_fpmode_get_raw()) == caller, "pause: the callback does not see the caller's mode");
    fmd_fpmode_enter(nthreads);
    CHECK(fmd_fpmode_flushing() == 1);
    fmd_fpmode_leave(nthreads);
    CHECK_MSG(CTL(fmd_fpmode_get_raw()) == caller, "a scope inside the callback left the mode changed");
    CHECK_MSG(workers_flush(), "the scope inside the callback ended the workers' outer scope");
    fmd_fpmode_resume(&ps);
    CHECK_MSG(fmd_fpmode_flushing() == 1, "resume: not flushing");
    fmd_fpmode_leave(nthreads);
    team_modes(after);
    CHECK(CTL(fmd_fpmode_get_raw()) == caller);
    CHECK_MSG(same_modes(before, after), "pause/resume: a worker's mode was not restored");

    /* sticky exception flags raised inside a scope stay raised */
    fmd_fpmode_set_raw(CTL(fmd_fpmode_get_raw()));
    fmd_fpmode_enter(nthreads);
    volatile float three = 3.0f, third = 1.0f / three; /* inexact: PE, bit 5 */
    (void)third;
    fmd_fpmode_leave(nthreads);
    CHECK_MSG(fmd_fpmode_get_raw() & 0x20u, "leave cleared the inexact flag raised inside the scope");

    /* a caller that flushes on its own keeps flushing */
    fmd_fpmode_set_raw(caller | FTZ_DAZ);
    fmd_fpmode_enter(nthreads);
    fmd_fpmode_leave(nthreads);
    CHECK_MSG(CTL(fmd_fpmode_get_raw()) == (caller | FTZ_DAZ), "a flushing caller's mode was cleared");
    fmd_fpmode_set_raw(caller);

    /* switched off by the environment */
    setenv("FMD_FLUSH_DENORMALS", "0", 1);
    fmd_fpmode_enter(nthreads);
    CHECK_MSG(fmd_fpmode_flushing() == 0, "FMD_FLUSH_DENORMALS=0: still flushing");
    CHECK_MSG(gemm_nonzero(be) == 256 * 256, "FMD_FLUSH_DENORMALS=0: the GEMM flushed");
    fmd_fpmode_leave(nthreads);
    unsetenv("FMD_FLUSH_DENORMALS");
    CHECK(CTL(fmd_fpmode_get_raw()) == caller);
}

/* ---- the API calls ---------------------------------------------------------- */

typedef struct {
    unsigned caller;
    int calls, bad_caller, workers_off;
} probe;

static void look(probe *p)
{
    p->calls++;
    if (CTL(fmd_fpmode_get_raw()) != p->caller) p->bad_caller++;
    if (!workers_flush()) p->workers_off++;
}

static int on_distill(const fmd_distill_stats *s, void *user)
{
    (void)s;
    look(user);
    return 0;
}

static int on_train(const fmd_train_stats *s, void *user)
{
    (void)s;
    look(user);
    return 0;
}

static probe vel_probe;
static fmd_teacher *ring;

/* ring8's velocity through a callback teacher, probing the mode. */
static int vel_fn(void *user, float *v, const float *x, const float *t, const int32_t *labels,
                  int64_t b, int64_t dim)
{
    (void)user;
    (void)dim;
    look(&vel_probe);
    return fmd_teacher_velocity(ring, v, x, t, labels, b) != FMD_OK;
}

static void report(const char *what, const probe *p)
{
    CHECK_MSG(p->calls > 0, "%s: the callback never ran", what);
    CHECK_MSG(p->bad_caller == 0, "%s: %d of %d callbacks ran in a mode other than the caller's", what,
              p->bad_caller, p->calls);
    CHECK_MSG(p->workers_off == 0, "%s: in %d of %d callbacks a worker did not flush (scope off)",
              what, p->workers_off, p->calls);
}

static void check_restored(const char *what, unsigned caller, const unsigned *before)
{
    unsigned after[MAXT];
    team_modes(after);
    CHECK_MSG(CTL(fmd_fpmode_get_raw()) == caller, "%s: the caller's mode changed (%#x -> %#x)", what, caller,
              CTL(fmd_fpmode_get_raw()));
    CHECK_MSG(same_modes(before, after), "%s: a worker's mode was not restored", what);
}

static void test_api(fmd_backend *be)
{
    unsigned before[MAXT];
    unsigned caller = CTL(fmd_fpmode_get_raw());
    team_modes(before);
    fmd_teacher *T = NULL;
    fmd_student *s = NULL;
    fmd_distiller *d = NULL;
    fmd_options *so = NULL, *o = NULL;
    CHECK_OK(fmd_teacher_create_preset("ring8", &ring));
    CHECK_OK(fmd_teacher_create_callback(2, 0, vel_fn, NULL, &T));
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_parse(so, "width=32"));
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_parse(o, "batch=64"));
    CHECK_OK(fmd_options_parse(o, "progress_every=2"));
    if (!ring || !T || !so || !o) goto out;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    if (!s) goto out;
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    if (!d) goto out;

    vel_probe = (probe){caller, 0, 0, 0};
    CHECK_OK(fmd_distiller_step(d));
    report("fmd_distiller_step, callback teacher", &vel_probe);
    check_restored("fmd_distiller_step", caller, before);

    probe pp = {caller, 0, 0, 0};
    vel_probe = (probe){caller, 0, 0, 0};
    CHECK_OK(fmd_distiller_run(d, 4, on_distill, &pp));
    report("fmd_distiller_run, progress", &pp);
    report("fmd_distiller_run, callback teacher", &vel_probe);
    check_restored("fmd_distiller_run", caller, before);

    /* a caller that flushes gets its own mode in the callbacks too */
    fmd_fpmode_set_raw(caller | FTZ_DAZ);
    pp = (probe){caller | FTZ_DAZ, 0, 0, 0};
    CHECK_OK(fmd_distiller_run(d, 2, on_distill, &pp));
    report("fmd_distiller_run from a flushing caller", &pp);
    CHECK(CTL(fmd_fpmode_get_raw()) == (caller | FTZ_DAZ));
    fmd_fpmode_set_raw(caller);

    fmd_dataset *ds = NULL;
    fmd_options *to = NULL;
    fmd_teacher *trained = NULL;
    CHECK_OK(fmd_dataset_from_mixture(ring, 256, 1, &ds));
    CHECK_OK(fmd_options_create(&to));
    CHECK_OK(fmd_options_parse(to, "width=16"));
    CHECK_OK(fmd_options_parse(to, "steps=4"));
    CHECK_OK(fmd_options_parse(to, "batch=32"));
    CHECK_OK(fmd_options_parse(to, "progress_every=1"));
    if (ds && to) {
        pp = (probe){caller, 0, 0, 0};
        CHECK_OK(fmd_teacher_train(be, ds, to, on_train, &pp, &trained));
        report("fmd_teacher_train, progress", &pp);
        check_restored("fmd_teacher_train", caller, before);
    }
    fmd_teacher_destroy(trained);
    fmd_options_destroy(to);
    fmd_dataset_destroy(ds);
out:
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
    fmd_options_destroy(o);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
    fmd_teacher_destroy(ring);
}

int main(void)
{
    if (fmd_fpmode_flushing() < 0) return tu_skip("test_fpmode", "no MXCSR on this CPU");
    fmd_backend *be = NULL;
    CHECK_OK(fmd_backend_open("cpu", &be));
    if (!be) return tu_finish("test_fpmode");
    nthreads = omp_get_max_threads();
    if (fmd_backend_threads(be) > nthreads) nthreads = fmd_backend_threads(be);
    printf("threads: %d\n", nthreads);
    test_scope(be);
    test_api(be);
    fmd_backend_destroy(be);
    return tu_finish("test_fpmode");
}
