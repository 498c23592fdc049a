/* fuzz_fmd_model.c - libFuzzer target for the .fmd model layer with the
 * index CRC recomputed: without that almost every mutation of the index is
 * refused by its checksum and the parser behind it is never reached.  The
 * trailer (last 32 bytes: index offset u64, index size u64, index CRC u32,
 * 0, "end" magic) names the index; when it lies inside the input, its CRC
 * is rewritten before the file is read by the container reader (every
 * metadata value and tensor), then loaded as a teacher (mixture or
 * network, lib/api/teacher_io.c + lib/io/model_io.c) and as a student. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "fuzz_memfile.h"
#include "fmd.h"
#include "io/fmdfile.h"

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static fmd_backend *be;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!be && fmd_backend_open("cpu", &be) != FMD_OK) return 0;
    uint8_t *m = malloc(size ? size : 1);
    if (!m) return 0;
    memcpy(m, data, size);
    if (size >= 48) {
        uint8_t *tr = m + size - 32;
        uint64_t ioff = get_u64(tr), isz = get_u64(tr + 8);
        if (ioff <= size - 32 && isz <= size - 32 - ioff) {
            uint32_t c = (uint32_t)crc32(0L, m + ioff, (uInt)isz);
            for (int i = 0; i < 4; i++) tr[16 + i] = (uint8_t)(c >> (8 * i));
        }
    }
    static unsigned char buf[1u << 20];
    fmdf_reader *r = NULL;
    if (fmdf_open_memory(m, size, &r) == FMD_OK) {
        for (int i = 0; i < fmdf_meta_count(r); i++) {
            const char *k = fmdf_meta_key(r, i);
            int64_t iv;
            double dv;
            (void)fmdf_meta_i64(r, k, &iv);
            (void)fmdf_meta_f64(r, k, &dv);
        }
        for (int i = 0; i < fmdf_tensor_count(r); i++) {
            const fmdf_tensor_info *t = fmdf_tensor_at(r, i);
            if (t->nbytes <= sizeof buf)
                (void)fmdf_read_tensor(r, t->name, t->dtype, t->ndim, t->shape, buf, sizeof buf);
        }
        fmdf_close(r);
        char path[64];
        int fd = fuzz_memfile(m, size, path, sizeof path);
        if (fd >= 0) {
            fmd_teacher *T = NULL;
            if (fmd_teacher_load(be, path, NULL, &T) == FMD_OK) fmd_teacher_destroy(T);
            fmd_student *S = NULL;
            if (fmd_student_load(path, be, &S) == FMD_OK) fmd_student_destroy(S);
            close(fd);
        }
    }
    free(m);
    return 0;
}
