/* fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (lib/io/safetensors.c): parse a memory image, look up the metadata, and
 * convert every tensor of at most 1 M elements to float32. */
#include <stdint.h>
#include <stdlib.h>
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float buf[1 << 20];
    st_file *f = NULL;
    if (st_open_mem(data, size, &f) != FMD_OK) return 0;
    (void)st_metadata(f, "format");
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        (void)st_find(f, t->name);
        if (t->numel > (int64_t)(sizeof buf / sizeof buf[0])) continue;
        (void)st_read_f32(f, t, buf, t->numel);
    }
    st_close(f);
    return 0;
}
