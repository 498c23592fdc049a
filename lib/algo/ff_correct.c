/* ff_correct.c - the correction objective (docs/math.md, "Correction"): on
 * the correction rows the one-step samples xhat = z - F(z, 1) are noised to
 * x_r = (1 - r) xhat + r n, r logit-normal, and the student is pushed along
 * v_N - v, the difference between the noising velocity of its own samples
 * (the auxiliary network g, fitted to them by flow matching) and the
 * teacher's velocity there.  g's flow-matching update lives here too. */
#include <math.h>
#include <string.h>
#include "algo/ff_internal.h"
#include "comm/comm.h"
#include "util/philox.h"
#include "util/util.h"

fmd_status ff_noised(ff_trainer *t, int64_t j)
{
    const ff_config *c = &t->c;
    const int64_t Bc = t->Bc, D = t->D, Bp = t->Bp;
    if (j == 0)   /* xhat = z - F(z, 1), detached (the student's one-step samples) */
        t->op->axpby(t->be, t->xhat, 1.0f, t->X0 + Bp * D, -1.0f, t->F + Bp * D, Bc * D);
    const uint64_t k = (uint64_t)t->step * (uint64_t)c->aux_updates + (uint64_t)j;
    for (int64_t i = 0; i < Bc; i++) {
        double nrm = fmd_philox_normal_at(c->seed, S_R, k * (uint64_t)t->gBc + (uint64_t)(t->c0 + i));
        double r = ff_sigmoid(c->r_loc + c->r_scale * nrm);
        t->h_r[i] = (float)r;
        t->h_r1[i] = (float)(1.0 - r);
    }
    ff_up_rows(t, Bc, 2, (float *[]){t->r, t->r1}, (float *[]){t->h_r, t->h_r1});
    t->op->fill_normal(t->be, t->cn, Bc * D, c->seed, S_N,
                       (k * (uint64_t)t->gBc + (uint64_t)t->c0) * (uint64_t)D);
    ff_rowscale(t, t->xr, t->xhat, t->r1, Bc, 0.0f);
    ff_rowscale(t, t->xr, t->cn, t->r, Bc, 1.0f);
    const int32_t *lab = t->K ? t->lab + Bp : NULL;
    fmd_status st = t->vel(t->vctx, t->vc, t->xr, t->r, lab, Bc, &c->corr_g);
    if (st) return st;
    return nn_model_forward(t->aux, t->ga, t->xr, t->r, NULL, lab, Bc);
}

void ff_correction_term(ff_trainer *t)
{
    const int64_t Bc = t->Bc, D = t->D;
    float *diff = t->diff + t->Bp * D;
    /* v_N - v; a residual g = v + aux makes it the residual's output */
    if (t->aux_residual) t->op->copy(t->be, diff, t->ga, (size_t)(Bc * D) * sizeof(float));
    else t->op->axpby(t->be, diff, 1.0f, t->ga, -1.0f, t->vc, Bc * D);
}

/* g's flow matching on (x_r, r): d = g(x_r) - (n - xhat) (a residual g
 * adds the teacher there), loss = mean |d|^2 over the global correction
 * rows, upstream gradient 2/Bc d; with several ranks the loss and the
 * gradient are summed over them (a rank without correction rows adds 0). */
fmd_status ff_aux_grad(ff_trainer *t, double *loss)
{
    const int64_t Bc = t->Bc, D = t->D;
    fmd_backend *be = t->be;
    float *d = t->adiff;
    double ss = 0.0;
    if (Bc > 0) {
        t->op->axpby(be, d, 1.0f, t->ga, -1.0f, t->cn, Bc * D);
        t->op->axpby(be, d, 1.0f, d, 1.0f, t->xhat, Bc * D);
        if (t->aux_residual) t->op->axpby(be, d, 1.0f, d, 1.0f, t->vc, Bc * D);
        t->op->reduce(be, FMDB_RED_SUMSQ, d, Bc * D, &ss);
    }
    fmd_status st = comm_sum_f64(t->comm, &ss, 1);
    if (st) return st;
    *loss = ss / (double)t->gBc;
    if (!isfinite(ss))
        return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite loss of the auxiliary "
                          "network (flow matching of g)", (long long)t->step);
    st = nn_model_zero_grad(t->aux);
    if (Bc > 0) {
        t->op->affine(be, d, 2.0f / (float)t->gBc, 0.0f, Bc * D);
        if (!st) st = nn_model_backward(t->aux, d, NULL, Bc);
    }
    if (!st) st = comm_sum_dev(t->comm, be, nn_model_grads(t->aux), t->np_aux);
    double gn = 0.0;
    if (!st) st = optim_grad_norm(be, nn_model_grads(t->aux), t->np_aux, &gn);
    if (st) return st;
    if (!isfinite(gn))
        return fmd_seterr(FMD_ERR_NONFINITE, "distiller step %lld: non-finite gradient of the "
                          "auxiliary network (flow matching of g)", (long long)t->step);
    t->aux_gnorm = gn;
    return FMD_OK;
}

void ff_aux_apply(ff_trainer *t, int64_t k)
{
    optim_adamw(t->be, &t->aux_opt, nn_model_params(t->aux), nn_model_grads(t->aux), t->am, t->av,
                t->np_aux, t->aux_opt.lr, t->aux_gnorm, k);
}

/* g's parameters and moments into / out of aux_save. */
static void aux_keep(ff_trainer *t, int restore)
{
    const size_t n = (size_t)t->np_aux * sizeof(float);
    float *const live[3] = {nn_model_params(t->aux), t->am, t->av};
    for (int i = 0; i < 3; i++) {
        float *saved = t->aux_save + (int64_t)i * t->np_aux;
        if (restore) t->op->copy(t->be, live[i], saved, n);
        else t->op->copy(t->be, saved, live[i], n);
    }
}

fmd_status ff_aux_more(ff_trainer *t, double *loss)
{
    const int64_t U = t->c.aux_updates, k0 = t->step * U;
    aux_keep(t, 0);
    ff_aux_apply(t, k0);
    for (int64_t j = 1; j < U; j++) {
        fmd_status st = t->Bc > 0 ? ff_noised(t, j) : FMD_OK;
        if (!st) st = ff_aux_grad(t, loss);
        if (st) {
            aux_keep(t, 1);
            return st;
        }
        ff_aux_apply(t, k0 + j);
    }
    return FMD_OK;
}
