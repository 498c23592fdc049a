/* distiller.c - fmd_distiller: its option table, the auxiliary network, the
 * run loop (planned length, progress, cancellation, periodic checkpoints)
 * and checkpoints (save / resume) around the FreeFlow trainer
 * (lib/algo/freeflow.h).
 *
 * Checkpoint layout (.fmd; docs/distiller.md, "Checkpoints"): metadata
 * "kind" = "distiller", "distiller.format" = 2, "distiller.step",
 * "distiller.teacher" (teacher_identity), "distiller.aux_kind", and every
 * option of the table below that is not OPT_NO_SAVE as
 * "distiller.option.KEY"; tensors: the EMA student under prefix "" (so
 * fmd_student_load reads a checkpoint as its EMA student), the raw student
 * under "student.", its AdamW moments under "adam_m." / "adam_v.", and the
 * auxiliary network under "aux." with moments "aux_adam_m." / "aux_adam_v.".
 * Each network's config is stored with its prefix.  Files of format 1
 * (libfmd 0.1: no stored options) load as students but do not resume. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "algo/freeflow.h"
#include "api/distiller_internal.h"
#include "api/option_tables.h"
#include "api/student_internal.h"
#include "api/teacher_internal.h"
#include "comm/comm.h"
#include "io/model_io.h"
#include "util/fpmode.h"
#include "util/optable.h"
#include "util/util.h"

enum { AUX_AUTO = 0, AUX_RESIDUAL = 1, AUX_COPY = 2 };
enum { DIST_FORMAT = 2 };
/* The planned length when the first call is fmd_distiller_step (a run
 * tells its own). */
enum { DEFAULT_PLANNED_STEPS = 10000 };

/* Everything fmd_distiller_create takes (the option table fills it). */
typedef struct dist_config {
    ff_config ff;
    int aux;                        /* AUX_*                                   */
    int64_t aux_width, aux_depth;   /* residual g: 0 = the student's           */
    double lr_min;                  /* final lr as a fraction of lr            */
    int64_t data_pool, data_pool_steps;
    const char *checkpoint;
    int64_t checkpoint_every, progress_every;
} dist_config;

