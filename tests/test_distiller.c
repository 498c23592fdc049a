/* test_distiller.c - the FreeFlow distiller (lib/algo/freeflow.c,
 * lib/api/distiller.c, lib/api/student.c, lib/api/evaluate.c):
 *   - the exact JVP target and the central finite-difference target agree,
 *     and the teacher-step target's residual tends to (h/delta) times the
 *     JVP residual as h -> 0 (the same fixed point);
 *   - the correction moves one-step samples the way MATH.md section 4 says
 *     (1-D sign check);
 *   - save / resume continues bit for bit;
 *   - a NaN from a callback teacher stops the run with FMD_ERR_NONFINITE,
 *     names the step and the term, and leaves the checkpoint untouched;
 *   - bad options are rejected naming the key; progress can cancel;
 *   - student save / load round trip;
 *   - distilling ring8 for a short while beats the teacher's 2-step Euler
 *     on map error and energy distance and covers every mode (CI, < 60 s). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "algo/freeflow.h"
#include "api/student_internal.h"
#include "api/teacher_internal.h"
#include "io/fmdfile.h"
#include "nn/model.h"
#include "util/philox.h"
#include "util/util.h"

static fmd_backend *be;


/* ---- ff-level helpers ------------------------------------------------------ */

typedef struct {
    fmd_teacher *T;
} vctx;

static fmd_status vel(void *ctx, float *v, const float *x, const float *t, const int32_t *labels,
                      int64_t b, const ff_guidance *g)
{
    vctx *c = ctx;
    fmd_guidance gg = {g->scale, g->t_lo, g->t_hi};
    return teacher_velocity_dev(c->T, be, v, x, t, labels, b, &gg);
}

/* An MLP (depth 3, time embedding 32) on be: a student when student = 1, with
 * num_classes classes (0: unconditional). */
static nn_model *mlp_k(int dim, int student, int width, int num_classes, uint64_t seed)
{
    nn_config c;
    memset(&c, 0, sizeof c);
    c.arch = NN_ARCH_MLP;
    c.student = student;
    c.dim = dim;
    c.num_classes = num_classes;
    c.width = width;
    c.depth = 3;
    c.temb_dim = 32;
    nn_model *m = NULL;
    fmd_status st = nn_model_create(be, &c, seed, &m);
    CHECK_OK(st);
    return m;
}

static nn_model *mlp(int dim, int student, int width, uint64_t seed)
{
    return mlp_k(dim, student, width, 0, seed);
}

/* Defaults with prediction rows only (no correction), batch and seed given. */
static ff_config pred_only_cfg(int64_t batch, uint64_t seed)
{
    ff_config c;
    ff_config_default(&c);
    c.batch = batch;
    c.use_corr = 0;
    c.seed = seed;
    return c;
}

/* JVP vs FD vs teacher-step targets on the same rows. */
static void test_targets(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    vctx vc = {T};
    nn_model *s = mlp(2, 1, 64, 3), *e = mlp(2, 1, 64, 3);
    /* random weights everywhere so that F depends on delta through both
     * embedders (the zero-initialised delta projection would hide it) */
    CHECK_OK(nn_model_randomize(s, 11, 0.2f));
    enum { B = 64 };
    static float tj[B * 2], fj[B * 2], tf[B * 2], ff[B * 2], ts[B * 2], fs[B * 2], dl[B], dl2[B];
    int64_t rows = 0, rows2 = 0;
    ff_config c = pred_only_cfg(B, 5);
    c.delta_one = 0.0;
    ff_trainer *t = NULL;
    c.target = FF_TARGET_JVP;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (t) CHECK_OK(ff_prediction_target(t, tj, fj, dl, &rows));
    ff_destroy(t);
    c.target = FF_TARGET_FD;
    c.fd_eps = 1e-3;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (t) CHECK_OK(ff_prediction_target(t, tf, ff, dl2, &rows2));
    ff_destroy(t);
    CHECK(rows == B && rows2 == B);
    CHECK(memcmp(dl, dl2, sizeof dl) == 0);
    CHECK(memcmp(fj, ff, sizeof fj) == 0);
    /* compare the residuals target - F (F is identical in both runs) */
    static float rf[B * 2], rjv[B * 2];
    double dmax = 0;
    for (int i = 0; i < B * 2; i++) {
        rf[i] = tf[i] - ff[i];
        rjv[i] = tj[i] - fj[i];
        dmax = fmax(dmax, fabs(rjv[i]));
    }
    double err = tu_rel_err(rf, rjv, B * 2);
    CHECK_MSG(err < 1e-2, "JVP vs central-FD residual: relative error %.3g", err);
    CHECK(dmax > 1e-2);   /* a non-trivial residual */

    /* teacher step with small h: (target - F) * delta / h -> (jvp target - F) */
    c.target = FF_TARGET_STEP;
    c.step_h = 1e-3;
    c.delta_min = 0.05;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (t) CHECK_OK(ff_prediction_target(t, ts, fs, dl2, &rows2));
    ff_destroy(t);
    c.target = FF_TARGET_JVP;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (t) CHECK_OK(ff_prediction_target(t, tj, fj, dl, &rows));
    ff_destroy(t);
    CHECK(memcmp(dl, dl2, sizeof dl) == 0);
    static float rs[B * 2], rj[B * 2];
    for (int i = 0; i < B; i++)
        for (int k = 0; k < 2; k++) {
            rs[i * 2 + k] = (ts[i * 2 + k] - fs[i * 2 + k]) * dl[i] / (float)c.step_h;
            rj[i * 2 + k] = tj[i * 2 + k] - fj[i * 2 + k];
        }
    err = tu_rel_err(rs, rj, B * 2);
    CHECK_MSG(err < 0.05, "teacher-step residual vs JVP residual: relative error %.3g", err);
    nn_model_destroy(s);
    nn_model_destroy(e);
    fmd_teacher_destroy(T);
}

/* kv: "key=value" settings separated by spaces; fmd_distiller_create must
 * refuse them with FMD_ERR_INVALID_ARG and a message naming `key`. */
static void expect_bad(fmd_teacher *T, fmd_student *s, const char *kv, const char *key)
{
    fmd_options *o;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", kv);
    CHECK_OK(fmd_options_create(&o));
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) CHECK_OK(fmd_options_parse(o, tok));
    fmd_distiller *d = NULL;
    CHECK_STATUS(fmd_distiller_create(T, s, be, o, &d), FMD_ERR_INVALID_ARG);
    CHECK_MSG(strstr(fmd_last_error(), key) != NULL, "'%s': message '%s' does not name '%s'", kv,
              fmd_last_error(), key);
    CHECK(d == NULL);
    fmd_options_destroy(o);
}

/* A small student of T through the API (width 16). */
static fmd_student *small_student(fmd_teacher *T)
{
    fmd_options *so;
    fmd_student *st = NULL;
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_parse(so, "width=16"));
    CHECK_OK(fmd_student_create(T, be, so, &st));
    fmd_options_destroy(so);
    return st;
}

/* data_frac: with data_based=1 the first round(data_frac * rows) prediction
 * rows start from data-noised states (t0 < 1), the others from noise (t0 =
 * 1) as in data-free training; data_frac without data_based is refused. */
