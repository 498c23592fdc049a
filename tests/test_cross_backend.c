/* test_cross_backend.c - one FreeFlow distillation step on two backends
 * (default: cpu and cuda) from the same weights and seed must agree.
 *
 * For each teacher (an MLP network, a Gaussian-mixture preset with a fresh
 * MLP student, a small class-conditional DiT; network weights are the
 * initialisation plus noise so that no layer is zero) both sides get
 * bit-identical teacher and student weights (made on the host, copied), the
 * same options and seed; then:
 *   1. the student's forward before the step:   rel. L2 error <= 1e-5
 *   2. the step's statistics (losses, gradient norm, lambda): rel. <= 1e-3
 *   3. the parameter update dp = p1 - p0:       |dp_B - dp_A| / |dp_A| <= 2e-2
 *      (AdamW's first step is lr * sign(g) per weight, so a gradient that is
 *      float noise on one side can flip; this bound is what is stable)
 *   4. the student's forward after the step:    rel. L2 error <= 1e-4
 * Without a GPU the test reports SKIPPED (77).  For development, two CPU
 * configurations can be compared: test_cross_backend cpu:openblas cpu:onednn
 * (the CPU GEMM provider changes the rounding much as a GPU does). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "api/student_internal.h"
#include "api/teacher_internal.h"
#include "backend.h"
#include "nn/model.h"
#include "testutil.h"

#define TOL_FWD0 1e-5
#define TOL_STATS 1e-3
#define TOL_UPDATE 2e-2
#define TOL_FWD1 1e-4

/* T_POOL: ring8 again, with the data-based rows on a teacher pool the
 * distiller solves itself (option data_pool: Philox noise, Heun, on the
 * backend) mixed into the prediction rows. */
typedef enum { T_MLP = 0, T_MIXTURE = 1, T_DIT = 2, T_POOL = 3, T_COUNT = 4 } tkind;
static const char *const k_tnames[] = {"mlp-network", "mixture-ring8", "dit-tiny", "ring8-pool"};

/* "cpu", "cuda", or "cpu:<gemm provider>" */
static fmd_status open_named(const char *spec, fmd_backend **out)
{
    if (!strncmp(spec, "cpu:", 4)) {
        setenv("FMD_CPU_GEMM", spec + 4, 1);
        fmd_status st = fmd_backend_open("cpu", out);
        unsetenv("FMD_CPU_GEMM");
        return st;
    }
    return fmd_backend_open(spec, out);
}

static void teacher_config(tkind k, nn_config *c)
{
    memset(c, 0, sizeof *c);
    if (k == T_DIT) {
        c->arch = NN_ARCH_DIT;
        c->input_size = 8;
        c->patch_size = 2;
        c->in_channels = 4;
        c->hidden_size = 64;
        c->dit_depth = 2;
        c->num_heads = 4;
        c->mlp_ratio = 4.0f;
        c->num_classes = 10;
        c->temb_dim = 64;
    } else {
        c->arch = NN_ARCH_MLP;
        c->dim = 8;
        c->width = 64;
        c->depth = 3;
        c->temb_dim = 32;
    }
}

#define NBIG 2600               /* rows of the fresh student's forward: more
                                * than the CPU's 1024-row chunk */
#define NDIST 300               /* rows of a forward while a distiller (batch
                                * 64) holds the student */
#define NSMP 20000              /* rows of a sampler call: more than the
                                * device's 16,384-row forward pass */

typedef struct {
    float *fwdbig;             /* fresh student's forward of NBIG rows       */
    int64_t chunk, nbig_out;   /* rows per pass it chose; NBIG * dim         */
    int64_t smp_chunk;         /* rows per pass after a sampler call of NSMP
                                * rows (mixture teacher only; else 0)       */
    int device;                /* a backend without host threads (a GPU)     */
    float *fwdbig2;            /* the first NDIST of those rows after the
                                * step, with the distiller alive             */
    int64_t dchunk;            /* rows per pass of that forward              */
    fmd_distill_stats stats2;  /* the step after that forward                */
    float *fwd0, *fwd1;        /* student forward before / after the step  */
    float *p0, *p1;            /* student parameters before / after         */
    int64_t np, nout;
    fmd_distill_stats stats;
} side_result;

