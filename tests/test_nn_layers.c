/* test_nn_layers.c - finite-difference checks (central differences on a
 * float32 forward, compared in double) of the backward and the jvp of every
 * layer in lib/nn/layers.c, on the CPU backend: linear, SiLU, GELU-tanh,
 * LayerNorm (plain and affine), timestep embedding, the timestep embedder
 * MLP, class embedding, adaLN modulate, gated residual, patchify /
 * unpatchify, multi-head attention, the fused bias+activation slots (also
 * compared with the unfused ops); plus the 2-D sin-cos table's layout. */
#include <math.h>
#include <string.h>
#include "testutil.h"
#include "backend.h"
#include "nn/layers.h"
#include "cpu/cpu_ops_nn.h"

static fmd_backend *be;

#define MAXIN 6
typedef struct layer_case layer_case;
struct layer_case {
    const char *name;
    int nin;
    int64_t n[MAXIN];        /* element counts of the inputs (activations and weights) */
    int grad[MAXIN];         /* 1: check d L / d input */
    int tan[MAXIN];          /* 1: the input carries a tangent in the jvp check */
    int64_t nout;
    int64_t dims[8];         /* shape parameters for the callbacks */
    void (*fwd)(layer_case *c, float **in, float *out);
    /* grads into g[i] (zeroed before; NULL when not requested) */
    void (*bwd)(layer_case *c, float **in, const float *dout, float **g);
    void (*jvp)(layer_case *c, float **in, float **tin, float *tout);
    float lo, hi;            /* input range */
    float *scratch;          /* device scratch */
};

static float *dnew(int64_t n)
{
    float *p = be->ops->alloc(be, (size_t)(n > 0 ? n : 1) * sizeof(float));
    be->ops->memset0(be, p, (size_t)(n > 0 ? n : 1) * sizeof(float));
    return p;
}
static void up(float *d, const float *h, int64_t n) { be->ops->upload(be, d, h, (size_t)n * sizeof(float)); }
static void down(float *h, const float *d, int64_t n) { be->ops->download(be, h, d, (size_t)n * sizeof(float)); }

static double relerr(const double *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / (den + 1e-30));
}

static double eval_loss(layer_case *c, float **din, float **hin, const float *r, float *dout,
                        float *hout)
{
    for (int i = 0; i < c->nin; i++) up(din[i], hin[i], c->n[i]);
    c->fwd(c, din, dout);
    down(hout, dout, c->nout);
    double s = 0;
    for (int64_t i = 0; i < c->nout; i++) s += (double)r[i] * hout[i];
    return s;
}