static void test_data_frac(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    vctx vc = {T};
    nn_model *s = mlp(2, 1, 32, 3), *e = mlp(2, 1, 32, 3);
    enum { B = 64, N = 500 };
    static float tg[B * 2], F[B * 2], dl[B], x0[N * 2];
    for (int i = 0; i < N * 2; i++) x0[i] = (float)tu_normal();
    static const double fracs[] = {1.0, 0.25, 0.5, 0.0};
    for (int k = 0; k < 4; k++) {
        ff_config c = pred_only_cfg(B, 9);
        c.data_based = 1;
        c.data_frac = fracs[k];
        ff_trainer *t = NULL;
        int64_t rows = 0;
        CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
        if (!t) continue;
        CHECK_OK(ff_set_data(t, x0, NULL, N));
        CHECK_OK(ff_prediction_target(t, tg, F, dl, &rows));
        const float *t0 = ff_rows_start_time(t);
        int64_t want = (int64_t)(B * fracs[k] + 0.5), data_rows = 0, misplaced = 0;
        for (int64_t i = 0; i < rows; i++) {
            int on_data = t0[i] < 1.0f;
            data_rows += on_data;
            misplaced += on_data != (i < want);
            CHECK_MSG(dl[i] > 0.0f && dl[i] <= t0[i], "row %lld: delta %g outside (0, t0 = %g]", (long long)i,
                      (double)dl[i], (double)t0[i]);
        }
        CHECK_MSG(rows == B && data_rows == want && misplaced == 0,
                  "data_frac %g: %lld of %lld rows on data (want the first %lld), %lld misplaced", fracs[k],
                  (long long)data_rows, (long long)rows, (long long)want, (long long)misplaced);
        ff_destroy(t);
    }
    nn_model_destroy(s);
    nn_model_destroy(e);

    fmd_student *st = small_student(T);
    fmd_options *o;
    expect_bad(T, st, "data_frac=0.5", "data_frac");
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_parse(o, "data_frac=0.5"));
    CHECK_OK(fmd_options_parse(o, "data_based=1"));
    fmd_distiller *d = NULL;
    CHECK_OK(fmd_options_parse(o, "batch=32"));
    CHECK_OK(fmd_distiller_create(T, st, be, o, &d));
    if (d) {
        CHECK_OK(fmd_distiller_set_data(d, x0, NULL, N));
        CHECK_OK(fmd_distiller_step(d));
    }
    fmd_distiller_destroy(d);
    fmd_options_destroy(o);
    fmd_student_destroy(st);
    fmd_teacher_destroy(T);
}

/* x (n, dim): the data pool of seed 11 as fmd_teacher_solve computes it,
 * Heun in `steps` steps from the pool's Philox noise with labels lab. */
static void pool_by_solver(fmd_teacher *T, float *x, const int32_t *lab, int n, int dim, int steps)
{
    fmd_options *so;
    fmd_philox_normal_fill(x, (int64_t)n * dim, 11, FF_STREAM_DATA_POOL, 0);
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_parse(so, "solver=heun"));
    CHECK_OK(fmd_options_set_i64(so, "steps", steps));
    CHECK_OK(fmd_teacher_solve(T, x, lab, n, so, NULL));
    fmd_options_destroy(so);
}

/* data_pool: the distiller draws its data from the teacher itself.  Row i
 * is the teacher's guided ODE solved by Heun from Philox noise (seed, stream
 * FF_STREAM_DATA_POOL, elements i * D ...) with label i mod K: the same as
 * fmd_teacher_solve(heun) from that noise.  Two chunks of B rows.  Through
 * the API: refused without data_based, data_pool_steps refused without
 * data_pool, and data_based=1 steps without fmd_distiller_set_data. */
static void test_data_pool(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &T));
    CHECK_OK(fmd_teacher_set_guidance(T, 3.0, 0.0, 1.0));
    vctx vc = {T};
    enum { B = 64, N = 100, D = 32, K = 4, STEPS = 4 };
    nn_model *s = mlp_k(D, 1, 32, K, 1), *e = mlp_k(D, 1, 32, K, 2);
    ff_config c = pred_only_cfg(B, 11);
    c.data_based = 1;
    c.pred_g = (ff_guidance){3.0f, 0.0f, 1.0f};
    ff_trainer *t = NULL;
    if (s && e) CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    static float got[N * D], want[N * D];
    static int32_t lab[N], wlab[N];
    if (t) {
        CHECK_OK(ff_make_data_pool(t, N, STEPS));
        CHECK_OK(ff_copy_data(t, got, lab, N));
        for (int i = 0; i < N; i++) wlab[i] = i % K;
        pool_by_solver(T, want, wlab, N, D, STEPS);
        double err = tu_rel_err(got, want, N * D);
        CHECK_MSG(err < 1e-5, "data pool against Heun-%d of the teacher: relative error %.3g", STEPS,
                  err);
        CHECK(memcmp(lab, wlab, sizeof lab) == 0);
        /* the guided field, not the unguided one */
        static float ung[N * D];
        CHECK_OK(fmd_teacher_set_guidance(T, 1.0, 0.0, 1.0));
        pool_by_solver(T, ung, wlab, N, D, STEPS);
        CHECK_OK(fmd_teacher_set_guidance(T, 3.0, 0.0, 1.0));
        CHECK(tu_rel_err(got, ung, N * D) > 1e-2);
    }
    ff_destroy(t);
    nn_model_destroy(s);
    nn_model_destroy(e);

    fmd_student *st = small_student(T);
    fmd_options *o;
    fmd_distiller *d = NULL;
    expect_bad(T, st, "data_pool=200", "'data_pool'");
    expect_bad(T, st, "data_based=1 data_pool_steps=8", "'data_pool_steps'");
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_parse(o, "data_based=1"));
    CHECK_OK(fmd_options_parse(o, "batch=32"));
    CHECK_OK(fmd_distiller_create(T, st, be, o, &d)); /* no data: the step says how to give it */
    if (d) {
        CHECK_STATUS(fmd_distiller_step(d), FMD_ERR_INVALID_ARG);
        CHECK_MSG(strstr(fmd_last_error(), "data_pool") != NULL, "%s", fmd_last_error());
    }
    fmd_distiller_destroy(d);
    d = NULL;
    CHECK_OK(fmd_options_parse(o, "data_pool=200"));
    CHECK_OK(fmd_options_parse(o, "data_frac=0.25"));
    CHECK_OK(fmd_distiller_create(T, st, be, o, &d));
    if (d) CHECK_OK(fmd_distiller_run(d, 2, NULL, NULL));
    fmd_distiller_destroy(d);
    fmd_options_destroy(o);
    fmd_student_destroy(st);
    fmd_teacher_destroy(T);
}

/* Correction sign (MATH.md section 4) on a 1-D teacher: when v_N - v points
 * left (student samples to the right of the teacher's), one correction step
 * must move the one-step samples left, and right for the opposite sign. */
/* One-step samples x = z - F(z, 1) of a 1-D student (host in, host out). */
static void one_step(nn_model *s, const float *z, int n, float *x)
{
    float *dz = be->ops->alloc(be, n * sizeof(float)), *out = be->ops->alloc(be, n * sizeof(float));
    float *t = be->ops->alloc(be, n * sizeof(float)), *d = be->ops->alloc(be, n * sizeof(float));
    float *h = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) h[i] = 0.0f;
    be->ops->upload(be, t, h, n * sizeof(float));
    for (int i = 0; i < n; i++) h[i] = 1.0f;
    be->ops->upload(be, d, h, n * sizeof(float));
    be->ops->upload(be, dz, z, n * sizeof(float));
    CHECK_OK(nn_model_forward(s, out, dz, t, d, NULL, n));
    be->ops->download(be, h, out, n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = z[i] - h[i];
    free(h);
    be->ops->free(be, dz);
    be->ops->free(be, out);
    be->ops->free(be, t);
    be->ops->free(be, d);
}

