/* teacher.c - fmd_teacher: a frozen velocity field v(x, t, c) of one of
 * three kinds (Gaussian mixture, network, host callback), classifier-free
 * guidance with an interval, time-convention conversion for SiT
 * checkpoints, the host API, and the device entry point the distiller and
 * sampler use (teacher_internal.h).
 *
 * Mixture teachers compute in double on the host (OpenMP over rows); a
 * network teacher computes on its own backend; callback teachers call the
 * host.  teacher_velocity_dev moves data between the caller's backend and
 * wherever the teacher computes.  Scratch buffers live in the teacher and
 * grow only when the batch grows. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "api/teacher_internal.h"
#include "algo/gmm.h"
#include "algo/ode.h"
#include "io/fmdfile.h"
#include "io/model_io.h"
#include "io/safetensors.h"
#include "util/philox.h"
#include "util/fpmode.h"
#include "util/util.h"

enum { TK_MIXTURE = 0, TK_NETWORK = 1, TK_CALLBACK = 2 };

/* Prefix the current last error (copied first: fmd_seterr must not read the
 * buffer it writes). */
static fmd_status err_prefix(fmd_status st, const char *prefix)
{
    char m[512];
    snprintf(m, sizeof m, "%s", fmd_last_error());
    return fmd_seterr(st, "%s: %s", prefix, m);
}

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
    /* host scratch, rows of capacity hcap */
    int64_t hcap;
    float *hx, *ht, *hv, *hvu, *hf;
    int32_t *hl, *hnull;
    double *dx, *dt, *dv, *gwork;
    /* device scratch on nbe (network teachers), 2*dcap rows */
    int64_t dcap;
    float *d_x, *d_t, *d_out, *d_f, *d_v;
    int32_t *d_l;
};

/* ---------------------------------------------------------------- scratch */

static void free_host(fmd_teacher *T)
{
    fmd_free(T->hx); fmd_free(T->ht); fmd_free(T->hv); fmd_free(T->hvu); fmd_free(T->hf);
    fmd_free(T->hl); fmd_free(T->hnull);
    fmd_free(T->dx); fmd_free(T->dt); fmd_free(T->dv); fmd_free(T->gwork);
    T->hx = T->ht = T->hv = T->hvu = T->hf = NULL;
    T->hl = T->hnull = NULL;
    T->dx = T->dt = T->dv = T->gwork = NULL;
    T->hcap = 0;
}

static fmd_status ensure_host(fmd_teacher *T, int64_t b)
{
    if (b <= T->hcap) return FMD_OK;
    free_host(T);
    const size_t n = (size_t)b * (size_t)T->dim;
    int threads = gmm_max_threads();
    size_t gw = T->g ? (size_t)threads * (size_t)(gmm_work_size(T->g) + 2 * T->dim) : 1;
    T->hx = fmd_malloc(n * sizeof(float));
    T->hv = fmd_malloc(n * sizeof(float));
    T->hvu = fmd_malloc(n * sizeof(float));
    T->ht = fmd_malloc((size_t)b * sizeof(float));
    T->hf = fmd_malloc((size_t)b * sizeof(float));
    T->hl = fmd_malloc((size_t)b * sizeof(int32_t));
    T->hnull = fmd_malloc((size_t)b * sizeof(int32_t));
    T->dx = fmd_malloc(n * sizeof(double));
    T->dv = fmd_malloc(n * sizeof(double));
    T->dt = fmd_malloc((size_t)b * sizeof(double));
    T->gwork = fmd_malloc(gw * sizeof(double));
    if (!T->hx || !T->hv || !T->hvu || !T->ht || !T->hf || !T->hl || !T->hnull || !T->dx || !T->dv ||
        !T->dt || !T->gwork) {
        free_host(T);
        return fmd_seterr(FMD_ERR_OOM, "teacher: out of memory for a batch of %lld x %lld",
                          (long long)b, (long long)T->dim);
    }
    for (int64_t i = 0; i < b; i++) T->hnull[i] = T->num_classes;
    T->hcap = b;
    return FMD_OK;
}

static void free_dev(fmd_teacher *T)
{
    if (!T->nbe) return;
    fmd_backend *be = T->nbe;
    be->ops->free(be, T->d_x); be->ops->free(be, T->d_t); be->ops->free(be, T->d_out);
    be->ops->free(be, T->d_f); be->ops->free(be, T->d_v); be->ops->free(be, T->d_l);
    T->d_x = T->d_t = T->d_out = T->d_f = T->d_v = NULL;
    T->d_l = NULL;
    T->dcap = 0;
}

static fmd_status ensure_dev(fmd_teacher *T, int64_t b)
{
    if (b <= T->dcap) return FMD_OK;
    free_dev(T);
    fmd_backend *be = T->nbe;
    const size_t n = (size_t)b * (size_t)T->dim;
    T->d_x = be->ops->alloc(be, 2 * n * sizeof(float));
    T->d_out = be->ops->alloc(be, 2 * n * sizeof(float));
    T->d_v = be->ops->alloc(be, n * sizeof(float));
    T->d_t = be->ops->alloc(be, 2 * (size_t)b * sizeof(float));
    T->d_f = be->ops->alloc(be, (size_t)b * sizeof(float));
    T->d_l = be->ops->alloc(be, 2 * (size_t)b * sizeof(int32_t));
    if (!T->d_x || !T->d_out || !T->d_v || !T->d_t || !T->d_f || !T->d_l) {
        free_dev(T);
        return fmd_seterr(FMD_ERR_OOM, "teacher: out of device memory for a batch of %lld x %lld",
                          (long long)b, (long long)T->dim);
    }
    fmd_status st = nn_model_reserve_ex(T->net, 2 * b, NN_RESERVE_INFERENCE | NN_RESERVE_NO_JVP);
    if (st) {
        free_dev(T);
        return st;
    }
    T->dcap = b;
    return FMD_OK;
}

