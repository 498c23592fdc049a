/* cmd_export.c - `fmd export`: the deployable student of a distiller checkpoint. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

int cmd_export(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "export", "CHECKPOINT --out S.fmd",
        "Write the EMA student of a distiller checkpoint (fmd distill --out) as a student\n"
        "file: the weights a deployment needs and the record of how it was made (teacher,\n"
        "guidance, distiller options; `fmd info` shows them), without the training state.",
        NULL};
    const char *outp = NULL;
    cli_flag fl[] = {
        {"--out", F_STR, &outp, "S.fmd", "the student file to write (atomically)"},
    };
    cli_common co;
    const char *pos[1];
    int npos;
    fmd_backend *be = NULL;
    fmd_student *S = NULL;
    int rc = cli_parse(&cmd, fl, NFLAGS(fl), &co, argc, argv, pos, 1, &npos);
    if (rc || co.help) return rc;
    if (npos != 1 || !outp) return cli_err(CLI_USAGE, "give CHECKPOINT and --out (see fmd export --help)");
    if (strcmp(pos[0], outp) == 0)
        return cli_err(CLI_USAGE, "--out must differ from the checkpoint '%s'", outp);
    if ((rc = cli_check_writable(outp, "--out"))) return rc;
    if ((rc = load_models(&co, pos[0], NULL, NULL, NULL, &be, &S, NULL))) goto out;
    if (fmd_student_save(S, outp) != FMD_OK) {
        rc = cli_lib_err("cannot write the student");
        goto out;
    }
    if (co.json) {
        printf("{\"out\": ");
        json_str(stdout, outp);
        printf(", \"num_params\": %lld}\n", (long long)fmd_student_num_params(S));
    } else if (!co.quiet) {
        const char *g = fmd_student_made(S, "guidance");
        printf("wrote %s (%lld parameters%s%s)\n", outp, (long long)fmd_student_num_params(S),
               g ? ", guidance " : "", g ? g : "");
    }
out:
    fmd_student_destroy(S);
    fmd_backend_destroy(be);
    return rc;
}
