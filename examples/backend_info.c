/* backend_info.c - print the library version and the backends this machine
 * can open.  Build: cc backend_info.c $(pkg-config --cflags --libs fmd) */
#include <stdio.h>
#include "fmd.h"

int main(void)
{
    printf("libfmd %s (header %s)\n", fmd_version(), FMD_VERSION_STRING);
    for (int i = 0; i < fmd_backend_count(); i++) {
        const char *name = fmd_backend_name_at(i);
        fmd_backend *be = NULL;
        if (fmd_backend_open(name, &be) == FMD_OK) {
            fmd_status st = fmd_backend_selfcheck(be);
            printf("  %-5s %s, self-check %s\n", name, fmd_backend_device(be), fmd_status_string(st));
            fmd_backend_destroy(be);
        } else {
            printf("  %-5s unavailable: %s\n", name, fmd_last_error());
        }
    }
    return 0;
}
