/* freeflow.h - one FreeFlow distillation step over device buffers
 * (docs/math.md: the flow map, the prediction objective, the correction
 * objective, the step; the data-based baseline).
 *
 * The trainer owns no model: the caller (lib/api/distiller.c) hands it the
 * student network (student form F(z, delta, c)), an EMA copy of it, the
 * auxiliary network g (teacher form; NULL without the correction) and a
 * teacher velocity function.  Every buffer a step touches is laid out once in
 * ff_create (freeflow.c, ff_layout); ff_step allocates nothing (the
 * teacher's scratch is grown once by a warm-up call in ff_create).
 *
 * The step is split by responsibility: freeflow.c draws the rows and runs
 * the step, ff_predict.c computes the prediction target, ff_correct.c the
 * correction term and g's flow-matching update, ff_data.c the data-based
 * rows, and algo/optim.c (shared with teacher training) clips, applies AdamW
 * and the EMA.
 *
 * Time inputs of the student: F is fed (end time, span) = (t0 - delta,
 * delta) where t0 is the start time of the map.  Data-free rows start at
 * t0 = 1 (the prior); data-based rows start at a data-noised state x_t0, so
 * the same network is the two-time map f(x, t0, t0 - delta).  A student with
 * t_start (from a network teacher) turns the pair into (t0, delta) inside the
 * model (lib/nn/model.c).
 *
 * Sign convention (SiT): f(x, delta) = x - delta F, and the flow map
 * condition is F = v(f, t0 - delta) - delta dF/ddelta, where the derivative
 * moves the end time down as delta grows (tangent -1 on t, +1 on delta). */
#ifndef FMD_ALGO_FREEFLOW_H
#define FMD_ALGO_FREEFLOW_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"
#include "algo/guidance.h"
#include "algo/optim.h"
#include "nn/model.h"

/* v(b,D) = teacher velocity at x(b,D), t(b), labels(b) (device pointers;
 * labels NULL for unconditional teachers), with guidance g. */
typedef fmd_status (*ff_velocity_fn)(void *ctx, float *v, const float *x, const float *t,
                                     const int32_t *labels, int64_t b, const fmd_guidance *g);

enum { FF_TARGET_STEP = 0, FF_TARGET_JVP = 1, FF_TARGET_FD = 2 };

/* Every hyper-parameter of a step.  The option keys, defaults and ranges are
 * the distiller's option table (lib/api/distiller.c; docs/distiller.md). */
typedef struct ff_config {
    int64_t batch;
    uint64_t seed;
    int target;              /* FF_TARGET_*                                      */
    double step_h;           /* teacher-step target: h                           */
    double fd_eps;           /* finite-difference target: half-width in delta    */
    double delta_one;        /* fraction of prediction rows with delta = 1       */
    double corr_frac;        /* fraction of the batch for the correction         */
    int pred, corr;          /* the objectives                                    */
    double weight_k, weight_eps;     /* adaptive weight 1/(|D|^2/d + eps)^k      */
    double alpha, lambda_eps;        /* gradient balancing                       */
    double r_loc, r_scale;   /* logit-normal r of the correction                 */
    fmd_guidance pred_g, corr_g;
    double aux_lr;           /* g's AdamW rate (constant)                        */
    int64_t aux_updates;     /* g updates per step                               */
    optim_config opt;        /* the student's optimiser; opt.steps = planned run */
    int data_based;          /* 1: the data-based baseline (needs data)          */
    double data_frac;        /* its share of the prediction rows                 */
    fmd_comm *comm;          /* data parallelism (NULL: one process; borrowed)   */
    int64_t check_every;     /* weight checksum across ranks every N steps (0: off) */
} ff_config;

/* Numbers of one step (host). */
typedef struct ff_step_stats {
    double loss_pred;     /* mean over prediction rows of w*|Delta_G|^2          */
    double loss_corr;     /* mean over correction rows of |v_N - v|^2            */
    double loss_aux;      /* mean |g(x_r, r) - (n - xhat)|^2 of the last update  */
    double delta_norm;    /* mean |Delta_G| over prediction rows                  */
    double vdiff_norm;    /* mean |v_N - v| over correction rows                  */
    double lambda;        /* correction weight used                              */
    double lr;            /* student learning rate used                          */
    double grad_norm;     /* student gradient norm before clipping               */
} ff_step_stats;

