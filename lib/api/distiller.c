/* distiller.c - fmd_distiller: options, the auxiliary network, run loop with
 * progress and cancellation, checkpoints (save / resume) around the
 * FreeFlow step of lib/algo/freeflow.c.
 *
 * Checkpoint layout (.fmd, docs/file-format.md): metadata "format"="libfmd",
 * "kind"="distiller", "library_version", "distiller.step", "distiller.batch",
 * "distiller.seed", "distiller.pred", "distiller.corr", "distiller.aux";
 * tensors: the EMA student under prefix "" (so fmd_student_load reads a
 * checkpoint as its EMA student), the raw student under "student.", its
 * AdamW moments under "adam_m." / "adam_v.", the auxiliary network under
 * "aux." with moments "aux_adam_m." / "aux_adam_v.", and with
 * corr_ref=samples the reference network under "ref." / "ref_adam_m." /
 * "ref_adam_v." with "distiller.ref_pool" and "distiller.ref_steps" (its pool
 * is regenerated from the seed); with data_pool the metadata
 * "distiller.data_pool" and "distiller.data_pool_steps" (that pool is
 * regenerated too).  Configs are stored with each model prefix and compared
 * on resume. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "algo/freeflow.h"
#include "api/student_internal.h"
#include "api/teacher_internal.h"
#include "io/model_io.h"
#include "util/fpmode.h"
#include "util/util.h"

enum { AUX_AUTO = 0, AUX_RESIDUAL = 1, AUX_COPY = 2 };

struct fmd_distiller {
    fmd_backend *be;
    fmd_teacher *teacher;
    fmd_student *student;
    fmd_student *ema;        /* owned; its network's parameters are the EMA */
    nn_model *aux;           /* owned, NULL without correction              */
    nn_model *ref;           /* owned, NULL unless corr_ref = samples       */
    int aux_kind;
    int64_t ref_pool, ref_steps;   /* reference pool (0 without one)        */
    int64_t data_pool, data_pool_steps;  /* teacher pool as data (0: none)  */
    ff_config cfg;
    ff_trainer *tr;
    char *ckpt_path;
    int64_t ckpt_every, progress_every;
    fmd_distill_stats stats;
};

/* ---- options --------------------------------------------------------------- */

typedef enum { O_I64, O_F64, O_STR } otype;
typedef struct {
    const char *key;
    otype type;
    double lo, hi;           /* inclusive range for numbers                  */
} opt_spec;

/* The option table (defaults are in ff_config_default and docs/distiller.md). */
static const opt_spec k_opts[] = {
    {"batch", O_I64, 2, 1 << 20},
    {"seed", O_I64, 0, 9.2e18},
    {"target", O_STR, 0, 0},
    {"step_h", O_F64, 1e-6, 1},
    {"step_h_end", O_F64, 0, 1},
    {"fd_eps", O_F64, 1e-6, 0.1},
    {"delta_dist", O_STR, 0, 0},
    {"delta_one", O_F64, 0, 1},
    {"delta_loc", O_F64, -10, 10},
    {"delta_scale", O_F64, 1e-3, 10},
    {"delta_min", O_F64, 0, 0.99},
    {"corr_frac", O_F64, 0.001, 0.999},
    {"pred", O_I64, 0, 1},
    {"corr", O_I64, 0, 1},
    {"weight_k", O_F64, 0, 4},
    {"weight_eps", O_F64, 1e-12, 1e6},
    {"alpha", O_F64, 0, 1e4},
    {"alpha_end", O_F64, 0, 1e4},
    {"lambda_eps", O_F64, 1e-12, 1e6},
    {"warmup", O_I64, 0, 1e15},
    {"r_loc", O_F64, -10, 10},
    {"r_scale", O_F64, 1e-3, 10},
    {"guidance", O_F64, 0, 1e3},
    {"guidance_lo", O_F64, 0, 1},
    {"guidance_hi", O_F64, 0, 1},
    {"corr_guidance", O_F64, 0, 1e3},
    {"corr_guidance_lo", O_F64, 0, 1},
    {"corr_guidance_hi", O_F64, 0, 1},
    {"aux", O_STR, 0, 0},
    {"aux_width", O_I64, 1, 65536},
    {"aux_depth", O_I64, 1, 64},
    {"aux_lr", O_F64, 1e-12, 10},
    {"aux_updates", O_I64, 1, 1000},
    {"aux_decay", O_I64, 0, 1},
    {"corr_ref", O_STR, 0, 0},
    {"corr_field", O_STR, 0, 0},
    {"kernel_bank", O_I64, 1, 1 << 20},
    {"ref_pool", O_I64, 1, 2147483647.0},
    {"ref_steps", O_I64, 1, 100000},
    {"lr", O_F64, 1e-12, 10},
    {"beta1", O_F64, 0, 0.999999},
    {"beta2", O_F64, 0, 0.999999999},
    {"adam_eps", O_F64, 1e-30, 1},
    {"weight_decay", O_F64, 0, 10},
    {"grad_clip", O_F64, 0, 1e12},
    {"ema", O_F64, 0, 0.999999999},
    {"lr_decay", O_STR, 0, 0},
    {"decay_steps", O_I64, 0, 1e15},
    {"lr_warmup", O_I64, 0, 1e15},
    {"lr_min", O_F64, 0, 1},
    {"data_based", O_I64, 0, 1},
    {"data_frac", O_F64, 0, 1},
    {"data_pool", O_I64, 1, 2147483647.0},
    {"data_pool_steps", O_I64, 1, 100000},
    {"checkpoint", O_STR, 0, 0},
    {"checkpoint_every", O_I64, 0, 1e15},
    {"progress_every", O_I64, 1, 1e15},
};

