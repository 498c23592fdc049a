/* cuda_backend.cu - the CUDA backend of libfmd, built as the plugin
 * libfmd-cuda.so and loaded with dlopen by backends/backend.c.
 *
 * Every op of backends/backend.h runs on one CUDA stream per backend:
 * matrix products through cuBLAS (row-major calls mapped onto column-major
 * cuBLAS by computing C^T = op(B)^T op(A)^T), everything else as kernels with
 * grid-stride loops (elementwise), one block per row (layer norm, softmax,
 * row dot; warp-shuffle reductions), column tiles (bias and gate gradients,
 * deterministic: no atomics anywhere).  Random numbers come from
 * util/philox.h compiled for the device, so fill_normal gives the CPU's
 * numbers (to the last ulp of the math library).
 *
 * Errors: every CUDA and cuBLAS status is checked; the first failure is
 * recorded on the backend (fmdb_fail, with the CUDA message) and later ops
 * become no-ops until the backend is destroyed.  Nothing aborts.
 *
 * Memory: cudaMalloc only (never managed memory).  Host-visible results
 * (download, reduce, nonfinite) synchronise the stream.
 *
 * Environment: FMD_CUDA_DEVICE=<ordinal> picks the GPU (default 0);
 * FMD_CUDA_TF32=1 lets cuBLAS use TF32 tensor cores for float GEMMs (inputs
 * rounded to 10 mantissa bits; 2.4x on a SiT-B/2 distillation step on an
 * H200, docs/benchmarks.md); off by default so results match the CPU. */
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "util/philox.h"

#define FMDC_EXPORT extern "C" __attribute__((visibility("default")))

/* Kernel launches go through this macro so that tests/plugins/cuda_emu.h
 * can run the same file on the host (the emulated plugin of the CPU-only
 * tests). */
#ifndef KLAUNCH
#define KLAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif

namespace {

/* Blocks of the two-stage reduction (reduce, nonfinite). */
const int RED_BLOCKS = 1024;
const int RED_THREADS = 256;
/* Scratch for the partial sums of split column reductions (16 MiB). */
const int64_t SCRATCH_FLOATS = (int64_t)1 << 22;

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    double *red_part;   /* device: RED_BLOCKS partial results + 1 final      */
    int *flag;          /* device: one int for nonfinite                     */
    float *scratch;     /* device: SCRATCH_FLOATS for split column sums      */
};

inline cuda_ctx *CTX(fmd_backend *be) { return (cuda_ctx *)be->ctx; }

fmd_status cuda_status_of(cudaError_t e)
{
    switch (e) {
    case cudaErrorMemoryAllocation: return FMD_ERR_OOM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDevice: return FMD_ERR_BACKEND_UNAVAILABLE;
    default: return FMD_ERR_INTERNAL;
    }
}

/* Record a CUDA error (sticky); returns 1 when e is an error. */
int cu_fail(fmd_backend *be, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 0;
    fmdb_fail(be, cuda_status_of(e), "cuda: %s: %s (%s)", what, cudaGetErrorString(e),
              cudaGetErrorName(e));
    return 1;
}

int blas_fail(fmd_backend *be, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    fmdb_fail(be, s == CUBLAS_STATUS_ALLOC_FAILED ? FMD_ERR_OOM : FMD_ERR_INTERNAL,
              "cuda: %s: %s (%s)", what, cublasGetStatusString(s), cublasGetStatusName(s));
    return 1;
}

/* After a kernel launch: launch-configuration errors and earlier
 * asynchronous faults surface here. */
#define LAUNCHED(be, what) cu_fail((be), cudaGetLastError(), (what))
/* Ops do nothing once the backend has failed (errors are sticky). */
#define LIVE(be) if (!fmdb_ok(be)) return

/* ---- launch geometry ------------------------------------------------------ */

const int EW_THREADS = 256;

/* Blocks for a grid-stride loop over n elements. */
inline unsigned ew_blocks(int64_t n)
{
    int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
    if (b > 65536) b = 65536;
    if (b < 1) b = 1;
    return (unsigned)b;
}

/* Threads for one block per row of c elements: a power of two in [32, 512]. */
inline int row_threads(int64_t c)
{
    int t = 32;
    while (t < 512 && t < c) t <<= 1;
    return t;
}

/* Rows are launched in chunks of at most this many blocks (grid.x limit is
 * 2^31-1, chunks keep the offsets simple and int64-safe). */
const int64_t ROW_CHUNK = 1 << 30;

#define GRID_STRIDE(i, n)                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);           \
         i += (int64_t)blockDim.x * gridDim.x)
/* The same with index type I: kernels whose index arithmetic divides are
 * instantiated for uint32_t (fast division) when the sizes allow it. */
#define GRID_STRIDE_T(I, i, n)                                                          \
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)(n);                    \
         i += (I)blockDim.x * gridDim.x)

/* ---- block reductions ------------------------------------------------------ */

template <typename T>
__device__ __forceinline__ T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets the result.  sh holds 32 values of T. */
template <typename T>
__device__ T block_sum(T v, T *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh may still be read from a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    T r = lane < nw ? sh[lane] : (T)0;
    return warp_sum(r);
}

__device__ float block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(r);
}

/* ---- kernels: elementwise ---------------------------------------------------- */

