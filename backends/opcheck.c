/* opcheck.c - every backend op compared with the plain-C reference backend
 * on the same inputs (ggml's test-backend-ops, by normalised squared error).
 * Used by fmd_backend_selfcheck (small shapes) and tests/test_backend_ops.c
 * (all shapes, every GEMM transpose). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "opcheck.h"
#include "util/util.h"

#define MAX_BUFS 24
#define MAX_OUTS 6

typedef struct {
    fmd_backend *be;
    void *dev[MAX_BUFS];
    int ndev;
    float *out_dev[MAX_OUTS];
    float *out_host[MAX_OUTS];
    int64_t out_n[MAX_OUTS];
    int nout;
    double scalar[4];       /* host results (reduce, nonfinite) */
    int nscalar;
    uint64_t rng;
} opctx;

static double rnd(opctx *c)
{
    uint64_t x = c->rng;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    c->rng = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

static void *dalloc(opctx *c, size_t bytes)
{
    if (c->ndev == MAX_BUFS) { fmdb_fail(c->be, FMD_ERR_INTERNAL, "opcheck: too many buffers"); return NULL; }
    void *p = c->be->ops->alloc(c->be, bytes ? bytes : 4);
    if (p) {
        c->dev[c->ndev++] = p;
    } else {
        /* allocation failures are not sticky; the check's cases end on one */
        char why[sizeof c->be->errmsg];
        snprintf(why, sizeof why, "%s", c->be->errmsg);
        fmdb_fail(c->be, FMD_ERR_OOM, "%s", why);
    }
    return p;
}

/* A device buffer filled with uniform values in [lo, hi) (same values on
 * every backend: the generator depends only on the case's seed). */
static float *in_rand(opctx *c, int64_t n, float lo, float hi)
{
    float *h = fmd_malloc((size_t)(n ? n : 1) * sizeof(float));
    float *d = dalloc(c, (size_t)n * sizeof(float));
    if (!h || !d) {
        if (!h) fmdb_fail(c->be, FMD_ERR_OOM, "opcheck: out of memory");
        fmd_free(h);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * (float)rnd(c);
    c->be->ops->upload(c->be, d, h, (size_t)n * sizeof(float));
    fmd_free(h);
    return d;
}

static int32_t *in_idx(opctx *c, int64_t n, int32_t maxv)
{
    int32_t *h = fmd_malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    int32_t *d = dalloc(c, (size_t)n * sizeof(int32_t));
    if (!h || !d) {
        if (!h) fmdb_fail(c->be, FMD_ERR_OOM, "opcheck: out of memory");
        fmd_free(h);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) h[i] = (int32_t)(rnd(c) * maxv) % maxv;
    c->be->ops->upload(c->be, d, h, (size_t)n * sizeof(int32_t));
    fmd_free(h);
    return d;
}

/* Mark a device buffer as an output to compare (downloaded after the op). */
static void out_mark(opctx *c, float *d, int64_t n)
{
    if (!d || c->nout == MAX_OUTS) return;
    c->out_dev[c->nout] = d;
    c->out_n[c->nout++] = n;
}

/* An output buffer pre-filled with random values (so beta paths are tested). */
static float *out_rand(opctx *c, int64_t n)
{
    float *d = in_rand(c, n, -1.0f, 1.0f);
    out_mark(c, d, n);
    return d;
}

#define OPS (c->be->ops)
#define BE (c->be)

/* Each case: sizes s[0..2] (meaning per op), v a variant number. */
typedef void (*case_fn)(opctx *c, const int64_t *s, int v);

static void case_gemm(opctx *c, const int64_t *s, int v)
{
    int64_t m = s[0], n = s[1], k = s[2];
    int ta = v & 1, tb = (v >> 1) & 1;
    float beta = (v & 4) ? 0.5f : 0.0f;
    float *a = in_rand(c, m * k, -1, 1), *b = in_rand(c, k * n, -1, 1), *o = out_rand(c, m * n);
    if (!a || !b || !o) return;
    OPS->gemm(BE, ta, tb, m, n, k, 0.75f, a, ta ? m : k, b, tb ? k : n, beta, o, n);
}

static void case_gemm_batched(opctx *c, const int64_t *s, int v)
{
    int64_t m = s[0], n = s[1], k = s[2], nb = 3;
    int ta = v & 1, tb = (v >> 1) & 1;
    float *a = in_rand(c, nb * m * k, -1, 1), *b = in_rand(c, nb * k * n, -1, 1), *o = out_rand(c, nb * m * n);
    if (!a || !b || !o) return;
    OPS->gemm_batched(BE, ta, tb, m, n, k, 1.0f, a, ta ? m : k, m * k, b, tb ? k : n, k * n, (v & 4) ? 1.0f : 0.0f,
                      o, n, m * n, nb);
}

static void case_bias(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0], ch = s[1];
    float *x = in_rand(c, n * ch, -1, 1), *b = in_rand(c, ch, -1, 1), *o = out_rand(c, n * ch);
    float *db = out_rand(c, ch);
    if (!x || !b || !o || !db) return;
    OPS->bias_add(BE, o, x, b, n, ch);
    OPS->bias_grad(BE, db, x, n, ch);
}

static void case_bcast(opctx *c, const int64_t *s, int v)
{
    int64_t b = s[0], t = s[1], ch = s[2];
    float beta = v ? 0.5f : 0.0f;
    float *x = in_rand(c, b * t * ch, -1, 1), *g = in_rand(c, b * ch, -1, 1);
    float *o = out_rand(c, b * t * ch), *dg = out_rand(c, b * ch);
    if (!x || !g || !o || !dg) return;
    OPS->bcast_mul(BE, o, x, g, b, t, ch, beta);
    OPS->bcast_mul_reduce(BE, dg, x, o, b, t, ch, beta);
}

static void case_elementwise(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0] * s[1];
    float *x = in_rand(c, n, -2, 2), *y = in_rand(c, n, -2, 2);
    float *o1 = out_rand(c, n), *o3 = out_rand(c, n);
    if (!x || !y || !o1 || !o3) return;
    OPS->axpby(BE, o1, 1.5f, x, v ? -0.25f : 0.0f, v ? y : NULL, n);
    OPS->copy(BE, o3, x, (size_t)n * sizeof(float));
    OPS->affine(BE, o3, -0.5f, 0.25f, n);
}

