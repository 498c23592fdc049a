/* dit.c - the DiT / SiT flow model for images (Peebles & Xie; Ma et al.),
 * restated layer by layer with parameter names exactly as the public
 * checkpoints: x_embedder.proj.{weight,bias}, pos_embed (fixed buffer),
 * t_embedder.mlp.{0,2}.*, y_embedder.embedding_table.weight, blocks.N.attn.qkv.*,
 * blocks.N.attn.proj.*, blocks.N.mlp.fc{1,2}.*, blocks.N.adaLN_modulation.1.*,
 * final_layer.linear.*, final_layer.adaLN_modulation.1.*; the student adds
 * d_embedder.mlp.{0,2}.* (last one zero-initialised).
 *
 *   tokens x0 = x_embedder(patchify(x)) + pos_embed               (B, T, C)
 *   c = t_embedder(t) + y_embedder(y) [+ d_embedder(delta)]       (B, C)
 *   block: shift1, scale1, gate1, shift2, scale2, gate2 = adaLN(SiLU(c))
 *          x += gate1 * attn(modulate(LN(x), shift1, scale1))
 *          x += gate2 * mlp(modulate(LN(x), shift2, scale2))     (GELU-tanh)
 *   final: shift, scale = adaLN_f(SiLU(c)); linear(modulate(LN(x)))
 *   out = unpatchify(...)[:, :C_in]  (learn_sigma drops the sigma half)
 *
 * Layout of the adaLN output: the linear gives (B, k*C); it is permuted to
 * (k, B, C) so every chunk is a contiguous (B, C) gate/shift/scale. */
#include <string.h>
#include "nn/model_internal.h"
#include "nn/layers.h"
#include "util/util.h"

#define LN_EPS 1e-6f

typedef struct { int64_t w, b; } lin_off;

typedef struct blk_par {
    lin_off qkv, proj, fc1, fc2, ada;
} blk_par;

typedef struct blk_act {
    float *mod;            /* (6, B, C) */
    float *x0, *x1, *xn;   /* (B, T, C) block input, after attention, output */
    float *ln1, *mean1, *rstd1, *m1;
    nn_attn_act att;
    float *y1;
    float *ln2, *mean2, *rstd2, *m2;
    float *h, *g, *y2;     /* (B, T, Hm) fc1 output and its GELU, (B, T, C) */
} blk_act;

typedef struct dit_impl {
    int64_t Cin, Cout, HW, P, Hp, T, C, NH, Hm, F, L, D, PPC;
    lin_off xe, te1, te2, de1, de2, fl, fada;
    blk_par *blk;
    int64_t ytab, pos;     /* pos: offset in the buffer */
    /* arena */
    float *xin, *tin, *din;
    int32_t *lab;
    float *patches;        /* (B, T, Cin*P*P) */
    nn_embedder_act ta, da;
    float *c, *sc;         /* (B, C) c and SiLU(c) */
    float *modraw;         /* (B, 6C) scratch */
    float **xs;            /* L+1 residual streams (B, T, C) */
    blk_act *ba;           /* per block (shared in inference) */
    float *modf, *lnf, *meanf, *rstdf, *mf, *outp, *full;
    /* tangents */
    nn_embedder_act tta;
    float *tc, *tsc, *tmodraw, *tmod, *tX, *tln, *tm, *ty, *th, *tg, *tscr;
    nn_attn_act tatt;
    float *toutp, *tfull;
    /* backward scratch */
    float *dX, *d1, *d2, *dh, *dmod, *dsc, *ascr, *dpatch, *dfull;
} dit_impl;

static void dit_destroy(nn_model *m)
{
    dit_impl *p = m->impl;
    if (!p) return;
    fmd_free(p->blk);
    fmd_free(p->xs);
    fmd_free(p->ba);
    fmd_free(p);
    m->impl = NULL;
}

