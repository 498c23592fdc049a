/* cmd_info.c - `fmd info`: describe a checkpoint, or the library and its backends. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"

#define NFLAGS(a) ((int)(sizeof(a) / sizeof((a)[0])))

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
