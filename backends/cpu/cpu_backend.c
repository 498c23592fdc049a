/* cpu_backend.c - the CPU backend: GEMM through oneDNN or OpenBLAS, every
 * other op as vectorisable C loops parallelised with OpenMP.
 *
 * GEMM provider: FMD_CPU_GEMM=onednn|openblas|auto (default auto, which is
 * oneDNN: it shares the OpenMP thread pool of the other ops; see
 * cpu_gemm_pick and docs/benchmarks.md).  Threads: FMD_NUM_THREADS (default: OpenMP's). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include "backend.h"
#include "cpu_backend.h"
#include "cpu_ops_nn.h"
#include "util/philox.h"
#include "util/util.h"

/* Parallelise a loop only when it is worth waking the threads. */
#define PAR_MIN 32768
#define CPU(be) ((cpu_ctx *)(be)->ctx)
#define FMD_PRAGMA(x) _Pragma(#x)
#define PFOR(be, n) FMD_PRAGMA(omp parallel for schedule(static) num_threads(CPU(be)->threads) if((n) > PAR_MIN))

/* Run body(i0, i1) over [0, n) split into one contiguous range per thread. */
#define PRANGE(be, n, body)                                                             \
    do {                                                                                \
        int nt_ = (n) > PAR_MIN ? CPU(be)->threads : 1;                                  \
        FMD_PRAGMA(omp parallel num_threads(nt_) if(nt_ > 1))                            \
        {                                                                               \
            int id_ = omp_get_thread_num(), k_ = omp_get_num_threads();                  \
            int64_t i0 = (n) * id_ / k_, i1 = (n) * (id_ + 1) / k_;                      \
            body;                                                                       \
        }                                                                               \
    } while (0)

static void cpu_destroy(fmd_backend *be)
{
    fmd_free(be->ctx);
    be->ctx = NULL;
}