static void case_act(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0] * s[1];
    int kind = v & 1;
    float beta = (v & 2) ? 1.0f : 0.0f;
    float *x = in_rand(c, n, -6, 6), *g = in_rand(c, n, -1, 1);
    float *o = out_rand(c, n), *dx = out_rand(c, n);
    if (!x || !g || !o || !dx) return;
    OPS->act_forward(BE, kind, o, x, n);
    OPS->act_backward(BE, kind, dx, g, x, n, beta);
}

static void case_layernorm(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0], ch = s[1];
    int affine = v & 1;
    float *x = in_rand(c, n * ch, -3, 3), *w = in_rand(c, ch, 0.5f, 1.5f), *b = in_rand(c, ch, -1, 1);
    float *g = in_rand(c, n * ch, -1, 1);
    float *o = out_rand(c, n * ch), *mu = out_rand(c, n), *rs = out_rand(c, n);
    float *dx = out_rand(c, n * ch), *dw = out_rand(c, ch), *db = out_rand(c, ch);
    if (!x || !w || !b || !g || !o || !mu || !rs || !dx || !dw || !db) return;
    OPS->layernorm_forward(BE, o, mu, rs, x, affine ? w : NULL, affine ? b : NULL, n, ch, 1e-6f);
    OPS->layernorm_backward(BE, dx, affine ? dw : NULL, affine ? db : NULL, g, x, affine ? w : NULL, mu, rs, n, ch,
                            (v & 2) ? 1.0f : 0.0f);
}

static void case_softmax(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0], ch = s[1];
    float scale = v ? 0.125f : 1.0f;
    float *x = in_rand(c, n * ch, -8, 8), *g = in_rand(c, n * ch, -1, 1);
    float *o = out_rand(c, n * ch), *dx = out_rand(c, n * ch);
    if (!x || !g || !o || !dx) return;
    OPS->softmax_forward(BE, o, x, n, ch, scale);
    OPS->softmax_backward(BE, dx, g, o, n, ch, scale);
}

static void case_modulate(opctx *c, const int64_t *s, int v)
{
    int64_t b = s[0], t = s[1], ch = s[2], ld = 3 * ch;
    float *x = in_rand(c, b * t * ch, -2, 2), *mod = in_rand(c, b * ld, -1, 1), *g = in_rand(c, b * t * ch, -1, 1);
    float *o = out_rand(c, b * t * ch), *dx = out_rand(c, b * t * ch), *dmod = out_rand(c, b * ld);
    if (!x || !mod || !g || !o || !dx || !dmod) return;
    OPS->modulate_forward(BE, o, x, mod, mod + ch, ld, b, t, ch);
    OPS->modulate_backward(BE, dx, dmod, dmod + ch, g, x, mod + ch, ld, b, t, ch, v ? 1.0f : 0.0f);
}

