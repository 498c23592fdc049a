/* teacher_train.c - fmd_dataset (arrays, mixture samples, IDX images) and
 * fmd_teacher_train: option parsing, the network, the loop with progress,
 * cancel and periodic checkpoints around lib/algo/flowmatch.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "algo/flowmatch.h"
#include "api/teacher_internal.h"
#include "io/fmdfile.h"
#include "io/idx.h"
#include "io/model_io.h"
#include "util/fpmode.h"
#include "util/optable.h"
#include "util/util.h"

struct fmd_dataset {
    int64_t n, dim;
    int num_classes;
    float *x;          /* (n, dim) */
    int32_t *labels;   /* (n) or NULL */
    int c, h, w;       /* image shape or 0 */
};

void fmd_dataset_destroy(fmd_dataset *d)
{
    if (!d) return;
    fmd_free(d->x);
    fmd_free(d->labels);
    fmd_free(d);
}

static fmd_status ds_alloc(int64_t n, int64_t dim, int labeled, fmd_dataset **out)
{
    fmd_dataset *d = fmd_xcalloc(1, sizeof *d, "fmd_dataset");
    if (!d) return FMD_ERR_OOM;
    d->n = n;
    d->dim = dim;
    d->x = fmd_malloc((size_t)n * (size_t)dim * sizeof(float));
    d->labels = labeled ? fmd_malloc((size_t)n * sizeof(int32_t)) : NULL;
    if (!d->x || (labeled && !d->labels)) {
        fmd_dataset_destroy(d);
        return fmd_seterr(FMD_ERR_OOM, "fmd_dataset: out of memory for %lld x %lld samples",
                          (long long)n, (long long)dim);
    }
    *out = d;
    return FMD_OK;
}

#define FMD_MAX_CLASSES (1 << 24)

fmd_status fmd_dataset_create(const float *x, const int32_t *labels, int64_t n, int64_t dim,
                              int num_classes, fmd_dataset **out)
{
    static const char *fn = "fmd_dataset_create";
    FMD_CHECK_ARG(x && out, "%s: x and out must be non-NULL", fn);
    FMD_CHECK_ARG(n >= 1 && dim >= 1 && dim <= (1 << 24) && n <= ((int64_t)1 << 40) / dim,
                  "%s: bad size %lld x %lld", fn, (long long)n, (long long)dim);
    FMD_CHECK_ARG(num_classes >= -1 && num_classes <= FMD_MAX_CLASSES, "%s: num_classes %d "
                  "outside [-1, %d] (-1: the largest label + 1)", fn, num_classes, FMD_MAX_CLASSES);
    /* every label is checked once, here, before anything uses it */
    const int infer = num_classes < 0;
    if (infer) num_classes = 0;
    for (int64_t i = 0; labels && i < n; i++) {
        const int32_t c = labels[i];
        FMD_CHECK_ARG(c >= 0, "%s: labels[%lld] = %d is negative", fn, (long long)i, (int)c);
        if (infer) {
            FMD_CHECK_ARG(c < FMD_MAX_CLASSES, "%s: labels[%lld] = %d: at most %d classes (labels "
                          "0..%d)", fn, (long long)i, (int)c, FMD_MAX_CLASSES, FMD_MAX_CLASSES - 1);
            if (c + 1 > num_classes) num_classes = c + 1;
        } else {
            FMD_CHECK_ARG(c < num_classes, "%s: labels[%lld] = %d outside [0, %d)", fn,
                          (long long)i, (int)c, num_classes);
        }
    }
    FMD_CHECK_ARG(labels || num_classes == 0, "%s: num_classes %d needs labels (labels is NULL)",
                  fn, num_classes);
    FMD_CHECK_ARG(!labels || num_classes > 0, "%s: labels given with num_classes 0", fn);
    for (int64_t i = 0; i < n * dim; i++)
        if (!isfinite(x[i]))
            return fmd_seterr(FMD_ERR_NONFINITE, "%s: x[%lld][%lld] is not finite", fn,
                              (long long)(i / dim), (long long)(i % dim));
    fmd_dataset *d;
    fmd_status st = ds_alloc(n, dim, labels != NULL, &d);
    if (st) return st;
    memcpy(d->x, x, (size_t)(n * dim) * sizeof(float));
    if (labels) memcpy(d->labels, labels, (size_t)n * sizeof(int32_t));
    d->num_classes = num_classes;
    *out = d;
    return FMD_OK;
}

