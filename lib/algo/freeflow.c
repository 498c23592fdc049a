/* freeflow.c - the FreeFlow objectives and one distillation step
 * (../shared/MATH.md sections 3-5; data-based baseline section 10).
 *
 * Batch layout (rows):  [0, Bp) prediction rows, [Bp, B) correction rows.
 *   X0 (B,D)   start states: z ~ N(0, I) (or data-noised x_t0 for the baseline)
 *   F  (B,D)   student output at (end time t0 - delta, span delta)
 *   diff (B,D) prediction rows: Delta_G = F - target; correction rows: v_N - v
 *   dout (B,D) per-row upstream gradient into F (2w/Bp * Delta_G, lambda/Bc * (v_N - v))
 * Per-row scalars are broadcast over D with bcast_mul (t = D, c = 1).
 *
 * Randomness: every draw is a pure function of (seed, stream, step, row), so
 * a resumed run repeats an uninterrupted one bit for bit.
 */
#include <math.h>
#include <string.h>
#include "algo/freeflow.h"
#include "util/philox.h"
#include "util/util.h"

enum { S_Z = 1, S_DELTA = 2, S_LABEL = 3, S_R = 4, S_N = 5, S_DATA = 6, S_POOL_Z = 7,
       S_POOL_LABEL = 8, S_REF_IDX = 9, S_REF_R = 10, S_REF_N = 11, S_KREF_IDX = 13 };
/* stream 12 is FF_STREAM_DATA_POOL (freeflow.h) */

struct ff_trainer {
    fmd_backend *be;
    const fmd_backend_ops *op;
    ff_config c;
    nn_model *student, *ema, *aux;
    int aux_residual;
    ff_velocity_fn vel;
    void *vctx;
    int64_t D, K, B, Bp, Bc;
    int64_t np, np_aux;
    int64_t step;
    /* optimiser state (device) */
    float *m, *v, *am, *av;
    /* reference network of the correction (corr_ref = samples): g_ref, its
     * moments, its pool of teacher ODE samples (device rows, host labels) and
     * its flow-matching batch (px: pool rows, pxr: noised, pn: noise, pv:
     * teacher there, pg: g_ref output, pdiff: its residual; gref: g_ref at
     * the student's x_r) */
    nn_model *ref;
    float *rm, *rv, *pool, *px, *pxr, *pn, *pv, *pg, *pdiff, *gref;
    int32_t *h_pool_lab, *plab, *h_plab, *pidx, *h_pidx;
    int64_t npool;
    /* data of the baseline (device rows, host labels) */
    float *data;
    int32_t *h_data_lab;
    int64_t ndata;
    /* device matrices */
    float *X0, *F, *Fp, *Fm, *xa, *v1, *xe, *v2, *tgt, *diff, *dout;
    float *xhat, *cn, *xr, *vc, *ga, *adiff;
    /* device row vectors */
    float *tin, *dl, *tin2, *dl2, *tin3, *dl3, *tan_t, *tan_d, *k1, *k2, *k3, *scale, *rowv;
    float *r, *r1, *ar, *ar1;
    int32_t *lab, *idx;
    /* host row vectors */
    float *h_t0, *h_dl, *h_dlp, *h_tin, *h_tin2, *h_dl2, *h_tin3, *h_dl3, *h_k1, *h_k2, *h_k3;
    float *h_scale, *h_rowv, *h_tan_t, *h_tan_d, *h_r, *h_r1;
    int32_t *h_lab, *h_idx;
    /* kernel field (corr_field = kernel): the bank of M one-step samples
     * (kb, labels h_kb_lab, one-hot kbo (M,K)) and, with a reference pool,
     * the M pool rows drawn this step (kt, one-hot kto, indices kidx);
     * scratch: squared norms kb2 (M), logits kG and class mask kmask
     * (Bc,M), the rows' one-hot krow (Bc,K), weighted means kms, kmt
     * (Bc,D), per-row coefficients ka, kc, kinv (Bc) */
    int64_t M;
    float *kb, *kbo, *kt, *kto, *kb2, *kG, *kmask, *krow, *kms, *kmt, *ka, *kc, *kinv;
    int32_t *kidx, *h_kb_lab, *h_kidx;
    float *h_k1h, *h_ka, *h_kc, *h_kinv;
};

void ff_config_default(ff_config *c)
{
    memset(c, 0, sizeof *c);
    c->batch = 512;
    c->seed = 0;
    c->target = FF_TARGET_STEP;
    c->step_h = 0.1;
    c->step_h_end = 0.0;
    c->fd_eps = 1e-3;
    c->delta_dist = FF_DELTA_UNIFORM;
    c->delta_one = 0.25;
    c->delta_loc = 0.0;
    c->delta_scale = 1.0;
    c->delta_min = 0.0;
    c->corr_frac = 0.25;
    c->use_pred = 1;
    c->use_corr = 1;
    c->weight_k = 0.0;
    c->weight_eps = 1e-3;
    c->alpha = 0.3;
    c->alpha_end = -1.0;
    c->lambda_eps = 1e-3;
    c->warmup = 0;
    c->r_loc = 0.8;
    c->r_scale = 1.0;
    c->pred_g = (ff_guidance){1.0f, 0.0f, 1.0f};
    c->corr_g = (ff_guidance){1.0f, 0.0f, 0.7f};
    c->corr_field = FF_FIELD_NET;
    c->kernel_bank = 4096;
    c->aux_lr = 1e-3;
    c->aux_updates = 1;
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->weight_decay = 0.0;
    c->grad_clip = 1.0;
    c->ema = 0.999;
    c->lr_decay = FF_LR_COSINE;   /* active when decay_steps > 0 */
    c->decay_steps = 0;
    c->lr_warmup = 0;
    c->lr_min = 0.1;
    c->data_based = 0;
    c->data_frac = 1.0;
}

/* ---- small device helpers ------------------------------------------------- */

/* out(rows,D) = beta*out + x(rows,D) * coef(rows) */
static void rowscale(ff_trainer *t, float *out, const float *x, const float *coef, int64_t rows,
                     float beta)
{
    if (rows > 0) t->op->bcast_mul(t->be, out, x, coef, rows, t->D, 1, beta);
}

static void up(ff_trainer *t, void *dst, const void *src, int64_t n, size_t esz)
{
    if (n > 0) t->op->upload(t->be, dst, src, (size_t)n * esz);
}

static float *dalloc(ff_trainer *t, int64_t n)
{
    if (n <= 0) n = 1;
    float *p = t->op->alloc(t->be, (size_t)n * sizeof(float));
    if (p) t->op->memset0(t->be, p, (size_t)n * sizeof(float));
    return p;
}

static void dfree(ff_trainer *t, void *p)
{
    if (p) t->op->free(t->be, p);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* A uniform index in [0, n) drawn at (seed, stream, e): classes, data rows,
 * pool rows. */
static int64_t uniform_index(uint64_t seed, uint64_t stream, uint64_t e, int64_t n)
{
    int64_t k = (int64_t)(fmd_philox_uniform_at(seed, stream, e) * (double)n);
    return k >= n ? n - 1 : k;
}

/* ---- lifetime ------------------------------------------------------------- */

void ff_destroy(ff_trainer *t)
{
    if (!t) return;
    void *dev[] = {t->m, t->v, t->am, t->av, t->data, t->X0, t->F, t->Fp, t->Fm, t->xa, t->v1,
                   t->xe, t->v2, t->tgt, t->diff, t->dout, t->xhat, t->cn, t->xr, t->vc, t->ga,
                   t->adiff, t->tin, t->dl, t->tin2, t->dl2, t->tin3, t->dl3, t->tan_t, t->tan_d,
                   t->k1, t->k2, t->k3, t->scale, t->rowv, t->r, t->r1, t->ar, t->ar1, t->lab,
                   t->idx, t->rm, t->rv, t->pool, t->px, t->pxr, t->pn, t->pv, t->pg, t->pdiff,
                   t->gref, t->plab, t->pidx, t->kb, t->kbo, t->kt, t->kto, t->kb2, t->kG,
                   t->kmask, t->krow, t->kms, t->kmt, t->ka, t->kc, t->kinv, t->kidx};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) dfree(t, dev[i]);
    void *host[] = {t->h_t0, t->h_dl, t->h_dlp, t->h_tin, t->h_tin2, t->h_dl2, t->h_tin3,
                    t->h_dl3, t->h_k1, t->h_k2, t->h_k3, t->h_scale, t->h_rowv, t->h_tan_t,
                    t->h_tan_d, t->h_r, t->h_r1, t->h_lab, t->h_idx, t->h_data_lab,
                    t->h_pool_lab, t->h_plab, t->h_pidx, t->h_kb_lab, t->h_kidx, t->h_k1h,
                    t->h_ka, t->h_kc, t->h_kinv};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) fmd_free(host[i]);
    fmd_free(t);
}