static void *cpu_alloc(fmd_backend *be, size_t bytes)
{
    /* 64-byte aligned for AVX-512 loads; bypasses the hooks only for alignment
     * padding bookkeeping, the block itself comes from fmd_malloc. */
    size_t total = bytes + 64 + sizeof(void *);
    if (total < bytes) {
        fmdb_alloc_failed(be, "cpu: allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    char *raw = fmd_malloc(total);
    if (!raw) {
        fmdb_alloc_failed(be, "cpu: out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    uintptr_t a = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)a)[-1] = raw;
    return (void *)a;
}

static void cpu_free(fmd_backend *be, void *p)
{
    if (p) fmd_free(((void **)p)[-1]);
}

static void cpu_memset0(fmd_backend *be, void *p, size_t bytes) { if (bytes) memset(p, 0, bytes); }
static void cpu_copy(fmd_backend *be, void *d, const void *s, size_t bytes) { if (bytes && d != s) memmove(d, s, bytes); }
static fmd_status cpu_sync(fmd_backend *be) { return be->status; }

/* ---- GEMM ------------------------------------------------------------------ */

int cpu_gemm_pick(const cpu_ctx *c, int64_t m, int64_t n, int64_t k)
{
    if (c->gemm != CPU_GEMM_AUTO) return c->gemm;
    /* Measured (bench/gemm.c --only ..., docs/benchmarks.md): run alone,
     * oneDNN is as fast as OpenBLAS or faster at every model shape (k = 2
     * included).  Mixed in one process, each library's idle threads spin
     * (OpenMP for oneDNN and our loops, pthreads for OpenBLAS) and steal the
     * other's cores: up to 100x slower small products.  oneDNN shares the
     * OpenMP pool of every other CPU op, so it is the default everywhere. */
    (void)m; (void)n; (void)k;
    return CPU_GEMM_ONEDNN;
}

static void gemm_one(fmd_backend *be, int provider, int ta, int tb, int64_t m, int64_t n, int64_t k,
                     float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                     float beta, float *c, int64_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) { /* C = beta*C; BLAS would read A/B */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    if (provider == CPU_GEMM_ONEDNN) {
        /* SIGINT / SIGTERM wait until the product is done: a Ctrl-C that the
         * kernel delivered to this thread inside oneDNN's sgemm corrupted the
         * heap (a third of `fmd distill` runs interrupted under
         * OMP_WAIT_POLICY=active, half of the Python ones; never with
         * OpenBLAS).  Blocked here, the signal goes to a thread outside the
         * GEMM or waits the microseconds until it returns. */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                                      beta, c, ldc);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (st != dnnl_success)
            fmdb_fail(be, FMD_ERR_INTERNAL, "cpu: dnnl_sgemm failed (status %d) for %lldx%lldx%lld",
                      (int)st, (long long)m, (long long)n, (long long)k);
    } else {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                    (blasint)ldc);
    }
}

static void cpu_gemm(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                     int64_t ldc)
{
    gemm_one(be, cpu_gemm_pick(CPU(be), m, n, k), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_gemm_batched(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k,
                             float alpha, const float *a, int64_t lda, int64_t sa, const float *b,
                             int64_t ldb, int64_t sb, float beta, float *c, int64_t ldc, int64_t sc,
                             int64_t batch)
{
    int provider = cpu_gemm_pick(CPU(be), m, n, k);
    for (int64_t i = 0; i < batch; i++)
        gemm_one(be, provider, ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc, ldc);
}

/* ---- bias / broadcast ---------------------------------------------------------- */

static void cpu_bias_add(fmd_backend *be, float *out, const float *x, const float *bias, int64_t n, int64_t c)
{
    PFOR(be, n * c)
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * c;
        const float *xi = x + i * c;
        for (int64_t j = 0; j < c; j++) o[j] = xi[j] + bias[j];
    }
}

/* out(C) += sum over rows of x(N,C): row-major friendly column sums, split
 * over column blocks so threads never share an output. */
static void col_sum_add(fmd_backend *be, float *out, const float *x, const float *y, int64_t n, int64_t c)
{
    const int64_t blk = 256;
    int64_t nb = (c + blk - 1) / blk;
    _Pragma("omp parallel for schedule(static) num_threads(CPU(be)->threads) if(n * c > PAR_MIN)")
    for (int64_t bi = 0; bi < nb; bi++) {
        int64_t j0 = bi * blk, j1 = j0 + blk < c ? j0 + blk : c;
        float acc[256];
        for (int64_t j = j0; j < j1; j++) acc[j - j0] = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * c;
            if (y) {
                const float *yi = y + i * c;
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += xi[j] * yi[j];
            } else {
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += xi[j];
            }
        }
        for (int64_t j = j0; j < j1; j++) out[j] += acc[j - j0];
    }
}

static void cpu_bias_grad(fmd_backend *be, float *dbias, const float *dout, int64_t n, int64_t c)
{
    col_sum_add(be, dbias, dout, NULL, n, c);
}

static void cpu_bcast_mul(fmd_backend *be, float *out, const float *x, const float *g, int64_t b,
                          int64_t t, int64_t c, float beta)
{
    PFOR(be, b * t * c)
    for (int64_t r = 0; r < b * t; r++) {
        const float *gi = g + (r / t) * c;
        float *o = out + r * c;
        const float *xi = x + r * c;
        if (beta == 0.0f)
            for (int64_t j = 0; j < c; j++) o[j] = xi[j] * gi[j];
        else
            for (int64_t j = 0; j < c; j++) o[j] = beta * o[j] + xi[j] * gi[j];
    }
}

static void cpu_bcast_mul_reduce(fmd_backend *be, float *dg, const float *dout, const float *x,
                                 int64_t b, int64_t t, int64_t c, float beta)
{
    for (int64_t i = 0; i < b; i++) {
        float *d = dg + i * c;
        if (beta == 0.0f) memset(d, 0, (size_t)c * sizeof(float));
        else if (beta != 1.0f) for (int64_t j = 0; j < c; j++) d[j] *= beta;
        col_sum_add(be, d, dout + i * t * c, x + i * t * c, t, c);
    }
}

/* ---- elementwise ------------------------------------------------------------------ */

static void cpu_axpby(fmd_backend *be, float *out, float alpha, const float *x, float beta,
                      const float *y, int64_t n)
{
    if (beta == 0.0f) {
        PFOR(be, n)
        for (int64_t i = 0; i < n; i++) out[i] = alpha * x[i];
    } else {
        PFOR(be, n)
        for (int64_t i = 0; i < n; i++) out[i] = alpha * x[i] + beta * y[i];
    }
}

static void cpu_affine(fmd_backend *be, float *x, float alpha, float beta, int64_t n)
{
    PFOR(be, n)
    for (int64_t i = 0; i < n; i++) x[i] = alpha * x[i] + beta;
}

/* ---- activations ------------------------------------------------------------------- */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

static void cpu_act_forward(fmd_backend *be, int kind, float *out, const float *x, int64_t n)
{
    if (kind == FMDB_ACT_SILU) {
        PFOR(be, n)
        for (int64_t i = 0; i < n; i++) {
            float y = x[i] / (1.0f + expf(-x[i]));
            out[i] = FMDB_FLUSH_SUBNORMAL(y);
        }
    } else {
        PFOR(be, n)
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float y = 0.5f * v * (1.0f + tanhf(GELU_K * (v + GELU_C * v * v * v)));
            out[i] = FMDB_FLUSH_SUBNORMAL(y);
        }
    }
}

static void cpu_act_backward(fmd_backend *be, int kind, float *dx, const float *dout, const float *x,
                             int64_t n, float beta)
{
    if (kind == FMDB_ACT_SILU) {
        PFOR(be, n)
        for (int64_t i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + expf(-x[i]));
            float d = dout[i] * s * (1.0f + x[i] * (1.0f - s));
            float r = beta == 0.0f ? d : beta * dx[i] + d;
            dx[i] = FMDB_FLUSH_SUBNORMAL(r);
        }
    } else {
        PFOR(be, n)
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float th = tanhf(GELU_K * (v + GELU_C * v * v * v));
            float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v * v);
            float d = dout[i] * g;
            float r = beta == 0.0f ? d : beta * dx[i] + d;
            dx[i] = FMDB_FLUSH_SUBNORMAL(r);
        }
    }
}

