/* commands.c - the subcommands of `fmd`: info, train-teacher, distill,
 * sample, eval, demo.  Each parses its flags (cli.c), calls the public API,
 * prints data on stdout (text or --json) and progress on stderr. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static volatile sig_atomic_t g_interrupted = 0;
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}
static void catch_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;   /* a second Ctrl-C ends the program at once */
    sigaction(SIGINT, &sa, NULL);
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int has_key(const fmd_options *o, const char *k)
{
    for (int i = 0; i < fmd_options_count(o); i++)
        if (strcmp(fmd_options_key(o, i), k) == 0) return 1;
    return 0;
}

/* Make sure *o exists. */
static int ensure_opts(fmd_options **o)
{
    if (!*o && fmd_options_create(o) != FMD_OK) return cli_lib_err("out of memory");
    return CLI_OK;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* A growable series of training statistics for the loss curve. */
typedef struct {
    int64_t n, cap;
    double *step, *a, *b, *c;
} series;

static void series_free(series *s)
{
    free(s->step);
    free(s->a);
    free(s->b);
    free(s->c);
    memset(s, 0, sizeof *s);
}

static void series_add(series *s, double step, double a, double b, double c)
{
    if (s->n == s->cap) {
        int64_t nc = s->cap ? 2 * s->cap : 256;
        double *p[4] = {realloc(s->step, (size_t)nc * sizeof(double)),
                        realloc(s->a, (size_t)nc * sizeof(double)),
                        realloc(s->b, (size_t)nc * sizeof(double)),
                        realloc(s->c, (size_t)nc * sizeof(double))};
        if (p[0]) s->step = p[0];
        if (p[1]) s->a = p[1];
        if (p[2]) s->b = p[2];
        if (p[3]) s->c = p[3];
        if (!p[0] || !p[1] || !p[2] || !p[3]) return;   /* curve just stops growing */
        s->cap = nc;
    }
    s->step[s->n] = step;
    s->a[s->n] = a;
    s->b[s->n] = b;
    s->c[s->n] = c;
    s->n++;
}

/* ------------------------------------------------------------------ info */

int cmd_info(int argc, char **argv)
{
    static const cli_cmd cmd = {"info", "[FILE] [--json]",
                                "Describe a .fmd checkpoint (metadata, tensors, parameter count, "
                                "CRC check of\nevery tensor) or a safetensors file.  Without FILE: "
                                "the library version and backends.",
                                "Exit status 1 when the file cannot be read or a CRC check fails.\n"};
    cli_common co;
    const char *pos[1];
    int npos = 0;
    int rc = cli_parse(&cmd, NULL, 0, &co, argc, argv, pos, 1, &npos);
    if (rc || co.help) return rc;
    if (npos == 0) {
        if (co.json) printf("{\"version\": \"%s\", \"backends\": [", fmd_version());
        else printf("libfmd %s\nbackends:\n", fmd_version());
        for (int i = 0; i < fmd_backend_count(); i++) {
            const char *name = fmd_backend_name_at(i);
            fmd_backend *be = NULL;
            int ok = fmd_backend_open(name, &be) == FMD_OK;
            const char *desc = ok ? fmd_backend_device(be) : fmd_last_error();
            if (co.json) {
                printf("%s{\"name\": \"%s\", \"available\": %s, \"device\": ", i ? ", " : "", name,
                       ok ? "true" : "false");
                json_str(stdout, desc);
                printf("}");
            } else {
                printf("  %-5s %s%s\n", name, ok ? "" : "unavailable: ", desc);
            }
            fmd_backend_destroy(be);
        }
        if (co.json) printf("]}\n");
        return CLI_OK;
    }
    size_t need = 0;
    char small[1];
    fmd_status st = fmd_file_describe(pos[0], co.json, small, sizeof small, &need);
    if (need == 0) return cli_lib_err("cannot describe the file");
    char *buf = malloc(need);
    if (!buf) return cli_err(CLI_FAIL, "out of memory");
    st = fmd_file_describe(pos[0], co.json, buf, need, NULL);
    fputs(buf, stdout);
    fflush(stdout);
    free(buf);
    if (st != FMD_OK) return cli_lib_err("check failed");
    return CLI_OK;
}

/* --------------------------------------------------------- train-teacher */

typedef struct {
    cli_progress prog;
} train_ctx;

static int train_cb(const fmd_train_stats *s, void *user)
{
    train_ctx *c = user;
    char extra[128];
    snprintf(extra, sizeof extra, "loss %.4g", s->loss_avg);
    cli_progress_update(&c->prog, s->step, extra, s->step >= s->steps);
    return g_interrupted ? 1 : 0;
}

/* "mixture:NAME", "idx:IMAGES[,LABELS]", "npy:X.npy[,LABELS.npy]". */
static int load_data(const char *src, int64_t n, int64_t seed, fmd_dataset **out)
{
    fmd_status st;
    if (strncmp(src, "mixture:", 8) == 0) {
        fmd_teacher *mix = NULL;
        if (fmd_teacher_create_preset(src + 8, &mix) != FMD_OK) return cli_lib_err("--data");
        st = fmd_dataset_from_mixture(mix, n, (uint64_t)seed, out);
        fmd_teacher_destroy(mix);
    } else if (strncmp(src, "spec:", 5) == 0) {
        fmd_teacher *mix = NULL;
        if (fmd_teacher_load_spec(src + 5, &mix) != FMD_OK) return cli_lib_err("--data");
        st = fmd_dataset_from_mixture(mix, n, (uint64_t)seed, out);
        fmd_teacher_destroy(mix);
    } else if (strncmp(src, "idx:", 4) == 0) {
        char *s = strdup(src + 4);
        if (!s) return cli_err(CLI_FAIL, "out of memory");
        char *comma = strchr(s, ',');
        if (comma) *comma = 0;
        st = fmd_dataset_load_idx(s, comma ? comma + 1 : NULL, out);
        free(s);
    } else if (strncmp(src, "npy:", 4) == 0) {
        char *s = strdup(src + 4);
        if (!s) return cli_err(CLI_FAIL, "out of memory");
        char *comma = strchr(s, ',');
        if (comma) *comma = 0;
        const char *dt = NULL;
        int nd = 0;
        int64_t sh[8];
        void *x = NULL, *lab = NULL;
        st = fmd_npy_load(s, &dt, &nd, sh, 8, &x);
        if (st == FMD_OK && (strcmp(dt, "f4") != 0 || nd != 2)) {
            fmd_npy_free(x);
            free(s);
            return cli_err(CLI_FAIL, "--data %s: expected a float32 array of shape (n, dim)", src);
        }
        int classes = 0;
        if (st == FMD_OK && comma) {
            const char *dl = NULL;
            int nl = 0;
            int64_t shl[8];
            st = fmd_npy_load(comma + 1, &dl, &nl, shl, 8, &lab);
            if (st == FMD_OK && (strcmp(dl, "i4") != 0 || nl != 1 || shl[0] != sh[0])) {
                fmd_npy_free(x);
                fmd_npy_free(lab);
                free(s);
                return cli_err(CLI_FAIL, "--data %s: labels must be int32 of shape (%lld,)", src,
                               (long long)sh[0]);
            }
            for (int64_t i = 0; st == FMD_OK && i < shl[0]; i++)
                if (((int32_t *)lab)[i] + 1 > classes) classes = ((int32_t *)lab)[i] + 1;
        }
        if (st == FMD_OK) st = fmd_dataset_create(x, lab, sh[0], sh[1], classes, out);
        fmd_npy_free(x);
        fmd_npy_free(lab);
        free(s);
    } else {
        return cli_err(CLI_USAGE, "--data '%s': expected mixture:NAME, spec:FILE, idx:IMAGES[,LABELS] "
                       "or npy:X.npy[,LABELS.npy]", src);
    }
    if (st != FMD_OK) return cli_lib_err("cannot load the data");
    return CLI_OK;
}

int cmd_train_teacher(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "train-teacher", "--data SRC --out T.fmd [--steps N] [--set key=value ...]",
        "Train a network teacher by flow matching and save it (.fmd).",
        "SRC: mixture:NAME (exact samples of a built-in mixture, --n of them), spec:FILE,\n"
        "idx:IMAGES[,LABELS] (MNIST/Fashion-MNIST IDX, gzip or plain), npy:X.npy[,LABELS.npy].\n"
        "--set keys are those of fmd_teacher_train (arch, width, depth, batch, lr, ema, ...).\n"};
    const char *data = NULL, *outp = NULL;
    int64_t steps = -1, n = 20000, seed = -1;
    fmd_options *o = NULL;
    cli_flag fl[] = {
        {"--data", F_STR, &data, "SRC", "training data (see below)"},
        {"--out", F_STR, &outp, "T.fmd", "where to save the teacher"},
        {"--steps", F_I64, &steps, "N", "training steps (default 5000)"},
        {"--n", F_I64, &n, "N", "samples drawn from a mixture source (default 20000)"},
        {"--seed", F_I64, &seed, "S", "seed of the data draw and the training (default 0)"},
        {"--set", F_KV, &o, "KEY=VALUE", "a training option (repeatable)"},
    };
    cli_common co;
    const char *pos[1];
    int npos;
    int rc = cli_parse(&cmd, fl, NFLAGS(fl), &co, argc, argv, pos, 0, &npos);
    if (rc || co.help) goto out0;
    if (!data || !outp) {
        rc = cli_err(CLI_USAGE, "--data and --out are required (see fmd train-teacher --help)");
        goto out0;
    }
    if (n < 1) {
        rc = cli_err(CLI_USAGE, "--n must be >= 1");
        goto out0;
    }
    if ((rc = ensure_opts(&o))) goto out0;
    if (steps >= 0 && fmd_options_set_i64(o, "steps", steps)) rc = cli_lib_err("--steps");
    if (!rc && seed >= 0 && fmd_options_set_i64(o, "seed", seed)) rc = cli_lib_err("--seed");
    if (!rc && !has_key(o, "progress_every") && fmd_options_set_i64(o, "progress_every", 10))
        rc = cli_lib_err("options");
    if (rc) goto out0;
    fmd_backend *be = NULL;
    fmd_dataset *ds = NULL;
    fmd_teacher *t = NULL;
    if ((rc = cli_backend(&co, &be))) goto out0;
    if ((rc = load_data(data, n, seed >= 0 ? seed : 0, &ds))) goto out1;
    train_ctx ctx;
    int64_t total = steps >= 0 ? steps : 5000;
    if (has_key(o, "steps")) fmd_options_get_i64(o, "steps", &total);
    cli_progress_begin(&ctx.prog, co.quiet || co.json, 0, total);
    catch_sigint();
    double t0 = wall();
    fmd_status st = fmd_teacher_train(be, ds, o, train_cb, &ctx, &t);
    cli_progress_end(&ctx.prog);
    if (st != FMD_OK) {
        rc = cli_lib_err("training failed");
        goto out1;
    }
    if (fmd_teacher_save(t, outp) != FMD_OK) {
        rc = cli_lib_err("cannot save the teacher");
        goto out1;
    }
    if (co.json) {
        printf("{\"out\": ");
        json_str(stdout, outp);
        printf(", \"steps\": %lld, \"dim\": %lld, \"classes\": %d, \"seconds\": %.3f}\n",
               (long long)total, (long long)fmd_teacher_dim(t), fmd_teacher_num_classes(t),
               wall() - t0);
    } else if (!co.quiet) {
        printf("wrote %s (%lld steps, %.1f s)\n", outp, (long long)total, wall() - t0);
    }
out1:
    fmd_teacher_destroy(t);
    fmd_dataset_destroy(ds);
    fmd_backend_destroy(be);
out0:
    fmd_options_destroy(o);
    return rc;
}