__global__ void k_fill_scale2d(float *c, int64_t ldc, int64_t m, int64_t n, float beta)
{
    GRID_STRIDE(i, m * n) {
        int64_t r = i / n, j = i - r * n;
        float *p = c + r * ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

template <typename I>
__global__ void k_bias_add(float *out, const float *x, const float *bias, int64_t n, int64_t c)
{
    GRID_STRIDE_T(I, i, n * c) out[i] = x[i] + bias[i % (I)c];
}

template <typename I>
__global__ void k_bcast_mul(float *out, const float *x, const float *g, int64_t t, int64_t c,
                            int64_t total, float beta)
{
    GRID_STRIDE_T(I, i, total) {
        I j = i % (I)c, bi = i / (I)(t * c);
        float v = x[i] * g[bi * c + j];
        out[i] = beta == 0.0f ? v : beta * out[i] + v;
    }
}

__global__ void k_axpby(float *out, float alpha, const float *x, float beta, const float *y, int64_t n)
{
    if (beta == 0.0f) {
        GRID_STRIDE(i, n) out[i] = alpha * x[i];
    } else {
        GRID_STRIDE(i, n) out[i] = alpha * x[i] + beta * y[i];
    }
}

__global__ void k_affine(float *x, float alpha, float beta, int64_t n)
{
    GRID_STRIDE(i, n) x[i] = alpha * x[i] + beta;
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

__global__ void k_act_forward(int kind, float *out, const float *x, int64_t n)
{
    if (kind == FMDB_ACT_SILU) {
        GRID_STRIDE(i, n) {
            float y = x[i] / (1.0f + expf(-x[i]));
            out[i] = FMDB_FLUSH_SUBNORMAL(y);
        }
    } else {
        GRID_STRIDE(i, n) {
            float v = x[i];
            float y = 0.5f * v * (1.0f + tanhf(GELU_K * (v + GELU_C * v * v * v)));
            out[i] = FMDB_FLUSH_SUBNORMAL(y);
        }
    }
}

__global__ void k_act_backward(int kind, float *dx, const float *dout, const float *x, int64_t n,
                               float beta)
{
    GRID_STRIDE(i, n) {
        float v = x[i], g;
        if (kind == FMDB_ACT_SILU) {
            float s = 1.0f / (1.0f + expf(-v));
            g = s * (1.0f + v * (1.0f - s));
        } else {
            float th = tanhf(GELU_K * (v + GELU_C * v * v * v));
            g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
        }
        float d = dout[i] * g;
        float r = beta == 0.0f ? d : beta * dx[i] + d;
        dx[i] = FMDB_FLUSH_SUBNORMAL(r);
    }
}

/* pre += bias (bias may be NULL), out = f(pre); out may equal pre. */
__global__ void k_bias_act_forward(int kind, float *out, float *pre, const float *bias, int64_t n, int64_t c)
{
    GRID_STRIDE(i, n * c) {
        float v = pre[i];
        if (bias) {
            v += bias[i % c];
            pre[i] = v;
        }
        float y;
        if (kind == FMDB_ACT_SILU) y = v / (1.0f + expf(-v));
        else y = 0.5f * v * (1.0f + tanhf(GELU_K * (v + GELU_C * v * v * v)));
        out[i] = FMDB_FLUSH_SUBNORMAL(y);
    }
}

template <typename I>
__global__ void k_modulate_forward(float *out, const float *x, const float *shift, const float *scale,
                                   int64_t ld, int64_t t, int64_t c, int64_t total)
{
    GRID_STRIDE_T(I, i, total) {
        I j = i % (I)c, bi = i / (I)(t * c);
        out[i] = x[i] * (1.0f + scale[(int64_t)bi * ld + j]) + shift[(int64_t)bi * ld + j];
    }
}

template <typename I>
__global__ void k_modulate_dx(float *dx, const float *dout, const float *scale, int64_t ld, int64_t t,
                              int64_t c, int64_t total, float beta)
{
    GRID_STRIDE_T(I, i, total) {
        I j = i % (I)c, bi = i / (I)(t * c);
        float v = dout[i] * (1.0f + scale[(int64_t)bi * ld + j]);
        dx[i] = beta == 0.0f ? v : beta * dx[i] + v;
    }
}

__global__ void k_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                        float b2, float eps, float wd, float c1, float c2, float gs)
{
    GRID_STRIDE(i, n) {
        float gi = g[i] * gs;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * p[i]);
    }
}

__global__ void k_ema(float *e, const float *p, int64_t n, float decay)
{
    GRID_STRIDE(i, n) e[i] = decay * e[i] + (1.0f - decay) * p[i];
}

__global__ void k_fill_normal(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    GRID_STRIDE(i, n) out[i] = fmd_philox_normal_at(seed, stream, off + (uint64_t)i);
}

__global__ void k_fill_uniform(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    GRID_STRIDE(i, n) out[i] = fmd_philox_uniform_at(seed, stream, off + (uint64_t)i);
}

template <typename I>
__global__ void k_embed_forward(float *out, const float *table, const int32_t *idx, int64_t n, int64_t c)
{
    GRID_STRIDE_T(I, i, n * c) {
        I r = i / (I)c, j = i - r * (I)c;
        out[i] = table[(int64_t)idx[r] * c + j];
    }
}

/* One thread per column walks the rows in order: deterministic with
 * repeated indices (no atomics), and the batch is small. */
__global__ void k_embed_backward(float *dtable, const float *dout, const int32_t *idx, int64_t n, int64_t c)
{
    GRID_STRIDE(j, c) {
        for (int64_t r = 0; r < n; r++) dtable[(int64_t)idx[r] * c + j] += dout[r * c + j];
    }
}

__global__ void k_timestep_embed(float *out, const float *t, int64_t n, int64_t dim, int64_t half,
                                 float log_max_period, float time_scale, int deriv)
{
    int64_t w = half + (dim & 1);  /* work items per row: pairs + pad */
    GRID_STRIDE(i, n * w) {
        int64_t r = i / w, j = i - r * w;
        float *o = out + r * dim;
        if (j >= half) {
            o[dim - 1] = 0.0f;
            continue;
        }
        /* the frequency through a double exp rounded once: glibc's expf is
         * (nearly) correctly rounded, the device's expf is not, and t*1000
         * amplifies an ulp of f into visible differences from the CPU */
        float f = (float)exp((double)(-log_max_period * (float)j / (float)half));
        float a = t[r] * time_scale * f;
        if (deriv) {
            o[j] = -sinf(a) * time_scale * f;
            o[half + j] = cosf(a) * time_scale * f;
        } else {
            o[j] = cosf(a);
            o[half + j] = sinf(a);
        }
    }
}

/* permute and copy2d round beta*out and the sum separately (no FMA), as the
 * CPU does: they are data movement and must match it bit for bit. */
struct perm_args {
    int nd;
    int64_t odims[6];   /* output shape                                      */
    int64_t istride[6]; /* input stride of the input axis each output axis reads */
};

__global__ void k_permute(float *out, const float *in, perm_args pa, int64_t total, float beta)
{
    GRID_STRIDE(o, total) {
        int64_t rem = o, src = 0;
        for (int d = pa.nd - 1; d >= 0; d--) {
            int64_t cd = rem % pa.odims[d];
            rem /= pa.odims[d];
            src += cd * pa.istride[d];
        }
        float v = in[src];
        out[o] = beta == 0.0f ? v : __fadd_rn(__fmul_rn(beta, out[o]), v);
    }
}

/* 32-bit index variant for the common case (faster division). */
__global__ void k_permute32(float *out, const float *in, perm_args pa, uint32_t total, float beta)
{
    for (uint32_t o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += blockDim.x * gridDim.x) {
        uint32_t rem = o, src = 0;
        for (int d = pa.nd - 1; d >= 0; d--) {
            uint32_t od = (uint32_t)pa.odims[d];
            uint32_t cd = rem % od;
            rem /= od;
            src += cd * (uint32_t)pa.istride[d];
        }
        float v = in[src];
        out[o] = beta == 0.0f ? v : __fadd_rn(__fmul_rn(beta, out[o]), v);
    }
}

template <typename I>
__global__ void k_copy2d(float *out, int64_t ldo, const float *in, int64_t ldi, int64_t rows, int64_t cols,
                         float beta)
{
    GRID_STRIDE_T(I, i, rows * cols) {
        I r = i / (I)cols, j = i - r * (I)cols;
        float v = in[(int64_t)r * ldi + j];
        float *o = out + (int64_t)r * ldo + j;
        *o = beta == 0.0f ? v : __fadd_rn(__fmul_rn(beta, *o), v);
    }
}

__global__ void k_nonfinite(const float *x, int64_t n, int *flag)
{
    int bad = 0;
    GRID_STRIDE(i, n) bad |= !isfinite(x[i]);
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

/* ---- kernels: reductions ---------------------------------------------------- */

/* Stage 1 of reduce: each block writes one double partial. */
__global__ void k_reduce_part(int kind, const float *x, int64_t n, double *part)
{
    __shared__ double sh[32];
    double acc = 0.0;
    if (kind == FMDB_RED_MAXABS) {
        GRID_STRIDE(i, n) {
            double a = fabs((double)x[i]);
            if (a != a) a = INFINITY; /* NaN is reported as infinite (as the CPU) */
            acc = a > acc ? a : acc;
        }
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        for (int o = 16; o > 0; o >>= 1) acc = fmax(acc, __shfl_xor_sync(0xffffffffu, acc, o));
        if (lane == 0) sh[w] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
            double m = 0.0;
            for (int k = 0; k < (int)(blockDim.x >> 5); k++) m = fmax(m, sh[k]);
            part[blockIdx.x] = m;
        }
        return;
    }
    if (kind == FMDB_RED_SUM) {
        GRID_STRIDE(i, n) acc += (double)x[i];
    } else {
        GRID_STRIDE(i, n) acc += (double)x[i] * (double)x[i];
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

/* Stage 2: one block combines the partials into part[nparts]. */
__global__ void k_reduce_final(int kind, double *part, int nparts)
{
    __shared__ double sh[32];
    double acc = 0.0;
    if (kind == FMDB_RED_MAXABS) {
        for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc = fmax(acc, part[i]);
        for (int o = 16; o > 0; o >>= 1) acc = fmax(acc, __shfl_xor_sync(0xffffffffu, acc, o));
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
        if (lane == 0) sh[w] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
            double m = 0.0;
            for (int k = 0; k < (int)(blockDim.x >> 5); k++) m = fmax(m, sh[k]);
            part[nparts] = m;
        }
        return;
    }
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += part[i];
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[nparts] = acc;
}

/* Column sums, deterministic (fixed order, no atomics): for each b and
 * column j, the sum over rows r < t of
 *   MODE 0: a(b, r, j)      MODE 1: a(b, r, j) * x(b, r, j)
 *   MODE 2: a(r, j) * (x(r, j) - mean(r)) * rstd(r)   (layer-norm dw, b = 1)
 * Block (32, 8) covers 32 columns of one b and one split of the rows
 * (blockIdx.z).  With part == NULL (one split) the block writes
 * out(b, j) = beta*out + sum (row stride ld_out; beta == 0 never reads out);
 * else it writes part[(b*splits + split)*c + j] and k_col_finish adds the
 * splits in order. */
template <int MODE>
__global__ void k_col_reduce(float *out, int64_t ld_out, float *part, const float *a, const float *x,
                             const float *mean, const float *rstd, int64_t t, int64_t c,
                             int64_t rows_per_split, float beta)
{
    __shared__ float sh[8][33];
    int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t bi = blockIdx.y, split = blockIdx.z;
    int64_t r0 = split * rows_per_split, r1 = r0 + rows_per_split < t ? r0 + rows_per_split : t;
    const float *ab = a + bi * t * c;
    const float *xb = MODE ? x + bi * t * c : NULL;
    float acc = 0.0f;
    if (j < c) {
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            if (MODE == 0) acc += ab[r * c + j];
            else if (MODE == 1) acc += ab[r * c + j] * xb[r * c + j];
            else acc += ab[r * c + j] * (xb[r * c + j] - mean[r]) * rstd[r];
        }
    }
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        float sum = 0.0f;
        for (int k = 0; k < 8; k++) sum += sh[k][threadIdx.x];
        if (part) {
            part[(bi * gridDim.z + split) * c + j] = sum;
        } else {
            float *o = out + bi * ld_out + j;
            *o = beta == 0.0f ? sum : beta * *o + sum;
        }
    }
}