typedef struct {
    ff_config c;
    int aux_kind;
    int64_t aux_width, aux_depth;
    int corr_ref;            /* 1: g_ref fitted to teacher ODE samples       */
    int have_kernel_bank;
    const char *aux_opt;     /* the first option given that sets g, or NULL */
    int64_t ref_pool, ref_steps;
    int64_t data_pool, data_pool_steps;
    const char *ckpt;
    int64_t ckpt_every, progress_every;
    int have_corr_g, have_corr_g_lo, have_corr_g_hi;
} parsed_opts;

/* *out = the index of v in names[0..n), or FMD_ERR_INVALID_ARG naming the
 * option, the value and the names expected. */
static fmd_status str_pick(const char *key, const char *v, const char *const *names, int n,
                           int *out)
{
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return FMD_OK;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", names[i]);
    }
    return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd_distiller_create: option '%s' = '%s' (expected %s)",
                      key, v, list);
}

static fmd_status parse_options(const fmd_options *o, const fmd_guidance *tg, parsed_opts *p)
{
    const char *fn = "fmd_distiller_create";
    ff_config_default(&p->c);
    /* guidance defaults: the teacher's; the correction's interval is cut at
     * t <= 0.7 (MATH.md section 4) */
    if (tg) {
        p->c.pred_g = (ff_guidance){tg->scale, tg->t_lo, tg->t_hi};
        float hi = tg->t_hi < 0.7f ? tg->t_hi : 0.7f;
        p->c.corr_g = (ff_guidance){tg->scale, tg->t_lo < hi ? tg->t_lo : hi, hi};
    }
    int n = fmd_options_count(o);
    for (int i = 0; i < n; i++) {
        const char *k = fmd_options_key(o, i);
        const opt_spec *sp = NULL;
        for (size_t j = 0; j < sizeof k_opts / sizeof k_opts[0]; j++)
            if (strcmp(k, k_opts[j].key) == 0) sp = &k_opts[j];
        if (!sp)
            return fmd_seterr(FMD_ERR_INVALID_ARG,
                              "%s: unknown option '%s' (see docs/distiller.md)", fn, k);
        double f = 0;
        int64_t iv = 0;
        const char *sv = NULL;
        if (sp->type == O_STR) {
            if (fmd_options_get_str(o, k, &sv))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be a string", fn, k);
        } else if (sp->type == O_I64) {
            if (fmd_options_get_i64(o, k, &iv))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be an integer", fn, k);
            f = (double)iv;
        } else {
            if (fmd_options_get_f64(o, k, &f))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be a number", fn, k);
        }
        if (sp->type != O_STR && !(f >= sp->lo && f <= sp->hi))
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' = %g outside [%g, %g]", fn, k,
                              f, sp->lo, sp->hi);
        ff_config *c = &p->c;
#define IS(name) (strcmp(k, name) == 0)
        if (IS("batch")) c->batch = iv;
        else if (IS("seed")) c->seed = (uint64_t)iv;
        else if (IS("target")) {
            static const char *const names[] = {"teacher-step", "jvp", "fd"};
            fmd_status st = str_pick(k, sv, names, 3, &c->target);
            if (st) return st;
        } else if (IS("step_h")) c->step_h = f;
        else if (IS("fd_eps")) c->fd_eps = f;
        else if (IS("delta_dist")) {
            static const char *const names[] = {"uniform", "logit-normal", "one"};
            fmd_status st = str_pick(k, sv, names, 3, &c->delta_dist);
            if (st) return st;
        } else if (IS("delta_one")) c->delta_one = f;
        else if (IS("delta_loc")) c->delta_loc = f;
        else if (IS("delta_scale")) c->delta_scale = f;
        else if (IS("delta_min")) c->delta_min = f;
        else if (IS("corr_frac")) c->corr_frac = f;
        else if (IS("pred")) c->use_pred = (int)iv;
        else if (IS("corr")) c->use_corr = (int)iv;
        else if (IS("weight_k")) c->weight_k = f;
        else if (IS("weight_eps")) c->weight_eps = f;
        else if (IS("alpha")) c->alpha = f;
        else if (IS("alpha_end")) c->alpha_end = f;
        else if (IS("lambda_eps")) c->lambda_eps = f;
        else if (IS("warmup")) c->warmup = iv;
        else if (IS("r_loc")) c->r_loc = f;
        else if (IS("r_scale")) c->r_scale = f;
        else if (IS("guidance")) c->pred_g.scale = (float)f;
        else if (IS("guidance_lo")) c->pred_g.t_lo = (float)f;
        else if (IS("guidance_hi")) c->pred_g.t_hi = (float)f;
        else if (IS("corr_guidance")) { c->corr_g.scale = (float)f; p->have_corr_g = 1; }
        else if (IS("corr_guidance_lo")) { c->corr_g.t_lo = (float)f; p->have_corr_g_lo = 1; }
        else if (IS("corr_guidance_hi")) { c->corr_g.t_hi = (float)f; p->have_corr_g_hi = 1; }
        else if (IS("aux")) {
            static const char *const names[] = {"auto", "residual", "copy"};
            fmd_status st = str_pick(k, sv, names, 3, &p->aux_kind);
            if (st) return st;
        } else if (IS("aux_width")) p->aux_width = iv;
        else if (IS("aux_depth")) p->aux_depth = iv;
        else if (IS("aux_lr")) c->aux_lr = f;
        else if (IS("aux_updates")) c->aux_updates = iv;
        else if (IS("aux_decay")) c->aux_decay = (int)iv;
        else if (IS("corr_field")) {
            static const char *const names[] = {"net", "kernel"};
            fmd_status st = str_pick(k, sv, names, 2, &c->corr_field);
            if (st) return st;
        } else if (IS("kernel_bank")) { c->kernel_bank = iv; p->have_kernel_bank = 1; }
        else if (IS("corr_ref")) {
            static const char *const names[] = {"teacher", "samples"};
            fmd_status st = str_pick(k, sv, names, 2, &p->corr_ref);
            if (st) return st;
        } else if (IS("ref_pool")) p->ref_pool = iv;
        else if (IS("ref_steps")) p->ref_steps = iv;
        else if (IS("lr")) c->lr = f;
        else if (IS("beta1")) c->beta1 = f;
        else if (IS("beta2")) c->beta2 = f;
        else if (IS("adam_eps")) c->adam_eps = f;
        else if (IS("weight_decay")) c->weight_decay = f;
        else if (IS("grad_clip")) c->grad_clip = f;
        else if (IS("ema")) c->ema = f;
        else if (IS("lr_decay")) {
            static const char *const names[] = {"none", "cosine", "linear"};
            fmd_status st = str_pick(k, sv, names, 3, &c->lr_decay);
            if (st) return st;
        } else if (IS("decay_steps")) c->decay_steps = iv;
        else if (IS("lr_warmup")) c->lr_warmup = iv;
        else if (IS("lr_min")) c->lr_min = f;
        else if (IS("data_based")) c->data_based = (int)iv;
        else if (IS("data_frac")) c->data_frac = f;
        else if (IS("data_pool")) p->data_pool = iv;
        else if (IS("data_pool_steps")) p->data_pool_steps = iv;
        else if (IS("checkpoint")) {
            if (!sv[0])
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'checkpoint' is empty", fn);
            p->ckpt = sv;
        } else if (IS("checkpoint_every")) p->ckpt_every = iv;
        else if (IS("progress_every")) p->progress_every = iv;
        if (!p->aux_opt && !strncmp(k, "aux", 3)) p->aux_opt = k;
#undef IS
    }
    ff_config *c = &p->c;
    /* the correction's guidance scale follows the prediction's unless set */
    if (!p->have_corr_g) c->corr_g.scale = c->pred_g.scale;
    if (c->pred_g.t_lo > c->pred_g.t_hi)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'guidance_lo' > 'guidance_hi'", fn);
    if (c->corr_g.t_lo > c->corr_g.t_hi)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'corr_guidance_lo' > 'corr_guidance_hi'", fn);
    if (!c->use_pred && !c->use_corr)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: options 'pred' and 'corr' are both 0", fn);
    if (c->data_based && !c->use_pred)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'data_based' needs the prediction objective (pred=1)", fn);
    if (c->data_frac != 1.0 && !c->data_based)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'data_frac' applies to data_based=1 only", fn);
    if (p->data_pool && !c->data_based)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'data_pool' applies to data_based=1 only", fn);
    if (p->data_pool_steps && !p->data_pool)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'data_pool_steps' needs 'data_pool'", fn);
    if (p->data_pool && !p->data_pool_steps) p->data_pool_steps = 32;
    if (p->corr_ref && !c->use_corr)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'corr_ref' = 'samples' needs the correction (corr=1)", fn);
    if ((p->ref_pool || p->ref_steps) && !p->corr_ref)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: options 'ref_pool'/'ref_steps' apply to corr_ref=samples only", fn);
    if (c->corr_field == FF_FIELD_KERNEL && !c->use_corr)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'corr_field' = 'kernel' needs the correction (corr=1)", fn);
    if (c->corr_field == FF_FIELD_KERNEL && p->aux_opt)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option '%s' sets the auxiliary network, which corr_field=kernel "
                          "does not use", fn, p->aux_opt);
    if (p->have_kernel_bank && c->corr_field != FF_FIELD_KERNEL)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'kernel_bank' applies to corr_field=kernel only", fn);
    if (!p->ref_pool) p->ref_pool = 16384;
    if (!p->ref_steps) p->ref_steps = 32;
    if (p->ckpt_every > 0 && !p->ckpt)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'checkpoint_every' needs 'checkpoint'", fn);
    return FMD_OK;
}

