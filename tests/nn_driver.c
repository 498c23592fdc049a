/* nn_driver.c - runs one libfmd network on inputs written by a test in
 * another language (tests/python/test_nn_parity.py) and writes everything
 * the test compares, before the Python bindings exist.
 *
 *   nn_driver WEIGHTS INPUTS OUTPUT
 *   nn_driver --views CONFIG OUTPUT.json
 *
 * WEIGHTS: safetensors with the parameters (names as the model's views) and
 *   the configuration in __metadata__ (keys as nn_config's fields: arch =
 *   mlp|dit, student, num_classes, dim, width, depth, temb_dim, time_scale,
 *   delta_scale, input_size, patch_size, in_channels, hidden_size,
 *   dit_depth, num_heads, mlp_ratio, learn_sigma); extra tensors are refused.
 * INPUTS: safetensors F32 x (B, D), t (B), labels (B, as float, optional),
 *   delta (B, student only), dout (B, D), tan_t (B), tan_delta (B, student).
 * OUTPUT: safetensors F32 out (B, D) = model(x, t, delta, labels),
 *   tout (B, D) = its JVP along (tan_t, tan_delta), dx (B, D) and
 *   "grad.<view>" = d sum(dout * out) / d params.
 * --views: CONFIG is a safetensors file whose metadata holds the
 *   configuration (tensors ignored); writes the model's parameter views and
 *   buffers as JSON {"params": [[name, [shape]], ...], "buffers": [...],
 *   "num_params": N} without running it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "nn/model.h"
#include "io/safetensors.h"
#include "util/util.h"

static int fail(const char *what)
{
    fprintf(stderr, "nn_driver: %s: %s\n", what, fmd_last_error());
    return 1;
}

static int meta_i(st_file *f, const char *k, int *v)
{
    const char *s = st_metadata(f, k);
    if (s) *v = atoi(s);
    return s != NULL;
}
static int meta_f(st_file *f, const char *k, float *v)
{
    const char *s = st_metadata(f, k);
    if (s) *v = (float)atof(s);
    return s != NULL;
}

static float *read_input(st_file *f, const char *name, int64_t n, int required)
{
    const st_tensor *t = st_find(f, name);
    if (!t) {
        if (required) fprintf(stderr, "nn_driver: input '%s' missing\n", name);
        return NULL;
    }
    if (t->numel != n) {
        fprintf(stderr, "nn_driver: input '%s' has %lld elements, expected %lld\n", name,
                (long long)t->numel, (long long)n);
        return NULL;
    }
    float *h = malloc(sizeof(float) * (size_t)n);
    if (st_read_f32(f, t, h, n)) {
        free(h);
        return NULL;
    }
    return h;
}

static void write_views(FILE *fp, const nn_model *m, int buffers)
{
    int n = buffers ? nn_model_num_buffers(m) : nn_model_num_views(m);
    fprintf(fp, "[");
    for (int i = 0; i < n; i++) {
        const nn_param *v = buffers ? nn_model_buffer_view(m, i) : nn_model_view(m, i);
        fprintf(fp, "%s[\"%s\", [", i ? ", " : "", v->name);
        for (int k = 0; k < v->ndim; k++) fprintf(fp, "%s%lld", k ? ", " : "", (long long)v->shape[k]);
        fprintf(fp, "]]");
    }
    fprintf(fp, "]");
}

int main(int argc, char **argv)
{
    int views = argc == 4 && !strcmp(argv[1], "--views");
    if (argc != 4) {
        fprintf(stderr, "usage: nn_driver WEIGHTS INPUTS OUTPUT | nn_driver --views CONFIG OUT.json\n");
        return 2;
    }
    fmd_backend *be = NULL;
    if (fmd_backend_open("cpu", &be)) return fail("backend");
    st_file *wf = NULL, *inf = NULL;
    if (st_open(argv[views ? 2 : 1], &wf)) return fail("weights");
    if (!views && st_open(argv[2], &inf)) return fail("inputs");

    nn_config c;
    memset(&c, 0, sizeof c);
    const char *arch = st_metadata(wf, "arch");
    if (!arch) {
        fprintf(stderr, "nn_driver: weights carry no 'arch' metadata\n");
        return 1;
    }
    c.arch = !strcmp(arch, "dit") ? NN_ARCH_DIT : NN_ARCH_MLP;
    meta_i(wf, "student", &c.student);
    meta_i(wf, "num_classes", &c.num_classes);
    meta_i(wf, "dim", &c.dim);
    meta_i(wf, "width", &c.width);
    meta_i(wf, "depth", &c.depth);
    meta_i(wf, "temb_dim", &c.temb_dim);
    meta_f(wf, "time_scale", &c.time_scale);
    meta_f(wf, "delta_scale", &c.delta_scale);
    meta_i(wf, "input_size", &c.input_size);
    meta_i(wf, "patch_size", &c.patch_size);
    meta_i(wf, "in_channels", &c.in_channels);
    meta_i(wf, "hidden_size", &c.hidden_size);
    meta_i(wf, "dit_depth", &c.dit_depth);
    meta_i(wf, "num_heads", &c.num_heads);
    meta_f(wf, "mlp_ratio", &c.mlp_ratio);
    meta_i(wf, "learn_sigma", &c.learn_sigma);

    nn_model *m = NULL;
    if (nn_model_create(be, &c, 0, &m)) return fail("create");
    if (views) {
        FILE *fp = fopen(argv[3], "w");
        if (!fp) return 1;
        fprintf(fp, "{\"params\": ");
        write_views(fp, m, 0);
        fprintf(fp, ", \"buffers\": ");
        write_views(fp, m, 1);
        fprintf(fp, ", \"num_params\": %lld}\n", (long long)nn_model_num_params(m));
        fclose(fp);
        nn_model_destroy(m);
        st_close(wf);
        fmd_backend_destroy(be);
        return 0;
    }
    if (st_load_model(wf, m, 0, NULL)) return fail("load");
    const st_tensor *tt = st_find(inf, "t");
    if (!tt) {
        fprintf(stderr, "nn_driver: input 't' missing\n");
        return 1;
    }
    int64_t B = tt->numel, D = nn_model_dim(m);
    float *x = read_input(inf, "x", B * D, 1), *t = read_input(inf, "t", B, 1);
    float *dout = read_input(inf, "dout", B * D, 1), *tan_t = read_input(inf, "tan_t", B, 1);
    float *delta = c.student ? read_input(inf, "delta", B, 1) : NULL;
    float *tan_d = c.student ? read_input(inf, "tan_delta", B, 1) : NULL;
    float *labf = c.num_classes ? read_input(inf, "labels", B, 1) : NULL;
    if (!x || !t || !dout || !tan_t || (c.student && (!delta || !tan_d)) || (c.num_classes && !labf))
        return 1;
    if (nn_model_reserve(m, B)) return fail("reserve");

    size_t fb = sizeof(float);
    float *dx_ = be->ops->alloc(be, fb * B * D), *dt = be->ops->alloc(be, fb * B);
    float *dd = be->ops->alloc(be, fb * B), *dtt = be->ops->alloc(be, fb * B);
    float *dtd = be->ops->alloc(be, fb * B), *dout_ = be->ops->alloc(be, fb * B * D);
    float *o = be->ops->alloc(be, fb * B * D), *to = be->ops->alloc(be, fb * B * D);
    float *gx = be->ops->alloc(be, fb * B * D);
    int32_t *lab = be->ops->alloc(be, sizeof(int32_t) * B);
    be->ops->upload(be, dx_, x, fb * B * D);
    be->ops->upload(be, dt, t, fb * B);
    be->ops->upload(be, dtt, tan_t, fb * B);
    be->ops->upload(be, dout_, dout, fb * B * D);
    if (c.student) {
        be->ops->upload(be, dd, delta, fb * B);
        be->ops->upload(be, dtd, tan_d, fb * B);
    }
    if (c.num_classes) {
        int32_t *hl = malloc(sizeof(int32_t) * B);
        for (int64_t i = 0; i < B; i++) hl[i] = (int32_t)labf[i];
        be->ops->upload(be, lab, hl, sizeof(int32_t) * B);
        free(hl);
    }
    if (nn_model_forward_jvp(m, o, to, dx_, dt, c.student ? dd : NULL, c.num_classes ? lab : NULL,
                             dtt, c.student ? dtd : NULL, B))
        return fail("forward_jvp");
    if (nn_model_zero_grad(m)) return fail("zero_grad");
    if (nn_model_backward(m, dout_, gx, B)) return fail("backward");

    int64_t P = nn_model_num_params(m);
    float *ho = malloc(fb * B * D), *hto = malloc(fb * B * D), *hgx = malloc(fb * B * D);
    float *hg = malloc(fb * P);
    be->ops->download(be, ho, o, fb * B * D);
    be->ops->download(be, hto, to, fb * B * D);
    be->ops->download(be, hgx, gx, fb * B * D);
    be->ops->download(be, hg, nn_model_grads(m), fb * P);
    if (be->ops->sync(be)) {
        fprintf(stderr, "nn_driver: backend: %s\n", be->errmsg);
        return 1;
    }
    int nv = nn_model_num_views(m);
    st_entry *e = calloc((size_t)nv + 3, sizeof *e);
    char **names = calloc((size_t)nv, sizeof *names);
    int64_t shp[2] = {B, D};
    e[0] = (st_entry){"out", 2, shp, ho};
    e[1] = (st_entry){"tout", 2, shp, hto};
    e[2] = (st_entry){"dx", 2, shp, hgx};
    for (int i = 0; i < nv; i++) {
        const nn_param *v = nn_model_view(m, i);
        names[i] = malloc(strlen(v->name) + 6);
        sprintf(names[i], "grad.%s", v->name);
        e[3 + i] = (st_entry){names[i], v->ndim, v->shape, hg + v->offset};
    }
    if (st_write(argv[3], e, nv + 3, NULL, 0)) return fail("write");
    for (int i = 0; i < nv; i++) free(names[i]);
    free(names); free(e); free(ho); free(hto); free(hgx); free(hg);
    free(x); free(t); free(dout); free(tan_t); free(delta); free(tan_d); free(labf);
    be->ops->free(be, dx_); be->ops->free(be, dt); be->ops->free(be, dd); be->ops->free(be, dtt);
    be->ops->free(be, dtd); be->ops->free(be, dout_); be->ops->free(be, o); be->ops->free(be, to);
    be->ops->free(be, gx); be->ops->free(be, lab);
    nn_model_destroy(m);
    st_close(wf);
    st_close(inf);
    fmd_backend_destroy(be);
    return 0;
}
