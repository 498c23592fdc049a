/* student.c - fmd_student: the one-step flow map f(z, delta, c) = z - delta F(z, delta, c)
 * (docs/math.md section 5).
 *
 * From a network teacher the student is the teacher's architecture in
 * student form with the teacher's weights copied in (nn_model_copy_matching)
 * and t_start set (the time embedder reads the start time, 1), so
 * F(z, delta) = v(z, 1) and f(z, 1) starts as the teacher's one-step Euler
 * sample.  Mixture and callback teachers have no network to copy: the
 * student is a fresh MLP (width/depth options) whose initial map does not
 * match the teacher; the distiller trains it from there. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "api/option_tables.h"
#include "api/student_internal.h"
#include "api/teacher_internal.h"
#include "io/model_io.h"
#include "util/util.h"

struct fmd_student {
    fmd_backend *be;
    nn_model *net;
    int64_t D;
    int K;
    int64_t reserved;     /* batch the arena is sized for (0: none yet)       */
    int fwd_sized;        /* reserved was chosen by the forward, not by a     */
                          /* distiller (reserve_forward says what may grow)  */
    int64_t cap;          /* rows of the host-forward scratch                 */
    float *dz, *dout, *dt, *ddl;
    int32_t *dlab;
    float *h_t;
    /* how the student was made (fmd_student_made): "key=value" pairs the
     * distiller records, kept in its files as metadata "made.KEY" */
    int nmade;
    char *made_k[STUDENT_MADE_MAX], *made_v[STUDENT_MADE_MAX];
};

nn_model *student_net(fmd_student *s) { return s->net; }
fmd_backend *student_backend(const fmd_student *s) { return s->be; }

static void free_scratch(fmd_student *s)
{
    if (!s->be) return;
    void *p[] = {s->dz, s->dout, s->dt, s->ddl, s->dlab};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (p[i]) s->be->ops->free(s->be, p[i]);
    s->dz = s->dout = s->dt = s->ddl = NULL;
    s->dlab = NULL;
    fmd_free(s->h_t);
    s->h_t = NULL;
    s->cap = 0;
}

static void clear_made(fmd_student *s)
{
    for (int i = 0; i < s->nmade; i++) {
        fmd_free(s->made_k[i]);
        fmd_free(s->made_v[i]);
    }
    s->nmade = 0;
}

static char *dup_str(const char *x)
{
    size_t n = strlen(x) + 1;
    char *p = fmd_malloc(n);
    if (p) memcpy(p, x, n);
    return p;
}

fmd_status student_set_made(fmd_student *s, const char *key, const char *value)
{
    for (int i = 0; i < s->nmade; i++)
        if (strcmp(s->made_k[i], key) == 0) {
            char *v = dup_str(value);
            if (!v) return fmd_seterr(FMD_ERR_OOM, "student: out of memory for its record");
            fmd_free(s->made_v[i]);
            s->made_v[i] = v;
            return FMD_OK;
        }
    if (s->nmade == STUDENT_MADE_MAX)
        return fmd_seterr(FMD_ERR_INTERNAL, "student: more than %d records of how it was made",
                          STUDENT_MADE_MAX);
    char *k = dup_str(key), *v = dup_str(value);
    if (!k || !v) {
        fmd_free(k);
        fmd_free(v);
        return fmd_seterr(FMD_ERR_OOM, "student: out of memory for its record");
    }
    s->made_k[s->nmade] = k;
    s->made_v[s->nmade++] = v;
    return FMD_OK;
}

const char *fmd_student_made(const fmd_student *s, const char *key)
{
    if (!s || !key) return NULL;
    for (int i = 0; i < s->nmade; i++)
        if (strcmp(s->made_k[i], key) == 0) return s->made_v[i];
    return NULL;
}

/* The record of a file: "made.KEY" of a student file, or what a distiller
 * checkpoint stores ("distiller.option.KEY", "distiller.teacher",
 * "distiller.step"). */
