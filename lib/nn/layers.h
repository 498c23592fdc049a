/* layers.h - the hand-written layers of the network engine (llm.c style).
 *
 * Every layer has a forward, a backward (activation gradients are written
 * with `=` unless a beta says otherwise, parameter gradients accumulate with
 * `+=`) and a jvp: the forward-mode tangent of its output given the tangents
 * of its inputs (tangents come from the time inputs t and delta only).
 * Everything runs through the backend vtable; pointers are device pointers.
 * Weights are stored as PyTorch stores them: a linear's weight is (out, in).
 */
#ifndef FMD_NN_LAYERS_H
#define FMD_NN_LAYERS_H

#include <stdint.h>
#include "backend.h"

/* ---- linear: y(N,out) = x(N,in) W(out,in)^T + b(out) -------------------- */
/* acc != 0 adds into y instead of overwriting.  b may be NULL. */
void nn_linear_forward(fmd_backend *be, float *y, const float *x, const float *w, const float *b,
                       int64_t n, int64_t in, int64_t out, int acc);
/* dx(N,in) = beta_dx*dx + dy W (dx may be NULL); dw(out,in) += dy^T x;
 * db(out) += sum_rows dy (dw/db may be NULL). */
void nn_linear_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, int64_t n, int64_t in, int64_t out,
                        float beta_dx);
/* ty(N,out) = (acc ? ty : 0) + tx W^T  (the bias has no tangent) */
void nn_linear_jvp(fmd_backend *be, float *ty, const float *tx, const float *w, int64_t n,
                   int64_t in, int64_t out, int acc);

/* ---- activations (FMDB_ACT_SILU, FMDB_ACT_GELU_TANH) -------------------- */
void nn_act_forward(fmd_backend *be, int kind, float *y, const float *x, int64_t n);
/* dx = beta*dx + dy * f'(x) */
void nn_act_backward(fmd_backend *be, int kind, float *dx, const float *dy, const float *x,
                     int64_t n, float beta);
/* ty = f'(x) * tx */
void nn_act_jvp(fmd_backend *be, int kind, float *ty, const float *tx, const float *x, int64_t n);

/* out(N,C) = f(pre + bias), pre updated in place to pre + bias (bias may be
 * NULL); the fused backend slot when present, else bias_add + act_forward. */
void nn_bias_act_forward(fmd_backend *be, int kind, float *out, float *pre, const float *bias,
                         int64_t n, int64_t c);
/* dpre = dout * f'(pre) (dpre may equal dout); dbias += column sums when not
 * NULL. */
void nn_act_bias_backward(fmd_backend *be, int kind, float *dpre, float *dbias, const float *dout,
                          const float *pre, int64_t n, int64_t c);

/* ---- LayerNorm over the last dim, eps as DiT (1e-6); w/b NULL = no affine */
void nn_layernorm_forward(fmd_backend *be, float *y, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int64_t n, int64_t c, float eps);
void nn_layernorm_backward(fmd_backend *be, float *dx, float *dw, float *db, const float *dy,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int64_t n, int64_t c, float beta);
/* ty = w * J_norm tx (w NULL: no affine) */
void nn_layernorm_jvp(fmd_backend *be, float *ty, const float *tx, const float *x, const float *w,
                      const float *mean, const float *rstd, int64_t n, int64_t c);

/* ---- sinusoidal timestep embedding [cos, sin] of t*scale (DiT) ------------ */
void nn_timestep_forward(fmd_backend *be, float *y, const float *t, int64_t n, int64_t dim,
                         float scale);
/* ty(N,dim) = d y/d t * tan_t(N) */
void nn_timestep_jvp(fmd_backend *be, float *ty, const float *t, const float *tan_t, int64_t n,
                     int64_t dim, float scale);

/* ---- timestep embedder: sinusoid -> linear -> SiLU -> linear (DiT's
 *      TimestepEmbedder; mlp.0 = w1/b1 (hid, freq), mlp.2 = w2/b2 (hid, hid)) */
typedef struct nn_embedder_act {
    float *freq;  /* (N, freq) sinusoid            */
    float *h;     /* (N, hid) mlp.0 output          */
    float *a;     /* (N, hid) SiLU(h)               */
} nn_embedder_act;
/* y(N,hid) (+)= embedder(t) */
void nn_embedder_forward(fmd_backend *be, float *y, const nn_embedder_act *act, const float *t,
                         const float *w1, const float *b1, const float *w2, const float *b2,
                         int64_t n, int64_t freq, int64_t hid, float scale, int acc);
/* grads of the weights given dy; scratch (N,hid) */
void nn_embedder_backward(fmd_backend *be, float *dw1, float *db1, float *dw2, float *db2,
                          const float *dy, const nn_embedder_act *act, const float *w2,
                          float *scratch, int64_t n, int64_t freq, int64_t hid);
/* ty(N,hid) (+)= tangent along tan_t; tact holds the tangent buffers */
void nn_embedder_jvp(fmd_backend *be, float *ty, const nn_embedder_act *tact,
                     const nn_embedder_act *act, const float *t, const float *tan_t,
                     const float *w1, const float *w2, int64_t n, int64_t freq, int64_t hid,
                     float scale, int acc);

