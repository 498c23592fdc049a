/* ff_predict.c - the prediction objective (docs/math.md, "Prediction"):
 * the target F* of the flow map condition F = v(f, t0 - delta) -
 * delta dF/ddelta on the prediction rows, in one of three forms:
 *   teacher-step  one Heun step of the teacher from the student's own state
 *                 at span delta' = delta - h to span delta, F* = (z - x*)/delta
 *                 (the paper's discrete form; default);
 *   jvp           the exact derivative dF/ddelta by forward-mode
 *                 differentiation (nn_model_forward_jvp);
 *   fd            the same derivative by a central difference of half-width
 *                 fd_eps.
 * It then runs the main student forward over all B rows (the last one:
 * backward uses its activations) and leaves Delta_G = F - F* in diff. */
#include <math.h>
#include "algo/ff_internal.h"

/* The teacher at the student's state xa = X0 + k1 F (k1 = -span per row):
 * v1 = v(xa, tin) on the prediction rows. */
static fmd_status velocity_at_jump(ff_trainer *t, const float *F, const float *tin,
                                   const int32_t *lab)
{
    ff_rowscale(t, t->xa, F, t->k1, t->Bp, 0.0f);
    t->op->axpby(t->be, t->xa, 1.0f, t->xa, 1.0f, t->X0, t->Bp * t->D);
    return t->vel(t->vctx, t->v1, t->xa, tin, lab, t->Bp, &t->c.pred_g);
}

/* Prediction target on rows [0, Bp) and the main student forward over all B
 * rows. */
fmd_status ff_predict(ff_trainer *t)
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
        const double hstep = c->step_h;
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
        ff_up_rows(t, Bp, 6, (float *[]){t->dl2, t->tin2, t->k1, t->k2, t->k3, t->scale},
                   (float *[]){t->h_dl2, t->h_tin2, t->h_k1, t->h_k2, t->h_k3, t->h_scale});
        st = nn_model_forward(t->student, t->Fp, t->X0, t->tin2, t->dl2, lab, Bp);
        if (st) return st;
        if ((st = velocity_at_jump(t, t->Fp, t->tin2, lab))) return st;
        t->op->copy(be, t->xe, t->xa, (size_t)(Bp * D) * sizeof(float));
        ff_rowscale(t, t->xe, t->v1, t->k2, Bp, 1.0f);
        st = t->vel(t->vctx, t->v2, t->xe, t->tin, lab, Bp, &c->pred_g);
        if (st) return st;
        ff_rowscale(t, t->tgt, t->Fp, t->k3, Bp, 0.0f);
        ff_rowscale(t, t->tgt, t->v1, t->scale, Bp, 1.0f);
        ff_rowscale(t, t->tgt, t->v2, t->scale, Bp, 1.0f);
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
        ff_up_rows(t, B, 2, (float *[]){t->tan_t, t->tan_d}, (float *[]){t->h_tan_t, t->h_tan_d});
        ff_up(t, t->k1, t->h_k1, Bp, sizeof(float));
        st = nn_model_forward_jvp(t->student, t->F, t->Fp, t->X0, t->tin, t->dl, lab, t->tan_t,
                                  t->tan_d, B);
        if (st) return st;
        if ((st = velocity_at_jump(t, t->F, t->tin, lab))) return st;
        t->op->copy(be, t->tgt, t->v1, (size_t)(Bp * D) * sizeof(float));
        ff_rowscale(t, t->tgt, t->Fp, t->k1, Bp, 1.0f);
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
        ff_up_rows(t, Bp, 7, (float *[]){t->dl2, t->tin2, t->dl3, t->tin3, t->k1, t->k2, t->k3},
                   (float *[]){t->h_dl2, t->h_tin2, t->h_dl3, t->h_tin3, t->h_k1, t->h_k2, t->h_k3});
        st = nn_model_forward(t->student, t->Fp, t->X0, t->tin2, t->dl2, lab, Bp);
        if (!st) st = nn_model_forward(t->student, t->Fm, t->X0, t->tin3, t->dl3, lab, Bp);
        if (!st) st = nn_model_forward(t->student, t->F, t->X0, t->tin, t->dl, lab, B);
        if (st) return st;
        if ((st = velocity_at_jump(t, t->F, t->tin, lab))) return st;
        t->op->copy(be, t->tgt, t->v1, (size_t)(Bp * D) * sizeof(float));
        ff_rowscale(t, t->tgt, t->Fp, t->k2, Bp, 1.0f);
        ff_rowscale(t, t->tgt, t->Fm, t->k3, Bp, 1.0f);
    }
    /* Delta_G = F - target */
    t->op->axpby(be, t->diff, 1.0f, t->F, -1.0f, t->tgt, Bp * D);
    return FMD_OK;
}
