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

fmd_status fmd_dataset_create(const float *x, const int32_t *labels, int64_t n, int64_t dim,
                              int num_classes, fmd_dataset **out)
{
    static const char *fn = "fmd_dataset_create";
    FMD_CHECK_ARG(x && out, "%s: x and out must be non-NULL", fn);
    FMD_CHECK_ARG(n >= 1 && dim >= 1 && dim <= (1 << 24) && n <= ((int64_t)1 << 40) / dim,
                  "%s: bad size %lld x %lld", fn, (long long)n, (long long)dim);
    FMD_CHECK_ARG(num_classes >= 0 && num_classes <= (1 << 24), "%s: num_classes %d < 0", fn,
                  num_classes);
    FMD_CHECK_ARG((num_classes > 0) == (labels != NULL), "%s: labels must be given exactly when "
                  "num_classes > 0", fn);
    for (int64_t i = 0; labels && i < n; i++)
        FMD_CHECK_ARG(labels[i] >= 0 && labels[i] < num_classes, "%s: labels[%lld] = %d outside "
                      "[0, %d)", fn, (long long)i, (int)labels[i], num_classes);
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

fmd_status fmd_dataset_load_idx(const char *images_path, const char *labels_path, fmd_dataset **out)
{
    static const char *fn = "fmd_dataset_load_idx";
    FMD_CHECK_ARG(images_path && out, "%s: images_path and out must be non-NULL", fn);
    idx_array im, lb;
    memset(&lb, 0, sizeof lb);
    fmd_status st = idx_read(images_path, &im);
    if (st) return st;
    if (im.ndim != 3) {
        idx_free(&im);
        return fmd_seterr(FMD_ERR_FORMAT, "%s: '%s' has %d dimensions, images need 3 (n, h, w)", fn,
                          images_path, im.ndim);
    }
    if (labels_path) {
        if ((st = idx_read(labels_path, &lb))) {
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

typedef struct {
    const char *key;
    int type; /* 0 f64, 1 i64, 2 str */
    double lo, hi;
} train_opt;

static const train_opt TRAIN_OPTS[] = {
    {"arch", 2, 0, 0},          {"width", 1, 1, 65536},      {"depth", 1, 1, 256},
    {"temb_dim", 1, 2, 65536},  {"time_scale", 0, 1e-6, 1e6}, {"patch_size", 1, 1, 64},
    {"hidden_size", 1, 1, 65536}, {"num_heads", 1, 1, 1024}, {"mlp_ratio", 0, 0.1, 64},
    {"input_size", 1, 1, 4096}, {"in_channels", 1, 1, 4096}, {"steps", 1, 1, 1e12},
    {"batch", 1, 1, 1 << 24},   {"lr", 0, 0, 10},            {"warmup", 1, 0, 1e12},
    {"lr_decay", 2, 0, 0},      {"min_lr", 0, 0, 10},        {"weight_decay", 0, 0, 10},
    {"beta1", 0, 0, 0.999999},  {"beta2", 0, 0, 0.9999999},  {"eps", 0, 1e-30, 1},
    {"grad_clip", 0, 0, 1e12},  {"ema", 0, 0, 0.9999999},    {"class_dropout", 0, 0, 1},
    {"conditional", 1, 0, 1},   {"t_dist", 2, 0, 0},         {"t_mean", 0, -10, 10},
    {"t_std", 0, 1e-3, 10},     {"seed", 1, 0, 9.2e18},      {"progress_every", 1, 1, 1e12},
    {"checkpoint", 2, 0, 0},    {"checkpoint_every", 1, 1, 1e12},
};

static fmd_status check_opts(const char *fn, const fmd_options *o)
{
    for (int i = 0; i < fmd_options_count(o); i++) {
        const char *k = fmd_options_key(o, i);
        const train_opt *t = NULL;
        for (size_t j = 0; j < sizeof TRAIN_OPTS / sizeof TRAIN_OPTS[0]; j++)
            if (strcmp(TRAIN_OPTS[j].key, k) == 0) t = &TRAIN_OPTS[j];
        if (!t) return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: unknown option '%s'", fn, k);
        const char *s;
        double f;
        int64_t v;
        if (t->type == 2) {
            if (fmd_options_get_str(o, k, &s))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option %s must be a string", fn, k);
        } else if (t->type == 1) {
            if (fmd_options_get_i64(o, k, &v))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option %s must be an integer", fn, k);
            if ((double)v < t->lo || (double)v > t->hi)
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option %s = %lld outside [%g, %g]", fn, k,
                                  (long long)v, t->lo, t->hi);
        } else {
            if (fmd_options_get_f64(o, k, &f))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option %s must be a number", fn, k);
            if (f < t->lo || f > t->hi)
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option %s = %g outside [%g, %g]", fn, k,
                                  f, t->lo, t->hi);
        }
    }
    return FMD_OK;
}

static int64_t opt_i(const fmd_options *o, const char *k, int64_t def)
{
    int64_t v;
    return o && fmd_options_get_i64(o, k, &v) == FMD_OK ? v : def;
}
static double opt_f(const fmd_options *o, const char *k, double def)
{
    double v;
    return o && fmd_options_get_f64(o, k, &v) == FMD_OK ? v : def;
}
static const char *opt_s(const fmd_options *o, const char *k, const char *def)
{
    const char *v;
    return o && fmd_options_get_str(o, k, &v) == FMD_OK ? v : def;
}

static fmd_status save_checkpoint(const char *path, fmd_backend *be, nn_model *net, float *ema,
                                  int64_t step, int64_t steps)
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
    if (!st) st = fmdf_writer_add_meta_i64(w, "train_step", step);
    if (!st) st = fmdf_writer_add_meta_i64(w, "train_steps", steps);
    if (!st) st = model_io_write_config(w, "", nn_model_config(net));
    if (!st) st = fmdf_writer_add_meta_i64(w, "num_params", nn_model_num_params(net));
    if (!st) st = model_io_write_tensors(w, "", be, net, ema);
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

fmd_status fmd_teacher_train(fmd_backend *be, const fmd_dataset *data, const fmd_options *opts,
                             fmd_train_progress_fn progress, void *user, fmd_teacher **out)
{
    static const char *fn = "fmd_teacher_train";
    FMD_CHECK_ARG(be, "%s: backend is NULL", fn);
    FMD_CHECK_ARG(data, "%s: data is NULL", fn);
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    fmd_status st = check_opts(fn, opts);
    if (st) return st;
    fm_config fc;
    fm_config_default(&fc);
    fc.steps = opt_i(opts, "steps", 5000);
    fc.batch = opt_i(opts, "batch", 256);
    fc.lr = (float)opt_f(opts, "lr", 1e-3);
    fc.warmup = opt_i(opts, "warmup", 100);
    fc.min_lr = (float)opt_f(opts, "min_lr", 0.1 * fc.lr);
    const char *decay = opt_s(opts, "lr_decay", "cosine");
    if (strcmp(decay, "cosine") && strcmp(decay, "const"))
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option lr_decay '%.32s' (expected cosine or "
                          "const)", fn, decay);
    fc.cosine = strcmp(decay, "cosine") == 0;
    fc.weight_decay = (float)opt_f(opts, "weight_decay", 0);
    fc.beta1 = (float)opt_f(opts, "beta1", 0.9);
    fc.beta2 = (float)opt_f(opts, "beta2", 0.999);
    fc.eps = (float)opt_f(opts, "eps", 1e-8);
    fc.grad_clip = (float)opt_f(opts, "grad_clip", 1.0);
    fc.ema = (float)opt_f(opts, "ema", 0.999);
    fc.class_dropout = (float)opt_f(opts, "class_dropout", 0.1);
    fc.conditional = (int)opt_i(opts, "conditional", 1);
    const char *td = opt_s(opts, "t_dist", "uniform");
    if (strcmp(td, "uniform") && strcmp(td, "logit_normal"))
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option t_dist '%.32s' (expected uniform or "
                          "logit_normal)", fn, td);
    fc.t_logit_normal = strcmp(td, "logit_normal") == 0;
    fc.t_mean = (float)opt_f(opts, "t_mean", 0);
    fc.t_std = (float)opt_f(opts, "t_std", 1);
    fc.seed = (uint64_t)opt_i(opts, "seed", 0);
    const int64_t every = opt_i(opts, "progress_every", 100);
    const char *ckpt = opt_s(opts, "checkpoint", "");
    const int64_t ckpt_every = opt_i(opts, "checkpoint_every", 1000);

    /* the network */
    nn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *arch = opt_s(opts, "arch", "mlp");
    const int conditional = fc.conditional && data->labels && data->num_classes > 0;
    cfg.num_classes = conditional ? data->num_classes : 0;
    if (strcmp(arch, "mlp") == 0) {
        cfg.arch = NN_ARCH_MLP;
        cfg.dim = (int)data->dim;
        cfg.width = (int)opt_i(opts, "width", 256);
        cfg.depth = (int)opt_i(opts, "depth", 4);
        cfg.temb_dim = (int)opt_i(opts, "temb_dim", 256);
        cfg.time_scale = (float)opt_f(opts, "time_scale", 30);
    } else {
        if (strcmp(arch, "dit") == 0) {
            cfg.arch = NN_ARCH_DIT;
            cfg.patch_size = (int)opt_i(opts, "patch_size", 2);
            cfg.hidden_size = (int)opt_i(opts, "hidden_size", 256);
            cfg.dit_depth = (int)opt_i(opts, "depth", 6);
            cfg.num_heads = (int)opt_i(opts, "num_heads", 4);
        } else if ((st = nn_config_preset(&cfg, arch))) {
            return fmd_err_prefix(st, "fmd_teacher_train: option arch");
        }
        cfg.mlp_ratio = (float)opt_f(opts, "mlp_ratio", 4);
        cfg.temb_dim = (int)opt_i(opts, "temb_dim", 256);
        cfg.time_scale = (float)opt_f(opts, "time_scale", 1);
        cfg.in_channels = (int)opt_i(opts, "in_channels", data->c ? data->c : 0);
        cfg.input_size = (int)opt_i(opts, "input_size", data->h ? data->h : 0);
        if (cfg.in_channels <= 0 || cfg.input_size <= 0 ||
            (int64_t)cfg.in_channels * cfg.input_size * cfg.input_size != data->dim || data->h != data->w)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: arch '%s' needs square image data (set "
                              "in_channels and input_size so that C*H*W = dim = %lld)", fn, arch,
                              (long long)data->dim);
    }
    nn_model *net = NULL;
    if ((st = nn_model_create(be, &cfg, fc.seed, &net))) return st;
    fm_data fd = {data->x, data->labels, data->n, data->dim, data->num_classes};
    fc.conditional = conditional;
    fm_trainer *tr = NULL;
    if ((st = fm_create(be, net, &fd, &fc, &tr))) {
        nn_model_destroy(net);
        return st;
    }
    fmd_train_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    s.steps = fc.steps;
    double t0 = fmd_now(), tlast = t0, lsum = 0;
    int64_t lcount = 0, slast = 0;
    fmd_fpmode_enter(be->threads); /* subnormals flushed while training (util/fpmode.h) */
    while (fm_steps_done(tr) < fc.steps) {
        double loss, gn, lr;
        if ((st = fm_step(tr, &loss, &gn, &lr))) break;
        lsum += loss;
        lcount++;
        int64_t k = fm_steps_done(tr);
        if (ckpt[0] && (k % ckpt_every == 0 || k == fc.steps) &&
            (st = save_checkpoint(ckpt, be, net, fm_ema(tr), k, fc.steps)))
            break;
        if (progress && (k % every == 0 || k == fc.steps)) {
            double now = fmd_now();
            s.step = k;
            s.loss = loss;
            s.loss_avg = lsum / (double)lcount;
            s.lr = lr;
            s.grad_norm = gn;
            s.steps_per_s = now > tlast ? (double)(k - slast) / (now - tlast) : 0;
            s.eta_s = k > 0 ? (now - t0) / (double)k * (double)(fc.steps - k) : 0;
            tlast = now;
            slast = k;
            lsum = 0;
            lcount = 0;
            fmd_fpmode_pause_state ps;
            fmd_fpmode_pause(&ps);
            int stop = progress(&s, user);
            fmd_fpmode_resume(&ps);
            if (stop) {
                st = fmd_seterr(FMD_ERR_CANCELLED, "%s: cancelled by the progress callback at step "
                                "%lld", fn, (long long)k);
                break;
            }
        }
    }
    fmd_fpmode_leave(be->threads);
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
