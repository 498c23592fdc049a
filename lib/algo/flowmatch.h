/* flowmatch.h - teacher training by flow matching (docs/math.md section 2).
 *
 * One step: draw a batch of data rows x0 (with replacement), times t, noise
 * eps, labels with class dropout to the null class; x_t = (1 - t) x0 + t eps;
 * loss = mean over rows and dims of (v(x_t, t, c) - (eps - x0))^2; then the
 * optimiser of algo/optim.h (warm-up and decay, clipping, AdamW, EMA), the
 * same one the distiller uses.
 *
 * All randomness is Philox keyed by (seed, stream, step, row): the run is
 * reproducible on a backend and independent of thread count.  The data
 * stay on the host; each step gathers its rows into one staging buffer and
 * uploads it.  Everything is allocated in fm_create; fm_step allocates
 * nothing.
 *
 * Data parallelism (cfg->comm with N > 1 ranks): a rank computes rows
 * [r B/N, (r+1) B/N) of the global batch B (B % N == 0), drawing each by its
 * global index, and the loss sum and the gradients are summed over the ranks
 * (lib/comm/comm.h) before the identical update on every rank.
 */
#ifndef FMD_ALGO_FLOWMATCH_H
#define FMD_ALGO_FLOWMATCH_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"
#include "algo/optim.h"
#include "nn/model.h"

typedef struct fm_config {
    int64_t batch;
    optim_config opt;     /* opt.steps: the planned length                */
    float class_dropout;
    int conditional;      /* 0: labels ignored (null class everywhere)    */
    int t_logit_normal;
    float t_mean, t_std;
    uint64_t seed;
    fmd_comm *comm;       /* data parallelism (NULL: one process; borrowed) */
} fm_config;

/* Host data, borrowed for the trainer's lifetime. */
typedef struct fm_data {
    const float *x;          /* (n, dim) */
    const int32_t *labels;   /* (n) or NULL */
    int64_t n, dim;
    int num_classes;
} fm_data;

typedef struct fm_trainer fm_trainer;

/* Borrow net (teacher form, on be) and data.  Errors: FMD_ERR_INVALID_ARG
 * (shape mismatch, bad config), FMD_ERR_OOM. */
fmd_status fm_create(fmd_backend *be, nn_model *net, const fm_data *data, const fm_config *cfg,
                     fm_trainer **out);
void fm_destroy(fm_trainer *tr);
/* One step.  loss / grad_norm / lr (may be NULL) receive the step's values.
 * Errors: FMD_ERR_NONFINITE (nothing updated), backend errors. */
fmd_status fm_step(fm_trainer *tr, double *loss, double *grad_norm, double *lr);
int64_t fm_steps_done(const fm_trainer *tr);
/* The EMA weights (device, parameter layout of net). */
float *fm_ema(fm_trainer *tr);
/* The AdamW moments (device, parameter layout of net): with the network's
 * parameters, the EMA and the step count they are the whole training state
 * (every draw is keyed by the step), so a checkpoint of these continues a
 * run bit for bit. */
float *fm_adam_m(fm_trainer *tr);
float *fm_adam_v(fm_trainer *tr);
/* Continue as if k steps had been taken (after loading the state above). */
void fm_set_steps_done(fm_trainer *tr, int64_t k);

#endif
