/* fuzz_fmd.c - libFuzzer target for the .fmd reader (lib/io/fmdfile.c):
 * open a memory image, read every metadata value and every tensor whose
 * declared size fits a 4 MiB buffer.  Any input must give FMD_OK or a
 * status, never a crash, a hang, a leak or a huge allocation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/fmdfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char buf[4u << 20];
    fmdf_reader *r = NULL;
    if (fmdf_open_memory(data, size, &r) != FMD_OK) return 0;
    for (int i = 0; i < fmdf_meta_count(r); i++) {
        const char *k = fmdf_meta_key(r, i);
        int64_t iv;
        double dv;
        (void)fmdf_meta_get(r, k);
        (void)fmdf_meta_i64(r, k, &iv);
        (void)fmdf_meta_f64(r, k, &dv);
    }
    for (int i = 0; i < fmdf_tensor_count(r); i++) {
        const fmdf_tensor_info *t = fmdf_tensor_at(r, i);
        if (t->nbytes > sizeof buf) continue;
        (void)fmdf_read_tensor(r, t->name, t->dtype, t->ndim, t->shape, buf, sizeof buf);
    }
    fmdf_close(r);
    return 0;
}
