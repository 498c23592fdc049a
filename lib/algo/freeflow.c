/* freeflow.c - the FreeFlow trainer: its buffers (laid out once), the rows a
 * step draws, and the step itself, which reads top to bottom: draw rows ->
 * prediction target and student forward (ff_predict.c) -> correction term
 * (ff_correct.c) -> per-row weights, losses and lambda -> student backward
 * -> g's gradient -> apply (g, then the student and its EMA; algo/optim.c).
 * Everything that can fail happens before anything is applied. */
#include <math.h>
#include <string.h>
#include "algo/ff_internal.h"
#include "comm/comm.h"
#include "util/arena.h"
#include "util/philox.h"
#include "util/util.h"

/* ---- small helpers shared by the trainer's files ------------------------------ */

void ff_rowscale(ff_trainer *t, float *out, const float *x, const float *coef, int64_t rows,
                 float beta)
{
    if (rows > 0) t->op->bcast_mul(t->be, out, x, coef, rows, t->D, 1, beta);
}

void ff_up(ff_trainer *t, void *dst, const void *src, int64_t n, size_t esz)
{
    if (n > 0) t->op->upload(t->be, dst, src, (size_t)n * esz);
}

void ff_up_rows(ff_trainer *t, int64_t n, int k, float *const *dst, float *const *src)
{
    for (int i = 0; i < k; i++) ff_up(t, dst[i], src[i], n, sizeof(float));
}

int64_t ff_uniform_index(uint64_t seed, uint64_t stream, uint64_t e, int64_t n)
{
    int64_t k = (int64_t)(fmd_philox_uniform_at(seed, stream, e) * (double)n);
    return k >= n ? n - 1 : k;
}

double ff_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- buffers ------------------------------------------------------------------- */

/* Every buffer of the trainer, in one list: called with dev = host = NULL to
 * count (returns the floats needed in *ndev, *nhost), then with the two
 * allocations to place them. */
static void ff_layout(ff_trainer *t, float *dev, float *host, int64_t *ndev, int64_t *nhost)
{
    const int64_t B = t->B, D = t->D, Bc = t->Bc;
    int64_t od = 0, oh = 0;
#define DEV(p, n) t->p = (void *)fmd_arena_take(dev, &od, (n))
#define HOST(p, n) t->p = (void *)fmd_arena_take(host, &oh, (n))
    DEV(m, t->np);
    DEV(v, t->np);
    if (t->aux) {
        DEV(am, t->np_aux);
        DEV(av, t->np_aux);
        if (t->c.aux_updates > 1) DEV(aux_save, 3 * t->np_aux);
    }
    DEV(X0, B * D); DEV(F, B * D); DEV(Fp, B * D); DEV(xa, B * D); DEV(v1, B * D);
    DEV(xe, B * D); DEV(v2, B * D); DEV(tgt, B * D); DEV(diff, B * D); DEV(dout, B * D);
    if (t->c.target == FF_TARGET_FD) DEV(Fm, B * D);
    if (Bc > 0) {
        DEV(xhat, Bc * D); DEV(cn, Bc * D); DEV(xr, Bc * D); DEV(vc, Bc * D);
        DEV(ga, Bc * D); DEV(adiff, Bc * D);
    }
    DEV(tin, B); DEV(dl, B); DEV(tin2, B); DEV(dl2, B); DEV(tin3, B); DEV(dl3, B);
    DEV(tan_t, B); DEV(tan_d, B); DEV(k1, B); DEV(k2, B); DEV(k3, B); DEV(scale, B);
    DEV(rowv, B); DEV(r, B); DEV(r1, B); DEV(lab, B); DEV(idx, B);
    HOST(h_t0, B); HOST(h_dl, B); HOST(h_tin, B); HOST(h_tin2, B); HOST(h_dl2, B);
    HOST(h_tin3, B); HOST(h_dl3, B); HOST(h_tan_t, B); HOST(h_tan_d, B); HOST(h_k1, B);
    HOST(h_k2, B); HOST(h_k3, B); HOST(h_scale, B); HOST(h_rowv, B); HOST(h_r, B);
    HOST(h_r1, B); HOST(h_lab, B); HOST(h_idx, B);
#undef DEV
#undef HOST
    *ndev = od;
    *nhost = oh;
}