static double mean_one_step(nn_model *s, const float *z, int n)
{
    float *x = malloc(n * sizeof(float));
    one_step(s, z, n, x);
    double m = 0;
    for (int i = 0; i < n; i++) m += x[i];
    free(x);
    return m / n;
}

/* Standard deviation of the one-step samples about mean m. */
static double spread_one_step(nn_model *s, const float *z, int n, double m)
{
    float *x = malloc(n * sizeof(float));
    one_step(s, z, n, x);
    double v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    free(x);
    return sqrt(v / (n - 1));
}

/* A 1-D residual network g = v + R with R = bias everywhere (output layer's
 * weights zero, its bias set). */
static void set_constant_residual(nn_model *g, float bias)
{
    const nn_param *pw = nn_model_find(g, "out_proj.weight");
    const nn_param *pb = nn_model_find(g, "out_proj.bias");
    CHECK(pw && pb && pb->numel == 1);
    if (!pw || !pb) return;
    float *P = nn_model_params(g);
    be->ops->memset0(be, P + pw->offset, pw->numel * sizeof(float));
    be->ops->upload(be, P + pb->offset, &bias, sizeof bias);
}

static void test_correction_sign(void)
{
    double w = 1.0, mu = 0.0, sd = 0.5;
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_mixture(1, 1, &w, &mu, &sd, NULL, 0, &T));
    vctx vc = {T};
    float z[128];
    for (int i = 0; i < 128; i++) z[i] = (float)tu_normal();
    for (int sign = -1; sign <= 1; sign += 2) {
        nn_model *s = mlp(1, 1, 32, 7), *e = mlp(1, 1, 32, 7), *aux = mlp(1, 0, 32, 8);
        /* residual g = v + R with R = sign * 0.5 everywhere: v_N - v = R */
        set_constant_residual(aux, 0.5f * (float)sign);
        ff_config c;
        ff_config_default(&c);
        c.batch = 128;
        c.use_pred = 0;
        c.lr = 1e-3;
        c.aux_lr = 1e-12;   /* keep R fixed */
        ff_trainer *t = NULL;
        CHECK_OK(ff_create(be, &c, s, e, aux, 1, vel, &vc, &t));
        double before = mean_one_step(s, z, 128);
        ff_step_stats st;
        CHECK_OK(ff_step(t, &st));
        double after = mean_one_step(s, z, 128);
        CHECK_MSG(fabs(st.vdiff_norm - 0.5) < 1e-4, "|v_N - v| = %g", st.vdiff_norm);
        if (sign < 0) CHECK_MSG(after < before - 1e-5, "v_N - v < 0 must move samples left: %g -> %g", before, after);
        else CHECK_MSG(after > before + 1e-5, "v_N - v > 0 must move samples right: %g -> %g", before, after);
        ff_destroy(t);
        nn_model_destroy(s);
        nn_model_destroy(e);
        nn_model_destroy(aux);
    }
    fmd_teacher_destroy(T);
}

/* The 1-D networks of the correction tests: student, its EMA, g and g_ref
 * (g_ref's initial weights from ref_seed). */
typedef struct {
    nn_model *s, *e, *aux, *ref;
} corr_nets;

static corr_nets corr_nets_make(uint64_t ref_seed)
{
    corr_nets n = {mlp(1, 1, 32, 7), mlp(1, 1, 32, 7), mlp(1, 0, 32, 8), mlp(1, 0, 32, ref_seed)};
    return n;
}

static void corr_nets_free(corr_nets *n)
{
    nn_model_destroy(n->s);
    nn_model_destroy(n->e);
    nn_model_destroy(n->aux);
    nn_model_destroy(n->ref);
}

/* corr_ref = samples (ff_set_reference): the pool is the teacher's ODE
 * from prior noise (1-D Gaussian N(0.7, 0.4^2): the ODE is affine, so the
 * pool must have that mean and spread), g - g_ref starts at exactly zero
 * when both networks start alike, and the correction uses v_N - g_ref with
 * the sign of MATH.md section 4 (g_ref = g + 0.5 must move samples left). */
static void test_reference(void)
{
    double w = 1.0, mu = 0.7, sd = 0.4;
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_mixture(1, 1, &w, &mu, &sd, NULL, 0, &T));
    vctx vc = {T};
    float z[128];
    for (int i = 0; i < 128; i++) z[i] = (float)tu_normal();
    for (int shift = 0; shift <= 1; shift++) {
        corr_nets nets = corr_nets_make(8);
        nn_model *s = nets.s, *e = nets.e, *aux = nets.aux, *ref = nets.ref;
        set_constant_residual(aux, 0.0f);
        set_constant_residual(ref, shift ? 0.5f : 0.0f);
        ff_config c;
        ff_config_default(&c);
        c.batch = 128;
        c.use_pred = 0;
        c.lr = 1e-3;
        c.aux_lr = 1e-12;   /* keep g and g_ref fixed */
        ff_trainer *t = NULL;
        CHECK_OK(ff_create(be, &c, s, e, aux, 1, vel, &vc, &t));
        CHECK_STATUS(ff_set_reference(t, ref, 0, 8), FMD_ERR_INVALID_ARG);
        CHECK_OK(ff_set_reference(t, ref, 4096, 16));
        float *pool = NULL;
        int64_t n = t ? ff_ref_pool(t, &pool) : 0;
        CHECK(n == 4096 && pool);
        if (shift == 0 && n == 4096) {
            static float h[4096];
            be->ops->download(be, h, pool, sizeof h);
            double m = 0, v = 0;
            for (int i = 0; i < 4096; i++) m += h[i];
            m /= 4096;
            for (int i = 0; i < 4096; i++) v += (h[i] - m) * (h[i] - m);
            double sdev = sqrt(v / 4095);
            /* standard errors: 0.4/64 = 0.006 for the mean, about 1.1 % for the spread */
            CHECK_MSG(fabs(m - mu) < 0.03, "pool mean %g, the teacher's distribution has %g", m, mu);
            CHECK_MSG(fabs(sdev / sd - 1.0) < 0.06, "pool spread %g, the teacher's distribution has %g",
                      sdev, sd);
        }
        double before = mean_one_step(s, z, 128);
        ff_step_stats st;
        CHECK_OK(ff_step(t, &st));
        double after = mean_one_step(s, z, 128);
        if (shift == 0) {
            CHECK_MSG(st.vdiff_norm == 0.0, "g and g_ref start alike, yet |v_N - g_ref| = %g",
                      st.vdiff_norm);
        } else {
            CHECK_MSG(fabs(st.vdiff_norm - 0.5) < 1e-4, "|v_N - g_ref| = %g", st.vdiff_norm);
            CHECK_MSG(after < before - 1e-5, "v_N - g_ref < 0 must move samples left: %g -> %g",
                      before, after);
        }
        ff_destroy(t);
        corr_nets_free(&nets);
    }
    fmd_teacher_destroy(T);
}

/* ---- the kernel field (corr_field = kernel) --------------------------------- */

/* Host reference of the kernel field: the gamma-weighted mean over the
 * entries j of bank (n, D) with label lab[j] == label at (x, r):
 * gamma_j ~ exp(-|x - (1 - r) b_j|^2 / (2 r^2)), the empirical mixture's
 * posterior, computed in double straight from the definition. */
