/* test_sampler.c - fmd_sampler: sample i depends only on (seed, i) whatever
 * the batch split; student paths equal the public student forward on the
 * same prior noise; finish = the teacher's solver from t = 1 - delta;
 * per-call guidance is applied and restored; buffer lengths and options are
 * checked; Best-of-N with a reward preferring one mode returns samples of
 * that mode, batched and per-candidate rewards agree, refinement is the
 * teacher's solve from the winning noise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "fmd.h"

static fmd_options *opts_kv(const char *a, const char *b, const char *c)
{
    fmd_options *o = NULL;
    if (fmd_options_create(&o) != FMD_OK) return NULL;
    const char *kv[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (kv[i]) fmd_options_parse(o, kv[i]);
    return o;
}

static int same(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* Means of the components of a mixture teacher, estimated from samples. */
static void component_means(fmd_teacher *T, int K, double *mu)
{
    enum { N = 20000 };
    static float x[N * 2];
    static int32_t comp[N];
    CHECK_OK(fmd_teacher_sample_data(T, N, 99, 0, NULL, x, comp));
    int64_t cnt[64] = {0};
    memset(mu, 0, sizeof(double) * 2 * (size_t)K);
    for (int i = 0; i < N; i++) {
        mu[2 * comp[i]] += x[2 * i];
        mu[2 * comp[i] + 1] += x[2 * i + 1];
        cnt[comp[i]]++;
    }
    for (int k = 0; k < K; k++) {
        mu[2 * k] /= (double)(cnt[k] ? cnt[k] : 1);
        mu[2 * k + 1] /= (double)(cnt[k] ? cnt[k] : 1);
    }
}

static int nearest(const double *mu, int K, const float *x)
{
    int best = 0;
    double bd = INFINITY;
    for (int k = 0; k < K; k++) {
        double d = (x[0] - mu[2 * k]) * (x[0] - mu[2 * k]) + (x[1] - mu[2 * k + 1]) * (x[1] - mu[2 * k + 1]);
        if (d < bd) bd = d, best = k;
    }
    return best;
}

typedef struct {
    double target[2];
    int calls;
    int nan_at;
} reward_ctx;

static double reward_one(const float *x, int64_t dim, int32_t label, void *user)
{
    reward_ctx *r = user;
    r->calls++;
    if (r->nan_at && r->calls == r->nan_at) return NAN;
    double d = 0;
    for (int64_t j = 0; j < dim; j++) d += (x[j] - r->target[j]) * (x[j] - r->target[j]);
    return -d;
}

static int reward_batch(double *s, const float *x, const int32_t *labels, int64_t n, int64_t dim,
                        void *user)
{
    for (int64_t i = 0; i < n; i++) s[i] = reward_one(x + i * dim, dim, labels[i], user);
    return 0;
}

static int reward_cancel(double *s, const float *x, const int32_t *labels, int64_t n, int64_t dim,
                         void *user)
{
    return 1;
}

