/* mlp.c - the MLP flow model for vectors.
 *
 *   c   = t_embedder(t) [+ d_embedder(delta)] [+ y_embedder(label)]   (B, W)
 *   z0  = in_proj(x) + c ;  a0 = SiLU(z0)                                (B, W)
 *   zk  = hidden.{k-1}(a_{k-1}) ; ak = SiLU(zk)    k = 1 .. depth-1      (B, W)
 *   out = out_proj(a_{depth-1})                                          (B, D)
 *
 * The embedders are DiT's TimestepEmbedder (sinusoid of t*time_scale with
 * temb_dim frequencies, linear, SiLU, linear); d_embedder's last linear is
 * zero-initialised so a student converted from a teacher equals it at the
 * time its embedder reads (t, or t + delta with t_start: model.c).
 * Parameter names: t_embedder.mlp.{0,2}.{weight,bias}, d_embedder.mlp.{0,2}.*,
 * y_embedder.embedding_table.weight, in_proj.*, hidden.{k}.*, out_proj.*. */
#include <math.h>
#include <string.h>
#include "nn/model_internal.h"
#include "nn/layers.h"
#include "util/util.h"

typedef struct { int64_t w, b; } lin_off;

typedef struct mlp_impl {
    int64_t D, W, F, L;             /* dim, width, frequencies, depth */
    lin_off te1, te2, de1, de2, in, out;
    lin_off *hid;                   /* depth-1 */
    int64_t ytab;                   /* -1 if unconditional */
    /* arena */
    float *xin, *tin, *din;
    int32_t *lab;
    nn_embedder_act ta, da;         /* t / delta embedder activations */
    float *c;                       /* (B, W) */
    float **z, **a;                 /* per layer (B, W), shared when inference */
    nn_embedder_act tta, tda;       /* tangents */
    float *tc, *tz, *tact;
    float *g1, *g2, *gs;            /* backward scratch (B, W) */
} mlp_impl;

static void mlp_destroy(nn_model *m)
{
    mlp_impl *p = m->impl;
    if (!p) return;
    fmd_free(p->hid);
    fmd_free(p->z);
    fmd_free(p->a);
    fmd_free(p);
    m->impl = NULL;
}

static int64_t mlp_layout(nn_model *m, float *base, int64_t B, int flags)
{
    mlp_impl *p = m->impl;
    int64_t off = 0, W = p->W, F = p->F;
    int infer = flags & NN_RESERVE_INFERENCE, jvp = !(flags & NN_RESERVE_NO_JVP);
    p->xin = nn_arena_take(base, &off, B * p->D);
    p->tin = nn_arena_take(base, &off, B);
    p->din = nn_arena_take(base, &off, B);
    p->lab = (int32_t *)nn_arena_take(base, &off, B);
    p->ta.freq = nn_arena_take(base, &off, B * F);
    p->ta.h = nn_arena_take(base, &off, B * W);
    p->ta.a = nn_arena_take(base, &off, B * W);
    if (m->cfg.student) {
        p->da.freq = nn_arena_take(base, &off, B * F);
        p->da.h = nn_arena_take(base, &off, B * W);
        p->da.a = nn_arena_take(base, &off, B * W);
    }
    p->c = nn_arena_take(base, &off, B * W);
    for (int64_t k = 0; k < p->L; k++) {
        if (infer && k > 0) {
            p->z[k] = p->z[0];
            p->a[k] = p->a[0];
        } else {
            p->z[k] = nn_arena_take(base, &off, B * W);
            p->a[k] = nn_arena_take(base, &off, B * W);
        }
    }
    if (jvp) {
        p->tta.freq = nn_arena_take(base, &off, B * F);
        p->tta.h = nn_arena_take(base, &off, B * W);
        p->tta.a = nn_arena_take(base, &off, B * W);
        p->tda = p->tta;            /* the delta tangent reuses them after use */
        p->tc = nn_arena_take(base, &off, B * W);
        p->tz = nn_arena_take(base, &off, B * W);
        p->tact = nn_arena_take(base, &off, B * W);
    }
    if (!infer) {
        p->g1 = nn_arena_take(base, &off, B * W);
        p->g2 = nn_arena_take(base, &off, B * W);
        p->gs = nn_arena_take(base, &off, B * W);
    }
    return off;
}

