/* test_backend_fused.c - the optional fused slots of the backend named on the
 * command line (default cpu): bias_act_forward and act_bias_backward against
 * the plain-C reference backend, out of place and in place (out == pre,
 * dpre == dout), with and without bias, both activations, odd shapes.  Then
 * the subnormal contract of all four activation ops (fused and plain, and the
 * reference backend's): a result below FLT_MIN in magnitude is stored as 0.
 * A backend without the fused slots, or "cuda" without a GPU, reports
 * SKIPPED. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "backend.h"
#include "testutil.h"

typedef struct {
    fmd_backend *be;
    float *pre, *bias, *out, *dout, *dpre, *dbias;
} bufs;

static int alloc_all(bufs *b, fmd_backend *be, int64_t n, int64_t c)
{
    memset(b, 0, sizeof *b);
    b->be = be;
    float **p[] = {&b->pre, &b->out, &b->dout, &b->dpre};
    for (int i = 0; i < 4; i++) *p[i] = be->ops->alloc(be, (size_t)(n * c) * sizeof(float));
    b->bias = be->ops->alloc(be, (size_t)c * sizeof(float));
    b->dbias = be->ops->alloc(be, (size_t)c * sizeof(float));
    return b->pre && b->out && b->dout && b->dpre && b->bias && b->dbias;
}

static void free_all(bufs *b)
{
    float *p[] = {b->pre, b->out, b->dout, b->dpre, b->bias, b->dbias};
    for (int i = 0; i < 6; i++) b->be->ops->free(b->be, p[i]);
}

/* Runs the fused ops on one backend from the same host inputs; results in
 * host arrays: pre after the forward, out, dpre, dbias. */
static fmd_status run(fmd_backend *be, int kind, int with_bias, int in_place, int64_t n, int64_t c,
                      const float *h_pre, const float *h_bias, const float *h_dout, const float *h_dbias,
                      float *r_pre, float *r_out, float *r_dpre, float *r_dbias)
{
    bufs b;
    size_t nb = (size_t)(n * c) * sizeof(float), cb = (size_t)c * sizeof(float);
    if (!alloc_all(&b, be, n, c)) {
        free_all(&b);
        return FMD_ERR_OOM;
    }
    be->ops->upload(be, b.pre, h_pre, nb);
    be->ops->upload(be, b.bias, h_bias, cb);
    be->ops->upload(be, b.dout, h_dout, nb);
    be->ops->upload(be, b.dbias, h_dbias, cb);
    const float *bias = with_bias ? b.bias : NULL;
    if (in_place) {
        /* keep a copy of the pre-activation for the backward, then out == pre */
        be->ops->copy(be, b.out, b.pre, nb);
        be->ops->bias_act_forward(be, kind, b.out, b.out, bias, n, c); /* out holds f(pre + bias) */
        be->ops->bias_act_forward(be, kind, b.dpre, b.pre, bias, n, c); /* pre += bias, dpre scratch */
        be->ops->download(be, r_out, b.out, nb);
        be->ops->download(be, r_pre, b.pre, nb);
        be->ops->act_bias_backward(be, kind, b.dout, with_bias ? b.dbias : NULL, b.dout, b.pre, n, c);
        be->ops->download(be, r_dpre, b.dout, nb);
    } else {
        be->ops->bias_act_forward(be, kind, b.out, b.pre, bias, n, c);
        be->ops->download(be, r_out, b.out, nb);
        be->ops->download(be, r_pre, b.pre, nb);
        be->ops->act_bias_backward(be, kind, b.dpre, with_bias ? b.dbias : NULL, b.dout, b.pre, n, c);
        be->ops->download(be, r_dpre, b.dpre, nb);
    }
    be->ops->download(be, r_dbias, b.dbias, cb);
    fmd_status st = be->ops->sync(be);
    free_all(&b);
    return st;
}

/* Inputs whose activation or derivative product is subnormal in exact
 * arithmetic (x ~ 2e-38 gives f(x) ~ x/2; dout = 2e-38 times |f'| < 1; the
 * realistic case: a dead SiLU unit, pre = -80, f' = -1.4e-33, times dout =
 * 1e-6), and ordinary ones that must stay untouched. */
#define NSUB 8
static const float sub_pre[NSUB] = {2.2e-38f, -2.2e-38f, -1.0f, -0.5f, 0.7f, -80.0f, 1.5f, -2.0f};
static const float sub_dout[NSUB] = {2e-38f, 2e-38f, 2e-38f, 2e-38f, -2e-38f, 1e-6f, 0.5f, -0.25f};

/* Every value is 0 or normal; the ordinary lanes (6, 7) are nonzero. */
static void all_flushed(const float *x, const char *what, int kind)
{
    for (int i = 0; i < NSUB; i++)
        CHECK_MSG(fpclassify(x[i]) != FP_SUBNORMAL, "%s (kind %d) lane %d: subnormal %g not flushed to 0",
                  what, kind, i, (double)x[i]);
    CHECK_MSG(x[6] != 0.0f && x[7] != 0.0f, "%s (kind %d): ordinary lanes zeroed", what, kind);
}

/* act_forward, act_backward (beta 0 and beta 0.25 onto dx = 2e-38, whose
 * scaled old value alone is subnormal), bias_act_forward and
 * act_bias_backward (when present) on one backend. */
