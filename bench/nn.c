/* bench/nn.c - throughput of the network engine (lib/nn) on a backend:
 * forward (inference arena) and forward+backward (training arena) of
 *   (a) the MLP: d=2, width 256, depth 4, batch 1024;
 *   (b) a SiT-S/2-like DiT on 32x32x4 latents: hidden 384, depth 12,
 *       6 heads, patch 2, 1000 classes, batch 32.
 * Prints samples/s and achieved GFLOP/s (matmul FLOPs counted analytically:
 * 2*m*n*k per GEMM; forward+backward counted as 3x the forward).
 *
 *   bench_nn [--backend cpu|cuda] [--iters N] [--only mlp|sit] [--profile]
 * Threads of the CPU backend: FMD_NUM_THREADS.  --profile times every
 * backend op (synchronising after each) and prints the share of each.  Compare with
 * bench/pytorch_nn.py (which can run this program in the same run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "nn/model.h"
#include "util/util.h"

/* ---- --profile: time each backend op through a wrapped ops table ---------- */
static const fmd_backend_ops *orig;
static fmd_backend_ops wrapped;
enum { P_GEMM, P_GEMMB, P_BIAS, P_BIASG, P_BMUL, P_BMULR, P_AXPBY, P_SILU, P_GELU, P_SILUB, P_GELUB,
       P_LNF, P_LNB, P_SMF, P_SMB, P_MODF, P_MODB, P_EMBF, P_EMBB, P_TEMB, P_PERM, P_COPY2D, P_COPY,
       P_ZERO, P_BACTF, P_ACTBB, P_N };
static const char *pname[P_N] = {"gemm", "gemm_batched", "bias_add", "bias_grad", "bcast_mul",
    "bcast_mul_reduce", "axpby", "silu fwd", "gelu fwd", "silu bwd/jvp", "gelu bwd/jvp",
    "layernorm fwd", "layernorm bwd/jvp", "softmax fwd", "softmax bwd/jvp", "modulate fwd",
    "modulate bwd", "embed fwd", "embed bwd", "timestep_embed", "permute", "copy2d", "copy",
    "memset0", "bias_act_forward", "act_bias_backward"};
static double ptime[P_N];
static long pcount[P_N];
#define TIMED(idx, call) do { double t0_ = fmd_now(); call; orig->sync(be); \
    ptime[idx] += fmd_now() - t0_; pcount[idx]++; } while (0)
