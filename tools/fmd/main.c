/* main.c - `fmd`, the command-line face of libfmd: dispatch to the
 * subcommands (cmd_*.c).  Every error is one line on stderr and a
 * non-zero exit (1: failure, 2: usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} k_cmds[] = {
    {"info", cmd_info, "describe a .fmd or safetensors file (or, without FILE, the library)"},
    {"train-teacher", cmd_train_teacher, "train a network teacher by flow matching on data"},
    {"distill", cmd_distill, "distill a teacher into a one-step student without data (FreeFlow)"},
    {"sample", cmd_sample, "generate samples from a student or a teacher (.png or .npy)"},
    {"eval", cmd_eval, "score a student and the teacher's Euler sampler against the teacher"},
    {"demo", cmd_demo, "distill the built-in ring8 teacher and draw the result (about a minute)"},
    {"export", cmd_export, "write the deployable student of a distiller checkpoint (EMA weights, metadata)"},
    {"options", cmd_options, "list the options every library object takes, with defaults"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: fmd COMMAND [options]   (fmd COMMAND --help for its options)\n\n"
               "libfmd %s: data-free flow map distillation and one-step generation.\n\ncommands:\n",
            fmd_version());
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        fprintf(f, "  %-14s %s\n", k_cmds[i].name, k_cmds[i].summary);
    fprintf(f, "\nTeachers are named as mixture:NAME (ring8, grid25, classes4-d32), spec:FILE,\n"
               "FILE.fmd or FILE.safetensors (with --arch).  Docs: docs/cli.md.\n");
}

/* OpenMP threads that spin while they wait make small networks many times
 * slower when other processes share the cores (measured: 1 step/s instead
 * of 40 on a busy 2-core machine).  The OpenMP runtime reads its policy when
 * it is loaded, before main, so unless the user chose a policy the tool
 * restarts itself once with OMP_WAIT_POLICY=passive. */
static void prefer_passive_wait(char **argv)
{
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the runtime's default policy */
}

int main(int argc, char **argv)
{
    prefer_passive_wait(argv);
    if (argc < 2) return cli_err(CLI_USAGE, "no command given (commands: info, train-teacher, "
                                 "distill, export, sample, eval, demo, options; see fmd --help)");
    const char *c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(c, "--version") == 0) {
        printf("fmd %s\n", fmd_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (strcmp(c, k_cmds[i].name) == 0) return k_cmds[i].fn(argc - 1, argv + 1);
    return cli_err(CLI_USAGE, "unknown command '%s' (commands: info, train-teacher, distill, "
                   "export, sample, eval, demo, options; see fmd --help)", c);
}