#define OPT_CFG dist_config
static const opt_spec k_spec[] = {
    OPT_INT("batch", ff.batch, 2, 1 << 20, 512, 0, NULL, "rows per step (prediction + correction)"),
    OPT_INT("seed", ff.seed, 0, 9.2e18, 0, 0, NULL, "Philox seed of every draw"),
    OPT_INT_CTX("steps", ff.opt.steps, 0, 1e15, "the first run's length", OPT_RESUMABLE, NULL,
                "planned length of the run: the learning rate decays over it (0: the first run's length; 10000 when the first call is fmd_distiller_step)"),
    OPT_CHOICE("target", ff.target, "teacher-step|jvp|fd", 0, 0, "pred=1",
               "form of the prediction target: a Heun step of the teacher, the exact JVP, or a finite difference"),
    OPT_NUM("step_h", ff.step_h, 0, 1, 0.1, OPT_LO_OPEN, "target=teacher-step", "h of the teacher-step target"),
    OPT_NUM("fd_eps", ff.fd_eps, 1e-6, 0.1, 1e-3, 0, "target=fd", "half-width in delta of the finite difference"),
    OPT_NUM("delta_one", ff.delta_one, 0, 1, 0.25, 0, "pred=1", "share of prediction rows with delta = 1 (the others: delta ~ U(0, 1))"),
    OPT_INT("pred", ff.pred, 0, 1, 1, 0, NULL, "the prediction objective"),
    OPT_INT("corr", ff.corr, 0, 1, 1, 0, NULL, "the correction objective"),
    OPT_NUM("corr_frac", ff.corr_frac, 0.001, 0.999, 0.25, 0, "pred=1,corr=1", "share of the batch for the correction"),
    OPT_NUM("weight_k", ff.weight_k, 0, 4, 0, 0, "pred=1", "adaptive weight 1/(|Delta|^2/d + weight_eps)^k of the prediction rows (0: plain MSE)"),
    OPT_NUM("weight_eps", ff.weight_eps, 1e-12, 1e6, 1e-3, 0, "weight_k>0", "eps of the adaptive weight"),
    OPT_NUM("alpha", ff.alpha, 0, 1e4, 0.3, 0, "corr=1", "gradient balance: the correction's gradient is alpha times the prediction's"),
    OPT_NUM("lambda_eps", ff.lambda_eps, 1e-12, 1e6, 1e-3, 0, "corr=1", "eps in lambda's denominator"),
    OPT_NUM("r_loc", ff.r_loc, -10, 10, 0.8, 0, "corr=1", "logit-normal r of the correction: location"),
    OPT_NUM("r_scale", ff.r_scale, 1e-3, 10, 1, 0, "corr=1", "logit-normal r of the correction: scale"),
    OPT_NUM_CTX("guidance", ff.pred_g.scale, -1e3, 1e3, "the teacher's", 0, NULL, "CFG scale of the prediction's teacher calls (1: none)"),
    OPT_NUM_CTX("guidance_lo", ff.pred_g.t_lo, 0, 1, "the teacher's", 0, "guidance!=1", "guidance interval in t: low end"),
    OPT_NUM_CTX("guidance_hi", ff.pred_g.t_hi, 0, 1, "the teacher's", 0, "guidance!=1", "guidance interval in t: high end"),
    OPT_NUM_CTX("corr_guidance", ff.corr_g.scale, -1e3, 1e3, "guidance", 0, "corr=1", "CFG scale of the correction's teacher calls"),
    OPT_NUM_CTX("corr_guidance_lo", ff.corr_g.t_lo, 0, 1, "min(guidance_lo, corr_guidance_hi)", 0, "corr=1,corr_guidance!=1", "correction guidance interval: low end"),
    OPT_NUM_CTX("corr_guidance_hi", ff.corr_g.t_hi, 0, 1, "min(guidance_hi, 0.7)", 0, "corr=1,corr_guidance!=1", "correction guidance interval: high end"),
    OPT_CHOICE("aux", aux, "auto|residual|copy", 0, 0, "corr=1",
               "the auxiliary network g: a copy of a network teacher, or teacher + zero-initialised residual MLP; auto picks copy for network teachers"),
    OPT_INT_CTX("aux_width", aux_width, 0, 65536, "the student's (256 for DiT students)", 0, "corr=1,aux!=copy", "width of the residual MLP"),
    OPT_INT_CTX("aux_depth", aux_depth, 0, 64, "the student's (4 for DiT students)", 0, "corr=1,aux!=copy", "depth of the residual MLP"),
    OPT_NUM("aux_lr", ff.aux_lr, 0, 10, 1e-3, OPT_LO_OPEN, "corr=1", "AdamW learning rate of g (constant)"),
    OPT_INT("aux_updates", ff.aux_updates, 1, 1000, 1, 0, "corr=1", "g updates per student step"),
    OPT_NUM("lr", ff.opt.lr, 0, 10, 1e-3, OPT_LO_OPEN, NULL, "AdamW peak learning rate of the student"),
    OPT_CHOICE("lr_decay", ff.opt.decay, "cosine|linear|none", 0, 0, NULL, "decay of the learning rate over the planned steps"),
    OPT_NUM("lr_min", lr_min, 0, 1, 0.1, 0, "lr_decay!=none", "final learning rate as a fraction of lr"),
    OPT_INT("lr_warmup", ff.opt.warmup, 0, 1e15, 0, 0, NULL, "linear learning-rate warm-up steps"),
    OPT_NUM("beta1", ff.opt.beta1, 0, 0.999999, 0.9, 0, NULL, "AdamW beta1"),
    OPT_NUM("beta2", ff.opt.beta2, 0, 0.999999999, 0.999, 0, NULL, "AdamW beta2"),
    OPT_NUM("adam_eps", ff.opt.eps, 1e-30, 1, 1e-8, 0, NULL, "AdamW epsilon"),
    OPT_NUM("weight_decay", ff.opt.weight_decay, 0, 10, 0, 0, NULL, "AdamW decoupled weight decay of the student"),
    OPT_NUM("grad_clip", ff.opt.grad_clip, 0, 1e12, 1, 0, NULL, "global gradient-norm clip of the student and of g (0: off)"),
    OPT_NUM("ema", ff.opt.ema, 0, 0.999999999, 0.999, 0, NULL, "EMA decay of the student's weights (with a (1+k)/(10+k) warm-up)"),
    OPT_INT("data_based", ff.data_based, 0, 1, 0, 0, "pred=1", "1: the data-based baseline (needs fmd_distiller_set_data or data_pool)"),
    OPT_NUM("data_frac", ff.data_frac, 0, 1, 1, 0, "data_based=1", "share of the prediction rows that start from data-noised states"),
    OPT_INT_CTX("data_pool", data_pool, 0, 2147483647.0, "0 (none)", 0, "data_based=1", "data drawn from the teacher's own ODE at create: this many samples"),
    OPT_INT("data_pool_steps", data_pool_steps, 1, 100000, 32, 0, "data_pool>0", "Heun steps of the data pool's ODE solves"),
    OPT_STRING("checkpoint", checkpoint, OPT_NO_SAVE | OPT_RESUMABLE, NULL, "path fmd_distiller_run saves the state to (atomically)"),
    OPT_INT_CTX("checkpoint_every", checkpoint_every, 0, 1e15, "0 (at the end of a run only)", OPT_NO_SAVE | OPT_RESUMABLE, "checkpoint!=", "save every N steps during a run"),
    OPT_INT("comm_check_every", ff.check_every, 0, 1e15, 1000, OPT_NO_SAVE | OPT_RESUMABLE, NULL,
            "with a communicator of several ranks (fmd_distiller_set_comm): compare a checksum of the weights across the ranks every N steps (0: never)"),
    OPT_INT("progress_every", progress_every, 1, 1e15, 100, OPT_NO_SAVE | OPT_RESUMABLE, NULL, "steps between progress callbacks"),
};
#undef OPT_CFG
enum { NOPTS = (int)(sizeof k_spec / sizeof k_spec[0]) };
static fmd_status record_made(fmd_distiller *d);

