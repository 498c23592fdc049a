/* model.c - the flow network object: configuration, the flat parameter and
 * gradient buffers with named views, deterministic initialisation, the
 * activation arena, and the checked entry points that dispatch to the
 * architectures (mlp.c, dit.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nn/model_internal.h"
#include "util/util.h"
#include "util/philox.h"

/* ---- configuration ---------------------------------------------------------- */
void nn_config_defaults(nn_config *c)
{
    if (!c) return;
    if (c->temb_dim <= 0) c->temb_dim = 256;
    if (c->arch == NN_ARCH_MLP) {
        if (c->time_scale == 0.0f) c->time_scale = 30.0f;
        if (c->delta_scale == 0.0f) c->delta_scale = 30.0f;
    } else {
        if (c->time_scale == 0.0f) c->time_scale = 1000.0f;
        if (c->delta_scale == 0.0f) c->delta_scale = c->time_scale;
        if (c->mlp_ratio == 0.0f) c->mlp_ratio = 4.0f;
        if (c->in_channels <= 0) c->in_channels = 4;
        if (c->patch_size <= 0) c->patch_size = 2;
    }
}

fmd_status nn_config_preset(nn_config *cfg, const char *name)
{
    static const struct { const char *size; int hidden, depth, heads; } P[] = {
        {"S", 384, 12, 6}, {"B", 768, 12, 12}, {"L", 1024, 24, 16}, {"XL", 1152, 28, 16}};
    FMD_CHECK_ARG(cfg && name, "nn_config_preset: cfg and name must not be NULL");
    const char *s = name;
    if (!strncmp(s, "SiT-", 4) || !strncmp(s, "DiT-", 4)) s += 4;
    const char *slash = strchr(s, '/');
    FMD_CHECK_ARG(slash, "nn_config_preset: preset '%s' is not of the form SiT-S/2", name);
    int patch = atoi(slash + 1);
    FMD_CHECK_ARG(patch == 2 || patch == 4 || patch == 8,
                  "nn_config_preset: patch size of '%s' must be 2, 4 or 8", name);
    for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
        size_t n = strlen(P[i].size);
        if ((size_t)(slash - s) == n && !strncmp(s, P[i].size, n)) {
            cfg->arch = NN_ARCH_DIT;
            cfg->hidden_size = P[i].hidden;
            cfg->dit_depth = P[i].depth;
            cfg->num_heads = P[i].heads;
            cfg->patch_size = patch;
            if (cfg->mlp_ratio == 0.0f) cfg->mlp_ratio = 4.0f;
            return FMD_OK;
        }
    }
    return fmd_seterr(FMD_ERR_INVALID_ARG,
                      "nn_config_preset: unknown preset '%s' (expected SiT-S/B/L/XL with /2, /4, /8)",
                      name);
}