/* ---------------------------------------------------------------- helpers */

static int guided(const fmd_teacher *T, const fmd_guidance *g)
{
    return g && T->num_classes > 0 && g->scale != 1.0f;
}

static int in_interval(const fmd_guidance *g, double t)
{
    return t >= g->t_lo && t <= g->t_hi;
}

static fmd_status check_rows(const fmd_teacher *T, const char *fn, const float *t,
                             const int32_t *labels, int64_t b)
{
    for (int64_t i = 0; i < b; i++) {
        if (!(t[i] >= 0.0f && t[i] <= 1.0f))
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: t[%lld] = %g is outside [0, 1]", fn,
                              (long long)i, (double)t[i]);
        if (labels && T->num_classes > 0 && (labels[i] < 0 || labels[i] > T->num_classes))
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: labels[%lld] = %d is outside [0, %d] "
                              "(%d = null class)", fn, (long long)i, (int)labels[i],
                              T->num_classes, T->num_classes);
    }
    return FMD_OK;
}

/* ---------------------------------------------------------------- mixture */

/* v(b,D) in double: guided mixture velocity (OpenMP over rows) */
static void mixture_velocity(fmd_teacher *T, double *v, const double *x, const double *t,
                             const int32_t *labels, int64_t b, const fmd_guidance *g)
{
    const gmm *G = T->g;
    const int64_t D = T->dim, ws = gmm_work_size(G) + 2 * D;
    const int gd = guided(T, g);
    double *work = T->gwork;
#pragma omp parallel for schedule(static) if (b * G->k * D > 20000)
    for (int64_t i = 0; i < b; i++) {
#ifdef _OPENMP
        double *wk = work + (int64_t)omp_get_thread_num() * ws;
#else
        double *wk = work;
#endif
        double *vu = wk + gmm_work_size(G);
        int label = labels && T->num_classes ? labels[i] : -1;
        if (label >= T->num_classes) label = -1;
        gmm_velocity_row(G, v + i * D, x + i * D, t[i], label, wk);
        if (gd && label >= 0 && in_interval(g, t[i])) {
            gmm_velocity_row(G, vu, x + i * D, t[i], -1, wk);
            for (int64_t j = 0; j < D; j++)
                v[i * D + j] = vu[j] + g->scale * (v[i * D + j] - vu[j]);
        }
    }
}

/* ---------------------------------------------------------------- network */

/* All pointers on T->nbe.  v(b,D) = guided, convention-converted net output. */
static fmd_status network_velocity_dev(fmd_teacher *T, float *v, const float *x, const float *t,
                                       const int32_t *labels, int64_t b, const fmd_guidance *g)
{
    fmd_backend *be = T->nbe;
    const int64_t D = T->dim;
    fmd_status st;
    if ((st = ensure_dev(T, b))) return st;
    if ((st = ensure_host(T, b))) return st;
    const int gd = guided(T, g);
    const int64_t rows = gd ? 2 * b : b;
    be->ops->copy(be, T->d_x, x, (size_t)(b * D) * sizeof(float));
    be->ops->copy(be, T->d_t, t, (size_t)b * sizeof(float));
    if (T->sit) be->ops->affine(be, T->d_t, -1.0f, 1.0f, b); /* t_sit = 1 - t */
    if (T->num_classes > 0) {
        if (labels) be->ops->copy(be, T->d_l, labels, (size_t)b * sizeof(int32_t));
        else be->ops->upload(be, T->d_l, T->hnull, (size_t)b * sizeof(int32_t));
    }
    if (gd) {
        be->ops->copy(be, T->d_x + b * D, x, (size_t)(b * D) * sizeof(float));
        be->ops->copy(be, T->d_t + b, T->d_t, (size_t)b * sizeof(float));
        be->ops->upload(be, T->d_l + b, T->hnull, (size_t)b * sizeof(int32_t));
        /* per-row factor (scale - 1) inside the interval, 0 outside */
        be->ops->download(be, T->hf, t, (size_t)b * sizeof(float));
        if ((st = be->ops->sync(be))) return fmd_seterr(st, "teacher: %s", be->errmsg);
        for (int64_t i = 0; i < b; i++)
            T->hf[i] = in_interval(g, T->hf[i]) ? g->scale - 1.0f : 0.0f;
        be->ops->upload(be, T->d_f, T->hf, (size_t)b * sizeof(float));
    }
    st = nn_model_forward(T->net, T->d_out, T->d_x, T->d_t, NULL,
                          T->num_classes > 0 ? T->d_l : NULL, rows);
    if (st) return st;
    if (gd) {
        float *oc = T->d_out, *ou = T->d_out + b * D;
        be->ops->axpby(be, ou, 1.0f, oc, -1.0f, ou, b * D);   /* ou = vc - vu      */
        be->ops->copy(be, v, oc, (size_t)(b * D) * sizeof(float));
        be->ops->bcast_mul(be, v, ou, T->d_f, b, D, 1, 1.0f);  /* v += f * (vc-vu) */
    } else {
        be->ops->copy(be, v, T->d_out, (size_t)(b * D) * sizeof(float));
    }
    if (T->sit) be->ops->affine(be, v, -1.0f, 0.0f, b * D);
    st = be->ops->sync(be);
    if (st) return fmd_seterr(st, "teacher: network velocity: %s", be->errmsg);
    return FMD_OK;
}