static void run_case(layer_case *c)
{
    float *hin[MAXIN], *din[MAXIN], *dg[MAXIN], *dt[MAXIN];
    for (int i = 0; i < c->nin; i++) {
        hin[i] = malloc(sizeof(float) * c->n[i]);
        tu_fill(hin[i], c->n[i], c->lo, c->hi);
        din[i] = dnew(c->n[i]);
        dg[i] = c->grad[i] ? dnew(c->n[i]) : NULL;
        dt[i] = c->tan[i] ? dnew(c->n[i]) : NULL;
    }
    float *r = malloc(sizeof(float) * c->nout), *hout = malloc(sizeof(float) * c->nout);
    float *dout = dnew(c->nout), *dr = dnew(c->nout);
    tu_fill_normal(r, c->nout, 1.0f);
    up(dr, r, c->nout);
    double L0 = eval_loss(c, din, hin, r, dout, hout);
    CHECK_MSG(isfinite(L0), "%s: non-finite forward", c->name);

    if (c->bwd) {
        c->bwd(c, din, dr, dg);
        for (int i = 0; i < c->nin; i++) {
            if (!c->grad[i]) continue;
            float *g = malloc(sizeof(float) * c->n[i]);
            down(g, dg[i], c->n[i]);
            int64_t ns = c->n[i] < 48 ? c->n[i] : 48;
            double *an = malloc(sizeof(double) * ns), *fd = malloc(sizeof(double) * ns);
            const float eps = 1e-2f;
            for (int64_t s = 0; s < ns; s++) {
                int64_t k = c->n[i] <= 48 ? s : (int64_t)(tu_uniform() * (double)c->n[i]);
                float keep = hin[i][k];
                hin[i][k] = keep + eps;
                double lp = eval_loss(c, din, hin, r, dout, hout);
                hin[i][k] = keep - eps;
                double lm = eval_loss(c, din, hin, r, dout, hout);
                hin[i][k] = keep;
                fd[s] = (lp - lm) / (2.0 * eps);
                an[s] = g[k];
            }
            double e = relerr(an, fd, ns);
            printf("%-28s d/d input %d: rel err %.2e\n", c->name, i, e);
            CHECK_MSG(e < 3e-3, "%s: gradient of input %d rel err %.3g", c->name, i, e);
            free(g); free(an); free(fd);
        }
    }
    if (c->jvp) {
        float *htan[MAXIN] = {0};
        for (int i = 0; i < c->nin; i++) {
            if (!c->tan[i]) continue;
            htan[i] = malloc(sizeof(float) * c->n[i]);
            tu_fill_normal(htan[i], c->n[i], 1.0f);
            up(dt[i], htan[i], c->n[i]);
        }
        for (int i = 0; i < c->nin; i++) up(din[i], hin[i], c->n[i]);
        float *dtout = dnew(c->nout), *ht = malloc(sizeof(float) * c->nout);
        c->jvp(c, din, dt, dtout);
        down(ht, dtout, c->nout);
        const float h = 1e-3f;
        float *op = malloc(sizeof(float) * c->nout), *om = malloc(sizeof(float) * c->nout);
        float *save[MAXIN];
        for (int i = 0; i < c->nin; i++) {
            save[i] = malloc(sizeof(float) * c->n[i]);
            memcpy(save[i], hin[i], sizeof(float) * c->n[i]);
        }
        for (int sg = 0; sg < 2; sg++) {
            for (int i = 0; i < c->nin; i++)
                if (c->tan[i])
                    for (int64_t k = 0; k < c->n[i]; k++) hin[i][k] = save[i][k] + (sg ? -h : h) * htan[i][k];
            eval_loss(c, din, hin, r, dout, sg ? om : op);
        }
        double *a = malloc(sizeof(double) * c->nout), *f = malloc(sizeof(double) * c->nout);
        for (int64_t k = 0; k < c->nout; k++) {
            a[k] = ht[k];
            f[k] = ((double)op[k] - om[k]) / (2.0 * h);
        }
        double e = relerr(a, f, c->nout);
        printf("%-28s jvp: rel err %.2e\n", c->name, e);
        CHECK_MSG(e < 3e-3, "%s: jvp rel err %.3g", c->name, e);
        for (int i = 0; i < c->nin; i++) {
            memcpy(hin[i], save[i], sizeof(float) * c->n[i]);
            free(save[i]);
            free(htan[i]);
        }
        free(a); free(f); free(op); free(om); free(ht);
        be->ops->free(be, dtout);
    }
    for (int i = 0; i < c->nin; i++) {
        free(hin[i]);
        be->ops->free(be, din[i]);
        be->ops->free(be, dg[i]);
        be->ops->free(be, dt[i]);
    }
    free(r); free(hout);
    be->ops->free(be, dout);
    be->ops->free(be, dr);
}

/* ---- linear: in = x (N,I), W (O,I), b (O) ------------------------------------ */
static void lin_f(layer_case *c, float **in, float *out)
{
    nn_linear_forward(be, out, in[0], in[1], in[2], c->dims[0], c->dims[1], c->dims[2], 0);
}
static void lin_b(layer_case *c, float **in, const float *d, float **g)
{
    nn_linear_backward(be, g[0], g[1], g[2], d, in[0], in[1], c->dims[0], c->dims[1], c->dims[2], 0.0f);
}
static void lin_j(layer_case *c, float **in, float **t, float *to)
{
    nn_linear_jvp(be, to, t[0], in[1], c->dims[0], c->dims[1], c->dims[2], 0);
}

/* ---- activations ---------------------------------------------------------------- */
static void act_f(layer_case *c, float **in, float *out) { nn_act_forward(be, (int)c->dims[0], out, in[0], c->n[0]); }
static void act_b(layer_case *c, float **in, const float *d, float **g)
{
    nn_act_backward(be, (int)c->dims[0], g[0], d, in[0], c->n[0], 0.0f);
}
static void act_j(layer_case *c, float **in, float **t, float *to)
{
    nn_act_jvp(be, (int)c->dims[0], to, t[0], in[0], c->n[0]);
}