static void case_reduce(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0] * s[1];
    float *x = in_rand(c, n, -1, 1), *y = in_rand(c, n, -1, 1), *rd = out_rand(c, s[0]);
    if (!x || !y || !rd) return;
    for (int k = 0; k < 3; k++) OPS->reduce(BE, k, x, n, &c->scalar[c->nscalar++]);
    OPS->row_dot(BE, rd, x, v ? x : y, s[0], s[1], v ? 0.5f : 0.0f);
}

static void case_optim(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0] * s[1];
    float *p = out_rand(c, n), *g = in_rand(c, n, -1, 1), *m = out_rand(c, n), *vv = in_rand(c, n, 0, 1), *e = out_rand(c, n);
    out_mark(c, vv, n);
    if (!p || !g || !m || !vv || !e) return;
    OPS->adamw(BE, p, g, m, vv, n, 1e-2f, 0.9f, 0.999f, 1e-8f, v ? 0.01f : 0.0f, 3 + v, v ? 0.5f : 1.0f);
    OPS->ema(BE, e, p, n, 0.99f);
}

static void case_random(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0] * s[1];
    float *a = out_rand(c, n), *b = out_rand(c, n);
    if (!a || !b) return;
    OPS->fill_normal(BE, a, n, 0x1234567890abcdefull + (uint64_t)v, 7, (uint64_t)s[2]);
    OPS->fill_uniform(BE, b, n, 42, (uint64_t)v, (uint64_t)s[2] * 3);
}

static void case_embed(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0], ch = s[1], vocab = s[2] + 1;
    float *table = in_rand(c, vocab * ch, -1, 1), *g = in_rand(c, n * ch, -1, 1), *t = in_rand(c, n, 0, 1);
    int32_t *idx = in_idx(c, n, (int32_t)vocab);
    float *o = out_rand(c, n * ch), *dt = out_rand(c, vocab * ch), *te = out_rand(c, n * ch);
    if (!table || !g || !t || !idx || !o || !dt || !te) return;
    OPS->embed_forward(BE, o, table, idx, n, ch);
    OPS->embed_backward(BE, dt, g, idx, n, ch);
    OPS->timestep_embed(BE, te, t, n, ch, 10000.0f, v ? 1000.0f : 1.0f, v);
}