fmd_status ff_create(fmd_backend *be, const ff_config *cfg, nn_model *student, nn_model *ema,
                     nn_model *aux, int aux_residual, ff_velocity_fn vel, void *vctx,
                     ff_trainer **out)
{
    FMD_CHECK_ARG(be && cfg && student && ema && vel && out, "ff_create: NULL argument");
    const nn_config *sc = nn_model_config(student);
    FMD_CHECK_ARG(sc->student, "ff_create: the student model is not in student form");
    FMD_CHECK_ARG(cfg->batch >= 2, "ff_create: batch must be >= 2 (got %lld)", (long long)cfg->batch);
    FMD_CHECK_ARG(cfg->use_pred || cfg->use_corr, "ff_create: both objectives are switched off");
    const int kernel = cfg->use_corr && cfg->corr_field == FF_FIELD_KERNEL;
    FMD_CHECK_ARG(!cfg->use_corr || aux || kernel,
                  "ff_create: the correction needs an auxiliary network");
    FMD_CHECK_ARG(!kernel || cfg->kernel_bank >= 1,
                  "ff_create: kernel_bank must be >= 1 (got %lld)", (long long)cfg->kernel_bank);
    FMD_CHECK_ARG(!kernel || cfg->aux_updates == 1,
                  "ff_create: aux_updates applies to the auxiliary network, not the kernel field");
    FMD_CHECK_ARG(nn_model_num_params(ema) == nn_model_num_params(student),
                  "ff_create: EMA model differs from the student");

    ff_trainer *t = fmd_xcalloc(1, sizeof *t, "ff_trainer");
    if (!t) return FMD_ERR_OOM;
    t->be = be;
    t->op = be->ops;
    t->c = *cfg;
    t->student = student;
    t->ema = ema;
    t->aux = cfg->use_corr && !kernel ? aux : NULL;
    t->aux_residual = aux_residual;
    t->vel = vel;
    t->vctx = vctx;
    t->D = nn_model_dim(student);
    t->K = sc->num_classes;
    t->B = cfg->batch;
    if (cfg->use_pred && cfg->use_corr) {
        t->Bc = (int64_t)llround((double)t->B * cfg->corr_frac);
        if (t->Bc < 1) t->Bc = 1;
        if (t->Bc > t->B - 1) t->Bc = t->B - 1;
    } else {
        t->Bc = cfg->use_corr ? t->B : 0;
    }
    t->Bp = t->B - t->Bc;
    t->np = nn_model_num_params(student);
    t->np_aux = t->aux ? nn_model_num_params(t->aux) : 0;

    fmd_status st = FMD_OK;
    const int64_t B = t->B, D = t->D, Bc = t->Bc;
    t->m = dalloc(t, t->np);
    t->v = dalloc(t, t->np);
    if (t->aux) {
        t->am = dalloc(t, t->np_aux);
        t->av = dalloc(t, t->np_aux);
    }
    float **mats[] = {&t->X0, &t->F, &t->Fp, &t->Fm, &t->xa, &t->v1, &t->xe,
                      &t->v2, &t->tgt, &t->diff, &t->dout};
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) *mats[i] = dalloc(t, B * D);
    float **cmats[] = {&t->xhat, &t->cn, &t->xr, &t->vc, &t->ga, &t->adiff};
    for (size_t i = 0; i < sizeof cmats / sizeof cmats[0]; i++) *cmats[i] = dalloc(t, Bc * D);
    float **rows[] = {&t->tin, &t->dl, &t->tin2, &t->dl2, &t->tin3, &t->dl3, &t->tan_t,
                      &t->tan_d, &t->k1, &t->k2, &t->k3, &t->scale, &t->rowv, &t->r, &t->r1,
                      &t->ar, &t->ar1};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) *rows[i] = dalloc(t, B);
    t->lab = (int32_t *)dalloc(t, B);
    t->idx = (int32_t *)dalloc(t, B);
    float **hrows[] = {&t->h_t0, &t->h_dl, &t->h_dlp, &t->h_tin, &t->h_tin2, &t->h_dl2,
                       &t->h_tin3, &t->h_dl3, &t->h_k1, &t->h_k2, &t->h_k3, &t->h_scale,
                       &t->h_rowv, &t->h_tan_t, &t->h_tan_d, &t->h_r, &t->h_r1};
    for (size_t i = 0; i < sizeof hrows / sizeof hrows[0]; i++) {
        *hrows[i] = fmd_calloc((size_t)B, sizeof(float));
        if (!*hrows[i]) st = FMD_ERR_OOM;
    }
    t->h_lab = fmd_calloc((size_t)B, sizeof(int32_t));
    t->h_idx = fmd_calloc((size_t)B, sizeof(int32_t));
    if (!t->h_lab || !t->h_idx) st = FMD_ERR_OOM;
    if (kernel && Bc > 0) {
        const int64_t M = cfg->kernel_bank, K = t->K ? t->K : 1;
        t->M = M;
        t->kb = dalloc(t, M * D);
        t->kbo = dalloc(t, M * K);
        t->kb2 = dalloc(t, M);
        t->kG = dalloc(t, Bc * M);
        t->kmask = dalloc(t, Bc * M);
        t->krow = dalloc(t, Bc * K);
        t->kms = dalloc(t, Bc * D);
        t->kmt = dalloc(t, Bc * D);
        t->ka = dalloc(t, Bc);
        t->kc = dalloc(t, Bc);
        t->kinv = dalloc(t, Bc);
        t->h_kb_lab = fmd_calloc((size_t)M, sizeof(int32_t));
        t->h_k1h = fmd_calloc((size_t)((M > Bc ? M : Bc) * K), sizeof(float));
        t->h_ka = fmd_calloc((size_t)Bc, sizeof(float));
        t->h_kc = fmd_calloc((size_t)Bc, sizeof(float));
        t->h_kinv = fmd_calloc((size_t)Bc, sizeof(float));
        if (!t->h_kb_lab || !t->h_k1h || !t->h_ka || !t->h_kc || !t->h_kinv) st = FMD_ERR_OOM;
    }
    if (st == FMD_OK && !fmdb_ok(be)) st = be->status;
    if (st != FMD_OK) {
        ff_destroy(t);
        return fmd_seterr(st, "ff_create: out of memory for batch %lld x %lld", (long long)B,
                          (long long)D);
    }
    /* Activation arenas, EMA = student, and one warm-up call of the teacher at
     * the largest batch so that its scratch is sized before the first step. */
    st = nn_model_reserve(student, B);
    if (st == FMD_OK && t->aux) st = nn_model_reserve(t->aux, Bc);
    if (st == FMD_OK) {
        t->op->copy(be, nn_model_params(ema), nn_model_params(student), (size_t)t->np * sizeof(float));
        for (int64_t i = 0; i < B; i++) t->h_tin[i] = 0.5f;
        up(t, t->tin, t->h_tin, B, sizeof(float));
        st = vel(vctx, t->v1, t->X0, t->tin, t->K ? t->lab : NULL, B, &cfg->pred_g);
        if (st == FMD_OK && Bc > 0)
            st = vel(vctx, t->v1, t->X0, t->tin, t->K ? t->lab : NULL, Bc, &cfg->corr_g);
        if (st == FMD_OK) st = t->op->sync(be);
    }
    if (st != FMD_OK) {
        ff_destroy(t);
        return st;
    }
    *out = t;
    return FMD_OK;
}