__global__ void k_col_finish(float *out, int64_t ld_out, const float *part, int splits, int64_t b, int64_t c,
                             float beta)
{
    GRID_STRIDE(i, b * c) {
        int64_t bi = i / c, j = i - bi * c;
        const float *p = part + bi * splits * c + j;
        float sum = 0.0f;
        for (int s = 0; s < splits; s++) sum += p[(int64_t)s * c];
        float *o = out + bi * ld_out + j;
        *o = beta == 0.0f ? sum : beta * *o + sum;
    }
}

/* ---- kernels: one block per row ------------------------------------------------ */

__global__ void k_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                                    const float *b, int64_t row0, int64_t c, float eps)
{
    __shared__ float sh[32];
    int64_t r = row0 + blockIdx.x;
    const float *xi = x + r * c;
    float *o = out + r * c;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += xi[j];
    float mu = block_sum(s, sh) / (float)c;
    float v = 0.0f;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
        float d = xi[j] - mu;
        v += d * d;
    }
    float rs = 1.0f / sqrtf(block_sum(v, sh) / (float)c + eps);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
        float y = (xi[j] - mu) * rs;
        if (w) y *= w[j];
        if (b) y += b[j];
        o[j] = y;
    }
    if (threadIdx.x == 0) {
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
    }
}

