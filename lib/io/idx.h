/* idx.h - reader of the IDX format of MNIST / Fashion-MNIST, plain or
 * gzip-compressed (detected by the gzip magic; one gzip member, inflated
 * with zlib, whose allocations go through the library's allocator hooks).
 *
 * Layout: u8 0, u8 0, u8 type (0x08 = unsigned byte), u8 ndim, then ndim
 * big-endian u32 sizes, then the data row-major.  Only type 0x08 is
 * supported (what the MNIST files use).  Every size is checked: ndim in
 * 1..4, each dimension >= 1, total <= IDX_MAX_BYTES, and the data must be
 * exactly that long (no short read, no trailing bytes). */
#ifndef FMD_IO_IDX_H
#define FMD_IO_IDX_H

#include <stdint.h>
#include "fmd.h"

#define IDX_MAX_BYTES ((int64_t)1 << 31)

typedef struct idx_array {
    int ndim;
    int64_t dims[4];
    int64_t count;      /* product of dims */
    uint8_t *data;      /* fmd_malloc'ed, count bytes */
} idx_array;

/* Read path into *out (caller frees out->data with fmd_free).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO (cannot open), FMD_ERR_FORMAT (bad magic,
 * sizes, truncated or over-long data; the message names the offset),
 * FMD_ERR_UNSUPPORTED (element type other than u8), FMD_ERR_OOM. */
fmd_status idx_read(const char *path, idx_array *out);
void idx_free(idx_array *a);

#endif