static void mlp_forward(nn_model *m, float *out, float *tout, const float *x, const float *t,
                        const float *delta, const int32_t *labels, const float *tan_t,
                        const float *tan_delta, int64_t B)
{
    mlp_impl *p = m->impl;
    fmd_backend *be = m->be;
    const fmd_backend_ops *o = be->ops;
    int64_t W = p->W, F = p->F, D = p->D;
    float ts = m->cfg.time_scale, ds = m->cfg.delta_scale;

    o->copy(be, p->xin, x, (size_t)(B * D) * sizeof(float));
    o->copy(be, p->tin, t, (size_t)B * sizeof(float));
    if (delta) o->copy(be, p->din, delta, (size_t)B * sizeof(float));
    if (labels) o->copy(be, p->lab, labels, (size_t)B * sizeof(int32_t));

    /* conditioning c */
    int acc = 0;
    if (p->ytab >= 0) {
        o->embed_forward(be, p->c, NN_P(m, p->ytab), p->lab, B, W);
        acc = 1;
    }
    nn_embedder_forward(be, p->c, &p->ta, p->tin, NN_P(m, p->te1.w), NN_P(m, p->te1.b),
                        NN_P(m, p->te2.w), NN_P(m, p->te2.b), B, F, W, ts, acc);
    if (m->cfg.student)
        nn_embedder_forward(be, p->c, &p->da, p->din, NN_P(m, p->de1.w), NN_P(m, p->de1.b),
                            NN_P(m, p->de2.w), NN_P(m, p->de2.b), B, F, W, ds, 1);
    if (tout) {
        if (tan_t)
            nn_embedder_jvp(be, p->tc, &p->tta, &p->ta, p->tin, tan_t, NN_P(m, p->te1.w),
                            NN_P(m, p->te2.w), B, F, W, ts, 0);
        else
            o->memset0(be, p->tc, (size_t)(B * W) * sizeof(float));
        if (m->cfg.student && tan_delta)
            nn_embedder_jvp(be, p->tc, &p->tda, &p->da, p->din, tan_delta, NN_P(m, p->de1.w),
                            NN_P(m, p->de2.w), B, F, W, ds, 1);
    }

    /* layers */
    nn_linear_forward(be, p->z[0], p->xin, NN_P(m, p->in.w), NULL, B, D, W, 0);
    o->axpby(be, p->z[0], 1.0f, p->z[0], 1.0f, p->c, B * W);
    nn_bias_act_forward(be, FMDB_ACT_SILU, p->a[0], p->z[0], NN_P(m, p->in.b), B, W);
    if (tout) nn_act_jvp(be, FMDB_ACT_SILU, p->tact, p->tc, p->z[0], B * W);
    for (int64_t k = 1; k < p->L; k++) {
        nn_linear_forward(be, p->z[k], p->a[k - 1], NN_P(m, p->hid[k - 1].w), NULL, B, W, W, 0);
        nn_bias_act_forward(be, FMDB_ACT_SILU, p->a[k], p->z[k], NN_P(m, p->hid[k - 1].b), B, W);
        if (tout) {
            nn_linear_jvp(be, p->tz, p->tact, NN_P(m, p->hid[k - 1].w), B, W, W, 0);
            nn_act_jvp(be, FMDB_ACT_SILU, p->tact, p->tz, p->z[k], B * W);
        }
    }
    nn_linear_forward(be, out, p->a[p->L - 1], NN_P(m, p->out.w), NN_P(m, p->out.b), B, W, D, 0);
    if (tout) nn_linear_jvp(be, tout, p->tact, NN_P(m, p->out.w), B, W, D, 0);
}

static void mlp_backward(nn_model *m, const float *dout, float *dx, int64_t B)
{
    mlp_impl *p = m->impl;
    fmd_backend *be = m->be;
    int64_t W = p->W, F = p->F, D = p->D, L = p->L;
    float *g = p->g1, *gn = p->g2;

    /* out_proj: g = da_{L-1} */
    nn_linear_backward(be, g, NN_G(m, p->out.w), NN_G(m, p->out.b), dout, p->a[L - 1],
                       NN_P(m, p->out.w), B, W, D, 0.0f);
    for (int64_t k = L - 1; k >= 1; k--) {
        nn_act_bias_backward(be, FMDB_ACT_SILU, g, NN_G(m, p->hid[k - 1].b), g, p->z[k], B, W);
        nn_linear_backward(be, gn, NN_G(m, p->hid[k - 1].w), NULL, g, p->a[k - 1],
                           NN_P(m, p->hid[k - 1].w), B, W, W, 0.0f);
        float *tmp = g; g = gn; gn = tmp;
    }
    nn_act_bias_backward(be, FMDB_ACT_SILU, g, NN_G(m, p->in.b), g, p->z[0], B, W); /* dz_0 = dc */
    nn_linear_backward(be, dx, NN_G(m, p->in.w), NULL, g, p->xin, NN_P(m, p->in.w), B, D, W, 0.0f);
    nn_embedder_backward(be, NN_G(m, p->te1.w), NN_G(m, p->te1.b), NN_G(m, p->te2.w),
                         NN_G(m, p->te2.b), g, &p->ta, NN_P(m, p->te2.w), p->gs, B, F, W);
    if (m->cfg.student)
        nn_embedder_backward(be, NN_G(m, p->de1.w), NN_G(m, p->de1.b), NN_G(m, p->de2.w),
                             NN_G(m, p->de2.b), g, &p->da, NN_P(m, p->de2.w), p->gs, B, F, W);
    if (p->ytab >= 0) be->ops->embed_backward(be, NN_G(m, p->ytab), g, p->lab, B, W);
}