fmd_status ff_set_data(ff_trainer *t, const float *x0, const int32_t *labels, int64_t n)
{
    FMD_CHECK_ARG(t && x0, "ff_set_data: NULL argument");
    FMD_CHECK_ARG(n >= 1 && n <= INT32_MAX, "ff_set_data: n must be in [1, 2^31) (got %lld)",
                  (long long)n);
    FMD_CHECK_ARG(t->K == 0 || labels, "ff_set_data: the teacher has classes: labels needed");
    if (labels)
        for (int64_t i = 0; i < n; i++)
            FMD_CHECK_ARG(labels[i] >= 0 && labels[i] < t->K,
                          "ff_set_data: labels[%lld] = %d out of [0, %lld)", (long long)i,
                          labels[i], (long long)t->K);
    for (int64_t i = 0; i < n * t->D; i++)
        if (!isfinite(x0[i]))
            return fmd_seterr(FMD_ERR_NONFINITE, "ff_set_data: x0[%lld] is not finite",
                              (long long)i);
    float *d = dalloc(t, n * t->D);
    int32_t *hl = t->K ? fmd_calloc((size_t)n, sizeof(int32_t)) : NULL;
    if (!d || (t->K && !hl)) {
        dfree(t, d);
        fmd_free(hl);
        return fmd_seterr(FMD_ERR_OOM, "ff_set_data: out of memory for %lld rows", (long long)n);
    }
    up(t, d, x0, n * t->D, sizeof(float));
    if (hl) memcpy(hl, labels, (size_t)n * sizeof(int32_t));
    dfree(t, t->data);
    fmd_free(t->h_data_lab);
    t->data = d;
    t->h_data_lab = hl;
    t->ndata = n;
    return t->op->sync(t->be);
}

int64_t ff_steps_done(const ff_trainer *t) { return t->step; }
void ff_set_steps_done(ff_trainer *t, int64_t step) { t->step = step; }
const ff_config *ff_get_config(const ff_trainer *t) { return &t->c; }
const float *ff_rows_start_time(const ff_trainer *t) { return t->h_t0; }
float *ff_adam_m(ff_trainer *t) { return t->m; }
float *ff_adam_v(ff_trainer *t) { return t->v; }
float *ff_aux_adam_m(ff_trainer *t) { return t->am; }
float *ff_aux_adam_v(ff_trainer *t) { return t->av; }
int64_t ff_ref_pool(ff_trainer *t, float **pool)
{
    *pool = t->pool;
    return t->npool;
}
float *ff_ref_adam_m(ff_trainer *t) { return t->rm; }
float *ff_ref_adam_v(ff_trainer *t) { return t->rv; }

/* A pool of teacher samples: prior noise from (seed, s_z), each row
 * integrated by Heun from t = 1 to 0 in `steps` equal steps with the
 * prediction guidance (the ODE whose distribution the student learns), in
 * chunks of B rows through the step's own buffers (X0, v1, xe, v2, tin,
 * lab).  h_lab (host, n; NULL for an unconditional teacher) holds the labels
 * on entry.  dst (device, n x D) receives the samples. */
static fmd_status solve_pool(ff_trainer *t, float *dst, const int32_t *h_lab, int64_t n,
                             int64_t steps, uint64_t s_z, const char *what)
{
    const ff_config *c = &t->c;
    const int64_t D = t->D, B = t->B;
    for (int64_t r0 = 0; r0 < n; r0 += B) {
        const int64_t b = n - r0 < B ? n - r0 : B;
        const int32_t *lab = NULL;
        if (t->K) {
            up(t, t->lab, h_lab + r0, b, sizeof(int32_t));
            lab = t->lab;
        }
        t->op->fill_normal(t->be, t->X0, b * D, c->seed, s_z, (uint64_t)(r0 * D));
        for (int64_t s = 0; s < steps; s++) {
            const float t1 = 1.0f - (float)s / (float)steps, t2 = 1.0f - (float)(s + 1) / (float)steps;
            const float h = t2 - t1;
            for (int64_t i = 0; i < b; i++) t->h_tin[i] = t1;
            up(t, t->tin, t->h_tin, b, sizeof(float));
            fmd_status st = t->vel(t->vctx, t->v1, t->X0, t->tin, lab, b, &c->pred_g);
            if (st) return st;
            t->op->axpby(t->be, t->xe, 1.0f, t->X0, h, t->v1, b * D);
            for (int64_t i = 0; i < b; i++) t->h_tin[i] = t2;
            up(t, t->tin, t->h_tin, b, sizeof(float));
            st = t->vel(t->vctx, t->v2, t->xe, t->tin, lab, b, &c->pred_g);
            if (st) return st;
            t->op->axpby(t->be, t->v1, 0.5f * h, t->v1, 0.5f * h, t->v2, b * D);
            t->op->axpby(t->be, t->X0, 1.0f, t->X0, 1.0f, t->v1, b * D);
        }
        if (t->op->nonfinite(t->be, t->X0, b * D))
            return fmd_seterr(FMD_ERR_NONFINITE, "distiller: the teacher's ODE gave a non-finite "
                              "sample for the %s (rows %lld..%lld)", what, (long long)r0,
                              (long long)(r0 + b - 1));
        t->op->copy(t->be, dst + r0 * D, t->X0, (size_t)(b * D) * sizeof(float));
    }
    return t->op->sync(t->be);
}

/* The reference pool: uniform class labels. */
static fmd_status make_pool(ff_trainer *t, int64_t steps)
{
    for (int64_t i = 0; i < t->npool; i++)
        t->h_pool_lab[i] =
            t->K ? (int32_t)uniform_index(t->c.seed, S_POOL_LABEL, (uint64_t)i, t->K) : 0;
    return solve_pool(t, t->pool, t->h_pool_lab, t->npool, steps, S_POOL_Z, "reference pool");
}

fmd_status ff_make_data_pool(ff_trainer *t, int64_t n, int64_t steps)
{
    FMD_CHECK_ARG(t, "ff_make_data_pool: NULL trainer");
    FMD_CHECK_ARG(n >= 1 && n <= INT32_MAX, "ff_make_data_pool: pool size must be in [1, 2^31) "
                  "(got %lld)", (long long)n);
    FMD_CHECK_ARG(steps >= 1, "ff_make_data_pool: steps must be >= 1 (got %lld)", (long long)steps);
    float *d = dalloc(t, n * t->D);
    int32_t *hl = t->K ? fmd_calloc((size_t)n, sizeof(int32_t)) : NULL;
    if (!d || (t->K && !hl)) {
        dfree(t, d);
        fmd_free(hl);
        return fmd_seterr(FMD_ERR_OOM, "ff_make_data_pool: out of memory for a pool of %lld x %lld",
                          (long long)n, (long long)t->D);
    }
    for (int64_t i = 0; hl && i < n; i++) hl[i] = (int32_t)(i % t->K);
    fmd_status st = solve_pool(t, d, hl, n, steps, FF_STREAM_DATA_POOL, "data pool");
    if (st) {
        dfree(t, d);
        fmd_free(hl);
        return st;
    }
    dfree(t, t->data);
    fmd_free(t->h_data_lab);
    t->data = d;
    t->h_data_lab = hl;
    t->ndata = n;
    return FMD_OK;
}

fmd_status ff_copy_data(ff_trainer *t, float *x, int32_t *labels, int64_t n)
{
    FMD_CHECK_ARG(t && x, "ff_copy_data: NULL argument");
    FMD_CHECK_ARG(n == t->ndata, "ff_copy_data: the trainer holds %lld rows, not %lld",
                  (long long)t->ndata, (long long)n);
    t->op->download(t->be, x, t->data, (size_t)(n * t->D) * sizeof(float));
    if (labels)
        for (int64_t i = 0; i < n; i++) labels[i] = t->h_data_lab ? t->h_data_lab[i] : 0;
    return t->op->sync(t->be);
}