void ff_destroy(ff_trainer *t)
{
    if (!t) return;
    if (t->dev) t->op->free(t->be, t->dev);
    if (t->data) t->op->free(t->be, t->data);
    fmd_free(t->host);
    fmd_free(t->h_data_lab);
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
    FMD_CHECK_ARG(cfg->batch % fmd_comm_size(cfg->comm) == 0,
                  "distiller: option batch = %lld is not divisible by the %d ranks of the "
                  "communicator (each rank takes batch/ranks rows)", (long long)cfg->batch,
                  fmd_comm_size(cfg->comm));
    FMD_CHECK_ARG(cfg->pred || cfg->corr, "ff_create: both objectives are switched off");
    FMD_CHECK_ARG(!cfg->corr || aux, "ff_create: the correction needs an auxiliary network");
    FMD_CHECK_ARG(cfg->aux_updates >= 1, "ff_create: aux_updates must be >= 1");
    FMD_CHECK_ARG(nn_model_num_params(ema) == nn_model_num_params(student),
                  "ff_create: EMA model differs from the student");

    ff_trainer *t = fmd_xcalloc(1, sizeof *t, "ff_trainer");
    if (!t) return FMD_ERR_OOM;
    t->be = be;
    t->op = be->ops;
    t->c = *cfg;
    t->student = student;
    t->ema = ema;
    t->aux = cfg->corr ? aux : NULL;
    t->aux_residual = aux_residual;
    t->vel = vel;
    t->vctx = vctx;
    t->D = nn_model_dim(student);
    t->K = sc->num_classes;
    t->gB = cfg->batch;
    if (cfg->pred && cfg->corr) {
        t->gBc = (int64_t)llround((double)t->gB * cfg->corr_frac);
        if (t->gBc < 1) t->gBc = 1;
        if (t->gBc > t->gB - 1) t->gBc = t->gB - 1;
    } else {
        t->gBc = cfg->corr ? t->gB : 0;
    }
    t->gBp = t->gB - t->gBc;
    /* this rank's rows [r0, r0 + B) of the global batch: the prediction rows
     * among them come first, as in the global layout */
    t->comm = cfg->comm;
    const int64_t nranks = fmd_comm_size(cfg->comm);
    t->B = t->gB / nranks;
    t->r0 = (int64_t)fmd_comm_rank(cfg->comm) * t->B;
    t->Bp = t->gBp - t->r0 < 0 ? 0 : t->gBp - t->r0 > t->B ? t->B : t->gBp - t->r0;
    t->Bc = t->B - t->Bp;
    t->c0 = (t->r0 > t->gBp ? t->r0 : t->gBp) - t->gBp;
    t->np = nn_model_num_params(student);
    t->np_aux = t->aux ? nn_model_num_params(t->aux) : 0;
    /* g: AdamW at aux_lr, constant, no weight decay, the student's clip */
    t->aux_opt = cfg->opt;
    t->aux_opt.lr = cfg->aux_lr;
    t->aux_opt.decay = OPTIM_CONST;
    t->aux_opt.warmup = 0;
    t->aux_opt.weight_decay = 0.0;

    int64_t nd, nh;
    ff_layout(t, NULL, NULL, &nd, &nh);
    t->dev = t->op->alloc(be, (size_t)nd * sizeof(float));
    t->host = fmd_calloc((size_t)nh, sizeof(float));
    if (!t->dev || !t->host) {
        fmd_status st = fmd_seterr(FMD_ERR_OOM, "ff_create: out of memory for the buffers of batch "
                                   "%lld x %lld (%lld + %lld floats)", (long long)t->B,
                                   (long long)t->D, (long long)nd, (long long)nh);
        ff_destroy(t);   /* after the message: it reads t */
        return st;
    }
    t->op->memset0(be, t->dev, (size_t)nd * sizeof(float));
    ff_layout(t, t->dev, t->host, &nd, &nh);
    /* activation arenas, EMA = student, and one warm-up call of the teacher at
     * the largest batch so that its scratch is sized before the first step */
    fmd_status st = nn_model_reserve(student, t->B);
    if (!st && t->aux && t->Bc > 0) st = nn_model_reserve(t->aux, t->Bc);
    /* every rank starts from rank 0's weights */
    if (!st) st = comm_bcast_dev(t->comm, be, nn_model_params(student), t->np);
    if (!st && t->aux) st = comm_bcast_dev(t->comm, be, nn_model_params(t->aux), t->np_aux);
    if (!st) {
        t->op->copy(be, nn_model_params(ema), nn_model_params(student), (size_t)t->np * sizeof(float));
        for (int64_t i = 0; i < t->B; i++) t->h_tin[i] = 0.5f;
        ff_up(t, t->tin, t->h_tin, t->B, sizeof(float));
        const int32_t *lab = t->K ? t->lab : NULL;
        st = vel(vctx, t->v1, t->X0, t->tin, lab, t->B, &cfg->pred_g);
        if (!st && t->Bc > 0) st = vel(vctx, t->v1, t->X0, t->tin, lab, t->Bc, &cfg->corr_g);
        if (!st) st = t->op->sync(be);
    }
    if (st) {
        ff_destroy(t);
        return st;
    }
    *out = t;
    return FMD_OK;
}