static void check_subnormal_flush(fmd_backend *be, const char *name)
{
    size_t nb = NSUB * sizeof(float);
    float *pre = be->ops->alloc(be, nb), *dout = be->ops->alloc(be, nb), *out = be->ops->alloc(be, nb);
    float h[NSUB], old[NSUB];
    if (!pre || !dout || !out) {
        CHECK_MSG(0, "%s: alloc failed", name);
        goto done;
    }
    for (int i = 0; i < NSUB; i++) old[i] = 2e-38f;
    be->ops->upload(be, pre, sub_pre, nb);
    be->ops->upload(be, dout, sub_dout, nb);
    for (int kind = 0; kind < 2; kind++) {
        char what[64];
        be->ops->act_forward(be, kind, out, pre, NSUB);
        be->ops->download(be, h, out, nb);
        snprintf(what, sizeof what, "%s act_forward", name);
        all_flushed(h, what, kind);
        be->ops->act_backward(be, kind, out, dout, pre, NSUB, 0.0f);
        be->ops->download(be, h, out, nb);
        snprintf(what, sizeof what, "%s act_backward", name);
        all_flushed(h, what, kind);
        /* beta path: dout 0 in lanes 0-5 leaves 0.25 * 2e-38 = 5e-39 */
        float d2[NSUB];
        for (int i = 0; i < NSUB; i++) d2[i] = i < 6 ? 0.0f : sub_dout[i];
        be->ops->upload(be, dout, d2, nb);
        be->ops->upload(be, out, old, nb);
        be->ops->act_backward(be, kind, out, dout, pre, NSUB, 0.25f);
        be->ops->download(be, h, out, nb);
        snprintf(what, sizeof what, "%s act_backward beta", name);
        all_flushed(h, what, kind);
        be->ops->upload(be, dout, sub_dout, nb);
        if (FMDB_HAS(be, bias_act_forward)) {
            float *p2 = be->ops->alloc(be, nb);
            if (!p2) {
                CHECK_MSG(0, "%s: alloc failed", name);
                continue;
            }
            be->ops->copy(be, p2, pre, nb);
            be->ops->bias_act_forward(be, kind, out, p2, NULL, 1, NSUB);
            be->ops->download(be, h, out, nb);
            snprintf(what, sizeof what, "%s bias_act_forward", name);
            all_flushed(h, what, kind);
            be->ops->act_bias_backward(be, kind, out, NULL, dout, pre, 1, NSUB);
            be->ops->download(be, h, out, nb);
            snprintf(what, sizeof what, "%s act_bias_backward", name);
            all_flushed(h, what, kind);
            be->ops->free(be, p2);
        }
    }
    CHECK_OK(be->ops->sync(be));
done:
    be->ops->free(be, pre);
    be->ops->free(be, dout);
    be->ops->free(be, out);
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "cpu";
    fmd_backend *be = NULL, *ref = NULL;
    int rc = tu_open_backend("test_backend_fused", name, &be);
    if (rc) return rc;
    CHECK_OK(fmdb_open_reference(&ref));
    if (!be || !ref) return tu_finish("test_backend_fused");
    if (!FMDB_HAS(be, bias_act_forward) || !FMDB_HAS(be, act_bias_backward) ||
        !FMDB_HAS(ref, bias_act_forward) || !FMDB_HAS(ref, act_bias_backward)) {
        fmd_backend_destroy(be);
        fmd_backend_destroy(ref);
        return tu_skip("test_backend_fused", "the backend has no fused slots");
    }
    printf("backend: %s\n", fmd_backend_device(be));
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {64, 256}, {257, 129}, {4096, 3}};
    for (int si = 0; si < 6; si++)
        for (int v = 0; v < 8; v++) {
            int kind = v & 1, with_bias = (v >> 1) & 1, in_place = (v >> 2) & 1;
            int64_t n = shapes[si][0], c = shapes[si][1], nc = n * c;
            float *h = malloc((size_t)(4 * nc + 2 * c) * sizeof(float));
            float *r = malloc((size_t)(2 * (3 * nc + c)) * sizeof(float));
            if (!h || !r) {
                free(h);
                free(r);
                CHECK(0);
                continue;
            }
            float *h_pre = h, *h_dout = h + nc, *h_bias = h + 2 * nc, *h_dbias = h + 2 * nc + c;
            tu_seed((uint64_t)(100 * si + v));
            tu_fill(h_pre, nc, -6.0f, 6.0f);
            tu_fill(h_dout, nc, -1.0f, 1.0f);
            tu_fill(h_bias, c, -1.0f, 1.0f);
            tu_fill(h_dbias, c, -1.0f, 1.0f);
            float *a = r, *b = r + 3 * nc + c; /* backend, reference: pre, out, dpre, dbias */
            fmd_status sa = run(be, kind, with_bias, in_place, n, c, h_pre, h_bias, h_dout, h_dbias, a, a + nc,
                                a + 2 * nc, a + 3 * nc);
            fmd_status sb = run(ref, kind, with_bias, in_place, n, c, h_pre, h_bias, h_dout, h_dbias, b, b + nc,
                                b + 2 * nc, b + 3 * nc);
            CHECK_OK(sa);
            CHECK_OK(sb);
            if (!sa && !sb) {
                double ep = tu_rel_err(a, b, nc), eo = tu_rel_err(a + nc, b + nc, nc);
                double ed = tu_rel_err(a + 2 * nc, b + 2 * nc, nc), eb = tu_rel_err(a + 3 * nc, b + 3 * nc, c);
                CHECK_MSG(ep < 1e-6 && eo < 2e-6 && ed < 2e-6 && eb < 1e-5,
                          "shape %lldx%lld kind %d bias %d in-place %d: pre %.2g out %.2g dpre %.2g dbias %.2g",
                          (long long)n, (long long)c, kind, with_bias, in_place, ep, eo, ed, eb);
            }
            free(h);
            free(r);
        }
    check_subnormal_flush(be, name);
    check_subnormal_flush(ref, "ref");
    fmd_backend_destroy(be);
    fmd_backend_destroy(ref);
    return tu_finish("test_backend_fused");
}