/* ---- teacher adapter ----------------------------------------------------------- */

static fmd_status dist_velocity(void *ctx, float *v, const float *x, const float *t,
                                const int32_t *labels, int64_t b, const ff_guidance *g)
{
    fmd_distiller *d = ctx;
    fmd_guidance gg = {g->scale, g->t_lo, g->t_hi};
    return teacher_velocity_dev(d->teacher, d->be, v, x, t, labels, b, &gg);
}

/* ---- lifetime -------------------------------------------------------------------- */

void fmd_distiller_destroy(fmd_distiller *d)
{
    if (!d) return;
    ff_destroy(d->tr);
    fmd_student_destroy(d->ema);
    nn_model_destroy(d->aux);
    nn_model_destroy(d->ref);
    fmd_free(d->ckpt_path);
    fmd_free(d);
}

/* An auxiliary network g (teacher form): a copy of a network teacher, or
 * an MLP residual with a zero output layer (g = teacher + 0).  The
 * reference network of corr_ref = samples is made the same way, with the
 * same seed, so that g - g_ref starts at exactly zero. */
static fmd_status make_aux(fmd_backend *backend, const fmd_teacher *teacher, const nn_config *scfg,
                           const parsed_opts *p, int aux_kind, nn_model **aux)
{
    const char *fn = "fmd_distiller_create";
    const nn_model *tnet = teacher_network(teacher);
    nn_config ac;
    fmd_status st;
    if (aux_kind == AUX_COPY) {
        ac = *nn_model_config(tnet);
        ac.student = ac.t_start = 0;
        st = nn_model_create(backend, &ac, p->c.seed + 1, aux);
        if (!st && nn_model_copy_matching(*aux, tnet) <= 0)
            st = fmd_seterr(FMD_ERR_INTERNAL, "%s: could not copy the teacher into g", fn);
        return st;
    }
    ac = *scfg;
    ac.student = ac.t_start = 0;
    if (ac.arch != NN_ARCH_MLP) {
        memset(&ac, 0, sizeof ac);
        ac.arch = NN_ARCH_MLP;
        ac.dim = (int)teacher_dim(teacher);
        ac.num_classes = teacher_num_classes(teacher);
        ac.width = 256;
        ac.depth = 4;
    }
    if (p->aux_width) ac.width = (int)p->aux_width;
    if (p->aux_depth) ac.depth = (int)p->aux_depth;
    st = nn_model_create(backend, &ac, p->c.seed + 1, aux);
    if (st) return st;
    /* residual starts at zero: g = v_teacher + 0 */
    const nn_param *w = nn_model_find(*aux, "out_proj.weight");
    const nn_param *bb = nn_model_find(*aux, "out_proj.bias");
    if (!w || !bb) return fmd_seterr(FMD_ERR_INTERNAL, "%s: residual g has no out_proj", fn);
    float *pp = nn_model_params(*aux);
    backend->ops->memset0(backend, pp + w->offset, (size_t)w->numel * sizeof(float));
    backend->ops->memset0(backend, pp + bb->offset, (size_t)bb->numel * sizeof(float));
    return FMD_OK;
}