/* ---- layer norm ----------------------------------------------------------------------- */

static void cpu_layernorm_forward(fmd_backend *be, float *out, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, int64_t n, int64_t c, float eps)
{
    PFOR(be, n * c)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * c;
        float *o = out + i * c;
        float s = 0.0f;
        for (int64_t j = 0; j < c; j++) s += xi[j];
        float mu = s / (float)c;
        float v = 0.0f;
        for (int64_t j = 0; j < c; j++) { float d = xi[j] - mu; v += d * d; }
        float r = 1.0f / sqrtf(v / (float)c + eps);
        for (int64_t j = 0; j < c; j++) {
            float y = (xi[j] - mu) * r;
            if (w) y *= w[j];
            if (b) y += b[j];
            o[j] = y;
        }
        if (mean) mean[i] = mu;
        if (rstd) rstd[i] = r;
    }
}

static void cpu_layernorm_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dout,
                                   const float *x, const float *w, const float *mean, const float *rstd,
                                   int64_t n, int64_t c, float beta)
{
    if (dx) {
        PFOR(be, n * c)
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * c, *gi = dout + i * c;
            float mu = mean[i], r = rstd[i];
            float sg = 0.0f, sgx = 0.0f;
            for (int64_t j = 0; j < c; j++) {
                float g = w ? gi[j] * w[j] : gi[j];
                sg += g;
                sgx += g * (xi[j] - mu) * r;
            }
            sg /= (float)c;
            sgx /= (float)c;
            float *d = dx + i * c;
            for (int64_t j = 0; j < c; j++) {
                float g = w ? gi[j] * w[j] : gi[j];
                float v = r * (g - sg - (xi[j] - mu) * r * sgx);
                d[j] = beta == 0.0f ? v : beta * d[j] + v;
            }
        }
    }
    if (db) col_sum_add(be, db, dout, NULL, n, c);
    if (dw) {
        /* dw += sum_i dout * xhat: column blocks, xhat recomputed per row */
        const int64_t blk = 256;
        int64_t nb = (c + blk - 1) / blk;
        _Pragma("omp parallel for schedule(static) num_threads(CPU(be)->threads) if(n * c > PAR_MIN)")
        for (int64_t bi = 0; bi < nb; bi++) {
            int64_t j0 = bi * blk, j1 = j0 + blk < c ? j0 + blk : c;
            float acc[256];
            for (int64_t j = j0; j < j1; j++) acc[j - j0] = 0.0f;
            for (int64_t i = 0; i < n; i++) {
                const float *xi = x + i * c, *gi = dout + i * c;
                float mu = mean[i], r = rstd[i];
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += gi[j] * (xi[j] - mu) * r;
            }
            for (int64_t j = j0; j < j1; j++) dw[j] += acc[j - j0];
        }
    }
}

/* ---- softmax --------------------------------------------------------------------------- */