#define REMOVED(why) "removed (" why "; docs/research.md has the measurements)"
static const opt_gone k_gone[] = {
    {"decay_steps", "renamed 'steps' (the planned length; the learning rate decays over it by default)"},
    {"warmup", "removed (a ramp of the correction's weight); the learning-rate warm-up is 'lr_warmup'"},
    {"step_h_end", REMOVED("a curriculum in h, which no code applied")},
    {"delta_dist", REMOVED("delta is U(0, 1) with a share delta_one at 1; the other laws did not help")},
    {"delta_loc", REMOVED("the logit-normal delta did not help")},
    {"delta_scale", REMOVED("the logit-normal delta did not help; the student's delta_scale is a student option")},
    {"delta_min", REMOVED("a floor on delta did not help")},
    {"alpha_end", REMOVED("an alpha schedule did not help")},
    {"aux_decay", REMOVED("decaying g's learning rate did not help")},
    {"corr_ref", REMOVED("a reference network fitted to teacher samples did not help")},
    {"ref_pool", REMOVED("a reference network fitted to teacher samples did not help")},
    {"ref_steps", REMOVED("a reference network fitted to teacher samples did not help")},
    {"corr_field", REMOVED("the kernel estimate of v_N found no signal to correct")},
    {"kernel_bank", REMOVED("the kernel estimate of v_N found no signal to correct")},
    {NULL, NULL}};
const opt_table opt_table_distiller = OPT_TABLE("distiller", "fmd_distiller_create", k_spec, k_gone);

static int key_index(const char *key) { return opt_find(&opt_table_distiller, key); }

void distiller_default_ff_config(ff_config *c)
{
    dist_config dc;
    memset(&dc, 0, sizeof dc);
    opt_defaults(&opt_table_distiller, &dc);
    dc.ff.pred_g = (fmd_guidance){1.0f, 0.0f, 1.0f};
    dc.ff.corr_g = (fmd_guidance){1.0f, 0.0f, 0.7f};
    dc.ff.opt.lr_end = dc.lr_min * dc.ff.opt.lr;
    *c = dc.ff;
}

struct fmd_distiller {
    fmd_backend *be;
    fmd_teacher *teacher;
    fmd_student *student;
    fmd_student *ema;          /* owned; its network's parameters are the EMA  */
    nn_model *aux;             /* owned, NULL without the correction           */
    int aux_kind;              /* resolved: AUX_RESIDUAL or AUX_COPY           */
    dist_config cfg;
    unsigned char given[NOPTS];   /* the keys the caller set                   */
    char *ckpt_path;           /* owned copy of cfg.checkpoint                  */
    char teacher_id[256];
    ff_trainer *tr;
    fmd_distill_stats stats;
};

/* ---- options ---------------------------------------------------------------------- */

/* cfg from the caller's options and the teacher's guidance; given[] receives
 * the keys the caller set. */
static fmd_status parse_options(const fmd_options *o, const fmd_teacher *T, dist_config *c,
                                unsigned char *given)
{
    const opt_table *tab = &opt_table_distiller;
    const char *fn = tab->fn;
    memset(c, 0, sizeof *c);   /* the fields no option sets (comm) start at 0 */
    opt_defaults(tab, c);
    /* context defaults: the teacher's guidance; the correction's follows it
     * with its interval cut at t <= 0.7 (docs/math.md, "Guidance") */
    c->ff.pred_g = *teacher_guidance(T);
    fmd_status st = opt_apply(tab, o, c, given);
    if (st) return st;
    fmd_guidance *pg = &c->ff.pred_g, *cg = &c->ff.corr_g;
    if (!given[key_index("corr_guidance")]) cg->scale = pg->scale;
    if (!given[key_index("corr_guidance_hi")]) cg->t_hi = pg->t_hi < 0.7f ? pg->t_hi : 0.7f;
    if (!given[key_index("corr_guidance_lo")]) cg->t_lo = pg->t_lo < cg->t_hi ? pg->t_lo : cg->t_hi;
    if ((st = opt_check_applies(tab, c, given))) return st;
    if (pg->t_lo > pg->t_hi)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'guidance_lo' (%g) > 'guidance_hi' (%g)",
                          fn, pg->t_lo, pg->t_hi);
    if (cg->t_lo > cg->t_hi)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'corr_guidance_lo' (%g) > "
                          "'corr_guidance_hi' (%g)", fn, cg->t_lo, cg->t_hi);
    if (teacher_num_classes(T) == 0 && (pg->scale != 1.0f || (c->ff.corr && cg->scale != 1.0f)))
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' = %g: the teacher has no classes to "
                          "guide", fn, pg->scale != 1.0f ? "guidance" : "corr_guidance",
                          pg->scale != 1.0f ? pg->scale : cg->scale);
    if (!c->ff.pred && !c->ff.corr)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: options 'pred' and 'corr' are both 0", fn);
    c->ff.opt.lr_end = c->lr_min * c->ff.opt.lr;
    return FMD_OK;
}