/* --------------------------------------------------------------- distill */

typedef struct {
    cli_progress prog;
    series curve;
    int64_t total;
} distill_ctx;

static int distill_cb(const fmd_distill_stats *s, void *user)
{
    distill_ctx *c = user;
    series_add(&c->curve, (double)s->step, s->loss_pred, s->loss_corr, s->loss_aux);
    char extra[160];
    snprintf(extra, sizeof extra, "pred %.3g corr %.3g aux %.3g", s->loss_pred, s->loss_corr,
             s->loss_aux);
    cli_progress_update(&c->prog, s->step, extra, s->step >= c->total);
    return g_interrupted ? 1 : 0;
}

static int write_curve(const char *path, const series *s)
{
    const double *ys[3] = {s->a, s->b, s->c};
    const char *names[3] = {"prediction", "correction", "auxiliary"};
    if (fmd_plot_curves(path, s->step, ys, names, 3, s->n, "distillation losses", 1, 720, 400))
        return cli_lib_err("cannot write the loss curve");
    return CLI_OK;
}

/* Run a distiller to `steps` total steps with the progress display. */
static int run_distiller(fmd_distiller *d, int64_t steps, int quiet, distill_ctx *ctx)
{
    int64_t done = fmd_distiller_steps(d);
    ctx->total = steps;
    cli_progress_begin(&ctx->prog, quiet, done, steps);
    catch_sigint();
    fmd_status st = steps > done ? fmd_distiller_run(d, steps - done, distill_cb, ctx) : FMD_OK;
    cli_progress_end(&ctx->prog);
    if (st == FMD_ERR_CANCELLED && g_interrupted)
        return cli_err(CLI_FAIL, "interrupted at step %lld (the last checkpoint is kept)",
                       (long long)fmd_distiller_steps(d));
    if (st != FMD_OK) return cli_lib_err("distillation failed");
    return CLI_OK;
}

