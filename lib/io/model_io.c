/* model_io.c - an nn_model in a .fmd file: its nn_config as metadata, its
 * parameter views as f32 tensors (see model_io.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "io/model_io.h"
#include "util/util.h"

#define KEYMAX 192

static const char *keyname(char *buf, const char *prefix, const char *k)
{
    snprintf(buf, KEYMAX, "%s%s", prefix, k);
    return buf;
}

fmd_status model_io_write_config(fmdf_writer *w, const char *prefix, const nn_config *c)
{
    FMD_CHECK_ARG(w && prefix && c, "model_io_write_config: NULL argument");
    FMD_CHECK_ARG(strlen(prefix) < 96, "model_io_write_config: prefix too long");
    char k[KEYMAX];
    fmd_status st = FMD_OK;
#define WI(name, val) if (!st) st = fmdf_writer_add_meta_i64(w, keyname(k, prefix, name), (int64_t)(val))
#define WF(name, val) if (!st) st = fmdf_writer_add_meta_f64(w, keyname(k, prefix, name), (double)(val))
    if (c->arch != NN_ARCH_MLP && c->arch != NN_ARCH_DIT)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "model_io_write_config: unknown arch %d", (int)c->arch);
    st = fmdf_writer_add_meta(w, keyname(k, prefix, "arch"), c->arch == NN_ARCH_MLP ? "mlp" : "dit");
    WI("student", c->student);
    if (c->t_start) WI("t_start", c->t_start);   /* absent in older files: 0 */
    WI("num_classes", c->num_classes);
    WI("dim", c->dim);
    WI("width", c->width);
    WI("depth", c->depth);
    WI("temb_dim", c->temb_dim);
    WF("time_scale", c->time_scale);
    WF("delta_scale", c->delta_scale);
    WI("input_size", c->input_size);
    WI("patch_size", c->patch_size);
    WI("in_channels", c->in_channels);
    WI("hidden_size", c->hidden_size);
    WI("dit_depth", c->dit_depth);
    WI("num_heads", c->num_heads);
    WF("mlp_ratio", c->mlp_ratio);
    WI("learn_sigma", c->learn_sigma);
#undef WI
#undef WF
    return st;
}