static fmd_status read_made(fmd_student *s, const fmdf_reader *r)
{
    const char *kind = fmdf_meta_get(r, "kind");
    const int ckpt = kind && strcmp(kind, "distiller") == 0;
    fmd_status st = FMD_OK;
    for (int i = 0; i < fmdf_meta_count(r) && !st; i++) {
        const char *k = fmdf_meta_key(r, i), *v = fmdf_meta_value(r, i);
        if (!ckpt && strncmp(k, "made.", 5) == 0) st = student_set_made(s, k + 5, v);
        else if (ckpt && strncmp(k, "distiller.option.", 17) == 0) st = student_set_made(s, k + 17, v);
        else if (ckpt && strcmp(k, "distiller.teacher") == 0) st = student_set_made(s, "teacher", v);
        else if (ckpt && strcmp(k, "distiller.step") == 0) st = student_set_made(s, "distill_steps", v);
    }
    return st;
}

void fmd_student_destroy(fmd_student *s)
{
    if (!s) return;
    clear_made(s);
    free_scratch(s);
    nn_model_destroy(s->net);
    fmd_free(s);
}

fmd_status student_wrap(fmd_backend *be, nn_model *net, fmd_student **out)
{
    fmd_student *s = fmd_xcalloc(1, sizeof *s, "fmd_student");
    if (!s) {
        nn_model_destroy(net);
        return FMD_ERR_OOM;
    }
    s->be = be;
    s->net = net;
    s->D = nn_model_dim(net);
    s->K = nn_model_config(net)->num_classes;
    *out = s;
    return FMD_OK;
}

void student_note_reserved(fmd_student *s, int64_t b)
{
    s->reserved = b;
    s->fwd_sized = 0;
}
int64_t student_forward_chunk(const fmd_student *s) { return s->reserved; }

/* Student creation options (docs/distiller.md, "Students").  The size keys
 * make the fresh MLP of a mixture or callback teacher; a network teacher's
 * student copies the teacher's architecture. */
typedef struct student_opts {
    int64_t width, depth, temb_dim;
    double time_scale, delta_scale;
    uint64_t seed;
} student_opts;

#define OPT_CFG student_opts
static const opt_spec k_student_spec[] = {
    OPT_INT_CTX("width", width, 0, 65536, "max(256, 12 x the teacher's dimension), at most 1024", 0, NULL, "hidden width of the MLP (mixture and callback teachers; 0: the default)"),
    OPT_INT("depth", depth, 1, 64, 4, 0, NULL, "hidden layers of the MLP (mixture and callback teachers)"),
    OPT_INT("temb_dim", temb_dim, 2, 4096, 256, OPT_EVEN, NULL, "sinusoidal embedding size of t and delta (mixture and callback teachers)"),
    OPT_NUM("time_scale", time_scale, 0, 1e4, 30, OPT_LO_OPEN, NULL, "t is multiplied by this before the sinusoid (mixture and callback teachers)"),
    OPT_NUM("delta_scale", delta_scale, 0, 1e4, 30, OPT_LO_OPEN, NULL, "delta is multiplied by this before its sinusoid (mixture and callback teachers)"),
    OPT_INT("seed", seed, 0, 9.2e18, 0, 0, NULL, "seed of the initialisation"),
};
#undef OPT_CFG
const opt_table opt_table_student = OPT_TABLE("student", "fmd_student_create", k_student_spec, NULL);

/* The options into cfg (a fresh MLP) and *seed; the size keys are refused
 * for a network teacher, whose architecture the student copies. */