fmd_status ff_set_reference(ff_trainer *t, nn_model *ref, int64_t n, int64_t steps)
{
    FMD_CHECK_ARG(t, "ff_set_reference: NULL trainer");
    FMD_CHECK_ARG((t->aux || t->M) && t->Bc > 0, "ff_set_reference: the correction is off");
    FMD_CHECK_ARG(!t->npool, "ff_set_reference: the trainer has a reference already");
    FMD_CHECK_ARG(t->M ? !ref : ref != NULL, "ff_set_reference: %s",
                  t->M ? "the kernel field takes no reference network"
                       : "the reference network is NULL");
    FMD_CHECK_ARG(!ref || nn_model_num_params(ref) == t->np_aux,
                  "ff_set_reference: the reference differs from the auxiliary network");
    FMD_CHECK_ARG(n >= 1 && n <= INT32_MAX, "ff_set_reference: pool size must be in [1, 2^31) "
                  "(got %lld)", (long long)n);
    FMD_CHECK_ARG(steps >= 1, "ff_set_reference: steps must be >= 1 (got %lld)", (long long)steps);
    const int64_t D = t->D, Bc = t->Bc;
    if (t->M) {
        /* the kernel field's reference: M pool rows per step, no network */
        const int64_t M = t->M, K = t->K ? t->K : 1;
        t->npool = n;
        t->pool = dalloc(t, n * D);
        t->kt = dalloc(t, M * D);
        t->kto = dalloc(t, M * K);
        t->kidx = (int32_t *)dalloc(t, M);
        t->h_pool_lab = fmd_calloc((size_t)n, sizeof(int32_t));
        t->h_kidx = fmd_calloc((size_t)M, sizeof(int32_t));
        fmd_status st = FMD_OK;
        if (!t->h_pool_lab || !t->h_kidx || !fmdb_ok(t->be))
            st = fmd_seterr(FMD_ERR_OOM, "ff_set_reference: out of memory for a pool of %lld x %lld",
                            (long long)n, (long long)D);
        if (!st) st = make_pool(t, steps);
        if (st) t->npool = 0;
        return st;
    }
    t->ref = ref;
    t->npool = n;
    t->rm = dalloc(t, t->np_aux);
    t->rv = dalloc(t, t->np_aux);
    t->pool = dalloc(t, n * D);
    float **m[] = {&t->px, &t->pxr, &t->pn, &t->pv, &t->pg, &t->pdiff, &t->gref};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) *m[i] = dalloc(t, Bc * D);
    t->plab = (int32_t *)dalloc(t, Bc);
    t->pidx = (int32_t *)dalloc(t, Bc);
    t->h_pool_lab = fmd_calloc((size_t)n, sizeof(int32_t));
    t->h_plab = fmd_calloc((size_t)Bc, sizeof(int32_t));
    t->h_pidx = fmd_calloc((size_t)Bc, sizeof(int32_t));
    fmd_status st = FMD_OK;
    if (!t->h_pool_lab || !t->h_plab || !t->h_pidx || !fmdb_ok(t->be))
        st = fmd_seterr(FMD_ERR_OOM, "ff_set_reference: out of memory for a pool of %lld x %lld",
                        (long long)n, (long long)D);
    if (!st) st = nn_model_reserve(ref, Bc);
    if (!st) st = make_pool(t, steps);
    if (st) {
        t->ref = NULL;   /* the caller still owns ref; the buffers go with the trainer */
        t->npool = 0;
    }
    return st;
}

/* ---- schedules ------------------------------------------------------------- */

/* Schedule position in [0, 1] (decay_steps > 0), and the cosine that falls
 * from 1 to 0 over it; the learning rate, h and alpha schedules share them. */
static double progress(const ff_config *c, int64_t step)
{
    double p = (double)step / (double)c->decay_steps;
    return p > 1.0 ? 1.0 : p;
}

static double cosine_at(const ff_config *c, int64_t step)
{
    return 0.5 * (1.0 + cos(3.14159265358979323846 * progress(c, step)));
}

static double lr_at(const ff_config *c, int64_t step)
{
    double f = 1.0;
    if (c->lr_warmup > 0 && step < c->lr_warmup) f = (double)(step + 1) / (double)c->lr_warmup;
    if (c->lr_decay != FF_LR_CONST && c->decay_steps > 0) {
        double g = c->lr_decay == FF_LR_COSINE ? cosine_at(c, step) : 1.0 - progress(c, step);
        f *= c->lr_min + (1.0 - c->lr_min) * g;
    }
    return c->lr * f;
}

/* alpha at a step: constant, or moved to alpha_end along the learning rate's
 * cosine (the auxiliary network's fit error does not shrink with the
 * student's distribution error, so late in a run the correction can carry
 * more of that error than signal). */
static double alpha_at(const ff_config *c, int64_t step)
{
    if (c->alpha_end < 0.0 || c->decay_steps <= 0) return c->alpha;
    return c->alpha_end + (c->alpha - c->alpha_end) * cosine_at(c, step);
}

/* h of the teacher-step target at a step: step_h, moved to step_h_end along
 * the same cosine as the learning rate when both are set (a curriculum:
 * long steps bootstrap fast early, short ones remove the Heun bias late). */
static double h_at(const ff_config *c, int64_t step)
{
    if (c->step_h_end <= 0.0 || c->decay_steps <= 0) return c->step_h;
    return c->step_h_end + (c->step_h - c->step_h_end) * cosine_at(c, step);
}

/* ---- the step ----------------------------------------------------------------- */

/* Draw the rows of this step on the host and upload them. */
static fmd_status draw_rows(ff_trainer *t)
{
    const ff_config *c = &t->c;
    const int64_t B = t->B, Bp = t->Bp, D = t->D, s = t->step;
    const uint64_t seed = c->seed;
    /* prediction rows [0, Bd) start from data-noised states, [Bd, Bp) from noise */
    const int64_t Bd = c->data_based ? (int64_t)((double)Bp * c->data_frac + 0.5) : 0;
    for (int64_t i = 0; i < B; i++) {
        uint64_t e = ((uint64_t)s * (uint64_t)B + (uint64_t)i) * 4u;
        double t0 = 1.0, dl = 1.0;
        if (i < Bp) {
            double coin = fmd_philox_uniform_at(seed, S_DELTA, e);
            double u = fmd_philox_uniform_at(seed, S_DELTA, e + 1);
            if (i < Bd) {
                /* start time t0 ~ U(0,1); span delta = t0 (end at s = 0) with
                 * probability delta_one, else U(0, t0) */
                t0 = fmd_philox_uniform_at(seed, S_DATA, e);
                dl = coin < c->delta_one ? t0 : t0 * u;
                t->h_idx[i] = (int32_t)uniform_index(seed, S_DATA, e + 1, t->ndata);
            } else if (coin < c->delta_one || c->delta_dist == FF_DELTA_ONE) {
                dl = 1.0;
            } else if (c->delta_dist == FF_DELTA_LOGITNORMAL) {
                double nrm = fmd_philox_normal_at(seed, S_DELTA, e + 2);
                dl = sigmoid(c->delta_loc + c->delta_scale * nrm);
            } else {
                dl = u;
            }
            if (i >= Bd) dl = c->delta_min + (1.0 - c->delta_min) * dl;
        }
        t->h_t0[i] = (float)t0;
        t->h_dl[i] = (float)dl;
        t->h_tin[i] = (float)(t0 - dl);
        if (t->K) {
            if (i < Bd) {
                t->h_lab[i] = t->h_data_lab ? t->h_data_lab[t->h_idx[i]] : 0;
            } else {
                t->h_lab[i] = (int32_t)uniform_index(seed, S_LABEL, (uint64_t)s * B + i, t->K);
            }
        }
    }
    up(t, t->tin, t->h_tin, B, sizeof(float));
    up(t, t->dl, t->h_dl, B, sizeof(float));
    if (t->K) up(t, t->lab, t->h_lab, B, sizeof(int32_t));
    /* start states: z ~ N(0, I) on every row */
    t->op->fill_normal(t->be, t->X0, B * D, seed, S_Z, (uint64_t)s * (uint64_t)(B * D));
    if (Bd > 0) {
        /* X0 = (1 - t0) x0[idx] + t0 * eps on the data rows */
        up(t, t->idx, t->h_idx, Bd, sizeof(int32_t));
        t->op->embed_forward(t->be, t->xa, t->data, t->idx, Bd, D);
        for (int64_t i = 0; i < Bd; i++) {
            t->h_k1[i] = 1.0f - t->h_t0[i];
            t->h_k2[i] = t->h_t0[i];
        }
        up(t, t->k1, t->h_k1, Bd, sizeof(float));
        up(t, t->k2, t->h_k2, Bd, sizeof(float));
        rowscale(t, t->xe, t->xa, t->k1, Bd, 0.0f);
        rowscale(t, t->xe, t->X0, t->k2, Bd, 1.0f);
        t->op->copy(t->be, t->X0, t->xe, (size_t)(Bd * D) * sizeof(float));
    }
    return FMD_OK;
}

