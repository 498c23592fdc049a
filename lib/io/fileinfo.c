/* fileinfo.c - fmd_file_describe: what `fmd info` prints about a .fmd
 * checkpoint (metadata, tensor table, parameter count, CRC check of every
 * payload) or a safetensors file (metadata and tensor table), as text or
 * JSON. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "io/fmdfile.h"
#include "io/safetensors.h"
#include "util/util.h"

#define FI_MAX_CHECK ((uint64_t)1 << 30)   /* tensors above 1 GiB are not CRC-checked */

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) FMD_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *p = fmd_realloc(b->s, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = nc;
    }
}

/* A JSON string literal (quotes included). */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') sb_printf(b, "\\%c", ch);
        else if (ch < 0x20) sb_printf(b, "\\u%04x", ch);
        else sb_printf(b, "%c", ch);
    }
    sb_printf(b, "\"");
}

static void sb_shape(sbuf *b, int ndim, const int64_t *shape)
{
    sb_printf(b, "[");
    for (int i = 0; i < ndim; i++) sb_printf(b, "%s%lld", i ? ", " : "", (long long)shape[i]);
    sb_printf(b, "]");
}

static fmd_status describe_fmd(const char *path, int json, sbuf *b)
{
    fmdf_reader *r = NULL;
    fmd_status st = fmdf_open(path, &r);
    if (st) return st;
    const int nm = fmdf_meta_count(r), nt = fmdf_tensor_count(r);
    uint64_t maxb = 0;
    for (int i = 0; i < nt; i++) {
        const fmdf_tensor_info *t = fmdf_tensor_at(r, i);
        if (t->nbytes > maxb && t->nbytes <= FI_MAX_CHECK) maxb = t->nbytes;
    }
    void *scratch = fmd_malloc(maxb ? (size_t)maxb : 1);
    if (!scratch) {
        fmdf_close(r);
        return fmd_seterr(FMD_ERR_OOM, "fmd_file_describe: out of memory");
    }
    int bad = 0;
    char first_bad[512] = "";
    int64_t total = 0;
    if (json) {
        sb_printf(b, "{\"path\": ");
        sb_json_str(b, path);
        sb_printf(b, ", \"format\": \"fmd\", \"format_version\": %u, \"metadata\": {",
                  (unsigned)fmdf_format_version(r));
        for (int i = 0; i < nm; i++) {
            sb_printf(b, "%s", i ? ", " : "");
            sb_json_str(b, fmdf_meta_key(r, i));
            sb_printf(b, ": ");
            sb_json_str(b, fmdf_meta_value(r, i));
        }
        sb_printf(b, "}, \"tensors\": [");
    } else {
        sb_printf(b, "file: %s\nformat: .fmd version %u\nmetadata (%d):\n", path,
                  (unsigned)fmdf_format_version(r), nm);
        for (int i = 0; i < nm; i++)
            sb_printf(b, "  %-24s %s\n", fmdf_meta_key(r, i), fmdf_meta_value(r, i));
        sb_printf(b, "tensors (%d):\n", nt);
    }
    for (int i = 0; i < nt; i++) {
        const fmdf_tensor_info *t = fmdf_tensor_at(r, i);
        total += t->numel;
        const char *check = "ok";
        if (t->nbytes > FI_MAX_CHECK) {
            check = "not checked (over 1 GiB)";
        } else {
            fmd_status cs = fmdf_read_tensor(r, t->name, t->dtype, -1, NULL, scratch,
                                             maxb ? (size_t)maxb : 1);
            if (cs != FMD_OK && cs != FMD_ERR_FORMAT) {   /* OOM, I/O: not the file's fault */
                fmd_free(scratch);
                fmdf_close(r);
                return cs;
            }
            if (cs) {
                check = "CRC/format error";
                if (!bad) snprintf(first_bad, sizeof first_bad, "%s", fmd_last_error());
                bad++;
            }
        }
        if (json) {
            sb_printf(b, "%s{\"name\": ", i ? ", " : "");
            sb_json_str(b, t->name);
            sb_printf(b, ", \"dtype\": \"%s\", \"shape\": ", fmdf_dtype_name(t->dtype));
            sb_shape(b, t->ndim, t->shape);
            sb_printf(b, ", \"check\": \"%s\"}", check);
        } else {
            sb_printf(b, "  %-40s %-4s ", t->name, fmdf_dtype_name(t->dtype));
            sb_shape(b, t->ndim, t->shape);
            sb_printf(b, "  %s\n", check);
        }
    }
    const char *np = fmdf_meta_get(r, "num_params");
    int np_num = np && *np && strlen(np) < 20;
    for (const char *q = np; np_num && *q; q++) np_num = *q >= '0' && *q <= '9';
    if (json) {
        sb_printf(b, "], \"elements\": %lld, \"num_params\": %s, \"crc_ok\": %s}\n",
                  (long long)total, np_num ? np : "null", bad ? "false" : "true");
    } else {
        if (np) sb_printf(b, "parameters: %s\n", np);
        sb_printf(b, "elements in all tensors: %lld\n", (long long)total);
        if (bad) sb_printf(b, "CRC check: FAILED for %d tensor(s): %s\n", bad, first_bad);
        else sb_printf(b, "CRC check: ok (%d tensors)\n", nt);
    }
    fmd_free(scratch);
    fmdf_close(r);
    if (bad) return fmd_seterr(FMD_ERR_FORMAT, "%s", first_bad);
    return FMD_OK;
}