int model_io_config_diff(const nn_config *a, const nn_config *b, char *what, size_t len)
{
#define CMP(f, fmt)                                                                     \
    if (a->f != b->f) {                                                                 \
        snprintf(what, len, #f " = " fmt " against " fmt, a->f, b->f);                  \
        return 1;                                                                       \
    }
    if (a->arch != b->arch) {
        snprintf(what, len, "arch = %s against %s", a->arch == NN_ARCH_MLP ? "mlp" : "dit",
                 b->arch == NN_ARCH_MLP ? "mlp" : "dit");
        return 1;
    }
    CMP(student, "%d") CMP(t_start, "%d") CMP(num_classes, "%d") CMP(dim, "%d")
    CMP(width, "%d") CMP(depth, "%d") CMP(temb_dim, "%d") CMP(time_scale, "%g")
    CMP(delta_scale, "%g") CMP(input_size, "%d") CMP(patch_size, "%d") CMP(in_channels, "%d")
    CMP(hidden_size, "%d") CMP(dit_depth, "%d") CMP(num_heads, "%d") CMP(mlp_ratio, "%g")
    CMP(learn_sigma, "%d")
#undef CMP
    return 0;
}

static fmd_status read_int(const fmdf_reader *r, const char *prefix, const char *name, int lo,
                           int hi, int *out)
{
    char k[KEYMAX];
    int64_t v;
    fmd_status st = fmdf_meta_i64(r, keyname(k, prefix, name), &v);
    if (st) return st;
    if (v < lo || v > hi)
        return fmd_seterr(FMD_ERR_FORMAT, "model config: '%s' = %" PRId64 " out of range [%d, %d]",
                          k, v, lo, hi);
    *out = (int)v;
    return FMD_OK;
}

static fmd_status read_float(const fmdf_reader *r, const char *prefix, const char *name,
                             float *out)
{
    char k[KEYMAX];
    double v;
    fmd_status st = fmdf_meta_f64(r, keyname(k, prefix, name), &v);
    if (st) return st;
    if (v < -1e30 || v > 1e30)
        return fmd_seterr(FMD_ERR_FORMAT, "model config: '%s' = %g out of range", k, v);
    *out = (float)v;
    return FMD_OK;
}

fmd_status model_io_read_config(const fmdf_reader *r, const char *prefix, nn_config *c)
{
    FMD_CHECK_ARG(r && prefix && c, "model_io_read_config: NULL argument");
    FMD_CHECK_ARG(strlen(prefix) < 96, "model_io_read_config: prefix too long");
    char k[KEYMAX];
    const char *arch;
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    fmd_status st = fmdf_meta_str(r, keyname(k, prefix, "arch"), &arch);
    if (st) return st;
    if (strcmp(arch, "mlp") == 0) cfg.arch = NN_ARCH_MLP;
    else if (strcmp(arch, "dit") == 0) cfg.arch = NN_ARCH_DIT;
    else return fmd_seterr(FMD_ERR_FORMAT, "model config: '%s' = '%.40s' (expected mlp or dit)", k, arch);
    const int BIG = 1 << 24;
#define RI(name, lo, hi) if (!st) st = read_int(r, prefix, #name, lo, hi, &cfg.name)
#define RF(name) if (!st) st = read_float(r, prefix, #name, &cfg.name)
    RI(student, 0, 1);
    if (!st && fmdf_meta_get(r, keyname(k, prefix, "t_start"))) RI(t_start, 0, 1);
    RI(num_classes, 0, BIG);
    RI(dim, 0, BIG);
    RI(width, 0, BIG);
    RI(depth, 0, 4096);
    RI(temb_dim, 0, BIG);
    RF(time_scale);
    RF(delta_scale);
    RI(input_size, 0, BIG);
    RI(patch_size, 0, BIG);
    RI(in_channels, 0, BIG);
    RI(hidden_size, 0, BIG);
    RI(dit_depth, 0, 4096);
    RI(num_heads, 0, BIG);
    RF(mlp_ratio);
    RI(learn_sigma, 0, 1);
#undef RI
#undef RF
    if (st) return st;
    *c = cfg;
    return FMD_OK;
}

static int64_t largest_view(const nn_model *m)
{
    int64_t mx = 0;
    for (int i = 0; i < nn_model_num_views(m); i++) {
        const nn_param *p = nn_model_view(m, i);
        if (p->numel > mx) mx = p->numel;
    }
    return mx;
}

/* Index of the first NaN or infinity of x (n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

fmd_status model_io_write_tensors(fmdf_writer *w, const char *prefix, fmd_backend *be,
                                  nn_model *m, const float *buf)
{
    FMD_CHECK_ARG(w && prefix && be && m, "model_io_write_tensors: NULL argument");
    if (!buf) buf = nn_model_params(m);
    int64_t mx = largest_view(m);
    float *host = fmd_xcalloc((size_t)(mx ? mx : 1), sizeof(float), "model_io host buffer");
    if (!host) return FMD_ERR_OOM;
    fmd_status st = FMD_OK;
    char name[FMDF_MAX_NAME + 1];
    for (int i = 0; i < nn_model_num_views(m) && !st; i++) {
        const nn_param *p = nn_model_view(m, i);
        if (snprintf(name, sizeof name, "%s%s", prefix, p->name) >= (int)sizeof name) {
            st = fmd_seterr(FMD_ERR_INVALID_ARG, "model_io_write_tensors: name '%s%s' too long",
                            prefix, p->name);
            break;
        }
        be->ops->download(be, host, buf + p->offset, (size_t)p->numel * sizeof(float));
        st = be->ops->sync(be);
        if (st) {
            st = fmd_seterr(st, "model_io_write_tensors: download of '%s' failed: %s", p->name,
                            be->errmsg);
            break;
        }
        const int64_t bad = first_nonfinite(host, p->numel);
        if (bad >= 0) {
            st = fmd_seterr(FMD_ERR_NONFINITE, "model_io_write_tensors: tensor '%s' element %lld = "
                            "%g is not finite (refusing to save)", name, (long long)bad,
                            (double)host[bad]);
            break;
        }
        st = fmdf_writer_add_tensor(w, name, FMDF_F32, p->ndim, p->shape, host);
    }
    fmd_free(host);
    return st;
}

fmd_status model_io_read_tensors(fmdf_reader *r, const char *prefix, fmd_backend *be, nn_model *m,
                                 float *buf)
{
    FMD_CHECK_ARG(r && prefix && be && m, "model_io_read_tensors: NULL argument");
    if (!buf) buf = nn_model_params(m);
    int64_t mx = largest_view(m);
    float *host = fmd_xcalloc((size_t)(mx ? mx : 1), sizeof(float), "model_io host buffer");
    if (!host) return FMD_ERR_OOM;
    fmd_status st = FMD_OK;
    char name[FMDF_MAX_NAME + 1];
    for (int i = 0; i < nn_model_num_views(m) && !st; i++) {
        const nn_param *p = nn_model_view(m, i);
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        if (!fmdf_tensor_find(r, name)) {
            st = fmd_seterr(FMD_ERR_FORMAT, "model file: tensor '%s' is missing", name);
            break;
        }
        st = fmdf_read_tensor(r, name, FMDF_F32, p->ndim, p->shape, host,
                              (size_t)p->numel * sizeof(float));
        if (st) break;
        const int64_t bad = first_nonfinite(host, p->numel);
        if (bad >= 0) {
            st = fmd_seterr(FMD_ERR_FORMAT, "model file: tensor '%s' element %lld = %g is not "
                            "finite", name, (long long)bad, (double)host[bad]);
            break;
        }
        be->ops->upload(be, buf + p->offset, host, (size_t)p->numel * sizeof(float));
    }
    if (!st) {
        st = be->ops->sync(be);
        if (st) st = fmd_seterr(st, "model_io_read_tensors: upload failed: %s", be->errmsg);
    }
    fmd_free(host);
    return st;
}

fmd_status model_io_save(fmd_backend *be, nn_model *m, const char *path, const char *kind)
{
    FMD_CHECK_ARG(be && m && path, "model_io_save: NULL argument");
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", FMD_VERSION_STRING);
    if (!st) st = fmdf_writer_add_meta(w, "kind", kind ? kind : "model");
    if (!st) st = model_io_write_config(w, "", nn_model_config(m));
    if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(m));
    if (!st) st = model_io_write_tensors(w, "", be, m, NULL);
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

/* A lower bound of the parameter count of cfg (the hidden-to-hidden
 * matrices alone), to refuse hostile configs before allocating. */
static double params_lower_bound(const nn_config *c)
{
    if (c->arch == NN_ARCH_MLP) return (double)c->width * c->width * (c->depth > 1 ? c->depth - 1 : 0);
    return (double)c->dit_depth * 10.0 * c->hidden_size * c->hidden_size;
}

fmd_status model_io_load_from(fmd_backend *be, fmdf_reader *r, const char *prefix, nn_model **out)
{
    FMD_CHECK_ARG(be && r && prefix && out, "model_io_load_from: NULL argument");
    nn_config cfg;
    fmd_status st = model_io_read_config(r, prefix, &cfg);
    if (st) return st;
    /* the stored tensors bound the model: a config that claims more
     * parameters than the file holds is corrupt (and must not make us
     * allocate terabytes) */
    double held = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < fmdf_tensor_count(r); i++) {
        const fmdf_tensor_info *t = fmdf_tensor_at(r, i);
        if (t->dtype == FMDF_F32 && strncmp(t->name, prefix, pl) == 0) held += (double)t->numel;
    }
    if (params_lower_bound(&cfg) > held)
        return fmd_seterr(FMD_ERR_FORMAT, "model file: config '%sarch' = %s claims at least %.0f "
                          "parameters, the file holds %.0f", prefix,
                          cfg.arch == NN_ARCH_MLP ? "mlp" : "dit", params_lower_bound(&cfg), held);
    nn_model *m;
    st = nn_model_create(be, &cfg, 0, &m);
    if (st) return st;
    st = model_io_read_tensors(r, prefix, be, m, NULL);
    if (st) {
        nn_model_destroy(m);
        return st;
    }
    *out = m;
    return FMD_OK;
}

fmd_status model_io_load(fmd_backend *be, const char *path, nn_model **out)
{
    FMD_CHECK_ARG(be && path && out, "model_io_load: NULL argument");
    fmdf_reader *r;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    st = model_io_load_from(be, r, "", out);
    fmdf_close(r);
    return st;
}