static fmd_status validate(const nn_config *c)
{
    FMD_CHECK_ARG(c->num_classes >= 0, "nn_model_create: num_classes must be >= 0 (got %d)",
                  c->num_classes);
    FMD_CHECK_ARG(c->temb_dim >= 2 && c->temb_dim <= 65536,
                  "nn_model_create: temb_dim must be in [2, 65536] (got %d)", c->temb_dim);
    FMD_CHECK_ARG(isfinite(c->time_scale) && isfinite(c->delta_scale),
                  "nn_model_create: time_scale and delta_scale must be finite");
    FMD_CHECK_ARG(c->t_start == 0 || (c->t_start == 1 && c->student),
                  "nn_model_create: t_start must be 0, or 1 in a student (got %d, student %d)",
                  c->t_start, c->student);
    if (c->arch == NN_ARCH_MLP) {
        FMD_CHECK_ARG(c->dim >= 1 && c->dim <= (1 << 24), "nn_model_create: dim must be in [1, 2^24] (got %d)", c->dim);
        FMD_CHECK_ARG(c->width >= 1 && c->width <= (1 << 16), "nn_model_create: width must be in [1, 65536] (got %d)", c->width);
        FMD_CHECK_ARG(c->depth >= 1 && c->depth <= 256, "nn_model_create: depth must be in [1, 256] (got %d)", c->depth);
        return FMD_OK;
    }
    FMD_CHECK_ARG(c->arch == NN_ARCH_DIT, "nn_model_create: unknown arch %d", (int)c->arch);
    FMD_CHECK_ARG(c->patch_size >= 1 && c->patch_size <= 64,
                  "nn_model_create: patch_size must be in [1, 64] (got %d)", c->patch_size);
    FMD_CHECK_ARG(c->input_size >= 1 && c->input_size <= 4096 && c->input_size % c->patch_size == 0,
                  "nn_model_create: input_size (%d) must be a positive multiple of patch_size (%d)",
                  c->input_size, c->patch_size);
    FMD_CHECK_ARG(c->in_channels >= 1 && c->in_channels <= 4096,
                  "nn_model_create: in_channels must be in [1, 4096] (got %d)", c->in_channels);
    FMD_CHECK_ARG(c->num_heads >= 1, "nn_model_create: num_heads must be >= 1 (got %d)", c->num_heads);
    FMD_CHECK_ARG(c->hidden_size >= 4 && c->hidden_size <= 65536 && c->hidden_size % c->num_heads == 0 &&
                      c->hidden_size % 4 == 0,
                  "nn_model_create: hidden_size (%d) must be a multiple of 4 and of num_heads (%d)",
                  c->hidden_size, c->num_heads);
    FMD_CHECK_ARG(c->dit_depth >= 1 && c->dit_depth <= 1024,
                  "nn_model_create: dit_depth must be in [1, 1024] (got %d)", c->dit_depth);
    FMD_CHECK_ARG(isfinite(c->mlp_ratio) && c->mlp_ratio > 0.0f && c->mlp_ratio <= 64.0f,
                  "nn_model_create: mlp_ratio must be in (0, 64] (got %g)", (double)c->mlp_ratio);
    FMD_CHECK_ARG(c->learn_sigma == 0 || c->learn_sigma == 1,
                  "nn_model_create: learn_sigma must be 0 or 1 (got %d)", c->learn_sigma);
    return FMD_OK;
}

/* ---- views ----------------------------------------------------------------------- */
static int64_t add_view(nn_model *m, nn_param **arr, int *count, int *cap, int64_t *total,
                        nn_view_init **inits, const char *name, int ndim, const int64_t *shape,
                        nn_view_init init)
{
    if (*count == *cap) {
        int nc = *cap ? *cap * 2 : 32;
        nn_param *na = fmd_realloc(*arr, (size_t)nc * sizeof *na);
        if (!na) return fmd_seterr(FMD_ERR_OOM, "nn_model_create: out of memory for views"), -1;
        *arr = na;
        if (inits) {
            nn_view_init *ni = fmd_realloc(*inits, (size_t)nc * sizeof *ni);
            if (!ni) return fmd_seterr(FMD_ERR_OOM, "nn_model_create: out of memory for views"), -1;
            *inits = ni;
        }
        *cap = nc;
    }
    char *nm = fmd_strdup(name);
    if (!nm) return fmd_seterr(FMD_ERR_OOM, "nn_model_create: out of memory for view names"), -1;
    nn_param *p = &(*arr)[*count];
    memset(p, 0, sizeof *p);
    p->name = nm;
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->offset = *total;
    if (inits) (*inits)[*count] = init;
    *total += p->numel;
    (*count)++;
    return p->offset;
}

int64_t nn_add_param(nn_model *m, const char *name, int ndim, const int64_t *shape,
                     nn_view_init init)
{
    return add_view(m, &m->views, &m->nviews, &m->cap_views, &m->nparams, &m->inits, name, ndim,
                    shape, init);
}

int64_t nn_add_paramf(nn_model *m, int ndim, const int64_t *shape, nn_view_init init,
                      const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return nn_add_param(m, name, ndim, shape, init);
}

