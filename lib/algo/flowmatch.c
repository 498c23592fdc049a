/* flowmatch.c - flow-matching training of a teacher network (flowmatch.h). */
#include <math.h>
#include <string.h>
#include "algo/flowmatch.h"
#include "comm/comm.h"
#include "util/philox.h"
#include "util/util.h"

#define FM_STREAM_IDX 0x666d696478ull   /* "fmidx"  */
#define FM_STREAM_T 0x666d74696d65ull   /* "fmtime" */
#define FM_STREAM_DROP 0x666d64726full  /* "fmdro"  */
#define FM_STREAM_EPS 0x666d657073ull   /* "fmeps"  */

struct fm_trainer {
    fmd_backend *be;
    nn_model *net;
    fm_data data;
    fm_config cfg;
    int64_t step, np;
    int64_t B, r0;      /* this rank's rows [r0, r0 + B) of the global batch cfg.batch */
    /* host staging */
    float *h_x0, *h_t;
    int32_t *h_l;
    /* device */
    float *x0, *eps, *xt, *tgt, *out, *t, *omt, *m, *v, *ema;
    int32_t *lab;
};

void fm_destroy(fm_trainer *tr)
{
    if (!tr) return;
    fmd_backend *be = tr->be;
    float *bufs[] = {tr->x0, tr->eps, tr->xt, tr->tgt, tr->out, tr->t, tr->omt, tr->m, tr->v, tr->ema};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->ops->free(be, bufs[i]);
    be->ops->free(be, tr->lab);
    fmd_free(tr->h_x0);
    fmd_free(tr->h_t);
    fmd_free(tr->h_l);
    fmd_free(tr);
}

fmd_status fm_create(fmd_backend *be, nn_model *net, const fm_data *data, const fm_config *cfg,
                     fm_trainer **out)
{
    FMD_CHECK_ARG(be && net && data && cfg && out, "fm_create: NULL argument");
    FMD_CHECK_ARG(data->x && data->n >= 1, "fm_create: empty data");
    FMD_CHECK_ARG(data->dim == nn_model_dim(net), "fm_create: data dim %lld != network dim %lld",
                  (long long)data->dim, (long long)nn_model_dim(net));
    const nn_config *nc = nn_model_config(net);
    FMD_CHECK_ARG(!nc->student, "fm_create: the network must be in teacher form");
    FMD_CHECK_ARG(cfg->batch >= 1 && cfg->batch <= (1 << 24), "fm_create: batch %lld out of range",
                  (long long)cfg->batch);
    FMD_CHECK_ARG(cfg->batch % fmd_comm_size(cfg->comm) == 0, "fmd_teacher_train: option batch "
                  "= %lld is not divisible by the %d ranks of the communicator", (long long)cfg->batch,
                  fmd_comm_size(cfg->comm));
    const int cond = cfg->conditional && data->labels && nc->num_classes > 0;
    if (cond)
        FMD_CHECK_ARG(data->num_classes <= nc->num_classes, "fm_create: data has %d classes, the "
                      "network %d", data->num_classes, nc->num_classes);
    fm_trainer *tr = fmd_xcalloc(1, sizeof *tr, "flow-matching trainer");
    if (!tr) return FMD_ERR_OOM;
    tr->be = be;
    tr->net = net;
    tr->data = *data;
    tr->cfg = *cfg;
    tr->cfg.conditional = cond;
    tr->np = nn_model_num_params(net);
    tr->B = cfg->batch / fmd_comm_size(cfg->comm);
    tr->r0 = (int64_t)fmd_comm_rank(cfg->comm) * tr->B;
    const int64_t B = tr->B, D = data->dim, n = B * D;
    tr->h_x0 = fmd_malloc((size_t)n * sizeof(float));
    tr->h_t = fmd_malloc((size_t)B * sizeof(float));
    tr->h_l = fmd_malloc((size_t)B * sizeof(int32_t));
    size_t fb = (size_t)n * sizeof(float), tb = (size_t)B * sizeof(float),
           pb = (size_t)tr->np * sizeof(float);
    tr->x0 = be->ops->alloc(be, fb);
    tr->eps = be->ops->alloc(be, fb);
    tr->xt = be->ops->alloc(be, fb);
    tr->tgt = be->ops->alloc(be, fb);
    tr->out = be->ops->alloc(be, fb);
    tr->t = be->ops->alloc(be, tb);
    tr->omt = be->ops->alloc(be, tb);
    tr->lab = be->ops->alloc(be, (size_t)B * sizeof(int32_t));
    tr->m = be->ops->alloc(be, pb);
    tr->v = be->ops->alloc(be, pb);
    tr->ema = be->ops->alloc(be, pb);
    fmd_status st = FMD_OK;
    if (!tr->h_x0 || !tr->h_t || !tr->h_l || !tr->x0 || !tr->eps || !tr->xt || !tr->tgt ||
        !tr->out || !tr->t || !tr->omt || !tr->lab || !tr->m || !tr->v || !tr->ema)
        st = fmd_seterr(FMD_ERR_OOM, "fm_create: out of memory (batch %lld x %lld, %lld params)",
                        (long long)B, (long long)D, (long long)tr->np);
    /* every rank starts from rank 0's weights */
    if (!st) st = comm_bcast_dev(cfg->comm, be, nn_model_params(net), tr->np);
    if (!st) {
        be->ops->memset0(be, tr->m, pb);
        be->ops->memset0(be, tr->v, pb);
        be->ops->copy(be, tr->ema, nn_model_params(net), pb);
        st = be->ops->sync(be);
        if (st) st = fmd_seterr(st, "fm_create: %s", be->errmsg);
    }
    if (!st) st = nn_model_reserve_ex(net, B, NN_RESERVE_NO_JVP);
    if (st) {
        fm_destroy(tr);
        return st;
    }
    *out = tr;
    return FMD_OK;
}