/* A callback teacher's function runs in the caller's floating-point mode
 * even inside a training call (util/fpmode.h). */
static int call_user(fmd_teacher *T, float *v, const float *x, const float *t, const int32_t *lab,
                     int64_t b, int64_t D)
{
    fmd_fpmode_pause_state ps;
    fmd_fpmode_pause(&ps);
    int rc = T->fn(T->user, v, x, t, lab, b, D);
    fmd_fpmode_resume(&ps);
    return rc;
}

/* ---------------------------------------------------------------- host paths */

/* float host buffers -> float host v.  Internally uses only hvu, hnull, hf,
 * dx, dt, dv, gwork and the device scratch, so callers may pass hx, ht, hl
 * as inputs and hv as the output. */
static fmd_status host_velocity_f32(fmd_teacher *T, float *v, const float *x, const float *t,
                                    const int32_t *labels, int64_t b, const fmd_guidance *g)
{
    const int64_t D = T->dim, n = b * D;
    fmd_status st;
    if ((st = ensure_host(T, b))) return st;
    switch (T->kind) {
    case TK_MIXTURE:
        for (int64_t i = 0; i < n; i++) T->dx[i] = x[i];
        for (int64_t i = 0; i < b; i++) T->dt[i] = t[i];
        mixture_velocity(T, T->dv, T->dx, T->dt, labels, b, g);
        for (int64_t i = 0; i < n; i++) v[i] = (float)T->dv[i];
        return FMD_OK;
    case TK_CALLBACK: {
        const int32_t *lab = T->num_classes > 0 ? (labels ? labels : T->hnull) : NULL;
        int rc = call_user(T, v, x, t, lab, b, D);
        if (rc) return fmd_seterr(FMD_ERR_CANCELLED, "teacher callback returned %d", rc);
        if (guided(T, g)) {
            int any = 0;
            for (int64_t i = 0; i < b && !any; i++)
                any = in_interval(g, t[i]) && lab[i] != T->num_classes;
            if (!any) return FMD_OK;
            rc = call_user(T, T->hvu, x, t, T->hnull, b, D);
            if (rc) return fmd_seterr(FMD_ERR_CANCELLED, "teacher callback returned %d", rc);
            for (int64_t i = 0; i < b; i++) {
                if (!in_interval(g, t[i])) continue;
                for (int64_t j = i * D; j < (i + 1) * D; j++)
                    v[j] = T->hvu[j] + g->scale * (v[j] - T->hvu[j]);
            }
        }
        return FMD_OK;
    }
    default: { /* network: through the network's backend */
        fmd_backend *be = T->nbe;
        if ((st = ensure_dev(T, b))) return st;
        /* stage the inputs in the second half of d_out/d_x (free until the forward) */
        float *dxin = T->d_out, *dtin = T->d_f;
        int32_t *dlin = NULL;
        be->ops->upload(be, dxin, x, (size_t)n * sizeof(float));
        be->ops->upload(be, dtin, t, (size_t)b * sizeof(float));
        if (labels && T->num_classes > 0) {
            /* labels go to the label buffer's second half, copied out before it is reused */
            dlin = T->d_l + b;
            be->ops->upload(be, dlin, labels, (size_t)b * sizeof(int32_t));
        }
        st = network_velocity_dev(T, T->d_v, dxin, dtin, dlin, b, g);
        if (st) return st;
        be->ops->download(be, v, T->d_v, (size_t)n * sizeof(float));
        st = be->ops->sync(be);
        if (st) return fmd_seterr(st, "teacher: %s", be->errmsg);
        return FMD_OK;
    }
    }
}

/* the ODE field: double host state, the teacher's own guidance */
static fmd_status ode_field(void *ctx, double *v, const double *x, const double *t,
                            const int32_t *labels, int64_t b)
{
    fmd_teacher *T = ctx;
    const int64_t D = T->dim, n = b * D;
    fmd_status st = ensure_host(T, b);
    if (st) return st;
    if (T->kind == TK_MIXTURE) {
        mixture_velocity(T, v, x, t, labels, b, &T->guid);
        return FMD_OK;
    }
    for (int64_t i = 0; i < n; i++) T->hx[i] = (float)x[i];
    for (int64_t i = 0; i < b; i++) T->ht[i] = (float)t[i];
    st = host_velocity_f32(T, T->hv, T->hx, T->ht, labels, b, &T->guid);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) v[i] = T->hv[i];
    return FMD_OK;
}

/* ---------------------------------------------------------------- internal API */

fmd_status teacher_velocity_dev(fmd_teacher *T, fmd_backend *be, float *v, const float *x,
                                const float *t, const int32_t *labels, int64_t b,
                                const fmd_guidance *g)
{
    FMD_CHECK_ARG(T && be && v && x && t, "teacher_velocity_dev: NULL argument");
    FMD_CHECK_ARG(b >= 0, "teacher_velocity_dev: batch %lld < 0", (long long)b);
    if (b == 0) return FMD_OK;
    if (T->kind == TK_NETWORK && be == T->nbe)
        return network_velocity_dev(T, v, x, t, labels, b, g);
    const int64_t n = b * T->dim;
    fmd_status st = ensure_host(T, b);
    if (st) return st;
    /* hx/ht/hl carry the inputs; host_velocity_f32 uses only the other buffers */
    float *hx = T->hx, *ht = T->ht;
    int32_t *hl = NULL;
    be->ops->download(be, hx, x, (size_t)n * sizeof(float));
    be->ops->download(be, ht, t, (size_t)b * sizeof(float));
    if (labels && T->num_classes > 0) {
        hl = T->hl;
        be->ops->download(be, hl, labels, (size_t)b * sizeof(int32_t));
    }
    if ((st = be->ops->sync(be))) return fmd_seterr(st, "teacher_velocity_dev: %s", be->errmsg);
    if ((st = check_rows(T, "teacher_velocity_dev", ht, hl, b))) return st;
    float *hv = T->hv; /* free for the result: host_velocity_f32 never uses it */
    if ((st = host_velocity_f32(T, hv, hx, ht, hl, b, g))) return st;
    be->ops->upload(be, v, hv, (size_t)n * sizeof(float));
    if ((st = be->ops->sync(be))) return fmd_seterr(st, "teacher_velocity_dev: %s", be->errmsg);
    return FMD_OK;
}

