/* header_check.c - fmd.h must compile alone as strict C99 and as C++
 * (compiled by tests/abi.cmake with -pedantic-errors -Werror). */
#include "fmd.h"

int fmd_header_check(void);
int fmd_header_check(void)
{
    fmd_status st = FMD_OK;
    fmd_backend *be = 0;
    fmd_options *o = 0;
    (void)be; (void)o;
    return (int)st + FMD_VERSION_HEX;
}