static int64_t dit_layout(nn_model *m, float *base, int64_t B, int flags)
{
    dit_impl *p = m->impl;
    int64_t off = 0, C = p->C, T = p->T, BTC = B * T * C, BHTT = B * p->NH * T * T;
    int64_t Hm = p->Hm, F = p->F;
    int infer = flags & NN_RESERVE_INFERENCE, jvp = !(flags & NN_RESERVE_NO_JVP);
#define TAKE(n) nn_arena_take(base, &off, (n))
    p->xin = TAKE(B * p->D);
    p->tin = TAKE(B);
    p->din = TAKE(B);
    p->lab = (int32_t *)TAKE(B);
    p->patches = TAKE(B * T * p->PPC);
    p->ta.freq = TAKE(B * F);
    p->ta.h = TAKE(B * C);
    p->ta.a = TAKE(B * C);
    if (m->cfg.student) {
        p->da.freq = TAKE(B * F);
        p->da.h = TAKE(B * C);
        p->da.a = TAKE(B * C);
    }
    p->c = TAKE(B * C);
    p->sc = TAKE(B * C);
    p->modraw = TAKE(B * 6 * C);
    float *qkv_shared = TAKE(3 * BTC), *o_shared = TAKE(BTC);
    /* residual streams: all kept when training; three rotating buffers in
     * inference (a block's input and middle stay intact for its jvp) */
    if (infer && !jvp) {
        /* forward only: the residual stream is updated in place */
        float *r0 = TAKE(BTC);
        for (int64_t k = 0; k <= p->L; k++) p->xs[k] = r0;
        for (int64_t k = 0; k < p->L; k++) p->ba[k].x1 = r0;
    } else if (infer) {
        float *r0 = TAKE(BTC), *r1 = TAKE(BTC), *r2 = TAKE(BTC);
        for (int64_t k = 0; k <= p->L; k++) p->xs[k] = (k & 1) ? r1 : r0;
        for (int64_t k = 0; k < p->L; k++) p->ba[k].x1 = r2;
    } else {
        for (int64_t k = 0; k <= p->L; k++) p->xs[k] = TAKE(BTC);
    }
    for (int64_t k = 0; k < p->L; k++) {
        blk_act *a = &p->ba[k];
        if (infer && k > 0) {
            float *x0 = p->xs[k], *xn = p->xs[k + 1];
            *a = p->ba[0];
            a->x0 = x0;
            a->xn = xn;
            continue;
        }
        a->x0 = p->xs[k];
        a->xn = p->xs[k + 1];
        if (!infer) a->x1 = TAKE(BTC);
        a->mod = TAKE(6 * B * C);
        a->ln1 = TAKE(BTC);
        a->mean1 = TAKE(B * T);
        a->rstd1 = TAKE(B * T);
        a->m1 = TAKE(BTC);
        a->att.qkv = qkv_shared;
        a->att.o = o_shared;
        a->att.q = TAKE(3 * BTC);
        a->att.p = TAKE(BHTT);
        a->att.om = TAKE(BTC);
        a->y1 = TAKE(BTC);
        a->ln2 = TAKE(BTC);
        a->mean2 = TAKE(B * T);
        a->rstd2 = TAKE(B * T);
        a->m2 = TAKE(BTC);
        a->h = TAKE(B * T * Hm);
        a->g = TAKE(B * T * Hm);
        a->y2 = TAKE(BTC);
    }
    p->modf = TAKE(2 * B * C);
    p->lnf = TAKE(BTC);
    p->meanf = TAKE(B * T);
    p->rstdf = TAKE(B * T);
    p->mf = TAKE(BTC);
    p->outp = TAKE(B * T * p->P * p->P * p->Cout);
    p->full = m->cfg.learn_sigma ? TAKE(B * p->Cout * p->HW * p->HW) : NULL;
    if (jvp) {
        p->tta.freq = TAKE(B * F);
        p->tta.h = TAKE(B * C);
        p->tta.a = TAKE(B * C);
        p->tc = TAKE(B * C);
        p->tsc = TAKE(B * C);
        p->tmodraw = TAKE(B * 6 * C);
        p->tmod = TAKE(6 * B * C);
        p->tX = TAKE(BTC);
        p->tln = TAKE(BTC);
        p->tm = TAKE(BTC);
        p->ty = TAKE(BTC);
        p->th = TAKE(B * T * Hm);
        p->tg = TAKE(B * T * Hm);
        p->tatt.qkv = TAKE(3 * BTC);
        p->tatt.q = TAKE(3 * BTC);
        p->tatt.p = TAKE(BHTT);
        p->tatt.o = TAKE(BTC);
        p->tatt.om = TAKE(BTC);
        p->tscr = TAKE(BHTT);
        p->toutp = TAKE(B * T * p->P * p->P * p->Cout);
        p->tfull = m->cfg.learn_sigma ? TAKE(B * p->Cout * p->HW * p->HW) : NULL;
    }
    if (!infer) {
        p->dX = TAKE(BTC);
        p->d1 = TAKE(BTC);
        p->d2 = TAKE(BTC);
        p->dh = TAKE(B * T * Hm);
        p->dmod = TAKE(6 * B * C);
        p->dsc = TAKE(B * C);
        p->ascr = TAKE(nn_attn_scratch_floats(B, T, C, p->NH));
        p->dpatch = TAKE(B * T * p->PPC);
        p->dfull = m->cfg.learn_sigma ? TAKE(B * p->Cout * p->HW * p->HW) : NULL;
    }
#undef TAKE
    return off;
}