fmd_status fmd_distiller_create(fmd_teacher *teacher, fmd_student *student, fmd_backend *backend,
                                const fmd_options *opts, fmd_distiller **out)
{
    const char *fn = "fmd_distiller_create";
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    FMD_CHECK_ARG(teacher, "%s: teacher is NULL", fn);
    FMD_CHECK_ARG(student, "%s: student is NULL", fn);
    FMD_CHECK_ARG(backend, "%s: backend is NULL", fn);
    FMD_CHECK_ARG(student_backend(student) == backend,
                  "%s: the student lives on another backend", fn);
    nn_model *snet = student_net(student);
    const nn_config *scfg = nn_model_config(snet);
    FMD_CHECK_ARG(nn_model_dim(snet) == teacher_dim(teacher),
                  "%s: student dimension %lld differs from the teacher's %lld", fn,
                  (long long)nn_model_dim(snet), (long long)teacher_dim(teacher));
    FMD_CHECK_ARG(scfg->num_classes == teacher_num_classes(teacher),
                  "%s: student has %d classes, the teacher %d", fn, scfg->num_classes,
                  teacher_num_classes(teacher));
    parsed_opts p;
    memset(&p, 0, sizeof p);
    p.progress_every = 100;
    fmd_status st = parse_options(opts, teacher_guidance(teacher), &p);
    if (st) return st;
    const nn_model *tnet = teacher_network(teacher);
    int aux_kind = p.aux_kind == AUX_AUTO ? (tnet ? AUX_COPY : AUX_RESIDUAL) : p.aux_kind;
    if (aux_kind == AUX_COPY && !tnet)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: option 'aux' = 'copy' needs a network teacher", fn);
    if (aux_kind == AUX_COPY && (p.aux_width || p.aux_depth))
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "%s: options 'aux_width'/'aux_depth' apply to aux=residual only", fn);

    fmd_distiller *d = fmd_xcalloc(1, sizeof *d, "fmd_distiller");
    if (!d) return FMD_ERR_OOM;
    d->be = backend;
    d->teacher = teacher;
    d->student = student;
    d->aux_kind = aux_kind;
    d->cfg = p.c;
    d->ckpt_every = p.ckpt_every;
    d->progress_every = p.progress_every;
    if (p.ckpt && !(d->ckpt_path = fmd_strdup(p.ckpt))) st = FMD_ERR_OOM;

    /* EMA student: same architecture (its parameters become the EMA) */
    nn_model *enet = NULL;
    if (!st) st = nn_model_create(backend, scfg, 0, &enet);
    if (!st) st = student_wrap(backend, enet, &d->ema);
    /* auxiliary network g (teacher form) and the reference g_ref */
    const int kernel = p.c.corr_field == FF_FIELD_KERNEL;   /* no g, no g_ref */
    if (!st && p.c.use_corr && !kernel)
        st = make_aux(backend, teacher, scfg, &p, aux_kind, &d->aux);
    if (!st && p.corr_ref && !kernel) st = make_aux(backend, teacher, scfg, &p, aux_kind, &d->ref);
    if (p.corr_ref) {
        d->ref_pool = p.ref_pool;
        d->ref_steps = p.ref_steps;
    }
    if (!st)
        st = ff_create(backend, &p.c, snet, student_net(d->ema), d->aux,
                       aux_kind == AUX_RESIDUAL, dist_velocity, d, &d->tr);
    if (!st && p.corr_ref) st = ff_set_reference(d->tr, d->ref, p.ref_pool, p.ref_steps);
    d->data_pool = p.data_pool;
    d->data_pool_steps = p.data_pool_steps;
    if (!st && p.data_pool) st = ff_make_data_pool(d->tr, p.data_pool, p.data_pool_steps);
    /* ff_create sized the student's arena for exactly one batch */
    student_note_reserved(student, st ? 0 : p.c.batch);
    if (st) {
        if (st == FMD_ERR_OOM && fmd_last_status() != FMD_ERR_OOM)
            fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
        fmd_distiller_destroy(d);
        return st;
    }
    d->stats.struct_size = sizeof d->stats;
    *out = d;
    return FMD_OK;
}

