/* cpu_ops_nn.h - the network engine's fused activation ops (slots
 * bias_act_forward and act_bias_backward of fmd_backend_ops) for the CPU
 * backend (vectorised exp, tanh through exp) and for the reference backend
 * (plain libm, double accumulation). */
#ifndef FMD_CPU_OPS_NN_H
#define FMD_CPU_OPS_NN_H
#include <stdint.h>
#include "backend.h"

/* exp(x) for float x, vectorisable (no libm call, no branches that block
 * #pragma omp simd): Cephes' polynomial after Cody-Waite range reduction,
 * about 1 ulp on [-87, 88]; inputs are clamped to that range.  Usable by any
 * CPU kernel that wants a SIMD exp (softmax, timestep embedding). */
static inline float fmdb_vexpf(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    /* n = round(x / ln 2) with the 1.5*2^23 trick (vectorises without SSE4.1) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } s;
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

void fmdb_cpu_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                               int64_t n, int64_t c);
void fmdb_cpu_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias,
                                const float *dout, const float *pre, int64_t n, int64_t c);
void fmdb_ref_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                               int64_t n, int64_t c);
void fmdb_ref_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias,
                                const float *dout, const float *pre, int64_t n, int64_t c);
/* sinusoidal timestep embedding (slot timestep_embed): vectorised sin/cos,
 * frequencies computed once per call */
void fmdb_cpu_timestep_embed(fmd_backend *be, float *out, const float *t, int64_t n, int64_t dim,
                             float max_period, float time_scale, int deriv);
#endif