/* ---- the auxiliary network and the trainer -------------------------------------------- */

static fmd_status dist_velocity(void *ctx, float *v, const float *x, const float *t,
                                const int32_t *labels, int64_t b, const fmd_guidance *g)
{
    fmd_distiller *d = ctx;
    return teacher_velocity_dev(d->teacher, d->be, v, x, t, labels, b, g);
}

/* The auxiliary network g (teacher form): a copy of a network teacher, or an
 * MLP residual with a zero output layer (g = teacher + 0 at the start). */
static fmd_status make_aux(fmd_distiller *d, const dist_config *c, nn_model **aux)
{
    const char *fn = "fmd_distiller_create";
    const nn_model *tnet = teacher_network(d->teacher);
    const nn_config *scfg = nn_model_config(student_net(d->student));
    nn_config ac;
    fmd_status st;
    if (d->aux_kind == AUX_COPY) {
        ac = *nn_model_config(tnet);
        ac.student = ac.t_start = 0;
        st = nn_model_create(d->be, &ac, c->ff.seed + 1, aux);
        if (!st && nn_model_copy_matching(*aux, tnet) <= 0)
            st = fmd_seterr(FMD_ERR_INTERNAL, "%s: could not copy the teacher into g", fn);
        return st;
    }
    ac = *scfg;
    ac.student = ac.t_start = 0;
    if (ac.arch != NN_ARCH_MLP) {
        memset(&ac, 0, sizeof ac);
        ac.arch = NN_ARCH_MLP;
        ac.dim = (int)teacher_dim(d->teacher);
        ac.num_classes = teacher_num_classes(d->teacher);
        ac.width = 256;
        ac.depth = 4;
    }
    if (c->aux_width) ac.width = (int)c->aux_width;
    if (c->aux_depth) ac.depth = (int)c->aux_depth;
    st = nn_model_create(d->be, &ac, c->ff.seed + 1, aux);
    if (st) return st;
    const nn_param *w = nn_model_find(*aux, "out_proj.weight");
    const nn_param *bb = nn_model_find(*aux, "out_proj.bias");
    if (!w || !bb) return fmd_seterr(FMD_ERR_INTERNAL, "%s: residual g has no out_proj", fn);
    float *pp = nn_model_params(*aux);
    d->be->ops->memset0(d->be, pp + w->offset, (size_t)w->numel * sizeof(float));
    d->be->ops->memset0(d->be, pp + bb->offset, (size_t)bb->numel * sizeof(float));
    return FMD_OK;
}

/* g and the trainer for config c into *aux, *tr (nothing of d changes). */
static fmd_status build_trainer(fmd_distiller *d, const dist_config *c, nn_model **aux,
                                ff_trainer **tr)
{
    *aux = NULL;
    *tr = NULL;
    fmd_status st = c->ff.corr ? make_aux(d, c, aux) : FMD_OK;
    if (!st)
        st = ff_create(d->be, &c->ff, student_net(d->student), student_net(d->ema), *aux,
                       d->aux_kind == AUX_RESIDUAL, dist_velocity, d, tr);
    if (!st && c->data_pool) st = ff_make_data_pool(*tr, c->data_pool, c->data_pool_steps);
    if (st) {
        ff_destroy(*tr);
        nn_model_destroy(*aux);
        *aux = NULL;
        *tr = NULL;
    }
    return st;
}

/* ---- lifetime ------------------------------------------------------------------------- */

void fmd_distiller_destroy(fmd_distiller *d)
{
    if (!d) return;
    ff_destroy(d->tr);
    fmd_student_destroy(d->ema);
    nn_model_destroy(d->aux);
    fmd_free(d->ckpt_path);
    fmd_free(d);
}

