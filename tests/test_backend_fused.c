/* test_backend_fused.c - the optional fused slots of the backend named on the
 * command line (default cpu): bias_act_forward and act_bias_backward against
 * the plain-C reference backend, out of place and in place (out == pre,
 * dpre == dout), with and without bias, both activations, odd shapes.  A
 * backend without the slots, or "cuda" without a GPU, reports SKIPPED. */
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
    fmd_backend_destroy(be);
    fmd_backend_destroy(ref);
    return tu_finish("test_backend_fused");
}