int cmd_distill(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "distill", "--teacher T --out S.fmd [--steps N] [--resume] [--set key=value ...]",
        "Distill a teacher into a one-step student without data (FreeFlow) and save the\n"
        "training state to S.fmd (its EMA student loads with --student S.fmd).",
        "--set keys are the distiller's options (docs/distiller.md): batch, lr, target,\n"
        "alpha, ema, corr, pred, guidance, ...; --student-set keys those of the student\n"
        "network (width, depth, temb_dim, time_scale, delta_scale, seed).  With --resume the\n"
        "run continues from S.fmd up to --steps in total.  Ctrl-C stops at the next progress\n"
        "report and keeps the last checkpoint.\n"};
    const char *teacher = NULL, *outp = NULL, *curve = NULL, *arch = NULL, *cfgi = NULL;
    int64_t steps = 2000, seed = -1, batch = -1, ckpt_every = -1;
    double lr = -1, cfg = NAN;
    int resume = 0;
    fmd_options *dopts = NULL, *sopts = NULL, *topts = NULL;
    cli_flag fl[] = {
        {"--teacher", F_STR, &teacher, "T", "mixture:NAME, spec:FILE, FILE.fmd or FILE.safetensors"},
        {"--out", F_STR, &outp, "S.fmd", "the distiller checkpoint to write"},
        {"--steps", F_I64, &steps, "N", "total distillation steps (default 2000)"},
        {"--resume", F_BOOL, &resume, NULL, "continue from --out"},
        {"--seed", F_I64, &seed, "S", "seed of the distiller and the student initialisation"},
        {"--batch", F_I64, &batch, "B", "batch size (default 512)"},
        {"--lr", F_F64, &lr, "LR", "student learning rate (default 3e-4)"},
        {"--cfg", F_F64, &cfg, "W", "teacher guidance scale (conditional teachers)"},
        {"--cfg-interval", F_STR, &cfgi, "LO,HI", "guidance interval in t (default 0,1)"},
        {"--checkpoint-every", F_I64, &ckpt_every, "N", "save --out every N steps (default steps/10)"},
        {"--curve", F_STR, &curve, "FILE.png", "also draw the loss curve"},
        {"--arch", F_STR, &arch, "ARCH", "architecture of a safetensors teacher"},
        {"--teacher-set", F_KV, &topts, "KEY=VALUE", "teacher loading option (repeatable)"},
        {"--student-set", F_KV, &sopts, "KEY=VALUE", "student network option (repeatable)"},
        {"--set", F_KV, &dopts, "KEY=VALUE", "distiller option (repeatable)"},
    };
    cli_common co;
    const char *pos[1];
    int npos;
    fmd_backend *be = NULL;
    fmd_teacher *T = NULL;
    fmd_student *S = NULL;
    fmd_distiller *D = NULL;
    distill_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int rc = cli_parse(&cmd, fl, NFLAGS(fl), &co, argc, argv, pos, 0, &npos);
    if (rc || co.help) goto out;
    if (!teacher || !outp) {
        rc = cli_err(CLI_USAGE, "--teacher and --out are required (see fmd distill --help)");
        goto out;
    }
    if (steps < 0) {
        rc = cli_err(CLI_USAGE, "--steps must be >= 0");
        goto out;
    }
    if (resume && access(outp, R_OK) != 0) {
        rc = cli_err(CLI_FAIL, "--resume: cannot read '%s' (%s)", outp, strerror(errno));
        goto out;
    }
    if ((rc = ensure_opts(&dopts)) || (rc = ensure_opts(&sopts))) goto out;
    {
        fmd_status st = FMD_OK;
        if (seed >= 0 && !has_key(dopts, "seed")) st = fmd_options_set_i64(dopts, "seed", seed);
        if (!st && seed >= 0 && !has_key(sopts, "seed")) st = fmd_options_set_i64(sopts, "seed", seed);
        if (!st && batch >= 0) st = fmd_options_set_i64(dopts, "batch", batch);
        if (!st && lr >= 0) st = fmd_options_set_f64(dopts, "lr", lr);
        if (!st && !has_key(dopts, "checkpoint")) st = fmd_options_set_str(dopts, "checkpoint", outp);
        if (!st && !has_key(dopts, "checkpoint_every"))
            st = fmd_options_set_i64(dopts, "checkpoint_every",
                                     ckpt_every > 0 ? ckpt_every : (steps / 10 > 0 ? steps / 10 : 1));
        if (!st && !has_key(dopts, "progress_every")) st = fmd_options_set_i64(dopts, "progress_every", 10);
        if (st) {
            rc = cli_lib_err("bad option");
            goto out;
        }
    }
    if ((rc = cli_backend(&co, &be))) goto out;
    if ((rc = cli_teacher(teacher, be, arch, topts, &T))) goto out;
    if (!isnan(cfg) || cfgi) {
        double lo = 0, hi = 1, w = isnan(cfg) ? 1.0 : cfg;
        if (cfgi && cli_pair(cfgi, &lo, &hi) != 0) {
            rc = cli_err(CLI_USAGE, "--cfg-interval expects LO,HI (got '%s')", cfgi);
            goto out;
        }
        if (fmd_teacher_set_guidance(T, w, lo, hi) != FMD_OK) {
            rc = cli_lib_err("--cfg");
            goto out;
        }
    }
    if (fmd_student_create(T, be, sopts, &S) != FMD_OK) {
        rc = cli_lib_err("cannot create the student");
        goto out;
    }
    /* the teacher pools are solved inside fmd_distiller_create, which can take
     * a while on a network teacher: a transient note on a terminal (cleared,
     * so that an error stays one line), the time taken once it is done */
    const char *ref = NULL;
    int pools = has_key(dopts, "data_pool") ||
                (fmd_options_get_str(dopts, "corr_ref", &ref) == FMD_OK && !strcmp(ref, "samples"));
    pools = pools && !co.quiet && !co.json;
    int tty = isatty(2);
    if (pools && tty) fprintf(stderr, "solving the teacher's ODE for its sample pool...");
    double tc = wall();
    fmd_status cst = fmd_distiller_create(T, S, be, dopts, &D);
    if (pools && tty) fprintf(stderr, "\r\033[K");
    if (cst != FMD_OK) {
        rc = cli_lib_err("cannot create the distiller");
        goto out;
    }
    double pool_s = wall() - tc;
    if (resume && fmd_distiller_resume(D, outp) != FMD_OK) {
        rc = cli_lib_err("cannot resume");
        goto out;
    }
    if (pools) fprintf(stderr, "fmd distill: teacher sample pool solved in %.1f s\n", pool_s);
    double t0 = wall();
    if ((rc = run_distiller(D, steps, co.quiet || co.json, &ctx))) goto out;
    if (fmd_distiller_save(D, outp) != FMD_OK) {
        rc = cli_lib_err("cannot save");
        goto out;
    }
    if (curve && ctx.curve.n > 0 && (rc = write_curve(curve, &ctx.curve))) goto out;
    fmd_distill_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    fmd_distiller_stats(D, &s);
    if (co.json) {
        printf("{\"out\": ");
        json_str(stdout, outp);
        printf(", \"steps\": %lld, \"seconds\": %.3f, \"loss_pred\": %.6g, \"loss_corr\": %.6g, "
               "\"loss_aux\": %.6g, \"num_params\": %lld}\n",
               (long long)fmd_distiller_steps(D), wall() - t0, s.loss_pred, s.loss_corr, s.loss_aux,
               (long long)fmd_student_num_params(S));
    } else if (!co.quiet) {
        printf("wrote %s (step %lld, %.1f s)\n", outp, (long long)fmd_distiller_steps(D), wall() - t0);
    }
