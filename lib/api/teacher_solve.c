/* teacher_solve.c - the teacher's sampling ODE: fmd_teacher_solve and
 * fmd_teacher_sample over lib/algo/ode.c (double host state, the teacher's
 * own guidance), and the prior noise every sampler shares. */
#include <string.h>
#include "api/teacher_impl.h"
#include "util/philox.h"
#include "util/util.h"

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

fmd_status teacher_solve_f64(fmd_teacher *T, double *x, const int32_t *labels, int64_t b,
                             const ode_config *cfg, ode_stats *stats)
{
    return ode_solve(ode_field, T, x, labels, b, T->dim, cfg, stats);
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

fmd_status teacher_solve_cfg(const char *fn, fmd_teacher *T, float *x, const int32_t *labels,
                             int64_t batch, const ode_config *cfg, int64_t *nfe_out)
{
    fmd_status st;
    for (int64_t i = 0; labels && T->num_classes && i < batch; i++)
        FMD_CHECK_ARG(labels[i] >= 0 && labels[i] <= T->num_classes, "%s: labels[%lld] = %d outside "
                      "[0, %d]", fn, (long long)i, (int)labels[i], T->num_classes);
    const int64_t n = batch * T->dim;
    double *xd = fmd_malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!xd) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %lld states", fn, (long long)n);
    for (int64_t i = 0; i < n; i++) xd[i] = x[i];
    ode_stats stats;
    st = teacher_solve_f64(T, xd, T->num_classes ? labels : NULL, batch, cfg, &stats);
    if (!st) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)xd[i];
        if (nfe_out) *nfe_out = stats.nfe;
    }
    fmd_free(xd);
    return st;
}

static fmd_status solve_common(const char *fn, fmd_teacher *T, float *x, const int32_t *labels,
                               int64_t batch, const fmd_options *opts, int64_t *nfe_out)
{
    ode_config cfg;
    ode_config_default(&cfg);
    fmd_status st = ode_config_from_options(&cfg, opts, fn);
    if (st) return st;
    return teacher_solve_cfg(fn, T, x, labels, batch, &cfg, nfe_out);
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