/* ---- adaLN modulate: y(B,T,C) = x*(1+scale(B,C)) + shift(B,C), rows of
 *      shift/scale have stride ld --------------------------------------- */
void nn_modulate_forward(fmd_backend *be, float *y, const float *x, const float *shift,
                         const float *scale, int64_t ld, int64_t b, int64_t t, int64_t c);
/* dx = beta*dx + dy*(1+scale); dshift, dscale overwritten (stride ld) */
void nn_modulate_backward(fmd_backend *be, float *dx, float *dshift, float *dscale,
                          const float *dy, const float *x, const float *scale, int64_t ld,
                          int64_t b, int64_t t, int64_t c, float beta);
/* ty = tx*(1+scale) + x*tscale + tshift (tscale rows contiguous: ld == c) */
void nn_modulate_jvp(fmd_backend *be, float *ty, const float *tx, const float *x,
                     const float *scale, const float *tshift, const float *tscale, int64_t ld,
                     int64_t b, int64_t t, int64_t c);

/* ---- gated residual: x(B,T,C) += gate(B,C) * y(B,T,C), gate rows stride ld */
void nn_gate_forward(fmd_backend *be, float *x, const float *y, const float *gate, int64_t ld,
                     int64_t b, int64_t t, int64_t c);
/* dy = dx*gate; dgate(B, stride ld) = sum_t dx*y */
void nn_gate_backward(fmd_backend *be, float *dy, float *dgate, const float *dx, const float *y,
                      const float *gate, int64_t ld, int64_t b, int64_t t, int64_t c);
/* tx += tgate*y + gate*ty */
void nn_gate_jvp(fmd_backend *be, float *tx, const float *ty, const float *tgate, const float *y,
                 const float *gate, int64_t ld, int64_t b, int64_t t, int64_t c);

/* ---- patchify / unpatchify (DiT's PatchEmbed order and unpatchify) --------
 * x (B, C, H, W) -> p (B, T, C*P*P) with T = (H/P)*(W/P), token (hh, ww)
 * row-major, features ordered (c, py, px) as a Conv2d weight (hid, C, P, P)
 * flattens; unpatchify maps (B, T, P*P*C) with features (py, px, c) to
 * (B, C, H, W), as DiT's final layer output. */
void nn_patchify(fmd_backend *be, float *p, const float *x, int64_t b, int64_t c, int64_t h,
                 int64_t w, int64_t ps, float beta);
void nn_patchify_backward(fmd_backend *be, float *dx, const float *dp, int64_t b, int64_t c,
                          int64_t h, int64_t w, int64_t ps, float beta);
void nn_unpatchify(fmd_backend *be, float *x, const float *p, int64_t b, int64_t c, int64_t h,
                   int64_t w, int64_t ps);
void nn_unpatchify_backward(fmd_backend *be, float *dp, const float *dx, int64_t b, int64_t c,
                            int64_t h, int64_t w, int64_t ps);

/* ---- fixed 2-D sin-cos positional embedding (MAE / DiT), host memory:
 *      pe(grid*grid, dim) ---------------------------------------------------- */
void nn_pos_embed_2d(float *pe, int64_t dim, int64_t grid);

/* ---- multi-head self-attention (timm Attention: fused qkv, proj) ---------- */
typedef struct nn_attn_act {
    float *qkv;   /* (B, T, 3C)  qkv linear output                         */
    float *q;     /* (3, B, H, T, hd) permuted q, k, v (q = this, k, v follow) */
    float *p;     /* (B, H, T, T) softmax probabilities                     */
    float *o;     /* (B, H, T, hd) P V                                      */
    float *om;    /* (B, T, C)   heads merged, input of proj                */
} nn_attn_act;
/* y(B,T,C) = proj(attention(x)) */
void nn_attn_forward(fmd_backend *be, float *y, const nn_attn_act *a, const float *x,
                     const float *wqkv, const float *bqkv, const float *wproj,
                     const float *bproj, int64_t b, int64_t t, int64_t c, int64_t heads);
/* dx = dL/dx (overwritten) given dy; weight grads +=; scratch needs
 * 3*B*T*C (two buffers of (B,T,3C)-size ... see nn_attn_scratch_floats). */
void nn_attn_backward(fmd_backend *be, float *dx, float *dwqkv, float *dbqkv, float *dwproj,
                      float *dbproj, const float *dy, const nn_attn_act *a, const float *x,
                      const float *wqkv, const float *wproj, float *scratch, int64_t b,
                      int64_t t, int64_t c, int64_t heads);
/* ty = tangent of y given tx; ta holds tangent buffers of the same shapes */
void nn_attn_jvp(fmd_backend *be, float *ty, const nn_attn_act *ta, const nn_attn_act *a,
                 const float *tx, const float *wqkv, const float *wproj, float *scratch,
                 int64_t b, int64_t t, int64_t c, int64_t heads);
/* floats of scratch the attention backward / jvp needs */
int64_t nn_attn_scratch_floats(int64_t b, int64_t t, int64_t c, int64_t heads);

#endif
