/* ff_internal.h - the FreeFlow trainer object, shared by the files that
 * implement one step (freeflow.h lists them).
 *
 * Batch layout (rows): [0, Bp) prediction rows, [Bp, B) correction rows.
 *   X0   (B,D)  start states: z ~ N(0, I), or data-noised x_t0 (baseline rows)
 *   F    (B,D)  student output at (end time t0 - delta, span delta)
 *   diff (B,D)  prediction rows: Delta_G = F - target; correction rows: v_N - v
 *   dout (B,D)  upstream gradient into F: 2w/Bp Delta_G, lambda/Bc (v_N - v)
 * Per-row scalars are broadcast over D with bcast_mul (rowscale).
 *
 * Randomness: every draw is a pure function of (seed, stream, step, global
 * row), so a resumed run repeats an uninterrupted one bit for bit and a rank
 * of a data-parallel run draws exactly the single process's numbers for its
 * rows. */
#ifndef FMD_ALGO_FF_INTERNAL_H
#define FMD_ALGO_FF_INTERNAL_H

#include "algo/freeflow.h"

/* Philox streams of the draws (FF_STREAM_DATA_POOL = 12 is in freeflow.h;
 * 7-11 and 13 belonged to removed experiments and stay unused). */
enum { S_Z = 1, S_DELTA = 2, S_LABEL = 3, S_R = 4, S_N = 5, S_DATA = 6 };

struct ff_trainer {
    fmd_backend *be;
    const fmd_backend_ops *op;
    ff_config c;
    optim_config aux_opt;      /* g: AdamW at aux_lr, constant, no decay     */
    nn_model *student, *ema, *aux;
    int aux_residual;
    ff_velocity_fn vel;
    void *vctx;
    int64_t D, K, B, Bp, Bc;   /* this rank's rows: all, prediction, correction */
    /* the global batch (gB = B, gBp = Bp, gBc = Bc, r0 = c0 = 0 in one
     * process): this rank's row i is global row r0 + i; its correction row
     * j is global correction row c0 + j */
    int64_t gB, gBp, gBc, r0, c0;
    fmd_comm *comm;
    int64_t np, np_aux;
    int64_t step;
    double aux_gnorm;          /* g's gradient norm of the last ff_aux_grad  */

    /* ---- device buffers: one allocation, laid out by ff_layout ---- */
    float *dev;
    float *m, *v, *am, *av;            /* AdamW moments of the student and of g   */
    float *aux_save;                   /* g's params, m, v before extra updates   */
    float *X0, *F, *Fp, *Fm, *xa, *v1, *xe, *v2, *tgt, *diff, *dout;     /* (B,D) */
    float *xhat, *cn, *xr, *vc, *ga, *adiff;                            /* (Bc,D) */
    float *tin, *dl, *tin2, *dl2, *tin3, *dl3, *tan_t, *tan_d;          /* (B)   */
    float *k1, *k2, *k3, *scale, *rowv, *r, *r1;                        /* (B)   */
    int32_t *lab, *idx;                                                  /* (B)   */
    /* ---- host buffers: one allocation, laid out by ff_layout ---- */
    float *host;
    float *h_t0, *h_dl, *h_tin, *h_tin2, *h_dl2, *h_tin3, *h_dl3, *h_tan_t, *h_tan_d;
    float *h_k1, *h_k2, *h_k3, *h_scale, *h_rowv, *h_r, *h_r1;
    int32_t *h_lab, *h_idx;

    /* data of the baseline (device rows, host labels; replaced as a whole) */
    float *data;
    int32_t *h_data_lab;
    int64_t ndata;
};

/* out(rows,D) = beta out + x(rows,D) coef(rows) */
void ff_rowscale(ff_trainer *t, float *out, const float *x, const float *coef, int64_t rows,
                 float beta);
/* Upload n elements of esz bytes (nothing when n <= 0). */
void ff_up(ff_trainer *t, void *dst, const void *src, int64_t n, size_t esz);
/* Upload the first n floats of each host row buffer src[i] to dst[i], for
 * the k pairs of a NULL-free list (the per-row coefficients of a step). */
void ff_up_rows(ff_trainer *t, int64_t n, int k, float *const *dst, float *const *src);
/* A uniform index in [0, n) at (seed, stream, e). */
int64_t ff_uniform_index(uint64_t seed, uint64_t stream, uint64_t e, int64_t n);
double ff_sigmoid(double x);

/* ff_predict.c: the prediction target on rows [0, Bp) and the main student
 * forward over all B rows (the last student forward: backward uses it);
 * leaves Delta_G = F - target in diff. */
fmd_status ff_predict(ff_trainer *t);

/* ff_correct.c: on the correction rows, xhat = z - F(z, 1), x_r, the teacher
 * there and g's output for g update j (j = 0: the one the student's
 * correction gradient uses), and v_N - v into diff. */
fmd_status ff_noised(ff_trainer *t, int64_t j);
void ff_correction_term(ff_trainer *t);
/* g's flow-matching gradient on the current x_r (checked finite); *loss its
 * loss. */
fmd_status ff_aux_grad(ff_trainer *t, double *loss);
/* AdamW on g for its update number k (0-based over the run). */
void ff_aux_apply(ff_trainer *t, int64_t k);
/* The further g updates 1 .. aux_updates-1 of a step, each on fresh (r, n)
 * around the same detached xhat; on failure g is restored to its state
 * before them (aux_save).  *loss: the last update's loss. */
fmd_status ff_aux_more(ff_trainer *t, double *loss);

/* ff_data.c: start states of the data-based rows [0, Bd) (X0 and the host
 * row times are set by the caller, this mixes in the data). */
void ff_data_rows(ff_trainer *t, int64_t Bd);

#endif