out:
    series_free(&ctx.curve);
    fmd_distiller_destroy(D);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_backend_destroy(be);
    fmd_options_destroy(dopts);
    fmd_options_destroy(sopts);
    fmd_options_destroy(topts);
    return rc;
}

/* ---------------------------------------------------------------- sample */

typedef struct {
    double *p;
    int64_t dim;
} near_reward;

static double reward_near(const float *x, int64_t dim, int32_t label, void *user)
{
    (void)label;
    const near_reward *r = user;
    double d = 0;
    for (int64_t j = 0; j < dim; j++) d += ((double)x[j] - r->p[j]) * ((double)x[j] - r->p[j]);
    return -d;
}

/* Load the student (if given) and teacher (if given). */
static int load_models(const cli_common *co, const char *student, const char *teacher,
                       const char *arch, const fmd_options *topts, fmd_backend **be,
                       fmd_student **S, fmd_teacher **T)
{
    int rc = cli_backend(co, be);
    if (rc) return rc;
    if (teacher && (rc = cli_teacher(teacher, *be, arch, topts, T))) return rc;
    if (student) {
        if (access(student, R_OK) != 0)
            return cli_err(CLI_FAIL, "student '%s': %s", student, strerror(errno));
        if (fmd_student_load(student, *be, S) != FMD_OK) {
            char what[600];
            snprintf(what, sizeof what, "cannot load student '%s'", student);
            return cli_lib_err(what);
        }
    }
    return CLI_OK;
}