static fmd_status read_create_opts(const fmd_options *o, int network, nn_config *cfg,
                                   uint64_t *seed)
{
    const opt_table *tab = &opt_table_student;
    student_opts so;
    unsigned char given[sizeof k_student_spec / sizeof k_student_spec[0]] = {0};
    opt_defaults(tab, &so);
    fmd_status st = opt_apply(tab, o, &so, given);
    if (st) return st;
    for (int i = 0; network && i < tab->n; i++)
        if (given[i] && strcmp(k_student_spec[i].key, "seed") != 0)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' does not apply to a network "
                              "teacher (the student copies the teacher's architecture)", tab->fn,
                              k_student_spec[i].key);
    *seed = so.seed;
    if (network) return FMD_OK;
    /* 256 was enough in 2-D; a 32-D guided mixture needed 384 to pass the
     * teacher's 8-step Euler in 10,000 steps (docs/distiller.md, "Why these
     * defaults") */
    int64_t wide = 12 * (int64_t)cfg->dim;
    cfg->width = so.width ? (int)so.width : (int)(wide < 256 ? 256 : wide > 1024 ? 1024 : wide);
    cfg->depth = (int)so.depth;
    cfg->temb_dim = (int)so.temb_dim;
    cfg->time_scale = (float)so.time_scale;
    cfg->delta_scale = (float)so.delta_scale;
    return FMD_OK;
}

fmd_status fmd_student_create(fmd_teacher *teacher, fmd_backend *backend, const fmd_options *opts,
                              fmd_student **out)
{
    FMD_CHECK_ARG(out, "fmd_student_create: out is NULL");
    FMD_CHECK_ARG(teacher, "fmd_student_create: teacher is NULL");
    FMD_CHECK_ARG(backend, "fmd_student_create: backend is NULL");
    const nn_model *tnet = teacher_network(teacher);
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    uint64_t seed = 0;
    if (tnet) {
        cfg = *nn_model_config(tnet);
        /* Feeding the end time 1 - delta instead would start f(z, 1) at
         * z - v(z, 0), far off the data for a trained network (rms 6.8
         * against 1 on Fashion-MNIST) where the teacher's velocity is ~200:
         * the self-referential target diverged at every lr tried
         * (docs/benchmarks.md, "A network teacher"). */
        cfg.t_start = 1;
    } else {
        cfg.arch = NN_ARCH_MLP;
        cfg.dim = (int)teacher_dim(teacher);
        cfg.num_classes = teacher_num_classes(teacher);
    }
    cfg.student = 1;
    fmd_status st = read_create_opts(opts, tnet != NULL, &cfg, &seed);
    if (st) return st;
    nn_model *net = NULL;
    st = nn_model_create(backend, &cfg, seed, &net);
    if (st) return st;
    if (tnet) {
        /* Copy the teacher's weights; the delta projection stays zero. */
        int copied = nn_model_copy_matching(net, tnet);
        if (copied <= 0) {
            nn_model_destroy(net);
            return fmd_seterr(FMD_ERR_INTERNAL,
                              "fmd_student_create: no teacher weight matched the student");
        }
    }
    return student_wrap(backend, net, out);
}

fmd_status fmd_student_load(const char *path, fmd_backend *backend, fmd_student **out)
{
    FMD_CHECK_ARG(out, "fmd_student_load: out is NULL");
    FMD_CHECK_ARG(path, "fmd_student_load: path is NULL");
    FMD_CHECK_ARG(backend, "fmd_student_load: backend is NULL");
    fmdf_reader *r = NULL;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    nn_model *net = NULL;
    st = model_io_load_from(backend, r, "", &net);
    if (st) {
        fmdf_close(r);
        return st;
    }
    if (!nn_model_config(net)->student) {
        nn_model_destroy(net);
        fmdf_close(r);
        return fmd_seterr(FMD_ERR_FORMAT,
                          "fmd_student_load: '%s' holds a teacher-form model, not a student", path);
    }
    fmd_student *s = NULL;
    if (!(st = student_wrap(backend, net, &s)) && (st = read_made(s, r))) {
        fmd_student_destroy(s);
        s = NULL;
    }
    fmdf_close(r);
    if (st) return st;
    *out = s;
    return FMD_OK;
}