/* ---- fused bias + activation: pre (N,C), bias (C); dims = kind, N, C ------------ */
static void bact_f(layer_case *c, float **in, float *out)
{
    int64_t N = c->dims[1], C = c->dims[2];
    be->ops->copy(be, c->scratch, in[0], (size_t)(N * C) * sizeof(float));
    nn_bias_act_forward(be, (int)c->dims[0], out, c->scratch, in[1], N, C);
}
static void bact_b(layer_case *c, float **in, const float *d, float **g)
{
    int64_t N = c->dims[1], C = c->dims[2];
    float *pre = c->scratch, *tmp = c->scratch + N * C;
    bact_f(c, in, tmp);
    nn_act_bias_backward(be, (int)c->dims[0], g[0], g[1], d, pre, N, C);
}
static void bact_j(layer_case *c, float **in, float **t, float *to)
{
    int64_t N = c->dims[1], C = c->dims[2];
    float *pre = c->scratch, *tmp = c->scratch + N * C;
    bact_f(c, in, tmp);
    be->ops->copy(be, tmp, t[0], (size_t)(N * C) * sizeof(float));
    be->ops->bias_add(be, tmp, tmp, t[1], N, C);
    nn_act_jvp(be, (int)c->dims[0], to, tmp, pre, N * C);
}

/* The fused slots agree with the unfused ops (act_forward / act_backward +
 * bias_add / bias_grad) over a wide input range, in place too. */
static void fused_matches_unfused(void)
{
    if (!FMDB_HAS(be, bias_act_forward) || !FMDB_HAS(be, act_bias_backward)) {
        printf("fused activation slots absent on %s: the fallback is what runs\n", be->name);
        return;
    }
    const int64_t N = 37, C = 129, n = N * C;
    float *h = malloc(sizeof(float) * n), *hb = malloc(sizeof(float) * C), *hd = malloc(sizeof(float) * n);
    float *r1 = malloc(sizeof(float) * n), *r2 = malloc(sizeof(float) * n);
    float *gb1 = calloc((size_t)C, sizeof(float)), *gb2 = calloc((size_t)C, sizeof(float));
    tu_fill(h, n, -30.0f, 30.0f);
    for (int64_t i = 0; i < 64; i++) h[i] = (float)(i - 32) * 4.0f;   /* tails: +-128 */
    tu_fill(hb, C, -1.0f, 1.0f);
    tu_fill_normal(hd, n, 1.0f);
    float *pre = dnew(n), *out = dnew(n), *bias = dnew(C), *dout = dnew(n), *d1 = dnew(n);
    float *db1 = dnew(C), *db2 = dnew(C), *pre2 = dnew(n);
    up(bias, hb, C);
    up(dout, hd, n);
    for (int kind = 0; kind < 2; kind++) {
        /* forward: fused vs bias_add + act_forward */
        up(pre, h, n);
        be->ops->bias_act_forward(be, kind, out, pre, bias, N, C);
        down(r1, out, n);
        up(pre2, h, n);
        be->ops->bias_add(be, pre2, pre2, bias, N, C);
        be->ops->act_forward(be, kind, d1, pre2, n);
        down(r2, d1, n);
        double e = tu_rel_err(r1, r2, n);
        CHECK_MSG(e < 2e-6, "bias_act_forward kind %d rel err %.3g", kind, e);
        down(r1, pre, n);
        down(r2, pre2, n);
        CHECK(tu_max_abs_diff(r1, r2, n) == 0);                 /* pre + bias kept */
        /* in place: out == pre */
        up(pre, h, n);
        be->ops->bias_act_forward(be, kind, pre, pre, bias, N, C);
        down(r1, pre, n);
        down(r2, d1, n);
        CHECK_MSG(tu_rel_err(r1, r2, n) < 2e-6, "bias_act_forward in place kind %d", kind);
        /* backward: fused vs act_backward + bias_grad */
        be->ops->memset0(be, db1, sizeof(float) * C);
        be->ops->memset0(be, db2, sizeof(float) * C);
        be->ops->act_bias_backward(be, kind, d1, db1, dout, pre2, N, C);
        down(r1, d1, n);
        be->ops->act_backward(be, kind, out, dout, pre2, n, 0.0f);
        be->ops->bias_grad(be, db2, out, N, C);
        down(r2, out, n);
        e = tu_rel_err(r1, r2, n);
        CHECK_MSG(e < 2e-6, "act_bias_backward kind %d rel err %.3g", kind, e);
        down(gb1, db1, C);
        down(gb2, db2, C);
        e = tu_rel_err(gb1, gb2, C);
        CHECK_MSG(e < 1e-5, "act_bias_backward dbias kind %d rel err %.3g", kind, e);
        /* in place dpre == dout */
        be->ops->copy(be, d1, dout, sizeof(float) * n);
        be->ops->act_bias_backward(be, kind, d1, NULL, d1, pre2, N, C);
        down(r1, d1, n);
        CHECK_MSG(tu_rel_err(r1, r2, n) < 2e-6, "act_bias_backward in place kind %d", kind);
        for (int64_t i = 0; i < n; i++) CHECK(isfinite(r1[i]));
    }
    free(h); free(hb); free(hd); free(r1); free(r2); free(gb1); free(gb2);
    be->ops->free(be, pre); be->ops->free(be, out); be->ops->free(be, bias); be->ops->free(be, dout);
    be->ops->free(be, d1); be->ops->free(be, db1); be->ops->free(be, db2); be->ops->free(be, pre2);
}