__global__ void k_layernorm_dx(float *dx, const float *dout, const float *x, const float *w,
                               const float *mean, const float *rstd, int64_t row0, int64_t c, float beta)
{
    __shared__ float sh[32];
    int64_t r = row0 + blockIdx.x;
    const float *xi = x + r * c, *gi = dout + r * c;
    float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
        float g = w ? gi[j] * w[j] : gi[j];
        sg += g;
        sgx += g * (xi[j] - mu) * rs;
    }
    sg = block_sum(sg, sh) / (float)c;
    sgx = block_sum(sgx, sh) / (float)c;
    float *d = dx + r * c;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
        float g = w ? gi[j] * w[j] : gi[j];
        float v = rs * (g - sg - (xi[j] - mu) * rs * sgx);
        d[j] = beta == 0.0f ? v : beta * d[j] + v;
    }
}

__global__ void k_softmax_forward(float *out, const float *x, int64_t row0, int64_t c, float scale)
{
    __shared__ float sh[32];
    int64_t r = row0 + blockIdx.x;
    const float *xi = x + r * c;
    float *o = out + r * c;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) mx = fmaxf(mx, scale * xi[j]);
    mx = block_max(mx, sh);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += expf(scale * xi[j] - mx);
    float inv = 1.0f / block_sum(s, sh);
    /* each element is read and then written by the same thread: out == x is safe */
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) o[j] = expf(scale * xi[j] - mx) * inv;
}

__global__ void k_softmax_backward(float *dx, const float *dout, const float *y, int64_t row0, int64_t c,
                                   float scale)
{
    __shared__ float sh[32];
    int64_t r = row0 + blockIdx.x;
    const float *yi = y + r * c, *gi = dout + r * c;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += gi[j] * yi[j];
    s = block_sum(s, sh);
    float *d = dx + r * c;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) d[j] = scale * yi[j] * (gi[j] - s);
}

/* Row dot with one warp per row (rows are usually short: the data dim). */
__global__ void k_row_dot(float *out, const float *x, const float *y, int64_t n, int64_t c, float beta)
{
    int lane = threadIdx.x & 31;
    int64_t warps = ((int64_t)blockDim.x * gridDim.x) >> 5;
    for (int64_t r = (((int64_t)blockIdx.x * blockDim.x) + threadIdx.x) >> 5; r < n; r += warps) {
        const float *xi = x + r * c, *yi = y + r * c;
        float s = 0.0f;
        for (int64_t j = lane; j < c; j += 32) s += xi[j] * yi[j];
        s = warp_sum(s);
        if (lane == 0) out[r] = beta == 0.0f ? s : beta * out[r] + s;
    }
}

/* ---- host side: lifetime and memory ---------------------------------------------- */

void cu_destroy(fmd_backend *be)
{
    cuda_ctx *c = CTX(be);
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->red_part) cudaFree(c->red_part);
    if (c->flag) cudaFree(c->flag);
    if (c->scratch) cudaFree(c->scratch);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c); /* the plugin cannot reach libfmd's allocator hooks */
    be->ctx = NULL;
}

void *cu_alloc(fmd_backend *be, size_t bytes)
{
    if (!fmdb_ok(be)) return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not a sticky context error */
        fmdb_alloc_failed(be, "cuda: cudaMalloc of %zu bytes failed: %s", bytes,
                          cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

void cu_free(fmd_backend *be, void *p)
{
    if (!p) return;
    /* work queued on the stream may still use p */
    cu_fail(be, cudaStreamSynchronize(CTX(be)->stream), "cudaStreamSynchronize (free)");
    cu_fail(be, cudaFree(p), "cudaFree");
}

void cu_memset0(fmd_backend *be, void *p, size_t bytes)
{
    LIVE(be);
    if (!bytes) return;
    cu_fail(be, cudaMemsetAsync(p, 0, bytes, CTX(be)->stream), "cudaMemsetAsync");
}

void cu_copy(fmd_backend *be, void *dst, const void *src, size_t bytes)
{
    LIVE(be);
    if (!bytes || dst == src) return;
    cu_fail(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, CTX(be)->stream),
            "cudaMemcpyAsync (device to device)");
}

/* From pageable host memory the source is staged before cudaMemcpyAsync
 * returns, so the caller may reuse it at once. */
void cu_upload(fmd_backend *be, void *dst, const void *src, size_t bytes)
{
    LIVE(be);
    if (!bytes) return;
    cu_fail(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, CTX(be)->stream),
            "cudaMemcpyAsync (upload)");
}

void cu_download(fmd_backend *be, void *dst, const void *src, size_t bytes)
{
    LIVE(be);
    if (!bytes) return;
    if (cu_fail(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, CTX(be)->stream),
                "cudaMemcpyAsync (download)"))
        return;
    cu_fail(be, cudaStreamSynchronize(CTX(be)->stream), "cudaStreamSynchronize (download)");
}

fmd_status cu_sync(fmd_backend *be)
{
    if (fmdb_ok(be) && be->ctx) {
        if (!cu_fail(be, cudaStreamSynchronize(CTX(be)->stream), "cudaStreamSynchronize"))
            cu_fail(be, cudaGetLastError(), "asynchronous error");
    }
    return be->status;
}

/* ---- host side: matrix products ------------------------------------------------- */

int fits_int(int64_t v) { return v >= 0 && v <= 2147483647; }