int64_t fm_steps_done(const fm_trainer *tr) { return tr ? tr->step : 0; }
float *fm_ema(fm_trainer *tr) { return tr ? tr->ema : NULL; }
float *fm_adam_m(fm_trainer *tr) { return tr ? tr->m : NULL; }
float *fm_adam_v(fm_trainer *tr) { return tr ? tr->v : NULL; }
void fm_set_steps_done(fm_trainer *tr, int64_t k)
{
    if (tr && k >= 0) tr->step = k;
}

fmd_status fm_step(fm_trainer *tr, double *loss_out, double *gnorm_out, double *lr_out)
{
    fmd_backend *be = tr->be;
    const fm_config *c = &tr->cfg;
    const fm_data *d = &tr->data;
    const int64_t B = tr->B, D = d->dim, n = B * D, gB = c->batch;
    const uint64_t k = (uint64_t)tr->step;
    const int nc = nn_model_config(tr->net)->num_classes;
    /* batch rows, times and labels from (seed, stream, step, row) */
    for (int64_t i = 0; i < B; i++) {
        uint64_t e = k * (uint64_t)gB + (uint64_t)(tr->r0 + i);   /* the global row */
        fmd_philox_ctr r = fmd_philox_block(c->seed, FM_STREAM_IDX, e);
        uint64_t row = (((uint64_t)r.v[0] << 32) | r.v[1]) % (uint64_t)d->n;
        memcpy(tr->h_x0 + i * D, d->x + row * D, (size_t)D * sizeof(float));
        float t;
        if (c->t_logit_normal) {
            float z = fmd_philox_normal_at(c->seed, FM_STREAM_T, e);
            t = 1.0f / (1.0f + expf(-(c->t_mean + c->t_std * z)));
        } else {
            t = fmd_philox_uniform_at(c->seed, FM_STREAM_T, e);
        }
        tr->h_t[i] = t;
        int32_t lab = nc;
        if (c->conditional) {
            lab = d->labels[row];
            if (fmd_philox_uniform_at(c->seed, FM_STREAM_DROP, e) < c->class_dropout) lab = nc;
        }
        tr->h_l[i] = lab;
    }
    be->ops->upload(be, tr->x0, tr->h_x0, (size_t)n * sizeof(float));
    be->ops->upload(be, tr->t, tr->h_t, (size_t)B * sizeof(float));
    if (nc > 0) be->ops->upload(be, tr->lab, tr->h_l, (size_t)B * sizeof(int32_t));
    be->ops->fill_normal(be, tr->eps, n, c->seed, FM_STREAM_EPS,
                         (k * (uint64_t)gB + (uint64_t)tr->r0) * (uint64_t)D);
    /* x_t = (1 - t) x0 + t eps; target = eps - x0 */
    be->ops->copy(be, tr->omt, tr->t, (size_t)B * sizeof(float));
    be->ops->affine(be, tr->omt, -1.0f, 1.0f, B);
    be->ops->bcast_mul(be, tr->xt, tr->x0, tr->omt, B, D, 1, 0.0f);
    be->ops->bcast_mul(be, tr->xt, tr->eps, tr->t, B, D, 1, 1.0f);
    be->ops->axpby(be, tr->tgt, 1.0f, tr->eps, -1.0f, tr->x0, n);
    fmd_status st = nn_model_forward(tr->net, tr->out, tr->xt, tr->t, NULL, nc > 0 ? tr->lab : NULL, B);
    if (st) return st;
    /* residual, loss, upstream gradient 2 (out - target) / (B D) */
    be->ops->axpby(be, tr->out, 1.0f, tr->out, -1.0f, tr->tgt, n);
    double ss = 0;
    be->ops->reduce(be, FMDB_RED_SUMSQ, tr->out, n, &ss);
    if ((st = be->ops->sync(be))) return fmd_seterr(st, "flow matching: %s", be->errmsg);
    if ((st = comm_sum_f64(c->comm, &ss, 1))) return st;
    const double gn_elems = (double)gB * (double)D;   /* the global batch's numbers */
    double loss = ss / gn_elems;
    be->ops->affine(be, tr->out, (float)(2.0 / gn_elems), 0.0f, n);
    if ((st = nn_model_zero_grad(tr->net))) return st;
    if ((st = nn_model_backward(tr->net, tr->out, NULL, B))) return st;
    if ((st = comm_sum_dev(c->comm, be, nn_model_grads(tr->net), tr->np))) return st;
    double gnorm = 0;
    if ((st = optim_grad_norm(be, nn_model_grads(tr->net), tr->np, &gnorm))) return st;
    if (!isfinite(loss) || !isfinite(gnorm))
        return fmd_seterr(FMD_ERR_NONFINITE, "flow matching: step %lld: loss %g, gradient norm %g "
                          "(nothing updated; lower lr?)", (long long)tr->step, loss, gnorm);
    double lr = optim_lr_at(&c->opt, tr->step);
    optim_adamw(be, &c->opt, nn_model_params(tr->net), nn_model_grads(tr->net), tr->m, tr->v,
                tr->np, lr, gnorm, tr->step);
    optim_ema(be, &c->opt, tr->ema, nn_model_params(tr->net), tr->np, tr->step);
    if ((st = be->ops->sync(be))) return fmd_seterr(st, "flow matching: %s", be->errmsg);
    tr->step++;
    if (loss_out) *loss_out = loss;
    if (gnorm_out) *gnorm_out = gnorm;
    if (lr_out) *lr_out = lr;
    return FMD_OK;
}
