/* model.h - the internal interface of a flow network (MLP or SiT/DiT), the
 * contract between lib/nn and its users (lib/algo, lib/api).
 *
 * A model is v(x, t, c) in teacher form or F(z, delta, c) in student form.
 * The student form is the teacher architecture plus a second time input delta
 * whose embedding is added to the time embedding through a zero-initialised
 * projection; callers feed the end time t = 1 - delta and delta (docs/math.md
 * section 5).  With t_start set, the time embedder reads the start time
 * t + delta instead (1 in data-free training), so a student converted from a
 * teacher starts as the teacher's Euler step, F(z, delta) = v(z, 1).
 *
 * Parameters, gradients live in flat device buffers with named views.
 * Activations live in an arena sized by nn_model_reserve(batch); forward,
 * backward and jvp allocate nothing.  All pointers given to these calls are
 * device pointers of the model's backend.  Shapes: x, out (B, D) with D =
 * nn_model_dim (for images D = C*H*W, NCHW order); t, delta (B); labels (B)
 * int32 with the null class = num_classes (labels may be NULL when
 * num_classes == 0).  Every call returns the backend's sticky status.
 */
#ifndef FMD_NN_MODEL_H
#define FMD_NN_MODEL_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"

typedef enum { NN_ARCH_MLP = 0, NN_ARCH_DIT = 1 } nn_arch;

typedef struct nn_config {
    nn_arch arch;
    int student;        /* 1: F(z, delta, c) with the delta embedding        */
    int t_start;        /* student: the time embedder reads t + delta (the   */
                        /* start time), not t; set for students converted    */
                        /* from a network teacher (docs/distiller.md)        */
    int num_classes;    /* 0: unconditional; else a table of num_classes + 1 */
    /* MLP */
    int dim;            /* input/output dimension d                          */
    int width;          /* hidden width                                      */
    int depth;          /* number of hidden layers                           */
    int temb_dim;       /* sinusoidal frequencies dimension (default 256)     */
    float time_scale;   /* t is multiplied by this before the sinusoid       */
    float delta_scale;  /* delta multiplier for the student's delta embedding */
    /* DiT / SiT (names as DiT's constructor) */
    int input_size, patch_size, in_channels, hidden_size, dit_depth, num_heads;
    float mlp_ratio;
    int learn_sigma;
} nn_config;

typedef struct nn_model nn_model;

/* A named view into the flat parameter buffer. */
typedef struct nn_param {
    const char *name;     /* e.g. "blocks.0.attn.qkv.weight" (owned by model) */
    int ndim;
    int64_t shape[4];
    int64_t offset;       /* in floats from the start of the flat buffer    */
    int64_t numel;
} nn_param;

fmd_status nn_model_create(fmd_backend *be, const nn_config *cfg, uint64_t seed, nn_model **out);
void nn_model_destroy(nn_model *m);
const nn_config *nn_model_config(const nn_model *m);
int64_t nn_model_dim(const nn_model *m);           /* D, numbers per sample   */
int64_t nn_model_num_params(const nn_model *m);
float *nn_model_params(nn_model *m);               /* device, flat            */
float *nn_model_grads(nn_model *m);                /* device, flat, mirrors   */
int nn_model_num_views(const nn_model *m);
const nn_param *nn_model_view(const nn_model *m, int i);
const nn_param *nn_model_find(const nn_model *m, const char *name);

/* Size the activation arena for batches up to max_batch. */
fmd_status nn_model_reserve(nn_model *m, int64_t max_batch);
/* out(B,D) = model(x, t, delta, labels); keeps activations for backward.
 * delta must be NULL in teacher form and non-NULL in student form. */
fmd_status nn_model_forward(nn_model *m, float *out, const float *x, const float *t,
                            const float *delta, const int32_t *labels, int64_t b);
/* As forward, plus tout(B,D) = d out / d s along t = t0 + s*tan_t,
 * delta = delta0 + s*tan_delta (per-row tangents, device; either may be
 * NULL for zero).  x has zero tangent. */
fmd_status nn_model_forward_jvp(nn_model *m, float *out, float *tout, const float *x,
                                const float *t, const float *delta, const int32_t *labels,
                                const float *tan_t, const float *tan_delta, int64_t b);
/* After a forward with the same batch: grads += dL/dparams given dout(B,D);
 * dx(B,D) = dL/dx when dx is not NULL. */
fmd_status nn_model_backward(nn_model *m, const float *dout, float *dx, int64_t b);
/* Zero the gradient buffer. */
fmd_status nn_model_zero_grad(nn_model *m);
/* Copy parameters from src into m for every view whose name and shape match
 * (used to initialise a student or an auxiliary net from a teacher); views
 * of m absent from src are left as initialised.  Returns the count copied. */
int nn_model_copy_matching(nn_model *m, const nn_model *src);

/* ---- extensions (libfmd nn engine) ------------------------------------------ */

/* Fill the fields left 0 with their defaults: MLP temb_dim 256, time_scale 30,
 * delta_scale 30 (moderate frequencies, docs/math.md section 5); DiT temb_dim 256,
 * time_scale 1000 (DiT's t*1000 convention; set 1 for checkpoints trained
 * on t in [0, 1]), delta_scale = time_scale, mlp_ratio 4, in_channels 4,
 * patch_size 2.  Called by nn_model_create on its own copy. */
void nn_config_defaults(nn_config *cfg);
/* Set the DiT/SiT fields of a preset: "SiT-S/2", "DiT-XL/2", "SiT-B/4", ...
 * (S/B/L/XL = hidden 384/768/1024/1152, depth 12/12/24/28, heads
 * 6/12/16/16; patch 2, 4 or 8).  Leaves input_size, in_channels,
 * num_classes, learn_sigma and student as they are.  Errors:
 * FMD_ERR_INVALID_ARG naming the preset. */
fmd_status nn_config_preset(nn_config *cfg, const char *name);

/* Arena flags for nn_model_reserve_ex. */
enum {
    NN_RESERVE_TRAIN = 0,      /* forward + backward + jvp (nn_model_reserve)  */
    NN_RESERVE_NO_JVP = 1,     /* no tangent buffers: forward_jvp refused      */
    NN_RESERVE_INFERENCE = 2   /* forward (and jvp unless NO_JVP) only; layers
                                * share buffers, backward refused              */
};
/* Size the arena for batches up to max_batch with the given flags; frees the
 * previous arena.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_OOM. */
fmd_status nn_model_reserve_ex(nn_model *m, int64_t max_batch, int flags);
/* Bytes of the activation arena now reserved (0 before reserve). */
int64_t nn_model_arena_bytes(const nn_model *m);

/* Non-trainable buffers (DiT's fixed "pos_embed", shape (1, T, hidden)):
 * named views into a separate flat device buffer that is neither trained
 * nor counted in nn_model_num_params.  A checkpoint may carry them. */
int nn_model_num_buffers(const nn_model *m);
const nn_param *nn_model_buffer_view(const nn_model *m, int i);
const nn_param *nn_model_find_buffer(const nn_model *m, const char *name);
float *nn_model_buffer_data(nn_model *m);          /* device, flat            */

/* The backend the model was created on. */
fmd_backend *nn_model_backend(const nn_model *m);

/* Overwrite every parameter with N(0, std^2) drawn from (seed) (tests and
 * benchmarks: DiT's zero-initialised layers would hide gradients). */
fmd_status nn_model_randomize(nn_model *m, uint64_t seed, float std);

#endif
