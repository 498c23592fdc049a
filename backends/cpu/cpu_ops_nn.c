/* cpu_ops_nn.c - fused bias + activation ops used by the network engine
 * (lib/nn/layers.c), see the slots bias_act_forward / act_bias_backward in
 * backends/backend.h.  The CPU versions evaluate exp with a vectorisable
 * Cephes-style polynomial (about 1 ulp on [-87, 88]) and tanh(u) as
 * 1 - 2/(1 + exp(2u)) (absolute error below 1e-7), compiled for AVX-512,
 * AVX2 and baseline x86-64 and picked at load time; rows are split over the
 * backend's OpenMP threads.  The reference versions use libm and double. */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include "backend.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_ops_nn.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define NN_CLONES
#endif

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

NN_CLONES static void k_bias_act(int kind, float *out, float *pre, const float *bias, int64_t r0,
                                 int64_t r1, int64_t c)
{
    for (int64_t r = r0; r < r1; r++) {
        float *p = pre + r * c, *o = out + r * c;
        if (kind == FMDB_ACT_SILU) {
#pragma omp simd
            for (int64_t j = 0; j < c; j++) {
                float v = p[j] + (bias ? bias[j] : 0.0f);
                p[j] = v;
                o[j] = v / (1.0f + fmdb_vexpf(-v));
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < c; j++) {
                float v = p[j] + (bias ? bias[j] : 0.0f);
                p[j] = v;
                float u = GELU_K * (v + GELU_C * v * v * v);
                float th = 1.0f - 2.0f / (1.0f + fmdb_vexpf(2.0f * u));
                o[j] = 0.5f * v * (1.0f + th);
            }
        }
    }
}

NN_CLONES static void k_act_bwd(int kind, float *dpre, const float *dout, const float *pre,
                                int64_t i0, int64_t i1)
{
    if (kind == FMDB_ACT_SILU) {
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) {
            float v = pre[i];
            float s = 1.0f / (1.0f + fmdb_vexpf(-v));
            dpre[i] = dout[i] * s * (1.0f + v * (1.0f - s));
        }
    } else {
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) {
            float v = pre[i];
            float u = GELU_K * (v + GELU_C * v * v * v);
            float th = 1.0f - 2.0f / (1.0f + fmdb_vexpf(2.0f * u));
            float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
            dpre[i] = dout[i] * g;
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
            out[r * c + j] = (float)ref_f(kind, v, &d);
        }
}

void fmdb_ref_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias,
                                const float *dout, const float *pre, int64_t n, int64_t c)
{
    double d;
    for (int64_t i = 0; i < n * c; i++) {
        ref_f(kind, pre[i], &d);
        dpre[i] = (float)((double)dout[i] * d);
    }
    if (dbias)
        for (int64_t j = 0; j < c; j++) {
            double s = 0;
            for (int64_t r = 0; r < n; r++) s += dpre[r * c + j];
            dbias[j] = (float)((double)dbias[j] + s);
        }
}