/* ---- layernorm: x (N,C) [, w (C), b (C)]; scratch holds mean, rstd ------------- */
static void ln_f(layer_case *c, float **in, float *out)
{
    int64_t N = c->dims[0], C = c->dims[1];
    nn_layernorm_forward(be, out, c->scratch, c->scratch + N, in[0], c->nin > 1 ? in[1] : NULL,
                         c->nin > 1 ? in[2] : NULL, N, C, 1e-6f);
}
static void ln_b(layer_case *c, float **in, const float *d, float **g)
{
    int64_t N = c->dims[0], C = c->dims[1];
    ln_f(c, in, c->scratch + 2 * N);
    nn_layernorm_backward(be, g[0], c->nin > 1 ? g[1] : NULL, c->nin > 1 ? g[2] : NULL, d, in[0],
                          c->nin > 1 ? in[1] : NULL, c->scratch, c->scratch + N, N, C, 0.0f);
}
static void ln_j(layer_case *c, float **in, float **t, float *to)
{
    int64_t N = c->dims[0], C = c->dims[1];
    ln_f(c, in, c->scratch + 2 * N);
    nn_layernorm_jvp(be, to, t[0], in[0], c->nin > 1 ? in[1] : NULL, c->scratch, c->scratch + N, N, C);
}

/* ---- timestep embedding: t (N) -> (N, dim) --------------------------------------- */
static void temb_f(layer_case *c, float **in, float *out)
{
    nn_timestep_forward(be, out, in[0], c->dims[0], c->dims[1], (float)c->dims[2]);
}
static void temb_j(layer_case *c, float **in, float **t, float *to)
{
    nn_timestep_jvp(be, to, in[0], t[0], c->dims[0], c->dims[1], (float)c->dims[2]);
}

/* ---- embedder: t (N), w1 (H,F), b1 (H), w2 (H,H), b2 (H) --------------------------- */
static nn_embedder_act emb_act(layer_case *c, float *base)
{
    int64_t N = c->dims[0], F = c->dims[1], H = c->dims[2];
    nn_embedder_act a = {base, base + N * F, base + N * F + N * H};
    return a;
}
static void emb_f(layer_case *c, float **in, float *out)
{
    nn_embedder_act a = emb_act(c, c->scratch);
    nn_embedder_forward(be, out, &a, in[0], in[1], in[2], in[3], in[4], c->dims[0], c->dims[1],
                        c->dims[2], 3.0f, 0);
}
static void emb_b(layer_case *c, float **in, const float *d, float **g)
{
    int64_t N = c->dims[0], F = c->dims[1], H = c->dims[2];
    float *tmp = c->scratch + 2 * (N * F + 2 * N * H);
    emb_f(c, in, tmp);
    nn_embedder_act a = emb_act(c, c->scratch);
    nn_embedder_backward(be, g[1], g[2], g[3], g[4], d, &a, in[3], tmp, N, F, H);
}
static void emb_j(layer_case *c, float **in, float **t, float *to)
{
    int64_t N = c->dims[0], F = c->dims[1], H = c->dims[2];
    float *tmp = c->scratch + 2 * (N * F + 2 * N * H);
    emb_f(c, in, tmp);
    nn_embedder_act a = emb_act(c, c->scratch), ta = emb_act(c, c->scratch + N * F + 2 * N * H);
    nn_embedder_jvp(be, to, &ta, &a, in[0], t[0], in[1], in[3], N, F, H, 3.0f, 0);
}