/* Keep a copy of the checkpoint path (the caller's options may go away). */
static fmd_status own_checkpoint_path(fmd_distiller *d, dist_config *c)
{
    if (!c->checkpoint || (d->ckpt_path && strcmp(d->ckpt_path, c->checkpoint) == 0)) {
        c->checkpoint = d->ckpt_path;
        return FMD_OK;
    }
    char *p = fmd_strdup(c->checkpoint);
    if (!p) return fmd_seterr(FMD_ERR_OOM, "fmd_distiller: out of memory");
    fmd_free(d->ckpt_path);
    d->ckpt_path = p;
    c->checkpoint = p;
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
    dist_config c;
    unsigned char given[NOPTS] = {0};
    fmd_status st = parse_options(opts, teacher, &c, given);
    if (st) return st;
    const int network = teacher_network(teacher) != NULL;
    const int aux_kind = c.aux == AUX_AUTO ? (network ? AUX_COPY : AUX_RESIDUAL) : c.aux;
    if (c.ff.corr && aux_kind == AUX_COPY && !network)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'aux' = 'copy' needs a network teacher", fn);
    if (c.ff.corr && aux_kind == AUX_COPY &&
        (given[key_index("aux_width")] || given[key_index("aux_depth")]))
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: options 'aux_width'/'aux_depth' apply to the "
                          "residual g only (this teacher's g is a copy of it)", fn);

    fmd_distiller *d = fmd_xcalloc(1, sizeof *d, "fmd_distiller");
    if (!d) return FMD_ERR_OOM;
    d->be = backend;
    d->teacher = teacher;
    d->student = student;
    d->aux_kind = aux_kind;
    memcpy(d->given, given, sizeof given);
    st = own_checkpoint_path(d, &c);
    d->cfg = c;
    if (!st) st = teacher_identity(teacher, d->teacher_id, sizeof d->teacher_id);
    /* EMA student: same architecture (its parameters become the EMA) */
    nn_model *enet = NULL;
    if (!st) st = nn_model_create(backend, scfg, 0, &enet);
    if (!st) st = student_wrap(backend, enet, &d->ema);
    if (!st) st = build_trainer(d, &d->cfg, &d->aux, &d->tr);
    if (!st) st = record_made(d);
    /* ff_create sized the student's arena for exactly one batch */
    student_note_reserved(student, st ? 0 : c.ff.batch);
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

/* Rows per rank of batch b over comm. */
static int64_t local_batch(int64_t b, const fmd_comm *comm) { return b / fmd_comm_size(comm); }

fmd_status fmd_distiller_set_comm(fmd_distiller *d, fmd_comm *comm)
{
    const char *fn = "fmd_distiller_set_comm";
    FMD_CHECK_ARG(d, "%s: distiller is NULL", fn);
    FMD_CHECK_ARG(ff_steps_done(d->tr) == 0, "%s: call it before the first step and before "
                  "fmd_distiller_resume (this distiller is at step %lld)", fn,
                  (long long)ff_steps_done(d->tr));
    const int n = fmd_comm_size(comm);
    FMD_CHECK_ARG(d->cfg.ff.batch % n == 0, "%s: option batch = %lld is not divisible by the %d "
                  "ranks of the communicator (each rank takes batch/ranks rows)", fn,
                  (long long)d->cfg.ff.batch, n);
    if (d->cfg.ff.comm == comm) return FMD_OK;
    dist_config nc = d->cfg;
    nc.ff.comm = comm;
    nn_model *aux = NULL;
    ff_trainer *tr = NULL;
    fmd_status st = build_trainer(d, &nc, &aux, &tr);
    if (st) return st;
    if (!nc.data_pool) ff_take_data(tr, d->tr);   /* data set by the caller */
    ff_destroy(d->tr);
    nn_model_destroy(d->aux);
    d->tr = tr;
    d->aux = aux;
    d->cfg = nc;
    student_note_reserved(d->student, local_batch(nc.ff.batch, comm));
    if (fmd_comm_rank(comm) == 0 && n > 1)
        fmd_log(FMD_LOG_INFO, "fmd_distiller: data-parallel over %d ranks (%s), %lld rows each",
                n, fmd_comm_describe(comm), (long long)local_batch(nc.ff.batch, comm));
    return FMD_OK;
}

fmd_status fmd_distiller_set_data(fmd_distiller *d, const float *x0, const int32_t *labels,
                                  int64_t n)
{
    FMD_CHECK_ARG(d, "fmd_distiller_set_data: distiller is NULL");
    return ff_set_data(d->tr, x0, labels, n);
}

/* ---- steps ------------------------------------------------------------------------------ */

/* Fix the planned length the first time it is needed (option steps unset). */
static void plan(fmd_distiller *d, int64_t steps, const char *why)
{
    if (d->cfg.ff.opt.steps > 0) return;
    d->cfg.ff.opt.steps = steps;
    ff_set_planned_steps(d->tr, steps);
    fmd_log(FMD_LOG_INFO, "fmd_distiller: planned length %lld steps (%s); the learning rate "
            "decays over it", (long long)steps, why);
}

static fmd_status step_once(fmd_distiller *d)
{
    ff_step_stats s;
    fmd_status st = ff_step(d->tr, &s);
    if (st) return st;
    d->stats.step = ff_steps_done(d->tr);
    d->stats.loss_pred = s.loss_pred;
    d->stats.loss_corr = s.loss_corr;
    d->stats.loss_aux = s.loss_aux;
    d->stats.delta_norm = s.delta_norm;
    d->stats.vdiff_norm = s.vdiff_norm;
    d->stats.lambda = s.lambda;
    d->stats.lr = s.lr;
    d->stats.grad_norm = s.grad_norm;
    return FMD_OK;
}

/* Training runs with subnormals flushed (util/fpmode.h); the caller's mode is
 * back when these return, and the progress callback runs in it. */
fmd_status fmd_distiller_step(fmd_distiller *d)
{
    FMD_CHECK_ARG(d, "fmd_distiller_step: distiller is NULL");
    plan(d, DEFAULT_PLANNED_STEPS, "fmd_distiller_step without option 'steps'");
    fmd_fpmode_enter(d->be->threads);
    fmd_status st = step_once(d);
    fmd_fpmode_leave(d->be->threads);
    return st;
}