fmd_status fmd_distiller_set_data(fmd_distiller *d, const float *x0, const int32_t *labels,
                                  int64_t n)
{
    FMD_CHECK_ARG(d, "fmd_distiller_set_data: distiller is NULL");
    return ff_set_data(d->tr, x0, labels, n);
}

/* ---- steps ------------------------------------------------------------------------- */

static void fill_stats(fmd_distiller *d, const ff_step_stats *s)
{
    d->stats.step = ff_steps_done(d->tr);
    d->stats.loss_pred = s->loss_pred;
    d->stats.loss_corr = s->loss_corr;
    d->stats.loss_aux = s->loss_aux;
    d->stats.delta_norm = s->delta_norm;
    d->stats.vdiff_norm = s->vdiff_norm;
    d->stats.lambda = s->lambda;
    d->stats.lr = s->lr;
    d->stats.grad_norm = s->grad_norm;
}

static fmd_status step_once(fmd_distiller *d)
{
    ff_step_stats s;
    fmd_status st = ff_step(d->tr, &s);
    if (st) return st;
    fill_stats(d, &s);
    return FMD_OK;
}

/* Training runs with subnormals flushed (util/fpmode.h); the caller's mode is
 * back when these return, and the progress callback runs in it. */
fmd_status fmd_distiller_step(fmd_distiller *d)
{
    FMD_CHECK_ARG(d, "fmd_distiller_step: distiller is NULL");
    fmd_fpmode_enter(d->be->threads);
    fmd_status st = step_once(d);
    fmd_fpmode_leave(d->be->threads);
    return st;
}

static fmd_status run_steps(fmd_distiller *d, int64_t steps, fmd_distill_progress_fn progress, void *user)
{
    double t0 = fmd_now();
    int64_t since = 0;
    for (int64_t i = 0; i < steps; i++) {
        fmd_status st = step_once(d);
        if (st) return st;
        since++;
        int64_t done = ff_steps_done(d->tr);
        int last = i + 1 == steps;
        if (d->ckpt_path && d->ckpt_every > 0 && done % d->ckpt_every == 0 && !last) {
            st = fmd_distiller_save(d, d->ckpt_path);
            if (st) return st;
        }
        if (done % d->progress_every == 0 || last) {
            double now = fmd_now();
            d->stats.steps_per_s = now > t0 ? (double)since / (now - t0) : 0.0;
            t0 = now;
            since = 0;
            if (progress) {
                fmd_fpmode_pause_state ps;
                fmd_fpmode_pause(&ps);
                int stop = progress(&d->stats, user);
                fmd_fpmode_resume(&ps);
                if (stop)
                    return fmd_seterr(FMD_ERR_CANCELLED,
                                      "fmd_distiller_run: cancelled by the progress callback at step %lld",
                                      (long long)done);
            }
        }
    }
    if (d->ckpt_path && steps > 0) return fmd_distiller_save(d, d->ckpt_path);
    return FMD_OK;
}

fmd_status fmd_distiller_run(fmd_distiller *d, int64_t steps, fmd_distill_progress_fn progress,
                             void *user)
{
    FMD_CHECK_ARG(d, "fmd_distiller_run: distiller is NULL");
    FMD_CHECK_ARG(steps >= 0, "fmd_distiller_run: steps must be >= 0 (got %lld)", (long long)steps);
    fmd_fpmode_enter(d->be->threads);
    fmd_status st = run_steps(d, steps, progress, user);
    fmd_fpmode_leave(d->be->threads);
    return st;
}