static void host_kernel_mean(double *m, const float *x, double r, int32_t label, const float *bank,
                             const int32_t *lab, int64_t n, int D)
{
    double best = -INFINITY, z = 0.0;
    double *lw = malloc((size_t)n * sizeof(double));
    for (int64_t j = 0; j < n; j++) {
        double d2 = 0.0;
        for (int k = 0; k < D; k++) {
            double e = x[k] - (1.0 - r) * bank[j * D + k];
            d2 += e * e;
        }
        lw[j] = lab[j] == label ? -d2 / (2.0 * r * r) : -INFINITY;
        if (lw[j] > best) best = lw[j];
    }
    for (int k = 0; k < D; k++) m[k] = 0.0;
    for (int64_t j = 0; j < n; j++) {
        if (lw[j] == -INFINITY) continue;
        double g = exp(lw[j] - best);
        z += g;
        for (int k = 0; k < D; k++) m[k] += g * bank[j * D + k];
    }
    for (int k = 0; k < D; k++) m[k] /= z;
    free(lw);
}

/* The kernel field against its definition, on a conditional 2-D teacher
 * (2 classes), batch 16 with 8 correction rows and a bank of 20 (a ring
 * that wraps inside a step): zero term and lambda while the bank fills
 * (steps 0-2), then at step 3 v_N - v_teacher (use_ref 0) or (m_pool -
 * m_bank) / r over 20 pool rows drawn on stream 13 (use_ref 1), and the
 * step's one-step samples written into the ring afterwards. */
static void test_kernel_field(int use_ref)
{
    enum { D = 2, B = 16, BC = 8, M = 20, NPOOL = 64 };
    double w[4] = {0.3, 0.2, 0.25, 0.25}, mu[8] = {-1, 0, 1, 0.5, 0, 1.5, 0.5, -1};
    double sd[4] = {0.3, 0.4, 0.2, 0.35};
    int32_t cls[4] = {0, 0, 1, 1};
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_mixture(D, 4, w, mu, sd, cls, 2, &T));
    CHECK_OK(fmd_teacher_set_guidance(T, 2.0, 0.0, 1.0));
    vctx vc = {T};
    nn_model *s = mlp_k(D, 1, 32, 2, 7), *e = mlp_k(D, 1, 32, 2, 7);
    ff_config c;
    ff_config_default(&c);
    c.batch = B;
    c.corr_frac = 0.5;
    c.seed = 5;
    c.corr_field = FF_FIELD_KERNEL;
    c.kernel_bank = M;
    c.corr_g = (ff_guidance){2.0f, 0.0f, 0.7f};
    ff_trainer *t = NULL;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (!t) goto done;
    nn_model *stray = mlp_k(D, 0, 32, 2, 8);
    CHECK_STATUS(ff_set_reference(t, stray, NPOOL, 4), FMD_ERR_INVALID_ARG);  /* no network */
    nn_model_destroy(stray);
    if (use_ref) CHECK_OK(ff_set_reference(t, NULL, NPOOL, 4));
    float xhat[BC * D], xr[BC * D], r[BC], term[BC * D], bank[M * D], pool[NPOOL * D];
    int32_t lab[BC], blab[M];
    float *dbank, *dpool = NULL;
    int32_t *hlab;
    CHECK(ff_kernel_bank(t, &dbank, &hlab) == M);
    ff_step_stats st;
    for (int k = 0; k < 3; k++) {   /* 0, 8, 16 entries: not full */
        CHECK_OK(ff_step(t, &st));
        CHECK(ff_last_correction(t, xhat, xr, r, lab, term) == BC);
        double mx = 0;
        for (int i = 0; i < BC * D; i++) mx = fmax(mx, fabs(term[i]));
        CHECK_MSG(mx == 0.0 && st.lambda == 0.0, "step %d: bank not full, yet term %g, lambda %g", k,
                  mx, st.lambda);
    }
    be->ops->download(be, bank, dbank, sizeof bank);
    memcpy(blab, hlab, sizeof blab);
    CHECK_OK(ff_step(t, &st));   /* step 3: 24 >= 20 */
    CHECK(ff_last_correction(t, xhat, xr, r, lab, term) == BC);
    CHECK_MSG(st.lambda > 0.0, "step 3: lambda %g", st.lambda);
    float vt[BC * D];
    if (!use_ref) {   /* the teacher at x_r with the correction's guidance, on the host */
        CHECK_OK(fmd_teacher_set_guidance(T, c.corr_g.scale, c.corr_g.t_lo, c.corr_g.t_hi));
        CHECK_OK(fmd_teacher_velocity(T, vt, xr, r, lab, BC));
    } else {
        CHECK(ff_ref_pool(t, &dpool) == NPOOL);
        be->ops->download(be, pool, dpool, sizeof pool);
    }
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < BC; i++) {
        double mb[D], mp[D], want[D];
        host_kernel_mean(mb, xr + i * D, r[i], lab[i], bank, blab, M, D);
        if (use_ref) {
            float sub[M * D];
            int32_t slab[M];
            for (int j = 0; j < M; j++) {
                int64_t q = (int64_t)(fmd_philox_uniform_at(c.seed, 13, 3 * M + j) * NPOOL);
                if (q >= NPOOL) q = NPOOL - 1;
                memcpy(sub + j * D, pool + q * D, D * sizeof(float));
                /* pool labels: uniform on stream 8 (freeflow.c make_pool) */
                int64_t l = (int64_t)(fmd_philox_uniform_at(c.seed, 8, q) * 2);
                slab[j] = (int32_t)(l > 1 ? 1 : l);
            }
            host_kernel_mean(mp, xr + i * D, r[i], lab[i], sub, slab, M, D);
            for (int k = 0; k < D; k++) want[k] = (mp[k] - mb[k]) / r[i];
        } else {
            for (int k = 0; k < D; k++) want[k] = (xr[i * D + k] - mb[k]) / r[i] - vt[i * D + k];
        }
        for (int k = 0; k < D; k++) {
            worst = fmax(worst, fabs(term[i * D + k] - want[k]));
            scale = fmax(scale, fabs(want[k]));
        }
    }
    CHECK_MSG(scale > 1e-3, "kernel term vanished (%g)", scale);
    CHECK_MSG(worst <= 1e-4 * (1.0 + scale), "use_ref %d: kernel term off by %g (largest %g)", use_ref,
              worst, scale);
    /* the ring: rows (3*8 + i) mod 20 now hold step 3's samples and labels */
    be->ops->download(be, bank, dbank, sizeof bank);
    int ring_ok = 1;
    for (int i = 0; i < BC; i++) {
        int j = (3 * BC + i) % M;
        if (memcmp(bank + j * D, xhat + i * D, D * sizeof(float)) != 0 || hlab[j] != lab[i]) ring_ok = 0;
    }
    CHECK_MSG(ring_ok, "step 3's one-step samples are not in the bank's ring");
    ff_destroy(t);
done:
    nn_model_destroy(s);
    nn_model_destroy(e);
    fmd_teacher_destroy(T);
}

/* The kernel field moves the distribution the right way: correction only,
 * reference pool, on a 1-D Gaussian teacher N(0.7, 0.4^2), the one-step
 * samples' mean and spread approach the teacher's. */