fmd_status fmd_student_save(fmd_student *s, const char *path)
{
    FMD_CHECK_ARG(s, "fmd_student_save: student is NULL");
    FMD_CHECK_ARG(path, "fmd_student_save: path is NULL");
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", FMD_VERSION_STRING);
    if (!st) st = fmdf_writer_add_meta(w, "kind", "student");
    if (!st) st = model_io_write_config(w, "", nn_model_config(s->net));
    if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(s->net));
    for (int i = 0; i < s->nmade && !st; i++) {
        char key[160];
        snprintf(key, sizeof key, "made.%s", s->made_k[i]);
        st = fmdf_writer_add_meta(w, key, s->made_v[i]);
    }
    if (!st) st = model_io_write_tensors(w, "", s->be, s->net, NULL);
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

int64_t fmd_student_dim(const fmd_student *s) { return s ? s->D : 0; }
int fmd_student_num_classes(const fmd_student *s) { return s ? s->K : 0; }
int64_t fmd_student_num_params(const fmd_student *s) { return s ? nn_model_num_params(s->net) : 0; }

static fmd_status grow_scratch(fmd_student *s, int64_t cap)
{
    if (s->cap >= cap) return FMD_OK;
    free_scratch(s);
    fmd_backend *be = s->be;
    s->dz = be->ops->alloc(be, (size_t)(cap * s->D) * sizeof(float));
    s->dout = be->ops->alloc(be, (size_t)(cap * s->D) * sizeof(float));
    s->dt = be->ops->alloc(be, (size_t)cap * sizeof(float));
    s->ddl = be->ops->alloc(be, (size_t)cap * sizeof(float));
    s->dlab = be->ops->alloc(be, (size_t)cap * sizeof(int32_t));
    s->h_t = fmd_calloc((size_t)cap, sizeof(float));
    if (!s->dz || !s->dout || !s->dt || !s->ddl || !s->dlab || !s->h_t) {
        free_scratch(s);
        be->status = FMD_OK;
        return fmd_seterr(FMD_ERR_OOM, "fmd_student_forward: out of memory for %lld rows",
                          (long long)cap);
    }
    s->cap = cap;
    return FMD_OK;
}

/* The rows one forward pass takes.  On the CPU, 1024-row passes keep the
 * arena small (embedded hosts) and already fill the GEMMs.  A GPU is
 * latency-bound at 1024 rows (one chain of kernels and one synchronisation
 * per chunk: bench_gpu's MLP sampled 10x slower than PyTorch's single batch
 * of 65,536), so on a device backend the chunk grows to 16,384 rows while the
 * arena stays under 1 GiB; where that much cannot be had, the chunk stays as
 * it was.  A chunk sized by an earlier, smaller call grows with the next
 * larger one.  A distiller sizes the arena for its batch: on the CPU the
 * forward keeps that size; on a device it grows it too (sampling a student
 * that is being distilled ran in the distiller's 512-row passes), never
 * below the distiller's batch. */
#define FORWARD_CHUNK_CPU 1024
#define FORWARD_CHUNK_DEVICE 16384
#define FORWARD_ARENA_MAX ((int64_t)1 << 30)

/* Re-size the arena for rows > reserved.  nn_model_reserve frees the old
 * arena before it allocates the new one, so when that fails the previous
 * size (a distiller's batch, or the chunk so far) is restored; the failure
 * is returned either way (reserved says whether an arena is left). */
static fmd_status grow_arena(fmd_student *s, int64_t rows)
{
    const int64_t prev = s->reserved;
    if (rows <= prev) return FMD_OK;
    fmd_status st = nn_model_reserve(s->net, rows);
    if (st == FMD_OK) {
        s->reserved = rows;
        return FMD_OK;
    }
    s->be->status = FMD_OK;
    s->reserved = 0;
    if (prev > 0 && nn_model_reserve(s->net, prev) == FMD_OK) s->reserved = prev;
    s->be->status = FMD_OK;
    return st;
}

