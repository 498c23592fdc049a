/* model_internal.h - the model object shared by model.c (parameters, views,
 * arena, API checks) and the architectures mlp.c and dit.c. */
#ifndef FMD_NN_MODEL_INTERNAL_H
#define FMD_NN_MODEL_INTERNAL_H

#include <stddef.h>
#include "nn/model.h"
#include "util/arena.h"

/* Initialisers of a parameter view (DiT's init, drawn with Philox from the
 * model seed and a stream hashed from the view name). */
enum { NN_INIT_ZERO = 0, NN_INIT_XAVIER = 1, NN_INIT_NORMAL = 2, NN_INIT_ONE = 3, NN_INIT_UNIFORM = 4 };

typedef struct nn_arch_ops {
    /* forward; with tangents when tout != NULL (tan_t / tan_delta may be NULL) */
    void (*forward)(nn_model *m, float *out, float *tout, const float *x, const float *t,
                    const float *delta, const int32_t *labels, const float *tan_t,
                    const float *tan_delta, int64_t b);
    void (*backward)(nn_model *m, const float *dout, float *dx, int64_t b);
    /* lay the arena out from base (NULL: only count); returns floats used */
    int64_t (*layout)(nn_model *m, float *base, int64_t max_batch, int flags);
    void (*destroy_impl)(nn_model *m);
} nn_arch_ops;

typedef struct nn_view_init {
    int kind;
    float std;        /* NN_INIT_NORMAL */
    int64_t fan_in, fan_out;   /* NN_INIT_XAVIER */
} nn_view_init;

struct nn_model {
    fmd_backend *be;
    nn_config cfg;
    int64_t dim;                 /* D */
    const nn_arch_ops *ops;
    void *impl;

    nn_param *views;             /* parameter views                      */
    nn_view_init *inits;
    int nviews, cap_views;
    int64_t nparams;
    float *params, *grads;       /* device, nparams each                 */

    nn_param *bufs;              /* non-trainable buffers (pos_embed)    */
    int nbufs, cap_bufs;
    int64_t nbuffer;
    float *buffer;               /* device                               */

    float *arena;                /* device activations                   */
    float *t_in, *tan_t_in;      /* t_start: t + delta and its tangent   */
    int64_t arena_floats;
    int64_t max_batch;
    int reserve_flags;
    int32_t *null_labels;        /* (max_batch) null class, in the arena  */
    int64_t fwd_batch;           /* batch of the last forward, 0 if none  */
    int fwd_kept;                /* last forward kept activations         */
};

/* Register a parameter view (offsets assigned in order); returns its offset
 * in floats or -1 (error set) on OOM. */
int64_t nn_add_param(nn_model *m, const char *name, int ndim, const int64_t *shape,
                     nn_view_init init);
int64_t nn_add_buffer(nn_model *m, const char *name, int ndim, const int64_t *shape);
/* Build the name from a format (up to 127 chars). */
int64_t nn_add_paramf(nn_model *m, int ndim, const int64_t *shape, nn_view_init init,
                      const char *fmt, ...);

static inline nn_view_init nn_init_zero(void) { nn_view_init i = {NN_INIT_ZERO, 0, 0, 0}; return i; }
static inline nn_view_init nn_init_one(void) { nn_view_init i = {NN_INIT_ONE, 0, 0, 0}; return i; }
static inline nn_view_init nn_init_normal(float std) { nn_view_init i = {NN_INIT_NORMAL, std, 0, 0}; return i; }
/* U(-bound, bound) (the bound travels in std) */
static inline nn_view_init nn_init_uniform(float bound) { nn_view_init i = {NN_INIT_UNIFORM, bound, 0, 0}; return i; }
static inline nn_view_init nn_init_xavier(int64_t fan_in, int64_t fan_out)
{
    nn_view_init i = {NN_INIT_XAVIER, 0, fan_in, fan_out};
    return i;
}

/* Arena bump allocation (util/arena.h): returns base + *off (or NULL when
 * base is NULL) and advances *off by n rounded up to 16 floats. */
static inline float *nn_arena_take(float *base, int64_t *off, int64_t n)
{
    return fmd_arena_take(base, off, n);
}

fmd_status nn_mlp_build(nn_model *m);
fmd_status nn_dit_build(nn_model *m);
/* Host-side buffers: written by the architecture at build time (pos_embed). */
typedef void (*nn_buffer_fill_fn)(nn_model *m, float *host);
extern void nn_dit_fill_buffers(nn_model *m, float *host);

#define NN_P(m, off) ((m)->params + (off))
#define NN_G(m, off) ((m)->grads + (off))

#endif
