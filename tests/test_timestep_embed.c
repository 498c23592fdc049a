/* test_timestep_embed.c - the CPU backend's vectorised timestep embedding
 * (backends/cpu/cpu_ops_nn.c: sin/cos by double range reduction and
 * polynomials) against libm in double on the same float arguments, over
 * t * time_scale from 0 to beyond the fast path's 2^20 limit, negative t,
 * odd widths, both the embedding and its t-derivative, and NaN. */
#include <math.h>
#include <string.h>
#include "backend.h"
#include "testutil.h"

static double check(fmd_backend *be, const float *t, int64_t n, int64_t dim, float ts, int deriv)
{
    const int64_t half = dim / 2;
    float *out = be->ops->alloc(be, (size_t)(n * dim) * sizeof(float));
    float *tin = be->ops->alloc(be, (size_t)n * sizeof(float));
    double worst = 0.0;
    if (!out || !tin) {
        CHECK_MSG(0, "backend alloc failed");
        return 1.0;
    }
    be->ops->upload(be, tin, t, (size_t)n * sizeof(float));
    be->ops->timestep_embed(be, out, tin, n, dim, 10000.0f, ts, deriv);
    CHECK_OK(be->ops->sync(be));
    const float lp = logf(10000.0f);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < half; j++) {
            float f = expf(-lp * (float)j / (float)half);
            double a = (double)(t[i] * ts * f); /* the float argument the kernel sees */
            double g = deriv ? (double)(ts * f) : 1.0;
            double e0 = deriv ? -sin(a) * g : cos(a), e1 = deriv ? cos(a) * g : sin(a);
            double o0 = out[i * dim + j], o1 = out[i * dim + half + j];
            if (isnan(t[i])) {
                CHECK_MSG(isnan(o0) && isnan(o1), "NaN t gave %g %g (row %lld)", o0, o1, (long long)i);
                continue;
            }
            /* error relative to the output's scale (1 for the embedding) */
            double e = fmax(fabs(o0 - e0), fabs(o1 - e1)) / g;
            if (e > worst) worst = e;
        }
    if (dim & 1)
        for (int64_t i = 0; i < n; i++) CHECK(out[i * dim + dim - 1] == 0.0f);
    be->ops->free(be, out);
    be->ops->free(be, tin);
    return worst;
}

int main(void)
{
    fmd_backend *be = NULL;
    int rc = tu_open_backend("test_timestep_embed", "cpu", &be);
    if (rc) return rc;
    if (!be) return tu_finish("test_timestep_embed");

    /* t * time_scale spans [-3e6, 3e6]: small, typical (SiT's 1000), past 2^20 */
    enum { N = 64 };
    float t[N];
    for (int i = 0; i < N; i++) {
        double u = (double)i / (N - 1);
        t[i] = (float)((i & 1 ? -1.0 : 1.0) * pow(10.0, -6.0 + 9.5 * u));
    }
    t[0] = 0.0f;
    t[5] = 1.0f;
    t[9] = NAN;
    static const struct { int64_t dim; float ts; } shapes[] = {
        {256, 1.0f}, {256, 1000.0f}, {7, 1000.0f}, {2, 1.0f}, {2050, 1.0f}, {64, 0.001f},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int deriv = 0; deriv < 2; deriv++) {
            double w = check(be, t, N, shapes[s].dim, shapes[s].ts, deriv);
            printf("  dim %5lld  scale %-7g %s  worst error %.2e\n", (long long)shapes[s].dim,
                   (double)shapes[s].ts, deriv ? "d/dt" : "    ", w);
            /* float rounding of the result: half an ulp of 1 is 6e-8 */
            CHECK_MSG(w < 2.5e-7, "dim %lld scale %g deriv %d: error %.3g", (long long)shapes[s].dim,
                      (double)shapes[s].ts, deriv, w);
        }
    fmd_backend_destroy(be);
    return tu_finish("test_timestep_embed");
}