fmd_status fmd_dataset_from_mixture(const fmd_teacher *T, int64_t n, uint64_t seed,
                                    fmd_dataset **out)
{
    static const char *fn = "fmd_dataset_from_mixture";
    FMD_CHECK_ARG(T && out, "%s: teacher and out must be non-NULL", fn);
    FMD_CHECK_ARG(n >= 1 && n <= ((int64_t)1 << 40) / fmd_teacher_dim(T), "%s: bad n %lld", fn,
                  (long long)n);
    const gmm *g = teacher_mixture(T);
    if (!g)
        return fmd_seterr(FMD_ERR_UNSUPPORTED, "%s: a %s teacher has no data distribution", fn,
                          fmd_teacher_kind(T));
    fmd_dataset *d;
    fmd_status st = ds_alloc(n, g->d, g->num_classes > 0, &d);
    if (st) return st;
    int32_t *comp = fmd_malloc((size_t)n * sizeof(int32_t));
    if (!comp) {
        fmd_dataset_destroy(d);
        return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
    }
    st = fmd_teacher_sample_data(T, n, seed, 0, NULL, d->x, comp);
    if (!st && d->labels)
        for (int64_t i = 0; i < n; i++) d->labels[i] = g->cls[comp[i]];
    fmd_free(comp);
    if (st) {
        fmd_dataset_destroy(d);
        return st;
    }
    d->num_classes = g->num_classes;
    *out = d;
    return FMD_OK;
}

/* fmd_dataset_load_idx_opts's options. */
typedef struct idx_opts {
    int64_t max_bytes;
} idx_opts;

#define OPT_CFG idx_opts
static const opt_spec k_idx_spec[] = {
    OPT_INT("max_bytes", max_bytes, 1, IDX_MAX_BYTES, IDX_DEFAULT_MAX_BYTES, 0, NULL,
            "largest data size of one IDX file in bytes (after decompression for gzip): a larger "
            "declared size is refused before it is allocated"),
};
#undef OPT_CFG
const opt_table opt_table_dataset_idx = OPT_TABLE("dataset_idx", "fmd_dataset_load_idx_opts",
                                                  k_idx_spec, NULL);

fmd_status fmd_dataset_load_idx(const char *images_path, const char *labels_path, fmd_dataset **out)
{
    return fmd_dataset_load_idx_opts(images_path, labels_path, NULL, out);
}

fmd_status fmd_dataset_load_idx_opts(const char *images_path, const char *labels_path,
                                     const fmd_options *opts, fmd_dataset **out)
{
    static const char *fn = "fmd_dataset_load_idx";
    FMD_CHECK_ARG(images_path && out, "%s: images_path and out must be non-NULL", fn);
    idx_opts io;
    opt_defaults(&opt_table_dataset_idx, &io);
    fmd_status st = opt_apply(&opt_table_dataset_idx, opts, &io, NULL);
    if (st) return st;
    idx_array im, lb;
    memset(&lb, 0, sizeof lb);
    st = idx_read(images_path, io.max_bytes, &im);
    if (st) return st;
    if (im.ndim != 3) {
        idx_free(&im);
        return fmd_seterr(FMD_ERR_FORMAT, "%s: '%s' has %d dimensions, images need 3 (n, h, w)", fn,
                          images_path, im.ndim);
    }
    if (labels_path) {
        if ((st = idx_read(labels_path, io.max_bytes, &lb))) {
            idx_free(&im);
            return st;
        }
        if (lb.ndim != 1 || lb.dims[0] != im.dims[0]) {
            idx_free(&im);
            idx_free(&lb);
            return fmd_seterr(FMD_ERR_FORMAT, "%s: '%s' holds %lld labels for %lld images", fn,
                              labels_path, (long long)lb.count, (long long)im.dims[0]);
        }
    }
    const int64_t n = im.dims[0], dim = im.dims[1] * im.dims[2];
    fmd_dataset *d;
    st = ds_alloc(n, dim, labels_path != NULL, &d);
    if (!st) {
        for (int64_t i = 0; i < n * dim; i++) d->x[i] = (float)im.data[i] * (2.0f / 255.0f) - 1.0f;
        int mx = -1;
        for (int64_t i = 0; labels_path && i < n; i++) {
            d->labels[i] = lb.data[i];
            if (lb.data[i] > mx) mx = lb.data[i];
        }
        d->num_classes = mx + 1;
        d->c = 1;
        d->h = (int)im.dims[1];
        d->w = (int)im.dims[2];
        *out = d;
    }
    idx_free(&im);
    idx_free(&lb);
    return st;
}

