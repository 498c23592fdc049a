/* teacher.c - fmd_teacher: a frozen velocity field v(x, t, c) of one of
 * three kinds (Gaussian mixture, network, host callback), classifier-free
 * guidance with an interval, time-convention conversion for SiT
 * checkpoints, the host velocity, and the device entry point the distiller
 * and sampler use (teacher_internal.h).  Loading and saving are in
 * teacher_io.c, the ODE solvers in teacher_solve.c.
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
#include "api/teacher_impl.h"
#include <zlib.h>
#include "util/arena.h"
#include "util/fpmode.h"
#include "util/util.h"

/* ---------------------------------------------------------------- scratch */

/* Every host scratch buffer, for b rows, in one list: counted with base
 * NULL (returns the floats), then placed (util/arena.h).  Doubles take two
 * floats each. */
static int64_t host_layout(fmd_teacher *T, float *base, int64_t b)
{
    const int64_t n = b * T->dim;
    const int64_t gw = T->g ? (int64_t)gmm_max_threads() * (gmm_work_size(T->g) + 2 * T->dim) : 1;
    int64_t off = 0;
#define F(p, k) T->p = (void *)fmd_arena_take(base, &off, (k))
    F(hx, n); F(hv, n); F(hvu, n); F(ht, b); F(hf, b); F(hl, b); F(hnull, b);
    F(dx, 2 * n); F(dv, 2 * n); F(dt, 2 * b); F(gwork, 2 * gw);
    return off;
}

/* The same for the device scratch of a network teacher (2b rows). */
static int64_t dev_layout(fmd_teacher *T, float *base, int64_t b)
{
    const int64_t n = b * T->dim;
    int64_t off = 0;
    F(d_x, 2 * n); F(d_out, 2 * n); F(d_v, n); F(d_t, 2 * b); F(d_f, b); F(d_l, 2 * b);
#undef F
    return off;
}

static void free_host(fmd_teacher *T)
{
    fmd_free(T->hbuf);
    T->hbuf = NULL;
    T->hcap = 0;
}

fmd_status ensure_host(fmd_teacher *T, int64_t b)
{
    if (b <= T->hcap) return FMD_OK;
    free_host(T);
    T->hbuf = fmd_malloc((size_t)host_layout(T, NULL, b) * sizeof(float));
    if (!T->hbuf)
        return fmd_seterr(FMD_ERR_OOM, "teacher: out of memory for a batch of %lld x %lld",
                          (long long)b, (long long)T->dim);
    host_layout(T, T->hbuf, b);
    for (int64_t i = 0; i < b; i++) T->hnull[i] = T->num_classes;
    T->hcap = b;
    return FMD_OK;
}

static void free_dev(fmd_teacher *T)
{
    if (T->nbe && T->dbuf) T->nbe->ops->free(T->nbe, T->dbuf);
    T->dbuf = NULL;
    T->dcap = 0;
}

static fmd_status ensure_dev(fmd_teacher *T, int64_t b)
{
    if (b <= T->dcap) return FMD_OK;
    free_dev(T);
    fmd_backend *be = T->nbe;
    T->dbuf = be->ops->alloc(be, (size_t)dev_layout(T, NULL, b) * sizeof(float));
    if (!T->dbuf)
        return fmd_seterr(FMD_ERR_OOM, "teacher: out of device memory for a batch of %lld x %lld",
                          (long long)b, (long long)T->dim);
    dev_layout(T, T->dbuf, b);
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
void mixture_velocity(fmd_teacher *T, double *v, const double *x, const double *t,
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
fmd_status host_velocity_f32(fmd_teacher *T, float *v, const float *x, const float *t,
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

fmd_status teacher_identity(fmd_teacher *T, char *buf, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    if (T->kind == TK_MIXTURE) {
        const gmm *g = T->g;
        crc = crc32(crc, (const Bytef *)g->w, (uInt)((size_t)g->k * sizeof(double)));
        crc = crc32(crc, (const Bytef *)g->s, (uInt)((size_t)g->k * sizeof(double)));
        crc = crc32(crc, (const Bytef *)g->mu, (uInt)((size_t)g->k * g->d * sizeof(double)));
        if (g->num_classes) crc = crc32(crc, (const Bytef *)g->cls, (uInt)((size_t)g->k * sizeof(int32_t)));
        snprintf(buf, len, "mixture dim %lld, %d components, %d classes, crc %08lx",
                 (long long)T->dim, g->k, T->num_classes, (unsigned long)crc);
        return FMD_OK;
    }
    if (T->kind == TK_CALLBACK) {
        snprintf(buf, len, "callback dim %lld, %d classes", (long long)T->dim, T->num_classes);
        return FMD_OK;
    }
    /* network: the weights, downloaded in pieces */
    fmd_backend *be = T->nbe;
    const int64_t n = nn_model_num_params(T->net), piece = 1 << 20;
    float *h = fmd_malloc((size_t)(n < piece ? n : piece) * sizeof(float));
    if (!h) return fmd_seterr(FMD_ERR_OOM, "teacher: out of memory for its identity");
    for (int64_t i = 0; i < n; i += piece) {
        const int64_t m = n - i < piece ? n - i : piece;
        be->ops->download(be, h, nn_model_params(T->net) + i, (size_t)m * sizeof(float));
        fmd_status st = be->ops->sync(be);
        if (st) {
            fmd_free(h);
            return fmd_seterr(st, "teacher: %s", be->errmsg);
        }
        crc = crc32(crc, (const Bytef *)h, (uInt)((size_t)m * sizeof(float)));
    }
    fmd_free(h);
    const nn_config *c = nn_model_config(T->net);
    snprintf(buf, len, "network %s dim %lld, %d classes, %lld params%s, crc %08lx",
             c->arch == NN_ARCH_MLP ? "mlp" : "dit", (long long)T->dim, T->num_classes,
             (long long)n, T->sit ? ", SiT time" : "", (unsigned long)crc);
    return FMD_OK;
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

fmd_status wrap_mixture(gmm *g, fmd_teacher **out)
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
    if (st) return fmd_err_prefix(st, "fmd_teacher_create_mixture");
    return wrap_mixture(g, out);
}

fmd_status fmd_teacher_create_preset(const char *name, fmd_teacher **out)
{
    FMD_CHECK_ARG(name, "fmd_teacher_create_preset: name is NULL");
    FMD_CHECK_ARG(out, "fmd_teacher_create_preset: out is NULL");
    gmm *g;
    fmd_status st = gmm_preset(name, &g);
    if (st) return fmd_err_prefix(st, "fmd_teacher_create_preset");
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