fmd_status fmd_distiller_stats(const fmd_distiller *d, fmd_distill_stats *out)
{
    FMD_CHECK_ARG(d && out, "fmd_distiller_stats: NULL argument");
    FMD_CHECK_ARG(out->struct_size >= offsetof(fmd_distill_stats, loss_pred),
                  "fmd_distiller_stats: out->struct_size %zu too small (set it to "
                  "sizeof(fmd_distill_stats))", out->struct_size);
    size_t n = out->struct_size < sizeof d->stats ? out->struct_size : sizeof d->stats;
    size_t keep = out->struct_size;
    memcpy(out, &d->stats, n);
    out->struct_size = keep;
    return FMD_OK;
}

int64_t fmd_distiller_steps(const fmd_distiller *d) { return d ? ff_steps_done(d->tr) : 0; }

fmd_status fmd_distiller_ema_student(fmd_distiller *d, fmd_student **out)
{
    FMD_CHECK_ARG(d && out, "fmd_distiller_ema_student: NULL argument");
    *out = d->ema;
    return FMD_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

fmd_status fmd_distiller_save(fmd_distiller *d, const char *path)
{
    FMD_CHECK_ARG(d, "fmd_distiller_save: distiller is NULL");
    FMD_CHECK_ARG(path, "fmd_distiller_save: path is NULL");
    fmdf_writer *w = NULL;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    nn_model *s = student_net(d->student), *e = student_net(d->ema);
    const ff_config *c = &d->cfg;
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "kind", "distiller");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", fmd_version());
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.step", ff_steps_done(d->tr));
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.batch", c->batch);
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.seed", (int64_t)c->seed);
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.pred", c->use_pred);
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.corr", c->use_corr);
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.aux", d->aux_kind);
    if (!st) st = model_io_write_config(w, "", nn_model_config(e));
    if (!st) st = model_io_write_tensors(w, "", d->be, e, NULL);
    if (!st) st = model_io_write_config(w, "student.", nn_model_config(s));
    if (!st) st = model_io_write_tensors(w, "student.", d->be, s, NULL);
    if (!st) st = model_io_write_tensors(w, "adam_m.", d->be, s, ff_adam_m(d->tr));
    if (!st) st = model_io_write_tensors(w, "adam_v.", d->be, s, ff_adam_v(d->tr));
    if (!st && d->aux) {
        st = model_io_write_config(w, "aux.", nn_model_config(d->aux));
        if (!st) st = model_io_write_tensors(w, "aux.", d->be, d->aux, NULL);
        if (!st) st = model_io_write_tensors(w, "aux_adam_m.", d->be, d->aux, ff_aux_adam_m(d->tr));
        if (!st) st = model_io_write_tensors(w, "aux_adam_v.", d->be, d->aux, ff_aux_adam_v(d->tr));
    }
    if (!st && d->ref_pool) {
        st = fmdf_writer_add_meta_i64(w, "distiller.ref_pool", d->ref_pool);
        if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.ref_steps", d->ref_steps);
    }
    if (!st && ff_kernel_bank(d->tr, NULL, NULL)) {
        float *bank;
        int32_t *lab;
        const int64_t M = ff_kernel_bank(d->tr, &bank, &lab), D = nn_model_dim(s);
        float *h = fmd_xcalloc((size_t)(M * D), sizeof(float), "kernel bank");
        if (!h) st = FMD_ERR_OOM;
        if (!st) {
            d->be->ops->download(d->be, h, bank, (size_t)(M * D) * sizeof(float));
            st = d->be->ops->sync(d->be);
        }
        const int64_t shape[2] = {M, D};
        if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.kernel_bank", M);
        if (!st) st = fmdf_writer_add_tensor(w, "kernel_bank", FMDF_F32, 2, shape, h);
        if (!st) st = fmdf_writer_add_tensor(w, "kernel_bank_labels", FMDF_I32, 1, shape, lab);
        fmd_free(h);
    }
    if (!st && d->ref) {
        st = model_io_write_config(w, "ref.", nn_model_config(d->ref));
        if (!st) st = model_io_write_tensors(w, "ref.", d->be, d->ref, NULL);
        if (!st) st = model_io_write_tensors(w, "ref_adam_m.", d->be, d->ref, ff_ref_adam_m(d->tr));
        if (!st) st = model_io_write_tensors(w, "ref_adam_v.", d->be, d->ref, ff_ref_adam_v(d->tr));
    }
    if (!st && d->data_pool) {
        st = fmdf_writer_add_meta_i64(w, "distiller.data_pool", d->data_pool);
        if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.data_pool_steps", d->data_pool_steps);
    }
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

static fmd_status same_config(const fmdf_reader *r, const char *prefix, const nn_model *m,
                              const char *path)
{
    nn_config fc;
    fmd_status st = model_io_read_config(r, prefix, &fc);
    if (st) return st;
    const nn_config *mc = nn_model_config(m);
    if (fc.arch != mc->arch || fc.student != mc->student || fc.num_classes != mc->num_classes ||
        fc.dim != mc->dim || fc.width != mc->width || fc.depth != mc->depth ||
        fc.hidden_size != mc->hidden_size || fc.dit_depth != mc->dit_depth)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "fmd_distiller_resume: '%s': the %s network's architecture differs "
                          "from this distiller's", path, prefix[0] ? prefix : "EMA student");
    if (fc.t_start != mc->t_start)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "fmd_distiller_resume: '%s': the %s network reads t_start = %d, this "
                          "distiller's %d (a network teacher's student made before libfmd read "
                          "the start time; distil it again)",
                          path, prefix[0] ? prefix : "EMA student", fc.t_start, mc->t_start);
    return FMD_OK;
}

