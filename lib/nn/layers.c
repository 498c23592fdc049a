/* layers.c - forward / backward / jvp of the network engine's layers, all
 * through the backend vtable (see layers.h for the shapes and contracts). */
#include <math.h>
#include "nn/layers.h"

#define OPS (be->ops)

/* ---- linear ---------------------------------------------------------------- */
void nn_linear_forward(fmd_backend *be, float *y, const float *x, const float *w, const float *b,
                       int64_t n, int64_t in, int64_t out, int acc)
{
    /* y(n,out) = x(n,in) * w(out,in)^T */
    OPS->gemm(be, 0, 1, n, out, in, 1.0f, x, in, w, in, acc ? 1.0f : 0.0f, y, out);
    if (b) OPS->bias_add(be, y, y, b, n, out);
}

void nn_linear_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, int64_t n, int64_t in, int64_t out,
                        float beta_dx)
{
    if (dx) OPS->gemm(be, 0, 0, n, in, out, 1.0f, dy, out, w, in, beta_dx, dx, in);
    if (dw) OPS->gemm(be, 1, 0, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db) OPS->bias_grad(be, db, dy, n, out);
}

void nn_linear_jvp(fmd_backend *be, float *ty, const float *tx, const float *w, int64_t n,
                   int64_t in, int64_t out, int acc)
{
    OPS->gemm(be, 0, 1, n, out, in, 1.0f, tx, in, w, in, acc ? 1.0f : 0.0f, ty, out);
}

/* ---- activations ------------------------------------------------------------ */
void nn_act_forward(fmd_backend *be, int kind, float *y, const float *x, int64_t n)
{
    OPS->act_forward(be, kind, y, x, n);
}

void nn_act_backward(fmd_backend *be, int kind, float *dx, const float *dy, const float *x,
                     int64_t n, float beta)
{
    OPS->act_backward(be, kind, dx, dy, x, n, beta);
}

void nn_act_jvp(fmd_backend *be, int kind, float *ty, const float *tx, const float *x, int64_t n)
{
    nn_act_bias_backward(be, kind, ty, NULL, tx, x, 1, n);
}

void nn_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                         int64_t n, int64_t c)
{
    if (FMDB_HAS(be, bias_act_forward)) {
        OPS->bias_act_forward(be, kind, out, pre, bias, n, c);
        return;
    }
    if (bias) OPS->bias_add(be, pre, pre, bias, n, c);
    OPS->act_forward(be, kind, out, pre, n * c);
}

void nn_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias, const float *dout,
                          const float *pre, int64_t n, int64_t c)
{
    if (FMDB_HAS(be, act_bias_backward)) {
        OPS->act_bias_backward(be, kind, dpre, dbias, dout, pre, n, c);
        return;
    }
    OPS->act_backward(be, kind, dpre, dout, pre, n * c, 0.0f);
    if (dbias) OPS->bias_grad(be, dbias, dpre, n, c);
}

/* ---- layernorm ---------------------------------------------------------------- */
void nn_layernorm_forward(fmd_backend *be, float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t n, int64_t c, float eps)
{
    OPS->layernorm_forward(be, y, mean, rstd, x, w, b, n, c, eps);
}

void nn_layernorm_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t n, int64_t c, float beta)
{
    OPS->layernorm_backward(be, dx, dw, db, dy, x, w, mean, rstd, n, c, beta);
}

void nn_layernorm_jvp(fmd_backend *be, float *ty, const float *tx, const float *x, const float *w,
                      const float *mean, const float *rstd, int64_t n, int64_t c)
{
    /* The Jacobian of the normalisation is symmetric, so the backward without
     * affine applied to the tangent is the tangent of the normalised output. */
    OPS->layernorm_backward(be, ty, NULL, NULL, tx, x, NULL, mean, rstd, n, c, 0.0f);
    if (w) OPS->bcast_mul(be, ty, ty, w, 1, n, c, 0.0f);
}