/* ---- class embedding: table (V,C) with fixed labels --------------------------------- */
static int32_t *g_labels;
static void cls_f(layer_case *c, float **in, float *out)
{
    be->ops->embed_forward(be, out, in[0], g_labels, c->dims[0], c->dims[1]);
}
static void cls_b(layer_case *c, float **in, const float *d, float **g)
{
    be->ops->embed_backward(be, g[0], d, g_labels, c->dims[0], c->dims[1]);
}

/* ---- modulate: x (B,T,C), shift (B,C), scale (B,C) ------------------------------------ */
static void mod_f(layer_case *c, float **in, float *out)
{
    nn_modulate_forward(be, out, in[0], in[1], in[2], c->dims[2], c->dims[0], c->dims[1], c->dims[2]);
}
static void mod_b(layer_case *c, float **in, const float *d, float **g)
{
    nn_modulate_backward(be, g[0], g[1], g[2], d, in[0], in[2], c->dims[2], c->dims[0], c->dims[1],
                         c->dims[2], 0.0f);
}
static void mod_j(layer_case *c, float **in, float **t, float *to)
{
    nn_modulate_jvp(be, to, t[0], in[0], in[2], t[1], t[2], c->dims[2], c->dims[0], c->dims[1], c->dims[2]);
}

/* ---- gated residual: out = x + gate*y; x (B,T,C), y (B,T,C), gate (B,C) ---------------- */
static void gate_f(layer_case *c, float **in, float *out)
{
    be->ops->copy(be, out, in[0], (size_t)c->n[0] * sizeof(float));
    nn_gate_forward(be, out, in[1], in[2], c->dims[2], c->dims[0], c->dims[1], c->dims[2]);
}
static void gate_b(layer_case *c, float **in, const float *d, float **g)
{
    be->ops->copy(be, g[0], d, (size_t)c->n[0] * sizeof(float));
    nn_gate_backward(be, g[1], g[2], d, in[1], in[2], c->dims[2], c->dims[0], c->dims[1], c->dims[2]);
}
static void gate_j(layer_case *c, float **in, float **t, float *to)
{
    be->ops->copy(be, to, t[0], (size_t)c->n[0] * sizeof(float));
    nn_gate_jvp(be, to, t[1], t[2], in[1], in[2], c->dims[2], c->dims[0], c->dims[1], c->dims[2]);
}

/* ---- patchify / unpatchify: dims = B, C, H, P ------------------------------------------ */
static void pat_f(layer_case *c, float **in, float *out)
{
    nn_patchify(be, out, in[0], c->dims[0], c->dims[1], c->dims[2], c->dims[2], c->dims[3], 0.0f);
}
static void pat_b(layer_case *c, float **in, const float *d, float **g)
{
    nn_patchify_backward(be, g[0], d, c->dims[0], c->dims[1], c->dims[2], c->dims[2], c->dims[3], 0.0f);
}
static void unp_f(layer_case *c, float **in, float *out)
{
    nn_unpatchify(be, out, in[0], c->dims[0], c->dims[1], c->dims[2], c->dims[2], c->dims[3]);
}
static void unp_b(layer_case *c, float **in, const float *d, float **g)
{
    nn_unpatchify_backward(be, g[0], d, c->dims[0], c->dims[1], c->dims[2], c->dims[2], c->dims[3]);
}