static fmd_status reserve_forward(fmd_student *s, int64_t n)
{
    int64_t small = n < FORWARD_CHUNK_CPU ? n : FORWARD_CHUNK_CPU;
    if (s->reserved == 0) s->fwd_sized = 1;
    fmd_status st = grow_arena(s, small);
    if (st) return s->reserved > 0 ? FMD_OK : st; /* smaller passes, or no arena at all */
    if (s->be->threads > 0 || n <= s->reserved) return FMD_OK;
    int64_t per_row = nn_model_arena_bytes(s->net) / s->reserved + 1;
    int64_t want = n < FORWARD_CHUNK_DEVICE ? n : FORWARD_CHUNK_DEVICE;
    if (want > FORWARD_ARENA_MAX / per_row) want = FORWARD_ARENA_MAX / per_row;
    st = grow_arena(s, want);
    return s->reserved > 0 ? FMD_OK : st;
}

fmd_status fmd_student_forward(fmd_student *s, const float *z, const float *delta,
                               const int32_t *labels, int64_t n, float *out)
{
    FMD_CHECK_ARG(s, "fmd_student_forward: student is NULL");
    FMD_CHECK_ARG(n >= 0, "fmd_student_forward: n must be >= 0 (got %lld)", (long long)n);
    if (n == 0) return FMD_OK;
    FMD_CHECK_ARG(z, "fmd_student_forward: z is NULL");
    FMD_CHECK_ARG(delta, "fmd_student_forward: delta is NULL");
    FMD_CHECK_ARG(out, "fmd_student_forward: out is NULL");
    FMD_CHECK_ARG(s->K == 0 || labels, "fmd_student_forward: the student has %d classes: labels needed", s->K);
    for (int64_t i = 0; i < n; i++) {
        FMD_CHECK_ARG(delta[i] >= 0.0f && delta[i] <= 1.0f,
                      "fmd_student_forward: delta[%lld] = %g outside [0, 1]", (long long)i,
                      (double)delta[i]);
        if (labels && s->K)
            FMD_CHECK_ARG(labels[i] >= 0 && labels[i] <= s->K,
                          "fmd_student_forward: labels[%lld] = %d outside [0, %d]", (long long)i,
                          labels[i], s->K);
    }
    fmd_backend *be = s->be;
    fmd_status st;
    int may_grow = s->reserved == 0 || s->fwd_sized || be->threads == 0;
    if (n > s->reserved && may_grow && (st = reserve_forward(s, n))) return st;
    int64_t chunk = s->reserved;
    st = grow_scratch(s, chunk);
    if (st) return st;
    const int64_t D = s->D;
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        int64_t b = n - r0 < chunk ? n - r0 : chunk;
        for (int64_t i = 0; i < b; i++) s->h_t[i] = 1.0f - delta[r0 + i];
        be->ops->upload(be, s->dz, z + r0 * D, (size_t)(b * D) * sizeof(float));
        be->ops->upload(be, s->dt, s->h_t, (size_t)b * sizeof(float));
        be->ops->upload(be, s->ddl, delta + r0, (size_t)b * sizeof(float));
        if (s->K) be->ops->upload(be, s->dlab, labels + r0, (size_t)b * sizeof(int32_t));
        st = nn_model_forward(s->net, s->dout, s->dz, s->dt, s->ddl, s->K ? s->dlab : NULL, b);
        if (st) return fmd_seterr(st, "fmd_student_forward: %s", be->errmsg);
        /* f = z - delta * F */
        for (int64_t i = 0; i < b; i++) s->h_t[i] = -delta[r0 + i];
        be->ops->upload(be, s->dt, s->h_t, (size_t)b * sizeof(float));
        be->ops->bcast_mul(be, s->dout, s->dout, s->dt, b, D, 1, 0.0f);
        be->ops->axpby(be, s->dout, 1.0f, s->dout, 1.0f, s->dz, b * D);
        be->ops->download(be, out + r0 * D, s->dout, (size_t)(b * D) * sizeof(float));
        st = be->ops->sync(be);
        if (st) return fmd_seterr(st, "fmd_student_forward: %s", be->errmsg);
    }
    return FMD_OK;
}
