/* optim.h - the optimiser shared by teacher training (flowmatch.c) and
 * distillation (freeflow.c): the learning-rate schedule, global-norm
 * gradient clipping, AdamW over a flat parameter buffer, and the EMA of the
 * weights.  docs/math.md ("Optimiser") writes out the formulas.
 *
 * Schedule: linear warm-up over `warmup` steps, lr(k) = lr (k + 1) / warmup,
 * then a decay over the remaining steps of the planned length `steps` from
 * lr to lr_end: cosine lr_end + (lr - lr_end)(1 + cos(pi p))/2 or linear,
 * p = (k - warmup) / (steps - warmup) clipped to 1; constant with
 * decay OPTIM_CONST or when steps <= warmup.
 * EMA: decay min(ema, (1 + k) / (10 + k)) at step k, so that short runs are
 * not dominated by the initialisation. */
#ifndef FMD_ALGO_OPTIM_H
#define FMD_ALGO_OPTIM_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"

enum { OPTIM_COSINE = 0, OPTIM_LINEAR = 1, OPTIM_CONST = 2 };

typedef struct optim_config {
    double lr;            /* peak learning rate                              */
    double lr_end;        /* final learning rate                             */
    int decay;            /* OPTIM_*                                         */
    int64_t warmup;       /* linear warm-up steps                            */
    int64_t steps;        /* planned length: where the decay ends            */
    double beta1, beta2, eps, weight_decay;
    double grad_clip;     /* global gradient-norm clip (0: off)              */
    double ema;           /* EMA decay of the weights                        */
} optim_config;

/* The learning rate of step k (0-based). */
double optim_lr_at(const optim_config *c, int64_t k);
/* The EMA decay of step k (0-based). */
double optim_ema_decay(const optim_config *c, int64_t k);

/* *norm = sqrt(sum grads^2) over n floats (device), synchronised.  Errors:
 * the backend's. */
fmd_status optim_grad_norm(fmd_backend *be, const float *grads, int64_t n, double *norm);
/* One clipped AdamW step of step k (0-based) with learning rate lr on
 * params / moments m, v (device, n floats each) given grads and their norm
 * (optim_grad_norm).  Queues the work; errors surface at the next sync. */
void optim_adamw(fmd_backend *be, const optim_config *c, float *params, const float *grads,
                 float *m, float *v, int64_t n, double lr, double grad_norm, int64_t k);
/* ema = decay ema + (1 - decay) params at step k (device, n floats). */
void optim_ema(fmd_backend *be, const optim_config *c, float *ema, const float *params, int64_t n,
               int64_t k);

#endif