int cmd_sample(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "sample", "(--student S.fmd | --teacher T) --n N --out FILE.png|FILE.npy [options]",
        "Generate samples: one step of a student, a teacher ODE solver, or a student jump\n"
        "finished by the teacher; optionally Best-of-N noise search.",
        "Row i uses the noise of (seed, first-index + i), so runs can be split freely.\n"
        ".npy output is float32 (n, dim); .png output is a density panel for 2-D samples\n"
        "and an image grid otherwise (--shape, --range).  --reward near:X1,...,XD scores a\n"
        "candidate by minus its squared distance to that point.\n"};
    const char *student = NULL, *teacher = NULL, *outp = NULL, *solver = NULL, *arch = NULL;
    const char *shape = NULL, *range = NULL, *reward = NULL, *method = NULL, *cfgi = NULL;
    int64_t n = 16, seed = 0, first = 0, klass = -1, steps = -1, best = 0;
    double cfg = NAN, delta = NAN;
    int finish = 0, refine = 0;
    fmd_options *topts = NULL;
    cli_flag fl[] = {
        {"--student", F_STR, &student, "S.fmd", "student (or distiller checkpoint) to sample"},
        {"--teacher", F_STR, &teacher, "T", "teacher (alone: its solver; with --student: finish/refine)"},
        {"--method", F_STR, &method, "M", "student or teacher (default: student when given)"},
        {"--n", F_I64, &n, "N", "number of samples (default 16)"},
        {"--seed", F_I64, &seed, "S", "noise seed (default 0)"},
        {"--first-index", F_I64, &first, "I", "index of the first sample (default 0)"},
        {"--class", F_I64, &klass, "C", "class label of every sample (default: the null class)"},
        {"--cfg", F_F64, &cfg, "W", "guidance scale of the teacher's evaluations"},
        {"--cfg-interval", F_STR, &cfgi, "LO,HI", "guidance interval in t"},
        {"--solver", F_STR, &solver, "NAME", "euler, heun, midpoint, rk4, dopri5 (default dopri5)"},
        {"--steps", F_I64, &steps, "K", "steps of a fixed-step solver (default 32)"},
        {"--delta", F_F64, &delta, "D", "student jump in (0, 1] (default 1: one-step sample)"},
        {"--finish", F_BOOL, &finish, NULL, "finish a student jump with the teacher's solver"},
        {"--best-of", F_I64, &best, "N", "Best-of-N noise search with N candidates per sample"},
        {"--reward", F_STR, &reward, "near:X,..", "reward of the search"},
        {"--refine", F_BOOL, &refine, NULL, "solve the teacher from the best noise"},
        {"--out", F_STR, &outp, "FILE", "output .png or .npy"},
        {"--shape", F_STR, &shape, "CxHxW", "image shape for .png output"},
        {"--range", F_STR, &range, "LO,HI", "pixel value range for .png images (default -1,1)"},
        {"--arch", F_STR, &arch, "ARCH", "architecture of a safetensors teacher"},
        {"--teacher-set", F_KV, &topts, "KEY=VALUE", "teacher loading option (repeatable)"},
    };
    cli_common co;
    const char *pos[1];
    int npos;
    fmd_backend *be = NULL;
    fmd_student *S = NULL;
    fmd_teacher *T = NULL;
    fmd_sampler *sm = NULL;
    fmd_options *so = NULL;
    float *x = NULL;
    int32_t *labels = NULL;
    near_reward nr = {NULL, 0};
    int rc = cli_parse(&cmd, fl, NFLAGS(fl), &co, argc, argv, pos, 0, &npos);
    if (rc || co.help) goto out;
    if ((!student && !teacher) || !outp) {
        rc = cli_err(CLI_USAGE, "--student or --teacher, and --out are required (see fmd sample --help)");
        goto out;
    }
    if (n < 1 || n > 100000000) {
        rc = cli_err(CLI_USAGE, "--n must be in [1, 1e8] (got %lld)", (long long)n);
        goto out;
    }
    if (seed < 0 || first < 0) {
        rc = cli_err(CLI_USAGE, "--seed and --first-index must be >= 0");
        goto out;
    }
    if ((best > 0) != (reward != NULL)) {
        rc = cli_err(CLI_USAGE, "--best-of and --reward go together");
        goto out;
    }
    if (refine && best <= 0) {
        rc = cli_err(CLI_USAGE, "--refine needs --best-of");
        goto out;
    }
    if ((rc = load_models(&co, student, teacher, arch, topts, &be, &S, &T))) goto out;
    if (fmd_options_create(&so) != FMD_OK) {
        rc = cli_lib_err("options");
        goto out;
    }
    {
        fmd_status st = FMD_OK;
        if (method) st = fmd_options_set_str(so, "method", method);
        if (!st && solver) st = fmd_options_set_str(so, "solver", solver);
        if (!st && steps >= 0) st = fmd_options_set_i64(so, "steps", steps);
        if (!st && !isnan(delta)) st = fmd_options_set_f64(so, "delta", delta);
        if (!st && finish) st = fmd_options_set_i64(so, "finish", 1);
        if (!st && refine) st = fmd_options_set_i64(so, "refine", 1);
        if (!st && !isnan(cfg)) st = fmd_options_set_f64(so, "cfg", cfg);
        if (!st && cfgi) {
            double lo, hi;
            if (cli_pair(cfgi, &lo, &hi) != 0) {
                rc = cli_err(CLI_USAGE, "--cfg-interval expects LO,HI (got '%s')", cfgi);
                goto out;
            }
            st = fmd_options_set_f64(so, "cfg_lo", lo);
            if (!st) st = fmd_options_set_f64(so, "cfg_hi", hi);
        }
        if (st) {
            rc = cli_lib_err("bad option");
            goto out;
        }
    }
    if (fmd_sampler_create(S, T, NULL, &sm) != FMD_OK) {
        rc = cli_lib_err("cannot create the sampler");
        goto out;
    }
    const int64_t dim = fmd_sampler_dim(sm);
    const int K = fmd_sampler_num_classes(sm);
    if (klass >= 0) {
        if (klass > K) {
            rc = cli_err(CLI_USAGE, "--class %lld outside [0, %d] (%d = the null class)",
                         (long long)klass, K, K);
            goto out;
        }
        labels = malloc((size_t)n * sizeof(int32_t));
        if (!labels) {
            rc = cli_err(CLI_FAIL, "out of memory");
            goto out;
        }
        for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)klass;
    }
    if (reward) {
        if (strncmp(reward, "near:", 5) != 0) {
            rc = cli_err(CLI_USAGE, "--reward: expected near:X1,...,XD (got '%s')", reward);
            goto out;
        }
        nr.dim = dim;
        nr.p = calloc((size_t)dim, sizeof(double));
        if (!nr.p) {
            rc = cli_err(CLI_FAIL, "out of memory");
            goto out;
        }
        const char *p = reward + 5;
        for (int64_t j = 0; j < dim; j++) {
            char *end;
            nr.p[j] = strtod(p, &end);
            if (end == p || (j + 1 < dim && *end != ',') || (j + 1 == dim && *end)) {
                rc = cli_err(CLI_USAGE, "--reward near: needs %lld comma-separated numbers", (long long)dim);
                goto out;
            }
            p = end + 1;
        }
    }
    if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)dim) {
        rc = cli_err(CLI_USAGE, "--n too large");
        goto out;
    }
    x = malloc((size_t)(n * dim) * sizeof(float));
    if (!x) {
        rc = cli_err(CLI_FAIL, "out of memory for %lld samples", (long long)n);
        goto out;
    }
    double t0 = wall();
    int64_t nfe = 0;
    fmd_status st;
    if (best > 0)
        st = fmd_sampler_best_of_n(sm, labels, n, (uint64_t)seed, (uint64_t)first, best, reward_near,
                                   NULL, &nr, so, x, n * dim, NULL, 0, NULL, &nfe);
    else
        st = fmd_sampler_sample(sm, labels, n, (uint64_t)seed, (uint64_t)first, so, x, n * dim, &nfe);
    double secs = wall() - t0;
    if (st != FMD_OK) {
        rc = cli_lib_err("sampling failed");
        goto out;
    }
    char title[128];
    snprintf(title, sizeof title, "%s, %lld samples, %lld NFE", S && (!method || strcmp(method, "teacher"))
             ? "student" : "teacher", (long long)n, (long long)nfe);
    if ((rc = cli_write_samples(outp, x, n, dim, shape, range, title))) goto out;
    if (co.json) {
        printf("{\"out\": ");
        json_str(stdout, outp);
        printf(", \"n\": %lld, \"dim\": %lld, \"nfe\": %lld, \"seconds\": %.4f}\n", (long long)n,
               (long long)dim, (long long)nfe, secs);
    } else if (!co.quiet) {
        printf("wrote %s (%lld samples of %lld numbers, %lld NFE each, %.3f s)\n", outp, (long long)n,
               (long long)dim, (long long)nfe, secs);
    }
