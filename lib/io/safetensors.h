/* safetensors.h - a strict reader (and a small writer) of the safetensors
 * format (https://github.com/huggingface/safetensors), so that weights
 * exported from PyTorch (SiT/DiT checkpoints) load by name into an nn_model.
 *
 * File layout: u64 little-endian N, then N bytes of a JSON object
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *    ..., "__metadata__": {"key": "value", ...}}
 * then the byte buffer; offsets are relative to its start.
 *
 * Nothing read from the file is trusted: the header length is bounded
 * (ST_MAX_HEADER) and checked against the file size, the JSON is parsed
 * strictly (no duplicate keys, no unknown fields in a tensor entry, no
 * trailing bytes other than spaces, bounded nesting), every shape product
 * and every [begin, end) range is checked for overflow, for agreement with
 * dtype size and for lying inside the file, before any data is read.
 * Errors name the tensor or the byte offset. */
#ifndef FMD_IO_SAFETENSORS_H
#define FMD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "fmd.h"
#include "nn/model.h"

#define ST_MAX_HEADER (100u << 20)   /* 100 MiB, as the reference implementation */
#define ST_MAX_DIMS 8

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_I64, ST_U64, ST_F64, ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;          /* byte range relative to the data start */
} st_tensor;

typedef struct st_file st_file;

/* Open and validate path.  *out owned by the caller (st_close).  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO (cannot open/read), FMD_ERR_FORMAT
 * (message names the offset or tensor), FMD_ERR_OOM. */
fmd_status st_open(const char *path, st_file **out);
/* The same over a memory image (copied).  For tests and fuzzing. */
fmd_status st_open_mem(const void *data, size_t size, st_file **out);
void st_close(st_file *f);                           /* NULL-safe */

int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name);
/* Metadata value of key (owned by f) or NULL. */
const char *st_metadata(const st_file *f, const char *key);
const char *st_dtype_name(st_dtype d);

/* Read tensor t converted to float32 into host dst (n floats, n must equal
 * t->numel).  F32, F16 and BF16 are supported.  Errors: FMD_ERR_UNSUPPORTED
 * naming tensor and dtype, FMD_ERR_INVALID_ARG, FMD_ERR_IO. */
fmd_status st_read_f32(st_file *f, const st_tensor *t, float *dst, int64_t n);

/* Flags of st_load_model. */
enum {
    ST_LOAD_SKIP_UNUSED = 1      /* tensors the model lacks are skipped (named in
                                  * *skipped and in the log) instead of refused */
};
/* Load every parameter view of m from the tensor of the same name (shapes
 * must match exactly; dtype F32/F16/BF16 converted to float32), uploading
 * into nn_model_params(m).  Fixed buffers (pos_embed) are loaded when the
 * file has them and kept otherwise.  A tensor in the file that the model
 * does not have is an error naming it, unless flags has ST_LOAD_SKIP_UNUSED;
 * then *skipped (when not NULL) receives a comma-separated list of the
 * skipped names (caller frees with fmd_free; NULL when none).  Errors:
 * FMD_ERR_FORMAT naming the missing / mismatched / unused tensor,
 * FMD_ERR_UNSUPPORTED (dtype), FMD_ERR_IO, FMD_ERR_OOM, backend errors. */
fmd_status st_load_model(st_file *f, nn_model *m, int flags, char **skipped);

/* ---- writer: float32 tensors from host memory -------------------------------- */
typedef struct st_entry {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;            /* host, numel floats */
} st_entry;
/* Write n tensors (F32) and optional metadata pairs (meta[2i] = key,
 * meta[2i+1] = value; nmeta pairs) to path.  Names must be unique.  Errors:
 * FMD_ERR_INVALID_ARG, FMD_ERR_IO, FMD_ERR_OOM. */
fmd_status st_write(const char *path, const st_entry *e, int n, const char *const *meta, int nmeta);
/* Write the parameters of m (and its buffers) as F32 safetensors. */
fmd_status st_save_model(nn_model *m, const char *path);

#endif