int64_t fmd_dataset_size(const fmd_dataset *d) { return d ? d->n : 0; }
int64_t fmd_dataset_dim(const fmd_dataset *d) { return d ? d->dim : 0; }
int fmd_dataset_num_classes(const fmd_dataset *d) { return d ? d->num_classes : 0; }

fmd_status fmd_dataset_get(const fmd_dataset *d, int64_t i, float *x, int32_t *label)
{
    FMD_CHECK_ARG(d && x, "fmd_dataset_get: data and x must be non-NULL");
    FMD_CHECK_ARG(i >= 0 && i < d->n, "fmd_dataset_get: index %lld outside [0, %lld)", (long long)i,
                  (long long)d->n);
    memcpy(x, d->x + i * d->dim, (size_t)d->dim * sizeof(float));
    if (label) *label = d->labels ? d->labels[i] : -1;
    return FMD_OK;
}

/* ---------------------------------------------------------------- training */

/* Everything fmd_teacher_train takes (the option table below fills it). */
typedef struct train_config {
    const char *arch;
    int64_t width, depth, temb_dim, patch_size, hidden_size, num_heads, input_size, in_channels;
    double time_scale, mlp_ratio;
    int64_t steps, batch, lr_warmup, progress_every, checkpoint_every;
    uint64_t seed;
    double lr, lr_min, weight_decay, beta1, beta2, adam_eps, grad_clip, ema, class_dropout;
    double t_mean, t_std;
    int lr_decay, t_dist, conditional;
    const char *checkpoint, *resume;
} train_config;

