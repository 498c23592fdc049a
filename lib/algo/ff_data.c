/* ff_data.c - the data-based baseline's rows (docs/math.md, "The data-based
 * baseline"): a data set (given, or a pool of the teacher's own ODE
 * samples), and the start states of the rows that begin on it, x_t0 =
 * (1 - t0) x0 + t0 eps. */
#include <math.h>
#include <string.h>
#include "algo/ff_internal.h"
#include "util/util.h"

static void data_free(ff_trainer *t, float *p)
{
    if (p) t->op->free(t->be, p);
}

/* Zeroed device rows for n samples and host labels (classes only). */
static fmd_status data_new(ff_trainer *t, int64_t n, const char *fn, float **d, int32_t **hl)
{
    *d = t->op->alloc(t->be, (size_t)(n * t->D) * sizeof(float));
    *hl = t->K ? fmd_calloc((size_t)n, sizeof(int32_t)) : NULL;
    if (*d && (!t->K || *hl)) {
        t->op->memset0(t->be, *d, (size_t)(n * t->D) * sizeof(float));
        return FMD_OK;
    }
    data_free(t, *d);
    fmd_free(*hl);
    return fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %lld x %lld data rows", fn,
                      (long long)n, (long long)t->D);
}

/* Replace the trainer's data set by (d, hl, n), which it then owns. */
static void data_install(ff_trainer *t, float *d, int32_t *hl, int64_t n)
{
    data_free(t, t->data);
    fmd_free(t->h_data_lab);
    t->data = d;
    t->h_data_lab = hl;
    t->ndata = n;
}

void ff_data_rows(ff_trainer *t, int64_t Bd)
{
    const int64_t D = t->D;
    /* X0 = (1 - t0) x0[idx] + t0 eps on the data rows */
    ff_up(t, t->idx, t->h_idx, Bd, sizeof(int32_t));
    t->op->embed_forward(t->be, t->xa, t->data, t->idx, Bd, D);
    for (int64_t i = 0; i < Bd; i++) {
        t->h_k1[i] = 1.0f - t->h_t0[i];
        t->h_k2[i] = t->h_t0[i];
    }
    ff_up_rows(t, Bd, 2, (float *[]){t->k1, t->k2}, (float *[]){t->h_k1, t->h_k2});
    ff_rowscale(t, t->xe, t->xa, t->k1, Bd, 0.0f);
    ff_rowscale(t, t->xe, t->X0, t->k2, Bd, 1.0f);
    t->op->copy(t->be, t->X0, t->xe, (size_t)(Bd * D) * sizeof(float));
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
    float *d;
    int32_t *hl;
    fmd_status st = data_new(t, n, "ff_set_data", &d, &hl);
    if (st) return st;
    ff_up(t, d, x0, n * t->D, sizeof(float));
    if (hl) memcpy(hl, labels, (size_t)n * sizeof(int32_t));
    data_install(t, d, hl, n);
    return t->op->sync(t->be);
}

static fmd_status solve_pool(ff_trainer *t, float *dst, const int32_t *h_lab, int64_t n,
                             int64_t steps)
{
    const ff_config *c = &t->c;
    const int64_t D = t->D, B = t->B;
    for (int64_t r0 = 0; r0 < n; r0 += B) {
        const int64_t b = n - r0 < B ? n - r0 : B;
        const int32_t *lab = NULL;
        if (t->K) {
            ff_up(t, t->lab, h_lab + r0, b, sizeof(int32_t));
            lab = t->lab;
        }
        t->op->fill_normal(t->be, t->X0, b * D, c->seed, FF_STREAM_DATA_POOL, (uint64_t)(r0 * D));
        for (int64_t s = 0; s < steps; s++) {
            const float t1 = 1.0f - (float)s / (float)steps, t2 = 1.0f - (float)(s + 1) / (float)steps;
            const float h = t2 - t1;
            for (int64_t i = 0; i < b; i++) t->h_tin[i] = t1;
            ff_up(t, t->tin, t->h_tin, b, sizeof(float));
            fmd_status st = t->vel(t->vctx, t->v1, t->X0, t->tin, lab, b, &c->pred_g);
            if (st) return st;
            t->op->axpby(t->be, t->xe, 1.0f, t->X0, h, t->v1, b * D);
            for (int64_t i = 0; i < b; i++) t->h_tin[i] = t2;
            ff_up(t, t->tin, t->h_tin, b, sizeof(float));
            st = t->vel(t->vctx, t->v2, t->xe, t->tin, lab, b, &c->pred_g);
            if (st) return st;
            t->op->axpby(t->be, t->v1, 0.5f * h, t->v1, 0.5f * h, t->v2, b * D);
            t->op->axpby(t->be, t->X0, 1.0f, t->X0, 1.0f, t->v1, b * D);
        }
        if (t->op->nonfinite(t->be, t->X0, b * D))
            return fmd_seterr(FMD_ERR_NONFINITE, "distiller: the teacher's ODE gave a non-finite "
                              "sample for the data pool (rows %lld..%lld)", (long long)r0,
                              (long long)(r0 + b - 1));
        t->op->copy(t->be, dst + r0 * D, t->X0, (size_t)(b * D) * sizeof(float));
    }
    return t->op->sync(t->be);
}

fmd_status ff_make_data_pool(ff_trainer *t, int64_t n, int64_t steps)
{
    FMD_CHECK_ARG(t, "ff_make_data_pool: NULL trainer");
    FMD_CHECK_ARG(n >= 1 && n <= INT32_MAX, "ff_make_data_pool: pool size must be in [1, 2^31) "
                  "(got %lld)", (long long)n);
    FMD_CHECK_ARG(steps >= 1, "ff_make_data_pool: steps must be >= 1 (got %lld)", (long long)steps);
    float *d;
    int32_t *hl;
    fmd_status st = data_new(t, n, "ff_make_data_pool", &d, &hl);
    if (st) return st;
    for (int64_t i = 0; hl && i < n; i++) hl[i] = (int32_t)(i % t->K);
    if ((st = solve_pool(t, d, hl, n, steps))) {
        data_free(t, d);
        fmd_free(hl);
        return st;
    }
    data_install(t, d, hl, n);
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

void ff_take_data(ff_trainer *dst, ff_trainer *src)
{
    if (!src->data) return;
    data_install(dst, src->data, src->h_data_lab, src->ndata);
    src->data = NULL;
    src->h_data_lab = NULL;
    src->ndata = 0;
}