int64_t nn_add_buffer(nn_model *m, const char *name, int ndim, const int64_t *shape)
{
    return add_view(m, &m->bufs, &m->nbufs, &m->cap_bufs, &m->nbuffer, NULL, name, ndim, shape,
                    nn_init_zero());
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Host-side DiT-style init of every view, streams keyed by the view name so a
 * student and its teacher draw identical shared weights from one seed. */
static void init_host(const nn_model *m, float *host, uint64_t seed)
{
    for (int v = 0; v < m->nviews; v++) {
        const nn_param *p = &m->views[v];
        const nn_view_init *in = &m->inits[v];
        float *dst = host + p->offset;
        uint64_t stream = name_hash(p->name);
        switch (in->kind) {
        case NN_INIT_XAVIER:
        case NN_INIT_UNIFORM: {
            /* U(-bound, bound); Xavier's bound from the fans */
            double bound = in->kind == NN_INIT_XAVIER
                               ? sqrt(6.0 / (double)(in->fan_in + in->fan_out)) : (double)in->std;
            for (int64_t i = 0; i < p->numel; i++)
                dst[i] = (float)((2.0 * fmd_philox_uniform_at(seed, stream, (uint64_t)i) - 1.0) * bound);
            break;
        }
        case NN_INIT_NORMAL:
            for (int64_t i = 0; i < p->numel; i++)
                dst[i] = in->std * fmd_philox_normal_at(seed, stream, (uint64_t)i);
            break;
        case NN_INIT_ONE:
            for (int64_t i = 0; i < p->numel; i++) dst[i] = 1.0f;
            break;
        default:
            memset(dst, 0, (size_t)p->numel * sizeof(float));
        }
    }
}

static fmd_status be_status(nn_model *m, const char *fn)
{
    if (fmdb_ok(m->be)) return FMD_OK;
    return fmd_seterr(m->be->status, "%s: backend %s: %s", fn, m->be->name, m->be->errmsg);
}

/* ---- lifetime ------------------------------------------------------------------- */
fmd_status nn_model_create(fmd_backend *be, const nn_config *cfg, uint64_t seed, nn_model **out)
{
    FMD_CHECK_ARG(be && be->ops, "nn_model_create: backend must not be NULL");
    FMD_CHECK_ARG(cfg, "nn_model_create: cfg must not be NULL");
    FMD_CHECK_ARG(out, "nn_model_create: out must not be NULL");
    nn_config c = *cfg;
    nn_config_defaults(&c);
    fmd_status st = validate(&c);
    if (st) return st;
    if (!fmdb_ok(be))
        return fmd_seterr(be->status, "nn_model_create: backend has a sticky error: %s", be->errmsg);

    nn_model *m = fmd_xcalloc(1, sizeof *m, "nn_model");
    if (!m) return FMD_ERR_OOM;
    m->be = be;
    m->cfg = c;
    st = c.arch == NN_ARCH_MLP ? nn_mlp_build(m) : nn_dit_build(m);
    if (st) goto fail;

    size_t bytes = (size_t)m->nparams * sizeof(float);
    m->params = be->ops->alloc(be, bytes);
    m->grads = be->ops->alloc(be, bytes);
    if (m->nbuffer) m->buffer = be->ops->alloc(be, (size_t)m->nbuffer * sizeof(float));
    if (!m->params || !m->grads || (m->nbuffer && !m->buffer)) {
        st = fmd_seterr(FMD_ERR_OOM, "nn_model_create: cannot allocate %zu bytes of parameters "
                                     "on backend %s", 2 * bytes, be->name);
        be->status = FMD_OK;   /* the failed alloc is reported here, not sticky */
        goto fail;
    }
    int64_t hostn = m->nparams > m->nbuffer ? m->nparams : m->nbuffer;
    float *host = fmd_malloc((size_t)hostn * sizeof(float));
    if (!host) {
        st = fmd_seterr(FMD_ERR_OOM, "nn_model_create: out of host memory for initial weights");
        goto fail;
    }
    init_host(m, host, seed);
    be->ops->upload(be, m->params, host, bytes);
    be->ops->memset0(be, m->grads, bytes);
    if (m->nbuffer) {
        nn_dit_fill_buffers(m, host);
        be->ops->upload(be, m->buffer, host, (size_t)m->nbuffer * sizeof(float));
    }
    fmd_free(host);
    st = be_status(m, "nn_model_create");
    if (st) goto fail;
    *out = m;
    return FMD_OK;
fail:
    nn_model_destroy(m);
    return st;
}

void nn_model_destroy(nn_model *m)
{
    if (!m) return;
    fmd_backend *be = m->be;
    if (m->ops && m->ops->destroy_impl) m->ops->destroy_impl(m);
    be->ops->free(be, m->arena);
    be->ops->free(be, m->params);
    be->ops->free(be, m->grads);
    be->ops->free(be, m->buffer);
    for (int i = 0; i < m->nviews; i++) fmd_free((void *)m->views[i].name);
    for (int i = 0; i < m->nbufs; i++) fmd_free((void *)m->bufs[i].name);
    fmd_free(m->views);
    fmd_free(m->inits);
    fmd_free(m->bufs);
    fmd_free(m);
}

fmd_backend *nn_model_backend(const nn_model *m) { return m ? m->be : NULL; }
const nn_config *nn_model_config(const nn_model *m) { return m ? &m->cfg : NULL; }
int64_t nn_model_dim(const nn_model *m) { return m ? m->dim : 0; }
int64_t nn_model_num_params(const nn_model *m) { return m ? m->nparams : 0; }
float *nn_model_params(nn_model *m) { return m ? m->params : NULL; }
float *nn_model_grads(nn_model *m) { return m ? m->grads : NULL; }
int nn_model_num_views(const nn_model *m) { return m ? m->nviews : 0; }
const nn_param *nn_model_view(const nn_model *m, int i)
{
    return m && i >= 0 && i < m->nviews ? &m->views[i] : NULL;
}
const nn_param *nn_model_find(const nn_model *m, const char *name)
{
    if (!m || !name) return NULL;
    for (int i = 0; i < m->nviews; i++)
        if (!strcmp(m->views[i].name, name)) return &m->views[i];
    return NULL;
}
int nn_model_num_buffers(const nn_model *m) { return m ? m->nbufs : 0; }
const nn_param *nn_model_buffer_view(const nn_model *m, int i)
{
    return m && i >= 0 && i < m->nbufs ? &m->bufs[i] : NULL;
}
const nn_param *nn_model_find_buffer(const nn_model *m, const char *name)
{
    if (!m || !name) return NULL;
    for (int i = 0; i < m->nbufs; i++)
        if (!strcmp(m->bufs[i].name, name)) return &m->bufs[i];
    return NULL;
}
float *nn_model_buffer_data(nn_model *m) { return m ? m->buffer : NULL; }
int64_t nn_model_arena_bytes(const nn_model *m)
{
    return m ? m->arena_floats * (int64_t)sizeof(float) : 0;
}

/* ---- arena ------------------------------------------------------------------------ */
fmd_status nn_model_reserve_ex(nn_model *m, int64_t max_batch, int flags)
{
    FMD_CHECK_ARG(m, "nn_model_reserve: model must not be NULL");
    FMD_CHECK_ARG(max_batch >= 1 && max_batch <= (1 << 24),
                  "nn_model_reserve: max_batch must be in [1, 2^24] (got %lld)", (long long)max_batch);
    FMD_CHECK_ARG((flags & ~3) == 0, "nn_model_reserve: unknown flags 0x%x", flags);
    fmd_backend *be = m->be;
    be->ops->free(be, m->arena);
    m->arena = NULL;
    m->arena_floats = 0;
    m->max_batch = 0;
    m->fwd_batch = 0;
    int64_t off = 0;
    nn_arena_take(NULL, &off, max_batch);                 /* null labels */
    if (m->cfg.t_start) {
        nn_arena_take(NULL, &off, max_batch);             /* t + delta   */
        nn_arena_take(NULL, &off, max_batch);             /* its tangent */
    }
    int64_t n = m->ops->layout(m, NULL, max_batch, flags);
    int64_t total = off + n;
    m->arena = be->ops->alloc(be, (size_t)total * sizeof(float));
    if (!m->arena) {
        be->status = FMD_OK;
        return fmd_seterr(FMD_ERR_OOM, "nn_model_reserve: cannot allocate %lld bytes of "
                          "activations for batch %lld on backend %s",
                          (long long)(total * (int64_t)sizeof(float)), (long long)max_batch, be->name);
    }
    off = 0;
    m->null_labels = (int32_t *)nn_arena_take(m->arena, &off, max_batch);
    m->t_in = m->tan_t_in = NULL;
    if (m->cfg.t_start) {
        m->t_in = nn_arena_take(m->arena, &off, max_batch);
        m->tan_t_in = nn_arena_take(m->arena, &off, max_batch);
    }
    m->ops->layout(m, m->arena + off, max_batch, flags);
    if (m->cfg.num_classes > 0) {
        int32_t *h = fmd_malloc((size_t)max_batch * sizeof(int32_t));
        if (!h) return fmd_seterr(FMD_ERR_OOM, "nn_model_reserve: out of host memory");
        for (int64_t i = 0; i < max_batch; i++) h[i] = m->cfg.num_classes;
        be->ops->upload(be, m->null_labels, h, (size_t)max_batch * sizeof(int32_t));
        fmd_free(h);
    }
    m->arena_floats = total;
    m->max_batch = max_batch;
    m->reserve_flags = flags;
    return be_status(m, "nn_model_reserve");
}

fmd_status nn_model_reserve(nn_model *m, int64_t max_batch)
{
    return nn_model_reserve_ex(m, max_batch, NN_RESERVE_TRAIN);
}

/* ---- compute entry points ------------------------------------------------------------ */
static fmd_status check_call(nn_model *m, const char *fn, const float *out, const float *x,
                             const float *t, const float *delta, int64_t b)
{
    FMD_CHECK_ARG(m, "%s: model must not be NULL", fn);
    FMD_CHECK_ARG(m->arena, "%s: call nn_model_reserve first", fn);
    FMD_CHECK_ARG(b >= 1 && b <= m->max_batch, "%s: batch %lld outside [1, %lld] (reserved)", fn,
                  (long long)b, (long long)m->max_batch);
    FMD_CHECK_ARG(out && x && t, "%s: out, x and t must not be NULL", fn);
    FMD_CHECK_ARG(!m->cfg.student || delta, "%s: a student model needs delta", fn);
    FMD_CHECK_ARG(m->cfg.student || !delta, "%s: a teacher model takes no delta (pass NULL)", fn);
    if (!fmdb_ok(m->be)) return be_status(m, fn);
    return FMD_OK;
}

/* t_start: the time embedder reads the start time t + delta, whose tangent
 * is tan_t + tan_delta (zero along the distiller's (-1, +1) direction). */
static const float *start_time(nn_model *m, const float *t, const float *delta, int64_t b)
{
    if (!m->cfg.t_start) return t;
    m->be->ops->axpby(m->be, m->t_in, 1.0f, t, 1.0f, delta, b);
    return m->t_in;
}
static const float *start_tangent(nn_model *m, const float *tan_t, const float *tan_delta,
                                  int64_t b)
{
    if (!m->cfg.t_start || !tan_delta) return tan_t;
    m->be->ops->axpby(m->be, m->tan_t_in, 1.0f, tan_delta, tan_t ? 1.0f : 0.0f, tan_t, b);
    return m->tan_t_in;
}

fmd_status nn_model_forward(nn_model *m, float *out, const float *x, const float *t,
                            const float *delta, const int32_t *labels, int64_t b)
{
    fmd_status st = check_call(m, "nn_model_forward", out, x, t, delta, b);
    if (st) return st;
    t = start_time(m, t, delta, b);
    if (m->cfg.num_classes > 0 && !labels) labels = m->null_labels;
    m->ops->forward(m, out, NULL, x, t, delta, m->cfg.num_classes > 0 ? labels : NULL, NULL,
                    NULL, b);
    m->fwd_batch = b;
    m->fwd_kept = !(m->reserve_flags & NN_RESERVE_INFERENCE);
    return be_status(m, "nn_model_forward");
}

fmd_status nn_model_forward_jvp(nn_model *m, float *out, float *tout, const float *x,
                                const float *t, const float *delta, const int32_t *labels,
                                const float *tan_t, const float *tan_delta, int64_t b)
{
    fmd_status st = check_call(m, "nn_model_forward_jvp", out, x, t, delta, b);
    if (st) return st;
    FMD_CHECK_ARG(tout, "nn_model_forward_jvp: tout must not be NULL");
    FMD_CHECK_ARG(!(m->reserve_flags & NN_RESERVE_NO_JVP),
                  "nn_model_forward_jvp: arena reserved with NN_RESERVE_NO_JVP");
    FMD_CHECK_ARG(!tan_delta || m->cfg.student,
                  "nn_model_forward_jvp: tan_delta given to a teacher model");
    if (m->cfg.num_classes > 0 && !labels) labels = m->null_labels;
    tan_t = start_tangent(m, tan_t, tan_delta, b);
    t = start_time(m, t, delta, b);
    m->ops->forward(m, out, tout, x, t, delta, m->cfg.num_classes > 0 ? labels : NULL, tan_t,
                    tan_delta, b);
    m->fwd_batch = b;
    m->fwd_kept = !(m->reserve_flags & NN_RESERVE_INFERENCE);
    return be_status(m, "nn_model_forward_jvp");
}

fmd_status nn_model_backward(nn_model *m, const float *dout, float *dx, int64_t b)
{
    FMD_CHECK_ARG(m, "nn_model_backward: model must not be NULL");
    FMD_CHECK_ARG(dout, "nn_model_backward: dout must not be NULL");
    FMD_CHECK_ARG(m->fwd_batch > 0 && m->fwd_kept,
                  "nn_model_backward: no forward with kept activations before (reserve without "
                  "NN_RESERVE_INFERENCE and call nn_model_forward first)");
    FMD_CHECK_ARG(b == m->fwd_batch, "nn_model_backward: batch %lld differs from the forward's %lld",
                  (long long)b, (long long)m->fwd_batch);
    if (!fmdb_ok(m->be)) return be_status(m, "nn_model_backward");
    m->ops->backward(m, dout, dx, b);
    return be_status(m, "nn_model_backward");
}

fmd_status nn_model_zero_grad(nn_model *m)
{
    FMD_CHECK_ARG(m, "nn_model_zero_grad: model must not be NULL");
    m->be->ops->memset0(m->be, m->grads, (size_t)m->nparams * sizeof(float));
    return be_status(m, "nn_model_zero_grad");
}

static int copy_views(nn_model *m, const nn_model *src, float *dbase, const nn_param *dv, int dn,
                      const float *sbase, const nn_param *(*find)(const nn_model *, const char *))
{
    int copied = 0;
    float *bounce = NULL;
    for (int i = 0; i < dn; i++) {
        const nn_param *s = find(src, dv[i].name);
        if (!s || s->ndim != dv[i].ndim || s->numel != dv[i].numel) continue;
        int same = 1;
        for (int k = 0; k < s->ndim; k++) same &= s->shape[k] == dv[i].shape[k];
        if (!same) continue;
        size_t bytes = (size_t)s->numel * sizeof(float);
        if (m->be == src->be) {
            m->be->ops->copy(m->be, dbase + dv[i].offset, sbase + s->offset, bytes);
        } else {
            bounce = fmd_malloc(bytes);
            if (!bounce) {
                fmd_seterr(FMD_ERR_OOM, "nn_model_copy_matching: out of host memory");
                return -1;
            }
            src->be->ops->download(src->be, bounce, sbase + s->offset, bytes);
            m->be->ops->upload(m->be, dbase + dv[i].offset, bounce, bytes);
            fmd_free(bounce);
        }
        copied++;
    }
    return copied;
}

int nn_model_copy_matching(nn_model *m, const nn_model *src)
{
    if (!m || !src) {
        fmd_seterr(FMD_ERR_INVALID_ARG, "nn_model_copy_matching: models must not be NULL");
        return -1;
    }
    int n = copy_views(m, src, m->params, m->views, m->nviews, src->params, nn_model_find);
    if (n < 0) return n;
    if (copy_views(m, src, m->buffer, m->bufs, m->nbufs, src->buffer, nn_model_find_buffer) < 0)
        return -1;
    return n;
}

fmd_status nn_model_randomize(nn_model *m, uint64_t seed, float std)
{
    FMD_CHECK_ARG(m, "nn_model_randomize: model must not be NULL");
    FMD_CHECK_ARG(isfinite(std), "nn_model_randomize: std must be finite");
    float *h = fmd_malloc((size_t)m->nparams * sizeof(float));
    if (!h) return fmd_seterr(FMD_ERR_OOM, "nn_model_randomize: out of host memory");
    for (int v = 0; v < m->nviews; v++) {
        const nn_param *p = &m->views[v];
        uint64_t stream = name_hash(p->name);
        for (int64_t i = 0; i < p->numel; i++)
            h[p->offset + i] = std * fmd_philox_normal_at(seed, stream, (uint64_t)i);
    }
    m->be->ops->upload(m->be, m->params, h, (size_t)m->nparams * sizeof(float));
    fmd_free(h);
    return be_status(m, "nn_model_randomize");
}