#define OPT_CFG train_config
static const opt_spec k_train_spec[] = {
    OPT_STRING("arch", arch, 0, NULL, "mlp, dit, or a SiT/DiT preset (SiT-S/2, ...; image data only); default mlp"),
    OPT_INT("width", width, 1, 65536, 256, 0, "arch=mlp", "MLP hidden width"),
    OPT_INT_CTX("depth", depth, 1, 256, "4 (mlp), 6 (dit)", 0, "arch=mlp|dit", "hidden layers (mlp) or transformer blocks (dit)"),
    OPT_INT("temb_dim", temb_dim, 2, 65536, 256, OPT_EVEN, NULL, "sinusoidal time-embedding size"),
    OPT_NUM_CTX("time_scale", time_scale, 1e-6, 1e6, "30 (mlp), 1 (dit)", 0, NULL, "t is multiplied by this before the sinusoid"),
    OPT_INT("patch_size", patch_size, 1, 64, 2, 0, "arch=dit", "dit: patch side in pixels"),
    OPT_INT("hidden_size", hidden_size, 1, 65536, 256, 0, "arch=dit", "dit: transformer width"),
    OPT_INT("num_heads", num_heads, 1, 1024, 4, 0, "arch=dit", "dit: attention heads"),
    OPT_NUM("mlp_ratio", mlp_ratio, 0.1, 64, 4, 0, "arch!=mlp", "dit: MLP width / hidden size"),
    OPT_INT_CTX("input_size", input_size, 1, 4096, "the data's image side", 0, "arch!=mlp", "dit: image side"),
    OPT_INT_CTX("in_channels", in_channels, 1, 4096, "the data's channels", 0, "arch!=mlp", "dit: image channels"),
    OPT_INT("steps", steps, 1, 1e12, 5000, OPT_RESUMABLE, NULL, "training steps (the schedule's length)"),
    OPT_INT("batch", batch, 1, 1 << 24, 256, 0, NULL, "rows per step"),
    OPT_NUM("lr", lr, 0, 10, 1e-3, OPT_LO_OPEN, NULL, "AdamW peak learning rate"),
    OPT_INT("lr_warmup", lr_warmup, 0, 1e12, 100, 0, NULL, "linear learning-rate warm-up steps"),
    OPT_CHOICE("lr_decay", lr_decay, "cosine|linear|none", 0, 0, NULL, "decay after the warm-up, to lr_min x lr at the last step"),
    OPT_NUM("lr_min", lr_min, 0, 1, 0.1, 0, "lr_decay!=none", "final learning rate as a fraction of lr"),
    OPT_NUM("weight_decay", weight_decay, 0, 10, 0, 0, NULL, "AdamW decoupled weight decay"),
    OPT_NUM("beta1", beta1, 0, 0.999999, 0.9, 0, NULL, "AdamW beta1"),
    OPT_NUM("beta2", beta2, 0, 0.9999999, 0.999, 0, NULL, "AdamW beta2"),
    OPT_NUM("adam_eps", adam_eps, 1e-30, 1, 1e-8, 0, NULL, "AdamW epsilon"),
    OPT_NUM("grad_clip", grad_clip, 0, 1e12, 1, 0, NULL, "global gradient-norm clip (0: off)"),
    OPT_NUM("ema", ema, 0, 0.9999999, 0.999, 0, NULL, "EMA decay of the weights (the teacher returned)"),
    OPT_NUM("class_dropout", class_dropout, 0, 1, 0.1, 0, NULL, "share of labeled rows trained as the null class (for guidance)"),
    OPT_INT("conditional", conditional, 0, 1, 1, 0, NULL, "0: train an unconditional teacher on labeled data"),
    OPT_CHOICE("t_dist", t_dist, "uniform|logit_normal", 0, 0, NULL, "distribution of the training times t"),
    OPT_NUM("t_mean", t_mean, -10, 10, 0, 0, "t_dist=logit_normal", "logit-normal t: mean"),
    OPT_NUM("t_std", t_std, 1e-3, 10, 1, 0, "t_dist=logit_normal", "logit-normal t: standard deviation"),
    OPT_INT("seed", seed, 0, 9.2e18, 0, 0, NULL, "seed of the initialisation and every draw"),
    OPT_INT("progress_every", progress_every, 1, 1e12, 100, OPT_NO_SAVE, NULL, "steps between progress reports"),
    OPT_STRING("checkpoint", checkpoint, OPT_NO_SAVE, NULL, "a .fmd path, checked before the first step: the EMA teacher and the training state are saved there atomically every checkpoint_every steps, when the progress callback cancels, and at the end (it loads as a teacher; option resume continues it)"),
    OPT_INT("checkpoint_every", checkpoint_every, 1, 1e12, 1000, OPT_NO_SAVE, "checkpoint!=", "steps between checkpoints"),
    OPT_STRING("resume", resume, OPT_NO_SAVE, NULL, "a checkpoint written through option checkpoint: continue its run bit for bit from its step (weights, AdamW moments, EMA; the options it records apply, another value given is refused except for steps)"),
};
#undef OPT_CFG
static const opt_gone k_train_gone[] = {
    {"warmup", "renamed 'lr_warmup'"},
    {"min_lr", "renamed 'lr_min', now a fraction of lr (0.1 = the old default)"},
    {"eps", "renamed 'adam_eps'"},
    {NULL, NULL}};
const opt_table opt_table_train = OPT_TABLE("train", "fmd_teacher_train", k_train_spec, k_train_gone);


/* ---- checkpoints: the EMA teacher (loads with fmd_teacher_load) plus the
 * training state: the raw weights, the AdamW moments, the step, every saved
 * option and a fingerprint of the data.  Every draw of a step is keyed by
 * (seed, step, row), so these continue a run bit for bit. */