static void cpu_softmax_forward(fmd_backend *be, float *out, const float *x, int64_t n, int64_t c, float scale)
{
    PFOR(be, n * c)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * c;
        float *o = out + i * c;
        float mx = -INFINITY;
        for (int64_t j = 0; j < c; j++) if (scale * xi[j] > mx) mx = scale * xi[j];
        float s = 0.0f;
        /* vectorisable exp (relative error 8e-8): the scalar expf was a fifth
         * of a SiT forward */
        for (int64_t j = 0; j < c; j++) o[j] = fmdb_vexpf(scale * xi[j] - mx);
        for (int64_t j = 0; j < c; j++) s += o[j];
        float inv = 1.0f / s;
        for (int64_t j = 0; j < c; j++) o[j] *= inv;
    }
}

static void cpu_softmax_backward(fmd_backend *be, float *dx, const float *dout, const float *y, int64_t n,
                                 int64_t c, float scale)
{
    PFOR(be, n * c)
    for (int64_t i = 0; i < n; i++) {
        const float *yi = y + i * c, *gi = dout + i * c;
        float s = 0.0f;
        for (int64_t j = 0; j < c; j++) s += gi[j] * yi[j];
        float *d = dx + i * c;
        for (int64_t j = 0; j < c; j++) d[j] = scale * yi[j] * (gi[j] - s);
    }
}

/* ---- adaLN modulate ------------------------------------------------------------------- */

static void cpu_modulate_forward(fmd_backend *be, float *out, const float *x, const float *shift,
                                 const float *scale, int64_t ld, int64_t b, int64_t t, int64_t c)
{
    PFOR(be, b * t * c)
    for (int64_t r = 0; r < b * t; r++) {
        int64_t bi = r / t;
        const float *sh = shift + bi * ld, *sc = scale + bi * ld, *xi = x + r * c;
        float *o = out + r * c;
        for (int64_t j = 0; j < c; j++) o[j] = xi[j] * (1.0f + sc[j]) + sh[j];
    }
}

static void cpu_modulate_backward(fmd_backend *be, float *dx, float *dshift, float *dscale,
                                  const float *dout, const float *x, const float *scale, int64_t ld,
                                  int64_t b, int64_t t, int64_t c, float beta)
{
    if (dx) {
        PFOR(be, b * t * c)
        for (int64_t r = 0; r < b * t; r++) {
            const float *sc = scale + (r / t) * ld, *g = dout + r * c;
            float *d = dx + r * c;
            for (int64_t j = 0; j < c; j++) {
                float v = g[j] * (1.0f + sc[j]);
                d[j] = beta == 0.0f ? v : beta * d[j] + v;
            }
        }
    }
    for (int64_t bi = 0; bi < b; bi++) {
        if (dshift) {
            memset(dshift + bi * ld, 0, (size_t)c * sizeof(float));
            col_sum_add(be, dshift + bi * ld, dout + bi * t * c, NULL, t, c);
        }
        if (dscale) {
            memset(dscale + bi * ld, 0, (size_t)c * sizeof(float));
            col_sum_add(be, dscale + bi * ld, dout + bi * t * c, x + bi * t * c, t, c);
        }
    }
}

/* ---- reductions ------------------------------------------------------------------------ */

/* sum or sum of squares of x[i0, i1) in double, vectorised */
CPU_CLONES static double k_sum(const float *x, int64_t i0, int64_t i1, int sq)
{
    double acc = 0.0;
    if (sq) {
#pragma omp simd reduction(+ : acc)
        for (int64_t i = i0; i < i1; i++) acc += (double)x[i] * (double)x[i];
    } else {
#pragma omp simd reduction(+ : acc)
        for (int64_t i = i0; i < i1; i++) acc += (double)x[i];
    }
    return acc;
}

static void cpu_reduce(fmd_backend *be, int kind, const float *x, int64_t n, double *out)
{
    if (kind == FMDB_RED_SUM || kind == FMDB_RED_SUMSQ) {
        /* per-thread partials added in thread order: the same threads give the
         * same bits */
        enum { MAXT = 256 };
        double part[MAXT] = {0};
        int nt = n > PAR_MIN ? CPU(be)->threads : 1;
        if (nt > MAXT) nt = MAXT;
        FMD_PRAGMA(omp parallel num_threads(nt) if(nt > 1))
        {
            int id = omp_get_thread_num(), k = omp_get_num_threads();
            part[id] = k_sum(x, n * id / k, n * (id + 1) / k, kind == FMDB_RED_SUMSQ);
        }
        double acc = 0.0;
        for (int i = 0; i < nt; i++) acc += part[i];
        *out = acc;
        return;
    }
    double acc = 0.0;
    _Pragma("omp parallel for reduction(max:acc) num_threads(CPU(be)->threads) if(n > PAR_MIN)")
    for (int64_t i = 0; i < n; i++) {
        double a = fabs((double)x[i]);
        if (a != a) a = INFINITY; /* NaN is reported as infinite */
        if (a > acc) acc = a;
    }
    *out = acc;
}