/* ---- timestep embedding ------------------------------------------------------ */
void nn_timestep_forward(fmd_backend *be, float *y, const float *t, int64_t n, int64_t dim,
                         float scale)
{
    OPS->timestep_embed(be, y, t, n, dim, 10000.0f, scale, 0);
}

void nn_timestep_jvp(fmd_backend *be, float *ty, const float *t, const float *tan_t, int64_t n,
                     int64_t dim, float scale)
{
    OPS->timestep_embed(be, ty, t, n, dim, 10000.0f, scale, 1);
    OPS->bcast_mul(be, ty, ty, tan_t, n, dim, 1, 0.0f);   /* per-row scalar */
}

/* ---- timestep embedder (sinusoid -> linear -> SiLU -> linear) ---------------- */
void nn_embedder_forward(fmd_backend *be, float *y, const nn_embedder_act *act, const float *t,
                         const float *w1, const float *b1, const float *w2, const float *b2,
                         int64_t n, int64_t freq, int64_t hid, float scale, int acc)
{
    nn_timestep_forward(be, act->freq, t, n, freq, scale);
    nn_linear_forward(be, act->h, act->freq, w1, NULL, n, freq, hid, 0);
    nn_bias_act_forward(be, FMDB_ACT_SILU, act->a, act->h, b1, n, hid);
    nn_linear_forward(be, y, act->a, w2, b2, n, hid, hid, acc);
}

void nn_embedder_backward(fmd_backend *be, float *dw1, float *db1, float *dw2, float *db2,
                          const float *dy, const nn_embedder_act *act, const float *w2,
                          float *scratch, int64_t n, int64_t freq, int64_t hid)
{
    nn_linear_backward(be, scratch, dw2, db2, dy, act->a, w2, n, hid, hid, 0.0f);
    nn_act_bias_backward(be, FMDB_ACT_SILU, scratch, db1, scratch, act->h, n, hid);
    nn_linear_backward(be, NULL, dw1, NULL, scratch, act->freq, NULL, n, freq, hid, 0.0f);
}

void nn_embedder_jvp(fmd_backend *be, float *ty, const nn_embedder_act *tact,
                     const nn_embedder_act *act, const float *t, const float *tan_t,
                     const float *w1, const float *w2, int64_t n, int64_t freq, int64_t hid,
                     float scale, int acc)
{
    nn_timestep_jvp(be, tact->freq, t, tan_t, n, freq, scale);
    nn_linear_jvp(be, tact->h, tact->freq, w1, n, freq, hid, 0);
    nn_act_jvp(be, FMDB_ACT_SILU, tact->a, tact->h, act->h, n * hid);
    nn_linear_jvp(be, ty, tact->a, w2, n, hid, hid, acc);
}

/* ---- adaLN modulate ------------------------------------------------------------ */
void nn_modulate_forward(fmd_backend *be, float *y, const float *x, const float *shift,
                         const float *scale, int64_t ld, int64_t b, int64_t t, int64_t c)
{
    OPS->modulate_forward(be, y, x, shift, scale, ld, b, t, c);
}

void nn_modulate_backward(fmd_backend *be, float *dx, float *dshift, float *dscale,
                          const float *dy, const float *x, const float *scale, int64_t ld,
                          int64_t b, int64_t t, int64_t c, float beta)
{
    OPS->modulate_backward(be, dx, dshift, dscale, dy, x, scale, ld, b, t, c, beta);
}

void nn_modulate_jvp(fmd_backend *be, float *ty, const float *tx, const float *x,
                     const float *scale, const float *tshift, const float *tscale, int64_t ld,
                     int64_t b, int64_t t, int64_t c)
{
    /* ty = tx*(1+scale) + tshift, then + x*tscale (tscale rows contiguous: ld == c) */
    OPS->modulate_forward(be, ty, tx, tshift, scale, ld, b, t, c);
    OPS->bcast_mul(be, ty, x, tscale, b, t, c, 1.0f);
}