#define TRAIN_STATE_FORMAT 1
#define NTRAIN ((int)(sizeof k_train_spec / sizeof k_train_spec[0]))

/* "n=...,dim=...,classes=...,fnv=..." of the data (FNV-1a over the bytes of
 * the samples and labels): a resumed run must see the same data. */
static void data_fingerprint(const fmd_dataset *d, char *buf, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)d->x;
    for (size_t i = 0, n = (size_t)d->n * (size_t)d->dim * sizeof(float); i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    p = (const unsigned char *)d->labels;
    for (size_t i = 0, n = d->labels ? (size_t)d->n * sizeof(int32_t) : 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    snprintf(buf, len, "n=%lld,dim=%lld,classes=%d,fnv=%016llx", (long long)d->n,
             (long long)d->dim, d->num_classes, (unsigned long long)h);
}

static fmd_status save_checkpoint(const char *path, fmd_backend *be, nn_model *net, fm_trainer *tr,
                                  const train_config *o, const char *data_id)
{
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", FMD_VERSION_STRING);
    if (!st) st = fmdf_writer_add_meta(w, "kind", "teacher");
    if (!st) st = fmdf_writer_add_meta(w, "teacher_kind", "network");
    if (!st) st = fmdf_writer_add_meta(w, "time_convention", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "weights", "ema");
    if (!st) st = fmdf_writer_add_meta_i64(w, "train_step", fm_steps_done(tr));
    if (!st) st = fmdf_writer_add_meta_i64(w, "train_steps", o->steps);
    if (!st) st = fmdf_writer_add_meta_i64(w, "train.format", TRAIN_STATE_FORMAT);
    if (!st) st = fmdf_writer_add_meta(w, "train.data", data_id);
    for (int i = 0; i < NTRAIN && !st; i++) {
        if (k_train_spec[i].flags & OPT_NO_SAVE) continue;
        char key[96], val[256];
        snprintf(key, sizeof key, "train.option.%s", k_train_spec[i].key);
        opt_value_text(&k_train_spec[i], o, val, sizeof val);
        st = fmdf_writer_add_meta(w, key, val);
    }
    if (!st) st = model_io_write_config(w, "", nn_model_config(net));
    if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(net));
    if (!st) st = model_io_write_tensors(w, "", be, net, fm_ema(tr));
    if (!st) st = model_io_write_tensors(w, "train.params.", be, net, NULL);
    if (!st) st = model_io_write_tensors(w, "train.adam_m.", be, net, fm_adam_m(tr));
    if (!st) st = model_io_write_tensors(w, "train.adam_v.", be, net, fm_adam_v(tr));
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

/* The options recorded in the checkpoint r merged into o: a key not given
 * takes the stored value (and counts as given from then on); one given with
 * another value is refused unless it may change (steps: applied). */
static fmd_status merge_stored(const fmdf_reader *r, const char *path, train_config *o,
                               unsigned char *given)
{
    static const char *fn = "fmd_teacher_train";
    const opt_table *tab = &opt_table_train;
    for (int i = 0; i < NTRAIN; i++) {
        const opt_spec *s = &k_train_spec[i];
        if (s->flags & OPT_NO_SAVE) continue;
        char key[96], mine[256];
        snprintf(key, sizeof key, "train.option.%s", s->key);
        const char *text = fmdf_meta_get(r, key);
        if (!text)
            return fmd_seterr(FMD_ERR_FORMAT, "%s: resume: '%s' does not record option '%s'", fn,
                              path, s->key);
        opt_value_text(s, o, mine, sizeof mine);
        if (strcmp(mine, text) == 0) continue;   /* the same (also context values 0 of mlp) */
        train_config stored = *o;
        fmd_status st = opt_parse_text(tab, s, text, &stored);
        if (st) return st;
        if (given[i] && !opt_same(s, &stored, o)) {
            if (!(s->flags & OPT_RESUMABLE))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: resume: option '%s' = %s here, but '%s' "
                                  "was trained with %s (leave it out to continue that run)", fn,
                                  s->key, mine, path, text);
            fmd_log(FMD_LOG_INFO, "%s: resume: option '%s' changes from %s to %s", fn, s->key, text,
                    mine);
            continue;
        }
        *o = stored;
        given[i] = 1;
    }
    return FMD_OK;
}