int64_t teacher_dim(const fmd_teacher *T) { return T ? T->dim : 0; }
int teacher_num_classes(const fmd_teacher *T) { return T ? T->num_classes : 0; }
const nn_model *teacher_network(const fmd_teacher *T) { return T ? T->net : NULL; }
const fmd_guidance *teacher_guidance(const fmd_teacher *T) { return T ? &T->guid : NULL; }
const gmm *teacher_mixture(const fmd_teacher *T) { return T ? T->g : NULL; }

fmd_status teacher_solve_f64(fmd_teacher *T, double *x, const int32_t *labels, int64_t b,
                             const ode_config *cfg, ode_stats *stats)
{
    return ode_solve(ode_field, T, x, labels, b, T->dim, cfg, stats);
}

/* ---------------------------------------------------------------- creation */

static fmd_status teacher_new(int kind, int64_t dim, int num_classes, fmd_teacher **out)
{
    fmd_teacher *T = fmd_xcalloc(1, sizeof *T, "fmd_teacher");
    if (!T) return FMD_ERR_OOM;
    T->kind = kind;
    T->dim = dim;
    T->num_classes = num_classes;
    T->guid.scale = 1.0f;
    T->guid.t_lo = 0.0f;
    T->guid.t_hi = 1.0f;
    *out = T;
    return FMD_OK;
}

void fmd_teacher_destroy(fmd_teacher *T)
{
    if (!T) return;
    free_host(T);
    free_dev(T);
    gmm_destroy(T->g);
    nn_model_destroy(T->net);
    fmd_free(T);
}

static fmd_status wrap_mixture(gmm *g, fmd_teacher **out)
{
    fmd_teacher *T;
    fmd_status st = teacher_new(TK_MIXTURE, g->d, g->num_classes, &T);
    if (st) {
        gmm_destroy(g);
        return st;
    }
    T->g = g;
    *out = T;
    return FMD_OK;
}

fmd_status fmd_teacher_create_mixture(int dim, int num_components, const double *weights,
                                      const double *means, const double *stds,
                                      const int32_t *classes, int num_classes, fmd_teacher **out)
{
    FMD_CHECK_ARG(out, "fmd_teacher_create_mixture: out is NULL");
    gmm *g;
    fmd_status st = gmm_create(dim, num_components, weights, means, stds, classes, num_classes, &g);
    if (st) return err_prefix(st, "fmd_teacher_create_mixture");
    return wrap_mixture(g, out);
}

fmd_status fmd_teacher_create_preset(const char *name, fmd_teacher **out)
{
    FMD_CHECK_ARG(name, "fmd_teacher_create_preset: name is NULL");
    FMD_CHECK_ARG(out, "fmd_teacher_create_preset: out is NULL");
    gmm *g;
    fmd_status st = gmm_preset(name, &g);
    if (st) return err_prefix(st, "fmd_teacher_create_preset");
    return wrap_mixture(g, out);
}

fmd_status fmd_teacher_load_spec(const char *path, fmd_teacher **out)
{
    FMD_CHECK_ARG(path, "fmd_teacher_load_spec: path is NULL");
    FMD_CHECK_ARG(out, "fmd_teacher_load_spec: out is NULL");
    gmm *g;
    fmd_status st = gmm_load_spec(path, &g);
    if (st) return st;
    return wrap_mixture(g, out);
}

fmd_status fmd_teacher_create_callback(int64_t dim, int num_classes, fmd_velocity_fn fn,
                                       void *user, fmd_teacher **out)
{
    FMD_CHECK_ARG(out, "fmd_teacher_create_callback: out is NULL");
    FMD_CHECK_ARG(fn, "fmd_teacher_create_callback: fn is NULL");
    FMD_CHECK_ARG(dim >= 1 && dim <= ((int64_t)1 << 30), "fmd_teacher_create_callback: dim must be "
                  "in 1..2^30 (got %lld)", (long long)dim);
    FMD_CHECK_ARG(num_classes >= 0 && num_classes <= (1 << 24), "fmd_teacher_create_callback: "
                  "num_classes must be >= 0 (got %d)", num_classes);
    fmd_teacher *T;
    fmd_status st = teacher_new(TK_CALLBACK, dim, num_classes, &T);
    if (st) return st;
    T->fn = fn;
    T->user = user;
    *out = T;
    return FMD_OK;
}