static void test_kernel_pull(void)
{
    double w = 1.0, mu = 0.7, sd = 0.4;
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_mixture(1, 1, &w, &mu, &sd, NULL, 0, &T));
    vctx vc = {T};
    nn_model *s = mlp(1, 1, 32, 7), *e = mlp(1, 1, 32, 7);
    enum { N = 128 };   /* the student's arena holds one batch */
    float z[N];
    for (int i = 0; i < N; i++) z[i] = (float)tu_normal();
    ff_config c;
    ff_config_default(&c);
    c.batch = 128;
    c.use_pred = 0;
    c.corr_field = FF_FIELD_KERNEL;
    c.kernel_bank = 512;
    c.lr = 3e-3;
    c.decay_steps = 600;   /* cosine to 3e-4: the last steps average the noise */
    c.alpha = 1.0;
    ff_trainer *t = NULL;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    CHECK_OK(ff_set_reference(t, NULL, 4096, 16));
    double m0 = mean_one_step(s, z, N), s0 = spread_one_step(s, z, N, m0);
    for (int k = 0; k < 600 && t; k++) CHECK_OK(ff_step(t, NULL));
    double m1 = mean_one_step(s, z, N), s1 = spread_one_step(s, z, N, m1);
    double err0 = fabs(m0 - mu) + fabs(s0 - sd), err1 = fabs(m1 - mu) + fabs(s1 - sd);
    printf("kernel pull: mean %.3f -> %.3f, spread %.3f -> %.3f (teacher %.1f, %.1f)\n", m0, m1, s0,
           s1, mu, sd);
    CHECK_MSG(err1 < 0.1 * err0 && err1 < 0.15,
              "kernel correction: |mean - 0.7| + |spread - 0.4| from %g to %g", err0, err1);
    ff_destroy(t);
    nn_model_destroy(s);
    nn_model_destroy(e);
    fmd_teacher_destroy(T);
}

/* The largest parameter change of g (n parameters, device) since `before`
 * (host copy), read into `after` (host scratch). */
static double max_change(nn_model *g, const float *before, float *after, int64_t n)
{
    be->ops->download(be, after, nn_model_params(g), (size_t)n * sizeof(float));
    return tu_max_abs_diff(after, before, n);
}

/* aux_decay: g's (and g_ref's) AdamW rate follows the student's schedule.
 * Adam's first step moves every parameter with a gradient by exactly its rate
 * (m / sqrt(v) = +-1), so after step 0 with lr_warmup = 4 (the student's rate
 * at a quarter) the largest change of g and of g_ref is aux_lr / 4 with
 * aux_decay and aux_lr without. */
static void test_aux_decay(void)
{
    double w = 1.0, mu = 0.7, sd = 0.4;
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_mixture(1, 1, &w, &mu, &sd, NULL, 0, &T));
    vctx vc = {T};
    for (int decay = 0; decay <= 1; decay++) {
        corr_nets nets = corr_nets_make(9);
        nn_model *s = nets.s, *e = nets.e, *aux = nets.aux, *ref = nets.ref;
        set_constant_residual(aux, 0.5f);
        set_constant_residual(ref, -0.5f);
        ff_config c;
        ff_config_default(&c);
        c.batch = 64;
        c.aux_lr = 2e-3;
        c.lr_warmup = 4;
        c.aux_decay = decay;
        ff_trainer *t = NULL;
        CHECK_OK(ff_create(be, &c, s, e, aux, 1, vel, &vc, &t));
        CHECK_OK(ff_set_reference(t, ref, 256, 4));
        const int64_t n = nn_model_num_params(aux);
        float *g0 = malloc((size_t)n * sizeof(float)), *r0 = malloc((size_t)n * sizeof(float));
        float *h = malloc((size_t)n * sizeof(float));
        be->ops->download(be, g0, nn_model_params(aux), (size_t)n * sizeof(float));
        be->ops->download(be, r0, nn_model_params(ref), (size_t)n * sizeof(float));
        CHECK_OK(ff_step(t, NULL));
        const double want = decay ? c.aux_lr / 4.0 : c.aux_lr;
        const double dg = max_change(aux, g0, h, n), dr = max_change(ref, r0, h, n);
        CHECK_MSG(fabs(dg - want) < 0.01 * want, "aux_decay=%d: g moved by %g, want %g", decay,
                  dg, want);
        CHECK_MSG(fabs(dr - want) < 0.01 * want, "aux_decay=%d: g_ref moved by %g, want %g",
                  decay, dr, want);
        free(g0);
        free(r0);
        free(h);
        ff_destroy(t);
        corr_nets_free(&nets);
    }
    fmd_teacher_destroy(T);
}

/* ---- public API ------------------------------------------------------------------ */

static fmd_options *small_opts(void)
{
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "batch", 64));
    CHECK_OK(fmd_options_set_i64(o, "seed", 3));
    CHECK_OK(fmd_options_set_i64(o, "aux_width", 32));
    CHECK_OK(fmd_options_set_i64(o, "progress_every", 1));
    return o;
}

static fmd_options *student_opts(void)
{
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "width", 32));
    CHECK_OK(fmd_options_set_i64(o, "depth", 2));
    CHECK_OK(fmd_options_set_i64(o, "temb_dim", 16));
    return o;
}

static void download_params(fmd_student *s, float *h)
{
    nn_model *m = student_net(s);
    be->ops->download(be, h, nn_model_params(m), nn_model_num_params(m) * sizeof(float));
}

/* mode RESUME_REF: with corr_ref = samples (the reference network and its
 * moments are saved too; the pool is regenerated); RESUME_POOL: the
 * data-based mix on a teacher pool (data_pool, regenerated on resume). */
enum { RESUME_PLAIN, RESUME_REF, RESUME_POOL, RESUME_KERNEL };

/* RESUME_KERNEL: the kernel field with a reference pool; a bank of 40 is full
 * after 3 steps of 16 correction rows, so the resumed steps read the bank
 * restored from the checkpoint. */
static fmd_options *kernel_opts(int bank, int pool)
{
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "batch", 64));
    CHECK_OK(fmd_options_set_i64(o, "seed", 3));
    CHECK_OK(fmd_options_set_i64(o, "progress_every", 1));
    CHECK_OK(fmd_options_parse(o, "corr_field=kernel"));
    if (pool) CHECK_OK(fmd_options_parse(o, "corr_ref=samples"));
    if (pool) CHECK_OK(fmd_options_parse(o, "ref_pool=300"));
    CHECK_OK(fmd_options_set_i64(o, "kernel_bank", bank));
    return o;
}

/* A distiller of T and s made with options o (destroyed here) refuses to
 * resume from path with status want and a message naming needle, having
 * read nothing (its step count stays 0). */
static void expect_resume_refused(fmd_teacher *T, fmd_student *s, fmd_options *o, const char *path,
                                  fmd_status want, const char *needle)
{
    fmd_distiller *d = NULL;
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    if (d) {
        CHECK_STATUS(fmd_distiller_resume(d, path), want);
        CHECK_MSG(strstr(fmd_last_error(), needle) != NULL, "'%s': message '%s' does not name '%s'",
                  path, fmd_last_error(), needle);
        CHECK(fmd_distiller_steps(d) == 0);
    }
    fmd_distiller_destroy(d);
    fmd_options_destroy(o);
}
static void pool_opts(fmd_options *o, int n)
{
    CHECK_OK(fmd_options_parse(o, "data_based=1"));
    CHECK_OK(fmd_options_parse(o, "data_frac=0.5"));
    CHECK_OK(fmd_options_parse(o, "data_pool_steps=4"));
    CHECK_OK(fmd_options_set_i64(o, "data_pool", n));
}

/* A copy of checkpoint src at dst with tensor or metadata key `drop` left
 * out, or with the tensor's first dimension one shorter when shorten = 1
 * (resume must refuse both). */
