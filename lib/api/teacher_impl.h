/* teacher_impl.h - the fmd_teacher object, shared by the files that
 * implement it: teacher.c (the object, its velocity on host and device,
 * guidance, creation of mixture and callback teachers), teacher_io.c
 * (loading and saving) and teacher_solve.c (the ODE solvers and the prior
 * noise).  The rest of the library sees teacher_internal.h only. */
#ifndef FMD_TEACHER_IMPL_H
#define FMD_TEACHER_IMPL_H

#include "api/teacher_internal.h"

enum { TK_MIXTURE = 0, TK_NETWORK = 1, TK_CALLBACK = 2 };

struct fmd_teacher {
    int kind;
    int64_t dim;
    int num_classes;
    fmd_guidance guid;
    /* mixture */
    gmm *g;
    /* network */
    nn_model *net;
    fmd_backend *nbe;        /* borrowed */
    int sit;                 /* 1: original SiT time convention (t=0 noise, v sign flipped) */
    /* callback */
    fmd_velocity_fn fn;
    void *user;
    /* host scratch, rows of capacity hcap, all in hbuf (teacher.c: host_layout) */
    int64_t hcap;
    float *hbuf;
    float *hx, *ht, *hv, *hvu, *hf;
    int32_t *hl, *hnull;
    double *dx, *dt, *dv, *gwork;
    /* device scratch on nbe (network teachers), 2*dcap rows, all in dbuf */
    int64_t dcap;
    float *dbuf;
    float *d_x, *d_t, *d_out, *d_f, *d_v;
    int32_t *d_l;
};

/* Host scratch for a batch of b rows (grown, never shrunk). */
fmd_status ensure_host(fmd_teacher *T, int64_t b);
/* v(b,D) in double: the guided mixture velocity (OpenMP over rows). */
void mixture_velocity(fmd_teacher *T, double *v, const double *x, const double *t,
                      const int32_t *labels, int64_t b, const fmd_guidance *g);
/* Float host buffers in, float host v out, whatever the kind (see teacher.c
 * for the scratch it uses). */
fmd_status host_velocity_f32(fmd_teacher *T, float *v, const float *x, const float *t,
                             const int32_t *labels, int64_t b, const fmd_guidance *g);
/* A mixture teacher owning g (destroyed also on failure). */
fmd_status wrap_mixture(gmm *g, fmd_teacher **out);

#endif