/* Prediction target on rows [0, Bp) and the main student forward over all B
 * rows (which must be the last student forward: backward uses it). */
static fmd_status predict(ff_trainer *t)
{
    const ff_config *c = &t->c;
    const int64_t B = t->B, Bp = t->Bp, D = t->D;
    fmd_backend *be = t->be;
    const int32_t *lab = t->K ? t->lab : NULL;
    fmd_status st = FMD_OK;

    if (Bp == 0) return nn_model_forward(t->student, t->F, t->X0, t->tin, t->dl, lab, B);

    if (c->target == FF_TARGET_STEP) {
        /* x' = f(z, delta'), one Heun step of the teacher from t0 - delta' to
         * t0 - delta, target = (z - x*)/delta computed without cancellation as
         * (delta' F' + h (v1 + v2)/2) / delta. */
        const double hstep = h_at(c, t->step);
        for (int64_t i = 0; i < Bp; i++) {
            double dl = t->h_dl[i], dp = dl - hstep;
            if (dp < 0.0) dp = 0.0;
            double h = dl - dp;
            t->h_dl2[i] = (float)dp;
            t->h_tin2[i] = (float)(t->h_t0[i] - dp);
            t->h_k1[i] = (float)(-dp);             /* x' = X0 - delta' F'       */
            t->h_k2[i] = (float)(-h);              /* xe = x' - h v1            */
            t->h_k3[i] = (float)(dp / dl);         /* target coefficients       */
            t->h_scale[i] = (float)(0.5 * h / dl);
        }
        up(t, t->dl2, t->h_dl2, Bp, sizeof(float));
        up(t, t->tin2, t->h_tin2, Bp, sizeof(float));
        up(t, t->k1, t->h_k1, Bp, sizeof(float));
        up(t, t->k2, t->h_k2, Bp, sizeof(float));
        up(t, t->k3, t->h_k3, Bp, sizeof(float));
        up(t, t->scale, t->h_scale, Bp, sizeof(float));
        st = nn_model_forward(t->student, t->Fp, t->X0, t->tin2, t->dl2, lab, Bp);
        if (st) return st;
        rowscale(t, t->xa, t->Fp, t->k1, Bp, 0.0f);
        t->op->axpby(be, t->xa, 1.0f, t->xa, 1.0f, t->X0, Bp * D);
        st = t->vel(t->vctx, t->v1, t->xa, t->tin2, lab, Bp, &c->pred_g);
        if (st) return st;
        t->op->copy(be, t->xe, t->xa, (size_t)(Bp * D) * sizeof(float));
        rowscale(t, t->xe, t->v1, t->k2, Bp, 1.0f);
        st = t->vel(t->vctx, t->v2, t->xe, t->tin, lab, Bp, &c->pred_g);
        if (st) return st;
        rowscale(t, t->tgt, t->Fp, t->k3, Bp, 0.0f);
        rowscale(t, t->tgt, t->v1, t->scale, Bp, 1.0f);
        rowscale(t, t->tgt, t->v2, t->scale, Bp, 1.0f);
        st = nn_model_forward(t->student, t->F, t->X0, t->tin, t->dl, lab, B);
        if (st) return st;
    } else if (c->target == FF_TARGET_JVP) {
        /* exact dF/ddelta along (t: -1, delta: +1) on prediction rows */
        for (int64_t i = 0; i < B; i++) {
            t->h_tan_t[i] = i < Bp ? -1.0f : 0.0f;
            t->h_tan_d[i] = i < Bp ? 1.0f : 0.0f;
        }
        for (int64_t i = 0; i < Bp; i++) {
            t->h_k1[i] = -t->h_dl[i];
        }
        up(t, t->tan_t, t->h_tan_t, B, sizeof(float));
        up(t, t->tan_d, t->h_tan_d, B, sizeof(float));
        up(t, t->k1, t->h_k1, Bp, sizeof(float));
        st = nn_model_forward_jvp(t->student, t->F, t->Fp, t->X0, t->tin, t->dl, lab, t->tan_t,
                                  t->tan_d, B);
        if (st) return st;
        rowscale(t, t->xa, t->F, t->k1, Bp, 0.0f);
        t->op->axpby(be, t->xa, 1.0f, t->xa, 1.0f, t->X0, Bp * D);
        st = t->vel(t->vctx, t->v1, t->xa, t->tin, lab, Bp, &c->pred_g);
        if (st) return st;
        t->op->copy(be, t->tgt, t->v1, (size_t)(Bp * D) * sizeof(float));
        rowscale(t, t->tgt, t->Fp, t->k1, Bp, 1.0f);
    } else {
        /* central difference in delta with half-width eps */
        const double eps = c->fd_eps;
        for (int64_t i = 0; i < Bp; i++) {
            t->h_dl2[i] = (float)(t->h_dl[i] + eps);
            t->h_tin2[i] = (float)(t->h_t0[i] - (t->h_dl[i] + eps));
            t->h_dl3[i] = (float)(t->h_dl[i] - eps);
            t->h_tin3[i] = (float)(t->h_t0[i] - (t->h_dl[i] - eps));
            t->h_k1[i] = -t->h_dl[i];
            /* the stored inputs are rounded to float: divide by the actual span */
            double span = (double)t->h_dl2[i] - (double)t->h_dl3[i];
            t->h_k2[i] = (float)(-t->h_dl[i] / span);
            t->h_k3[i] = (float)(t->h_dl[i] / span);
        }
        up(t, t->dl2, t->h_dl2, Bp, sizeof(float));
        up(t, t->tin2, t->h_tin2, Bp, sizeof(float));
        up(t, t->dl3, t->h_dl3, Bp, sizeof(float));
        up(t, t->tin3, t->h_tin3, Bp, sizeof(float));
        up(t, t->k1, t->h_k1, Bp, sizeof(float));
        up(t, t->k2, t->h_k2, Bp, sizeof(float));
        up(t, t->k3, t->h_k3, Bp, sizeof(float));
        st = nn_model_forward(t->student, t->Fp, t->X0, t->tin2, t->dl2, lab, Bp);
        if (!st) st = nn_model_forward(t->student, t->Fm, t->X0, t->tin3, t->dl3, lab, Bp);
        if (!st) st = nn_model_forward(t->student, t->F, t->X0, t->tin, t->dl, lab, B);
        if (st) return st;
        rowscale(t, t->xa, t->F, t->k1, Bp, 0.0f);
        t->op->axpby(be, t->xa, 1.0f, t->xa, 1.0f, t->X0, Bp * D);
        st = t->vel(t->vctx, t->v1, t->xa, t->tin, lab, Bp, &c->pred_g);
        if (st) return st;
        t->op->copy(be, t->tgt, t->v1, (size_t)(Bp * D) * sizeof(float));
        rowscale(t, t->tgt, t->Fp, t->k2, Bp, 1.0f);
        rowscale(t, t->tgt, t->Fm, t->k3, Bp, 1.0f);
    }
    /* Delta_G = F - target */
    t->op->axpby(be, t->diff, 1.0f, t->F, -1.0f, t->tgt, Bp * D);
    return FMD_OK;
}

