/* cmd_train.c - `fmd train-teacher`: load a data set and train a network teacher by flow matching. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* --------------------------------------------------------- train-teacher */

typedef struct {
    cli_progress prog;
    int64_t step;   /* of the last report */
} train_ctx;

/* Steps between checkpoints when --checkpoint-every is not given. */
#define TRAIN_CKPT_EVERY 500

static int train_cb(const fmd_train_stats *s, void *user)
{
    train_ctx *c = user;
    c->step = s->step;
    c->prog.total = s->steps;   /* a resumed run's length comes from its checkpoint */
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
            classes = -1; /* the largest label + 1, each label checked by the library */
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
        "train-teacher", "--data SRC --out T.fmd [--steps N] [--resume] [--set key=value ...]",
        "Train a network teacher by flow matching and save it (.fmd).",
        "SRC: mixture:NAME (exact samples of a built-in mixture, --n of them), spec:FILE,\n"
        "idx:IMAGES[,LABELS] (MNIST/Fashion-MNIST IDX, gzip or plain), npy:X.npy[,LABELS.npy].\n"
        "--set keys are those of fmd_teacher_train (arch, width, depth, batch, lr, ema, ...).\n"
        "The output paths are checked before the first step.  The training state (weights,\n"
        "AdamW moments, EMA, step) is saved to the checkpoint (default T.ckpt.fmd) every 500\n"
        "steps, on Ctrl-C or SIGTERM, and at the end; --resume continues it bit for bit\n"
        "with the options it records (give the same --data, --n and --seed).\n"};
    const char *data = NULL, *outp = NULL, *ckpt = NULL, *commk = NULL;
    fmd_comm *comm = NULL;
    int64_t steps = -1, n = 20000, seed = -1, ckpt_every = -1;
    int resume = 0, force = 0;
    fmd_options *o = NULL;
    char ckpt_buf[4096];
    cli_flag fl[] = {
        {"--data", F_STR, &data, "SRC", "training data (see below)"},
        {"--out", F_STR, &outp, "T.fmd", "where to save the teacher"},
        {"--steps", F_I64, &steps, "N", "training steps (default 5000; with --resume the checkpoint's)"},
        {"--checkpoint", F_STR, &ckpt, "C.fmd", "the training-state checkpoint (default: T.ckpt.fmd next to --out)"},
        {"--checkpoint-every", F_I64, &ckpt_every, "N", "steps between checkpoints (default 500)"},
        {"--resume", F_BOOL, &resume, NULL, "continue the run saved in the checkpoint"},
        {"--force", F_BOOL, &force, NULL, "replace an existing --out or start over an existing checkpoint"},
        {"--n", F_I64, &n, "N", "samples drawn from a mixture source (default 20000)"},
        {"--seed", F_I64, &seed, "S", "seed of the data draw and the training (default 0)"},
        {"--set", F_KV, &o, "KEY=VALUE", "a training option (repeatable)"},
        {"--comm", F_STR, &commk, "KIND", "data parallelism: mpi, none or auto (default auto: the "
                                          "MPI ranks under mpirun -np N, else one process)"},
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
    if (steps == 0 || steps < -1 || ckpt_every == 0 || ckpt_every < -1) {
        rc = cli_err(CLI_USAGE, "%s must be >= 1 (got %lld)", steps == 0 || steps < -1 ?
                     "--steps" : "--checkpoint-every", (long long)(steps == 0 || steps < -1 ? steps : ckpt_every));
        goto out0;
    }
    if (!ckpt) {   /* T.fmd -> T.ckpt.fmd */
        size_t l = strlen(outp);
        int fmd_ext = l > 4 && strcmp(outp + l - 4, ".fmd") == 0;
        snprintf(ckpt_buf, sizeof ckpt_buf, "%.*s.ckpt.fmd", (int)(fmd_ext ? l - 4 : l), outp);
        ckpt = ckpt_buf;
    }
    if (strcmp(ckpt, outp) == 0) {
        rc = cli_err(CLI_USAGE, "--checkpoint must differ from --out ('%s')", outp);
        goto out0;
    }
    /* every path is checked before any work */
    if ((rc = cli_check_writable(outp, "--out")) || (rc = cli_check_writable(ckpt, "--checkpoint")))
        goto out0;
    /* nothing is replaced without a word: the teacher, or an interrupted run's state */
    if (!force && !resume && access(outp, F_OK) == 0) {
        rc = cli_err(CLI_FAIL, "--out '%s' exists: give --force to replace it", outp);
        goto out0;
    }
    if (!force && !resume && access(ckpt, F_OK) == 0) {
        rc = cli_err(CLI_FAIL, "the checkpoint '%s' of an earlier run exists: --resume continues it, "
                     "--force starts over", ckpt);
        goto out0;
    }
    if (resume && access(ckpt, R_OK) != 0) {
        rc = cli_err(CLI_FAIL, "--resume: cannot read the checkpoint '%s' (%s)", ckpt, strerror(errno));
        goto out0;
    }
    if ((rc = ensure_opts(&o))) goto out0;
    if (steps >= 0 && fmd_options_set_i64(o, "steps", steps)) rc = cli_lib_err("--steps");
    if (!rc && seed >= 0 && fmd_options_set_i64(o, "seed", seed)) rc = cli_lib_err("--seed");
    if (!rc && !has_key(o, "progress_every") && fmd_options_set_i64(o, "progress_every", 10))
        rc = cli_lib_err("options");
    if (!rc && !has_key(o, "checkpoint") && fmd_options_set_str(o, "checkpoint", ckpt))
        rc = cli_lib_err("--checkpoint");
    if (!rc && !has_key(o, "checkpoint_every") &&
        fmd_options_set_i64(o, "checkpoint_every", ckpt_every > 0 ? ckpt_every : TRAIN_CKPT_EVERY))
        rc = cli_lib_err("--checkpoint-every");
    if (!rc && resume && fmd_options_set_str(o, "resume", ckpt)) rc = cli_lib_err("--resume");
    if (rc) goto out0;
    fmd_backend *be = NULL;
    fmd_dataset *ds = NULL;
    fmd_teacher *t = NULL;
    if ((rc = cli_comm(commk, &co, &comm))) goto out0;
    if ((rc = cli_backend(&co, &be))) goto out0;
    if ((rc = load_data(data, n, seed >= 0 ? seed : 0, &ds))) goto out1;
    train_ctx ctx;
    ctx.step = 0;
    int64_t total = steps >= 0 ? steps : 5000;
    if (has_key(o, "steps")) fmd_options_get_i64(o, "steps", &total);
    cli_progress_begin(&ctx.prog, co.quiet || co.json, 0, total);
    catch_sigint();
    double t0 = wall();
    fmd_status st = fmd_teacher_train_comm(comm, be, ds, o, train_cb, &ctx, &t);
    cli_progress_end(&ctx.prog);
    if (st == FMD_ERR_CANCELLED && g_interrupted) {
        rc = cli_err(CLI_FAIL, "interrupted at step %lld: the training state is in '%s' (continue "
                     "with --resume)", (long long)ctx.step, ckpt);
        goto out1;
    }
    if (st != FMD_OK) {
        rc = cli_lib_err("training failed");
        goto out1;
    }
    if (fmd_comm_rank(comm) == 0 && fmd_teacher_save(t, outp) != FMD_OK) {
        rc = cli_lib_err("cannot save the teacher");
        goto out1;
    }
    if (co.json) {
        printf("{\"out\": ");
        json_str(stdout, outp);
        printf(", \"steps\": %lld, \"dim\": %lld, \"classes\": %d, \"seconds\": %.3f}\n",
               (long long)ctx.step, (long long)fmd_teacher_dim(t), fmd_teacher_num_classes(t),
               wall() - t0);
    } else if (!co.quiet) {
        printf("wrote %s (%lld steps, %.1f s; the training state is in %s)\n", outp,
               (long long)ctx.step, wall() - t0, ckpt);
    }
out1:
    fmd_teacher_destroy(t);
    fmd_dataset_destroy(ds);
    fmd_backend_destroy(be);
out0:
    fmd_options_destroy(o);
    return cli_comm_end(comm, rc);
}