static fmd_status check_meta(const fmdf_reader *r, const char *key, int64_t want, const char *path)
{
    int64_t v;
    fmd_status st = fmdf_meta_i64(r, key, &v);
    if (st) return st;
    if (v != want)
        return fmd_seterr(FMD_ERR_INVALID_ARG,
                          "fmd_distiller_resume: '%s' has %s = %lld, this distiller %lld", path,
                          key, (long long)v, (long long)want);
    return FMD_OK;
}

static fmd_status check_tensors(fmdf_reader *r, const char *prefix, const nn_model *m)
{
    char name[512];
    for (int i = 0; i < nn_model_num_views(m); i++) {
        const nn_param *p = nn_model_view(m, i);
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        const fmdf_tensor_info *ti = fmdf_tensor_find(r, name);
        if (!ti)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd_distiller_resume: tensor '%s' missing", name);
        if (ti->dtype != FMDF_F32 || ti->numel != p->numel)
            return fmd_seterr(FMD_ERR_FORMAT,
                              "fmd_distiller_resume: tensor '%s' has %lld %s numbers, expected %lld f32",
                              name, (long long)ti->numel, fmdf_dtype_name(ti->dtype),
                              (long long)p->numel);
    }
    return FMD_OK;
}

/* The kernel field's bank tensors: present, of M x D f32 and M i32. */
static fmd_status check_bank(fmdf_reader *r, int64_t M, int64_t D)
{
    const fmdf_tensor_info *b = fmdf_tensor_find(r, "kernel_bank");
    const fmdf_tensor_info *l = fmdf_tensor_find(r, "kernel_bank_labels");
    if (!b || !l)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd_distiller_resume: tensor '%s' missing",
                          b ? "kernel_bank_labels" : "kernel_bank");
    if (b->dtype != FMDF_F32 || b->numel != M * D || l->dtype != FMDF_I32 || l->numel != M)
        return fmd_seterr(FMD_ERR_FORMAT,
                          "fmd_distiller_resume: tensors 'kernel_bank' / 'kernel_bank_labels' hold %lld %s / %lld %s "
                          "numbers, expected %lld f32 / %lld i32", (long long)b->numel,
                          fmdf_dtype_name(b->dtype), (long long)l->numel, fmdf_dtype_name(l->dtype),
                          (long long)(M * D), (long long)M);
    return FMD_OK;
}

/* The kernel field's bank from a checkpoint (checked by check_bank). */
static fmd_status read_bank(fmd_distiller *d, fmdf_reader *r)
{
    float *bank;
    int32_t *lab;
    const int64_t M = ff_kernel_bank(d->tr, &bank, &lab), D = nn_model_dim(student_net(d->student));
    const int64_t shape[2] = {M, D};
    float *h = fmd_xcalloc((size_t)(M * D), sizeof(float), "kernel bank");
    if (!h) return FMD_ERR_OOM;
    fmd_status st = fmdf_read_tensor(r, "kernel_bank", FMDF_F32, 2, shape, h,
                                     (size_t)(M * D) * sizeof(float));
    if (!st) st = fmdf_read_tensor(r, "kernel_bank_labels", FMDF_I32, 1, shape, lab,
                                   (size_t)M * sizeof(int32_t));
    if (!st) {
        d->be->ops->upload(d->be, bank, h, (size_t)(M * D) * sizeof(float));
        st = ff_kernel_bank_labels_changed(d->tr);
    }
    fmd_free(h);
    return st;
}

