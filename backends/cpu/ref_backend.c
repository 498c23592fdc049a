/* ref_backend.c - the reference backend: every op as the plainest possible
 * single-threaded C, accumulating in double.  It is not meant to be fast; it
 * is what the CPU and CUDA backends are compared with (tests/test_backend_ops.c
 * and fmd_backend_selfcheck).  Host memory, so upload/download are copies. */
#include <math.h>
#include <string.h>
#include "backend.h"
#include "util/philox.h"
#include "util/util.h"
#include "cpu/cpu_ops_nn.h"

static void ref_destroy(fmd_backend *be) { (void)be; }

static void *ref_alloc(fmd_backend *be, size_t bytes)
{
    void *p = fmd_malloc(bytes);
    if (!p) fmdb_alloc_failed(be, "ref: out of memory allocating %zu bytes", bytes);
    return p;
}
static void ref_free(fmd_backend *be, void *p) { fmd_free(p); }
static void ref_memset0(fmd_backend *be, void *p, size_t n) { if (n) memset(p, 0, n); }
static void ref_copy(fmd_backend *be, void *d, const void *s, size_t n) { if (n) memmove(d, s, n); }
static fmd_status ref_sync(fmd_backend *be) { return be->status; }

static float upd(float old, double v, float beta) { return (float)(beta == 0.0f ? v : beta * (double)old + v); }

static void ref_gemm_batched(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                             const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb, int64_t sb,
                             float beta, float *c, int64_t ldc, int64_t sc, int64_t batch)
{
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0.0;
                for (int64_t l = 0; l < k; l++) {
                    double av = ta ? a[p * sa + l * lda + i] : a[p * sa + i * lda + l];
                    double bv = tb ? b[p * sb + j * ldb + l] : b[p * sb + l * ldb + j];
                    s += av * bv;
                }
                float *cv = &c[p * sc + i * ldc + j];
                *cv = upd(*cv, alpha * s, beta);
            }
}

static void ref_gemm(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    ref_gemm_batched(be, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

static void ref_bias_add(fmd_backend *be, float *out, const float *x, const float *bias, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n * c; i++) out[i] = x[i] + bias[i % c];
}

static void ref_bias_grad(fmd_backend *be, float *db, const float *dout, int64_t n, int64_t c)
{
    for (int64_t j = 0; j < c; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += dout[i * c + j];
        db[j] = (float)(db[j] + s);
    }
}

static void ref_bcast_mul(fmd_backend *be, float *out, const float *x, const float *g, int64_t b, int64_t t,
                          int64_t c, float beta)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t k = 0; k < t; k++)
            for (int64_t j = 0; j < c; j++) {
                int64_t o = (i * t + k) * c + j;
                out[o] = upd(out[o], (double)x[o] * g[i * c + j], beta);
            }
}

static void ref_bcast_mul_reduce(fmd_backend *be, float *dg, const float *dout, const float *x, int64_t b,
                                 int64_t t, int64_t c, float beta)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < c; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < t; k++) s += (double)dout[(i * t + k) * c + j] * x[(i * t + k) * c + j];
            dg[i * c + j] = upd(dg[i * c + j], s, beta);
        }
}

static void ref_axpby(fmd_backend *be, float *out, float alpha, const float *x, float beta, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) out[i] = (float)((double)alpha * x[i] + (beta == 0.0f ? 0.0 : (double)beta * y[i]));
}

static void ref_affine(fmd_backend *be, float *x, float alpha, float beta, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)((double)alpha * x[i] + beta);
}

static double ref_act(int kind, double x)
{
    if (kind == FMDB_ACT_SILU) return x / (1.0 + exp(-x));
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static double ref_act_deriv(int kind, double x)
{
    if (kind == FMDB_ACT_SILU) {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 + x * (1.0 - s));
    }
    double k = sqrt(2.0 / M_PI), th = tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
}

static void ref_act_forward(fmd_backend *be, int kind, float *out, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float y = (float)ref_act(kind, x[i]);
        out[i] = FMDB_FLUSH_SUBNORMAL(y);
    }
}

static void ref_act_backward(fmd_backend *be, int kind, float *dx, const float *dout, const float *x, int64_t n,
                             float beta)
{
    for (int64_t i = 0; i < n; i++) {
        float r = upd(dx[i], dout[i] * ref_act_deriv(kind, x[i]), beta);
        dx[i] = FMDB_FLUSH_SUBNORMAL(r);
    }
}

static void ref_layernorm_forward(fmd_backend *be, float *out, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, int64_t n, int64_t c, float eps)
{
    for (int64_t i = 0; i < n; i++) {
        double mu = 0.0, var = 0.0;
        for (int64_t j = 0; j < c; j++) mu += x[i * c + j];
        mu /= (double)c;
        for (int64_t j = 0; j < c; j++) var += (x[i * c + j] - mu) * (x[i * c + j] - mu);
        double r = 1.0 / sqrt(var / (double)c + eps);
        for (int64_t j = 0; j < c; j++) {
            double y = (x[i * c + j] - mu) * r;
            out[i * c + j] = (float)(y * (w ? w[j] : 1.0) + (b ? b[j] : 0.0));
        }
        if (mean) mean[i] = (float)mu;
        if (rstd) rstd[i] = (float)r;
    }
}

