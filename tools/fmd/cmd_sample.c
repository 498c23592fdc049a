/* cmd_sample.c - `fmd sample`: generate samples from a student or a teacher, with Best-of-N search. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

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
        /* the teacher next to a guided student (--finish, --refine, --method
         * teacher) uses the student's guidance unless --cfg says otherwise */
        const int teacher_used = T && (!S || finish || refine || (method && strcmp(method, "teacher") == 0));
        double w, lo, hi;
        int have = 0;
        if (!isnan(cfg) || cfgi || teacher_used) {
            if ((rc = cli_guidance(teacher_used ? S : NULL, cfg, cfgi, co.quiet || co.json, &w, &lo,
                                   &hi, &have)))
                goto out;
        }
        if (!st && have) st = fmd_options_set_f64(so, "cfg", w);
        if (!st && have && (cfgi || lo != 0 || hi != 1)) {
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