typedef struct ff_trainer ff_trainer;

/* Build a trainer.  student: student-form model (trained in place); ema: a
 * model of the same config whose parameters become the EMA (set from the
 * student here); aux: teacher-form model, required when cfg->corr, else
 * NULL; aux_residual: 1 when g = v_teacher(corr guidance) + aux (aux
 * zero-initialised by the caller), 0 when g = aux.  All models live on be.
 * Errors: FMD_ERR_INVALID_ARG (config, shapes), FMD_ERR_OOM, backend and
 * teacher errors. */
fmd_status ff_create(fmd_backend *be, const ff_config *cfg, nn_model *student, nn_model *ema,
                     nn_model *aux, int aux_residual, ff_velocity_fn vel, void *vctx,
                     ff_trainer **out);
void ff_destroy(ff_trainer *t);

/* Data parallelism (cfg->comm with N > 1 ranks): the trainer holds this
 * rank's rows [r B/N, (r+1) B/N) of the global batch B (B % N == 0, else
 * FMD_ERR_INVALID_ARG); every draw is indexed by the global row, the
 * gradients of the student and of g and the loss sums are summed over the
 * ranks (lib/comm/comm.h) before the identical update on every rank. */

/* One step.  On error (a non-finite loss, teacher velocity or gradient: the
 * message names the step and the term; teacher errors) no parameter, moment
 * or the step counter has changed.  Device errors found at the final sync
 * leave the state undefined (the backend reports them). */
fmd_status ff_step(ff_trainer *t, ff_step_stats *st);

/* Data of the data-based baseline: x0 (n, D) and labels (n; NULL for an
 * unconditional teacher), host, copied to the device, replacing any data. */
fmd_status ff_set_data(ff_trainer *t, const float *x0, const int32_t *labels, int64_t n);
/* Data drawn from the teacher itself: n samples of its ODE (Heun, `steps`
 * steps, the prediction guidance) from Philox noise (seed, stream
 * FF_STREAM_DATA_POOL, element i D + j) and labels i mod K; replaces any
 * data.  Costs 2 steps n teacher calls.  Errors: FMD_ERR_INVALID_ARG,
 * FMD_ERR_OOM, FMD_ERR_NONFINITE (a sample), teacher errors. */
enum { FF_STREAM_DATA_POOL = 12 };
fmd_status ff_make_data_pool(ff_trainer *t, int64_t n, int64_t steps);
/* Move src's data set (given or drawn) into dst, replacing dst's (a trainer
 * rebuilt on resume keeps the data of the one it replaces). */
void ff_take_data(ff_trainer *dst, ff_trainer *src);
/* Tests: the trainer's n data rows into x (n, D) and labels (n, may be NULL;
 * 0 for an unconditional teacher) on the host. */
fmd_status ff_copy_data(ff_trainer *t, float *x, int32_t *labels, int64_t n);

/* Tests: the prediction target and student output F of the rows the next
 * step would draw, without training: target, F (rows, D) and delta (rows)
 * on the host, rows = prediction rows.  The step counter does not move. */
fmd_status ff_prediction_target(ff_trainer *t, float *target, float *F, float *delta,
                                int64_t *rows);

int64_t ff_steps_done(const ff_trainer *t);
void ff_set_steps_done(ff_trainer *t, int64_t step);
const ff_config *ff_get_config(const ff_trainer *t);
/* The planned length of the run (the schedule's end), e.g. once the first
 * fmd_distiller_run call tells it. */
void ff_set_planned_steps(ff_trainer *t, int64_t steps);
/* Tests: the start time t0 of each row of the last drawn step (host, batch
 * rows): 1 on rows that start from noise, < 1 on data-noised rows. */
const float *ff_rows_start_time(const ff_trainer *t);
/* Device moment buffers (parameter layout of the student / of g; g's are
 * NULL without the correction). */
float *ff_adam_m(ff_trainer *t);
float *ff_adam_v(ff_trainer *t);
float *ff_aux_adam_m(ff_trainer *t);
float *ff_aux_adam_v(ff_trainer *t);

#endif
