/* fuzz_npy.c - libFuzzer target for the .npy reader (fmd_npy_load): any
 * input gives FMD_OK or a status, never a crash, a leak or an allocation
 * larger than the file justifies. */
#include "fuzz_memfile.h"
#include "fmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    const char *dt;
    int nd;
    int64_t sh[8];
    void *x = NULL;
    if (fmd_npy_load(path, &dt, &nd, sh, 8, &x) == FMD_OK) fmd_npy_free(x);
    close(fd);
    return 0;
}