static void w_gemm(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float al,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{ TIMED(P_GEMM, orig->gemm(be, ta, tb, m, n, k, al, a, lda, b, ldb, beta, c, ldc)); }
static void w_gemmb(fmd_backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k, float al,
                    const float *a, int64_t lda, int64_t sa, const float *b, int64_t ldb, int64_t sb,
                    float beta, float *c, int64_t ldc, int64_t sc, int64_t bt)
{ TIMED(P_GEMMB, orig->gemm_batched(be, ta, tb, m, n, k, al, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, bt)); }
static void w_bias(fmd_backend *be, float *o, const float *x, const float *b, int64_t n, int64_t c)
{ TIMED(P_BIAS, orig->bias_add(be, o, x, b, n, c)); }
static void w_biasg(fmd_backend *be, float *db, const float *d, int64_t n, int64_t c)
{ TIMED(P_BIASG, orig->bias_grad(be, db, d, n, c)); }
static void w_bmul(fmd_backend *be, float *o, const float *x, const float *g, int64_t b, int64_t t,
                   int64_t c, float beta)
{ TIMED(P_BMUL, orig->bcast_mul(be, o, x, g, b, t, c, beta)); }
static void w_bmulr(fmd_backend *be, float *dg, const float *d, const float *x, int64_t b, int64_t t,
                    int64_t c, float beta)
{ TIMED(P_BMULR, orig->bcast_mul_reduce(be, dg, d, x, b, t, c, beta)); }
static void w_axpby(fmd_backend *be, float *o, float a, const float *x, float b, const float *y, int64_t n)
{ TIMED(P_AXPBY, orig->axpby(be, o, a, x, b, y, n)); }
static void w_actf(fmd_backend *be, int k, float *o, const float *x, int64_t n)
{ TIMED(k == FMDB_ACT_SILU ? P_SILU : P_GELU, orig->act_forward(be, k, o, x, n)); }
static void w_actb(fmd_backend *be, int k, float *dx, const float *d, const float *x, int64_t n, float beta)
{ TIMED(k == FMDB_ACT_SILU ? P_SILUB : P_GELUB, orig->act_backward(be, k, dx, d, x, n, beta)); }
static void w_lnf(fmd_backend *be, float *o, float *mu, float *rs, const float *x, const float *w,
                  const float *b, int64_t n, int64_t c, float eps)
{ TIMED(P_LNF, orig->layernorm_forward(be, o, mu, rs, x, w, b, n, c, eps)); }
static void w_lnb(fmd_backend *be, float *dx, float *dw, float *db, const float *d, const float *x,
                  const float *w, const float *mu, const float *rs, int64_t n, int64_t c, float beta)
{ TIMED(P_LNB, orig->layernorm_backward(be, dx, dw, db, d, x, w, mu, rs, n, c, beta)); }
static void w_smf(fmd_backend *be, float *o, const float *x, int64_t n, int64_t c, float s)
{ TIMED(P_SMF, orig->softmax_forward(be, o, x, n, c, s)); }
static void w_smb(fmd_backend *be, float *dx, const float *d, const float *y, int64_t n, int64_t c, float s)
{ TIMED(P_SMB, orig->softmax_backward(be, dx, d, y, n, c, s)); }
static void w_modf(fmd_backend *be, float *o, const float *x, const float *sh, const float *sc,
                   int64_t ld, int64_t b, int64_t t, int64_t c)
{ TIMED(P_MODF, orig->modulate_forward(be, o, x, sh, sc, ld, b, t, c)); }
static void w_modb(fmd_backend *be, float *dx, float *dsh, float *dsc, const float *d, const float *x,
                   const float *sc, int64_t ld, int64_t b, int64_t t, int64_t c, float beta)
{ TIMED(P_MODB, orig->modulate_backward(be, dx, dsh, dsc, d, x, sc, ld, b, t, c, beta)); }
static void w_embf(fmd_backend *be, float *o, const float *tab, const int32_t *idx, int64_t n, int64_t c)
{ TIMED(P_EMBF, orig->embed_forward(be, o, tab, idx, n, c)); }
static void w_embb(fmd_backend *be, float *dt, const float *d, const int32_t *idx, int64_t n, int64_t c)
{ TIMED(P_EMBB, orig->embed_backward(be, dt, d, idx, n, c)); }
static void w_temb(fmd_backend *be, float *o, const float *t, int64_t n, int64_t dim, float mp,
                   float ts, int deriv)
{ TIMED(P_TEMB, orig->timestep_embed(be, o, t, n, dim, mp, ts, deriv)); }
static void w_perm(fmd_backend *be, float *o, const float *in, int nd, const int64_t *dims,
                   const int *perm, float beta)
{ TIMED(P_PERM, orig->permute(be, o, in, nd, dims, perm, beta)); }
static void w_copy2d(fmd_backend *be, float *o, int64_t ldo, const float *in, int64_t ldi, int64_t r,
                     int64_t c, float beta)
{ TIMED(P_COPY2D, orig->copy2d(be, o, ldo, in, ldi, r, c, beta)); }
static void w_copy(fmd_backend *be, void *d, const void *s, size_t n) { TIMED(P_COPY, orig->copy(be, d, s, n)); }
static void w_zero(fmd_backend *be, void *p, size_t n) { TIMED(P_ZERO, orig->memset0(be, p, n)); }

static void w_bactf(fmd_backend *be, int k, float *o, float *pre, const float *b, int64_t n, int64_t c)
{ TIMED(P_BACTF, orig->bias_act_forward(be, k, o, pre, b, n, c)); }
static void w_actbb(fmd_backend *be, int k, float *dp, float *db, const float *d, const float *pre,
                    int64_t n, int64_t c)
{ TIMED(P_ACTBB, orig->act_bias_backward(be, k, dp, db, d, pre, n, c)); }

static void profile_install(fmd_backend *be)
{
    orig = be->ops;
    wrapped = *orig;
    wrapped.gemm = w_gemm; wrapped.gemm_batched = w_gemmb; wrapped.bias_add = w_bias;
    wrapped.bias_grad = w_biasg; wrapped.bcast_mul = w_bmul; wrapped.bcast_mul_reduce = w_bmulr;
    wrapped.axpby = w_axpby; wrapped.act_forward = w_actf; wrapped.act_backward = w_actb;
    wrapped.layernorm_forward = w_lnf; wrapped.layernorm_backward = w_lnb;
    wrapped.softmax_forward = w_smf; wrapped.softmax_backward = w_smb;
    wrapped.modulate_forward = w_modf; wrapped.modulate_backward = w_modb;
    wrapped.embed_forward = w_embf; wrapped.embed_backward = w_embb; wrapped.timestep_embed = w_temb;
    wrapped.permute = w_perm; wrapped.copy2d = w_copy2d; wrapped.copy = w_copy; wrapped.memset0 = w_zero;
    if (FMDB_HAS(be, bias_act_forward)) wrapped.bias_act_forward = w_bactf;
    if (FMDB_HAS(be, act_bias_backward)) wrapped.act_bias_backward = w_actbb;
    be->ops = &wrapped;
}

static void profile_report(const char *what)
{
    double tot = 0;
    for (int i = 0; i < P_N; i++) tot += ptime[i];
    printf("  op profile (%s, %.3f s in ops):", what, tot);
    for (int i = 0; i < P_N; i++)
        if (ptime[i] > 0.005 * tot) printf("  %s %.1f%%", pname[i], 100.0 * ptime[i] / tot);
    printf("\n");
    memset(ptime, 0, sizeof ptime);
    memset(pcount, 0, sizeof pcount);
}
static int g_profile;

static double mlp_flops(const nn_config *c)
{
    double W = c->width, D = c->dim, F = c->temb_dim;
    return 2.0 * (F * W + W * W) + 2.0 * (D * W + (c->depth - 1) * W * W + W * D);
}

static double dit_flops(const nn_config *c)
{
    double P = c->patch_size, T = (double)(c->input_size / c->patch_size) * (c->input_size / c->patch_size);
    double C = c->hidden_size, Cin = c->in_channels, Hm = C * c->mlp_ratio, F = c->temb_dim;
    double Cout = c->learn_sigma ? 2 * Cin : Cin;
    double blk = 2 * T * C * 3 * C + 2 * 2 * T * T * C + 2 * T * C * C + 2 * 2 * T * C * Hm + 2 * C * 6 * C;
    return 2 * T * Cin * P * P * C + 2 * (F * C + C * C) + c->dit_depth * blk + 2 * C * 2 * C +
           2 * T * C * P * P * Cout;
}

static int run(fmd_backend *be, const char *name, nn_config *c, int64_t B, int iters, double flops)
{
    nn_model *m = NULL;
    if (nn_model_create(be, c, 1, &m) || nn_model_randomize(m, 2, 0.02f)) {
        fprintf(stderr, "%s: %s\n", name, fmd_last_error());
        return 1;
    }
    int64_t D = nn_model_dim(m);
    float *h = malloc(sizeof(float) * (size_t)(B * D));
    for (int64_t i = 0; i < B * D; i++) h[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    float *x = be->ops->alloc(be, sizeof(float) * B * D), *out = be->ops->alloc(be, sizeof(float) * B * D);
    float *t = be->ops->alloc(be, sizeof(float) * B);
    int32_t *lab = be->ops->alloc(be, sizeof(int32_t) * B);
    be->ops->upload(be, x, h, sizeof(float) * B * D);
    for (int64_t i = 0; i < B; i++) h[i] = (float)(i + 1) / (float)(B + 1);
    be->ops->upload(be, t, h, sizeof(float) * B);
    int32_t *hl = malloc(sizeof(int32_t) * B);
    for (int64_t i = 0; i < B; i++) hl[i] = c->num_classes ? (int32_t)(i % c->num_classes) : 0;
    be->ops->upload(be, lab, hl, sizeof(int32_t) * B);
    const int32_t *L = c->num_classes ? lab : NULL;

    for (int mode = 0; mode < 2; mode++) {
        fmd_status st = nn_model_reserve_ex(m, B, mode == 0 ? (NN_RESERVE_INFERENCE | NN_RESERVE_NO_JVP)
                                                            : NN_RESERVE_TRAIN);
        if (st) {
            fprintf(stderr, "%s: %s\n", name, fmd_last_error());
            return 1;
        }
        double best = 1e30, total = 0;
        for (int it = 0; it <= iters; it++) {        /* iteration 0 warms up */
            double t0 = fmd_now();
            st = nn_model_forward(m, out, x, t, NULL, L, B);
            if (!st && mode == 1) st = nn_model_zero_grad(m);
            if (!st && mode == 1) st = nn_model_backward(m, out, NULL, B);
            if (!st) st = be->ops->sync(be);
            double dt = fmd_now() - t0;
            if (st) {
                fprintf(stderr, "%s: %s\n", name, fmd_last_error());
                return 1;
            }
            if (it == 0 && g_profile) {
                memset(ptime, 0, sizeof ptime);
                memset(pcount, 0, sizeof pcount);
            }
            if (it > 0) {
                total += dt;
                if (dt < best) best = dt;
            }
        }
        double mean = total / iters, f = flops * (double)B * (mode ? 3.0 : 1.0);
        printf("fmd   %-4s %-12s batch %5lld: %10.1f samples/s  %7.1f GFLOP/s  (mean %.4f s, best %.4f s, "
               "%d iters, arena %.1f MiB)\n",
               name, mode ? "fwd+bwd" : "forward", (long long)B, (double)B / mean, f / mean * 1e-9,
               mean, best, iters, (double)nn_model_arena_bytes(m) / 1048576.0);
        if (g_profile) profile_report(mode ? "fwd+bwd" : "forward");
        fflush(stdout);
    }
    be->ops->free(be, x); be->ops->free(be, out); be->ops->free(be, t); be->ops->free(be, lab);
    free(h); free(hl);
    nn_model_destroy(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *bname = "cpu", *only = NULL;
    int iters_mlp = 50, iters_sit = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) bname = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters_mlp = iters_sit = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--profile")) g_profile = 1;
        else {
            fprintf(stderr, "usage: bench_nn [--backend cpu|cuda] [--iters N] [--only mlp|sit] [--profile]\n");
            return 2;
        }
    }
    if (iters_mlp < 1) iters_mlp = iters_sit = 1;
    fmd_backend *be = NULL;
    if (fmd_backend_open(bname, &be)) {
        fprintf(stderr, "backend %s: %s\n", bname, fmd_last_error());
        return 1;
    }
    printf("device: %s\n", fmd_backend_device(be));
    if (g_profile) profile_install(be);
    int rc = 0;
    if (!only || !strcmp(only, "mlp")) {
        nn_config c = {0};
        c.arch = NN_ARCH_MLP;
        c.dim = 2;
        c.width = 256;
        c.depth = 4;
        rc |= run(be, "mlp", &c, 1024, iters_mlp, mlp_flops(&(nn_config){.dim = 2, .width = 256,
                                                                            .depth = 4, .temb_dim = 256}));
    }
    if (!only || !strcmp(only, "sit")) {
        nn_config c = {0};
        c.arch = NN_ARCH_DIT;
        nn_config_preset(&c, "SiT-S/2");
        c.input_size = 32;
        c.in_channels = 4;
        c.num_classes = 1000;
        c.learn_sigma = 1;
        c.temb_dim = 256;
        rc |= run(be, "sit", &c, 32, iters_sit, dit_flops(&c));
    }
    if (g_profile) be->ops = orig;
    fmd_backend_destroy(be);
    return rc;
}