/* ---- gated residual ------------------------------------------------------------- */
void nn_gate_forward(fmd_backend *be, float *x, const float *y, const float *gate, int64_t ld,
                     int64_t b, int64_t t, int64_t c)
{
    OPS->bcast_mul(be, x, y, gate, b, t, c, 1.0f);
}

void nn_gate_backward(fmd_backend *be, float *dy, float *dgate, const float *dx, const float *y,
                      const float *gate, int64_t ld, int64_t b, int64_t t, int64_t c)
{
    OPS->bcast_mul(be, dy, dx, gate, b, t, c, 0.0f);
    OPS->bcast_mul_reduce(be, dgate, dx, y, b, t, c, 0.0f);
}

void nn_gate_jvp(fmd_backend *be, float *tx, const float *ty, const float *tgate, const float *y,
                 const float *gate, int64_t ld, int64_t b, int64_t t, int64_t c)
{
    OPS->bcast_mul(be, tx, y, tgate, b, t, c, 1.0f);
    OPS->bcast_mul(be, tx, ty, gate, b, t, c, 1.0f);
}

/* ---- patchify / unpatchify ------------------------------------------------------ */
void nn_patchify(fmd_backend *be, float *p, const float *x, int64_t b, int64_t c, int64_t h,
                 int64_t w, int64_t ps, float beta)
{
    /* (B, C, Hp, P, Wp, P) -> (B, Hp, Wp, C, P, P) */
    int64_t dims[6] = {b, c, h / ps, ps, w / ps, ps};
    static const int perm[6] = {0, 2, 4, 1, 3, 5};
    OPS->permute(be, p, x, 6, dims, perm, beta);
}

void nn_patchify_backward(fmd_backend *be, float *dx, const float *dp, int64_t b, int64_t c,
                          int64_t h, int64_t w, int64_t ps, float beta)
{
    /* (B, Hp, Wp, C, P, P) -> (B, C, Hp, P, Wp, P) */
    int64_t dims[6] = {b, h / ps, w / ps, c, ps, ps};
    static const int perm[6] = {0, 3, 1, 4, 2, 5};
    OPS->permute(be, dx, dp, 6, dims, perm, beta);
}

void nn_unpatchify(fmd_backend *be, float *x, const float *p, int64_t b, int64_t c, int64_t h,
                   int64_t w, int64_t ps)
{
    /* (B, Hp, Wp, P, P, C) -> (B, C, Hp, P, Wp, P)  (DiT: nhwpqc -> nchpwq) */
    int64_t dims[6] = {b, h / ps, w / ps, ps, ps, c};
    static const int perm[6] = {0, 5, 1, 3, 2, 4};
    OPS->permute(be, x, p, 6, dims, perm, 0.0f);
}

void nn_unpatchify_backward(fmd_backend *be, float *dp, const float *dx, int64_t b, int64_t c,
                            int64_t h, int64_t w, int64_t ps)
{
    /* (B, C, Hp, P, Wp, P) -> (B, Hp, Wp, P, P, C) */
    int64_t dims[6] = {b, c, h / ps, ps, w / ps, ps};
    static const int perm[6] = {0, 2, 4, 3, 5, 1};
    OPS->permute(be, dp, dx, 6, dims, perm, 0.0f);
}

/* ---- 2-D sin-cos positional embedding (MAE's get_2d_sincos_pos_embed) ------------- */
void nn_pos_embed_2d(float *pe, int64_t dim, int64_t grid)
{
    /* First half encodes the column index, second half the row index (MAE's
     * meshgrid(w, h) order); each half is [sin, cos] of pos * 10000^(-k/(dim/4)). */
    int64_t quarter = dim / 4;
    for (int64_t i = 0; i < grid; i++)
        for (int64_t j = 0; j < grid; j++) {
            float *row = pe + (i * grid + j) * dim;
            for (int64_t k = 0; k < quarter; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / (double)quarter);
                row[k] = (float)sin((double)j * omega);
                row[quarter + k] = (float)cos((double)j * omega);
                row[2 * quarter + k] = (float)sin((double)i * omega);
                row[3 * quarter + k] = (float)cos((double)i * omega);
            }
            for (int64_t k = 4 * quarter; k < dim; k++) row[k] = 0.0f;
        }
}