static fmd_status describe_st(const char *path, int json, sbuf *b)
{
    st_file *f = NULL;
    fmd_status st = st_open(path, &f);
    if (st) return st;
    const int nt = st_count(f);
    int64_t total = 0;
    if (json) {
        sb_printf(b, "{\"path\": ");
        sb_json_str(b, path);
        sb_printf(b, ", \"format\": \"safetensors\", \"tensors\": [");
    } else {
        sb_printf(b, "file: %s\nformat: safetensors (no checksums in this format)\ntensors (%d):\n",
                  path, nt);
    }
    for (int i = 0; i < nt; i++) {
        const st_tensor *t = st_at(f, i);
        total += t->numel;
        if (json) {
            sb_printf(b, "%s{\"name\": ", i ? ", " : "");
            sb_json_str(b, t->name);
            sb_printf(b, ", \"dtype\": \"%s\", \"shape\": ", st_dtype_name(t->dtype));
            sb_shape(b, t->ndim, t->shape);
            sb_printf(b, "}");
        } else {
            sb_printf(b, "  %-40s %-4s ", t->name, st_dtype_name(t->dtype));
            sb_shape(b, t->ndim, t->shape);
            sb_printf(b, "\n");
        }
    }
    if (json) sb_printf(b, "], \"elements\": %lld}\n", (long long)total);
    else sb_printf(b, "elements in all tensors: %lld\n", (long long)total);
    st_close(f);
    return FMD_OK;
}

fmd_status fmd_file_describe(const char *path, int json, char *buf, size_t buf_len,
                             size_t *needed_out)
{
    static const char *fn = "fmd_file_describe";
    FMD_CHECK_ARG(path && *path, "%s: path is NULL or empty", fn);
    FMD_CHECK_ARG(buf || buf_len == 0, "%s: buf is NULL", fn);
    FILE *f = fopen(path, "rb");
    if (!f) return fmd_seterr(FMD_ERR_IO, "%s: cannot open '%s'", fn, path);
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    sbuf b = {0};
    fmd_status st;
    if (got >= 4 && memcmp(magic, "\x89" "FMD", 4) == 0) st = describe_fmd(path, json, &b);
    else st = describe_st(path, json, &b);
    if (st && b.len == 0) {
        fmd_free(b.s);
        if (got < 4 || memcmp(magic, "\x89" "FMD", 4) != 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", fmd_last_error());
            return fmd_seterr(st, "%s: '%s' is neither a .fmd nor a safetensors file (%s)", fn,
                              path, why);
        }
        return st;
    }
    if (b.oom) {
        fmd_free(b.s);
        return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
    }
    if (needed_out) *needed_out = b.len + 1;
    if (buf_len) {
        size_t k = b.len < buf_len - 1 ? b.len : buf_len - 1;
        memcpy(buf, b.s, k);
        buf[k] = 0;
    }
    fmd_free(b.s);
    return st;
}
