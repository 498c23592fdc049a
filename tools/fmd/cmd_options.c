/* cmd_options.c - `fmd options`: the library's option tables (every key a
 * consumer takes, its type, default, range, condition and meaning), as text
 * or as the markdown tables of docs/. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

int cmd_options(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "options", "[CONSUMER] [--markdown]",
        "List the options a library object takes, from the library's own tables: every key,\n"
        "its type, default, range, the condition under which it acts, and its meaning.",
        "CONSUMER: distiller, student, train, sampler, solver, evaluator, teacher_load,\n"
        "safetensors (all when omitted).  --set / --student-set / --teacher-set take these keys.\n"};
    int markdown = 0;
    cli_flag fl[] = {
        {"--markdown", F_BOOL, &markdown, NULL, "print markdown tables (as in docs/)", NULL, NULL},
    };
    cli_common co;
    const char *pos[1];
    int npos = 0;
    int rc = cli_parse(&cmd, fl, 1, &co, argc, argv, pos, 1, &npos);
    if (rc || co.help) return rc;
    if (npos == 1) return cli_print_options(stdout, pos[0], markdown, NULL);
    for (int i = 0; fmd_option_consumer(i); i++) {
        const char *c = fmd_option_consumer(i);
        printf(markdown ? "%s### `%s`\n\n" : "%s%s:\n", i ? "\n" : "", c);
        if ((rc = cli_print_options(stdout, c, markdown, NULL))) return rc;
    }
    return CLI_OK;
}