static void cpu_row_dot(fmd_backend *be, float *out, const float *x, const float *y, int64_t n, int64_t c, float beta)
{
    PFOR(be, n * c)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * c, *yi = y + i * c;
        float s = 0.0f;
        for (int64_t j = 0; j < c; j++) s += xi[j] * yi[j];
        out[i] = beta == 0.0f ? s : beta * out[i] + s;
    }
}

/* ---- optimiser ---------------------------------------------------------------------------- */

CPU_CLONES static void k_adamw(float *p, const float *g, float *m, float *v, int64_t i0, int64_t i1,
                               float lr, float b1, float b2, float eps, float wd, float c1, float c2,
                               float gs)
{
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        float gi = g[i] * gs;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * p[i]);
    }
}

static void cpu_adamw(fmd_backend *be, float *p, const float *g, float *m, float *v, int64_t n, float lr,
                      float b1, float b2, float eps, float wd, int64_t step, float gs)
{
    float c1 = 1.0f / (1.0f - powf(b1, (float)step));
    float c2 = 1.0f / (1.0f - powf(b2, (float)step));
    PRANGE(be, n, k_adamw(p, g, m, v, i0, i1, lr, b1, b2, eps, wd, c1, c2, gs));
}

CPU_CLONES static void k_ema(float *e, const float *p, int64_t i0, int64_t i1, float decay)
{
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) e[i] = decay * e[i] + (1.0f - decay) * p[i];
}

static void cpu_ema(fmd_backend *be, float *e, const float *p, int64_t n, float decay)
{
    PRANGE(be, n, k_ema(e, p, i0, i1, decay));
}

/* ---- random numbers -------------------------------------------------------------------------- */

static void cpu_fill_normal(fmd_backend *be, float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    /* one contiguous range per thread; the fill handles ranges that start or
     * end inside a Philox block */
    PRANGE(be, n, fmd_philox_normal_fill(out + i0, i1 - i0, seed, stream, off + (uint64_t)i0));
}

static void cpu_fill_uniform(fmd_backend *be, float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    PFOR(be, n * 16)
    for (int64_t i = 0; i < n; i++) out[i] = fmd_philox_uniform_at(seed, stream, off + (uint64_t)i);
}

/* ---- embeddings and data movement -------------------------------------------------------------- */

static void cpu_embed_forward(fmd_backend *be, float *out, const float *table, const int32_t *idx, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++) memcpy(out + i * c, table + (int64_t)idx[i] * c, (size_t)c * sizeof(float));
}

static void cpu_embed_backward(fmd_backend *be, float *dtable, const float *dout, const int32_t *idx, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++) {
        float *d = dtable + (int64_t)idx[i] * c;
        const float *g = dout + i * c;
        for (int64_t j = 0; j < c; j++) d[j] += g[j];
    }
}

static void cpu_permute(fmd_backend *be, float *out, const float *in, int nd, const int64_t *dims,
                        const int *perm, float beta)
{
    /* walk the input in order; ostride_of_in[d] is the output stride of
     * input axis d */
    int64_t ostride_of_in[6], odims[6], s = 1;
    for (int d = 0; d < nd; d++) s *= dims[d];
    int64_t total = s;
    for (int d = 0; d < nd; d++) odims[d] = dims[perm[d]];
    s = 1;
    for (int d = nd - 1; d >= 0; d--) { ostride_of_in[perm[d]] = s; s *= odims[d]; }
    int64_t inner = dims[nd - 1];
    int64_t outer = total / (inner ? inner : 1);
    int64_t os_inner = ostride_of_in[nd - 1];
    PFOR(be, total)
    for (int64_t r = 0; r < outer; r++) {
        /* r indexes the input's leading nd-1 coordinates */
        int64_t rem = r, obase = 0;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t ci = rem % dims[d];
            rem /= dims[d];
            obase += ci * ostride_of_in[d];
        }
        const float *src = in + r * inner;
        if (beta == 0.0f)
            for (int64_t j = 0; j < inner; j++) out[obase + j * os_inner] = src[j];
        else
            for (int64_t j = 0; j < inner; j++) out[obase + j * os_inner] = beta * out[obase + j * os_inner] + src[j];
    }
}