static void copy_checkpoint_altered(const char *src, const char *dst, const char *drop, int shorten)
{
    fmdf_reader *r = NULL;
    fmdf_writer *w = NULL;
    CHECK_OK(fmdf_open(src, &r));
    CHECK_OK(fmdf_writer_begin(dst, &w));
    if (!r || !w) {
        fmdf_close(r);
        if (w) fmdf_writer_abort(w);
        return;
    }
    for (int i = 0; i < fmdf_meta_count(r); i++)
        if (strcmp(fmdf_meta_key(r, i), drop) != 0)
            CHECK_OK(fmdf_writer_add_meta(w, fmdf_meta_key(r, i), fmdf_meta_value(r, i)));
    for (int i = 0; i < fmdf_tensor_count(r); i++) {
        const fmdf_tensor_info *ti = fmdf_tensor_at(r, i);
        int altered = strcmp(ti->name, drop) == 0;
        if (altered && !shorten) continue;
        void *buf = malloc(ti->nbytes ? ti->nbytes : 1);
        CHECK_OK(fmdf_read_tensor(r, ti->name, ti->dtype, -1, NULL, buf, ti->nbytes));
        int64_t shape[FMDF_MAX_DIMS];
        memcpy(shape, ti->shape, sizeof shape);
        if (altered) shape[0]--;
        CHECK_OK(fmdf_writer_add_tensor(w, ti->name, ti->dtype, ti->ndim, shape, buf));
        free(buf);
    }
    CHECK_OK(fmdf_writer_commit(w));
    fmdf_close(r);
}

static void test_resume(int mode)
{
    const int ref = mode == RESUME_REF;
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_options *o = mode == RESUME_KERNEL ? kernel_opts(40, 1) : small_opts(), *so = student_opts();
    if (mode == RESUME_POOL) pool_opts(o, 300);
    if (ref) {
        CHECK_OK(fmd_options_parse(o, "corr_ref=samples"));
        CHECK_OK(fmd_options_parse(o, "ref_pool=700"));
        CHECK_OK(fmd_options_parse(o, "aux_updates=2"));
    }
    const char *path = "test_distiller_resume.fmd";
    enum { K = 6 };
    /* uninterrupted: 2K steps */
    fmd_student *s1, *s2, *s3;
    fmd_distiller *d1, *d2, *d3;
    CHECK_OK(fmd_student_create(T, be, so, &s1));
    CHECK_OK(fmd_distiller_create(T, s1, be, o, &d1));
    CHECK_OK(fmd_distiller_run(d1, 2 * K, NULL, NULL));
    /* K steps, save, throw away */
    CHECK_OK(fmd_student_create(T, be, so, &s2));
    CHECK_OK(fmd_distiller_create(T, s2, be, o, &d2));
    CHECK_OK(fmd_distiller_run(d2, K, NULL, NULL));
    CHECK_OK(fmd_distiller_save(d2, path));
    fmd_distiller_destroy(d2);
    fmd_student_destroy(s2);
    /* fresh objects, resume, K more */
    CHECK_OK(fmd_student_create(T, be, so, &s3));
    CHECK_OK(fmd_distiller_create(T, s3, be, o, &d3));
    CHECK_OK(fmd_distiller_resume(d3, path));
    CHECK(fmd_distiller_steps(d3) == K);
    CHECK_OK(fmd_distiller_run(d3, K, NULL, NULL));
    CHECK(fmd_distiller_steps(d3) == 2 * K);
    int64_t np = fmd_student_num_params(s1);
    float *a = malloc(np * sizeof(float)), *b = malloc(np * sizeof(float));
    download_params(s1, a);
    download_params(s3, b);
    CHECK_MSG(memcmp(a, b, np * sizeof(float)) == 0, "resumed student differs from uninterrupted");
    fmd_student *e1, *e3;
    CHECK_OK(fmd_distiller_ema_student(d1, &e1));
    CHECK_OK(fmd_distiller_ema_student(d3, &e3));
    download_params(e1, a);
    download_params(e3, b);
    CHECK_MSG(memcmp(a, b, np * sizeof(float)) == 0, "resumed EMA differs from uninterrupted");
    /* the checkpoint loads as the EMA student */
    fmd_student *ls;
    CHECK_OK(fmd_student_load(path, be, &ls));
    if (ls) CHECK(fmd_student_num_params(ls) == np);
    fmd_student_destroy(ls);
    /* a mismatching distiller is refused naming the setting */
    fmd_options *o2 = small_opts();
    CHECK_OK(fmd_options_set_i64(o2, "seed", 4));
    expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG, "distiller.seed");
    if (mode == RESUME_KERNEL) {
        /* another bank size, or the network field, is another run */
        expect_resume_refused(T, s3, kernel_opts(41, 1), path, FMD_ERR_INVALID_ARG,
                              "distiller.kernel_bank");
        o2 = small_opts();
        CHECK_OK(fmd_options_parse(o2, "corr_ref=samples"));
        CHECK_OK(fmd_options_parse(o2, "ref_pool=300"));
        expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG, "corr_field=kernel");
        /* a bank tensor missing or of the wrong size is refused before anything is read */
        const char *bad = "test_distiller_resume_bad.fmd";
        for (int k = 0; k < 2; k++) {
            copy_checkpoint_altered(path, bad, k ? "kernel_bank_labels" : "kernel_bank", k);
            expect_resume_refused(T, s3, kernel_opts(40, 1), bad, FMD_ERR_FORMAT, "kernel_bank");
        }
        remove(bad);
    }
    /* with and without the reference network do not mix */
    if (mode == RESUME_KERNEL) {
        o2 = kernel_opts(40, 0);   /* the same without the pool */
    } else {
        o2 = small_opts();
        if (mode == RESUME_POOL) pool_opts(o2, 300);
        if (!ref) CHECK_OK(fmd_options_parse(o2, "corr_ref=samples"));
        else CHECK_OK(fmd_options_parse(o2, "aux_updates=2"));
    }
    expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG, "corr_ref");
    if (ref) { /* another pool size is another run */
        o2 = small_opts();
        CHECK_OK(fmd_options_parse(o2, "corr_ref=samples"));
        CHECK_OK(fmd_options_parse(o2, "aux_updates=2"));
        expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG, "distiller.ref_pool");
    }
    if (mode == RESUME_POOL) { /* without the pool, or another pool, is another run */
        for (int k = 0; k < 2; k++) {
            o2 = small_opts();
            if (k == 0) CHECK_OK(fmd_options_parse(o2, "data_based=1"));
            else pool_opts(o2, 301);
            expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG,
                                  k ? "distiller.data_pool" : "data_pool");
        }
    }
    free(a);
    free(b);
    fmd_distiller_destroy(d1);
    fmd_distiller_destroy(d3);
    fmd_student_destroy(s1);
    fmd_student_destroy(s3);
    fmd_options_destroy(o);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
    remove(path);
}

/* callback teacher: a single Gaussian N(0, 0.5^2) in 2-D, NaN when poisoned */
static int poison;
static int cb_vel(void *user, float *v, const float *x, const float *t, const int32_t *labels,
                  int64_t b, int64_t dim)
{
    for (int64_t i = 0; i < b; i++) {
        double tt = t[i], s2 = 0.25, sig2 = (1 - tt) * (1 - tt) * s2 + tt * tt;
        double k = (tt - (1 - tt) * s2) / sig2;
        for (int64_t j = 0; j < dim; j++) v[i * dim + j] = poison ? NAN : (float)(k * x[i * dim + j]);
    }
    return 0;
}

static unsigned char *slurp(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n ? *n : 1);
    if (fread(b, 1, *n, f) != (size_t)*n) *n = -1;
    fclose(f);
    return b;
}