/* C = beta*C for the k == 0 products (BLAS would read A and B). */
void scale_c(fmd_backend *be, float *c, int64_t ldc, int64_t m, int64_t n, float beta)
{
    if (beta == 1.0f) return;
    KLAUNCH(k_fill_scale2d, ew_blocks(m * n), EW_THREADS, CTX(be)->stream)(c, ldc, m, n, beta);
    LAUNCHED(be, "gemm (k = 0) kernel launch");
}

/* Row-major C(m,n) = op(A) op(B) is column-major C^T(n,m) = op(B)^T op(A)^T;
 * a row-major matrix read column-major is its transpose, so B goes first with
 * its own flag and the dimensions swap. */
void cu_gemm_batched(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb, int64_t sb,
                     float beta, float *c, int64_t ldc, int64_t sc, int64_t batch)
{
    LIVE(be);
    if (m == 0 || n == 0 || batch == 0) return;
    if (k == 0) {
        for (int64_t i = 0; i < batch && fmdb_ok(be); i++) scale_c(be, c + i * sc, ldc, m, n, beta);
        return;
    }
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) ||
        !fits_int(ldc) || !fits_int(batch)) {
        fmdb_fail(be, FMD_ERR_UNSUPPORTED, "cuda: gemm dimensions exceed 32-bit cuBLAS limits "
                  "(m=%lld n=%lld k=%lld batch=%lld)", (long long)m, (long long)n, (long long)k,
                  (long long)batch);
        return;
    }
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s;
    if (batch == 1)
        s = cublasSgemm(CTX(be)->blas, opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a,
                        (int)lda, &beta, c, (int)ldc);
    else
        s = cublasSgemmStridedBatched(CTX(be)->blas, opb, opa, (int)n, (int)m, (int)k, &alpha, b,
                                      (int)ldb, (long long)sb, a, (int)lda, (long long)sa, &beta, c,
                                      (int)ldc, (long long)sc, (int)batch);
    blas_fail(be, s, batch == 1 ? "cublasSgemm" : "cublasSgemmStridedBatched");
}