/* Take ownership of a teacher-form network on be (also on failure). */
fmd_status teacher_wrap_network(fmd_backend *be, nn_model *net, int sit, fmd_teacher **out)
{
    const nn_config *c = nn_model_config(net);
    if (c->student) {
        nn_model_destroy(net);
        return fmd_seterr(FMD_ERR_INVALID_ARG, "teacher: the network is in student form (it takes "
                          "a delta input); load it with fmd_student_load");
    }
    fmd_teacher *T;
    fmd_status st = teacher_new(TK_NETWORK, nn_model_dim(net), c->num_classes, &T);
    if (st) {
        nn_model_destroy(net);
        return st;
    }
    T->net = net;
    T->nbe = be;
    T->sit = sit;
    *out = T;
    return FMD_OK;
}

static fmd_status parse_convention(const char *fn, const char *s, int *sit)
{
    if (strcmp(s, "libfmd") == 0 || strcmp(s, "repa") == 0) *sit = 0;
    else if (strcmp(s, "sit") == 0) *sit = 1;
    else return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: time_convention '%.32s' (expected libfmd or "
                           "sit)", fn, s);
    return FMD_OK;
}

static fmd_status read_guidance_meta(fmdf_reader *r, fmd_teacher *T)
{
    double s = 1, lo = 0, hi = 1;
    fmd_status st = FMD_OK;
    if (fmdf_meta_get(r, "guidance_scale")) {
        st = fmdf_meta_f64(r, "guidance_scale", &s);
        if (!st) st = fmdf_meta_f64(r, "guidance_t_lo", &lo);
        if (!st) st = fmdf_meta_f64(r, "guidance_t_hi", &hi);
        if (st) return st;
        if (fmd_teacher_set_guidance(T, s, lo, hi) != FMD_OK)
            return fmd_seterr(FMD_ERR_FORMAT, "teacher file: bad guidance %g [%g, %g]", s, lo, hi);
    }
    return FMD_OK;
}

static fmd_status load_mixture(fmdf_reader *r, fmd_teacher **out)
{
    int64_t d, k, nc;
    fmd_status st = fmdf_meta_i64(r, "dim", &d);
    if (!st) st = fmdf_meta_i64(r, "num_components", &k);
    if (!st) st = fmdf_meta_i64(r, "num_classes", &nc);
    if (st) return st;
    if (d < 1 || d > (1 << 24) || k < 1 || k > (1 << 20) || nc < 0 || nc > (1 << 20) ||
        d * k > ((int64_t)1 << 28))
        return fmd_seterr(FMD_ERR_FORMAT, "mixture file: dim %lld / components %lld / classes %lld "
                          "out of range", (long long)d, (long long)k, (long long)nc);
    double *w = fmd_calloc((size_t)k, sizeof(double)), *s = fmd_calloc((size_t)k, sizeof(double));
    double *mu = fmd_calloc((size_t)(k * d), sizeof(double));
    int32_t *cls = nc ? fmd_calloc((size_t)k, sizeof(int32_t)) : NULL;
    if (!w || !s || !mu || (nc && !cls)) {
        st = fmd_seterr(FMD_ERR_OOM, "mixture file: out of memory");
        goto out;
    }
    int64_t shk[1] = {k}, shm[2] = {k, d};
    if ((st = fmdf_read_tensor(r, "mixture.weights", FMDF_F64, 1, shk, w, (size_t)k * 8))) goto out;
    if ((st = fmdf_read_tensor(r, "mixture.stds", FMDF_F64, 1, shk, s, (size_t)k * 8))) goto out;
    if ((st = fmdf_read_tensor(r, "mixture.means", FMDF_F64, 2, shm, mu, (size_t)(k * d) * 8)))
        goto out;
    if (nc && (st = fmdf_read_tensor(r, "mixture.classes", FMDF_I32, 1, shk, cls, (size_t)k * 4)))
        goto out;
    gmm *g;
    st = gmm_create((int)d, (int)k, w, mu, s, cls, (int)nc, &g);
    if (!st) st = wrap_mixture(g, out);
out:
    /* a tensor of the wrong shape or an invalid mixture is a corrupt file */
    if (st == FMD_ERR_INVALID_ARG) st = err_prefix(FMD_ERR_FORMAT, "mixture file");
    fmd_free(w);
    fmd_free(s);
    fmd_free(mu);
    fmd_free(cls);
    return st;
}

fmd_status fmd_teacher_load(fmd_backend *backend, const char *path, const fmd_options *opts,
                            fmd_teacher **out)
{
    static const char *fn = "fmd_teacher_load";
    FMD_CHECK_ARG(path, "%s: path is NULL", fn);
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    int sit_override = -1;
    for (int i = 0; i < fmd_options_count(opts); i++) {
        const char *k = fmd_options_key(opts, i);
        if (strcmp(k, "time_convention") != 0)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: unknown option '%s' (known: "
                              "time_convention)", fn, k);
        const char *s;
        fmd_status st = fmd_options_get_str(opts, k, &s);
        if (st) return st;
        if ((st = parse_convention(fn, s, &sit_override))) return st;
    }
    fmdf_reader *r;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    const char *tk = fmdf_meta_get(r, "teacher_kind");
    fmd_teacher *T = NULL;
    if (tk && strcmp(tk, "mixture") == 0) {
        st = load_mixture(r, &T);
    } else if (!tk || strcmp(tk, "network") == 0) {
        int sit = 0;
        const char *conv = fmdf_meta_get(r, "time_convention");
        if (conv && (st = parse_convention(fn, conv, &sit)))
            st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': bad time_convention '%.32s'", fn, path, conv);
        if (sit_override >= 0) sit = sit_override;
        if (!st && !backend)
            st = fmd_seterr(FMD_ERR_INVALID_ARG, "%s: '%s' holds a network: backend must not be "
                            "NULL", fn, path);
        nn_model *net = NULL;
        if (!st) st = model_io_load_from(backend, r, "", &net);
        if (!st) st = teacher_wrap_network(backend, net, sit, &T);
    } else {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': unknown teacher_kind '%.32s'", fn, path, tk);
    }
    if (!st) st = read_guidance_meta(r, T);
    fmdf_close(r);
    if (st) {
        fmd_teacher_destroy(T);
        return st;
    }
    *out = T;
    return FMD_OK;
}