static void case_permute(opctx *c, const int64_t *s, int v)
{
    /* (a, b, c, 2) tensors under a few permutations, and a strided copy */
    static const int perms[4][6] = {{0, 2, 1, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {2, 0, 3, 1}};
    int64_t dims[4] = {s[0], s[1], s[2], 2}, n = s[0] * s[1] * s[2] * 2;
    float *x = in_rand(c, n, -1, 1), *o = out_rand(c, n), *o2 = out_rand(c, n);
    if (!x || !o || !o2) return;
    OPS->permute(BE, o, x, 4, dims, perms[v & 3], (v & 4) ? 1.0f : 0.0f);
    OPS->copy2d(BE, o2, s[2] * 2, x, s[2] * 2, s[0] * s[1], s[2], (v & 4) ? 0.5f : 0.0f);
}

static void case_nonfinite(opctx *c, const int64_t *s, int v)
{
    int64_t n = s[0] * s[1];
    float *x = in_rand(c, n, -1, 1);
    if (!x) return;
    c->scalar[c->nscalar++] = OPS->nonfinite(BE, x, n);
    if (v) {
        float bad[2] = {NAN, INFINITY};
        OPS->upload(BE, x + (n - 1), &bad[v - 1], sizeof(float));
        c->scalar[c->nscalar++] = OPS->nonfinite(BE, x, n);
        double mx;
        OPS->reduce(BE, FMDB_RED_MAXABS, x, n, &mx);
        c->scalar[c->nscalar++] = isinf(mx) ? 1.0 : 0.0;
    }
}

typedef struct {
    const char *name;
    case_fn fn;
    int variants;
    double tol;    /* NMSE bound */
} op_case;

static const op_case k_cases[] = {
    {"gemm", case_gemm, 8, 1e-9},
    {"gemm_batched", case_gemm_batched, 8, 1e-9},
    {"bias_add+bias_grad", case_bias, 1, 1e-10},
    {"bcast_mul+bcast_mul_reduce", case_bcast, 2, 1e-10},
    {"axpby+affine+copy", case_elementwise, 2, 1e-12},
    {"act_forward+act_backward", case_act, 4, 1e-10},
    {"layernorm", case_layernorm, 4, 1e-9},
    {"softmax", case_softmax, 2, 1e-9},
    {"modulate", case_modulate, 2, 1e-10},
    {"reduce+row_dot", case_reduce, 2, 1e-10},
    {"adamw+ema", case_optim, 2, 1e-10},
    {"fill_normal+fill_uniform", case_random, 2, 1e-11},
    {"embed+timestep_embed", case_embed, 2, 1e-9},
    {"permute+copy2d", case_permute, 8, 0.0},
    {"nonfinite", case_nonfinite, 3, 0.0},
};

int opcheck_num_cases(void) { return (int)(sizeof k_cases / sizeof k_cases[0]); }
const char *opcheck_case_name(int i) { return (i >= 0 && i < opcheck_num_cases()) ? k_cases[i].name : NULL; }
int opcheck_case_variants(int i) { return k_cases[i].variants; }

static void ctx_free(opctx *c)
{
    for (int i = 0; i < c->ndev; i++) c->be->ops->free(c->be, c->dev[i]);
    for (int i = 0; i < c->nout; i++) fmd_free(c->out_host[i]);
    c->ndev = c->nout = 0;
}

static fmd_status run_on(opctx *c, fmd_backend *be, int ci, const int64_t *s, int v, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->be = be;
    c->rng = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    k_cases[ci].fn(c, s, v);
    for (int i = 0; i < c->nout && fmdb_ok(be); i++) {
        c->out_host[i] = fmd_malloc((size_t)(c->out_n[i] ? c->out_n[i] : 1) * sizeof(float));
        if (!c->out_host[i]) return fmd_seterr(FMD_ERR_OOM, "opcheck: out of memory");
        be->ops->download(be, c->out_host[i], c->out_dev[i], (size_t)c->out_n[i] * sizeof(float));
    }
    fmd_status st = be->ops->sync(be);
    if (st != FMD_OK) return fmd_seterr(st, "opcheck: %s on %s: %s", k_cases[ci].name, be->name, be->errmsg);
    return FMD_OK;
}

fmd_status opcheck_run(fmd_backend *be, fmd_backend *ref, int ci, const int64_t *s, int v, uint64_t seed,
                       double *worst)
{
    opctx a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    *worst = 0.0;
    fmd_status st = run_on(&a, be, ci, s, v, seed);
    if (st == FMD_OK) st = run_on(&b, ref, ci, s, v, seed);
    if (st != FMD_OK) { ctx_free(&a); ctx_free(&b); return st; }
    const op_case *oc = &k_cases[ci];
    for (int i = 0; i < a.nout && st == FMD_OK; i++) {
        double num = 0, den = 0;
        for (int64_t j = 0; j < a.out_n[i]; j++) {
            double d = (double)a.out_host[i][j] - b.out_host[i][j];
            num += d * d;
            den += (double)b.out_host[i][j] * b.out_host[i][j];
        }
        double e = den > 0 ? num / den : num;
        if (!(e <= oc->tol)) e = isnan(e) ? INFINITY : e;
        if (e > *worst) *worst = e;
        if (!(e <= oc->tol))
            st = fmd_seterr(FMD_ERR_INTERNAL, "op %s (variant %d, sizes %lld,%lld,%lld) output %d on %s: NMSE %.3g "
                            "> %.3g against the reference", oc->name, v, (long long)s[0], (long long)s[1],
                            (long long)s[2], i, be->name, e, oc->tol);
    }
    if (st == FMD_OK && a.nscalar != b.nscalar)
        st = fmd_seterr(FMD_ERR_INTERNAL, "op %s: %d scalar results on %s, %d on the reference", oc->name,
                        a.nscalar, be->name, b.nscalar);
    for (int i = 0; i < a.nscalar && st == FMD_OK; i++) {
        double r = b.scalar[i], d = fabs(a.scalar[i] - r) / (fabs(r) + 1e-30);
        if (!(d <= 1e-5) && !(a.scalar[i] == r))
            st = fmd_seterr(FMD_ERR_INTERNAL, "op %s (variant %d) scalar result %d on %s: %.9g, reference %.9g",
                            oc->name, v, i, be->name, a.scalar[i], r);
    }
    ctx_free(&a);
    ctx_free(&b);
    return st;
}

fmd_status fmd_backend_selfcheck(fmd_backend *be)
{
    FMD_CHECK_ARG(be, "fmd_backend_selfcheck: backend is NULL");
    fmd_backend *ref = NULL;
    fmd_status st = fmdb_open_reference(&ref);
    if (st) return st;
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 9}};
    for (int ci = 0; ci < opcheck_num_cases() && st == FMD_OK; ci++)
        for (int si = 0; si < 3 && st == FMD_OK; si++)
            for (int v = 0; v < k_cases[ci].variants && st == FMD_OK; v++) {
                double w;
                st = opcheck_run(be, ref, ci, shapes[si], v, (uint64_t)(ci * 100 + si * 10 + v), &w);
            }
    fmd_backend_destroy(ref);
    if (st != FMD_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", fmd_last_error());
        return fmd_seterr(st, "fmd_backend_selfcheck: %s", msg);
    }
    return FMD_OK;
}
