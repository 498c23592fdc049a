/* test_distiller.c - the FreeFlow distiller (lib/algo/freeflow.c and its
 * parts, lib/api/distiller.c, lib/api/student.c, lib/api/evaluate.c):
 *   - the exact JVP target and the central finite-difference target agree,
 *     and the teacher-step target's residual tends to (h/delta) times the
 *     JVP residual as h -> 0 (the same fixed point);
 *   - the correction moves one-step samples the way docs/math.md section 7 says
 *     (1-D sign check);
 *   - save / resume continues bit for bit, a resume continues the stored run
 *     (options, teacher, student) and refuses what it cannot continue;
 *   - the learning rate follows the planned length of the run;
 *   - a failed step changes nothing (every tensor and the step counter);
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
#include "api/distiller_internal.h"
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
                      int64_t b, const fmd_guidance *g)
{
    vctx *c = ctx;
    return teacher_velocity_dev(c->T, be, v, x, t, labels, b, g);
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
    distiller_default_ff_config(&c);
    c.batch = batch;
    c.corr = 0;
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
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (t) CHECK_OK(ff_prediction_target(t, ts, fs, dl2, &rows2));
    ff_destroy(t);
    c.target = FF_TARGET_JVP;
    CHECK_OK(ff_create(be, &c, s, e, NULL, 0, vel, &vc, &t));
    if (t) CHECK_OK(ff_prediction_target(t, tj, fj, dl, &rows));
    ff_destroy(t);
    CHECK(memcmp(dl, dl2, sizeof dl) == 0);
    /* rows with delta < h take a shorter step; compare the others */
    static float rs[B * 2], rj[B * 2];
    int m = 0;
    for (int i = 0; i < B; i++) {
        if (dl[i] < 0.05f) continue;
        for (int k = 0; k < 2; k++) {
            rs[m * 2 + k] = (ts[i * 2 + k] - fs[i * 2 + k]) * dl[i] / (float)c.step_h;
            rj[m * 2 + k] = tj[i * 2 + k] - fj[i * 2 + k];
        }
        m++;
    }
    CHECK(m > B / 2);
    err = tu_rel_err(rs, rj, m * 2);
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
    c.pred_g = (fmd_guidance){3.0f, 0.0f, 1.0f};
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

/* Correction sign (docs/math.md section 7) on a 1-D teacher: when v_N - v points
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
        distiller_default_ff_config(&c);
        c.batch = 128;
        c.pred = 0;
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

/* mode RESUME_POOL: the data-based mix on a teacher pool (data_pool,
 * regenerated on resume). */