fmd_status fmd_teacher_load_safetensors(fmd_backend *backend, const char *path, const char *arch,
                                        const fmd_options *opts, fmd_teacher **out)
{
    static const char *fn = "fmd_teacher_load_safetensors";
    FMD_CHECK_ARG(backend, "%s: backend is NULL", fn);
    FMD_CHECK_ARG(path, "%s: path is NULL", fn);
    FMD_CHECK_ARG(arch, "%s: arch is NULL", fn);
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int preset = 0, sit = 0, is_mlp = 0;
    if (strcmp(arch, "mlp") == 0) {
        cfg.arch = NN_ARCH_MLP;
        is_mlp = 1;
    } else if (strcmp(arch, "dit") == 0) {
        cfg.arch = NN_ARCH_DIT;
        cfg.input_size = 32;
        cfg.in_channels = 4;
        cfg.time_scale = 1.0f;
    } else {
        fmd_status st = nn_config_preset(&cfg, arch);
        if (st) {
            char pre[200];
            snprintf(pre, sizeof pre, "%s: arch '%.40s' is not mlp, dit or a SiT/DiT preset", fn, arch);
            return err_prefix(st, pre);
        }
        preset = 1;
        cfg.num_classes = 1000;
        cfg.input_size = 32;
        cfg.in_channels = 4;
        cfg.learn_sigma = 1;
        /* SiT (and REPA) embed t in [0, 1]; DiT embeds integer steps 0..999 */
        cfg.time_scale = strncmp(arch, "DiT-", 4) == 0 ? 1000.0f : 1.0f;
        sit = strncmp(arch, "SiT-", 4) == 0;
    }
    int skip_unused = 0;
    static const char *const mlp_keys[] = {"dim", "width", "depth", "temb_dim", "time_scale",
                                           "num_classes", "time_convention", "skip_unused"};
    static const char *const dit_keys[] = {"input_size", "patch_size", "in_channels", "hidden_size",
                                           "depth", "num_heads", "mlp_ratio", "num_classes",
                                           "learn_sigma", "time_scale", "temb_dim",
                                           "time_convention", "skip_unused"};
    for (int i = 0; i < fmd_options_count(opts); i++) {
        const char *k = fmd_options_key(opts, i);
        const char *const *keys = is_mlp ? mlp_keys : dit_keys;
        int nk = is_mlp ? 8 : 13, known = 0;
        for (int j = 0; j < nk; j++) known |= strcmp(k, keys[j]) == 0;
        if (!known || (preset && (!strcmp(k, "patch_size") || !strcmp(k, "hidden_size") ||
                                  !strcmp(k, "depth") || !strcmp(k, "num_heads"))))
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' does not apply to arch '%s'", fn,
                              k, arch);
        fmd_status st;
        if (strcmp(k, "time_convention") == 0) {
            const char *s;
            if ((st = fmd_options_get_str(opts, k, &s))) return st;
            if ((st = parse_convention(fn, s, &sit))) return st;
            continue;
        }
        if (strcmp(k, "time_scale") == 0 || strcmp(k, "mlp_ratio") == 0) {
            double f;
            if ((st = fmd_options_get_f64(opts, k, &f))) return st;
            FMD_CHECK_ARG(isfinite(f) && f > 0 && f < 1e6, "%s: option %s = %g out of range", fn, k, f);
            if (k[0] == 't') cfg.time_scale = (float)f;
            else cfg.mlp_ratio = (float)f;
            continue;
        }
        int64_t v;
        if ((st = fmd_options_get_i64(opts, k, &v)))
            return fmd_seterr(st, "%s: option %s must be an integer", fn, k);
        FMD_CHECK_ARG(v >= 0 && v <= (1 << 24), "%s: option %s = %lld out of range", fn, k,
                      (long long)v);
        int iv = (int)v;
        if (!strcmp(k, "dim")) cfg.dim = iv;
        else if (!strcmp(k, "width")) cfg.width = iv;
        else if (!strcmp(k, "depth")) { if (is_mlp) cfg.depth = iv; else cfg.dit_depth = iv; }
        else if (!strcmp(k, "temb_dim")) cfg.temb_dim = iv;
        else if (!strcmp(k, "num_classes")) cfg.num_classes = iv;
        else if (!strcmp(k, "input_size")) cfg.input_size = iv;
        else if (!strcmp(k, "patch_size")) cfg.patch_size = iv;
        else if (!strcmp(k, "in_channels")) cfg.in_channels = iv;
        else if (!strcmp(k, "hidden_size")) cfg.hidden_size = iv;
        else if (!strcmp(k, "num_heads")) cfg.num_heads = iv;
        else if (!strcmp(k, "learn_sigma")) cfg.learn_sigma = iv != 0;
        else skip_unused = iv != 0;
    }
    nn_model *net = NULL;
    fmd_status st = nn_model_create(backend, &cfg, 0, &net);
    if (st) return err_prefix(st, fn);
    st_file *f = NULL;
    st = st_open(path, &f);
    char *skipped = NULL;
    if (!st) st = st_load_model(f, net, skip_unused ? ST_LOAD_SKIP_UNUSED : 0, &skipped);
    if (skipped) {
        fmd_log(FMD_LOG_INFO, "%s: '%s': skipped tensors not used by %s: %.400s", fn, path, arch,
                skipped);
        fmd_free(skipped);
    }
    st_close(f);
    if (st) {
        nn_model_destroy(net);
        return st;
    }
    return teacher_wrap_network(backend, net, sit, out);
}