/* (B, k, C) <-> (k, B, C) */
static void chunk_permute(fmd_backend *be, float *out, const float *in, int64_t d0, int64_t d1,
                          int64_t c)
{
    int64_t dims[3] = {d0, d1, c};
    static const int perm[3] = {1, 0, 2};
    be->ops->permute(be, out, in, 3, dims, perm, 0.0f);
}

static void block_forward(nn_model *m, int64_t k, int64_t B)
{
    dit_impl *p = m->impl;
    fmd_backend *be = m->be;
    const blk_par *w = &p->blk[k];
    blk_act *a = &p->ba[k];
    int64_t C = p->C, T = p->T, N = B * T, BC = B * C;
    const float *mod = a->mod;

    nn_linear_forward(be, p->modraw, p->sc, NN_P(m, w->ada.w), NN_P(m, w->ada.b), B, C, 6 * C, 0);
    chunk_permute(be, a->mod, p->modraw, B, 6, C);
    nn_layernorm_forward(be, a->ln1, a->mean1, a->rstd1, a->x0, NULL, NULL, N, C, LN_EPS);
    nn_modulate_forward(be, a->m1, a->ln1, mod, mod + BC, C, B, T, C);
    nn_attn_forward(be, a->y1, &a->att, a->m1, NN_P(m, w->qkv.w), NN_P(m, w->qkv.b),
                    NN_P(m, w->proj.w), NN_P(m, w->proj.b), B, T, C, p->NH);
    if (a->x1 != a->x0) be->ops->copy(be, a->x1, a->x0, (size_t)(N * C) * sizeof(float));
    nn_gate_forward(be, a->x1, a->y1, mod + 2 * BC, C, B, T, C);
    nn_layernorm_forward(be, a->ln2, a->mean2, a->rstd2, a->x1, NULL, NULL, N, C, LN_EPS);
    nn_modulate_forward(be, a->m2, a->ln2, mod + 3 * BC, mod + 4 * BC, C, B, T, C);
    nn_linear_forward(be, a->h, a->m2, NN_P(m, w->fc1.w), NULL, N, C, p->Hm, 0);
    nn_bias_act_forward(be, FMDB_ACT_GELU_TANH, a->g, a->h, NN_P(m, w->fc1.b), N, p->Hm);
    nn_linear_forward(be, a->y2, a->g, NN_P(m, w->fc2.w), NN_P(m, w->fc2.b), N, p->Hm, C, 0);
    if (a->xn != a->x1) be->ops->copy(be, a->xn, a->x1, (size_t)(N * C) * sizeof(float));
    nn_gate_forward(be, a->xn, a->y2, mod + 5 * BC, C, B, T, C);
}

