/* fmdfile.h - the .fmd checkpoint container (internal API).
 *
 * A .fmd file holds string metadata (key -> value) and named tensors
 * (dtype f32/i32/u8/f64, up to FMDF_MAX_DIMS dimensions), each payload
 * zlib-deflated and protected by CRC32.  The byte layout is documented in
 * docs/file-format.md; in short:
 *
 *   [0]        header  (16 bytes): magic "\x89FMD\r\n\x1a\n", u32 version, u32 flags
 *   [16]       payloads, one per tensor, back to back (stored, deflate, or
 *              byte-shuffled deflate)
 *   [idx_off]  index: metadata entries, then tensor entries (name, dtype,
 *              shape, offset, stored size, raw size, CRC32s)
 *   [end-32]   trailer: u64 idx_off, u64 idx_size, u32 idx_crc32,
 *              u32 reserved (0), "FMDEND\0\0"
 *
 * All integers little-endian.  The index sits at the end so the writer can
 * stream tensors without holding them in memory.
 *
 * Writer: fmdf_writer_begin(path) opens "<path>.tmp.XXXXXX" in the same
 * directory; tensors are deflated and written as they are added; commit
 * writes the index and trailer, fsyncs the file, renames it over `path` and
 * fsyncs the directory.  Any failure (or fmdf_writer_abort) removes the
 * temporary file: an existing file at `path` is never touched until the
 * final rename, so a crash mid-save leaves the old checkpoint intact.
 *
 * Reader: fmdf_open checks the header, the trailer, and every length and
 * offset in the index against the file size before use; allocations are
 * bounded by the file size (index) or by the caller's buffer (payloads are
 * inflated in chunks straight into it).  Every payload's CRC32 is checked.
 * Corrupt or hostile input gives FMD_ERR_FORMAT with a message naming the
 * file offset or the tensor; a newer format version gives FMD_ERR_VERSION.
 *
 * Errors use fmd_seterr (the thread-local last error) like the public API.
 * Handles are not thread-safe; distinct handles are independent.
 */
#ifndef FMD_IO_FMDFILE_H
#define FMD_IO_FMDFILE_H

#include <stddef.h>
#include <stdint.h>
#include "fmd.h"

#define FMDF_FORMAT_VERSION 1u
#define FMDF_MAX_DIMS 8
#define FMDF_MAX_NAME 1024          /* tensor names and metadata keys: max bytes, NUL excluded */
#define FMDF_MAX_VALUE (16u << 20)  /* metadata value bytes                                   */

typedef enum fmdf_dtype {
    FMDF_F32 = 0,
    FMDF_I32 = 1,
    FMDF_U8 = 2,
    FMDF_F64 = 3
} fmdf_dtype;

/* Bytes per element of a dtype (0 for an unknown value). */
size_t fmdf_dtype_size(int dtype);
/* "f32", "i32", "u8", "f64" or "?". */
const char *fmdf_dtype_name(int dtype);

/* ---------------------------------------------------------------- writer */
typedef struct fmdf_writer fmdf_writer;

/* Start writing `path` (through a temporary file next to it).  Errors:
 * FMD_ERR_INVALID_ARG (NULL path/out), FMD_ERR_IO (cannot create the
 * temporary file; the message names it), FMD_ERR_OOM. */
fmd_status fmdf_writer_begin(const char *path, fmdf_writer **out);
/* zlib level for the following tensors: 0 stores raw bytes, 1..9 deflate
 * (default 1).  Errors: FMD_ERR_INVALID_ARG. */
fmd_status fmdf_writer_set_level(fmdf_writer *w, int level);
/* Byte-shuffle the following multi-byte tensors before deflating (default
 * on): byte planes of blocks of 32768 elements, Huffman-only coding at
 * level 1.  About 6x faster to write, 4x faster to read and smaller than
 * plain deflate on float weights.  Errors: FMD_ERR_INVALID_ARG. */
fmd_status fmdf_writer_set_shuffle(fmdf_writer *w, int shuffle);
/* Add a metadata entry (both strings copied; value may be empty).  Keys are
 * unique and at most FMDF_MAX_NAME bytes.  Errors: FMD_ERR_INVALID_ARG
 * (duplicate or bad key), FMD_ERR_OOM. */
fmd_status fmdf_writer_add_meta(fmdf_writer *w, const char *key, const char *value);
/* Conveniences: the value is written as decimal text ("%lld", "%.17g"). */
fmd_status fmdf_writer_add_meta_i64(fmdf_writer *w, const char *key, int64_t value);
fmd_status fmdf_writer_add_meta_f64(fmdf_writer *w, const char *key, double value);
/* Deflate and append a tensor of ndim (0..FMDF_MAX_DIMS) dims from host
 * memory `data` (numel * dtype size bytes; may be NULL when numel == 0).
 * Names are unique.  Errors: FMD_ERR_INVALID_ARG (name, dtype, shape),
 * FMD_ERR_IO (write failed, message names the temporary file), FMD_ERR_OOM. */