fmd_status fmd_teacher_save(fmd_teacher *T, const char *path)
{
    static const char *fn = "fmd_teacher_save";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(path, "%s: path is NULL", fn);
    if (T->kind == TK_CALLBACK)
        return fmd_seterr(FMD_ERR_UNSUPPORTED, "%s: a callback teacher cannot be saved", fn);
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", FMD_VERSION_STRING);
    if (!st) st = fmdf_writer_add_meta(w, "kind", "teacher");
    if (!st) st = fmdf_writer_add_meta(w, "teacher_kind", T->kind == TK_MIXTURE ? "mixture" : "network");
    if (!st) st = fmdf_writer_add_meta_f64(w, "guidance_scale", T->guid.scale);
    if (!st) st = fmdf_writer_add_meta_f64(w, "guidance_t_lo", T->guid.t_lo);
    if (!st) st = fmdf_writer_add_meta_f64(w, "guidance_t_hi", T->guid.t_hi);
    if (T->kind == TK_MIXTURE) {
        const gmm *g = T->g;
        int64_t shk[1] = {g->k}, shm[2] = {g->k, g->d};
        if (!st) st = fmdf_writer_add_meta_i64(w, "dim", g->d);
        if (!st) st = fmdf_writer_add_meta_i64(w, "num_components", g->k);
        if (!st) st = fmdf_writer_add_meta_i64(w, "num_classes", g->num_classes);
        if (!st) st = fmdf_writer_add_tensor(w, "mixture.weights", FMDF_F64, 1, shk, g->w);
        if (!st) st = fmdf_writer_add_tensor(w, "mixture.stds", FMDF_F64, 1, shk, g->s);
        if (!st) st = fmdf_writer_add_tensor(w, "mixture.means", FMDF_F64, 2, shm, g->mu);
        if (!st && g->num_classes)
            st = fmdf_writer_add_tensor(w, "mixture.classes", FMDF_I32, 1, shk, g->cls);
    } else {
        if (!st) st = fmdf_writer_add_meta(w, "time_convention", T->sit ? "sit" : "libfmd");
        if (!st) st = model_io_write_config(w, "", nn_model_config(T->net));
        if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(T->net));
        if (!st) st = model_io_write_tensors(w, "", T->nbe, T->net, NULL);
    }
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

/* ---------------------------------------------------------------- queries */

const char *fmd_teacher_kind(const fmd_teacher *T)
{
    if (!T) return "";
    return T->kind == TK_MIXTURE ? "mixture" : T->kind == TK_NETWORK ? "network" : "callback";
}
int64_t fmd_teacher_dim(const fmd_teacher *T) { return T ? T->dim : 0; }
int fmd_teacher_num_classes(const fmd_teacher *T) { return T ? T->num_classes : 0; }

fmd_status fmd_teacher_set_guidance(fmd_teacher *T, double scale, double t_lo, double t_hi)
{
    static const char *fn = "fmd_teacher_set_guidance";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(isfinite(scale) && fabs(scale) < 1e6, "%s: scale %g must be finite", fn, scale);
    FMD_CHECK_ARG(t_lo >= 0 && t_lo <= t_hi && t_hi <= 1, "%s: need 0 <= t_lo (%g) <= t_hi (%g) <= 1",
                  fn, t_lo, t_hi);
    FMD_CHECK_ARG(scale == 1.0 || T->num_classes > 0, "%s: guidance scale %g on an unconditional "
                  "teacher", fn, scale);
    T->guid.scale = (float)scale;
    T->guid.t_lo = (float)t_lo;
    T->guid.t_hi = (float)t_hi;
    return FMD_OK;
}

fmd_status fmd_teacher_get_guidance(const fmd_teacher *T, double *scale, double *t_lo, double *t_hi)
{
    FMD_CHECK_ARG(T, "fmd_teacher_get_guidance: teacher is NULL");
    if (scale) *scale = T->guid.scale;
    if (t_lo) *t_lo = T->guid.t_lo;
    if (t_hi) *t_hi = T->guid.t_hi;
    return FMD_OK;
}

/* ---------------------------------------------------------------- host calls */

fmd_status fmd_teacher_velocity(fmd_teacher *T, float *v, const float *x, const float *t,
                                const int32_t *labels, int64_t batch)
{
    static const char *fn = "fmd_teacher_velocity";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(batch >= 0, "%s: batch %lld < 0", fn, (long long)batch);
    if (batch == 0) return FMD_OK;
    FMD_CHECK_ARG(v && x && t, "%s: v, x and t must be non-NULL", fn);
    fmd_status st = check_rows(T, fn, t, labels, batch);
    if (st) return st;
    return host_velocity_f32(T, v, x, t, T->num_classes ? labels : NULL, batch, &T->guid);
}