int64_t ff_steps_done(const ff_trainer *t) { return t->step; }
void ff_set_steps_done(ff_trainer *t, int64_t step) { t->step = step; }
const ff_config *ff_get_config(const ff_trainer *t) { return &t->c; }
void ff_set_planned_steps(ff_trainer *t, int64_t steps) { t->c.opt.steps = steps; }
const float *ff_rows_start_time(const ff_trainer *t) { return t->h_t0; }
float *ff_adam_m(ff_trainer *t) { return t->m; }
float *ff_adam_v(ff_trainer *t) { return t->v; }
float *ff_aux_adam_m(ff_trainer *t) { return t->am; }
float *ff_aux_adam_v(ff_trainer *t) { return t->av; }

/* ---- the rows of a step ----------------------------------------------------------- */

/* Draw the rows of this step on the host and upload them: start time t0 and
 * span delta of every row (correction rows: the one-step map, delta = 1),
 * labels, and the start states (noise; data-noised on the baseline rows). */
static void draw_rows(ff_trainer *t)
{
    const ff_config *c = &t->c;
    const int64_t B = t->B, Bp = t->Bp, D = t->D, s = t->step, gB = t->gB, r0 = t->r0;
    const uint64_t seed = c->seed;
    /* global prediction rows [0, gBd) start from data-noised states, [gBd,
     * gBp) from noise; this rank's row i is global row r0 + i */
    const int64_t gBd = c->data_based ? (int64_t)((double)t->gBp * c->data_frac + 0.5) : 0;
    const int64_t Bd = gBd - r0 < 0 ? 0 : gBd - r0 > B ? B : gBd - r0;
    for (int64_t i = 0; i < B; i++) {
        const uint64_t g = (uint64_t)(r0 + i);
        uint64_t e = ((uint64_t)s * (uint64_t)gB + g) * 4u;
        double t0 = 1.0, dl = 1.0;
        if (i < Bp) {
            double coin = fmd_philox_uniform_at(seed, S_DELTA, e);
            double u = fmd_philox_uniform_at(seed, S_DELTA, e + 1);
            if (i < Bd) {
                /* start time t0 ~ U(0,1); span delta = t0 (end at s = 0) with
                 * probability delta_one, else U(0, t0) */
                t0 = fmd_philox_uniform_at(seed, S_DATA, e);
                dl = coin < c->delta_one ? t0 : t0 * u;
                t->h_idx[i] = (int32_t)ff_uniform_index(seed, S_DATA, e + 1, t->ndata);
            } else {
                dl = coin < c->delta_one ? 1.0 : u;
            }
        }
        t->h_t0[i] = (float)t0;
        t->h_dl[i] = (float)dl;
        t->h_tin[i] = (float)(t0 - dl);
        if (t->K) {
            if (i < Bd) t->h_lab[i] = t->h_data_lab ? t->h_data_lab[t->h_idx[i]] : 0;
            else t->h_lab[i] = (int32_t)ff_uniform_index(seed, S_LABEL, (uint64_t)s * gB + g, t->K);
        }
    }
    ff_up_rows(t, B, 2, (float *[]){t->tin, t->dl}, (float *[]){t->h_tin, t->h_dl});
    if (t->K) ff_up(t, t->lab, t->h_lab, B, sizeof(int32_t));
    /* start states: z ~ N(0, I) on every row */
    t->op->fill_normal(t->be, t->X0, B * D, seed, S_Z, ((uint64_t)s * (uint64_t)gB + (uint64_t)r0) * (uint64_t)D);
    if (Bd > 0) ff_data_rows(t, Bd);
}

