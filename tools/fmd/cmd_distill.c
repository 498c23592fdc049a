/* cmd_distill.c - `fmd distill`: distill a teacher into a one-step student, with checkpoints and resume. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* --------------------------------------------------------------- distill */

/* Steps of a fresh run when --steps is not given. */
#define DISTILL_DEFAULT_STEPS 2000

int cmd_distill(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "distill", "--teacher T --out S.fmd [--steps N] [--resume] [--set key=value ...]",
        "Distill a teacher into a one-step student without data (FreeFlow) and save the\n"
        "training state to S.fmd (its EMA student loads with --student S.fmd).",
        "--steps is the planned length: the learning rate decays over it.  With --resume the\n"
        "run continues from S.fmd with the options it was trained with, up to --steps in\n"
        "total (default: its planned length).  Ctrl-C stops at the next progress report and\n"
        "keeps the last checkpoint.\n"};
    const char *teacher = NULL, *outp = NULL, *curve = NULL, *arch = NULL, *cfgi = NULL;
    const char *commk = NULL;
    fmd_comm *comm = NULL;
    int64_t steps = -1, seed = -1, ckpt_every = -1;
    double cfg = NAN;
    int resume = 0, force = 0;
    fmd_options *dopts = NULL, *sopts = NULL, *topts = NULL;
    cli_flag fl[] = {
        {"--teacher", F_STR, &teacher, "T", "mixture:NAME, spec:FILE, FILE.fmd or FILE.safetensors"},
        {"--out", F_STR, &outp, "S.fmd", "the distiller checkpoint to write"},
        {"--steps", F_I64, &steps, "N", "total distillation steps, the planned length (default 2000; "
                                        "with --resume the checkpoint's)"},
        {"--resume", F_BOOL, &resume, NULL, "continue from --out"},
        {"--force", F_BOOL, &force, NULL, "replace an existing --out (without it, an existing one is refused)"},
        {"--seed", F_I64, &seed, "S", "seed of the distiller and of the student's initialisation (default 0)"},
        {"--batch", F_OPT, &dopts, "B", NULL, "batch", "distiller"},
        {"--lr", F_OPT, &dopts, "LR", NULL, "lr", "distiller"},
        {"--cfg", F_F64, &cfg, "W", "teacher guidance scale (conditional teachers; default 1: none)"},
        {"--cfg-interval", F_STR, &cfgi, "LO,HI", "guidance interval in t (default 0,1)"},
        {"--checkpoint-every", F_I64, &ckpt_every, "N", "save --out every N steps (default steps/10)"},
        {"--curve", F_STR, &curve, "FILE.png", "also draw the loss curve"},
        {"--arch", F_STR, &arch, "ARCH", "architecture of a safetensors teacher"},
        {"--teacher-set", F_KV, &topts, "KEY=VALUE", "teacher loading option (repeatable)"},
        {"--student-set", F_KV, &sopts, "KEY=VALUE", "student option (repeatable; listed below)"},
        {"--set", F_KV, &dopts, "KEY=VALUE", "distiller option (repeatable; listed below)"},
        {"--comm", F_STR, &commk, "KIND", "data parallelism: mpi, none or auto (default auto: the "
                                          "MPI ranks under mpirun -np N, else one process)"},
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
    if (rc) goto out;
    if (co.help) {
        static const char *const run_keys[] = {"checkpoint", "checkpoint_every", "progress_every", NULL};
        printf("\ndistiller options (--set KEY=VALUE; `fmd options distiller --markdown` for a table):\n");
        cli_print_options(stdout, "distiller", 0, run_keys);
        printf("\nstudent options (--student-set KEY=VALUE):\n");
        cli_print_options(stdout, "student", 0, NULL);
        goto out;
    }
    if (!teacher || !outp) {
        rc = cli_err(CLI_USAGE, "--teacher and --out are required (see fmd distill --help)");
        goto out;
    }
    if (steps < -1 || steps == 0 || (steps == -1 && has_key(dopts, "steps"))) {
        rc = cli_err(CLI_USAGE, steps == -1 ? "give the planned length with --steps, not --set steps"
                                            : "--steps must be >= 1 (got %lld)", (long long)steps);
        goto out;
    }
    if (ckpt_every == 0 || ckpt_every < -1) {
        rc = cli_err(CLI_USAGE, "--checkpoint-every must be >= 1 (got %lld)", (long long)ckpt_every);
        goto out;
    }
    if (resume && access(outp, R_OK) != 0) {
        rc = cli_err(CLI_FAIL, "--resume: cannot read '%s' (%s)", outp, strerror(errno));
        goto out;
    }
    if (!resume && !force && access(outp, F_OK) == 0) {
        rc = cli_err(CLI_FAIL, "--out '%s' exists: give --resume to continue it or --force to "
                     "replace it", outp);
        goto out;
    }
    if (!resume && steps < 0) steps = DISTILL_DEFAULT_STEPS;
    if ((rc = ensure_opts(&dopts)) || (rc = ensure_opts(&sopts))) goto out;
    {
        fmd_status st = FMD_OK;
        if (seed >= 0 && !has_key(dopts, "seed")) st = fmd_options_set_i64(dopts, "seed", seed);
        if (!st && seed >= 0 && !has_key(sopts, "seed")) st = fmd_options_set_i64(sopts, "seed", seed);
        if (!st && steps > 0) st = fmd_options_set_i64(dopts, "steps", steps);
        if (!st && !has_key(dopts, "checkpoint")) st = fmd_options_set_str(dopts, "checkpoint", outp);
        if (!st && !has_key(dopts, "checkpoint_every") && (ckpt_every > 0 || steps > 0))
            st = fmd_options_set_i64(dopts, "checkpoint_every",
                                     ckpt_every > 0 ? ckpt_every : (steps / 10 > 0 ? steps / 10 : 1));
        if (!st && !has_key(dopts, "progress_every")) st = fmd_options_set_i64(dopts, "progress_every", 10);
        if (st) {
            rc = cli_lib_err("bad option");
            goto out;
        }
    }
    if ((rc = cli_comm(commk, &co, &comm))) goto out;
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
    /* a data pool is solved inside fmd_distiller_create, which can take a
     * while on a network teacher: a transient note on a terminal (cleared, so
     * that an error stays one line), the time taken once it is done */
    int pools = has_key(dopts, "data_pool") && !co.quiet && !co.json;
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
    if (fmd_distiller_set_comm(D, comm) != FMD_OK) {
        rc = cli_lib_err("--comm");
        goto out;
    }
    if (fmd_comm_size(comm) > 1 && !co.quiet)
        fprintf(stderr, "fmd distill: data-parallel over %d ranks (%s)\n", fmd_comm_size(comm),
                fmd_comm_describe(comm));
    if (resume && fmd_distiller_resume(D, outp) != FMD_OK) {
        rc = cli_lib_err("cannot resume");
        goto out;
    }
    if (pools) fprintf(stderr, "fmd distill: teacher sample pool solved in %.1f s\n", pool_s);
    const int64_t done = fmd_distiller_steps(D);
    if (steps < 0) steps = fmd_distiller_planned_steps(D);
    if (resume && steps <= done) {
        rc = cli_err(CLI_USAGE, "'%s' is at step %lld, already past --steps %lld: nothing to do "
                     "(give --steps M > %lld to continue)", outp, (long long)done, (long long)steps,
                     (long long)done);
        goto out;
    }
    double t0 = wall();
    /* the run saves --out at its end (option checkpoint) */
    if ((rc = run_distiller(D, steps, co.quiet || co.json, &ctx))) goto out;
    if (curve && ctx.curve.n > 0 && fmd_comm_rank(comm) == 0 && (rc = write_curve(curve, &ctx.curve))) goto out;
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
    return cli_comm_end(comm, rc);
}