/* Noised one-step samples x_r = (1 - r) xhat + r n for aux update j (j = 0 is
 * the one the correction gradient uses), the teacher there (corr guidance),
 * and g's output. */
static fmd_status noised(ff_trainer *t, int64_t j)
{
    const ff_config *c = &t->c;
    const int64_t Bc = t->Bc, D = t->D, Bp = t->Bp;
    const uint64_t k = (uint64_t)t->step * (uint64_t)c->aux_updates + (uint64_t)j;
    for (int64_t i = 0; i < Bc; i++) {
        double nrm = fmd_philox_normal_at(c->seed, S_R, k * (uint64_t)Bc + (uint64_t)i);
        double r = sigmoid(c->r_loc + c->r_scale * nrm);
        t->h_r[i] = (float)r;
        t->h_r1[i] = (float)(1.0 - r);
    }
    up(t, t->r, t->h_r, Bc, sizeof(float));
    up(t, t->r1, t->h_r1, Bc, sizeof(float));
    t->op->fill_normal(t->be, t->cn, Bc * D, c->seed, S_N, k * (uint64_t)(Bc * D));
    rowscale(t, t->xr, t->xhat, t->r1, Bc, 0.0f);
    rowscale(t, t->xr, t->cn, t->r, Bc, 1.0f);
    const int32_t *lab = t->K ? t->lab + Bp : NULL;
    fmd_status st = t->vel(t->vctx, t->vc, t->xr, t->r, lab, Bc, &c->corr_g);
    if (st || !t->aux) return st;   /* the kernel field has no g */
    return nn_model_forward(t->aux, t->ga, t->xr, t->r, NULL, lab, Bc);
}

/* ---- the kernel field (corr_field = kernel) ----------------------------------
 *
 * The noising velocity of an empirical distribution {b_j} at (x, r) is exact:
 * x_r given b_j is N((1 - r) b_j, r^2 I), so
 *   v(x, r) = E[n - x0 | x_r = x] = (x - m) / r,   m = sum_j gamma_j b_j,
 *   gamma = softmax_j( ((1 - r)/r^2) x.b_j - ((1 - r)^2/(2 r^2)) |b_j|^2 )
 * (the |x|^2 term is the same for every j), with gamma restricted to the
 * row's class on a conditional teacher.  v_N is that velocity over the bank
 * of the last M one-step samples (earlier steps only, so no row sees its own
 * sample).  With a reference pool the reference is the same estimate over M
 * teacher samples drawn from the pool each step, so the correction is
 * (m_ref - m_bank) / r: both sides have the same finite-sample bias, and the
 * term vanishes in expectation when the student's distribution is the
 * teacher's.  Cost: three GEMMs of (Bc x M x D) per estimate. */

/* labels (host, n) -> one-hot rows (n, K) on the device (K >= 1). */
static void onehot_up(ff_trainer *t, float *dst, const int32_t *labels, int64_t n)
{
    const int64_t K = t->K;
    memset(t->h_k1h, 0, (size_t)(n * K) * sizeof(float));
    for (int64_t i = 0; i < n; i++) t->h_k1h[i * K + labels[i]] = 1.0f;
    up(t, dst, t->h_k1h, n * K, sizeof(float));
}

/* m(Bc,D) = the gamma-weighted mean of bank (M,D) (one-hot bank1h (M,K)) at
 * the correction rows' x_r; ka, kc hold (1 - r)/r^2 and (1 - r)^2/(2 r^2),
 * krow the rows' one-hot. */
static void kernel_mean(ff_trainer *t, float *m, const float *bank, const float *bank1h)
{
    const int64_t Bc = t->Bc, M = t->M, D = t->D, K = t->K;
    fmd_backend *be = t->be;
    t->op->row_dot(be, t->kb2, bank, bank, M, D, 0.0f);
    t->op->gemm(be, 0, 1, Bc, M, D, 1.0f, t->xr, D, bank, D, 0.0f, t->kG, M);
    t->op->bcast_mul(be, t->kG, t->kG, t->ka, Bc, M, 1, 0.0f);
    t->op->gemm(be, 0, 0, Bc, M, 1, -1.0f, t->kc, 1, t->kb2, M, 1.0f, t->kG, M);
    if (K) {
        /* -1e30 on the other classes' entries (same class: 0) */
        t->op->gemm(be, 0, 1, Bc, M, K, 1.0f, t->krow, K, bank1h, K, 0.0f, t->kmask, M);
        t->op->affine(be, t->kmask, 1e30f, -1e30f, Bc * M);
        t->op->axpby(be, t->kG, 1.0f, t->kG, 1.0f, t->kmask, Bc * M);
    }
    t->op->softmax_forward(be, t->kG, t->kG, Bc, M, 1.0f);
    t->op->gemm(be, 0, 0, Bc, D, M, 1.0f, t->kG, M, bank, D, 0.0f, m, D);
}

/* diff (Bc,D) = v_N - reference at the correction rows' x_r (noised has run):
 * zero while the bank is not full. */