void cu_gemm(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cu_gemm_batched(be, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

/* ---- host side: everything else ------------------------------------------------------ */

#define EW(be, n, kernel, ...)                                                      \
    do {                                                                            \
        LIVE(be);                                                                   \
        if ((n) <= 0) return;                                                       \
        KLAUNCH(kernel, ew_blocks(n), EW_THREADS, CTX(be)->stream)(__VA_ARGS__);      \
        LAUNCHED(be, #kernel " launch");                                           \
    } while (0)

/* EW for the kernels templated on the index type: 32-bit indices when the
 * element count allows (all offsets they form stay below it or use int64). */
#define EW_I(be, n, kernel, ...)                                                    \
    do {                                                                            \
        LIVE(be);                                                                   \
        if ((n) <= 0) return;                                                       \
        if ((n) < ((int64_t)1 << 31))                                               \
            KLAUNCH(kernel<uint32_t>, ew_blocks(n), EW_THREADS, CTX(be)->stream)(__VA_ARGS__); \
        else                                                                        \
            KLAUNCH(kernel<int64_t>, ew_blocks(n), EW_THREADS, CTX(be)->stream)(__VA_ARGS__);  \
        LAUNCHED(be, #kernel " launch");                                           \
    } while (0)

/* out(b rows of stride ld_out, c) = beta*out + column sums over t rows (see
 * k_col_reduce for the modes).  Long columns are split over several blocks
 * whose partial sums go through the scratch buffer (allocated at open), so a
 * bias gradient over 65536 tokens keeps the whole GPU busy. */
void col_reduce(fmd_backend *be, int mode, float *out, int64_t ld_out, const float *a, const float *x,
                const float *mean, const float *rstd, int64_t b, int64_t t, int64_t c, float beta)
{
    if (!fmdb_ok(be) || b <= 0 || c <= 0) return;
    cuda_ctx *cx = CTX(be);
    if (t <= 0) { /* empty sums: out = beta*out */
        for (int64_t b0 = 0; b0 < b && fmdb_ok(be); b0++) scale_c(be, out + b0 * ld_out, 0, 1, c, beta);
        return;
    }
    for (int64_t b0 = 0; b0 < b && fmdb_ok(be); b0 += 65535) {
        int64_t nb = b - b0 < 65535 ? b - b0 : 65535;
        int64_t splits = (t + 255) / 256;          /* at least 256 rows per split */
        if (splits > 256) splits = 256;
        while (splits > 1 && splits * nb * c > SCRATCH_FLOATS) splits /= 2;
        if (splits < 2) splits = 1;
        int64_t rps = (t + splits - 1) / splits;
        float *part = splits > 1 ? cx->scratch : NULL;
        dim3 grid((unsigned)((c + 31) / 32), (unsigned)nb, (unsigned)splits), block(32, 8);
        float *o = out + b0 * ld_out;
        const float *ab = a + b0 * t * c, *xb = x ? x + b0 * t * c : NULL;
        if (mode == 0)
            KLAUNCH(k_col_reduce<0>, grid, block, cx->stream)(o, ld_out, part, ab, xb, mean, rstd, t, c, rps, beta);
        else if (mode == 1)
            KLAUNCH(k_col_reduce<1>, grid, block, cx->stream)(o, ld_out, part, ab, xb, mean, rstd, t, c, rps, beta);
        else
            KLAUNCH(k_col_reduce<2>, grid, block, cx->stream)(o, ld_out, part, ab, xb, mean, rstd, t, c, rps, beta);
        if (LAUNCHED(be, "column reduction launch")) return;
        if (part) {
            KLAUNCH(k_col_finish, ew_blocks(nb * c), EW_THREADS, cx->stream)(o, ld_out, part, (int)splits, nb, c, beta);
            LAUNCHED(be, "column reduction launch");
        }
    }
}

void cu_bias_add(fmd_backend *be, float *out, const float *x, const float *bias, int64_t n, int64_t c)
{
    EW_I(be, n * c, k_bias_add, out, x, bias, n, c);
}

void cu_bias_grad(fmd_backend *be, float *dbias, const float *dout, int64_t n, int64_t c)
{
    LIVE(be);
    if (n <= 0) return;
    col_reduce(be, 0, dbias, 0, dout, NULL, NULL, NULL, 1, n, c, 1.0f);
}

void cu_bcast_mul(fmd_backend *be, float *out, const float *x, const float *g, int64_t b, int64_t t,
                  int64_t c, float beta)
{
    EW_I(be, b * t * c, k_bcast_mul, out, x, g, t, c, b * t * c, beta);
}

void cu_bcast_mul_reduce(fmd_backend *be, float *dg, const float *dout, const float *x, int64_t b,
                         int64_t t, int64_t c, float beta)
{
    col_reduce(be, 1, dg, c, dout, x, NULL, NULL, b, t, c, beta);
}

void cu_axpby(fmd_backend *be, float *out, float alpha, const float *x, float beta, const float *y, int64_t n)
{
    EW(be, n, k_axpby, out, alpha, x, beta, y, n);
}

void cu_affine(fmd_backend *be, float *x, float alpha, float beta, int64_t n)
{
    EW(be, n, k_affine, x, alpha, beta, n);
}

void cu_act_forward(fmd_backend *be, int kind, float *out, const float *x, int64_t n)
{
    EW(be, n, k_act_forward, kind, out, x, n);
}

void cu_act_backward(fmd_backend *be, int kind, float *dx, const float *dout, const float *x, int64_t n,
                     float beta)
{
    EW(be, n, k_act_backward, kind, dx, dout, x, n, beta);
}

void cu_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias, int64_t n,
                         int64_t c)
{
    EW(be, n * c, k_bias_act_forward, kind, out, pre, bias, n, c);
}

/* dpre = dout * f'(pre) (dpre may equal dout), then dbias += column sums of dpre */
void cu_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias, const float *dout,
                          const float *pre, int64_t n, int64_t c)
{
    LIVE(be);
    if (n <= 0 || c <= 0) return;
    KLAUNCH(k_act_backward, ew_blocks(n * c), EW_THREADS, CTX(be)->stream)(kind, dpre, dout, pre, n * c, 0.0f);
    if (LAUNCHED(be, "act_bias_backward launch")) return;
    if (dbias) col_reduce(be, 0, dbias, 0, dpre, NULL, NULL, NULL, 1, n, c, 1.0f);
}

void cu_layernorm_forward(fmd_backend *be, float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t n, int64_t c, float eps)
{
    LIVE(be);
    if (n <= 0 || c <= 0) return;
    int th = row_threads(c);
    for (int64_t r0 = 0; r0 < n && fmdb_ok(be); r0 += ROW_CHUNK) {
        int64_t nr = n - r0 < ROW_CHUNK ? n - r0 : ROW_CHUNK;
        KLAUNCH(k_layernorm_forward, (unsigned)nr, th, CTX(be)->stream)(out, mean, rstd, x, w, b, r0, c, eps);
        LAUNCHED(be, "layernorm_forward launch");
    }
}

void cu_layernorm_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dout,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t n, int64_t c, float beta)
{
    LIVE(be);
    if (n <= 0 || c <= 0) return;
    if (!mean || !rstd) {
        fmdb_fail(be, FMD_ERR_INVALID_ARG, "cuda: layernorm_backward needs the saved mean and rstd");
        return;
    }
    /* the parameter gradients read dout first: dx may alias it */
    if (db) col_reduce(be, 0, db, 0, dout, NULL, NULL, NULL, 1, n, c, 1.0f);
    if (dw) col_reduce(be, 2, dw, 0, dout, x, mean, rstd, 1, n, c, 1.0f);
    if (dx) {
        int th = row_threads(c);
        for (int64_t r0 = 0; r0 < n && fmdb_ok(be); r0 += ROW_CHUNK) {
            int64_t nr = n - r0 < ROW_CHUNK ? n - r0 : ROW_CHUNK;
            KLAUNCH(k_layernorm_dx, (unsigned)nr, th, CTX(be)->stream)(dx, dout, x, w, mean, rstd, r0, c, beta);
            LAUNCHED(be, "layernorm_backward launch");
        }
    }
}

void cu_softmax_forward(fmd_backend *be, float *out, const float *x, int64_t n, int64_t c, float scale)
{
    LIVE(be);
    if (n <= 0 || c <= 0) return;
    int th = row_threads(c);
    for (int64_t r0 = 0; r0 < n && fmdb_ok(be); r0 += ROW_CHUNK) {
        int64_t nr = n - r0 < ROW_CHUNK ? n - r0 : ROW_CHUNK;
        KLAUNCH(k_softmax_forward, (unsigned)nr, th, CTX(be)->stream)(out, x, r0, c, scale);
        LAUNCHED(be, "softmax_forward launch");
    }
}

void cu_softmax_backward(fmd_backend *be, float *dx, const float *dout, const float *y, int64_t n, int64_t c,
                         float scale)
{
    LIVE(be);
    if (n <= 0 || c <= 0) return;
    int th = row_threads(c);
    for (int64_t r0 = 0; r0 < n && fmdb_ok(be); r0 += ROW_CHUNK) {
        int64_t nr = n - r0 < ROW_CHUNK ? n - r0 : ROW_CHUNK;
        KLAUNCH(k_softmax_backward, (unsigned)nr, th, CTX(be)->stream)(dx, dout, y, r0, c, scale);
        LAUNCHED(be, "softmax_backward launch");
    }
}

void cu_modulate_forward(fmd_backend *be, float *out, const float *x, const float *shift, const float *scale,
                         int64_t ld, int64_t b, int64_t t, int64_t c)
{
    EW_I(be, b * t * c, k_modulate_forward, out, x, shift, scale, ld, t, c, b * t * c);
}

void cu_modulate_backward(fmd_backend *be, float *dx, float *dshift, float *dscale, const float *dout,
                          const float *x, const float *scale, int64_t ld, int64_t b, int64_t t, int64_t c,
                          float beta)
{
    LIVE(be);
    if (b <= 0 || c <= 0) return;
    /* reductions first: dx may alias dout */
    if (dshift) col_reduce(be, 0, dshift, ld, dout, NULL, NULL, NULL, b, t, c, 0.0f);
    if (dscale) col_reduce(be, 1, dscale, ld, dout, x, NULL, NULL, b, t, c, 0.0f);
    if (dx && t > 0) EW_I(be, b * t * c, k_modulate_dx, dx, dout, scale, ld, t, c, b * t * c, beta);
}

void cu_reduce(fmd_backend *be, int kind, const float *x, int64_t n, double *host_out)
{
    *host_out = 0.0;
    LIVE(be);
    if (n <= 0) return;
    cuda_ctx *cx = CTX(be);
    int64_t nb64 = (n + RED_THREADS - 1) / RED_THREADS;
    int nb = nb64 < RED_BLOCKS ? (int)nb64 : RED_BLOCKS;
    KLAUNCH(k_reduce_part, nb, RED_THREADS, cx->stream)(kind, x, n, cx->red_part);
    if (LAUNCHED(be, "reduce launch")) return;
    KLAUNCH(k_reduce_final, 1, RED_THREADS, cx->stream)(kind, cx->red_part, nb);
    if (LAUNCHED(be, "reduce launch")) return;
    double r = 0.0;
    cu_download(be, &r, cx->red_part + nb, sizeof r);
    if (fmdb_ok(be)) *host_out = r;
}

void cu_row_dot(fmd_backend *be, float *out, const float *x, const float *y, int64_t n, int64_t c, float beta)
{
    LIVE(be);
    if (n <= 0) return;
    int64_t blocks = (n * 32 + EW_THREADS - 1) / EW_THREADS;
    if (blocks > 65536) blocks = 65536;
    KLAUNCH(k_row_dot, (unsigned)blocks, EW_THREADS, CTX(be)->stream)(out, x, y, n, c, beta);
    LAUNCHED(be, "row_dot launch");
}

void cu_adamw(fmd_backend *be, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
              float b2, float eps, float wd, int64_t step, float gs)
{
    float c1 = 1.0f / (1.0f - powf(b1, (float)step));
    float c2 = 1.0f / (1.0f - powf(b2, (float)step));
    EW(be, n, k_adamw, p, g, m, v, n, lr, b1, b2, eps, wd, c1, c2, gs);
}

void cu_ema(fmd_backend *be, float *e, const float *p, int64_t n, float decay)
{
    EW(be, n, k_ema, e, p, n, decay);
}

void cu_fill_normal(fmd_backend *be, float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    EW(be, n, k_fill_normal, out, n, seed, stream, off);
}

void cu_fill_uniform(fmd_backend *be, float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    EW(be, n, k_fill_uniform, out, n, seed, stream, off);
}

void cu_embed_forward(fmd_backend *be, float *out, const float *table, const int32_t *idx, int64_t n, int64_t c)
{
    EW_I(be, n * c, k_embed_forward, out, table, idx, n, c);
}

void cu_embed_backward(fmd_backend *be, float *dtable, const float *dout, const int32_t *idx, int64_t n,
                       int64_t c)
{
    if (n <= 0) return;
    EW(be, c, k_embed_backward, dtable, dout, idx, n, c);
}

void cu_timestep_embed(fmd_backend *be, float *out, const float *t, int64_t n, int64_t dim, float max_period,
                       float time_scale, int deriv)
{
    int64_t half = dim / 2;
    EW(be, n * (half + (dim & 1)), k_timestep_embed, out, t, n, dim, half, logf(max_period), time_scale,
       deriv);
}

void cu_permute(fmd_backend *be, float *out, const float *in, int nd, const int64_t *dims, const int *perm,
                float beta)
{
    LIVE(be);
    if (nd < 1 || nd > 6) {
        fmdb_fail(be, FMD_ERR_INVALID_ARG, "cuda: permute of %d dimensions (1..6 supported)", nd);
        return;
    }
    perm_args pa;
    memset(&pa, 0, sizeof pa);
    pa.nd = nd;
    int64_t istr[6], s = 1, total = 1;
    for (int d = nd - 1; d >= 0; d--) { istr[d] = s; s *= dims[d]; }
    total = s;
    int64_t maxoff = 0;
    for (int d = 0; d < nd; d++) {
        pa.odims[d] = dims[perm[d]];
        pa.istride[d] = istr[perm[d]];
        maxoff += (dims[d] > 0 ? dims[d] - 1 : 0) * istr[d];
    }
    if (total <= 0) return;
    if (total < 2147483647 && maxoff < 2147483647)
        EW(be, total, k_permute32, out, in, pa, (uint32_t)total, beta);
    else
        EW(be, total, k_permute, out, in, pa, total, beta);
}

void cu_copy2d(fmd_backend *be, float *out, int64_t ldo, const float *in, int64_t ldi, int64_t rows,
               int64_t cols, float beta)
{
    EW_I(be, rows * cols, k_copy2d, out, ldo, in, ldi, rows, cols, beta);
}

/* A failed backend answers 0: the caller's sync reports the real error. */
int cu_nonfinite(fmd_backend *be, const float *x, int64_t n)
{
    if (!fmdb_ok(be) || n <= 0) return 0;
    cuda_ctx *cx = CTX(be);
    if (cu_fail(be, cudaMemsetAsync(cx->flag, 0, sizeof(int), cx->stream), "cudaMemsetAsync")) return 0;
    KLAUNCH(k_nonfinite, ew_blocks(n), EW_THREADS, cx->stream)(x, n, cx->flag);
    if (LAUNCHED(be, "nonfinite launch")) return 0;
    int flag = 0;
    cu_download(be, &flag, cx->flag, sizeof flag);
    return fmdb_ok(be) ? flag : 0;
}

fmd_backend_ops make_ops()
{
    fmd_backend_ops o;
    memset(&o, 0, sizeof o);
    o.abi_version = FMDB_ABI_VERSION;
    o.struct_size = (uint32_t)sizeof(fmd_backend_ops);
    o.destroy = cu_destroy;
    o.alloc = cu_alloc;
    o.free = cu_free;
    o.memset0 = cu_memset0;
    o.copy = cu_copy;
    o.upload = cu_upload;
    o.download = cu_download;
    o.sync = cu_sync;
    o.gemm = cu_gemm;
    o.gemm_batched = cu_gemm_batched;
    o.bias_add = cu_bias_add;
    o.bias_grad = cu_bias_grad;
    o.bcast_mul = cu_bcast_mul;
    o.bcast_mul_reduce = cu_bcast_mul_reduce;
    o.axpby = cu_axpby;
    o.affine = cu_affine;
    o.act_forward = cu_act_forward;
    o.act_backward = cu_act_backward;
    o.layernorm_forward = cu_layernorm_forward;
    o.layernorm_backward = cu_layernorm_backward;
    o.softmax_forward = cu_softmax_forward;
    o.softmax_backward = cu_softmax_backward;
    o.modulate_forward = cu_modulate_forward;
    o.modulate_backward = cu_modulate_backward;
    o.reduce = cu_reduce;
    o.row_dot = cu_row_dot;
    o.adamw = cu_adamw;
    o.ema = cu_ema;
    o.fill_normal = cu_fill_normal;
    o.fill_uniform = cu_fill_uniform;
    o.embed_forward = cu_embed_forward;
    o.embed_backward = cu_embed_backward;
    o.timestep_embed = cu_timestep_embed;
    o.permute = cu_permute;
    o.copy2d = cu_copy2d;
    o.nonfinite = cu_nonfinite;
    o.bias_act_forward = cu_bias_act_forward;
    o.act_bias_backward = cu_act_bias_backward;
    return o;
}

const fmd_backend_ops cuda_ops = make_ops();

/* Open failure: clean up, write the message, return st. */
fmd_status open_fail(fmd_backend *be, cuda_ctx *c, fmd_status st, const char *fmt, const char *what,
                     const char *msg)
{
    if (c) {
        be->ctx = c;
        cu_destroy(be);
    }
    be->ctx = NULL;
    be->ops = NULL;
    snprintf(be->errmsg, sizeof be->errmsg, fmt, what, msg);
    return st;
}

} /* namespace */

