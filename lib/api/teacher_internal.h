/* teacher_internal.h - what the rest of the library (the distiller, the
 * sampler, the solvers) may ask of an fmd_teacher.  Implemented in
 * lib/api/teacher.c; the public face is the TEACHERS section of fmd.h. */
#ifndef FMD_TEACHER_INTERNAL_H
#define FMD_TEACHER_INTERNAL_H

#include <stdint.h>
#include "fmd.h"
#include "backend.h"
#include "nn/model.h"
#include "algo/gmm.h"
#include "algo/ode.h"

/* Classifier-free guidance with an interval (MATH.md section 1):
 * v_w = v(.|null) + scale*(v(.|c) - v(.|null)) when t in [t_lo, t_hi], else
 * v(.|c).  scale == 1 (or a teacher without classes) means no guidance. */
typedef struct fmd_guidance {
    float scale;
    float t_lo, t_hi;
} fmd_guidance;

/* v(B,D) = guided teacher velocity at x(B,D), times t(B), labels(B) (int32,
 * null class = num_classes; NULL when the teacher has no classes).  All
 * pointers are device pointers of `be`.  g NULL means no guidance.  Scratch
 * memory is kept in the teacher and grown only when b grows (no allocation
 * in steady state).  Not thread-safe per teacher. */
fmd_status teacher_velocity_dev(fmd_teacher *T, fmd_backend *be, float *v, const float *x,
                                const float *t, const int32_t *labels, int64_t b,
                                const fmd_guidance *g);

int64_t teacher_dim(const fmd_teacher *T);          /* D numbers per sample   */
int teacher_num_classes(const fmd_teacher *T);      /* 0 when unconditional   */
/* The network of a network teacher (to initialise students and auxiliary
 * nets from), or NULL for mixture and callback teachers. */
const nn_model *teacher_network(const fmd_teacher *T);

/* The guidance set with fmd_teacher_set_guidance (scale 1 = off); never
 * NULL for a non-NULL teacher.  Distillers use it as their default. */
const fmd_guidance *teacher_guidance(const fmd_teacher *T);
/* The mixture of a mixture teacher (exact oracle for metrics), else NULL. */
const gmm *teacher_mixture(const fmd_teacher *T);
/* Integrate the teacher's ODE (its own guidance) on a double host state
 * x(b, D) in place (lib/algo/ode.h).  labels (b) or NULL (null class). */
fmd_status teacher_solve_f64(fmd_teacher *T, double *x, const int32_t *labels, int64_t b,
                             const ode_config *cfg, ode_stats *stats);
/* Wrap a teacher-form network living on be into a new network teacher that
 * owns net (destroyed also on failure); sit = 1 converts the original SiT
 * time convention (t -> 1 - t, v -> -v).  be is borrowed. */
fmd_status teacher_wrap_network(fmd_backend *be, nn_model *net, int sit, fmd_teacher **out);

#endif