static void kernel_correction(ff_trainer *t, float *diff)
{
    const ff_config *c = &t->c;
    const int64_t Bc = t->Bc, M = t->M, D = t->D, Bp = t->Bp;
    fmd_backend *be = t->be;
    if (t->step * Bc < M) {
        t->op->memset0(be, diff, (size_t)(Bc * D) * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < Bc; i++) {
        const double r = t->h_r[i], r1 = 1.0 - r;
        t->h_ka[i] = (float)(r1 / (r * r));
        t->h_kc[i] = (float)(r1 * r1 / (2.0 * r * r));
        t->h_kinv[i] = (float)(1.0 / r);
    }
    up(t, t->ka, t->h_ka, Bc, sizeof(float));
    up(t, t->kc, t->h_kc, Bc, sizeof(float));
    up(t, t->kinv, t->h_kinv, Bc, sizeof(float));
    if (t->K) onehot_up(t, t->krow, t->h_lab + Bp, Bc);
    kernel_mean(t, t->kms, t->kb, t->kbo);
    if (t->npool) {
        /* M pool rows for this step, then (m_ref - m_bank) / r */
        for (int64_t j = 0; j < M; j++)
            t->h_kidx[j] = (int32_t)uniform_index(c->seed, S_KREF_IDX,
                                                  (uint64_t)t->step * (uint64_t)M + (uint64_t)j,
                                                  t->npool);
        up(t, t->kidx, t->h_kidx, M, sizeof(int32_t));
        t->op->embed_forward(be, t->kt, t->pool, t->kidx, M, D);
        if (t->K) {   /* the indices are uploaded: the buffer takes their labels */
            for (int64_t j = 0; j < M; j++) t->h_kidx[j] = t->h_pool_lab[t->h_kidx[j]];
            onehot_up(t, t->kto, t->h_kidx, M);
        }
        kernel_mean(t, t->kmt, t->kt, t->kto);
        t->op->axpby(be, diff, 1.0f, t->kmt, -1.0f, t->kms, Bc * D);
    } else {
        /* (x_r - m_bank) / r - v_teacher */
        t->op->axpby(be, diff, 1.0f, t->xr, -1.0f, t->kms, Bc * D);
    }
    rowscale(t, diff, diff, t->kinv, Bc, 0.0f);
    if (!t->npool) t->op->axpby(be, diff, 1.0f, diff, -1.0f, t->vc, Bc * D);
}

/* The step's one-step samples into the bank's ring (after the step is
 * applied). */
static void kernel_push(ff_trainer *t)
{
    const int64_t Bc = t->Bc, M = t->M, D = t->D, Bp = t->Bp;
    for (int64_t i = 0; i < Bc;) {   /* contiguous pieces of the ring */
        const int64_t j = (int64_t)(((uint64_t)t->step * (uint64_t)Bc + (uint64_t)i) % (uint64_t)M);
        const int64_t n = Bc - i < M - j ? Bc - i : M - j;
        t->op->copy(t->be, t->kb + j * D, t->xhat + i * D, (size_t)(n * D) * sizeof(float));
        for (int64_t q = 0; q < n; q++) t->h_kb_lab[j + q] = t->K ? t->h_lab[Bp + i + q] : 0;
        if (t->K) onehot_up(t, t->kbo + j * t->K, t->h_kb_lab + j, n);
        i += n;
    }
}

int64_t ff_kernel_bank(ff_trainer *t, float **bank, int32_t **labels)
{
    if (bank) *bank = t->kb;
    if (labels) *labels = t->h_kb_lab;
    return t->M;
}

int64_t ff_last_correction(ff_trainer *t, float *xhat, float *xr, float *r, int32_t *labels,
                           float *term)
{
    const int64_t Bc = t->Bc, D = t->D, Bp = t->Bp;
    if (Bc == 0) return 0;
    const size_t n = (size_t)(Bc * D) * sizeof(float);
    t->op->download(t->be, xhat, t->xhat, n);
    t->op->download(t->be, xr, t->xr, n);
    t->op->download(t->be, r, t->r, (size_t)Bc * sizeof(float));
    t->op->download(t->be, term, t->diff + Bp * D, n);
    for (int64_t i = 0; i < Bc; i++) labels[i] = t->K ? t->h_lab[Bp + i] : 0;
    return t->op->sync(t->be) == FMD_OK ? Bc : 0;
}

fmd_status ff_kernel_bank_labels_changed(ff_trainer *t)
{
    FMD_CHECK_ARG(t && t->M, "ff_kernel_bank_labels_changed: no kernel field");
    for (int64_t j = 0; j < t->M; j++)
        FMD_CHECK_ARG(t->h_kb_lab[j] >= 0 && (t->K ? t->h_kb_lab[j] < t->K : t->h_kb_lab[j] == 0),
                      "ff_kernel_bank_labels_changed: bank label %lld = %d out of range",
                      (long long)j, t->h_kb_lab[j]);
    if (t->K) onehot_up(t, t->kbo, t->h_kb_lab, t->M);
    return t->op->sync(t->be);
}

/* The reference network's flow-matching batch for update j: pool rows, r, n
 * from their own streams, x_r = (1 - r) x + r n, the teacher there when g is
 * a residual, and g_ref's output. */
static fmd_status ref_noised(ff_trainer *t, int64_t j)
{
    const ff_config *c = &t->c;
    const int64_t Bc = t->Bc, D = t->D;
    const uint64_t k = (uint64_t)t->step * (uint64_t)c->aux_updates + (uint64_t)j;
    for (int64_t i = 0; i < Bc; i++) {
        const uint64_t e = k * (uint64_t)Bc + (uint64_t)i;
        const int64_t q = uniform_index(c->seed, S_REF_IDX, e, t->npool);
        t->h_pidx[i] = (int32_t)q;
        t->h_plab[i] = t->h_pool_lab[q];
        double r = sigmoid(c->r_loc + c->r_scale * fmd_philox_normal_at(c->seed, S_REF_R, e));
        t->h_r[i] = (float)r;
        t->h_r1[i] = (float)(1.0 - r);
    }
    up(t, t->pidx, t->h_pidx, Bc, sizeof(int32_t));
    up(t, t->ar, t->h_r, Bc, sizeof(float));
    up(t, t->ar1, t->h_r1, Bc, sizeof(float));
    const int32_t *lab = NULL;
    if (t->K) {
        up(t, t->plab, t->h_plab, Bc, sizeof(int32_t));
        lab = t->plab;
    }
    t->op->embed_forward(t->be, t->px, t->pool, t->pidx, Bc, D);
    t->op->fill_normal(t->be, t->pn, Bc * D, c->seed, S_REF_N, k * (uint64_t)(Bc * D));
    rowscale(t, t->pxr, t->px, t->ar1, Bc, 0.0f);
    rowscale(t, t->pxr, t->pn, t->ar, Bc, 1.0f);
    if (t->aux_residual) {
        fmd_status st = t->vel(t->vctx, t->pv, t->pxr, t->ar, lab, Bc, &c->corr_g);
        if (st) return st;
    }
    return nn_model_forward(t->ref, t->pg, t->pxr, t->ar, NULL, lab, Bc);
}

/* Flow-matching gradient of g (aux or ref) on its batch: d = out (+ v) - (n - x)
 * (v: the teacher at x_r when g is a residual), loss = mean |d|^2 through
 * *loss, upstream gradient 2/Bc d into g's backward (diff is scratch). */
static fmd_status fm_grad(ff_trainer *t, nn_model *g, const float *out, const float *n,
                          const float *x, const float *v, float *diff, const char *name,
                          double *loss)
{
    const int64_t Bc = t->Bc, D = t->D;
    fmd_backend *be = t->be;
    t->op->axpby(be, diff, 1.0f, out, -1.0f, n, Bc * D);
    t->op->axpby(be, diff, 1.0f, diff, 1.0f, x, Bc * D);
    if (t->aux_residual) t->op->axpby(be, diff, 1.0f, diff, 1.0f, v, Bc * D);
    double ss = 0.0;
    t->op->reduce(be, FMDB_RED_SUMSQ, diff, Bc * D, &ss);
    *loss = ss / (double)Bc;
    if (!isfinite(ss))
        return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite loss of the %s",
                          (long long)t->step, name);
    t->op->affine(be, diff, 2.0f / (float)Bc, 0.0f, Bc * D);
    fmd_status st = nn_model_zero_grad(g);
    if (!st) st = nn_model_backward(g, diff, NULL, Bc);
    if (st) return st;
    if (t->op->nonfinite(be, nn_model_grads(g), t->np_aux))
        return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite gradient of the %s",
                          (long long)t->step, name);
    return FMD_OK;
}

static fmd_status aux_grad(ff_trainer *t, double *loss)
{
    return fm_grad(t, t->aux, t->ga, t->cn, t->xhat, t->vc, t->adiff,
                   "auxiliary network (flow matching of g)", loss);
}

static fmd_status ref_grad(ff_trainer *t)
{
    double loss;
    return fm_grad(t, t->ref, t->pg, t->pn, t->px, t->pv, t->pdiff, "reference network g_ref",
                   &loss);
}

/* AdamW on g (or g_ref: the same settings) with its gradient clipped; with
 * aux_decay its rate follows the student's schedule (Adam's step does not
 * shrink with the gradient: a rate that keeps g up with the student early
 * stops it learning late, when the residual it fits is small;
 * docs/distiller.md, "Does the auxiliary network learn?"). */
static void aux_apply(ff_trainer *t, nn_model *g, float *m, float *v, int64_t aux_step)
{
    const ff_config *c = &t->c;
    double alr = c->aux_lr;
    if (c->aux_decay) alr *= lr_at(c, t->step) / c->lr;
    double gs = 0.0;
    float scale = 1.0f;
    if (c->grad_clip > 0) {
        t->op->reduce(t->be, FMDB_RED_SUMSQ, nn_model_grads(g), t->np_aux, &gs);
        double gn = sqrt(gs);
        if (gn > c->grad_clip) scale = (float)(c->grad_clip / gn);
    }
    t->op->adamw(t->be, nn_model_params(g), nn_model_grads(g), m, v, t->np_aux,
                 (float)alr, (float)c->beta1, (float)c->beta2, (float)c->adam_eps, 0.0f,
                 aux_step, scale);
}

fmd_status ff_prediction_target(ff_trainer *t, float *target, float *F, float *delta,
                                int64_t *rows)
{
    FMD_CHECK_ARG(t && target && F && delta && rows, "ff_prediction_target: NULL argument");
    FMD_CHECK_ARG(!t->c.data_based || t->ndata > 0, "ff_prediction_target: no data");
    draw_rows(t);
    fmd_status st = predict(t);
    if (st) return st;
    size_t n = (size_t)(t->Bp * t->D) * sizeof(float);
    t->op->download(t->be, target, t->tgt, n);
    t->op->download(t->be, F, t->F, n);
    memcpy(delta, t->h_dl, (size_t)t->Bp * sizeof(float));
    *rows = t->Bp;
    return t->op->sync(t->be);
}

