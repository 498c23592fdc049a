/* idx.h - reader of the IDX format of MNIST / Fashion-MNIST, plain or
 * gzip-compressed (detected by the gzip magic; one gzip member, inflated
 * with zlib, whose allocations go through the library's allocator hooks).
 *
 * Layout: u8 0, u8 0, u8 type (0x08 = unsigned byte), u8 ndim, then ndim
 * big-endian u32 sizes, then the data row-major.  Only type 0x08 is
 * supported (what the MNIST files use).  Every size is checked: ndim in
 * 1..4, each dimension >= 1, total <= the caller's max_bytes (itself at
 * most IDX_MAX_BYTES), and the data must be exactly that long (no short
 * read, no trailing bytes).  Nothing proportional to the declared size is
 * allocated before it is checked: a plain file's size must equal header +
 * data before the buffer is allocated; gzip data goes into a buffer that
 * starts at 1 MiB and doubles as decompressed bytes arrive, so a small
 * file that declares a large array costs what it holds, not what it claims. */
#ifndef FMD_IO_IDX_H
#define FMD_IO_IDX_H

#include <stdint.h>
#include "fmd.h"

#define IDX_MAX_BYTES ((int64_t)1 << 31)          /* the largest max_bytes */
#define IDX_DEFAULT_MAX_BYTES ((int64_t)1 << 30)  /* fmd_dataset_load_idx's cap */

typedef struct idx_array {
    int ndim;
    int64_t dims[4];
    int64_t count;      /* product of dims */
    uint8_t *data;      /* fmd_malloc'ed, count bytes */
} idx_array;

/* Read path into *out (caller frees out->data with fmd_free); the data may
 * hold at most max_bytes bytes (decompressed, for gzip).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO (cannot open), FMD_ERR_FORMAT (bad magic,
 * sizes, more than max_bytes (named), truncated or over-long data; the
 * message names the offset),
 * FMD_ERR_UNSUPPORTED (element type other than u8), FMD_ERR_OOM. */
fmd_status idx_read(const char *path, int64_t max_bytes, idx_array *out);
void idx_free(idx_array *a);

#endif
