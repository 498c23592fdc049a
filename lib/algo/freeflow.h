/* freeflow.h - one FreeFlow distillation step (../shared/MATH.md sections 2-5,
 * and the data-based baseline of section 10) over device buffers.
 *
 * The trainer owns no model: the caller (lib/api/distiller.c) hands it the
 * student network (student form F(z, delta, c)), an EMA copy of it, and the
 * auxiliary network g_psi (teacher form), plus a teacher velocity function.
 * Everything a step touches is allocated in ff_create; ff_step allocates
 * nothing (the teacher's scratch is grown once by a warm-up call in
 * ff_create).
 *
 * Time inputs of the student: F is always fed (end time, span) =
 * (t0 - delta, delta) where t0 is the start time of the map.  Data-free rows
 * start at t0 = 1 (the prior), so the student sees t = 1 - delta, delta as in
 * MATH section 2; data-based rows (section 10) start at a data-noised state
 * x_t0, so the same network is the two-time map f(x, t0, t0 - delta).  A
 * student with t_start (from a network teacher) turns the pair into
 * (t0, delta) inside the model (lib/nn/model.c).
 *
 * Sign convention (SiT, MATH section 1): f(x, delta) = x - delta * F, the
 * flow map condition is  F = v(f, t0 - delta) - delta * dF/ddelta  where the
 * derivative moves the end time down as delta grows (tangent -1 on t, +1 on
 * delta).
 */
#ifndef FMD_ALGO_FREEFLOW_H
#define FMD_ALGO_FREEFLOW_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"
#include "nn/model.h"

/* Guidance of one teacher call (scale 1 = none). */
typedef struct ff_guidance {
    float scale, t_lo, t_hi;
} ff_guidance;

/* v(b,D) = teacher velocity at x(b,D), t(b), labels(b) (device pointers;
 * labels NULL for unconditional teachers). */
typedef fmd_status (*ff_velocity_fn)(void *ctx, float *v, const float *x, const float *t,
                                     const int32_t *labels, int64_t b, const ff_guidance *g);

enum { FF_TARGET_STEP = 0, FF_TARGET_JVP = 1, FF_TARGET_FD = 2 };
enum { FF_DELTA_UNIFORM = 0, FF_DELTA_LOGITNORMAL = 1, FF_DELTA_ONE = 2 };
enum { FF_LR_CONST = 0, FF_LR_COSINE = 1, FF_LR_LINEAR = 2 };
/* Where the correction's v_N (and, with a reference pool, its reference)
 * comes from: the auxiliary network g_psi (MATH section 4), or the exact
 * noising velocity of a bank of recent one-step samples (a kernel estimate,
 * no network; see "The kernel field" in freeflow.c). */
enum { FF_FIELD_NET = 0, FF_FIELD_KERNEL = 1 };

/* Every hyper-parameter of the distiller (defaults: ff_config_default; the
 * option keys and the table are in lib/api/distiller.c and docs/distiller.md). */
typedef struct ff_config {
    int64_t batch;
    uint64_t seed;
    int target;              /* FF_TARGET_*                                      */
    double step_h;           /* teacher-step target: h                           */
    double step_h_end;       /* h at decay_steps (cosine in between; <= 0: = step_h) */
    double fd_eps;           /* finite-difference target: half-width in delta    */
    int delta_dist;          /* FF_DELTA_*                                       */
    double delta_one;        /* fraction of prediction rows with delta = 1       */
    double delta_loc, delta_scale;   /* logit-normal delta                       */
    double delta_min;        /* delta drawn in [delta_min, 1]                    */
    double corr_frac;        /* fraction of the batch used by the correction     */
    int use_pred, use_corr;
    double weight_k, weight_eps;     /* adaptive weight 1/(|D|^2/d + eps)^k      */
    double alpha, lambda_eps;        /* gradient balancing                       */
    double alpha_end;        /* >= 0: alpha moves to this along the lr cosine   */
    int64_t warmup;          /* correction weight ramps 0 -> 1 over these steps  */
    double r_loc, r_scale;   /* logit-normal r of the correction                 */
    ff_guidance pred_g, corr_g;
    int corr_field;          /* FF_FIELD_*                                       */
    int64_t kernel_bank;     /* kernel field: one-step samples in the bank      */
    double aux_lr;
    int64_t aux_updates;
    int aux_decay;           /* 1: aux_lr follows the student's schedule (warm-up,
                                decay), i.e. is scaled by lr(step) / lr        */
    double lr, beta1, beta2, adam_eps, weight_decay, grad_clip, ema;
    int lr_decay;            /* FF_LR_*                                          */
    int64_t decay_steps, lr_warmup;
    double lr_min;           /* final lr as a fraction of lr                     */
    int data_based;          /* 1: section 10 baseline (needs ff_set_data)       */
    double data_frac;        /* with data_based: share of the prediction rows on
                                data-noised states; the rest start from noise
                                as in data-free training                        */
} ff_config;

void ff_config_default(ff_config *c);

/* Numbers of one step (host). */
typedef struct ff_step_stats {
    double loss_pred;     /* mean over prediction rows of w*|Delta_G|^2          */
    double loss_corr;     /* mean over correction rows of lambda*F.(v_N - v)     */
    double loss_aux;      /* mean |g(x_r, r) - (n - xhat)|^2 of the last update  */
    double delta_norm;    /* mean |Delta_G| over prediction rows                  */
    double vdiff_norm;    /* mean |v_N - v| over correction rows                  */
    double lambda;        /* correction weight used                              */
    double lr;            /* student learning rate used                          */
    double grad_norm;     /* student gradient norm before clipping               */
} ff_step_stats;

typedef struct ff_trainer ff_trainer;