static void test_nonfinite(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_callback(2, 0, cb_vel, NULL, &T));
    const char *path = "test_distiller_nan.fmd";
    remove(path);
    fmd_options *o = small_opts(), *so = student_opts();
    CHECK_OK(fmd_options_set_str(o, "checkpoint", path));
    CHECK_OK(fmd_options_set_i64(o, "checkpoint_every", 5));
    fmd_student *s;
    fmd_distiller *d;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    poison = 0;
    CHECK_OK(fmd_distiller_run(d, 10, NULL, NULL));
    long n0 = 0, n1 = 0;
    unsigned char *before = slurp(path, &n0);
    CHECK(before && n0 > 0);
    int64_t np = fmd_student_num_params(s);
    float *a = malloc(np * sizeof(float)), *b = malloc(np * sizeof(float));
    download_params(s, a);
    poison = 1;
    CHECK_STATUS(fmd_distiller_run(d, 10, NULL, NULL), FMD_ERR_NONFINITE);
    const char *msg = fmd_last_error();
    CHECK_MSG(strstr(msg, "step 10") && strstr(msg, "teacher velocity"), "message: %s", msg);
    CHECK(fmd_distiller_steps(d) == 10);
    download_params(s, b);
    CHECK(memcmp(a, b, np * sizeof(float)) == 0);
    unsigned char *after = slurp(path, &n1);
    CHECK(after && n1 == n0 && memcmp(before, after, n0) == 0);
    poison = 0;
    free(before);
    free(after);
    free(a);
    free(b);
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
    fmd_options_destroy(o);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
    remove(path);
}

static int cancel_at_3(const fmd_distill_stats *s, void *user)
{
    int *calls = user;
    (*calls)++;
    return s->step >= 3;
}

static void test_options_and_api(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_options *so = student_opts();
    fmd_student *s;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    expect_bad(T, s, "bacth=64", "bacth");
    expect_bad(T, s, "lr=-1", "lr");
    expect_bad(T, s, "batch=1", "batch");
    expect_bad(T, s, "batch=abc", "batch");
    expect_bad(T, s, "target=euler", "target");
    expect_bad(T, s, "delta_dist=gamma", "delta_dist");
    expect_bad(T, s, "ema=1.5", "ema");
    expect_bad(T, s, "lr_decay=step", "lr_decay");
    expect_bad(T, s, "aux=copy", "aux");
    expect_bad(T, s, "alpha_end=-1", "alpha_end");
    expect_bad(T, s, "corr_ref=data", "corr_ref");
    expect_bad(T, s, "corr_field=gauss", "corr_field");
    expect_bad(T, s, "corr=0 corr_field=kernel", "corr_field");
    expect_bad(T, s, "corr_field=kernel aux_updates=2", "aux_updates");
    expect_bad(T, s, "kernel_bank=100", "kernel_bank");
    expect_bad(T, s, "corr_field=kernel kernel_bank=0", "kernel_bank");
    expect_bad(T, s, "ref_pool=100", "ref_pool");
    expect_bad(T, s, "ref_steps=0", "ref_steps");
    expect_bad(T, s, "aux_decay=2", "aux_decay");
    {
        fmd_options *o;
        CHECK_OK(fmd_options_create(&o));
        CHECK_OK(fmd_options_parse(o, "corr_ref=samples"));
        CHECK_OK(fmd_options_parse(o, "corr=0"));
        fmd_distiller *d = NULL;
        CHECK_STATUS(fmd_distiller_create(T, s, be, o, &d), FMD_ERR_INVALID_ARG);
        CHECK(strstr(fmd_last_error(), "corr_ref") != NULL && d == NULL);
        fmd_options_destroy(o);
    }
    fmd_options *bad;
    CHECK_OK(fmd_options_create(&bad));
    CHECK_OK(fmd_options_set_i64(bad, "widht", 3));
    fmd_student *s2 = NULL;
    CHECK_STATUS(fmd_student_create(T, be, bad, &s2), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "widht") != NULL);
    fmd_options_destroy(bad);
    CHECK_STATUS(fmd_distiller_create(NULL, s, be, NULL, NULL), FMD_ERR_INVALID_ARG);
    fmd_distiller_destroy(NULL);
    fmd_student_destroy(NULL);
    fmd_evaluator_destroy(NULL);

    /* no host allocation inside a step (both objectives, every target form,
     * and with the reference network) */
    static const char *const targets[] = {"teacher-step", "jvp", "fd", "teacher-step"};
    for (int k = 0; k < 4; k++) {
        fmd_options *oa = small_opts();
        CHECK_OK(fmd_options_set_str(oa, "target", targets[k]));
        if (k == 3) CHECK_OK(fmd_options_parse(oa, "corr_ref=samples"));
        if (k == 3) CHECK_OK(fmd_options_parse(oa, "ref_pool=300"));
        fmd_distiller *da;
        CHECK_OK(fmd_distiller_create(T, s, be, oa, &da));
        CHECK_OK(fmd_distiller_step(da));
        tu_alloc.calls = 0;
        for (int i = 0; i < 3; i++) CHECK_OK(fmd_distiller_step(da));
        long n_allocs = tu_alloc.calls;
        CHECK_MSG(n_allocs == 0, "%ld host allocations inside steps (target %s)", n_allocs, targets[k]);
        fmd_distiller_destroy(da);
        fmd_options_destroy(oa);
    }

    /* cancel through the progress callback */
    fmd_options *o = small_opts();
    fmd_distiller *d;
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    int calls = 0;
    CHECK_STATUS(fmd_distiller_run(d, 100, cancel_at_3, &calls), FMD_ERR_CANCELLED);
    CHECK(calls == 3 && fmd_distiller_steps(d) == 3);
    fmd_distill_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(fmd_distiller_stats(d, &st));
    CHECK(st.step == 3 && st.struct_size == sizeof st && isfinite(st.loss_pred) && st.lr > 0);
    /* data-based needs data */
    fmd_distiller_destroy(d);
    CHECK_OK(fmd_options_set_i64(o, "data_based", 1));
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    CHECK_STATUS(fmd_distiller_step(d), FMD_ERR_INVALID_ARG);
    float x0[20];
    for (int i = 0; i < 20; i++) x0[i] = (float)tu_normal();
    CHECK_OK(fmd_distiller_set_data(d, x0, NULL, 10));
    CHECK_OK(fmd_distiller_step(d));
    fmd_distiller_destroy(d);
    fmd_options_destroy(o);

    /* student save / load round trip and forward checks */
    const char *path = "test_distiller_student.fmd";
    CHECK_OK(fmd_student_save(s, path));
    fmd_student *l = NULL;
    CHECK_OK(fmd_student_load(path, be, &l));
    float z[12], dl[6] = {1, 1, 0.5f, 0.25f, 0, 1}, o1[12], o2[12];
    for (int i = 0; i < 12; i++) z[i] = (float)tu_normal();
    CHECK_OK(fmd_student_forward(s, z, dl, NULL, 6, o1));
    if (l) CHECK_OK(fmd_student_forward(l, z, dl, NULL, 6, o2));
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    CHECK(o1[8] == z[8] && o1[9] == z[9]);   /* delta = 0 is the identity */
    dl[2] = 1.5f;
    CHECK_STATUS(fmd_student_forward(s, z, dl, NULL, 6, o1), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "delta[2]") != NULL);
    fmd_student_destroy(l);
    remove(path);
    fmd_student_destroy(s);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
}

/* Network teacher: the student copies the teacher, with a zero delta
 * projection and its time embedder reading the start time (t_start), so at
 * initialisation F(z, delta) = v(z, 1): f(z, delta) is the teacher's Euler
 * step from t = 1 (f(z, 1) its one-step Euler sample), exact as delta -> 0.
 * Saving and loading keep that.  The auxiliary network is a copy of the
 * teacher. */
