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
#include "algo/guidance.h"


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
/* Solve the teacher's ODE with cfg on the float host state x (batch, D) in
 * place (as fmd_teacher_solve, which parses its options into cfg); fn names
 * the public call in messages.  nfe_out may be NULL. */
fmd_status teacher_solve_cfg(const char *fn, fmd_teacher *T, float *x, const int32_t *labels,
                             int64_t batch, const ode_config *cfg, int64_t *nfe_out);
/* A text that identifies the teacher's field, e.g. "mixture dim 2, 8
 * components, 0 classes, crc 1a2b3c4d" or "network mlp dim 784, 10 classes,
 * 1.6M params, crc ...": its kind, shape and a CRC-32 of its parameters (the
 * mixture's numbers or the network's weights).  A callback teacher has only
 * its kind and shape.  Distiller checkpoints store it; resume compares it.
 * Errors: FMD_ERR_OOM, backend errors. */
fmd_status teacher_identity(fmd_teacher *T, char *buf, size_t len);
/* Wrap a teacher-form network living on be into a new network teacher that
 * owns net (destroyed also on failure); sit = 1 converts the original SiT
 * time convention (t -> 1 - t, v -> -v).  be is borrowed. */
fmd_status teacher_wrap_network(fmd_backend *be, nn_model *net, int sit, fmd_teacher **out);

#endif
