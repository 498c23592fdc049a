/* cpu_ops_nn.c - fused bias + activation ops used by the network engine
 * (lib/nn/layers.c), see the slots bias_act_forward / act_bias_backward in
 * backends/backend.h.  The CPU versions evaluate exp with a vectorisable
 * Cephes-style polynomial (about 1 ulp on [-87, 88]) and tanh(u) as
 * 1 - 2/(1 + exp(2u)) (absolute error below 1e-7), compiled for AVX-512,
 * AVX2 and baseline x86-64 and picked at load time; rows are split over the
 * backend's OpenMP threads.  The reference versions use libm and double.
 * Also the CPU timestep embedding (slot timestep_embed), whose sin/cos are
 * vectorised the same way (tests/test_timestep_embed.c checks them). */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_ops_nn.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

CPU_CLONES static void k_bias_act(int kind, float *out, float *pre, const float *bias, int64_t r0,
                                 int64_t r1, int64_t c)
{
    for (int64_t r = r0; r < r1; r++) {
        float *p = pre + r * c, *o = out + r * c;
        if (kind == FMDB_ACT_SILU) {
#pragma omp simd
            for (int64_t j = 0; j < c; j++) {
                float v = p[j] + (bias ? bias[j] : 0.0f);
                p[j] = v;
                float y = v / (1.0f + fmdb_vexpf(-v));
                o[j] = FMDB_FLUSH_SUBNORMAL(y);
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < c; j++) {
                float v = p[j] + (bias ? bias[j] : 0.0f);
                p[j] = v;
                float u = GELU_K * (v + GELU_C * v * v * v);
                float th = 1.0f - 2.0f / (1.0f + fmdb_vexpf(2.0f * u));
                float y = 0.5f * v * (1.0f + th);
                o[j] = FMDB_FLUSH_SUBNORMAL(y);
            }
        }
    }
}

CPU_CLONES static void k_act_bwd(int kind, float *dpre, const float *dout, const float *pre,
                                int64_t i0, int64_t i1)
{
    if (kind == FMDB_ACT_SILU) {
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) {
            float v = pre[i];
            float s = 1.0f / (1.0f + fmdb_vexpf(-v));
            float d = dout[i] * s * (1.0f + v * (1.0f - s));
            dpre[i] = FMDB_FLUSH_SUBNORMAL(d);
        }
    } else {
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) {
            float v = pre[i];
            float u = GELU_K * (v + GELU_C * v * v * v);
            float th = 1.0f - 2.0f / (1.0f + fmdb_vexpf(2.0f * u));
            float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
            float d = dout[i] * g;
            dpre[i] = FMDB_FLUSH_SUBNORMAL(d);
        }
    }
}

static int nthreads(fmd_backend *be, int64_t work)
{
    int t = be->ctx ? ((const cpu_ctx *)be->ctx)->threads : 1;
    if (work < (1 << 14)) return 1;
    return t > 0 ? t : 1;
}

void fmdb_cpu_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                               int64_t n, int64_t c)
{
    int nt = nthreads(be, n * c);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int id = omp_get_thread_num(), k = omp_get_num_threads();
        int64_t r0 = n * id / k, r1 = n * (id + 1) / k;
        k_bias_act(kind, out, pre, bias, r0, r1, c);
    }
}

void fmdb_cpu_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias,
                                const float *dout, const float *pre, int64_t n, int64_t c)
{
    int64_t tot = n * c;
    int nt = nthreads(be, tot);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int id = omp_get_thread_num(), k = omp_get_num_threads();
        k_act_bwd(kind, dpre, dout, pre, tot * id / k, tot * (id + 1) / k);
    }
    if (dbias) be->ops->bias_grad(be, dbias, dpre, n, c);
}

/* ---- reference ------------------------------------------------------------------- */
static double ref_f(int kind, double v, double *d)
{
    if (kind == FMDB_ACT_SILU) {
        double s = 1.0 / (1.0 + exp(-v));
        *d = s * (1.0 + v * (1.0 - s));
        return v * s;
    }
    double k = 0.7978845608028654, cc = 0.044715;
    double th = tanh(k * (v + cc * v * v * v));
    *d = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * k * (1.0 + 3.0 * cc * v * v);
    return 0.5 * v * (1.0 + th);
}

void fmdb_ref_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                               int64_t n, int64_t c)
{
    double d;
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < c; j++) {
            float v = pre[r * c + j] + (bias ? bias[j] : 0.0f);
            pre[r * c + j] = v;
            float y = (float)ref_f(kind, v, &d);
            out[r * c + j] = FMDB_FLUSH_SUBNORMAL(y);
        }
}

void fmdb_ref_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias,
                                const float *dout, const float *pre, int64_t n, int64_t c)
{
    double d;
    for (int64_t i = 0; i < n * c; i++) {
        ref_f(kind, pre[i], &d);
        float g = (float)((double)dout[i] * d);
        dpre[i] = FMDB_FLUSH_SUBNORMAL(g);
    }
    if (dbias)
        for (int64_t j = 0; j < c; j++) {
            double s = 0;
            for (int64_t r = 0; r < n; r++) s += dpre[r * c + j];
            dbias[j] = (float)((double)dbias[j] + s);
        }
}

