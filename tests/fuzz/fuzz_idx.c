/* fuzz_idx.c - libFuzzer target for the IDX reader (lib/io/idx.c), plain
 * and gzip (the seeds hold both): read with a 16 MiB cap on the data, then
 * the data set layer (fmd_dataset_load_idx_opts) on the same bytes as
 * images. */
#include "fuzz_memfile.h"
#include "fmd.h"
#include "io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    idx_array a;
    if (idx_read(path, (int64_t)16 << 20, &a) == FMD_OK) idx_free(&a);
    static fmd_options *o;
    if (!o && fmd_options_create(&o) == FMD_OK) fmd_options_set_i64(o, "max_bytes", 16 << 20);
    fmd_dataset *d = NULL;
    if (fmd_dataset_load_idx_opts(path, NULL, o, &d) == FMD_OK) fmd_dataset_destroy(d);
    close(fd);
    return 0;
}
