/* model_io.h - save and load an nn_model (lib/nn/model.h) in a .fmd file.
 *
 * A model is stored as metadata (its nn_config, one key per field, under a
 * prefix) and one f32 tensor per named parameter view (the view name under
 * the same prefix).  The prefix lets one file hold several models and
 * buffers: a teacher file uses "" ; a distiller checkpoint may use
 * "student.", "ema.", "aux.", "adam_m." ... (see docs/file-format.md).
 *
 * Metadata keys written for a model with prefix P:
 *   P"arch" = "mlp" | "dit", P"student", P"num_classes", P"dim", P"width",
 *   P"depth", P"temb_dim", P"time_scale", P"delta_scale", P"input_size",
 *   P"patch_size", P"in_channels", P"hidden_size", P"dit_depth",
 *   P"num_heads", P"mlp_ratio", P"learn_sigma".
 * model_io_save also writes "format" = "libfmd", "library_version",
 * "kind" (the caller's string, e.g. "teacher") and "num_params".
 */
#ifndef FMD_IO_MODEL_IO_H
#define FMD_IO_MODEL_IO_H

#include "fmd.h"
#include "io/fmdfile.h"
#include "nn/model.h"

/* Write cfg as metadata keys under prefix (prefix may be "" but not NULL). */
fmd_status model_io_write_config(fmdf_writer *w, const char *prefix, const nn_config *cfg);
/* 1 when a and b differ in any field, with the first such field and both
 * values written into what ("width = 16 against 32"); 0 when equal. */
int model_io_config_diff(const nn_config *a, const nn_config *b, char *what, size_t len);
/* Read a config written by model_io_write_config.  Errors: FMD_ERR_FORMAT
 * naming the missing or malformed key. */
fmd_status model_io_read_config(const fmdf_reader *r, const char *prefix, nn_config *cfg);

/* Write one f32 tensor per view of m, named prefix + view name, taking the
 * numbers from buf: a device buffer of the model's backend laid out like the
 * parameters (nn_model_params(m) itself, or an EMA copy, or AdamW moments).
 * buf NULL means nn_model_params(m).  Downloads view by view through one
 * host buffer of the largest view.  be is the backend m was created on
 * (model.h has no getter for it).  Errors: backend errors, FMD_ERR_IO,
 * FMD_ERR_OOM. */
fmd_status model_io_write_tensors(fmdf_writer *w, const char *prefix, fmd_backend *be,
                                  nn_model *m, const float *buf);
/* Read every view of m from tensors prefix + view name into buf (device,
 * parameter layout; NULL means nn_model_params(m)), checking each shape.
 * Errors: FMD_ERR_FORMAT naming a missing tensor, FMD_ERR_INVALID_ARG on a
 * shape mismatch (message names tensor and shapes), reader errors. */
fmd_status model_io_read_tensors(fmdf_reader *r, const char *prefix, fmd_backend *be, nn_model *m,
                                 float *buf);

/* Whole-file conveniences: config + parameters under prefix "", plus the
 * metadata "format", "library_version", "kind" (kind may be NULL: "model"). */
fmd_status model_io_save(fmd_backend *be, nn_model *m, const char *path, const char *kind);
/* Open path, build the model on backend be from the stored config and load
 * its parameters.  *out owned by the caller (nn_model_destroy).  Errors:
 * reader errors, FMD_ERR_FORMAT, nn_model_create errors. */
fmd_status model_io_load(fmd_backend *be, const char *path, nn_model **out);
/* As model_io_load, from an already open reader and a prefix. */
fmd_status model_io_load_from(fmd_backend *be, fmdf_reader *r, const char *prefix,
                              nn_model **out);

#endif