fmd_status fmd_teacher_sample_data(const fmd_teacher *T, int64_t n, uint64_t seed,
                                   uint64_t first_index, const int32_t *labels, float *x_out,
                                   int32_t *component_out)
{
    static const char *fn = "fmd_teacher_sample_data";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(n >= 0, "%s: n %lld < 0", fn, (long long)n);
    if (T->kind != TK_MIXTURE)
        return fmd_seterr(FMD_ERR_UNSUPPORTED, "%s: only mixture teachers have exact data samples "
                          "(this one is a %s teacher)", fn, fmd_teacher_kind(T));
    if (n == 0) return FMD_OK;
    FMD_CHECK_ARG(x_out, "%s: x_out is NULL", fn);
    for (int64_t i = 0; labels && i < n; i++)
        FMD_CHECK_ARG(labels[i] >= 0 && labels[i] <= T->num_classes, "%s: labels[%lld] = %d outside "
                      "[0, %d]", fn, (long long)i, (int)labels[i], T->num_classes);
    double row[4096];
    const int64_t D = T->dim;
    const int64_t chunk = D <= 4096 ? 4096 / D : 0;
    if (chunk == 0) {
        double *buf = fmd_malloc((size_t)D * sizeof(double));
        if (!buf) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
        for (int64_t i = 0; i < n; i++) {
            gmm_sample(T->g, buf, component_out ? component_out + i : NULL, labels ? labels + i : NULL,
                       1, seed, first_index + (uint64_t)i);
            for (int64_t j = 0; j < D; j++) x_out[i * D + j] = (float)buf[j];
        }
        fmd_free(buf);
        return FMD_OK;
    }
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t m = n - i < chunk ? n - i : chunk;
        gmm_sample(T->g, row, component_out ? component_out + i : NULL, labels ? labels + i : NULL,
                   m, seed, first_index + (uint64_t)i);
        for (int64_t j = 0; j < m * D; j++) x_out[i * D + j] = (float)row[j];
    }
    return FMD_OK;
}

fmd_status fmd_prior_noise(float *z, int64_t n, int64_t dim, uint64_t seed, uint64_t first_index)
{
    FMD_CHECK_ARG(z || n == 0, "fmd_prior_noise: z is NULL");
    FMD_CHECK_ARG(n >= 0 && dim >= 1, "fmd_prior_noise: bad shape (%lld, %lld)", (long long)n,
                  (long long)dim);
    /* z[i * dim + j] is element (first_index + i) * dim + j: one run, cut
     * into pieces for the OpenMP threads.  Every element is a function of its
     * index alone, so the pieces give the same floats as any thread count.
     * Why: for 2^20 two-dimensional rows one thread took 45 ms, next to about
     * 47 ms of GPU kernels for the one-step forward of them (docs/benchmarks.md). */
    enum { NOISE_PIECE = 1 << 15 }; /* floats per piece, a multiple of 4 */
    const int64_t total = n * dim, pieces = (total + NOISE_PIECE - 1) / NOISE_PIECE;
    const uint64_t e0 = first_index * (uint64_t)dim;
#pragma omp parallel for schedule(static) if (pieces > 1)
    for (int64_t p = 0; p < pieces; p++) {
        const int64_t a = p * NOISE_PIECE, len = total - a < NOISE_PIECE ? total - a : NOISE_PIECE;
        fmd_philox_normal_fill(z + a, len, seed, FMD_STREAM_PRIOR, e0 + (uint64_t)a);
    }
    return FMD_OK;
}

static fmd_status solve_common(const char *fn, fmd_teacher *T, float *x, const int32_t *labels,
                               int64_t batch, const fmd_options *opts, int64_t *nfe_out)
{
    for (int i = 0; i < fmd_options_count(opts); i++) {
        const char *k = fmd_options_key(opts, i);
        if (!ode_option_key(k))
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: unknown option '%s' (known: solver, steps, "
                              "shift, rtol, atol, t_start, t_end, h0, max_steps)", fn, k);
    }
    ode_config cfg;
    ode_config_default(&cfg);
    fmd_status st = ode_config_from_options(&cfg, opts, fn);
    if (st) return st;
    for (int64_t i = 0; labels && T->num_classes && i < batch; i++)
        FMD_CHECK_ARG(labels[i] >= 0 && labels[i] <= T->num_classes, "%s: labels[%lld] = %d outside "
                      "[0, %d]", fn, (long long)i, (int)labels[i], T->num_classes);
    const int64_t n = batch * T->dim;
    double *xd = fmd_malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!xd) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %lld states", fn, (long long)n);
    for (int64_t i = 0; i < n; i++) xd[i] = x[i];
    ode_stats stats;
    st = teacher_solve_f64(T, xd, T->num_classes ? labels : NULL, batch, &cfg, &stats);
    if (!st) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)xd[i];
        if (nfe_out) *nfe_out = stats.nfe;
    }
    fmd_free(xd);
    return st;
}

fmd_status fmd_teacher_solve(fmd_teacher *T, float *x, const int32_t *labels, int64_t batch,
                             const fmd_options *opts, int64_t *nfe_out)
{
    static const char *fn = "fmd_teacher_solve";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(batch >= 0, "%s: batch %lld < 0", fn, (long long)batch);
    FMD_CHECK_ARG(x || batch == 0, "%s: x is NULL", fn);
    return solve_common(fn, T, x, labels, batch, opts, nfe_out);
}

fmd_status fmd_teacher_sample(fmd_teacher *T, float *x_out, const int32_t *labels, int64_t batch,
                              uint64_t seed, uint64_t first_index, const fmd_options *opts,
                              int64_t *nfe_out)
{
    static const char *fn = "fmd_teacher_sample";
    FMD_CHECK_ARG(T, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(batch >= 0, "%s: batch %lld < 0", fn, (long long)batch);
    FMD_CHECK_ARG(x_out || batch == 0, "%s: x_out is NULL", fn);
    fmd_prior_noise(x_out, batch, T->dim, seed, first_index);
    return solve_common(fn, T, x_out, labels, batch, opts, nfe_out);
}