static void ref_layernorm_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dout,
                                   const float *x, const float *w, const float *mean, const float *rstd,
                                   int64_t n, int64_t c, float beta)
{
    for (int64_t i = 0; i < n; i++) {
        double mu = mean[i], r = rstd[i], sg = 0.0, sgx = 0.0;
        for (int64_t j = 0; j < c; j++) {
            double g = dout[i * c + j] * (w ? w[j] : 1.0);
            sg += g;
            sgx += g * (x[i * c + j] - mu) * r;
        }
        sg /= (double)c;
        sgx /= (double)c;
        for (int64_t j = 0; j < c; j++) {
            double xh = (x[i * c + j] - mu) * r;
            double g = dout[i * c + j] * (w ? w[j] : 1.0);
            if (dx) dx[i * c + j] = upd(dx[i * c + j], r * (g - sg - xh * sgx), beta);
            if (dw) dw[j] = (float)(dw[j] + dout[i * c + j] * xh);
            if (db) db[j] += dout[i * c + j];
        }
    }
}

static void ref_softmax_forward(fmd_backend *be, float *out, const float *x, int64_t n, int64_t c, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        double mx = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < c; j++) if ((double)scale * x[i * c + j] > mx) mx = (double)scale * x[i * c + j];
        for (int64_t j = 0; j < c; j++) s += exp((double)scale * x[i * c + j] - mx);
        for (int64_t j = 0; j < c; j++) out[i * c + j] = (float)(exp((double)scale * x[i * c + j] - mx) / s);
    }
}

static void ref_softmax_backward(fmd_backend *be, float *dx, const float *dout, const float *y, int64_t n,
                                 int64_t c, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) s += (double)dout[i * c + j] * y[i * c + j];
        for (int64_t j = 0; j < c; j++) dx[i * c + j] = (float)(scale * y[i * c + j] * (dout[i * c + j] - s));
    }
}

static void ref_modulate_forward(fmd_backend *be, float *out, const float *x, const float *shift, const float *scale,
                                 int64_t ld, int64_t b, int64_t t, int64_t c)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t k = 0; k < t; k++)
            for (int64_t j = 0; j < c; j++) {
                int64_t o = (i * t + k) * c + j;
                out[o] = (float)((double)x[o] * (1.0 + scale[i * ld + j]) + shift[i * ld + j]);
            }
}

static void ref_modulate_backward(fmd_backend *be, float *dx, float *dshift, float *dscale, const float *dout,
                                  const float *x, const float *scale, int64_t ld, int64_t b, int64_t t,
                                  int64_t c, float beta)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < c; j++) {
            double ss = 0.0, sx = 0.0;
            for (int64_t k = 0; k < t; k++) {
                int64_t o = (i * t + k) * c + j;
                ss += dout[o];
                sx += (double)dout[o] * x[o];
                if (dx) dx[o] = upd(dx[o], dout[o] * (1.0 + scale[i * ld + j]), beta);
            }
            if (dshift) dshift[i * ld + j] = (float)ss;
            if (dscale) dscale[i * ld + j] = (float)sx;
        }
}

static void ref_reduce(fmd_backend *be, int kind, const float *x, int64_t n, double *out)
{
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (kind == FMDB_RED_SUM) acc += x[i];
        else if (kind == FMDB_RED_SUMSQ) acc += (double)x[i] * x[i];
        else {
            double a = fabs((double)x[i]);
            if (a != a) a = INFINITY;
            if (a > acc) acc = a;
        }
    }
    *out = acc;
}

static void ref_row_dot(fmd_backend *be, float *out, const float *x, const float *y, int64_t n, int64_t c, float beta)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < c; j++) s += (double)x[i * c + j] * y[i * c + j];
        out[i] = upd(out[i], s, beta);
    }
}

static void ref_adamw(fmd_backend *be, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                      float b2, float eps, float wd, int64_t step, float gs)
{
    double c1 = 1.0 - pow(b1, (double)step), c2 = 1.0 - pow(b2, (double)step);
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gs;
        double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(p[i] - lr * ((mi / c1) / (sqrt(vi / c2) + eps) + wd * (double)p[i]));
    }
}

static void ref_ema(fmd_backend *be, float *e, const float *p, int64_t n, float decay)
{
    for (int64_t i = 0; i < n; i++) e[i] = (float)(decay * (double)e[i] + (1.0 - decay) * (double)p[i]);
}