int main(void)
{
    fmd_backend *be = NULL;
    CHECK_OK(fmd_backend_open("cpu", &be));
    fmd_teacher *T = NULL;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    const int64_t D = 2, n = 37;
    float a[37 * 2], b[37 * 2], c[37 * 2];

    /* ---- teacher: split invariance and equality with fmd_teacher_sample */
    fmd_sampler *st = NULL;
    CHECK_STATUS(fmd_sampler_create(NULL, NULL, NULL, &st), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmd_sampler_create(NULL, T, NULL, &st));
    CHECK(fmd_sampler_dim(st) == 2 && fmd_sampler_num_classes(st) == 0);
    fmd_options *eu = opts_kv("solver=euler", "steps=6", NULL);
    int64_t nfe = 0;
    CHECK_OK(fmd_sampler_sample(st, NULL, n, 5, 100, eu, a, n * D, &nfe));
    CHECK(nfe == 6);
    CHECK_OK(fmd_sampler_sample(st, NULL, 11, 5, 100, eu, b, 11 * D, NULL));
    CHECK_OK(fmd_sampler_sample(st, NULL, n - 11, 5, 111, eu, b + 11 * D, (n - 11) * D, NULL));
    CHECK_MSG(same(a, b, n * D), "teacher samples depend on the batch split");
    fmd_options *eu_solve = opts_kv("solver=euler", "steps=6", NULL);
    CHECK_OK(fmd_teacher_sample(T, c, NULL, n, 5, 100, eu_solve, NULL));
    CHECK_MSG(same(a, c, n * D), "sampler noise differs from fmd_teacher_sample's");
    CHECK_OK(fmd_sampler_sample(st, NULL, n, 6, 100, eu, b, n * D, NULL));
    CHECK_MSG(!same(a, b, n * D), "another seed gave the same samples");

    /* ---- buffer lengths and argument errors */
    CHECK_STATUS(fmd_sampler_sample(st, NULL, n, 5, 0, eu, a, n * D - 1, NULL), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "out holds") != NULL);
    CHECK_STATUS(fmd_sampler_sample(st, NULL, -1, 5, 0, eu, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_sampler_sample(st, NULL, n, 5, 0, eu, NULL, n * D, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_sampler_sample(NULL, NULL, n, 5, 0, eu, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmd_sampler_sample(st, NULL, 0, 5, 0, eu, NULL, 0, NULL));
    fmd_options *bad = opts_kv("stepz=3", NULL, NULL);
    CHECK_STATUS(fmd_sampler_sample(st, NULL, n, 5, 0, bad, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "stepz") != NULL);
    fmd_sampler *never = NULL;
    CHECK_STATUS(fmd_sampler_create(NULL, T, bad, &never), FMD_ERR_INVALID_ARG);
    CHECK(never == NULL);
    fmd_options *stud = opts_kv("method=student", NULL, NULL);
    CHECK_STATUS(fmd_sampler_sample(st, NULL, n, 5, 0, stud, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    fmd_options *refine = opts_kv("refine=1", NULL, NULL);
    CHECK_STATUS(fmd_sampler_sample(st, NULL, n, 5, 0, refine, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    fmd_options *badd = opts_kv("method=teacher", "delta=0.5", NULL);
    CHECK_STATUS(fmd_sampler_sample(st, NULL, n, 5, 0, badd, a, n * D, NULL), FMD_ERR_INVALID_ARG);

    /* ---- student: the public forward on the same noise, split invariance */
    fmd_options *so = opts_kv("width=32", "depth=2", "temb_dim=16");
    fmd_student *S = NULL;
    CHECK_OK(fmd_student_create(T, be, so, &S));
    fmd_sampler *ss = NULL;
    CHECK_OK(fmd_sampler_create(S, T, NULL, &ss));
    CHECK_OK(fmd_sampler_sample(ss, NULL, n, 9, 3, NULL, a, n * D, &nfe));
    CHECK(nfe == 1);
    float z[37 * 2], ones[37], half[37];
    for (int i = 0; i < n; i++) ones[i] = 1.0f, half[i] = 0.5f;
    CHECK_OK(fmd_prior_noise(z, n, D, 9, 3));
    CHECK_OK(fmd_student_forward(S, z, ones, NULL, n, c));
    CHECK_MSG(tu_max_abs_diff(a, c, n * D) <= 1e-5, "student sample != f(z, 1) on the prior noise");
    for (int split = 1; split < n; split += 12) {
        CHECK_OK(fmd_sampler_sample(ss, NULL, split, 9, 3, NULL, b, split * D, NULL));
        CHECK_OK(fmd_sampler_sample(ss, NULL, n - split, 9, 3 + split, NULL, b + split * D,
                                    (n - split) * D, NULL));
        CHECK_MSG(tu_max_abs_diff(a, b, n * D) <= 1e-5, "student samples depend on the split %d", split);
    }
    /* more rows than one sampler chunk (65,536 rows for a 2-D student):
     * the chunks' noise and output offsets line up with one forward */
    {
        const int64_t nl = 70001;
        float *zl = malloc((size_t)(nl * D) * sizeof(float)), *dl1 = malloc((size_t)nl * sizeof(float));
        float *sl = malloc((size_t)(nl * D) * sizeof(float)), *fl = malloc((size_t)(nl * D) * sizeof(float));
        CHECK(zl && dl1 && sl && fl);
        if (zl && dl1 && sl && fl) {
            for (int64_t i = 0; i < nl; i++) dl1[i] = 1.0f;
            CHECK_OK(fmd_sampler_sample(ss, NULL, nl, 9, 3, NULL, sl, nl * D, NULL));
            CHECK_OK(fmd_prior_noise(zl, nl, D, 9, 3));
            CHECK_OK(fmd_student_forward(S, zl, dl1, NULL, nl, fl));
            CHECK_MSG(tu_max_abs_diff(sl, fl, nl * D) <= 1e-5,
                      "a %lld-row sample != f(z, 1) on the prior noise", (long long)nl);
        }
        free(zl);
        free(dl1);
        free(sl);
        free(fl);
    }
    /* intermediate delta */
    fmd_options *dh = opts_kv("delta=0.5", NULL, NULL);
    CHECK_OK(fmd_sampler_sample(ss, NULL, n, 9, 3, dh, a, n * D, NULL));
    CHECK_OK(fmd_student_forward(S, z, half, NULL, n, c));
    CHECK(tu_max_abs_diff(a, c, n * D) <= 1e-6);
    /* finish with the teacher from t = 1 - delta */
    fmd_options *fin = opts_kv("delta=0.5", "finish=1", "solver=heun");
    fmd_options_parse(fin, "steps=4");
    CHECK_OK(fmd_sampler_sample(ss, NULL, n, 9, 3, fin, a, n * D, &nfe));
    CHECK(nfe == 1 + 8);
    fmd_options *tail = opts_kv("solver=heun", "steps=4", "t_start=0.5");
    CHECK_OK(fmd_teacher_solve(T, c, NULL, n, tail, NULL));
    CHECK(tu_max_abs_diff(a, c, n * D) <= 1e-5);
    /* guidance on a pure student call is refused; delta outside (0, 1] too */
    fmd_options *cfgs = opts_kv("cfg=2", NULL, NULL);
    CHECK_STATUS(fmd_sampler_sample(ss, NULL, n, 9, 3, cfgs, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    fmd_options *d0 = opts_kv("delta=0", NULL, NULL);
    CHECK_STATUS(fmd_sampler_sample(ss, NULL, n, 9, 3, d0, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    /* student-only sampler: teacher paths are refused */
    fmd_sampler *s_only = NULL;
    CHECK_OK(fmd_sampler_create(S, NULL, NULL, &s_only));
    CHECK_STATUS(fmd_sampler_sample(s_only, NULL, n, 9, 3, fin, a, n * D, NULL), FMD_ERR_INVALID_ARG);
    fmd_sampler_destroy(s_only);

    /* ---- per-call guidance on a class-conditional teacher, restored after */
    fmd_teacher *TC = NULL;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &TC));
    fmd_sampler *sc = NULL;
    CHECK_OK(fmd_sampler_create(NULL, TC, NULL, &sc));
    const int64_t DC = fmd_sampler_dim(sc), nc = 8;
    CHECK(fmd_sampler_num_classes(sc) == 4);
    float *g1 = calloc((size_t)(nc * DC), sizeof(float)), *g3 = calloc((size_t)(nc * DC), sizeof(float));
    CHECK(g1 && g3);
    int32_t lab[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    int32_t badlab[8] = {0, 1, 2, 5, 0, 1, 2, 3};
    fmd_options *e4 = opts_kv("solver=euler", "steps=4", NULL);
    fmd_options *e4g = opts_kv("solver=euler", "steps=4", "cfg=3");
    CHECK_OK(fmd_sampler_sample(sc, lab, nc, 1, 0, e4, g1, nc * DC, NULL));
    CHECK_OK(fmd_sampler_sample(sc, lab, nc, 1, 0, e4g, g3, nc * DC, NULL));
    CHECK_MSG(tu_max_abs_diff(g1, g3, nc * DC) > 1e-3, "cfg=3 changed nothing");
    double gs, glo, ghi;
    CHECK_OK(fmd_teacher_get_guidance(TC, &gs, &glo, &ghi));
    CHECK_MSG(gs == 1.0 && glo == 0.0 && ghi == 1.0, "guidance not restored (%g %g %g)", gs, glo, ghi);
    CHECK_OK(fmd_teacher_set_guidance(TC, 3.0, 0.0, 1.0));
    CHECK_OK(fmd_sampler_sample(sc, lab, nc, 1, 0, e4, g1, nc * DC, NULL));
    CHECK_MSG(same(g1, g3, nc * DC), "per-call cfg != the teacher's own guidance setting");
    CHECK_STATUS(fmd_sampler_sample(sc, badlab, nc, 1, 0, e4, g1, nc * DC, NULL), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "labels[3]") != NULL);
    /* a conditional student: labels NULL means the null class for every row */
    fmd_student *SC = NULL;
    fmd_options *so2 = opts_kv("width=16", "depth=1", "temb_dim=8");
    CHECK_OK(fmd_student_create(TC, be, so2, &SC));
    fmd_sampler *scs = NULL;
    CHECK_OK(fmd_sampler_create(SC, TC, NULL, &scs));
    int32_t nulls[8] = {4, 4, 4, 4, 4, 4, 4, 4};
    CHECK_OK(fmd_sampler_sample(scs, NULL, nc, 2, 0, NULL, g1, nc * DC, NULL));
    CHECK_OK(fmd_sampler_sample(scs, nulls, nc, 2, 0, NULL, g3, nc * DC, NULL));
    CHECK(same(g1, g3, nc * DC));
    CHECK_OK(fmd_sampler_sample(scs, lab, nc, 2, 0, NULL, g3, nc * DC, NULL));
    fmd_sampler_destroy(scs);
    fmd_student_destroy(SC);
    fmd_options_destroy(so2);
    free(g1);
    free(g3);

    /* ---- Best-of-N: a reward preferring one mode gives samples of that mode */
    double mu[16];
    component_means(T, 8, mu);
    const int target = 3;
    reward_ctx rc = {{mu[2 * target], mu[2 * target + 1]}, 0, 0};
    fmd_options *e8 = opts_kv("solver=euler", "steps=8", NULL);
    const int64_t nb = 24, NC = 64;
    float xb[24 * 2], xb2[24 * 2], zb[24 * 2], zb2[24 * 2];
    double sb[24], sb2[24];
    CHECK_OK(fmd_sampler_best_of_n(st, NULL, nb, 11, 0, NC, reward_one, NULL, &rc, e8, xb, nb * D,
                                   zb, nb * D, sb, &nfe));
    CHECK(nfe == 8 * NC);
    CHECK(rc.calls == nb * NC);
    int hit = 0;
    for (int i = 0; i < nb; i++) hit += nearest(mu, 8, xb + 2 * i) == target;
    CHECK_MSG(hit >= nb - 1, "only %d of %lld best-of-%lld samples in the preferred mode", hit,
              (long long)nb, (long long)NC);
    /* without search the same mode gets about its weight, far fewer */
    CHECK_OK(fmd_sampler_sample(st, NULL, nb, 11, 0, e8, a, nb * D, NULL));
    int plain = 0;
    for (int i = 0; i < nb; i++) plain += nearest(mu, 8, a + 2 * i) == target;
    CHECK_MSG(plain < nb / 2, "plain sampling already hits the mode %d times", plain);
    /* the winners' scores are consistent with the outputs */
    for (int i = 0; i < nb; i++) {
        double d = (xb[2 * i] - rc.target[0]) * (xb[2 * i] - rc.target[0]) +
                   (xb[2 * i + 1] - rc.target[1]) * (xb[2 * i + 1] - rc.target[1]);
        CHECK(fabs(-d - sb[i]) < 1e-9 * (1 + d));
    }
    /* the batched reward and a split batch give the same result */
    CHECK_OK(fmd_sampler_best_of_n(st, NULL, 10, 11, 0, NC, NULL, reward_batch, &rc, e8, xb2, 10 * D,
                                   zb2, 10 * D, sb2, NULL));
    CHECK_OK(fmd_sampler_best_of_n(st, NULL, nb - 10, 11, 10, NC, NULL, reward_batch, &rc, e8,
                                   xb2 + 10 * D, (nb - 10) * D, zb2 + 10 * D, (nb - 10) * D,
                                   sb2 + 10, NULL));
    CHECK_MSG(same(xb, xb2, nb * D) && same(zb, zb2, nb * D), "best-of-N depends on the split");
    /* candidates = 1 is plain sampling */
    CHECK_OK(fmd_sampler_best_of_n(st, NULL, nb, 11, 0, 1, reward_one, NULL, &rc, e8, xb2, nb * D,
                                   NULL, 0, NULL, NULL));
    CHECK(same(xb2, a, nb * D));
    /* refinement = the teacher's solver from the winning noise */
    fmd_options *ref = opts_kv("solver=euler", "steps=8", "refine=1");
    CHECK_OK(fmd_sampler_best_of_n(st, NULL, nb, 11, 0, NC, reward_one, NULL, &rc, ref, xb2, nb * D,
                                   zb2, nb * D, NULL, &nfe));
    CHECK(nfe == 8 * NC + 8);
    CHECK(same(zb, zb2, nb * D));
    memcpy(c, zb, sizeof(float) * (size_t)(nb * D));
    CHECK_OK(fmd_teacher_solve(T, c, NULL, nb, e8, NULL));
    CHECK(tu_max_abs_diff(c, xb2, nb * D) <= 1e-6);
    /* Best-of-N through the student, refined by the teacher */
    fmd_options *sref = opts_kv("refine=1", "solver=euler", "steps=8");
    CHECK_OK(fmd_sampler_best_of_n(ss, NULL, nb, 11, 0, 8, reward_one, NULL, &rc, sref, xb2, nb * D,
                                   zb2, nb * D, NULL, &nfe));
    CHECK(nfe == 8 + 8);
    /* errors: NaN reward, cancel, both/neither reward, bad candidates, short noise buffer */
    rc.calls = 0;
    rc.nan_at = 5;
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 4, reward_one, NULL, &rc, e8, xb, 2 * D,
                                       NULL, 0, NULL, NULL), FMD_ERR_NONFINITE);
    CHECK(strstr(fmd_last_error(), "sample 1, candidate 0") != NULL);
    rc.nan_at = 0;
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 4, NULL, reward_cancel, &rc, e8, xb, 2 * D,
                                       NULL, 0, NULL, NULL), FMD_ERR_CANCELLED);
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 4, reward_one, reward_batch, &rc, e8, xb,
                                       2 * D, NULL, 0, NULL, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 4, NULL, NULL, &rc, e8, xb, 2 * D, NULL, 0,
                                       NULL, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 0, reward_one, NULL, &rc, e8, xb, 2 * D,
                                       NULL, 0, NULL, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 4, reward_one, NULL, &rc, e8, xb, 2 * D,
                                       zb, 3, NULL, NULL), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_sampler_best_of_n(st, NULL, 2, 1, 0, 4, reward_one, NULL, &rc, e8, xb, 3, NULL,
                                       0, NULL, NULL), FMD_ERR_INVALID_ARG);

    fmd_options *all[] = {eu, eu_solve, bad, stud, refine, badd, so, dh, fin, tail, cfgs, d0, e4,
                          e4g, e8, ref, sref};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) fmd_options_destroy(all[i]);
    fmd_sampler_destroy(NULL);
    fmd_sampler_destroy(st);
    fmd_sampler_destroy(ss);
    fmd_sampler_destroy(sc);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_teacher_destroy(TC);
    fmd_backend_destroy(be);
    return tu_finish("test_sampler");
}