static void side_free(side_result *r)
{
    free(r->fwdbig);
    free(r->fwdbig2);
    free(r->fwd0);
    free(r->fwd1);
    free(r->p0);
    free(r->p1);
    memset(r, 0, sizeof *r);
}

static fmd_status get_params(fmd_backend *be, nn_model *m, float **out, int64_t *n)
{
    *n = nn_model_num_params(m);
    *out = malloc((size_t)*n * sizeof(float));
    if (!*out) return FMD_ERR_OOM;
    be->ops->download(be, *out, nn_model_params(m), (size_t)*n * sizeof(float));
    return be->ops->sync(be);
}

/* One side: build teacher + student on be (weights from the host arrays when
 * given, else returned in them), step once, record everything. */
static fmd_status run_side(fmd_backend *be, tkind k, float **teacher_w, int64_t *teacher_n,
                           float **student_w, int64_t *student_n, side_result *r)
{
    fmd_status st;
    fmd_teacher *T = NULL;
    fmd_student *S = NULL;
    fmd_distiller *D = NULL;
    fmd_options *so = NULL, *dopt = NULL;
    float *zb = NULL, *db = NULL;
    int32_t *lb = NULL;
    memset(r, 0, sizeof *r);
    if (k == T_MIXTURE || k == T_POOL) {
        if ((st = fmd_teacher_create_preset("ring8", &T))) goto done;
    } else {
        nn_config cfg;
        nn_model *net = NULL;
        teacher_config(k, &cfg);
        if ((st = nn_model_create(be, &cfg, 11, &net))) goto done;
        if (*teacher_w) { /* second side: the first side's exact weights */
            if (nn_model_num_params(net) != *teacher_n) { nn_model_destroy(net); st = FMD_ERR_INTERNAL; goto done; }
            be->ops->upload(be, nn_model_params(net), *teacher_w, (size_t)*teacher_n * sizeof(float));
        } else {
            /* first side: the initial weights plus noise, so that the
             * zero-initialised layers (DiT's adaLN-Zero, final layer) are
             * live and the step has gradients everywhere */
            if ((st = get_params(be, net, teacher_w, teacher_n))) {
                nn_model_destroy(net);
                goto done;
            }
            tu_seed(5);
            for (int64_t i = 0; i < *teacher_n; i++) (*teacher_w)[i] += 0.02f * (float)tu_normal();
            be->ops->upload(be, nn_model_params(net), *teacher_w, (size_t)*teacher_n * sizeof(float));
        }
        if ((st = teacher_wrap_network(be, net, 0, &T))) goto done;
    }
    if ((st = fmd_options_create(&so))) goto done;
    fmd_options_set_i64(so, "seed", 3);
    if (k == T_MIXTURE || k == T_POOL) {
        fmd_options_set_i64(so, "width", 64);
        fmd_options_set_i64(so, "depth", 3);
        fmd_options_set_i64(so, "temb_dim", 32);
    }
    if ((st = fmd_student_create(T, be, so, &S))) goto done;
    nn_model *snet = student_net(S);
    if (*student_w) {
        if (nn_model_num_params(snet) != *student_n) { st = FMD_ERR_INTERNAL; goto done; }
        be->ops->upload(be, nn_model_params(snet), *student_w, (size_t)*student_n * sizeof(float));
    } else if ((st = get_params(be, snet, student_w, student_n))) {
        goto done;
    }
    /* a fresh student (no distiller yet) sizes its own forward chunk */
    {
        int64_t d = fmd_student_dim(S), nc = fmd_student_num_classes(S);
        zb = malloc((size_t)(NBIG * d) * sizeof(float));
        db = malloc(NBIG * sizeof(float));
        lb = malloc(NBIG * sizeof(int32_t));
        r->fwdbig = malloc((size_t)(NBIG * d) * sizeof(float));
        r->fwdbig2 = malloc((size_t)(NBIG * d) * sizeof(float));
        if (!zb || !db || !lb || !r->fwdbig || !r->fwdbig2) st = FMD_ERR_OOM;
        if (!st) {
            tu_seed(78);
            tu_fill_normal(zb, NBIG * d, 1.0f);
            for (int64_t i = 0; i < NBIG; i++) {
                db[i] = (float)((i % 97) + 1) / 97.0f;
                lb[i] = nc ? (int32_t)(i % (nc + 1)) : 0;
            }
            st = fmd_student_forward(S, zb, db, nc ? lb : NULL, NBIG, r->fwdbig);
            r->chunk = student_forward_chunk(S);
            r->nbig_out = NBIG * d;
            r->device = be->threads == 0;
        }
        if (st) goto done;
    }
    /* the sampler hands a 2-D student's forward chunks large enough for the
     * device's full pass (lib/api/sampler.c, chunk_rows) */
    if (k == T_MIXTURE) {
        fmd_sampler *smp = NULL;
        float *xs = malloc((size_t)NSMP * 2 * sizeof(float));
        if (!xs) st = FMD_ERR_OOM;
        if (!st) st = fmd_sampler_create(S, NULL, NULL, &smp);
        if (!st) st = fmd_sampler_sample(smp, NULL, NSMP, 5, 0, NULL, xs, (int64_t)NSMP * 2, NULL);
        r->smp_chunk = student_forward_chunk(S);
        fmd_sampler_destroy(smp);
        free(xs);
        if (st) goto done;
    }
    if ((st = fmd_options_create(&dopt))) goto done;
    fmd_options_set_i64(dopt, "batch", 64);
    fmd_options_set_i64(dopt, "seed", 1234);
    fmd_options_set_f64(dopt, "lr", 1e-3);
    fmd_options_set_i64(dopt, "lr_warmup", 0);
    if (k == T_POOL) {
        fmd_options_set_i64(dopt, "data_based", 1);
        fmd_options_set_i64(dopt, "data_pool", 300);
        fmd_options_set_i64(dopt, "data_pool_steps", 4);
        fmd_options_set_f64(dopt, "data_frac", 0.5);
    }
    if ((st = fmd_distiller_create(T, S, be, dopt, &D))) goto done;

    /* fixed probe inputs for the student's forward */
    int64_t dim = fmd_student_dim(S), n = 16;
    int ncls = fmd_student_num_classes(S);
    float *z = malloc((size_t)(n * dim) * sizeof(float)), *delta = malloc((size_t)n * sizeof(float));
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    r->nout = n * dim;
    r->fwd0 = malloc((size_t)r->nout * sizeof(float));
    r->fwd1 = malloc((size_t)r->nout * sizeof(float));
    if (!z || !delta || !lab || !r->fwd0 || !r->fwd1) {
        free(z); free(delta); free(lab);
        st = FMD_ERR_OOM;
        goto done;
    }
    tu_seed(77);
    tu_fill_normal(z, n * dim, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        delta[i] = (float)(i + 1) / (float)n;
        lab[i] = ncls ? (int32_t)(i % (ncls + 1)) : 0;
    }
    const int32_t *labels = ncls ? lab : NULL;
    st = fmd_student_forward(S, z, delta, labels, n, r->fwd0);
    if (!st) st = get_params(be, snet, &r->p0, &r->np);
    if (!st) st = fmd_distiller_step(D);
    if (!st) {
        r->stats.struct_size = sizeof r->stats;
        st = fmd_distiller_stats(D, &r->stats);
    }
    if (!st) st = get_params(be, snet, &r->p1, &r->np);
    if (!st) st = fmd_student_forward(S, z, delta, labels, n, r->fwd1);
    /* a forward of NDIST rows while the distiller holds the student: on a
     * device it grows the distiller's 64-row arena for its passes, on the
     * CPU it keeps it; the next step must not notice either way */
    if (!st) {
        int nc = fmd_student_num_classes(S);
        st = fmd_student_forward(S, zb, db, nc ? lb : NULL, NDIST, r->fwdbig2);
        r->dchunk = student_forward_chunk(S);
    }
    if (!st) st = fmd_distiller_step(D);
    if (!st) {
        r->stats2.struct_size = sizeof r->stats2;
        st = fmd_distiller_stats(D, &r->stats2);
    }
    free(z);
    free(delta);
    free(lab);
done:
    if (st) fprintf(stderr, "%s on %s: %s: %s\n", k_tnames[k], fmd_backend_name(be), fmd_status_name(st),
                    fmd_last_error());
    fmd_distiller_destroy(D);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_options_destroy(so);
    fmd_options_destroy(dopt);
    free(zb);
    free(db);
    free(lb);
    return st;
}