static void cpu_copy2d(fmd_backend *be, float *out, int64_t ldo, const float *in, int64_t ldi, int64_t rows,
                       int64_t cols, float beta)
{
    PFOR(be, rows * cols)
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * ldo;
        const float *x = in + r * ldi;
        if (beta == 0.0f) memcpy(o, x, (size_t)cols * sizeof(float));
        else for (int64_t j = 0; j < cols; j++) o[j] = beta * o[j] + x[j];
    }
}

static int cpu_nonfinite(fmd_backend *be, const float *x, int64_t n)
{
    int bad = 0;
    _Pragma("omp parallel for reduction(|:bad) num_threads(CPU(be)->threads) if(n > PAR_MIN)")
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return bad;
}

static void cpu_upload(fmd_backend *be, void *d, const void *s, size_t n) { if (n && d != s) memcpy(d, s, n); }
static void cpu_download(fmd_backend *be, void *d, const void *s, size_t n) { if (n && d != s) memcpy(d, s, n); }

static const fmd_backend_ops cpu_ops = {
    .abi_version = FMDB_ABI_VERSION,
    .struct_size = sizeof(fmd_backend_ops),
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memset0 = cpu_memset0,
    .copy = cpu_copy,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .gemm_batched = cpu_gemm_batched,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .bcast_mul = cpu_bcast_mul,
    .bcast_mul_reduce = cpu_bcast_mul_reduce,
    .axpby = cpu_axpby,
    .affine = cpu_affine,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .modulate_forward = cpu_modulate_forward,
    .modulate_backward = cpu_modulate_backward,
    .reduce = cpu_reduce,
    .row_dot = cpu_row_dot,
    .adamw = cpu_adamw,
    .ema = cpu_ema,
    .fill_normal = cpu_fill_normal,
    .fill_uniform = cpu_fill_uniform,
    .embed_forward = cpu_embed_forward,
    .embed_backward = cpu_embed_backward,
    .timestep_embed = fmdb_cpu_timestep_embed,   /* cpu_ops_nn.c */
    .permute = cpu_permute,
    .copy2d = cpu_copy2d,
    .nonfinite = cpu_nonfinite,
    .bias_act_forward = fmdb_cpu_bias_act_forward,   /* cpu_ops_nn.c (network engine) */
    .act_bias_backward = fmdb_cpu_act_bias_backward,
};

static const char *gemm_name(int g)
{
    return g == CPU_GEMM_ONEDNN ? "onednn" : g == CPU_GEMM_OPENBLAS ? "openblas" : "auto";
}

fmd_status fmdb_cpu_open(fmd_backend *be)
{
    cpu_ctx *c = fmd_xcalloc(1, sizeof *c, "cpu backend");
    if (!c) return FMD_ERR_OOM;
    c->threads = omp_get_max_threads();
    const char *nt = getenv("FMD_NUM_THREADS");
    if (nt && *nt) {
        char *end;
        long v = strtol(nt, &end, 10);
        if (*end || v < 1 || v > 4096) {
            fmd_free(c);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd_backend_open: FMD_NUM_THREADS='%s' is not a "
                              "thread count in [1, 4096]", nt);
        }
        c->threads = (int)v;
    }
    c->gemm = CPU_GEMM_AUTO;
    const char *g = getenv("FMD_CPU_GEMM");
    if (g && *g) {
        if (strcmp(g, "onednn") == 0) c->gemm = CPU_GEMM_ONEDNN;
        else if (strcmp(g, "openblas") == 0) c->gemm = CPU_GEMM_OPENBLAS;
        else if (strcmp(g, "auto") != 0) {
            fmd_free(c);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd_backend_open: FMD_CPU_GEMM='%s' (expected onednn, "
                              "openblas or auto)", g);
        }
    }
    /* GEMM libraries run their own thread pools; give them our count.  oneDNN
     * (OpenMP runtime) follows the calling thread's OpenMP setting, which is
     * changed only when the host asked for a count. */
    openblas_set_num_threads(c->threads);
    if (nt && *nt) omp_set_num_threads(c->threads);
    be->ops = &cpu_ops;
    be->ctx = c;
    be->threads = c->threads;
    snprintf(be->name, sizeof be->name, "cpu");
    snprintf(be->device, sizeof be->device, "cpu: %d threads, gemm=%s", c->threads, gemm_name(c->gemm));
    return FMD_OK;
}
