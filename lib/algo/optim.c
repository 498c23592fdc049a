/* optim.c - schedule, clipping, AdamW and EMA (optim.h). */
#include <math.h>
#include "algo/optim.h"
#include "util/util.h"

double optim_lr_at(const optim_config *c, int64_t k)
{
    if (c->warmup > 0 && k < c->warmup) return c->lr * (double)(k + 1) / (double)c->warmup;
    const int64_t span = c->steps - c->warmup;
    if (c->decay == OPTIM_CONST || span <= 0) return c->lr;
    double p = (double)(k - c->warmup) / (double)span;
    if (p > 1) p = 1;
    const double lo = c->lr_end;
    if (c->decay == OPTIM_LINEAR) return lo + (c->lr - lo) * (1.0 - p);
    return lo + 0.5 * (c->lr - lo) * (1 + cos(M_PI * p));
}

double optim_ema_decay(const optim_config *c, int64_t k)
{
    return fmin(c->ema, (1.0 + (double)k) / (10.0 + (double)k));
}

fmd_status optim_grad_norm(fmd_backend *be, const float *grads, int64_t n, double *norm)
{
    double ss = 0.0;
    be->ops->reduce(be, FMDB_RED_SUMSQ, grads, n, &ss);
    fmd_status st = be->ops->sync(be);
    if (st) return fmd_seterr(st, "optimiser: %s", be->errmsg);
    *norm = sqrt(ss);
    return FMD_OK;
}

void optim_adamw(fmd_backend *be, const optim_config *c, float *params, const float *grads,
                 float *m, float *v, int64_t n, double lr, double grad_norm, int64_t k)
{
    const float scale =
        c->grad_clip > 0 && grad_norm > c->grad_clip ? (float)(c->grad_clip / grad_norm) : 1.0f;
    be->ops->adamw(be, params, grads, m, v, n, (float)lr, (float)c->beta1, (float)c->beta2,
                   (float)c->eps, (float)c->weight_decay, k + 1, scale);
}

void optim_ema(fmd_backend *be, const optim_config *c, float *ema, const float *params, int64_t n,
               int64_t k)
{
    be->ops->ema(be, ema, params, n, (float)optim_ema_decay(c, k));
}
