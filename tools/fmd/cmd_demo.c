/* cmd_demo.c - `fmd demo`: distill the built-in ring8 teacher and draw what the student learned. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

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