/* Build a trainer.  student: student-form model (trained in place); ema: a
 * model of the same config whose parameters are the EMA (initialised here
 * from the student); aux: teacher-form model (may be NULL when the
 * correction is off); aux_residual: 1 when g = v_teacher(corr guidance) +
 * aux (aux zero-initialised by the caller), 0 when g = aux.  All models must
 * live on `be`.  Errors: FMD_ERR_INVALID_ARG (config, shapes), FMD_ERR_OOM,
 * backend and teacher errors. */
fmd_status ff_create(fmd_backend *be, const ff_config *cfg, nn_model *student, nn_model *ema,
                     nn_model *aux, int aux_residual, ff_velocity_fn vel, void *vctx,
                     ff_trainer **out);
void ff_destroy(ff_trainer *t);

/* Data for the data-based baseline: x0(n,D) and labels(n) (host; labels may
 * be NULL for unconditional teachers; copied to the device). */
fmd_status ff_set_data(ff_trainer *t, const float *x0, const int32_t *labels, int64_t n);

/* Data for the data-based baseline drawn from the teacher itself (option
 * data_pool): n samples of the teacher's own ODE, Heun in `steps` steps with
 * the prediction guidance, from Philox normal noise (seed, stream
 * FF_STREAM_DATA_POOL, element i * D + j) and labels i mod K; replaces any
 * data set before.  Costs 2 * steps * n teacher calls, here.  Errors:
 * FMD_ERR_INVALID_ARG (sizes), FMD_ERR_OOM, FMD_ERR_NONFINITE (a sample),
 * teacher errors. */
enum { FF_STREAM_DATA_POOL = 12 };
fmd_status ff_make_data_pool(ff_trainer *t, int64_t n, int64_t steps);
/* Tests: the trainer's data (n rows, as set or drawn) into x (n, D) and
 * labels (n, may be NULL; 0 for an unconditional teacher) on the host. */
fmd_status ff_copy_data(ff_trainer *t, float *x, int32_t *labels, int64_t n);

/* The kernel field's bank (corr_field = kernel): *bank (device, M x D) holds
 * the last M one-step samples of correction rows (a ring; row (s * Bc + i)
 * mod M came from row i of step s), *labels (host, M) their classes.
 * Returns M, 0 without a kernel field (bank, labels may be NULL).  Checkpoints save and restore both;
 * the bank is full once steps * Bc >= M and the correction is off until
 * then. */
int64_t ff_kernel_bank(ff_trainer *t, float **bank, int32_t **labels);
/* After writing the bank's labels (resume): rebuilds the device copy of
 * them.  Errors: FMD_ERR_INVALID_ARG (no kernel field, a label out of
 * range). */
fmd_status ff_kernel_bank_labels_changed(ff_trainer *t);
/* Tests: the correction rows of the last step (with aux_updates = 1): the
 * one-step samples xhat and the noised points x_r (Bc x D), r and labels
 * (Bc; 0 for an unconditional teacher), and the correction term
 * v_N - reference (Bc x D), on the host.  Returns Bc (0: no correction). */
int64_t ff_last_correction(ff_trainer *t, float *xhat, float *xr, float *r, int32_t *labels,
                           float *term);

/* Reference for the correction (corr_ref = samples): the correction term
 * becomes v_N - g_ref instead of v_N - v, where g_ref (ref: a model of the
 * same config and form as aux, residual when aux is; borrowed, the caller
 * keeps ownership; NULL with the kernel field, which uses the pool itself)
 * is fitted by flow matching, with aux's settings, to a pool
 * of n samples of the teacher's own ODE: prior noise (and uniform labels)
 * from the trainer's seed, Heun in `steps` steps with the prediction
 * guidance, generated here.  Unbiased where a guided field is not the
 * noising velocity of its ODE's distribution; costs 2 * steps * n teacher
 * calls once and one more network per auxiliary update.  Errors:
 * FMD_ERR_INVALID_ARG (no correction, shapes, sizes), FMD_ERR_OOM,
 * FMD_ERR_NONFINITE (a pool sample), teacher errors. */
fmd_status ff_set_reference(ff_trainer *t, nn_model *ref, int64_t n, int64_t steps);

/* One step.  On FMD_ERR_NONFINITE no parameter, moment or step counter has
 * changed and the message names the step and the term. */
fmd_status ff_step(ff_trainer *t, ff_step_stats *st);

/* The prediction target and student output F of the rows the next step
 * would draw, without training (tests compare the target forms): target,
 * F (rows, D) and delta (rows) on the host, rows = prediction rows (at most
 * batch).  The step counter does not move. */
fmd_status ff_prediction_target(ff_trainer *t, float *target, float *F, float *delta,
                                int64_t *rows);

int64_t ff_steps_done(const ff_trainer *t);
void ff_set_steps_done(ff_trainer *t, int64_t step);
const ff_config *ff_get_config(const ff_trainer *t);
/* Tests: the start time t0 of each row of the last drawn step (host, batch
 * rows): 1 on rows that start from noise, < 1 on data-noised rows. */
const float *ff_rows_start_time(const ff_trainer *t);
/* Device moment buffers (parameter layout of the student / aux). */
float *ff_adam_m(ff_trainer *t);
float *ff_adam_v(ff_trainer *t);
float *ff_aux_adam_m(ff_trainer *t);
float *ff_aux_adam_v(ff_trainer *t);
/* The reference's pool (device, n rows of D; tests read it): returns n, 0
 * without a reference. */
int64_t ff_ref_pool(ff_trainer *t, float **pool);
float *ff_ref_adam_m(ff_trainer *t);   /* NULL without a reference */
float *ff_ref_adam_v(ff_trainer *t);

#endif