/* ---- multi-head self-attention --------------------------------------------------- */
/* (B, T, 3, H, hd) -> (3, B, H, T, hd) */
static void split_heads(fmd_backend *be, float *q3, const float *qkv, int64_t b, int64_t t,
                        int64_t heads, int64_t hd)
{
    int64_t dims[5] = {b, t, 3, heads, hd};
    static const int perm[5] = {2, 0, 3, 1, 4};
    OPS->permute(be, q3, qkv, 5, dims, perm, 0.0f);
}

/* (B, H, T, hd) <-> (B, T, H, hd) (the permutation is its own inverse) */
static void swap_heads(fmd_backend *be, float *out, const float *in, int64_t b, int64_t d1,
                       int64_t d2, int64_t hd)
{
    int64_t dims[4] = {b, d1, d2, hd};
    static const int perm[4] = {0, 2, 1, 3};
    OPS->permute(be, out, in, 4, dims, perm, 0.0f);
}

int64_t nn_attn_scratch_floats(int64_t b, int64_t t, int64_t c, int64_t heads)
{
    /* backward: dqkv (3BTC) + do (BTC) + dq3 (3BTC) + dP (BHTT);
     * jvp uses less (tS (BHTT) only; tangents live in the caller's ta). */
    return 7 * b * t * c + b * heads * t * t;
}

void nn_attn_forward(fmd_backend *be, float *y, const nn_attn_act *a, const float *x,
                     const float *wqkv, const float *bqkv, const float *wproj,
                     const float *bproj, int64_t b, int64_t t, int64_t c, int64_t heads)
{
    int64_t hd = c / heads, bh = b * heads, n = b * t;
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = a->q, *k = a->q + bh * t * hd, *v = a->q + 2 * bh * t * hd;
    nn_linear_forward(be, a->qkv, x, wqkv, bqkv, n, c, 3 * c, 0);
    split_heads(be, a->q, a->qkv, b, t, heads, hd);
    /* P = softmax(scale * Q K^T)   (B*H, T, T) */
    OPS->gemm_batched(be, 0, 1, t, t, hd, scale, q, hd, t * hd, k, hd, t * hd, 0.0f, a->p, t,
                      t * t, bh);
    OPS->softmax_forward(be, a->p, a->p, bh * t, t, 1.0f);
    /* O = P V   (B*H, T, hd) */
    OPS->gemm_batched(be, 0, 0, t, hd, t, 1.0f, a->p, t, t * t, v, hd, t * hd, 0.0f, a->o, hd,
                      t * hd, bh);
    swap_heads(be, a->om, a->o, b, heads, t, hd);
    nn_linear_forward(be, y, a->om, wproj, bproj, n, c, c, 0);
}

