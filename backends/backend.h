/* backend.h - the private device vtable of libfmd.
 *
 * Every device operation the core (lib/nn, lib/algo, lib/api) may perform goes
 * through one struct of function pointers, in the manner of ggml's backend
 * interface.  The core never dereferences device memory: it allocates with
 * ->alloc, moves data with ->upload / ->download, and calls the ops below.
 *
 * Conventions (all ops):
 *   - Tensors are float32, row-major, contiguous unless a leading dimension is
 *     given.  Index tensors are int32.  Pointers are device pointers obtained
 *     from ->alloc (on the CPU backend they are plain host pointers).
 *   - Outputs come first, then inputs, then sizes (llm.c's order).
 *   - Ops return void.  A device error is *sticky*: the backend records the
 *     first failure in be->status / be->errmsg (fmdb_fail), later ops may be
 *     skipped, and ->sync returns it.  Callers check ->sync (or fmdb_ok) at the
 *     end of a step.  Nothing here aborts.
 *   - An allocation failure is not sticky: ->alloc returns NULL, writes the
 *     reason to be->errmsg (fmdb_alloc_failed) and leaves be->status alone;
 *     the caller, which must check for NULL, reports FMD_ERR_OOM, and the
 *     backend serves the next call (one failed allocation must not poison
 *     it for the rest of the process).
 *   - Sizes are int64_t and never negative (checked by the callers in lib/api).
 *   - "beta" arguments: out = beta*out + result (beta = 0 overwrites and never
 *     reads out, so out may hold garbage or NaN).
 *
 * ABI: the struct starts with abi_version and struct_size; slots are only ever
 * appended.  Optional slots may be NULL and callers check them.  The CUDA
 * plugin (libfmd-cuda.so) exports `fmd_backend_plugin_open` and is refused when
 * its abi_version differs from FMDB_ABI_VERSION.
 */
#ifndef FMD_BACKEND_H
#define FMD_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <float.h>
#include <math.h>
#include "fmd.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FMDB_ABI_VERSION 2u

typedef struct fmd_backend_ops fmd_backend_ops;

/* Activation kinds for act_forward / act_backward. */
enum { FMDB_ACT_SILU = 0, FMDB_ACT_GELU_TANH = 1 };

/* Scalar reductions for ->reduce. */
enum { FMDB_RED_SUM = 0, FMDB_RED_SUMSQ = 1, FMDB_RED_MAXABS = 2 };

/* The backend object.  Owned by backends/backend.c; ops see it as context. */
struct fmd_backend {
    const fmd_backend_ops *ops;
    void *ctx;              /* backend-private state                           */
    void *dl_handle;        /* dlopen handle of a plugin, or NULL              */
    int threads;            /* worker threads (CPU) or 0                       */
    char name[16];          /* "cpu", "cuda"                                   */
    char device[160];       /* human description of the device                 */
    fmd_status status;      /* sticky first error (FMD_OK when healthy)        */
    char errmsg[256];       /* message of the sticky error                     */
};

struct fmd_backend_ops {
    uint32_t abi_version;   /* FMDB_ABI_VERSION                                */
    uint32_t struct_size;   /* sizeof(fmd_backend_ops) of the implementer      */

