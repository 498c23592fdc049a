/* cmd_eval.c - `fmd eval`: score a student and the teacher's Euler sampler against the teacher. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

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
        "teacher's adaptive ODE solution (docs/math.md section 11): map error, energy distance\n"
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
        {"--cfg", F_F64, &cfg, "W", "teacher guidance scale (default: the student's, else the teacher's)"},
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
    {
        /* a guided student is scored against the teacher with its guidance */
        double w, lo, hi;
        int have;
        if ((rc = cli_guidance(S, cfg, cfgi, co.quiet || co.json, &w, &lo, &hi, &have))) goto out;
        if (have && fmd_teacher_set_guidance(T, w, lo, hi) != FMD_OK) {
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