static const nn_arch_ops mlp_ops = {mlp_forward, mlp_backward, mlp_layout, mlp_destroy};

static int add_linear_b(nn_model *m, lin_off *l, const char *name, int64_t in, int64_t out,
                        nn_view_init winit, nn_view_init binit)
{
    int64_t ws[2] = {out, in}, bs[1] = {out};
    l->w = nn_add_paramf(m, 2, ws, winit, "%s.weight", name);
    l->b = nn_add_paramf(m, 1, bs, binit, "%s.bias", name);
    return l->w < 0 || l->b < 0 ? -1 : 0;
}

static int add_linear(nn_model *m, lin_off *l, const char *name, int64_t in, int64_t out,
                      nn_view_init winit)
{
    return add_linear_b(m, l, name, in, out, winit, nn_init_zero());
}

fmd_status nn_mlp_build(nn_model *m)
{
    const nn_config *c = &m->cfg;
    mlp_impl *p = fmd_xcalloc(1, sizeof *p, "mlp model");
    if (!p) return FMD_ERR_OOM;
    m->impl = p;
    m->ops = &mlp_ops;
    p->D = c->dim;
    p->W = c->width;
    p->F = c->temb_dim;
    p->L = c->depth;
    m->dim = p->D;
    p->hid = fmd_xcalloc((size_t)p->L, sizeof *p->hid, "mlp layers");
    p->z = fmd_xcalloc((size_t)p->L, sizeof *p->z, "mlp layers");
    p->a = fmd_xcalloc((size_t)p->L, sizeof *p->a, "mlp layers");
    if (!p->hid || !p->z || !p->a) return FMD_ERR_OOM;
    int64_t W = p->W, F = p->F, D = p->D;
    int bad = 0;
    bad |= add_linear(m, &p->te1, "t_embedder.mlp.0", F, W, nn_init_xavier(F, W));
    bad |= add_linear(m, &p->te2, "t_embedder.mlp.2", W, W, nn_init_xavier(W, W));
    if (c->student) {
        bad |= add_linear(m, &p->de1, "d_embedder.mlp.0", F, W, nn_init_xavier(F, W));
        bad |= add_linear(m, &p->de2, "d_embedder.mlp.2", W, W, nn_init_zero());
    }
    p->ytab = -1;
    if (c->num_classes > 0) {
        int64_t s[2] = {c->num_classes + 1, W};
        p->ytab = nn_add_param(m, "y_embedder.embedding_table.weight", 2, s, nn_init_normal(0.02f));
        bad |= p->ytab < 0;
    }
    /* The input layer as torch.nn.Linear initialises it: weight and bias
     * U(+-1/sqrt(D)).  Xavier weights with zero biases put every unit's kink
     * through the origin and fitted a 2-D map 4x worse (grid25, exact
     * targets; distilled pred-only student 0.0199 -> 0.0183 at 6000 steps:
     * docs/distiller.md, docs/benchmarks.md). */
    const float in_bound = (float)(1.0 / sqrt((double)D));
    bad |= add_linear_b(m, &p->in, "in_proj", D, W, nn_init_uniform(in_bound), nn_init_uniform(in_bound));
    for (int64_t k = 0; k + 1 < p->L; k++) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", (int)k);
        bad |= add_linear(m, &p->hid[k], name, W, W, nn_init_xavier(W, W));
    }
    bad |= add_linear(m, &p->out, "out_proj", W, D, nn_init_xavier(W, D));
    return bad ? fmd_last_status() : FMD_OK;
}