out:
    free(x);
    free(labels);
    free(nr.p);
    fmd_options_destroy(so);
    fmd_options_destroy(topts);
    fmd_sampler_destroy(sm);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_backend_destroy(be);
    return rc;
}

/* ------------------------------------------------------------------ eval */

static int parse_steps_list(const char *s, int *steps, int cap, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 100000 || *n >= cap) return -1;
        steps[(*n)++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return *n > 0 ? 0 : -1;
}

int cmd_eval(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "eval", "--teacher T [--student S.fmd] [--n N] [--json]",
        "Score a student's one-step samples and the teacher's Euler sampler against the\n"
        "teacher's adaptive ODE solution (MATH.md section 6): map error, energy distance\n"
        "(and its finite-sample floor), modes covered and mass error (mixture teachers).",
        NULL};
    const char *student = NULL, *teacher = NULL, *arch = NULL, *euler = "1,2,4,8", *cfgi = NULL;
    int64_t n = 2000, seed = 1234;
    double cfg = NAN;
    fmd_options *topts = NULL;
    cli_flag fl[] = {
        {"--teacher", F_STR, &teacher, "T", "the reference teacher"},
        {"--student", F_STR, &student, "S.fmd", "student to score (optional)"},
        {"--n", F_I64, &n, "N", "samples (default 2000)"},
        {"--seed", F_I64, &seed, "S", "evaluation seed (default 1234)"},
        {"--euler", F_STR, &euler, "K1,K2,..", "teacher Euler step counts (default 1,2,4,8)"},
        {"--cfg", F_F64, &cfg, "W", "teacher guidance scale"},
        {"--cfg-interval", F_STR, &cfgi, "LO,HI", "guidance interval in t"},
        {"--arch", F_STR, &arch, "ARCH", "architecture of a safetensors teacher"},
        {"--teacher-set", F_KV, &topts, "KEY=VALUE", "teacher loading option (repeatable)"},
    };
    cli_common co;
    const char *pos[1];
    int npos;
    fmd_backend *be = NULL;
    fmd_student *S = NULL;
    fmd_teacher *T = NULL;
    int steps[32], nsteps = 0;
    int rc = cli_parse(&cmd, fl, NFLAGS(fl), &co, argc, argv, pos, 0, &npos);
    if (rc || co.help) goto out;
    if (!teacher) {
        rc = cli_err(CLI_USAGE, "--teacher is required (see fmd eval --help)");
        goto out;
    }
    if (n < 2 || seed < 0) {
        rc = cli_err(CLI_USAGE, "--n must be >= 2 and --seed >= 0");
        goto out;
    }
    if (parse_steps_list(euler, steps, 32, &nsteps) != 0) {
        rc = cli_err(CLI_USAGE, "--euler expects a comma-separated list of step counts (got '%s')", euler);
        goto out;
    }
    if ((rc = load_models(&co, student, teacher, arch, topts, &be, &S, &T))) goto out;
    if (!isnan(cfg) || cfgi) {
        double lo = 0, hi = 1;
        if (cfgi && cli_pair(cfgi, &lo, &hi) != 0) {
            rc = cli_err(CLI_USAGE, "--cfg-interval expects LO,HI (got '%s')", cfgi);
            goto out;
        }
        if (fmd_teacher_set_guidance(T, isnan(cfg) ? 1.0 : cfg, lo, hi) != FMD_OK) {
            rc = cli_lib_err("--cfg");
            goto out;
        }
    }
    if (co.json) {
        printf("{\"teacher\": ");
        json_str(stdout, teacher);
        printf(", \"n\": %lld, \"results\": ", (long long)n);
    }
    rc = cli_eval_table(T, S, n, seed, steps, nsteps, co.json, NULL);
    if (co.json) printf("}\n");