/* The plugin's one exported symbol (see backend.h). */
FMDC_EXPORT fmd_status fmd_backend_plugin_open(uint32_t abi, fmd_backend *be)
{
    if (!be) return FMD_ERR_INVALID_ARG;
    if (abi != FMDB_ABI_VERSION) {
        snprintf(be->errmsg, sizeof be->errmsg,
                 "plugin libfmd-cuda.so: backend ABI %u requested, this plugin implements ABI %u", abi,
                 FMDB_ABI_VERSION);
        return FMD_ERR_VERSION;
    }
    int dev = 0;
    const char *ds = getenv("FMD_CUDA_DEVICE");
    if (ds && *ds) {
        char *end;
        long v = strtol(ds, &end, 10);
        if (*end || v < 0 || v > 1024) {
            snprintf(be->errmsg, sizeof be->errmsg, "FMD_CUDA_DEVICE='%s' is not a device ordinal", ds);
            return FMD_ERR_INVALID_ARG;
        }
        dev = (int)v;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return open_fail(be, NULL, FMD_ERR_BACKEND_UNAVAILABLE, "no usable GPU: %s: %s",
                         "cudaGetDeviceCount", cudaGetErrorString(e));
    if (count <= 0)
        return open_fail(be, NULL, FMD_ERR_BACKEND_UNAVAILABLE, "no usable GPU: %s%s",
                         "cudaGetDeviceCount found no CUDA device", "");
    if (dev >= count) {
        snprintf(be->errmsg, sizeof be->errmsg, "FMD_CUDA_DEVICE=%d but only %d device(s)", dev, count);
        return FMD_ERR_BACKEND_UNAVAILABLE;
    }
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess)
        return open_fail(be, NULL, FMD_ERR_BACKEND_UNAVAILABLE, "no usable GPU: %s: %s",
                         "cudaGetDeviceProperties", cudaGetErrorString(e));
    if ((e = cudaSetDevice(dev)) != cudaSuccess)
        return open_fail(be, NULL, FMD_ERR_BACKEND_UNAVAILABLE, "no usable GPU: %s: %s",
                         "cudaSetDevice", cudaGetErrorString(e));

    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(be->errmsg, sizeof be->errmsg, "out of host memory for the backend context");
        return FMD_ERR_OOM;
    }
    c->device = dev;
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return open_fail(be, c, cuda_status_of(e), "%s: %s", "cudaStreamCreate", cudaGetErrorString(e));
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        return open_fail(be, c, FMD_ERR_BACKEND_UNAVAILABLE, "%s: %s", "cublasCreate",
                         cublasGetStatusString(bs));
    }
    if ((bs = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS)
        return open_fail(be, c, FMD_ERR_INTERNAL, "%s: %s", "cublasSetStream", cublasGetStatusString(bs));
    const char *tf = getenv("FMD_CUDA_TF32");
    int tf32 = tf && *tf == '1';
    bs = cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (bs != CUBLAS_STATUS_SUCCESS)
        return open_fail(be, c, FMD_ERR_INTERNAL, "%s: %s", "cublasSetMathMode", cublasGetStatusString(bs));
    if ((e = cudaMalloc(&c->red_part, (RED_BLOCKS + 1) * sizeof(double))) != cudaSuccess ||
        (e = cudaMalloc(&c->flag, sizeof(int))) != cudaSuccess ||
        (e = cudaMalloc(&c->scratch, SCRATCH_FLOATS * sizeof(float))) != cudaSuccess)
        return open_fail(be, c, cuda_status_of(e), "%s: %s", "cudaMalloc", cudaGetErrorString(e));
    /* Run one kernel now: a device this build has no code for (or a driver
     * too old for it) fails here, at open, rather than in the first op. */
    KLAUNCH(k_affine, 1, 32, c->stream)((float *)c->red_part, 0.0f, 0.0f, 2);
    if ((e = cudaGetLastError()) != cudaSuccess || (e = cudaStreamSynchronize(c->stream)) != cudaSuccess)
        return open_fail(be, c, FMD_ERR_BACKEND_UNAVAILABLE, "no usable GPU: %s: %s",
                         "test kernel", cudaGetErrorString(e));

    be->ops = &cuda_ops;
    be->ctx = c;
    be->threads = 0;
    snprintf(be->name, sizeof be->name, "cuda");
    snprintf(be->device, sizeof be->device, "cuda: %.100s (sm_%d%d, %.0f GiB%s)", prop.name, prop.major,
             prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), tf32 ? ", tf32" : "");
    be->status = FMD_OK;
    be->errmsg[0] = '\0';
    return FMD_OK;
}