/* ---- timestep embedding ------------------------------------------------------------ */

/* sin and cos of a float argument, vectorisable: the argument is reduced in
 * double (a - k*pi/2 with a two-part pi/2, exact enough for |a| < 2^20),
 * Taylor polynomials on [-pi/4, pi/4] (truncation below 2e-9 relative, far
 * under a float ulp), the quadrant picked with blends.  Rounding uses the
 * 1.5*2^52 trick (no floor, so the baseline SSE2 clone vectorises too) and
 * never converts the argument to an integer: NaN in gives NaN out, without
 * undefined behaviour.  A macro, not a function, so that GCC vectorises the
 * loop (out-pointers block it). */
#define RND52 6755399441055744.0 /* 1.5 * 2^52 */
#define VSINCOS(a, SN, CS)                                                                 \
    do {                                                                                   \
        const double x_ = (double)(a);                                                     \
        const double k_ = (x_ * 0.63661977236758134308 + RND52) - RND52;                   \
        const double r_ = (x_ - k_ * 1.5707963267341256) - k_ * 6.0771005065061922e-11;    \
        const double r2_ = r_ * r_;                                                        \
        double s_ = 1.0 / 362880.0;                                                        \
        s_ = s_ * r2_ - 1.0 / 5040.0;                                                      \
        s_ = s_ * r2_ + 1.0 / 120.0;                                                       \
        s_ = s_ * r2_ - 1.0 / 6.0;                                                         \
        s_ = s_ * r2_ * r_ + r_;                                                           \
        double c_ = -1.0 / 3628800.0;                                                      \
        c_ = c_ * r2_ + 1.0 / 40320.0;                                                     \
        c_ = c_ * r2_ - 1.0 / 720.0;                                                       \
        c_ = c_ * r2_ + 1.0 / 24.0;                                                        \
        c_ = c_ * r2_ - 0.5;                                                               \
        c_ = c_ * r2_ + 1.0;                                                               \
        /* quadrant q = k mod 4 in 0..3: floor(k/4) = round(k/4 - 3/8) */                \
        const double q_ = k_ - 4.0 * (((k_ * 0.25 - 0.375) + RND52) - RND52);              \
        const int odd_ = (q_ == 1.0) | (q_ == 3.0);                                        \
        double sv_ = odd_ ? c_ : s_, cv_ = odd_ ? s_ : c_;                                 \
        sv_ = q_ >= 2.0 ? -sv_ : sv_;                                                      \
        cv_ = ((q_ == 1.0) | (q_ == 2.0)) ? -cv_ : cv_;                                    \
        (SN) = (float)sv_;                                                                 \
        (CS) = (float)cv_;                                                                 \
    } while (0)

/* One row block of the embedding for frequencies f[0, m) at columns j0..:
 * out[i, j0 + j] = cos(t_i s f_j), out[i, half + j0 + j] = sin(...) (deriv:
 * -sin * s f_j and cos * s f_j, the derivative in t). */
CPU_CLONES static void k_timestep(float *out, const float *t, const float *f, int64_t r0, int64_t r1,
                                 int64_t dim, int64_t half, int64_t j0, int64_t m, float ts,
                                 int deriv)
{
    for (int64_t i = r0; i < r1; i++) {
        float *o = out + i * dim + j0;
        const float ti = t[i] * ts;
        if (fabsf(ti) >= 1048576.0f) { /* beyond the fast reduction: libm, in double */
            for (int64_t j = 0; j < m; j++) {
                double a = (double)(ti * f[j]);
                float sn = (float)sin(a), cs = (float)cos(a), g = ts * f[j];
                o[j] = deriv ? -sn * g : cs;
                o[half + j] = deriv ? cs * g : sn;
            }
            continue;
        }
        if (deriv) {
#pragma omp simd
            for (int64_t j = 0; j < m; j++) {
                float sn, cs, g = ts * f[j];
                VSINCOS(ti * f[j], sn, cs);
                o[j] = -sn * g;
                o[half + j] = cs * g;
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < m; j++) {
                float sn, cs;
                VSINCOS(ti * f[j], sn, cs);
                o[j] = cs;
                o[half + j] = sn;
            }
        }
    }
}

void fmdb_cpu_timestep_embed(fmd_backend *be, float *out, const float *t, int64_t n, int64_t dim,
                             float max_period, float time_scale, int deriv)
{
    enum { CHUNK = 1024 };
    float f[CHUNK];
    const int64_t half = dim / 2;
    const float lp = logf(max_period);
    for (int64_t j0 = 0; j0 < half; j0 += CHUNK) {
        const int64_t m = half - j0 < CHUNK ? half - j0 : CHUNK;
        /* the same float expression as the reference, once per call */
        for (int64_t j = 0; j < m; j++) f[j] = expf(-lp * (float)(j0 + j) / (float)half);
        int nt = nthreads(be, n * m * 16);
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int id = omp_get_thread_num(), k = omp_get_num_threads();
            k_timestep(out, t, f, n * id / k, n * (id + 1) / k, dim, half, j0, m, time_scale,
                       deriv);
        }
    }
    if (dim & 1)
        for (int64_t i = 0; i < n; i++) out[i * dim + dim - 1] = 0.0f;
}