static double rel_l2(const float *b, const float *a, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)b[i] - a[i];
        num += d * d;
        den += (double)a[i] * a[i];
    }
    if (!(num == num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel(double b, double a) { return fabs(b - a) / (fabs(a) + 1e-12); }

static void compare(tkind k, const side_result *A, const side_result *B)
{
    double eb = rel_l2(B->fwdbig, A->fwdbig, A->nbig_out);
    double e0 = rel_l2(B->fwd0, A->fwd0, A->nout);
    double e1 = rel_l2(B->fwd1, A->fwd1, A->nout);
    double num = 0, den = 0;
    for (int64_t i = 0; i < A->np; i++) {
        double da = (double)A->p1[i] - A->p0[i], db = (double)B->p1[i] - B->p0[i];
        num += (db - da) * (db - da);
        den += da * da;
    }
    double eu = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
    const fmd_distill_stats *a = &A->stats, *b = &B->stats;
    double es = rel(b->loss_pred, a->loss_pred);
    if (rel(b->loss_corr, a->loss_corr) > es) es = rel(b->loss_corr, a->loss_corr);
    if (rel(b->loss_aux, a->loss_aux) > es) es = rel(b->loss_aux, a->loss_aux);
    if (rel(b->grad_norm, a->grad_norm) > es) es = rel(b->grad_norm, a->grad_norm);
    if (rel(b->lambda, a->lambda) > es) es = rel(b->lambda, a->lambda);
    printf("  %-14s forward %.2e  stats %.2e  update %.2e  forward-after %.2e  (loss_pred %.6g / %.6g, "
           "grad_norm %.6g / %.6g, |dp| %.3g)\n", k_tnames[k], e0, es, eu, e1, a->loss_pred, b->loss_pred,
           a->grad_norm, b->grad_norm, sqrt(den));
    /* a fresh student's forward of NBIG rows: 1024-row chunks on the CPU,
     * one pass on a GPU (lib/api/student.c, reserve_forward) */
    printf("  %-14s forward of %d rows %.2e  (chunks of %lld / %lld rows)\n", k_tnames[k], NBIG, eb,
           (long long)A->chunk, (long long)B->chunk);
    CHECK_MSG(eb <= TOL_FWD0, "%s: forward of %d rows differs: %.3g", k_tnames[k], NBIG, eb);
    CHECK_MSG(A->chunk == (A->device ? NBIG : 1024) && B->chunk == (B->device ? NBIG : 1024),
              "%s: forward chunks %lld / %lld rows", k_tnames[k], (long long)A->chunk, (long long)B->chunk);
    if (k == T_MIXTURE)
        CHECK_MSG(A->smp_chunk == (A->device ? 16384 : 1024) && B->smp_chunk == (B->device ? 16384 : 1024),
                  "%s: after a sampler call of %d rows, forward chunks %lld / %lld rows", k_tnames[k], NSMP,
                  (long long)A->smp_chunk, (long long)B->smp_chunk);
    CHECK_MSG(e0 <= TOL_FWD0, "%s: forward before the step differs: %.3g", k_tnames[k], e0);
    CHECK_MSG(es <= TOL_STATS, "%s: step statistics differ: %.3g", k_tnames[k], es);
    CHECK_MSG(den > 0, "%s: the step changed no weight", k_tnames[k]);
    CHECK_MSG(eu <= TOL_UPDATE, "%s: parameter updates differ: %.3g", k_tnames[k], eu);
    CHECK_MSG(e1 <= TOL_FWD1, "%s: forward after the step differs: %.3g", k_tnames[k], e1);
    CHECK(A->stats.step == 1 && B->stats.step == 1);
    /* with the distiller alive (lib/api/student.c, reserve_forward) */
    double eb2 = rel_l2(B->fwdbig2, A->fwdbig2, A->nbig_out / NBIG * NDIST);
    const fmd_distill_stats *a2 = &A->stats2, *b2 = &B->stats2;
    double es2 = rel(b2->loss_pred, a2->loss_pred);
    if (rel(b2->grad_norm, a2->grad_norm) > es2) es2 = rel(b2->grad_norm, a2->grad_norm);
    if (rel(b2->loss_aux, a2->loss_aux) > es2) es2 = rel(b2->loss_aux, a2->loss_aux);
    printf("  %-14s forward of %d rows while distilling %.2e  (chunks of %lld / %lld rows), "
           "next step's stats %.2e\n", k_tnames[k], NDIST, eb2, (long long)A->dchunk, (long long)B->dchunk, es2);
    CHECK_MSG(A->dchunk == (A->device ? NDIST : 64) && B->dchunk == (B->device ? NDIST : 64),
              "%s: forward chunks while distilling %lld / %lld rows", k_tnames[k], (long long)A->dchunk,
              (long long)B->dchunk);
    CHECK_MSG(eb2 <= TOL_FWD1, "%s: forward while distilling differs: %.3g", k_tnames[k], eb2);
    /* (one update apart from the first step: AdamW may flip a sign) */
    CHECK_MSG(es2 <= 10 * TOL_STATS, "%s: the step after it differs: %.3g", k_tnames[k], es2);
    CHECK(a2->step == 2 && b2->step == 2);
}

int main(int argc, char **argv)
{
    const char *na = argc > 1 ? argv[1] : "cpu", *nb = argc > 2 ? argv[2] : "cuda";
    fmd_backend *A = NULL, *B = NULL;
    CHECK_OK(open_named(na, &A));
    fmd_status st = open_named(nb, &B);
    if (st == FMD_ERR_BACKEND_UNAVAILABLE) {
        char why[600];
        snprintf(why, sizeof why, "backend '%s' unavailable: %s", nb, fmd_last_error());
        fmd_backend_destroy(A);
        return tu_skip("test_cross_backend", why);
    }
    CHECK_OK(st);
    if (!A || !B) return tu_finish("test_cross_backend");
    printf("A = %s\nB = %s\n", fmd_backend_device(A), fmd_backend_device(B));
    for (int k = 0; k < T_COUNT; k++) {
        float *tw = NULL, *sw = NULL;
        int64_t tn = 0, sn = 0;
        side_result ra, rb;
        fmd_status sa = run_side(A, (tkind)k, &tw, &tn, &sw, &sn, &ra);
        fmd_status sb = sa ? sa : run_side(B, (tkind)k, &tw, &tn, &sw, &sn, &rb);
        CHECK_OK(sa);
        CHECK_OK(sb);
        if (!sa && !sb) compare((tkind)k, &ra, &rb);
        side_free(&ra);
        if (!sa) side_free(&rb);
        free(tw);
        free(sw);
    }
    fmd_backend_destroy(A);
    fmd_backend_destroy(B);
    return tu_finish("test_cross_backend");
}