enum { RESUME_PLAIN, RESUME_POOL };

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
    /* a metadata key named drop is left out, or with shorten given the value "abc" */
    for (int i = 0; i < fmdf_meta_count(r); i++)
        if (strcmp(fmdf_meta_key(r, i), drop) != 0 || shorten)
            CHECK_OK(fmdf_writer_add_meta(w, fmdf_meta_key(r, i), strcmp(fmdf_meta_key(r, i), drop)
                                                                      ? fmdf_meta_value(r, i) : "abc"));
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
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_options *o = small_opts(), *so = student_opts();
    if (mode == RESUME_POOL) pool_opts(o, 300);
    const char *path = "test_distiller_resume.fmd";
    enum { K = 6 };
    /* uninterrupted: 2K steps (the planned length is the first run's: 2K) */
    fmd_student *s1, *s2, *s3;
    fmd_distiller *d1, *d2, *d3;
    CHECK_OK(fmd_options_set_i64(o, "steps", 2 * K));
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
    /* a distiller given another value of a stored option is refused, naming
     * the key and both values */
    fmd_options *o2 = small_opts();
    CHECK_OK(fmd_options_set_i64(o2, "seed", 4));
    expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG, "option 'seed' = 4 here");
    if (mode == RESUME_POOL) { /* another pool is another run */
        o2 = small_opts();
        pool_opts(o2, 301);
        expect_resume_refused(T, s3, o2, path, FMD_ERR_INVALID_ARG, "'data_pool' = 301 here");
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

/* Resume continues the run the checkpoint recorded: a distiller made with
 * no options takes the stored ones (rebuilding its trainer: another batch)
 * and continues bit for bit; the planned length may change (logged); a
 * different teacher, student or stored option given otherwise is refused by
 * name before anything is read; a checkpoint missing an option, and the
 * files of libfmd 0.1, are refused as such (their students still load,
 * with the same outputs). */
static void test_resume_semantics(void)
{
    fmd_teacher *T, *G;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    CHECK_OK(fmd_teacher_create_preset("grid25", &G));
    fmd_options *o = small_opts(), *so = student_opts();
    CHECK_OK(fmd_options_parse(o, "lr=2e-3"));
    CHECK_OK(fmd_options_parse(o, "steps=10"));
    CHECK_OK(fmd_options_parse(o, "aux_updates=2"));
    const char *path = "test_distiller_semantics.fmd";
    fmd_student *s1, *s2;
    fmd_distiller *d1, *d2;
    CHECK_OK(fmd_student_create(T, be, so, &s1));
    CHECK_OK(fmd_distiller_create(T, s1, be, o, &d1));
    CHECK_OK(fmd_distiller_run(d1, 4, NULL, NULL));
    CHECK_OK(fmd_distiller_save(d1, path));
    CHECK_OK(fmd_distiller_run(d1, 4, NULL, NULL));
    /* no options at all: the stored run continues */
    CHECK_OK(fmd_student_create(T, be, so, &s2));
    CHECK_OK(fmd_distiller_create(T, s2, be, NULL, &d2));
    if (d2) {
        CHECK(distiller_ff_config(d2)->batch == 512);
        CHECK_OK(fmd_distiller_resume(d2, path));
        const ff_config *c = distiller_ff_config(d2);
        CHECK_MSG(c->batch == 64 && c->seed == 3 && c->opt.lr == 2e-3 && c->aux_updates == 2,
                  "stored options not adopted: batch %lld seed %llu lr %g aux_updates %lld",
                  (long long)c->batch, (unsigned long long)c->seed, c->opt.lr,
                  (long long)c->aux_updates);
        CHECK(fmd_distiller_planned_steps(d2) == 10);
        CHECK_OK(fmd_distiller_run(d2, 4, NULL, NULL));
        int64_t np = fmd_student_num_params(s1);
        float *a = malloc(np * sizeof(float)), *b = malloc(np * sizeof(float));
        download_params(s1, a);
        download_params(s2, b);
        CHECK_MSG(memcmp(a, b, np * sizeof(float)) == 0, "resumed with stored options differs");
        free(a);
        free(b);
    }
    fmd_distiller_destroy(d2);
    /* the planned length may change: applied */
    fmd_options *o2 = small_opts();
    CHECK_OK(fmd_options_parse(o2, "steps=30"));
    CHECK_OK(fmd_distiller_create(T, s2, be, o2, &d2));
    if (d2) {
        CHECK_OK(fmd_distiller_resume(d2, path));
        CHECK(fmd_distiller_planned_steps(d2) == 30 && fmd_distiller_steps(d2) == 4);
    }
    fmd_distiller_destroy(d2);
    fmd_options_destroy(o2);
    /* another lr given: refused, naming both values */
    o2 = small_opts();
    CHECK_OK(fmd_options_parse(o2, "lr=1e-3"));
    expect_resume_refused(T, s2, o2, path, FMD_ERR_INVALID_ARG, "'lr' = 0.001");
    /* another teacher */
    fmd_student *sg;
    CHECK_OK(fmd_student_create(G, be, so, &sg));
    expect_resume_refused(G, sg, small_opts(), path, FMD_ERR_INVALID_ARG, "teacher");
    fmd_student_destroy(sg);
    /* another student: its width is named */
    fmd_options *wide = student_opts();
    CHECK_OK(fmd_options_set_i64(wide, "width", 24));
    CHECK_OK(fmd_student_create(T, be, wide, &sg));
    expect_resume_refused(T, sg, small_opts(), path, FMD_ERR_INVALID_ARG, "width = 32 against 24");
    fmd_student_destroy(sg);
    fmd_options_destroy(wide);
    /* a checkpoint that does not record an option */
    const char *cut = "test_distiller_semantics_cut.fmd";
    copy_checkpoint_altered(path, cut, "distiller.option.alpha", 0);
    expect_resume_refused(T, s2, small_opts(), cut, FMD_ERR_FORMAT, "'alpha'");
    copy_checkpoint_altered(path, cut, "distiller.option.lr", 1);   /* lr = "abc" */
    expect_resume_refused(T, s2, small_opts(), cut, FMD_ERR_FORMAT, "stored option 'lr' = 'abc'");
    copy_checkpoint_altered(path, cut, "distiller.option.lr_decay", 1);
    expect_resume_refused(T, s2, small_opts(), cut, FMD_ERR_FORMAT, "'lr_decay' = 'abc'");
    remove(cut);
    /* libfmd 0.1: the checkpoint is refused as such; its student (and the
     * checkpoint's EMA student) loads and gives the outputs it gave then */
    const char *src = getenv("FMD_SOURCE_DIR");
    char old[1024], stu[1024], out[1024];
    snprintf(old, sizeof old, "%s/tests/data/v0_1/distiller_ring8.fmd", src ? src : "..");
    snprintf(stu, sizeof stu, "%s/tests/data/v0_1/student_ring8.fmd", src ? src : "..");
    snprintf(out, sizeof out, "%s/tests/data/v0_1/student_ring8_out.npy", src ? src : "..");
    fmd_options *so16;
    CHECK_OK(fmd_options_create(&so16));
    CHECK_OK(fmd_options_parse(so16, "width=16"));
    CHECK_OK(fmd_options_parse(so16, "depth=2"));
    CHECK_OK(fmd_options_parse(so16, "temb_dim=8"));
    CHECK_OK(fmd_student_create(T, be, so16, &sg));
    expect_resume_refused(T, sg, NULL, old, FMD_ERR_FORMAT, "libfmd 0.1");
    fmd_student_destroy(sg);
    fmd_options_destroy(so16);
    const char *dt;
    int nd;
    int64_t sh[8];
    void *want = NULL;
    CHECK_OK(fmd_npy_load(out, &dt, &nd, sh, 8, &want));
    float z[16], dl[8], got[16];
    CHECK_OK(fmd_prior_noise(z, 8, 2, 5, 0));
    for (int i = 0; i < 8; i++) dl[i] = 1.0f;
    for (int k = 0; k < 2 && want; k++) {
        fmd_student *ls = NULL;
        CHECK_OK(fmd_student_load(k ? old : stu, be, &ls));
        if (ls) CHECK_OK(fmd_student_forward(ls, z, dl, NULL, 8, got));
        /* same weights, same network: only the GEMM's blocking (threads, build)
         * may differ from the writer's, a few ulp of outputs of size ~1 */
        if (ls) CHECK_MSG(tu_max_abs_diff(got, want, 16) < 1e-6, "0.1 student '%s' gives other "
                          "outputs (max diff %g)", k ? old : stu, tu_max_abs_diff(got, want, 16));
        fmd_student_destroy(ls);
    }
    fmd_npy_free(want);
    fmd_distiller_destroy(d1);
    fmd_student_destroy(s1);
    fmd_student_destroy(s2);
    fmd_options_destroy(o);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
    fmd_teacher_destroy(G);
    remove(path);
}

/* The learning rate follows the planned length: cosine from lr to
 * lr_min * lr over `steps` after a linear warm-up; without the option the
 * first run's length is the plan, and a first fmd_distiller_step plans
 * 10000 steps. */
static void test_schedule(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    fmd_options *so = student_opts();
    fmd_student *s;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    for (int k = 0; k < 3; k++) {
        fmd_options *o = small_opts();
        int64_t plan = k == 0 ? 8 : k == 1 ? 6 : 10000, warm = k == 0 ? 2 : 0;
        if (k == 0) {
            CHECK_OK(fmd_options_parse(o, "steps=8"));
            CHECK_OK(fmd_options_parse(o, "lr_warmup=2"));
        }
        fmd_distiller *d = NULL;
        CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
        if (d) CHECK(fmd_distiller_planned_steps(d) == (k == 0 ? 8 : 0));
        for (int i = 0; d && i < 9; i++) {
            if (k == 1 && i == 0) CHECK_OK(fmd_distiller_run(d, 6, NULL, NULL));
            if (k == 1 && i >= 6) break;
            if (k != 1) CHECK_OK(fmd_distiller_step(d));
            fmd_distill_stats st;
            memset(&st, 0, sizeof st);
            st.struct_size = sizeof st;
            CHECK_OK(fmd_distiller_stats(d, &st));
            int64_t j = k == 1 ? 5 : i;   /* the step the stats are of */
            double want;
            if (j < warm) want = 1e-3 * (double)(j + 1) / (double)warm;
            else {
                double p = (double)(j - warm) / (double)(plan - warm);
                if (p > 1) p = 1;
                want = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + cos(3.14159265358979323846 * p));
            }
            CHECK_MSG(fabs(st.lr - want) < 1e-12, "plan %lld, step %lld: lr %.9g, want %.9g",
                      (long long)plan, (long long)j, st.lr, want);
        }
        if (d) CHECK(fmd_distiller_planned_steps(d) == plan);
        fmd_distiller_destroy(d);
        fmd_options_destroy(o);
    }
    fmd_student_destroy(s);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
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

/* A step that fails changes nothing: with three auxiliary updates per step
 * and the teacher failing at each of its calls of a step in turn (NaN, or a
 * callback that refuses), the state saved after the failed step is the
 * state saved before it, byte for byte (every tensor, the step counter). */
static int fail_at, calls_seen, fail_nan;
static int cb_fail(void *user, float *v, const float *x, const float *t, const int32_t *labels,
                   int64_t b, int64_t dim)
{
    int rc = cb_vel(user, v, x, t, labels, b, dim);
    if (++calls_seen != fail_at) return rc;
    if (!fail_nan) return 1;
    v[0] = NAN;
    return 0;
}

static void test_failed_step(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_callback(2, 0, cb_fail, NULL, &T));
    fmd_options *o = small_opts(), *so = student_opts();
    CHECK_OK(fmd_options_parse(o, "aux_updates=3"));
    fmd_student *s;
    fmd_distiller *d = NULL;
    CHECK_OK(fmd_student_create(T, be, so, &s));
    fail_at = 0;
    CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    CHECK_OK(fmd_distiller_run(d, 3, NULL, NULL));
    const char *p0 = "test_failed_step_0.fmd", *p1 = "test_failed_step_1.fmd";
    CHECK_OK(fmd_distiller_save(d, p0));
    /* teacher calls of a step: 2 for the teacher-step target, then one per
     * auxiliary update */
    for (fail_nan = 0; fail_nan < 2; fail_nan++)
        for (int at = 1; at <= 5; at++) {
            calls_seen = 0;
            fail_at = at;
            fmd_status st = fmd_distiller_step(d);
            CHECK_MSG(st == (fail_nan ? FMD_ERR_NONFINITE : FMD_ERR_CANCELLED),
                      "teacher failing at call %d (%s): step returned %s", at,
                      fail_nan ? "NaN" : "refused", fmd_status_name(st));
            CHECK(fmd_distiller_steps(d) == 3);
            CHECK_OK(fmd_distiller_save(d, p1));
            long n0 = 0, n1 = 0;
            unsigned char *b0 = slurp(p0, &n0), *b1 = slurp(p1, &n1);
            CHECK_MSG(b0 && b1 && n0 == n1 && memcmp(b0, b1, n0) == 0,
                      "the state changed in a step that failed at teacher call %d (%s)", at,
                      fail_nan ? "NaN" : "refused");
            free(b0);
            free(b1);
        }
    fail_at = 0;
    CHECK_OK(fmd_distiller_step(d));
    CHECK(fmd_distiller_steps(d) == 4);
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
    fmd_options_destroy(o);
    fmd_options_destroy(so);
    fmd_teacher_destroy(T);
    remove(p0);
    remove(p1);
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
    expect_bad(T, s, "bacth=64", "did you mean 'batch'");
    expect_bad(T, s, "lr=-1", "'lr' = -1 outside (0, 10]");
    expect_bad(T, s, "batch=1", "batch");
    expect_bad(T, s, "batch=abc", "batch");
    expect_bad(T, s, "batch=64.5", "'batch' = 64.5 must be an integer");
    expect_bad(T, s, "target=euler", "target");
    expect_bad(T, s, "ema=1.5", "ema");
    expect_bad(T, s, "lr_decay=step", "lr_decay");
    expect_bad(T, s, "aux=copy", "aux");
    /* options that act only in some settings are refused elsewhere */
    expect_bad(T, s, "fd_eps=1e-2", "'fd_eps' applies with target=fd only");
    expect_bad(T, s, "corr=0 alpha=0.5", "'alpha' applies with corr=1 only");
    expect_bad(T, s, "weight_eps=1e-2", "weight_k>0");
    expect_bad(T, s, "lr_decay=none lr_min=0.5", "lr_min");
    expect_bad(T, s, "checkpoint_every=5", "checkpoint_every");
    expect_bad(T, s, "guidance_lo=0.2", "'guidance_lo' applies with guidance!=1");
    expect_bad(T, s, "guidance=3", "no classes");
    /* removed and renamed keys say so */
    expect_bad(T, s, "step_h_end=0.01", "removed");
    expect_bad(T, s, "corr_field=kernel", "removed");
    expect_bad(T, s, "decay_steps=100", "renamed 'steps'");
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
     * and with several auxiliary updates) */
    static const char *const targets[] = {"teacher-step", "jvp", "fd", "teacher-step"};
    for (int k = 0; k < 4; k++) {
        fmd_options *oa = small_opts();
        CHECK_OK(fmd_options_set_str(oa, "target", targets[k]));
        if (k == 3) CHECK_OK(fmd_options_parse(oa, "aux_updates=3"));
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
    expect_resume_refused(T, s, o, old, FMD_ERR_INVALID_ARG, "t_start = 0 against 1");
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
    test_resume(RESUME_PLAIN);
    test_resume(RESUME_POOL);
    test_resume_semantics();
    test_schedule();
    test_nonfinite();
    test_failed_step();
    test_options_and_api();
    test_network_teacher();
    test_ring8_beats_euler2();
    fmd_backend_destroy(be);
    return tu_finish("test_distiller");
}