/* tX: tangent of the block input on entry, of its output on return */
static void block_jvp(nn_model *m, int64_t k, int64_t B)
{
    dit_impl *p = m->impl;
    fmd_backend *be = m->be;
    const blk_par *w = &p->blk[k];
    const blk_act *a = &p->ba[k];
    int64_t C = p->C, T = p->T, N = B * T, BC = B * C;
    const float *mod = a->mod, *tmod = p->tmod;

    nn_linear_jvp(be, p->tmodraw, p->tsc, NN_P(m, w->ada.w), B, C, 6 * C, 0);
    chunk_permute(be, p->tmod, p->tmodraw, B, 6, C);
    nn_layernorm_jvp(be, p->tln, p->tX, a->x0, NULL, a->mean1, a->rstd1, N, C);
    nn_modulate_jvp(be, p->tm, p->tln, a->ln1, mod + BC, tmod, tmod + BC, C, B, T, C);
    nn_attn_jvp(be, p->ty, &p->tatt, &a->att, p->tm, NN_P(m, w->qkv.w), NN_P(m, w->proj.w),
                p->tscr, B, T, C, p->NH);
    nn_gate_jvp(be, p->tX, p->ty, tmod + 2 * BC, a->y1, mod + 2 * BC, C, B, T, C);
    nn_layernorm_jvp(be, p->tln, p->tX, a->x1, NULL, a->mean2, a->rstd2, N, C);
    nn_modulate_jvp(be, p->tm, p->tln, a->ln2, mod + 4 * BC, tmod + 3 * BC, tmod + 4 * BC, C, B,
                    T, C);
    nn_linear_jvp(be, p->th, p->tm, NN_P(m, w->fc1.w), N, C, p->Hm, 0);
    nn_act_jvp(be, FMDB_ACT_GELU_TANH, p->tg, p->th, a->h, N * p->Hm);
    nn_linear_jvp(be, p->ty, p->tg, NN_P(m, w->fc2.w), N, p->Hm, C, 0);
    nn_gate_jvp(be, p->tX, p->ty, tmod + 5 * BC, a->y2, mod + 5 * BC, C, B, T, C);
}

/* dX: gradient wrt the block output on entry, wrt its input on return */
static void block_backward(nn_model *m, int64_t k, int64_t B)
{
    dit_impl *p = m->impl;
    fmd_backend *be = m->be;
    const blk_par *w = &p->blk[k];
    const blk_act *a = &p->ba[k];
    int64_t C = p->C, T = p->T, N = B * T, BC = B * C, Hm = p->Hm;
    const float *mod = a->mod;
    float *dmod = p->dmod;

    nn_gate_backward(be, p->d1, dmod + 5 * BC, p->dX, a->y2, mod + 5 * BC, C, B, T, C);
    nn_linear_backward(be, p->dh, NN_G(m, w->fc2.w), NN_G(m, w->fc2.b), p->d1, a->g,
                       NN_P(m, w->fc2.w), N, Hm, C, 0.0f);
    nn_act_bias_backward(be, FMDB_ACT_GELU_TANH, p->dh, NN_G(m, w->fc1.b), p->dh, a->h, N, Hm);
    nn_linear_backward(be, p->d1, NN_G(m, w->fc1.w), NULL, p->dh, a->m2,
                       NN_P(m, w->fc1.w), N, C, Hm, 0.0f);
    nn_modulate_backward(be, p->d2, dmod + 3 * BC, dmod + 4 * BC, p->d1, a->ln2, mod + 4 * BC, C,
                         B, T, C, 0.0f);
    nn_layernorm_backward(be, p->dX, NULL, NULL, p->d2, a->x1, NULL, a->mean2, a->rstd2, N, C,
                          1.0f);
    nn_gate_backward(be, p->d1, dmod + 2 * BC, p->dX, a->y1, mod + 2 * BC, C, B, T, C);
    nn_attn_backward(be, p->d2, NN_G(m, w->qkv.w), NN_G(m, w->qkv.b), NN_G(m, w->proj.w),
                     NN_G(m, w->proj.b), p->d1, &a->att, a->m1, NN_P(m, w->qkv.w),
                     NN_P(m, w->proj.w), p->ascr, B, T, C, p->NH);
    nn_modulate_backward(be, p->d1, dmod, dmod + BC, p->d2, a->ln1, mod + BC, C, B, T, C, 0.0f);
    nn_layernorm_backward(be, p->dX, NULL, NULL, p->d1, a->x0, NULL, a->mean1, a->rstd1, N, C,
                          1.0f);
    chunk_permute(be, p->modraw, dmod, 6, B, C);
    nn_linear_backward(be, p->dsc, NN_G(m, w->ada.w), NN_G(m, w->ada.b), p->modraw, p->sc,
                       NN_P(m, w->ada.w), B, C, 6 * C, 1.0f);
}