static void test_network_teacher(void)
{
    nn_model *tn = mlp(3, 0, 32, 21);
    CHECK_OK(nn_model_randomize(tn, 5, 0.2f));
    fmd_teacher *T = NULL;
    CHECK_OK(teacher_wrap_network(be, tn, 0, &T));
    if (!T) return;
    fmd_student *s = NULL;
    CHECK_OK(fmd_student_create(T, be, NULL, &s));
    if (!s) {
        fmd_teacher_destroy(T);
        return;
    }
    enum { N = 8 };
    float z[N * 3], dl[N], tt[N], f[N * 3], v[N * 3], e[N * 3];
    for (int i = 0; i < N * 3; i++) z[i] = (float)tu_normal();
    for (int i = 0; i < N; i++) {
        dl[i] = (float)(i + 1) / N;
        tt[i] = 1.0f;
    }
    CHECK_OK(fmd_student_forward(s, z, dl, NULL, N, f));
    CHECK_OK(fmd_teacher_velocity(T, v, z, tt, NULL, N));
    for (int i = 0; i < N * 3; i++) e[i] = z[i] - dl[i / 3] * v[i];
    CHECK_MSG(tu_max_abs_diff(f, e, N * 3) < 1e-5, "f(z, d) vs z - d v(z, 1): %g",
              tu_max_abs_diff(f, e, N * 3));
    const char *path = "test_network_student.fmd";
    fmd_student *l = NULL;
    CHECK_OK(fmd_student_save(s, path));
    CHECK_OK(fmd_student_load(path, be, &l));
    if (l) {
        float g[N * 3];
        CHECK_OK(fmd_student_forward(l, z, dl, NULL, N, g));
        CHECK_MSG(tu_max_abs_diff(f, g, N * 3) == 0, "loaded network student differs by %g",
                  tu_max_abs_diff(f, g, N * 3));
        fmd_student_destroy(l);
    }
    remove(path);
    /* the student's size options do not apply to a network teacher */
    fmd_options *bad;
    CHECK_OK(fmd_options_create(&bad));
    CHECK_OK(fmd_options_set_i64(bad, "width", 8));
    fmd_student *s2 = NULL;
    CHECK_STATUS(fmd_student_create(T, be, bad, &s2), FMD_ERR_INVALID_ARG);
    fmd_options_destroy(bad);
    fmd_options *o = small_opts();   /* has aux_width: refused with aux = copy */
    fmd_distiller *d = NULL;
    CHECK_STATUS(fmd_distiller_create(T, s, be, o, &d), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "aux_width") != NULL);
    fmd_options_destroy(o);
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "batch", 32));
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    CHECK_OK(fmd_distiller_run(d, 5, NULL, NULL));
    fmd_distill_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(fmd_distiller_stats(d, &st));
    /* g = teacher copy: v_N - v = 0 at the first step, not later */
    CHECK(st.step == 5 && isfinite(st.loss_pred) && st.vdiff_norm > 0);
    /* a checkpoint whose student reads the end time (the files made before
     * t_start) is refused by name */
    const char *ck = "test_network_ck.fmd", *old = "test_network_ck_old.fmd";
    CHECK_OK(fmd_distiller_save(d, ck));
    copy_checkpoint_altered(ck, old, "t_start", 0);
    fmd_distiller_destroy(d);
    expect_resume_refused(T, s, o, old, FMD_ERR_INVALID_ARG, "t_start");
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "batch", 32));
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    CHECK_OK(fmd_distiller_resume(d, ck));
    CHECK(fmd_distiller_steps(d) == 5);
    remove(ck);
    remove(old);
    fmd_distiller_destroy(d);
    fmd_options_destroy(o);
    fmd_student_destroy(s);
    fmd_teacher_destroy(T);
}

/* CI: distil ring8 briefly; the one-step student beats the teacher's
 * 2-step Euler on map error and energy distance and covers every mode. */
static void test_ring8_beats_euler2(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_options *so, *o;
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_set_i64(so, "width", 128));
    CHECK_OK(fmd_options_set_i64(so, "temb_dim", 64));
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "batch", 256));
    CHECK_OK(fmd_options_set_f64(o, "lr", 1e-3));
    CHECK_OK(fmd_options_set_f64(o, "step_h", 0.1));
    fmd_student *s;
    fmd_distiller *d;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    double t0 = fmd_now();
    CHECK_OK(fmd_distiller_run(d, 500, NULL, NULL));
    double secs = fmd_now() - t0;
    fmd_eval_result rs, re;
    tu_eval_vs_euler(T, d, 1000, 2, &rs, &re);
    printf("ring8, 500 steps (%.1f s): student map %.4f ED %.5f modes %d/%d; "
           "Euler-2 map %.4f ED %.5f; floor %.5f\n", secs, rs.map_error, rs.energy_distance,
           rs.modes_covered, rs.modes_total, re.map_error, re.energy_distance, rs.energy_floor);
    CHECK(rs.map_error < re.map_error);
    CHECK(rs.energy_distance < re.energy_distance);
    CHECK(rs.modes_total == 8 && rs.modes_covered == 8);
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
    fmd_options_destroy(so);
    fmd_options_destroy(o);
    fmd_teacher_destroy(T);
}

/* alpha_end: lambda / (mean|Delta_G| / (mean|v_N - v| + eps)) is alpha along
 * the learning rate's cosine, from alpha at step 0 to alpha_end at
 * decay_steps and after. */
static void test_alpha_schedule(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_options *so = student_opts();
    fmd_student *s;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    fmd_options *o = small_opts();
    static const char *const kv[] = {"alpha=0.8", "alpha_end=0.2", "decay_steps=4",
                                     "lambda_eps=1e-3"};
    for (int i = 0; i < 4; i++) CHECK_OK(fmd_options_parse(o, kv[i]));
    fmd_distiller *d = NULL;
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    for (int k = 0; d && k < 6; k++) {
        CHECK_OK(fmd_distiller_step(d));
        fmd_distill_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        CHECK_OK(fmd_distiller_stats(d, &st));
        double p = k < 4 ? k / 4.0 : 1.0;
        double want = 0.2 + 0.6 * 0.5 * (1.0 + cos(3.14159265358979323846 * p));
        double got = st.lambda * (st.vdiff_norm + 1e-3) / st.delta_norm;
        CHECK_MSG(fabs(got - want) < 1e-6 * want, "step %d: alpha %.9g, want %.9g", k, got, want);
    }
    fmd_distiller_destroy(d);
    fmd_options_destroy(o);
    fmd_options_destroy(so);
    fmd_student_destroy(s);
    fmd_teacher_destroy(T);
}

int main(void)
{
    tu_seed(42);
    /* one worker thread unless the caller chose: the bit-identical resume is
     * defined per thread count, and on a shared CI machine OpenMP's spinning
     * workers cost more than they give at these sizes */
    setenv("FMD_NUM_THREADS", "1", 0);
    CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL)); /* counts allocations */
    CHECK_OK(fmd_backend_open("cpu", &be));
    if (!be) return tu_finish("test_distiller");
    test_targets();
    test_data_frac();
    test_data_pool();
    test_correction_sign();
    test_reference();
    test_aux_decay();
    test_kernel_field(0);
    test_kernel_field(1);
    test_kernel_pull();
    test_resume(RESUME_PLAIN);
    test_resume(RESUME_REF);
    test_resume(RESUME_POOL);
    test_resume(RESUME_KERNEL);
    test_nonfinite();
    test_options_and_api();
    test_alpha_schedule();
    test_network_teacher();
    test_ring8_beats_euler2();
    fmd_backend_destroy(be);
    return tu_finish("test_distiller");
}