fmd_status fmdf_writer_add_tensor(fmdf_writer *w, const char *name, fmdf_dtype dtype, int ndim,
                                  const int64_t *shape, const void *data);
/* Finish: index, trailer, fsync, rename over the target, fsync the
 * directory.  Always releases w.  If an earlier add failed, commit returns
 * that first error (and writes nothing).  Errors: FMD_ERR_IO, FMD_ERR_OOM, or
 * the earlier error.  On any error the target is unchanged. */
fmd_status fmdf_writer_commit(fmdf_writer *w);
/* Drop everything, remove the temporary file, release w.  NULL-safe. */
void fmdf_writer_abort(fmdf_writer *w);

/* ---------------------------------------------------------------- reader */
typedef struct fmdf_reader fmdf_reader;

typedef struct fmdf_tensor_info {
    const char *name;                 /* owned by the reader, NUL-terminated */
    fmdf_dtype dtype;
    int ndim;
    int64_t shape[FMDF_MAX_DIMS];
    int64_t numel;                    /* product of shape (1 when ndim == 0) */
    uint64_t nbytes;                  /* numel * dtype size (raw payload)    */
} fmdf_tensor_info;

/* Open and validate a file (header, trailer, index; payload CRCs are
 * checked when a tensor is read).  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO
 * (cannot open/read), FMD_ERR_FORMAT (not an .fmd or corrupt; message names
 * the offset), FMD_ERR_VERSION (format newer than this library), FMD_ERR_OOM. */
fmd_status fmdf_open(const char *path, fmdf_reader **out);
/* The same over a memory image (not copied: `data` must outlive the reader).
 * Used by the fuzzer and by callers that hold the bytes already. */
fmd_status fmdf_open_memory(const void *data, size_t size, fmdf_reader **out);
/* Release a reader.  NULL-safe. */
void fmdf_close(fmdf_reader *r);

uint32_t fmdf_format_version(const fmdf_reader *r);

/* Metadata in file order.  Strings are owned by the reader. */
int fmdf_meta_count(const fmdf_reader *r);
const char *fmdf_meta_key(const fmdf_reader *r, int i);      /* NULL out of range */
const char *fmdf_meta_value(const fmdf_reader *r, int i);    /* NULL out of range */
/* Value of key, or NULL when absent (no error is set). */
const char *fmdf_meta_get(const fmdf_reader *r, const char *key);
/* Value of key, parsed.  Errors: FMD_ERR_FORMAT naming the key when it is
 * absent or not a whole decimal integer / a finite number. */
fmd_status fmdf_meta_i64(const fmdf_reader *r, const char *key, int64_t *out);
fmd_status fmdf_meta_f64(const fmdf_reader *r, const char *key, double *out);
/* As fmdf_meta_get but FMD_ERR_FORMAT naming the key when absent. */
fmd_status fmdf_meta_str(const fmdf_reader *r, const char *key, const char **out);

/* Tensors in file order.  Info pointers are owned by the reader. */
int fmdf_tensor_count(const fmdf_reader *r);
const fmdf_tensor_info *fmdf_tensor_at(const fmdf_reader *r, int i);   /* NULL out of range */
const fmdf_tensor_info *fmdf_tensor_find(const fmdf_reader *r, const char *name); /* NULL absent */

/* Inflate tensor `name` into dst (host memory of dst_bytes).  The file's
 * dtype must equal `dtype`; when ndim >= 0 the file's shape must equal
 * shape[0..ndim-1] (ndim < 0 skips the shape check).  dst_bytes must be at
 * least the tensor's nbytes.  The payload CRC32 (stored bytes) and the
 * CRC32 of the inflated bytes are both checked.  Errors:
 * FMD_ERR_INVALID_ARG (tensor absent, dtype/shape mismatch, dst too small;
 * the message names the tensor and both shapes), FMD_ERR_FORMAT (corrupt
 * payload; names the tensor and offset), FMD_ERR_IO.  On error dst may have
 * been partly written. */
fmd_status fmdf_read_tensor(fmdf_reader *r, const char *name, fmdf_dtype dtype, int ndim,
                            const int64_t *shape, void *dst, size_t dst_bytes);

/* Format a shape as "[2, 3, 4]" into buf (for messages); returns buf. */
char *fmdf_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

#endif