fmd_status ff_prediction_target(ff_trainer *t, float *target, float *F, float *delta,
                                int64_t *rows)
{
    FMD_CHECK_ARG(t && target && F && delta && rows, "ff_prediction_target: NULL argument");
    FMD_CHECK_ARG(!t->c.data_based || t->ndata > 0, "ff_prediction_target: no data");
    draw_rows(t);
    fmd_status st = ff_predict(t);
    if (st) return st;
    size_t n = (size_t)(t->Bp * t->D) * sizeof(float);
    t->op->download(t->be, target, t->tgt, n);
    t->op->download(t->be, F, t->F, n);
    memcpy(delta, t->h_dl, (size_t)t->Bp * sizeof(float));
    *rows = t->Bp;
    return t->op->sync(t->be);
}

/* ---- the step ------------------------------------------------------------------------ */

/* Name the non-finite term of a failed loss (the message of the error). */
static fmd_status nonfinite_loss(ff_trainer *t, int prediction)
{
    fmd_backend *be = t->be;
    const char *what;
    if (prediction)
        what = t->op->nonfinite(be, t->F, t->B * t->D) ? "student output F"
                                                       : "prediction target (teacher velocity)";
    else
        what = t->op->nonfinite(be, t->vc, t->Bc * t->D) ? "teacher velocity at x_r"
                                                         : "auxiliary velocity v_N";
    return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite %s (%s)",
                      (long long)t->step, prediction ? "prediction loss" : "correction term", what);
}

/* The weights (student, EMA, g) are bit-identical on every rank: a
 * checksum compared with rank 0's. */