static void dit_forward(nn_model *m, float *out, float *tout, const float *x, const float *t,
                        const float *delta, const int32_t *labels, const float *tan_t,
                        const float *tan_delta, int64_t B)
{
    dit_impl *p = m->impl;
    fmd_backend *be = m->be;
    const fmd_backend_ops *o = be->ops;
    int64_t C = p->C, T = p->T, N = B * T, F = p->F, BC = B * C;
    float ts = m->cfg.time_scale, ds = m->cfg.delta_scale;

    o->copy(be, p->xin, x, (size_t)(B * p->D) * sizeof(float));
    o->copy(be, p->tin, t, (size_t)B * sizeof(float));
    if (delta) o->copy(be, p->din, delta, (size_t)B * sizeof(float));
    if (labels) o->copy(be, p->lab, labels, (size_t)B * sizeof(int32_t));

    /* tokens */
    nn_patchify(be, p->patches, p->xin, B, p->Cin, p->HW, p->HW, p->P, 0.0f);
    nn_linear_forward(be, p->xs[0], p->patches, NN_P(m, p->xe.w), NN_P(m, p->xe.b), N, p->PPC, C, 0);
    o->bias_add(be, p->xs[0], p->xs[0], m->buffer + p->pos, B, T * C);

    /* conditioning */
    int acc = 0;
    if (p->ytab >= 0) {
        o->embed_forward(be, p->c, NN_P(m, p->ytab), p->lab, B, C);
        acc = 1;
    }
    nn_embedder_forward(be, p->c, &p->ta, p->tin, NN_P(m, p->te1.w), NN_P(m, p->te1.b),
                        NN_P(m, p->te2.w), NN_P(m, p->te2.b), B, F, C, ts, acc);
    if (m->cfg.student)
        nn_embedder_forward(be, p->c, &p->da, p->din, NN_P(m, p->de1.w), NN_P(m, p->de1.b),
                            NN_P(m, p->de2.w), NN_P(m, p->de2.b), B, F, C, ds, 1);
    nn_act_forward(be, FMDB_ACT_SILU, p->sc, p->c, BC);
    if (tout) {
        if (tan_t)
            nn_embedder_jvp(be, p->tc, &p->tta, &p->ta, p->tin, tan_t, NN_P(m, p->te1.w),
                            NN_P(m, p->te2.w), B, F, C, ts, 0);
        else
            o->memset0(be, p->tc, (size_t)BC * sizeof(float));
        if (m->cfg.student && tan_delta)
            nn_embedder_jvp(be, p->tc, &p->tta, &p->da, p->din, tan_delta, NN_P(m, p->de1.w),
                            NN_P(m, p->de2.w), B, F, C, ds, 1);
        nn_act_jvp(be, FMDB_ACT_SILU, p->tsc, p->tc, p->c, BC);
        o->memset0(be, p->tX, (size_t)(N * C) * sizeof(float));
    }

    for (int64_t k = 0; k < p->L; k++) {
        block_forward(m, k, B);
        if (tout) block_jvp(m, k, B);
    }

    /* final layer */
    const float *xl = p->xs[p->L];
    int64_t PPCo = p->P * p->P * p->Cout;
    nn_linear_forward(be, p->modraw, p->sc, NN_P(m, p->fada.w), NN_P(m, p->fada.b), B, C, 2 * C, 0);
    chunk_permute(be, p->modf, p->modraw, B, 2, C);
    nn_layernorm_forward(be, p->lnf, p->meanf, p->rstdf, xl, NULL, NULL, N, C, LN_EPS);
    nn_modulate_forward(be, p->mf, p->lnf, p->modf, p->modf + BC, C, B, T, C);
    nn_linear_forward(be, p->outp, p->mf, NN_P(m, p->fl.w), NN_P(m, p->fl.b), N, C, PPCo, 0);
    if (p->full) {
        nn_unpatchify(be, p->full, p->outp, B, p->Cout, p->HW, p->HW, p->P);
        o->copy2d(be, out, p->D, p->full, 2 * p->D, B, p->D, 0.0f);
    } else {
        nn_unpatchify(be, out, p->outp, B, p->Cout, p->HW, p->HW, p->P);
    }
    if (tout) {
        nn_linear_jvp(be, p->tmodraw, p->tsc, NN_P(m, p->fada.w), B, C, 2 * C, 0);
        chunk_permute(be, p->tmod, p->tmodraw, B, 2, C);
        nn_layernorm_jvp(be, p->tln, p->tX, xl, NULL, p->meanf, p->rstdf, N, C);
        nn_modulate_jvp(be, p->tm, p->tln, p->lnf, p->modf + BC, p->tmod, p->tmod + BC, C, B, T, C);
        nn_linear_jvp(be, p->toutp, p->tm, NN_P(m, p->fl.w), N, C, PPCo, 0);
        if (p->tfull) {
            nn_unpatchify(be, p->tfull, p->toutp, B, p->Cout, p->HW, p->HW, p->P);
            o->copy2d(be, tout, p->D, p->tfull, 2 * p->D, B, p->D, 0.0f);
        } else {
            nn_unpatchify(be, tout, p->toutp, B, p->Cout, p->HW, p->HW, p->P);
        }
    }
}