/* ---- attention: x (B,T,C), wqkv (3C,C), bqkv (3C), wproj (C,C), bproj (C) ---------------- */
static nn_attn_act attn_act(layer_case *c, float *base)
{
    int64_t B = c->dims[0], T = c->dims[1], C = c->dims[2], H = c->dims[3];
    nn_attn_act a;
    a.qkv = base;
    a.q = a.qkv + 3 * B * T * C;
    a.p = a.q + 3 * B * T * C;
    a.o = a.p + B * H * T * T;
    a.om = a.o + B * T * C;
    return a;
}
static int64_t attn_act_floats(int64_t B, int64_t T, int64_t C, int64_t H)
{
    return 8 * B * T * C + B * H * T * T;
}
static void attn_f(layer_case *c, float **in, float *out)
{
    nn_attn_act a = attn_act(c, c->scratch);
    nn_attn_forward(be, out, &a, in[0], in[1], in[2], in[3], in[4], c->dims[0], c->dims[1],
                    c->dims[2], c->dims[3]);
}
static void attn_b(layer_case *c, float **in, const float *d, float **g)
{
    int64_t B = c->dims[0], T = c->dims[1], C = c->dims[2], H = c->dims[3];
    int64_t na = attn_act_floats(B, T, C, H);
    float *y = c->scratch + 2 * na;
    attn_f(c, in, y);
    nn_attn_act a = attn_act(c, c->scratch);
    nn_attn_backward(be, g[0], g[1], g[2], g[3], g[4], d, &a, in[0], in[1], in[3],
                     c->scratch + 2 * na + B * T * C, B, T, C, H);
}
static void attn_j(layer_case *c, float **in, float **t, float *to)
{
    int64_t B = c->dims[0], T = c->dims[1], C = c->dims[2], H = c->dims[3];
    int64_t na = attn_act_floats(B, T, C, H);
    float *y = c->scratch + 2 * na;
    attn_f(c, in, y);
    nn_attn_act a = attn_act(c, c->scratch), ta = attn_act(c, c->scratch + na);
    nn_attn_jvp(be, to, &ta, &a, t[0], in[1], in[3], c->scratch + 2 * na + B * T * C, B, T, C, H);
}

/* the vectorisable exp of the CPU kernels: relative error against double exp */
static void vexp_accuracy(void)
{
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double e = fabs((double)fmdb_vexpf(x) - exp((double)x)) / exp((double)x);
        if (e > worst) worst = e;
    }
    printf("fmdb_vexpf max rel err on [-87, 88]: %.2e\n", worst);
    CHECK_MSG(worst < 4e-7, "fmdb_vexpf rel err %.3g", worst);
    CHECK(fmdb_vexpf(-1000.0f) >= 0.0f && fmdb_vexpf(-1000.0f) < 1e-37f);
    CHECK(isfinite(fmdb_vexpf(1000.0f)) && fmdb_vexpf(1000.0f) > 1e38f);
}

static void pos_embed_layout(void)
{
    /* MAE: first half encodes the column (w) index as [sin, cos], second half
     * the row (h) index; omega_k = 10000^(-k/(dim/4)). */
    int64_t dim = 8, grid = 3;
    float pe[9 * 8];
    nn_pos_embed_2d(pe, dim, grid);
    int64_t i = 2, j = 1;   /* row 2, column 1 */
    const float *row = pe + (i * grid + j) * dim;
    double om1 = pow(10000.0, -0.5);
    CHECK(fabs(row[0] - sin(1.0)) < 1e-6 && fabs(row[1] - sin(1.0 * om1)) < 1e-6);
    CHECK(fabs(row[2] - cos(1.0)) < 1e-6 && fabs(row[3] - cos(1.0 * om1)) < 1e-6);
    CHECK(fabs(row[4] - sin(2.0)) < 1e-6 && fabs(row[5] - sin(2.0 * om1)) < 1e-6);
    CHECK(fabs(row[6] - cos(2.0)) < 1e-6 && fabs(row[7] - cos(2.0 * om1)) < 1e-6);
}