void nn_attn_backward(fmd_backend *be, float *dx, float *dwqkv, float *dbqkv, float *dwproj,
                      float *dbproj, const float *dy, const nn_attn_act *a, const float *x,
                      const float *wqkv, const float *wproj, float *scratch, int64_t b,
                      int64_t t, int64_t c, int64_t heads)
{
    int64_t hd = c / heads, bh = b * heads, n = b * t, blk = bh * t * hd;
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = a->q, *k = a->q + blk, *v = a->q + 2 * blk;
    float *s_qkv = scratch;              /* (B,T,3C): dom first, then dqkv */
    float *s_do = s_qkv + 3 * n * c;     /* (B,H,T,hd) */
    float *s_dq3 = s_do + n * c;         /* (3,B,H,T,hd) */
    float *s_dp = s_dq3 + 3 * n * c;     /* (B,H,T,T) */
    float *dq = s_dq3, *dk = s_dq3 + blk, *dv = s_dq3 + 2 * blk;

    nn_linear_backward(be, s_qkv, dwproj, dbproj, dy, a->om, wproj, n, c, c, 0.0f);
    swap_heads(be, s_do, s_qkv, b, t, heads, hd);
    /* dP = dO V^T ; dV = P^T dO */
    OPS->gemm_batched(be, 0, 1, t, t, hd, 1.0f, s_do, hd, t * hd, v, hd, t * hd, 0.0f, s_dp, t,
                      t * t, bh);
    OPS->gemm_batched(be, 1, 0, t, hd, t, 1.0f, a->p, t, t * t, s_do, hd, t * hd, 0.0f, dv, hd,
                      t * hd, bh);
    /* dS = softmax backward (in place) */
    OPS->softmax_backward(be, s_dp, s_dp, a->p, bh * t, t, 1.0f);
    /* dQ = scale dS K ; dK = scale dS^T Q */
    OPS->gemm_batched(be, 0, 0, t, hd, t, scale, s_dp, t, t * t, k, hd, t * hd, 0.0f, dq, hd,
                      t * hd, bh);
    OPS->gemm_batched(be, 1, 0, t, hd, t, scale, s_dp, t, t * t, q, hd, t * hd, 0.0f, dk, hd,
                      t * hd, bh);
    /* (3, B, H, T, hd) -> (B, T, 3, H, hd) */
    {
        int64_t dims[5] = {3, b, heads, t, hd};
        static const int perm[5] = {1, 3, 0, 2, 4};
        OPS->permute(be, s_qkv, s_dq3, 5, dims, perm, 0.0f);
    }
    nn_linear_backward(be, dx, dwqkv, dbqkv, s_qkv, x, wqkv, n, c, 3 * c, 0.0f);
}

void nn_attn_jvp(fmd_backend *be, float *ty, const nn_attn_act *ta, const nn_attn_act *a,
                 const float *tx, const float *wqkv, const float *wproj, float *scratch,
                 int64_t b, int64_t t, int64_t c, int64_t heads)
{
    int64_t hd = c / heads, bh = b * heads, n = b * t, blk = bh * t * hd;
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = a->q, *k = a->q + blk, *v = a->q + 2 * blk;
    const float *tq = ta->q, *tk = ta->q + blk, *tv = ta->q + 2 * blk;
    float *ts = scratch;                 /* (B,H,T,T) tangent of the scores */

    nn_linear_jvp(be, ta->qkv, tx, wqkv, n, c, 3 * c, 0);
    split_heads(be, ta->q, ta->qkv, b, t, heads, hd);
    OPS->gemm_batched(be, 0, 1, t, t, hd, scale, tq, hd, t * hd, k, hd, t * hd, 0.0f, ts, t,
                      t * t, bh);
    OPS->gemm_batched(be, 0, 1, t, t, hd, scale, q, hd, t * hd, tk, hd, t * hd, 1.0f, ts, t,
                      t * t, bh);
    OPS->softmax_backward(be, ta->p, ts, a->p, bh * t, t, 1.0f);
    OPS->gemm_batched(be, 0, 0, t, hd, t, 1.0f, ta->p, t, t * t, v, hd, t * hd, 0.0f, ta->o, hd,
                      t * hd, bh);
    OPS->gemm_batched(be, 0, 0, t, hd, t, 1.0f, a->p, t, t * t, tv, hd, t * hd, 1.0f, ta->o, hd,
                      t * hd, bh);
    swap_heads(be, ta->om, ta->o, b, heads, t, hd);
    nn_linear_jvp(be, ty, ta->om, wproj, n, c, c, 0);
}