out:
    fmd_options_destroy(topts);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_backend_destroy(be);
    return rc;
}

/* ------------------------------------------------------------------ demo */

static int join(char *buf, size_t n, const char *dir, const char *name)
{
    if ((size_t)snprintf(buf, n, "%s/%s", dir, name) >= n)
        return cli_err(CLI_USAGE, "--out path too long");
    return CLI_OK;
}

int cmd_demo(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "demo", "[--out DIR] [--steps N]",
        "The main job on the built-in default: distill the ring8 mixture teacher (8 modes\n"
        "on a circle) into a one-step student without data, then write DIR/demo.png\n"
        "(density panels: teacher many-step, teacher 1-step Euler, student 1-step),\n"
        "DIR/loss.png (loss curves), DIR/student.fmd, and print the metric table.",
        NULL};
    const char *dir = "demo-out";
    int64_t steps = 8000, n = 20000, seed = 0, eval_n = 2000;
    fmd_options *dopts = NULL, *sopts = NULL;
    cli_flag fl[] = {
        {"--out", F_STR, &dir, "DIR", "output folder (default demo-out)"},
        {"--steps", F_I64, &steps, "N", "distillation steps (default 8000)"},
        {"--n", F_I64, &n, "N", "points per density panel (default 20000)"},
        {"--seed", F_I64, &seed, "S", "seed (default 0)"},
        {"--eval-n", F_I64, &eval_n, "N", "samples of the metric table (default 2000)"},
        {"--set", F_KV, &dopts, "KEY=VALUE", "distiller option (repeatable)"},
        {"--student-set", F_KV, &sopts, "KEY=VALUE", "student network option (repeatable)"},
    };
    cli_common co;
    const char *pos[1];
    int npos;
    fmd_backend *be = NULL;
    fmd_teacher *T = NULL;
    fmd_student *S = NULL, *ema = NULL;
    fmd_distiller *D = NULL;
    fmd_sampler *sm = NULL;
    fmd_options *so = NULL;
    float *pts[3] = {NULL, NULL, NULL};
    distill_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    char p_demo[4096], p_loss[4096], p_student[4096];
    int rc = cli_parse(&cmd, fl, NFLAGS(fl), &co, argc, argv, pos, 0, &npos);
    if (rc || co.help) goto out;
    if (steps < 1 || n < 100 || n > 10000000 || seed < 0 || eval_n < 2) {
        rc = cli_err(CLI_USAGE, "--steps must be >= 1, --n in [100, 1e7], --eval-n >= 2, --seed >= 0");
        goto out;
    }
    if ((rc = join(p_demo, sizeof p_demo, dir, "demo.png")) ||
        (rc = join(p_loss, sizeof p_loss, dir, "loss.png")) ||
        (rc = join(p_student, sizeof p_student, dir, "student.fmd")))
        goto out;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        rc = cli_err(CLI_FAIL, "cannot create '%s': %s", dir, strerror(errno));
        goto out;
    }
    if ((rc = ensure_opts(&dopts)) || (rc = ensure_opts(&sopts))) goto out;
    /* The demo's defaults: the benchmarks' student size (docs/distiller.md)
     * and a cosine learning-rate decay over the run. */
    if ((!has_key(dopts, "seed") && fmd_options_set_i64(dopts, "seed", seed)) ||
        (!has_key(dopts, "progress_every") && fmd_options_set_i64(dopts, "progress_every", 10)) ||
        (!has_key(dopts, "decay_steps") && fmd_options_set_i64(dopts, "decay_steps", steps)) ||
        (!has_key(sopts, "width") && fmd_options_set_i64(sopts, "width", 128)) ||
        (!has_key(sopts, "temb_dim") && fmd_options_set_i64(sopts, "temb_dim", 64)) ||
        (!has_key(sopts, "seed") && fmd_options_set_i64(sopts, "seed", seed))) {
        rc = cli_lib_err("options");
        goto out;
    }
    if ((rc = cli_backend(&co, &be))) goto out;
    if (fmd_teacher_create_preset("ring8", &T) != FMD_OK) {
        rc = cli_lib_err("ring8");
        goto out;
    }
    if (fmd_student_create(T, be, sopts, &S) != FMD_OK ||
        fmd_distiller_create(T, S, be, dopts, &D) != FMD_OK) {
        rc = cli_lib_err("cannot set up the distillation");
        goto out;
    }
    if (!co.quiet && !co.json)
        fprintf(stderr, "distilling ring8 (%lld steps, %lld student parameters, %s)\n",
                (long long)steps, (long long)fmd_student_num_params(S), fmd_backend_device(be));
    double t0 = wall();
    if ((rc = run_distiller(D, steps, co.quiet || co.json, &ctx))) goto out;
    double train_s = wall() - t0;
    if (fmd_distiller_ema_student(D, &ema) != FMD_OK || fmd_student_save(ema, p_student) != FMD_OK) {
        rc = cli_lib_err("cannot save the student");
        goto out;
    }
    /* The three panels, all from the same noises. */
    if (fmd_sampler_create(ema, T, NULL, &sm) != FMD_OK || fmd_options_create(&so) != FMD_OK) {
        rc = cli_lib_err("sampler");
        goto out;
    }
    for (int p = 0; p < 3; p++) {
        pts[p] = malloc((size_t)n * 2 * sizeof(float));
        if (!pts[p]) {
            rc = cli_err(CLI_FAIL, "out of memory");
            goto out;
        }
    }
    int64_t nfe[3] = {0, 0, 0};
    fmd_status st = fmd_options_set_str(so, "method", "teacher");
    if (!st) st = fmd_sampler_sample(sm, NULL, n, 7, 0, so, pts[0], n * 2, &nfe[0]);
    if (!st) st = fmd_options_set_str(so, "solver", "euler");
    if (!st) st = fmd_options_set_i64(so, "steps", 1);
    if (!st) st = fmd_sampler_sample(sm, NULL, n, 7, 0, so, pts[1], n * 2, &nfe[1]);
    if (!st) st = fmd_sampler_sample(sm, NULL, n, 7, 0, NULL, pts[2], n * 2, &nfe[2]);
    if (st) {
        rc = cli_lib_err("sampling failed");
        goto out;
    }
    /* Square bounds around the teacher's samples. */
    double m = 0;
    for (int64_t i = 0; i < 2 * n; i++) m = fmax(m, fabs((double)pts[0][i]));
    m = m > 0 ? 1.15 * m : 1;
    const double bounds[4] = {-m, m, -m, m};
    char t0s[64], t1s[64], t2s[64];
    snprintf(t0s, sizeof t0s, "teacher dopri5 (%lld NFE)", (long long)nfe[0]);
    snprintf(t1s, sizeof t1s, "teacher Euler, 1 NFE");
    snprintf(t2s, sizeof t2s, "student, 1 NFE");
    const float *cp[3] = {pts[0], pts[1], pts[2]};
    const int64_t counts[3] = {n, n, n};
    const char *titles[3] = {t0s, t1s, t2s};
    if (fmd_plot_density_panels(p_demo, 3, cp, counts, titles, bounds, 320) != FMD_OK) {
        rc = cli_lib_err("cannot write demo.png");
        goto out;
    }
    if (ctx.curve.n > 0 && (rc = write_curve(p_loss, &ctx.curve))) goto out;
    static const int euler[4] = {1, 2, 4, 8};
    if (co.json) {
        printf("{\"steps\": %lld, \"train_seconds\": %.3f, \"demo_png\": ", (long long)steps, train_s);
        json_str(stdout, p_demo);
        printf(", \"loss_png\": ");
        json_str(stdout, p_loss);
        printf(", \"student\": ");
        json_str(stdout, p_student);
        printf(", \"results\": ");
        rc = cli_eval_table(T, ema, eval_n, 1234, euler, 4, 1, NULL);
        printf("}\n");
    } else {
        printf("distilled ring8 in %.1f s (%lld steps)\n\n", train_s, (long long)steps);
        rc = cli_eval_table(T, ema, eval_n, 1234, euler, 4, 0, NULL);
        printf("\n(map_err: E|x - Phi(z)|^2 / Var Phi against the exact teacher ODE; energy: "
               "energy distance\nto teacher samples, floor = two teacher sample sets; lower is "
               "better)\n\npictures: %s\n          %s\nstudent:  %s\n", p_demo, p_loss, p_student);
    }
out:
    for (int p = 0; p < 3; p++) free(pts[p]);
    series_free(&ctx.curve);
    fmd_options_destroy(so);
    fmd_options_destroy(dopts);
    fmd_options_destroy(sopts);
    fmd_sampler_destroy(sm);
    fmd_distiller_destroy(D);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_backend_destroy(be);
    return rc;
}