/* The checkpoint r fits this run (data, network); then load its state. */
static fmd_status load_state(fmdf_reader *r, const char *path, fmd_backend *be, nn_model *net,
                             fm_trainer *tr, const char *data_id, int64_t steps)
{
    static const char *fn = "fmd_teacher_train";
    const char *did = fmdf_meta_get(r, "train.data");
    if (!did || strcmp(did, data_id) != 0)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: resume: '%s' was trained on other data (%s; "
                          "these are %s): give the same data set (and its seed)", fn, path,
                          did ? did : "not recorded", data_id);
    nn_config fc;
    fmd_status st = model_io_read_config(r, "", &fc);
    if (st) return st;
    char what[160];
    if (model_io_config_diff(&fc, nn_model_config(net), what, sizeof what))
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: resume: '%s' holds another network: %s", fn,
                          path, what);
    int64_t step = 0;
    if ((st = fmdf_meta_i64(r, "train_step", &step))) return st;
    if (step < 0) return fmd_seterr(FMD_ERR_FORMAT, "%s: resume: '%s': negative step", fn, path);
    if (step >= steps)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: resume: '%s' is at step %lld, already past "
                          "steps = %lld: nothing to train (give steps > %lld to continue)", fn, path,
                          (long long)step, (long long)steps, (long long)step);
    st = model_io_read_tensors(r, "", be, net, fm_ema(tr));
    if (!st) st = model_io_read_tensors(r, "train.params.", be, net, NULL);
    if (!st) st = model_io_read_tensors(r, "train.adam_m.", be, net, fm_adam_m(tr));
    if (!st) st = model_io_read_tensors(r, "train.adam_v.", be, net, fm_adam_v(tr));
    if (!st && (st = be->ops->sync(be))) st = fmd_seterr(st, "%s: %s", fn, be->errmsg);
    if (st) return st;
    fm_set_steps_done(tr, step);
    return FMD_OK;
}

/* Can path be written?  The writer's temporary file is created and removed. */
static fmd_status check_writable(const char *path)
{
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return fmd_err_prefix(st, "fmd_teacher_train: option checkpoint");
    fmdf_writer_abort(w);
    return FMD_OK;
}

fmd_status fmd_teacher_train(fmd_backend *be, const fmd_dataset *data, const fmd_options *opts,
                             fmd_train_progress_fn progress, void *user, fmd_teacher **out)
{
    return fmd_teacher_train_comm(NULL, be, data, opts, progress, user, out);
}

/* Data-parallel over comm (lib/algo/flowmatch.h); rank 0 writes the
 * checkpoints. */