int main(void)
{
    int rc = tu_open_backend("test_nn_layers", NULL, &be);
    if (rc) return rc;
    tu_seed(77);
    float *scratch = dnew(1 << 16);
    {
        layer_case c = {"linear", 3, {5 * 7, 4 * 7, 4}, {1, 1, 1}, {1, 0, 0}, 5 * 4, {5, 7, 4},
                        lin_f, lin_b, lin_j, -1, 1, scratch};
        run_case(&c);
    }
    {
        layer_case c = {"silu", 1, {40}, {1}, {1}, 40, {FMDB_ACT_SILU}, act_f, act_b, act_j, -4, 4, scratch};
        run_case(&c);
        layer_case g = {"gelu_tanh", 1, {40}, {1}, {1}, 40, {FMDB_ACT_GELU_TANH}, act_f, act_b, act_j,
                        -4, 4, scratch};
        run_case(&g);
        layer_case bs = {"bias+silu (fused)", 2, {6 * 9, 9}, {1, 1}, {1, 1}, 54, {FMDB_ACT_SILU, 6, 9},
                         bact_f, bact_b, bact_j, -4, 4, scratch};
        run_case(&bs);
        layer_case bg = {"bias+gelu (fused)", 2, {6 * 9, 9}, {1, 1}, {1, 1}, 54,
                         {FMDB_ACT_GELU_TANH, 6, 9}, bact_f, bact_b, bact_j, -4, 4, scratch};
        run_case(&bg);
        fused_matches_unfused();
    }
    {
        layer_case c = {"layernorm", 1, {6 * 10}, {1}, {1}, 60, {6, 10}, ln_f, ln_b, ln_j, -2, 2, scratch};
        run_case(&c);
        layer_case a = {"layernorm affine", 3, {6 * 10, 10, 10}, {1, 1, 1}, {1, 0, 0}, 60, {6, 10},
                        ln_f, ln_b, ln_j, -2, 2, scratch};
        run_case(&a);
    }
    {
        layer_case c = {"timestep embedding", 1, {4}, {0}, {1}, 4 * 12, {4, 12, 20}, temb_f, NULL,
                        temb_j, 0, 1, scratch};
        run_case(&c);
        layer_case o = {"timestep embedding odd", 1, {3}, {0}, {1}, 3 * 7, {3, 7, 5}, temb_f, NULL,
                        temb_j, 0, 1, scratch};
        run_case(&o);
    }
    {
        layer_case c = {"timestep embedder mlp", 5, {4, 6 * 8, 6, 6 * 6, 6}, {0, 1, 1, 1, 1},
                        {1, 0, 0, 0, 0}, 4 * 6, {4, 8, 6}, emb_f, emb_b, emb_j, -1, 1, scratch};
        run_case(&c);
    }
    {
        int32_t lab[5] = {0, 2, 3, 2, 1};
        g_labels = (int32_t *)dnew(5);
        be->ops->upload(be, g_labels, lab, sizeof lab);
        layer_case c = {"class embedding", 1, {4 * 6}, {1}, {0}, 5 * 6, {5, 6}, cls_f, cls_b, NULL,
                        -1, 1, scratch};
        run_case(&c);
        be->ops->free(be, g_labels);
    }
    {
        layer_case c = {"adaLN modulate", 3, {2 * 3 * 5, 2 * 5, 2 * 5}, {1, 1, 1}, {1, 1, 1}, 30,
                        {2, 3, 5}, mod_f, mod_b, mod_j, -1, 1, scratch};
        run_case(&c);
        layer_case g = {"gated residual", 3, {2 * 3 * 5, 2 * 3 * 5, 2 * 5}, {1, 1, 1}, {1, 1, 1}, 30,
                        {2, 3, 5}, gate_f, gate_b, gate_j, -1, 1, scratch};
        run_case(&g);
    }
    {
        layer_case c = {"patchify", 1, {2 * 3 * 4 * 4}, {1}, {0}, 96, {2, 3, 4, 2}, pat_f, pat_b, NULL,
                        -1, 1, scratch};
        run_case(&c);
        layer_case u = {"unpatchify", 1, {2 * 3 * 6 * 6}, {1}, {0}, 216, {2, 3, 6, 3}, unp_f, unp_b,
                        NULL, -1, 1, scratch};
        run_case(&u);
        /* patchify then the inverse permutation gives x back */
        float hx[96], hy[96];
        float *dx = dnew(96), *dp = dnew(96), *dy = dnew(96);
        tu_fill(hx, 96, -1, 1);
        up(dx, hx, 96);
        nn_patchify(be, dp, dx, 2, 3, 4, 4, 2, 0.0f);
        nn_patchify_backward(be, dy, dp, 2, 3, 4, 4, 2, 0.0f);
        down(hy, dy, 96);
        CHECK(memcmp(hx, hy, sizeof hx) == 0);
        be->ops->free(be, dx); be->ops->free(be, dp); be->ops->free(be, dy);
    }
    {
        int64_t B = 2, T = 5, C = 8, H = 2;
        layer_case c = {"attention", 5, {B * T * C, 3 * C * C, 3 * C, C * C, C}, {1, 1, 1, 1, 1},
                        {1, 0, 0, 0, 0}, B * T * C, {B, T, C, H}, attn_f, attn_b, attn_j, -0.7f, 0.7f,
                        scratch};
        run_case(&c);
    }
    pos_embed_layout();
    vexp_accuracy();
    be->ops->free(be, scratch);
    fmd_backend_destroy(be);
    return tu_finish("test_nn_layers");
}