static void ref_fill_normal(fmd_backend *be, float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    /* Box-Muller in double from the same Philox words */
    for (int64_t i = 0; i < n; i++) {
        uint64_t e = off + (uint64_t)i;
        fmd_philox_ctr r = fmd_philox_block(seed, stream, e >> 2);
        int pair = (int)(e & 2);
        double u1 = fmd_philox_u01(r.v[pair]), u2 = fmd_philox_u01(r.v[pair + 1]);
        double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        out[i] = (float)((e & 1) ? rad * sin(th) : rad * cos(th));
    }
}

static void ref_fill_uniform(fmd_backend *be, float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t off)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t e = off + (uint64_t)i;
        out[i] = fmd_philox_u01(fmd_philox_block(seed, stream, e >> 2).v[e & 3]);
    }
}

static void ref_embed_forward(fmd_backend *be, float *out, const float *table, const int32_t *idx, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) out[i * c + j] = table[(int64_t)idx[i] * c + j];
}

static void ref_embed_backward(fmd_backend *be, float *dt, const float *dout, const int32_t *idx, int64_t n, int64_t c)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) dt[(int64_t)idx[i] * c + j] += dout[i * c + j];
}

static void ref_timestep_embed(fmd_backend *be, float *out, const float *t, int64_t n, int64_t dim,
                               float max_period, float time_scale, int deriv)
{
    int64_t half = dim / 2;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < half; j++) {
            double f = exp(-log((double)max_period) * (double)j / (double)half);
            double a = (double)t[i] * time_scale * f;
            out[i * dim + j] = (float)(deriv ? -sin(a) * time_scale * f : cos(a));
            out[i * dim + half + j] = (float)(deriv ? cos(a) * time_scale * f : sin(a));
        }
        if (dim & 1) out[i * dim + dim - 1] = 0.0f;
    }
}

static void ref_permute(fmd_backend *be, float *out, const float *in, int nd, const int64_t *dims, const int *perm,
                        float beta)
{
    int64_t total = 1, idx[6] = {0};
    for (int d = 0; d < nd; d++) total *= dims[d];
    for (int64_t lin = 0; lin < total; lin++) {
        int64_t rem = lin;
        for (int d = nd - 1; d >= 0; d--) { idx[d] = rem % dims[d]; rem /= dims[d]; }
        int64_t o = 0;
        for (int d = 0; d < nd; d++) o = o * dims[perm[d]] + idx[perm[d]];
        out[o] = upd(out[o], in[lin], beta);
    }
}

static void ref_copy2d(fmd_backend *be, float *out, int64_t ldo, const float *in, int64_t ldi, int64_t rows,
                       int64_t cols, float beta)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) out[r * ldo + j] = upd(out[r * ldo + j], in[r * ldi + j], beta);
}

static int ref_nonfinite(fmd_backend *be, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) if (!isfinite(x[i])) return 1;
    return 0;
}

static const fmd_backend_ops ref_ops = {
    .abi_version = FMDB_ABI_VERSION,
    .struct_size = sizeof(fmd_backend_ops),
    .destroy = ref_destroy, .alloc = ref_alloc, .free = ref_free, .memset0 = ref_memset0, .copy = ref_copy,
    .upload = ref_copy, .download = ref_copy, .sync = ref_sync,
    .gemm = ref_gemm, .gemm_batched = ref_gemm_batched,
    .bias_add = ref_bias_add, .bias_grad = ref_bias_grad,
    .bcast_mul = ref_bcast_mul, .bcast_mul_reduce = ref_bcast_mul_reduce,
    .axpby = ref_axpby, .affine = ref_affine,
    .act_forward = ref_act_forward, .act_backward = ref_act_backward,
    .layernorm_forward = ref_layernorm_forward, .layernorm_backward = ref_layernorm_backward,
    .softmax_forward = ref_softmax_forward, .softmax_backward = ref_softmax_backward,
    .modulate_forward = ref_modulate_forward, .modulate_backward = ref_modulate_backward,
    .reduce = ref_reduce, .row_dot = ref_row_dot, .adamw = ref_adamw, .ema = ref_ema,
    .fill_normal = ref_fill_normal, .fill_uniform = ref_fill_uniform,
    .embed_forward = ref_embed_forward, .embed_backward = ref_embed_backward,
    .timestep_embed = ref_timestep_embed, .permute = ref_permute, .copy2d = ref_copy2d,
    .nonfinite = ref_nonfinite,
    .bias_act_forward = fmdb_ref_bias_act_forward,   /* cpu_ops_nn.c (network engine) */
    .act_bias_backward = fmdb_ref_act_bias_backward,
};

fmd_status fmdb_ref_open(fmd_backend *be)
{
    be->ops = &ref_ops;
    be->ctx = NULL;
    be->threads = 1;
    snprintf(be->name, sizeof be->name, "ref");
    snprintf(be->device, sizeof be->device, "reference: plain C, double accumulation");
    return FMD_OK;
}