static void dit_backward(nn_model *m, const float *dout, float *dx, int64_t B)
{
    dit_impl *p = m->impl;
    fmd_backend *be = m->be;
    const fmd_backend_ops *o = be->ops;
    int64_t C = p->C, T = p->T, N = B * T, F = p->F, BC = B * C;
    int64_t PPCo = p->P * p->P * p->Cout;

    /* final layer; p->outp is reused for d outp (its forward value is not needed) */
    if (p->dfull) {
        o->memset0(be, p->dfull, (size_t)(2 * B * p->D) * sizeof(float));
        o->copy2d(be, p->dfull, 2 * p->D, dout, p->D, B, p->D, 0.0f);
        nn_unpatchify_backward(be, p->outp, p->dfull, B, p->Cout, p->HW, p->HW, p->P);
    } else {
        nn_unpatchify_backward(be, p->outp, dout, B, p->Cout, p->HW, p->HW, p->P);
    }
    nn_linear_backward(be, p->d1, NN_G(m, p->fl.w), NN_G(m, p->fl.b), p->outp, p->mf,
                       NN_P(m, p->fl.w), N, C, PPCo, 0.0f);
    nn_modulate_backward(be, p->d2, p->dmod, p->dmod + BC, p->d1, p->lnf, p->modf + BC, C, B, T,
                         C, 0.0f);
    chunk_permute(be, p->modraw, p->dmod, 2, B, C);
    nn_linear_backward(be, p->dsc, NN_G(m, p->fada.w), NN_G(m, p->fada.b), p->modraw, p->sc,
                       NN_P(m, p->fada.w), B, C, 2 * C, 0.0f);
    nn_layernorm_backward(be, p->dX, NULL, NULL, p->d2, p->xs[p->L], NULL, p->meanf, p->rstdf,
                          N, C, 0.0f);

    for (int64_t k = p->L - 1; k >= 0; k--) block_backward(m, k, B);

    /* conditioning: dc = SiLU'(c) * dsc (reuse d1 as (B, C) storage) */
    float *dc = p->d1;
    nn_act_backward(be, FMDB_ACT_SILU, dc, p->dsc, p->c, BC, 0.0f);
    nn_embedder_backward(be, NN_G(m, p->te1.w), NN_G(m, p->te1.b), NN_G(m, p->te2.w),
                         NN_G(m, p->te2.b), dc, &p->ta, NN_P(m, p->te2.w), p->d2, B, F, C);
    if (m->cfg.student)
        nn_embedder_backward(be, NN_G(m, p->de1.w), NN_G(m, p->de1.b), NN_G(m, p->de2.w),
                             NN_G(m, p->de2.b), dc, &p->da, NN_P(m, p->de2.w), p->d2, B, F, C);
    if (p->ytab >= 0) o->embed_backward(be, NN_G(m, p->ytab), dc, p->lab, B, C);

    /* tokens */
    nn_linear_backward(be, dx ? p->dpatch : NULL, NN_G(m, p->xe.w), NN_G(m, p->xe.b), p->dX,
                       p->patches, NN_P(m, p->xe.w), N, p->PPC, C, 0.0f);
    if (dx) nn_patchify_backward(be, dx, p->dpatch, B, p->Cin, p->HW, p->HW, p->P, 0.0f);
}

static const nn_arch_ops dit_ops = {dit_forward, dit_backward, dit_layout, dit_destroy};

static int add_linear(nn_model *m, lin_off *l, const char *name, int64_t in, int64_t out,
                      nn_view_init winit)
{
    int64_t ws[2] = {out, in}, bs[1] = {out};
    l->w = nn_add_paramf(m, 2, ws, winit, "%s.weight", name);
    l->b = nn_add_paramf(m, 1, bs, nn_init_zero(), "%s.bias", name);
    return l->w < 0 || l->b < 0 ? -1 : 0;
}