fmd_status fmd_teacher_train_comm(fmd_comm *comm, fmd_backend *be, const fmd_dataset *data,
                                  const fmd_options *opts, fmd_train_progress_fn progress,
                                  void *user, fmd_teacher **out)
{
    static const char *fn = "fmd_teacher_train";
    FMD_CHECK_ARG(be, "%s: backend is NULL", fn);
    FMD_CHECK_ARG(data, "%s: data is NULL", fn);
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    const opt_table *tab = &opt_table_train;
    train_config o;
    unsigned char given[NTRAIN];
    memset(given, 0, sizeof given);
    opt_defaults(tab, &o);
    o.arch = "mlp";
    fmd_status st = opt_apply(tab, opts, &o, given);
    if (!st) st = opt_check_applies(tab, &o, given);
    if (st) return st;
    fmdf_reader *rr = NULL;   /* the checkpoint resumed (its strings back o) */
    const char *resume = o.resume && o.resume[0] ? o.resume : NULL;
    if (resume) {
        if ((st = fmdf_open(resume, &rr))) return fmd_err_prefix(st, "fmd_teacher_train: option resume");
        const char *kind = fmdf_meta_get(rr, "kind");
        int64_t fmt = 0;
        if (!kind || strcmp(kind, "teacher") != 0 || !fmdf_meta_get(rr, "train.format"))
            st = fmd_seterr(FMD_ERR_FORMAT, "%s: resume: '%s' holds no training state (not a "
                            "checkpoint of fmd_teacher_train)", fn, resume);
        if (!st) st = fmdf_meta_i64(rr, "train.format", &fmt);
        if (!st && fmt != TRAIN_STATE_FORMAT)
            st = fmd_seterr(FMD_ERR_VERSION, "%s: resume: '%s' has training-state format %lld; this "
                            "libfmd (%s) reads %d", fn, resume, (long long)fmt, fmd_version(),
                            TRAIN_STATE_FORMAT);
        if (!st) st = merge_stored(rr, resume, &o, given);
        if (st) {
            fmdf_close(rr);
            return st;
        }
    }
    const int is_mlp = strcmp(o.arch, "mlp") == 0;
    if (!given[opt_find(tab, "depth")]) o.depth = is_mlp ? 4 : 6;
    if (!given[opt_find(tab, "time_scale")]) o.time_scale = is_mlp ? 30 : 1;
    if (!given[opt_find(tab, "input_size")]) o.input_size = data->h;
    if (!given[opt_find(tab, "in_channels")]) o.in_channels = data->c;
    fm_config fc;
    memset(&fc, 0, sizeof fc);
    fc.batch = o.batch;
    /* the optimiser's numbers pass through float, as the trainer always kept
     * them (a run is reproducible bit for bit across versions) */
    fc.opt.steps = o.steps;
    fc.opt.lr = (float)o.lr;
    fc.opt.lr_end = (float)(o.lr_min * (double)(float)o.lr);
    fc.opt.decay = o.lr_decay == 0 ? OPTIM_COSINE : o.lr_decay == 1 ? OPTIM_LINEAR : OPTIM_CONST;
    fc.opt.warmup = o.lr_warmup;
    fc.opt.weight_decay = (float)o.weight_decay;
    fc.opt.beta1 = (float)o.beta1;
    fc.opt.beta2 = (float)o.beta2;
    fc.opt.eps = (float)o.adam_eps;
    fc.opt.grad_clip = (float)o.grad_clip;
    fc.opt.ema = (float)o.ema;
    fc.class_dropout = (float)o.class_dropout;
    fc.conditional = o.conditional;
    fc.t_logit_normal = o.t_dist == 1;
    fc.t_mean = (float)o.t_mean;
    fc.t_std = (float)o.t_std;
    fc.seed = o.seed;
    fc.comm = comm;
    const int64_t every = o.progress_every;
    const char *ckpt = o.checkpoint ? o.checkpoint : "";
    const int root_ckpt = ckpt[0] && fmd_comm_rank(comm) == 0;   /* rank 0 writes checkpoints */
    const int64_t ckpt_every = o.checkpoint_every;
    char data_id[128];
    data_fingerprint(data, data_id, sizeof data_id);

    /* the network */
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const int conditional = fc.conditional && data->labels && data->num_classes > 0;
    cfg.num_classes = conditional ? data->num_classes : 0;
    cfg.temb_dim = (int)o.temb_dim;
    cfg.time_scale = (float)o.time_scale;
    if (is_mlp) {
        cfg.arch = NN_ARCH_MLP;
        cfg.dim = (int)data->dim;
        cfg.width = (int)o.width;
        cfg.depth = (int)o.depth;
    } else {
        if (strcmp(o.arch, "dit") == 0) {
            cfg.arch = NN_ARCH_DIT;
            cfg.patch_size = (int)o.patch_size;
            cfg.hidden_size = (int)o.hidden_size;
            cfg.dit_depth = (int)o.depth;
            cfg.num_heads = (int)o.num_heads;
        } else if ((st = nn_config_preset(&cfg, o.arch))) {
            fmdf_close(rr);
            return fmd_err_prefix(st, "fmd_teacher_train: option arch");
        }
        cfg.mlp_ratio = (float)o.mlp_ratio;
        cfg.in_channels = (int)o.in_channels;
        cfg.input_size = (int)o.input_size;
        if (cfg.in_channels <= 0 || cfg.input_size <= 0 ||
            (int64_t)cfg.in_channels * cfg.input_size * cfg.input_size != data->dim || data->h != data->w) {
            fmdf_close(rr);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: arch '%s' needs square image data (set "
                              "in_channels and input_size so that C*H*W = dim = %lld)", fn, o.arch,
                              (long long)data->dim);
        }
    }
    /* every argument is checked before the first step: the checkpoint path too */
    if (ckpt[0] && (st = check_writable(ckpt))) {
        fmdf_close(rr);
        return st;
    }
    nn_model *net = NULL;
    if ((st = nn_model_create(be, &cfg, fc.seed, &net))) {
        fmdf_close(rr);
        return st;
    }
    fm_data fd = {data->x, data->labels, data->n, data->dim, data->num_classes};
    fc.conditional = conditional;
    fm_trainer *tr = NULL;
    if ((st = fm_create(be, net, &fd, &fc, &tr))) {
        nn_model_destroy(net);
        fmdf_close(rr);
        return st;
    }
    if (rr) st = load_state(rr, resume, be, net, tr, data_id, fc.opt.steps);
    if (st) {
        fm_destroy(tr);
        nn_model_destroy(net);
        fmdf_close(rr);
        return st;
    }
    fmd_train_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    s.steps = fc.opt.steps;
    const int64_t k0 = fm_steps_done(tr);
    double t0 = fmd_now(), tlast = t0, lsum = 0;
    int64_t lcount = 0, slast = k0;
    fmd_fpmode_enter(be->threads); /* subnormals flushed while training (util/fpmode.h) */
    while (fm_steps_done(tr) < fc.opt.steps) {
        double loss, gn, lr;
        if ((st = fmd_cancel_poll(fn))) {
            /* the work done so far is kept: a cancelled run resumes */
            fmd_status cst = root_ckpt && fm_steps_done(tr) > k0
                                 ? save_checkpoint(ckpt, be, net, tr, &o, data_id) : FMD_OK;
            if (cst) st = cst;
            break;
        }
        fmd_cancel_hold(1);
        st = fm_step(tr, &loss, &gn, &lr);
        fmd_cancel_hold(0);
        if (st) break;
        lsum += loss;
        lcount++;
        int64_t k = fm_steps_done(tr);
        const int saved = root_ckpt && (k % ckpt_every == 0 || k == fc.opt.steps);
        if (saved && (st = save_checkpoint(ckpt, be, net, tr, &o, data_id))) break;
        if (progress && (k % every == 0 || k == fc.opt.steps)) {
            double now = fmd_now();
            s.step = k;
            s.loss = loss;
            s.loss_avg = lsum / (double)lcount;
            s.lr = lr;
            s.grad_norm = gn;
            s.steps_per_s = now > tlast ? (double)(k - slast) / (now - tlast) : 0;
            s.eta_s = k > k0 ? (now - t0) / (double)(k - k0) * (double)(fc.opt.steps - k) : 0;
            tlast = now;
            slast = k;
            lsum = 0;
            lcount = 0;
            fmd_fpmode_pause_state ps;
            fmd_fpmode_pause(&ps);
            int stop = progress(&s, user);
            fmd_fpmode_resume(&ps);
            if (stop) {
                /* the work done so far is kept: a cancelled run resumes */
                if (root_ckpt && !saved && (st = save_checkpoint(ckpt, be, net, tr, &o, data_id)))
                    break;
                st = fmd_seterr(FMD_ERR_CANCELLED, "%s: cancelled by the progress callback at step "
                                "%lld%s%s", fn, (long long)k, ckpt[0] ? "; the training state is in " : "",
                                ckpt);
                break;
            }
        }
    }
    fmd_fpmode_leave(be->threads);
    fmdf_close(rr);
    if (!st) {
        be->ops->copy(be, nn_model_params(net), fm_ema(tr), (size_t)nn_model_num_params(net) * sizeof(float));
        st = be->ops->sync(be);
        if (st) st = fmd_seterr(st, "%s: %s", fn, be->errmsg);
    }
    fm_destroy(tr);
    if (st) {
        nn_model_destroy(net);
        return st;
    }
    return teacher_wrap_network(be, net, 0, out);
}