static fmd_status run_steps(fmd_distiller *d, int64_t steps, fmd_distill_progress_fn progress,
                            void *user)
{
    const dist_config *c = &d->cfg;
    double t0 = fmd_now();
    int64_t since = 0;
    for (int64_t i = 0; i < steps; i++) {
        fmd_status st = fmd_cancel_poll("fmd_distiller_run");
        if (st) return st;
        fmd_cancel_hold(1);
        st = step_once(d);
        fmd_cancel_hold(0);
        if (st) return st;
        since++;
        int64_t done = ff_steps_done(d->tr);
        int last = i + 1 == steps;
        if (c->checkpoint && c->checkpoint_every > 0 && done % c->checkpoint_every == 0 && !last &&
            (st = fmd_distiller_save(d, c->checkpoint)))
            return st;
        if (done % c->progress_every == 0 || last) {
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
                    return fmd_seterr(FMD_ERR_CANCELLED, "fmd_distiller_run: cancelled by the "
                                      "progress callback at step %lld", (long long)done);
            }
        }
    }
    if (c->checkpoint && steps > 0) return fmd_distiller_save(d, c->checkpoint);
    return FMD_OK;
}

fmd_status fmd_distiller_run(fmd_distiller *d, int64_t steps, fmd_distill_progress_fn progress,
                             void *user)
{
    FMD_CHECK_ARG(d, "fmd_distiller_run: distiller is NULL");
    FMD_CHECK_ARG(steps >= 0, "fmd_distiller_run: steps must be >= 0 (got %lld)", (long long)steps);
    if (steps > 0) plan(d, ff_steps_done(d->tr) + steps, "the first fmd_distiller_run");
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
int64_t fmd_distiller_planned_steps(const fmd_distiller *d) { return d ? d->cfg.ff.opt.steps : 0; }
const ff_config *distiller_ff_config(const fmd_distiller *d) { return ff_get_config(d->tr); }
ff_trainer *distiller_trainer(fmd_distiller *d) { return d->tr; }
nn_model *distiller_aux(fmd_distiller *d) { return d->aux; }

/* What the EMA student records of how it was made (fmd_student_made): the
 * teacher's identity, the steps so far and every stored option (guidance,
 * guidance_lo, guidance_hi, target, ...), so that a student file tells how
 * to evaluate it. */
static fmd_status record_made(fmd_distiller *d)
{
    char val[128];
    fmd_status st = student_set_made(d->ema, "teacher", d->teacher_id);
    snprintf(val, sizeof val, "%lld", (long long)ff_steps_done(d->tr));
    if (!st) st = student_set_made(d->ema, "distill_steps", val);
    for (int i = 0; i < NOPTS && !st; i++) {
        if (k_spec[i].flags & OPT_NO_SAVE) continue;
        opt_value_text(&k_spec[i], &d->cfg, val, sizeof val);
        st = student_set_made(d->ema, k_spec[i].key, val);
    }
    return st;
}

fmd_status fmd_distiller_ema_student(fmd_distiller *d, fmd_student **out)
{
    FMD_CHECK_ARG(d && out, "fmd_distiller_ema_student: NULL argument");
    fmd_status st = record_made(d);
    if (st) return st;
    *out = d->ema;
    return FMD_OK;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

static void option_meta_key(char *buf, size_t len, const char *key)
{
    snprintf(buf, len, "distiller.option.%s", key);
}

static fmd_status save_file(fmd_distiller *d, const char *path);

/* Rank 0 writes; every rank returns its status (and waits for the file). */
fmd_status fmd_distiller_save(fmd_distiller *d, const char *path)
{
    FMD_CHECK_ARG(d, "fmd_distiller_save: distiller is NULL");
    FMD_CHECK_ARG(path, "fmd_distiller_save: path is NULL");
    fmd_comm *comm = d->cfg.ff.comm;
    fmd_status st = fmd_comm_rank(comm) == 0 ? save_file(d, path) : FMD_OK;
    if (!comm_parallel(comm)) return st;
    int32_t code = (int32_t)st;
    fmd_status cst = comm_bcast(comm, &code, sizeof code);
    if (cst) return cst;
    if (fmd_comm_rank(comm) != 0 && code != FMD_OK)
        return fmd_seterr((fmd_status)code, "fmd_distiller_save: rank 0 could not write '%s' (%s)",
                          path, fmd_status_string((fmd_status)code));
    return st;
}

static fmd_status save_file(fmd_distiller *d, const char *path)
{
    fmdf_writer *w = NULL;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    nn_model *s = student_net(d->student), *e = student_net(d->ema);
    st = fmdf_writer_add_meta(w, "format", "libfmd");
    if (!st) st = fmdf_writer_add_meta(w, "kind", "distiller");
    if (!st) st = fmdf_writer_add_meta(w, "library_version", fmd_version());
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.format", DIST_FORMAT);
    if (!st) st = fmdf_writer_add_meta_i64(w, "distiller.step", ff_steps_done(d->tr));
    if (!st) st = fmdf_writer_add_meta(w, "distiller.teacher", d->teacher_id);
    if (!st) st = fmdf_writer_add_meta(w, "distiller.aux_kind",
                                       !d->aux ? "none" : d->aux_kind == AUX_COPY ? "copy" : "residual");
    for (int i = 0; i < NOPTS && !st; i++) {
        if (k_spec[i].flags & OPT_NO_SAVE) continue;
        char key[96], val[128];
        option_meta_key(key, sizeof key, k_spec[i].key);
        opt_value_text(&k_spec[i], &d->cfg, val, sizeof val);
        st = fmdf_writer_add_meta(w, key, val);
    }
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
    if (st) {
        fmdf_writer_abort(w);
        return st;
    }
    return fmdf_writer_commit(w);
}

#define RESUME "fmd_distiller_resume"

/* The network of the checkpoint under prefix has m's architecture. */
static fmd_status same_config(const fmdf_reader *r, const char *prefix, const nn_model *m,
                              const char *path)
{
    nn_config fc;
    fmd_status st = model_io_read_config(r, prefix, &fc);
    if (st) return st;
    char what[160];
    if (model_io_config_diff(&fc, nn_model_config(m), what, sizeof what))
        return fmd_seterr(FMD_ERR_INVALID_ARG, RESUME ": '%s': the %s network differs from this "
                          "distiller's: %s", path, prefix[0] ? prefix : "EMA student", what);
    return FMD_OK;
}

/* Every view of m is in the checkpoint under prefix, as f32 of its size. */
static fmd_status check_tensors(fmdf_reader *r, const char *prefix, const nn_model *m)
{
    char name[512];
    for (int i = 0; i < nn_model_num_views(m); i++) {
        const nn_param *p = nn_model_view(m, i);
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        const fmdf_tensor_info *ti = fmdf_tensor_find(r, name);
        if (!ti) return fmd_seterr(FMD_ERR_FORMAT, RESUME ": tensor '%s' missing", name);
        if (ti->dtype != FMDF_F32 || ti->numel != p->numel)
            return fmd_seterr(FMD_ERR_FORMAT, RESUME ": tensor '%s' has %lld %s numbers, expected "
                              "%lld f32", name, (long long)ti->numel, fmdf_dtype_name(ti->dtype),
                              (long long)p->numel);
    }
    return FMD_OK;
}

/* The run the checkpoint recorded, merged with what the caller gave: a key
 * the caller did not set takes the stored value; one the caller set to
 * another value is refused unless it may change mid-run (OPT_RESUMABLE:
 * applied, and logged).  *rebuild = 1 when the result needs another
 * trainer than d has. */
static fmd_status merge_stored_options(fmd_distiller *d, const fmdf_reader *r, const char *path,
                                       dist_config *nc, int *rebuild)
{
    const opt_table *tab = &opt_table_distiller;
    *nc = d->cfg;
    *rebuild = 0;
    for (int i = 0; i < NOPTS; i++) {
        const opt_spec *s = &k_spec[i];
        if (s->flags & OPT_NO_SAVE) continue;
        char key[96], mine[128];
        option_meta_key(key, sizeof key, s->key);
        const char *text = fmdf_meta_get(r, key);
        if (!text)
            return fmd_seterr(FMD_ERR_FORMAT, RESUME ": '%s' does not record option '%s'", path,
                              s->key);
        dist_config stored = d->cfg;
        fmd_status st = opt_parse_text(tab, s, text, &stored);
        if (st) return st;
        if (opt_same(s, &stored, &d->cfg)) continue;
        opt_value_text(s, &d->cfg, mine, sizeof mine);
        if (d->given[i] && !(s->flags & OPT_RESUMABLE))
            return fmd_seterr(FMD_ERR_INVALID_ARG, RESUME ": option '%s' = %s here, but '%s' was "
                              "trained with %s (leave it out to continue that run)", s->key, mine,
                              path, text);
        if (d->given[i]) {
            fmd_log(FMD_LOG_INFO, RESUME ": option '%s' changes from %s to %s", s->key, text, mine);
            continue;
        }
        opt_parse_text(tab, s, text, nc);
        if (s->offset != offsetof(dist_config, ff.opt.steps)) *rebuild = 1;
        else if (nc->ff.opt.steps > 0) fmd_log(FMD_LOG_INFO, RESUME ": planned length %lld steps "
                                               "(from '%s')", (long long)nc->ff.opt.steps, path);
    }
    nc->ff.opt.lr_end = nc->lr_min * nc->ff.opt.lr;
    return FMD_OK;
}

fmd_status fmd_distiller_resume(fmd_distiller *d, const char *path)
{
    FMD_CHECK_ARG(d, RESUME ": distiller is NULL");
    FMD_CHECK_ARG(path, RESUME ": path is NULL");
    fmdf_reader *r = NULL;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    nn_model *s = student_net(d->student), *e = student_net(d->ema);
    const char *kind = fmdf_meta_get(r, "kind");
    const char *tid = fmdf_meta_get(r, "distiller.teacher");
    const char *ak = fmdf_meta_get(r, "distiller.aux_kind");
    const char *mine_ak = !d->aux ? "none" : d->aux_kind == AUX_COPY ? "copy" : "residual";
    int64_t step = 0, format = 1;
    dist_config nc;
    int rebuild = 0;
    nn_model *aux = NULL;
    ff_trainer *tr = NULL;
    if (!kind || strcmp(kind, "distiller") != 0)
        st = fmd_seterr(FMD_ERR_FORMAT, RESUME ": '%s' is not a distiller checkpoint", path);
    if (!st && fmdf_meta_get(r, "distiller.format")) st = fmdf_meta_i64(r, "distiller.format", &format);
    if (!st && format < DIST_FORMAT)
        st = fmd_seterr(FMD_ERR_FORMAT, RESUME ": '%s' was written by libfmd 0.1, which did not record "
                        "the run's options, so it cannot be continued (its EMA student still loads: "
                        "fmd_student_load, `fmd export`)", path);
    if (!st && format > DIST_FORMAT)
        st = fmd_seterr(FMD_ERR_VERSION, RESUME ": '%s' has checkpoint format %lld; this libfmd "
                        "(%s) reads up to %d", path, (long long)format, fmd_version(), DIST_FORMAT);
    if (!st) st = fmdf_meta_i64(r, "distiller.step", &step);
    if (!st && step < 0) st = fmd_seterr(FMD_ERR_FORMAT, RESUME ": '%s': negative step", path);
    if (!st && (!tid || strcmp(tid, d->teacher_id) != 0))
        st = fmd_seterr(FMD_ERR_INVALID_ARG, RESUME ": '%s' was distilled from the teacher '%s'; "
                        "this distiller's is '%s'", path, tid ? tid : "(not recorded)", d->teacher_id);
    if (!st) st = merge_stored_options(d, r, path, &nc, &rebuild);
    if (!st && rebuild) st = build_trainer(d, &nc, &aux, &tr);
    if (!st) {
        nn_model *g = rebuild ? aux : d->aux;
        const char *want_ak = !g ? "none" : d->aux_kind == AUX_COPY ? "copy" : "residual";
        if (!ak || strcmp(ak, want_ak) != 0)
            st = fmd_seterr(FMD_ERR_INVALID_ARG, RESUME ": '%s' has the auxiliary network '%s', "
                            "this distiller '%s' (option aux)", path, ak ? ak : "?", rebuild ? want_ak : mine_ak);
        if (!st) st = same_config(r, "", e, path);
        if (!st) st = same_config(r, "student.", s, path);
        if (!st && g) st = same_config(r, "aux.", g, path);
        static const char *const sp[] = {"", "student.", "adam_m.", "adam_v."};
        for (int i = 0; i < 4 && !st; i++) st = check_tensors(r, sp[i], s);
        static const char *const ap[] = {"aux.", "aux_adam_m.", "aux_adam_v."};
        for (int i = 0; i < 3 && !st && g; i++) st = check_tensors(r, ap[i], g);
    }
    if (st) {
        ff_destroy(tr);
        nn_model_destroy(aux);
        fmdf_close(r);
        return st;
    }
    /* everything checked: swap in the rebuilt trainer, then read */
    if (rebuild) {
        if (!nc.data_pool) ff_take_data(tr, d->tr);   /* data set by the caller */
        ff_destroy(d->tr);
        nn_model_destroy(d->aux);
        d->tr = tr;
        d->aux = aux;
        d->cfg = nc;
        student_note_reserved(d->student, local_batch(nc.ff.batch, nc.ff.comm));
    } else if (nc.ff.opt.steps != d->cfg.ff.opt.steps) {
        d->cfg.ff.opt.steps = nc.ff.opt.steps;
        ff_set_planned_steps(d->tr, nc.ff.opt.steps);
    }
    st = model_io_read_tensors(r, "", d->be, e, NULL);
    if (!st) st = model_io_read_tensors(r, "student.", d->be, s, NULL);
    if (!st) st = model_io_read_tensors(r, "adam_m.", d->be, s, ff_adam_m(d->tr));
    if (!st) st = model_io_read_tensors(r, "adam_v.", d->be, s, ff_adam_v(d->tr));
    if (!st && d->aux) {
        st = model_io_read_tensors(r, "aux.", d->be, d->aux, NULL);
        if (!st) st = model_io_read_tensors(r, "aux_adam_m.", d->be, d->aux, ff_aux_adam_m(d->tr));
        if (!st) st = model_io_read_tensors(r, "aux_adam_v.", d->be, d->aux, ff_aux_adam_v(d->tr));
    }
    fmdf_close(r);
    if (st) return st;
    ff_set_steps_done(d->tr, step);
    memset(&d->stats, 0, sizeof d->stats);
    d->stats.struct_size = sizeof d->stats;
    d->stats.step = step;
    if ((st = record_made(d))) return st;
    return d->be->ops->sync(d->be);
}