    /* ---- lifetime and memory ------------------------------------------- */
    void (*destroy)(fmd_backend *be);                 /* frees be->ctx only    */
    void *(*alloc)(fmd_backend *be, size_t bytes);    /* NULL + fmdb_alloc_failed */
    void (*free)(fmd_backend *be, void *p);           /* NULL-safe             */
    void (*memset0)(fmd_backend *be, void *p, size_t bytes);
    void (*copy)(fmd_backend *be, void *dst, const void *src, size_t bytes);       /* device->device */
    void (*upload)(fmd_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(fmd_backend *be, void *host_dst, const void *src, size_t bytes);
    fmd_status (*sync)(fmd_backend *be);              /* waits; returns sticky */

    /* ---- matrix products ------------------------------------------------ */
    /* C(m,n) = alpha * op(A)(m,k) * op(B)(k,n) + beta * C, row-major.
     * op(A) = A (lda >= k) or A^T when ta (A stored k x m, lda >= m). */
    void (*gemm)(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k,
                 float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                 float beta, float *c, int64_t ldc);
    /* batch independent gemms; matrix i starts at a + i*stride_a, etc. */
    void (*gemm_batched)(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t stride_a,
                         const float *b, int64_t ldb, int64_t stride_b, float beta,
                         float *c, int64_t ldc, int64_t stride_c, int64_t batch);

    /* ---- bias / broadcast ------------------------------------------------ */
    /* out(N,C) = x(N,C) + bias(C)   (out may equal x) */
    void (*bias_add)(fmd_backend *be, float *out, const float *x, const float *bias,
                     int64_t n, int64_t c);
    /* dbias(C) += sum_rows dout(N,C) */
    void (*bias_grad)(fmd_backend *be, float *dbias, const float *dout, int64_t n, int64_t c);
    /* out(B,T,C) = beta*out + x(B,T,C) * g(B,C)   (gate / per-row scale; T=1 is
     * an elementwise product of rows, C=1 a per-row scalar) */
    void (*bcast_mul)(fmd_backend *be, float *out, const float *x, const float *g,
                      int64_t b, int64_t t, int64_t c, float beta);
    /* dg(B,C) = beta*dg + sum_t dout(B,T,C) * x(B,T,C)   (gradient of the gate) */
    void (*bcast_mul_reduce)(fmd_backend *be, float *dg, const float *dout, const float *x,
                             int64_t b, int64_t t, int64_t c, float beta);

    /* ---- elementwise ------------------------------------------------------- */
    /* out = alpha*x + beta*y  (y may be NULL when beta == 0; out may alias x/y) */
    void (*axpby)(fmd_backend *be, float *out, float alpha, const float *x, float beta,
                  const float *y, int64_t n);
    /* x = alpha * x + beta (in place affine; scale + shift) */
    void (*affine)(fmd_backend *be, float *x, float alpha, float beta, int64_t n);

    /* ---- activations ------------------------------------------------------- */
    /* All four activation ops (these two and the fused slots below) flush
     * subnormal results to zero (FMDB_FLUSH_SUBNORMAL): f'(x) of a strongly
     * negative pre-activation times a small gradient is subnormal, and
     * subnormal GEMM operands made x86 training up to 3x slower
     * (docs/benchmarks.md, "Subnormal numbers").
     * out = f(x) */
    void (*act_forward)(fmd_backend *be, int kind, float *out, const float *x, int64_t n);
    /* dx = beta*dx + dout * f'(x).  Also the forward-mode tangent: t_out = f'(x)*t_x. */
    void (*act_backward)(fmd_backend *be, int kind, float *dx, const float *dout,
                         const float *x, int64_t n, float beta);

    /* ---- layer norm over the last dimension ---------------------------------- */
    /* out(N,C) = (x - mean)*rstd * w + b; w, b may be NULL (no affine).
     * mean(N), rstd(N) are saved for backward (may be NULL if not needed). */
    void (*layernorm_forward)(fmd_backend *be, float *out, float *mean, float *rstd,
                              const float *x, const float *w, const float *b,
                              int64_t n, int64_t c, float eps);
    /* dx = beta*dx + grad wrt x; dw += ..., db += ... (dw/db/w may be NULL).
     * With w = NULL, dw = db = NULL and dout = tangent of x this returns the
     * forward-mode tangent of the normalised output (the JVP). */
    void (*layernorm_backward)(fmd_backend *be, float *dx, float *dw, float *db,
                               const float *dout, const float *x, const float *w,
                               const float *mean, const float *rstd,
                               int64_t n, int64_t c, float beta);

    /* ---- softmax over the last dimension -------------------------------------- */
    /* out(N,C) = softmax(scale * x) row-wise (out may equal x) */
    void (*softmax_forward)(fmd_backend *be, float *out, const float *x, int64_t n,
                            int64_t c, float scale);
    /* dx = y * (dout - sum(dout*y)) * scale.  Also the JVP: t_y = y*(s*t_x - sum(y*s*t_x)). */
    void (*softmax_backward)(fmd_backend *be, float *dx, const float *dout, const float *y,
                             int64_t n, int64_t c, float scale);

    /* ---- adaLN modulate --------------------------------------------------------- */
    /* out(B,T,C) = x * (1 + scale(B,C)) + shift(B,C); scale/shift rows have stride ld_mod
     * (they are slices of the adaLN output, ld_mod >= C). */
    void (*modulate_forward)(fmd_backend *be, float *out, const float *x, const float *shift,
                             const float *scale, int64_t ld_mod, int64_t b, int64_t t, int64_t c);
    /* dx = beta*dx + dout*(1+scale); dshift = sum_t dout; dscale = sum_t dout*x
     * (dshift/dscale overwritten, stride ld_mod; any of dx/dshift/dscale may be NULL) */
    void (*modulate_backward)(fmd_backend *be, float *dx, float *dshift, float *dscale,
                              const float *dout, const float *x, const float *scale,
                              int64_t ld_mod, int64_t b, int64_t t, int64_t c, float beta);

    /* ---- reductions --------------------------------------------------------- */
    /* *host_out = sum / sum of squares / max |x| over n elements (accumulated in double) */
    void (*reduce)(fmd_backend *be, int kind, const float *x, int64_t n, double *host_out);
    /* out(N) = beta*out + sum_j x(N,C)*y(N,C)  (row dot; y == x gives row sum of squares) */
    void (*row_dot)(fmd_backend *be, float *out, const float *x, const float *y,
                    int64_t n, int64_t c, float beta);

    /* ---- optimiser ---------------------------------------------------------- */
    /* AdamW over a flat buffer; step is 1-based (bias correction);
     * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p); grad_scale multiplies g first
     * (gradient clipping). */
    void (*adamw)(fmd_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                  float lr, float beta1, float beta2, float eps, float wd, int64_t step,
                  float grad_scale);
    /* ema = decay*ema + (1-decay)*p */
    void (*ema)(fmd_backend *be, float *ema, const float *p, int64_t n, float decay);

    /* ---- random numbers (Philox4x32-10, see lib/util/philox.h) ---------------- */
    /* out[i] = N(0,1) (or U(0,1)) for element index offset+i of the (seed, stream)
     * sequence; identical bits on every backend for any split of [0, n). */
    void (*fill_normal)(fmd_backend *be, float *out, int64_t n, uint64_t seed,
                        uint64_t stream, uint64_t offset);
    void (*fill_uniform)(fmd_backend *be, float *out, int64_t n, uint64_t seed,
                         uint64_t stream, uint64_t offset);

    /* ---- embeddings and data movement ---------------------------------------- */
    /* out(N,C) = table[idx[n]] (rows of table(V,C)); idx is int32 on the device */
    void (*embed_forward)(fmd_backend *be, float *out, const float *table, const int32_t *idx,
                          int64_t n, int64_t c);
    /* dtable[idx[n]] += dout(n) */
    void (*embed_backward)(fmd_backend *be, float *dtable, const float *dout, const int32_t *idx,
                           int64_t n, int64_t c);
    /* sinusoidal time embedding (DiT): half = dim/2, f_j = exp(-ln(max_period)*j/half),
     * a = t*time_scale*f_j; out(N,dim) = [cos(a), sin(a)] (zero pad if dim odd).
     * deriv != 0 gives d out / d t instead (for the JVP). */
    void (*timestep_embed)(fmd_backend *be, float *out, const float *t, int64_t n, int64_t dim,
                           float max_period, float time_scale, int deriv);
    /* out = beta*out + permute(in): in has shape dims[0..nd-1] (row-major),
     * out has shape dims[perm[0]], ..., dims[perm[nd-1]]; nd <= 6 */
    void (*permute)(fmd_backend *be, float *out, const float *in, int nd, const int64_t *dims,
                    const int *perm, float beta);
    /* 2-D strided copy: out[r*ld_out + j] = beta*out + in[r*ld_in + j], j < cols */
    void (*copy2d)(fmd_backend *be, float *out, int64_t ld_out, const float *in, int64_t ld_in,
                   int64_t rows, int64_t cols, float beta);
    /* 1 when any of n values is NaN or Inf, else 0 (host result) */
    int (*nonfinite)(fmd_backend *be, const float *x, int64_t n);

    /* ---- fused activations for the network engine (optional: lib/nn falls
     *      back to bias_add + act_forward / act_backward + bias_grad when NULL
     *      or beyond struct_size) ------------------------------------------ */
    /* pre(N,C) += bias(C) (bias may be NULL), then out = f(pre); out may equal
     * pre (then the pre-activation is not kept). */
    void (*bias_act_forward)(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                             int64_t n, int64_t c);
    /* dpre(N,C) = dout * f'(pre) (dpre may equal dout); dbias(C) += column sums
     * of dpre when dbias is not NULL.  With dbias NULL and dout a tangent this
     * is the forward-mode tangent of the activation. */
    void (*act_bias_backward)(fmd_backend *be, int kind, float *dpre, float *dbias,
                              const float *dout, const float *pre, int64_t n, int64_t c);
};

/* v, or 0 when v is subnormal (|v| < FLT_MIN): what the activation ops store.
 * A plain select, so it vectorises and compiles for the device as well. */
#define FMDB_FLUSH_SUBNORMAL(v) (fabsf(v) < FLT_MIN ? 0.0f : (v))

/* 1 when the ops table has the optional slot (inside the implementer's
 * struct_size and not NULL). */
#define FMDB_HAS(be, slot)                                                        \
    ((be)->ops->struct_size >= offsetof(fmd_backend_ops, slot) + sizeof(void (*)(void)) && \
     (be)->ops->slot != NULL)

/* Record the first error on a backend (sticky); returns the status.  Static
 * inline so that plugins need no symbol from libfmd. */
static inline fmd_status fmdb_fail(fmd_backend *be, fmd_status st, const char *fmt, ...)
{
    if (be->status == FMD_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(be->errmsg, sizeof be->errmsg, fmt, ap);
        va_end(ap);
        be->status = st;
    }
    return st;
}
/* Report a failed ->alloc: the message goes to be->errmsg (when no sticky
 * error holds it) without making the failure sticky. */
static inline void fmdb_alloc_failed(fmd_backend *be, const char *fmt, ...)
{
    if (be->status == FMD_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(be->errmsg, sizeof be->errmsg, fmt, ap);
        va_end(ap);
    }
}
/* 1 when no error is recorded. */
static inline int fmdb_ok(const fmd_backend *be) { return be->status == FMD_OK; }

/* Plugin entry point exported by libfmd-cuda.so:
 *   fmd_status fmd_backend_plugin_open(uint32_t abi, fmd_backend *be);
 * It fills be->ops, be->ctx, be->device, be->name; on failure it writes
 * be->errmsg and returns a status (FMD_ERR_BACKEND_UNAVAILABLE when no GPU). */
typedef fmd_status (*fmd_backend_plugin_open_fn)(uint32_t abi, fmd_backend *be);
#define FMDB_PLUGIN_SYMBOL "fmd_backend_plugin_open"

/* The CPU backend (always built in) and the plain-C reference backend that
 * every other backend is tested against (not openable by name). */
fmd_status fmdb_cpu_open(fmd_backend *be);
fmd_status fmdb_ref_open(fmd_backend *be);

/* Open a reference backend as a full handle (library-internal; for tests and
 * the self-check).  Release with fmd_backend_destroy. */
fmd_status fmdb_open_reference(fmd_backend **out);

#ifdef __cplusplus
}
#endif
#endif