fmd_status fmd_distiller_resume(fmd_distiller *d, const char *path)
{
    FMD_CHECK_ARG(d, "fmd_distiller_resume: distiller is NULL");
    FMD_CHECK_ARG(path, "fmd_distiller_resume: path is NULL");
    fmdf_reader *r = NULL;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    nn_model *s = student_net(d->student), *e = student_net(d->ema);
    const ff_config *c = &d->cfg;
    const char *kind = fmdf_meta_get(r, "kind");
    int64_t step = 0;
    if (!kind || strcmp(kind, "distiller") != 0)
        st = fmd_seterr(FMD_ERR_FORMAT, "fmd_distiller_resume: '%s' is not a distiller checkpoint",
                        path);
    if (!st) st = fmdf_meta_i64(r, "distiller.step", &step);
    if (!st && step < 0)
        st = fmd_seterr(FMD_ERR_FORMAT, "fmd_distiller_resume: '%s': negative step", path);
    if (!st) st = check_meta(r, "distiller.batch", c->batch, path);
    if (!st) st = check_meta(r, "distiller.seed", (int64_t)c->seed, path);
    if (!st) st = check_meta(r, "distiller.pred", c->use_pred, path);
    if (!st) st = check_meta(r, "distiller.corr", c->use_corr, path);
    if (!st) st = check_meta(r, "distiller.aux", d->aux_kind, path);
    /* the kernel field's bank: both sides must agree on it and its size */
    const int64_t bank_rows = ff_kernel_bank(d->tr, NULL, NULL);
    int has_bank = fmdf_meta_get(r, "distiller.kernel_bank") != NULL;
    if (!st && has_bank != (bank_rows > 0))
        st = fmd_seterr(FMD_ERR_INVALID_ARG, "fmd_distiller_resume: '%s' was saved %s corr_field=kernel, "
                        "this distiller runs %s it", path, has_bank ? "with" : "without",
                        bank_rows ? "with" : "without");
    if (!st && bank_rows) st = check_meta(r, "distiller.kernel_bank", bank_rows, path);
    if (!st && bank_rows) st = check_bank(r, bank_rows, nn_model_dim(s));
    if (!st) st = same_config(r, "", e, path);
    if (!st) st = same_config(r, "student.", s, path);
    if (!st && d->aux) st = same_config(r, "aux.", d->aux, path);
    static const char *const sp[] = {"", "student.", "adam_m.", "adam_v."};
    for (int i = 0; i < 4 && !st; i++) st = check_tensors(r, sp[i], s);
    static const char *const ap[] = {"aux.", "aux_adam_m.", "aux_adam_v."};
    for (int i = 0; i < 3 && !st && d->aux; i++) st = check_tensors(r, ap[i], d->aux);
    /* the reference network (corr_ref = samples): both sides must agree on
     * having one, and on its pool (regenerated from the seed, not stored) */
    int has_ref = fmdf_meta_get(r, "distiller.ref_pool") != NULL;
    if (!st && has_ref != (d->ref_pool != 0))
        st = fmd_seterr(FMD_ERR_INVALID_ARG, "fmd_distiller_resume: '%s' was saved %s corr_ref=samples, "
                        "this distiller runs %s it", path, has_ref ? "with" : "without",
                        d->ref_pool ? "with" : "without");
    if (!st && d->ref_pool) st = check_meta(r, "distiller.ref_pool", d->ref_pool, path);
    if (!st && d->ref_pool) st = check_meta(r, "distiller.ref_steps", d->ref_steps, path);
    if (!st && d->ref) st = same_config(r, "ref.", d->ref, path);
    static const char *const rp[] = {"ref.", "ref_adam_m.", "ref_adam_v."};
    for (int i = 0; i < 3 && !st && d->ref; i++) st = check_tensors(r, rp[i], d->ref);
    /* the teacher pool of data_pool: regenerated from the seed, so the
     * checkpoint's and this distiller's settings must match */
    int has_pool = fmdf_meta_get(r, "distiller.data_pool") != NULL;
    if (!st && has_pool != (d->data_pool > 0))
        st = fmd_seterr(FMD_ERR_INVALID_ARG, "fmd_distiller_resume: '%s' was saved %s data_pool, "
                        "this distiller runs %s it", path, has_pool ? "with" : "without",
                        d->data_pool ? "with" : "without");
    if (!st && d->data_pool) st = check_meta(r, "distiller.data_pool", d->data_pool, path);
    if (!st && d->data_pool)
        st = check_meta(r, "distiller.data_pool_steps", d->data_pool_steps, path);
    /* everything checked: read */
    if (!st) st = model_io_read_tensors(r, "", d->be, e, NULL);
    if (!st) st = model_io_read_tensors(r, "student.", d->be, s, NULL);
    if (!st) st = model_io_read_tensors(r, "adam_m.", d->be, s, ff_adam_m(d->tr));
    if (!st) st = model_io_read_tensors(r, "adam_v.", d->be, s, ff_adam_v(d->tr));
    if (!st && d->aux) {
        st = model_io_read_tensors(r, "aux.", d->be, d->aux, NULL);
        if (!st) st = model_io_read_tensors(r, "aux_adam_m.", d->be, d->aux, ff_aux_adam_m(d->tr));
        if (!st) st = model_io_read_tensors(r, "aux_adam_v.", d->be, d->aux, ff_aux_adam_v(d->tr));
    }
    if (!st && d->ref) {
        st = model_io_read_tensors(r, "ref.", d->be, d->ref, NULL);
        if (!st) st = model_io_read_tensors(r, "ref_adam_m.", d->be, d->ref, ff_ref_adam_m(d->tr));
        if (!st) st = model_io_read_tensors(r, "ref_adam_v.", d->be, d->ref, ff_ref_adam_v(d->tr));
    }
    if (!st && bank_rows) st = read_bank(d, r);
    fmdf_close(r);
    if (st) return st;
    ff_set_steps_done(d->tr, step);
    memset(&d->stats, 0, sizeof d->stats);
    d->stats.struct_size = sizeof d->stats;
    d->stats.step = step;
    return d->be->ops->sync(d->be);
}