static fmd_status same_weights(ff_trainer *t)
{
    uint64_t h[3] = {0, 0, 0};
    fmd_status st = comm_hash_dev(t->be, nn_model_params(t->student), t->np, &h[0]);
    if (!st) st = comm_hash_dev(t->be, nn_model_params(t->ema), t->np, &h[1]);
    if (!st && t->aux) st = comm_hash_dev(t->be, nn_model_params(t->aux), t->np_aux, &h[2]);
    int nbad = 0;
    if (!st) st = comm_same_everywhere(t->comm, h[0] ^ (h[1] * 31u) ^ (h[2] * 961u), &nbad);
    if (st) return st;
    if (nbad)
        return fmd_seterr(FMD_ERR_INTERNAL, "distiller step %lld: the weights differ between the "
                          "ranks (%d of %d ranks differ from rank 0's checksum); the run stops",
                          (long long)t->step, nbad, fmd_comm_size(t->comm));
    return FMD_OK;
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

    /* 1. rows, prediction target, student forward; 2. the correction term */
    draw_rows(t);
    if ((st = ff_predict(t))) return st;
    if (Bc > 0) {
        if ((st = ff_noised(t, 0))) return st;
        ff_correction_term(t);
    }
    t->op->row_dot(be, t->rowv, t->diff, t->diff, B, D, 0.0f);
    t->op->download(be, t->h_rowv, t->rowv, (size_t)B * sizeof(float));
    if ((st = t->op->sync(be)))
        return fmd_seterr(st, "distiller step %lld: %s", (long long)t->step, be->errmsg);

    /* 3. per-row weights w = 1/(|Delta|^2/D + eps)^k, losses, lambda */
    double sp = 0.0, sn = 0.0, sc = 0.0, sc2 = 0.0;
    for (int64_t i = 0; i < Bp; i++) {
        double n2 = t->h_rowv[i];
        double w = c->weight_k == 0.0 ? 1.0 : 1.0 / pow(n2 / (double)D + c->weight_eps, c->weight_k);
        sp += w * n2;
        sn += sqrt(n2);
        t->h_scale[i] = (float)(2.0 * w / (double)t->gBp);
    }
    for (int64_t i = Bp; i < B; i++) {
        sc += sqrt(t->h_rowv[i]);
        sc2 += t->h_rowv[i];
    }
    /* the sums over the global batch (every rank the same numbers) */
    double sums[4] = {sp, sn, sc, sc2};
    if ((st = comm_sum_f64(t->comm, sums, 4))) return st;
    sp = sums[0], sn = sums[1], sc = sums[2], sc2 = sums[3];
    if (!isfinite(sp) || !isfinite(sn)) return nonfinite_loss(t, 1);
    if (!isfinite(sc) || !isfinite(sc2)) return nonfinite_loss(t, 0);
    const int64_t gBp = t->gBp, gBc = t->gBc;
    s.loss_pred = gBp ? sp / (double)gBp : 0.0;
    s.delta_norm = gBp ? sn / (double)gBp : 0.0;
    s.vdiff_norm = gBc ? sc / (double)gBc : 0.0;
    s.loss_corr = gBc ? sc2 / (double)gBc : 0.0;
    if (gBc > 0) {
        /* lambda = alpha |Delta_G| / (|v_N - v| + eps): the correction's gradient
         * is kept at a fixed ratio of the prediction's */
        double ref = gBp ? s.delta_norm : 1.0;
        s.lambda = c->alpha * ref / (s.vdiff_norm + c->lambda_eps);
        for (int64_t i = Bp; i < B; i++) t->h_scale[i] = (float)(s.lambda / (double)gBc);
    }
    ff_up(t, t->scale, t->h_scale, B, sizeof(float));
    ff_rowscale(t, t->dout, t->diff, t->scale, B, 0.0f);

    /* 4. the student's gradient (not applied yet) */
    st = nn_model_zero_grad(t->student);
    if (!st) st = nn_model_backward(t->student, t->dout, NULL, B);
    if (!st) st = comm_sum_dev(t->comm, be, nn_model_grads(t->student), t->np);
    if (!st) st = optim_grad_norm(be, nn_model_grads(t->student), t->np, &s.grad_norm);
    if (st) return st;
    if (!isfinite(s.grad_norm))
        return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite student gradient",
                          (long long)t->step);

    /* 5. g: its gradient on the same x_r, then its further updates (which
     * restore g if one fails) */
    if (t->aux) {
        if ((st = ff_aux_grad(t, &s.loss_aux))) return st;
        if (c->aux_updates > 1) {
            if ((st = ff_aux_more(t, &s.loss_aux))) return st;
        } else {
            ff_aux_apply(t, t->step);
        }
    }

    /* 6. apply: AdamW and the EMA on the student */
    s.lr = optim_lr_at(&c->opt, t->step);
    optim_adamw(be, &c->opt, nn_model_params(t->student), nn_model_grads(t->student), t->m, t->v,
                t->np, s.lr, s.grad_norm, t->step);
    optim_ema(be, &c->opt, nn_model_params(t->ema), nn_model_params(t->student), t->np, t->step);
    if ((st = t->op->sync(be)))
        return fmd_seterr(st, "distiller step %lld: %s", (long long)t->step, be->errmsg);
    t->step++;
    if (comm_parallel(t->comm) && c->check_every > 0 && t->step % c->check_every == 0 &&
        (st = same_weights(t)))
        return st;
    if (out) *out = s;
    return FMD_OK;
}