void nn_dit_fill_buffers(nn_model *m, float *host)
{
    dit_impl *p = m->impl;
    if (m->cfg.arch != NN_ARCH_DIT || !p) return;
    nn_pos_embed_2d(host + p->pos, p->C, p->Hp);
}

fmd_status nn_dit_build(nn_model *m)
{
    const nn_config *c = &m->cfg;
    dit_impl *p = fmd_xcalloc(1, sizeof *p, "dit model");
    if (!p) return FMD_ERR_OOM;
    m->impl = p;
    m->ops = &dit_ops;
    p->Cin = c->in_channels;
    p->Cout = c->learn_sigma ? 2 * p->Cin : p->Cin;
    p->HW = c->input_size;
    p->P = c->patch_size;
    p->Hp = p->HW / p->P;
    p->T = p->Hp * p->Hp;
    p->C = c->hidden_size;
    p->NH = c->num_heads;
    p->Hm = (int64_t)((float)p->C * c->mlp_ratio);
    p->F = c->temb_dim;
    p->L = c->dit_depth;
    p->D = p->Cin * p->HW * p->HW;
    p->PPC = p->Cin * p->P * p->P;
    m->dim = p->D;
    if (p->Hm < 1)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "nn_model_create: hidden_size*mlp_ratio must be >= 1");
    p->blk = fmd_xcalloc((size_t)p->L, sizeof *p->blk, "dit blocks");
    p->ba = fmd_xcalloc((size_t)p->L, sizeof *p->ba, "dit blocks");
    p->xs = fmd_xcalloc((size_t)p->L + 1, sizeof *p->xs, "dit blocks");
    if (!p->blk || !p->ba || !p->xs) return FMD_ERR_OOM;

    int64_t C = p->C, F = p->F;
    int bad = 0;
    {
        int64_t ws[4] = {C, p->Cin, p->P, p->P}, bs[1] = {C};
        p->xe.w = nn_add_param(m, "x_embedder.proj.weight", 4, ws, nn_init_xavier(p->PPC, C));
        p->xe.b = nn_add_param(m, "x_embedder.proj.bias", 1, bs, nn_init_zero());
        bad |= p->xe.w < 0 || p->xe.b < 0;
    }
    bad |= add_linear(m, &p->te1, "t_embedder.mlp.0", F, C, nn_init_normal(0.02f));
    bad |= add_linear(m, &p->te2, "t_embedder.mlp.2", C, C, nn_init_normal(0.02f));
    p->ytab = -1;
    if (c->num_classes > 0) {
        int64_t s[2] = {c->num_classes + 1, C};
        p->ytab = nn_add_param(m, "y_embedder.embedding_table.weight", 2, s, nn_init_normal(0.02f));
        bad |= p->ytab < 0;
    }
    if (c->student) {
        bad |= add_linear(m, &p->de1, "d_embedder.mlp.0", F, C, nn_init_normal(0.02f));
        bad |= add_linear(m, &p->de2, "d_embedder.mlp.2", C, C, nn_init_zero());
    }
    {
        int64_t s[3] = {1, p->T, C};
        p->pos = nn_add_buffer(m, "pos_embed", 3, s);
        bad |= p->pos < 0;
    }
    for (int64_t k = 0; k < p->L && !bad; k++) {
        char nm[64];
        blk_par *b = &p->blk[k];
#define NM(s) (snprintf(nm, sizeof nm, "blocks.%d.%s", (int)k, s), nm)
        bad |= add_linear(m, &b->qkv, NM("attn.qkv"), C, 3 * C, nn_init_xavier(C, 3 * C));
        bad |= add_linear(m, &b->proj, NM("attn.proj"), C, C, nn_init_xavier(C, C));
        bad |= add_linear(m, &b->fc1, NM("mlp.fc1"), C, p->Hm, nn_init_xavier(C, p->Hm));
        bad |= add_linear(m, &b->fc2, NM("mlp.fc2"), p->Hm, C, nn_init_xavier(p->Hm, C));
        bad |= add_linear(m, &b->ada, NM("adaLN_modulation.1"), C, 6 * C, nn_init_zero());
#undef NM
    }
    bad |= add_linear(m, &p->fl, "final_layer.linear", C, p->P * p->P * p->Cout, nn_init_zero());
    bad |= add_linear(m, &p->fada, "final_layer.adaLN_modulation.1", C, 2 * C, nn_init_zero());
    return bad ? fmd_last_status() : FMD_OK;
}