fmd_status ff_step(ff_trainer *t, ff_step_stats *out)
{
    FMD_CHECK_ARG(t, "ff_step: trainer is NULL");
    const ff_config *c = &t->c;
    FMD_CHECK_ARG(!c->data_based || t->ndata > 0,
                  "fmd_distiller_step: data_based=1 needs data (fmd_distiller_set_data or "
                  "option data_pool)");
    const int64_t B = t->B, Bp = t->Bp, Bc = t->Bc, D = t->D;
    fmd_backend *be = t->be;
    ff_step_stats s;
    memset(&s, 0, sizeof s);
    fmd_status st;

    draw_rows(t);
    st = predict(t);
    if (st) return st;

    /* correction rows: xhat = z - F(z, 1); v_N - v at x_r */
    if (Bc > 0) {
        t->op->axpby(be, t->xhat, 1.0f, t->X0 + Bp * D, -1.0f, t->F + Bp * D, Bc * D);
        st = noised(t, 0);
        if (st) return st;
        if (t->M) {
            kernel_correction(t, t->diff + Bp * D);
        } else if (t->ref) {
            /* v_N - g_ref (for residual networks the teacher cancels) */
            const int32_t *lab = t->K ? t->lab + Bp : NULL;
            st = nn_model_forward(t->ref, t->gref, t->xr, t->r, NULL, lab, Bc);
            if (st) return st;
            t->op->axpby(be, t->diff + Bp * D, 1.0f, t->ga, -1.0f, t->gref, Bc * D);
        } else if (t->aux_residual) {
            t->op->copy(be, t->diff + Bp * D, t->ga, (size_t)(Bc * D) * sizeof(float));
        } else {
            t->op->axpby(be, t->diff + Bp * D, 1.0f, t->ga, -1.0f, t->vc, Bc * D);
        }
    }
    t->op->row_dot(be, t->rowv, t->diff, t->diff, B, D, 0.0f);
    t->op->download(be, t->h_rowv, t->rowv, (size_t)B * sizeof(float));
    st = t->op->sync(be);
    if (st) return fmd_seterr(st, "distiller step %lld: %s", (long long)t->step, be->errmsg);

    /* per-row weights, losses, lambda */
    double sp = 0.0, sn = 0.0, sc = 0.0, sc2 = 0.0;
    for (int64_t i = 0; i < Bp; i++) {
        double n2 = t->h_rowv[i];
        double w = c->weight_k == 0.0 ? 1.0 : 1.0 / pow(n2 / (double)D + c->weight_eps, c->weight_k);
        sp += w * n2;
        sn += sqrt(n2);
        t->h_scale[i] = (float)(2.0 * w / (double)Bp);
    }
    for (int64_t i = Bp; i < B; i++) {
        sc += sqrt(t->h_rowv[i]);
        sc2 += t->h_rowv[i];
    }
    if (!isfinite(sp) || !isfinite(sn)) {
        const char *what = t->op->nonfinite(be, t->F, B * D)
                               ? "student output F"
                               : "prediction target (teacher velocity)";
        return fmd_seterr(FMD_ERR_NONFINITE,
                          "distiller step %lld: non-finite prediction loss (%s)",
                          (long long)t->step, what);
    }
    if (!isfinite(sc) || !isfinite(sc2)) {
        const char *what = t->op->nonfinite(be, t->vc, Bc * D) ? "teacher velocity at x_r"
                           : t->ref && t->op->nonfinite(be, t->gref, Bc * D) ? "reference velocity g_ref"
                           : t->M ? "kernel velocity of the sample bank"
                                  : "auxiliary velocity v_N";
        return fmd_seterr(FMD_ERR_NONFINITE,
                          "distiller step %lld: non-finite correction term (%s)",
                          (long long)t->step, what);
    }
    s.loss_pred = Bp ? sp / (double)Bp : 0.0;
    s.delta_norm = Bp ? sn / (double)Bp : 0.0;
    s.vdiff_norm = Bc ? sc / (double)Bc : 0.0;
    s.loss_corr = Bc ? sc2 / (double)Bc : 0.0;
    double ramp = 1.0;
    if (c->warmup > 0 && t->step < c->warmup) ramp = (double)(t->step + 1) / (double)c->warmup;
    double lam = 0.0;
    if (Bc > 0 && !(t->M && sc == 0.0)) {   /* kernel field: 0 until the bank is full */
        double ref = Bp ? s.delta_norm : 1.0;
        lam = alpha_at(c, t->step) * ramp * ref / (s.vdiff_norm + c->lambda_eps);
        for (int64_t i = Bp; i < B; i++) t->h_scale[i] = (float)(lam / (double)Bc);
    }
    s.lambda = lam;
    up(t, t->scale, t->h_scale, B, sizeof(float));
    rowscale(t, t->dout, t->diff, t->scale, B, 0.0f);

    /* student gradient (not applied yet) */
    st = nn_model_zero_grad(t->student);
    if (!st) st = nn_model_backward(t->student, t->dout, NULL, B);
    if (st) return st;
    double gs = 0.0;
    t->op->reduce(be, FMDB_RED_SUMSQ, nn_model_grads(t->student), t->np, &gs);
    st = t->op->sync(be);
    if (st) return fmd_seterr(st, "distiller step %lld: %s", (long long)t->step, be->errmsg);
    if (!isfinite(gs))
        return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite student gradient",
                          (long long)t->step);
    s.grad_norm = sqrt(gs);

    /* first auxiliary gradient on the same x_r (checked before anything moves) */
    if (Bc > 0 && t->aux) {
        st = aux_grad(t, &s.loss_aux);
        if (!st && t->ref) st = ref_noised(t, 0);
        if (!st && t->ref) st = ref_grad(t);
        if (st) return st;
    }

    /* apply: AdamW + EMA on the student, AdamW on g */
    float scale = 1.0f;
    if (c->grad_clip > 0 && s.grad_norm > c->grad_clip) scale = (float)(c->grad_clip / s.grad_norm);
    s.lr = lr_at(c, t->step);
    t->op->adamw(be, nn_model_params(t->student), nn_model_grads(t->student), t->m, t->v, t->np,
                 (float)s.lr, (float)c->beta1, (float)c->beta2, (float)c->adam_eps,
                 (float)c->weight_decay, t->step + 1, scale);
    double ed = (1.0 + (double)t->step) / (10.0 + (double)t->step);
    if (ed > c->ema) ed = c->ema;
    t->op->ema(be, nn_model_params(t->ema), nn_model_params(t->student), t->np, (float)ed);
    if (t->M) kernel_push(t);
    if (Bc > 0 && t->aux) {
        aux_apply(t, t->aux, t->am, t->av, t->step * c->aux_updates + 1);
        if (t->ref) aux_apply(t, t->ref, t->rm, t->rv, t->step * c->aux_updates + 1);
        /* further updates of g (and g_ref) on fresh (r, n) around the same
         * detached xhat (fresh pool rows) */
        for (int64_t j = 1; j < c->aux_updates; j++) {
            st = noised(t, j);
            if (!st) st = aux_grad(t, &s.loss_aux);
            if (!st) aux_apply(t, t->aux, t->am, t->av, t->step * c->aux_updates + j + 1);
            if (!st && t->ref) st = ref_noised(t, j);
            if (!st && t->ref) st = ref_grad(t);
            if (st) {
                t->step++;   /* the student step did happen */
                return st;
            }
            if (t->ref) aux_apply(t, t->ref, t->rm, t->rv, t->step * c->aux_updates + j + 1);
        }
    }
    st = t->op->sync(be);
    if (st) return fmd_seterr(st, "distiller step %lld: %s", (long long)t->step, be->errmsg);
    t->step++;
    if (out) *out = s;
    return FMD_OK;
}
