/* npy.c - .npy reader and writer (NumPy's format 1.0/2.0/3.0) for float32
 * and int32 arrays in C order, so numpy users exchange samples with the
 * `fmd` tool without the bindings.
 *
 * Layout: "\x93NUMPY", major, minor, header length (u16 LE for 1.x, u32 LE
 * for 2.x/3.x), an ASCII Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
 * padded with spaces and ended by '\n' so that the data starts at a
 * multiple of 64, then the raw little-endian data.  The reader parses that
 * dict strictly (exactly these three keys, any order) and checks that the
 * data size equals the rest of the file before allocating anything. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/atomicfile.h"
#include "util/util.h"

#define NPY_MAX_DIMS 8

fmd_status fmd_npy_save(const char *path, const char *dtype, int ndim, const int64_t *shape,
                        const void *data)
{
    static const char *fn = "fmd_npy_save";
    FMD_CHECK_ARG(path && *path, "%s: path is NULL or empty", fn);
    FMD_CHECK_ARG(dtype && (strcmp(dtype, "f4") == 0 || strcmp(dtype, "i4") == 0),
                  "%s: dtype must be \"f4\" or \"i4\"", fn);
    FMD_CHECK_ARG(ndim >= 1 && ndim <= NPY_MAX_DIMS, "%s: ndim must be in [1, 8] (got %d)", fn, ndim);
    FMD_CHECK_ARG(shape, "%s: shape is NULL", fn);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        FMD_CHECK_ARG(shape[i] >= 0, "%s: shape[%d] = %lld < 0", fn, i, (long long)shape[i]);
        FMD_CHECK_ARG(shape[i] == 0 || numel <= (UINT64_MAX / 8) / (uint64_t)shape[i],
                      "%s: shape overflows", fn);
        numel *= (uint64_t)shape[i];
    }
    FMD_CHECK_ARG(data || numel == 0, "%s: data is NULL", fn);
    char hdr[512];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '<%s', 'fortran_order': False, 'shape': (", dtype);
    for (int i = 0; i < ndim; i++)
        len += snprintf(hdr + len, sizeof hdr - (size_t)len, "%lld%s", (long long)shape[i],
                        ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
    len += snprintf(hdr + len, sizeof hdr - (size_t)len, "), }");
    /* 10 bytes of preamble; pad with spaces so that 10 + header is a multiple of 64. */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memset(hdr + len, ' ', (size_t)pad);
    len += pad;
    hdr[len++] = '\n';
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(len & 0xff), (uint8_t)(len >> 8)};
    afile a;
    fmd_status st = afile_begin(&a, path, fn);
    if (!st) st = afile_stdio(&a, fn);
    if (st) {
        afile_abort(&a);
        return st;
    }
    FILE *f = a.fp;
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)len, f) == (size_t)len &&
             (numel == 0 || fwrite(data, 4, (size_t)numel, f) == (size_t)numel);
    if (!ok) {
        st = fmd_seterr(FMD_ERR_IO, "%s: cannot write '%s' (temporary '%s')", fn, path, a.tmp);
        afile_abort(&a);
        return st;
    }
    return afile_commit(&a, fn);
}

/* A cursor over the header dict; errors name the byte offset in the file. */
typedef struct {
    const char *s;
    size_t n, i, base;
    const char *path;
} npy_cur;

static void skip_ws(npy_cur *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t')) c->i++;
}

static fmd_status bad(const npy_cur *c, const char *what)
{
    return fmd_seterr(FMD_ERR_FORMAT, "fmd_npy_load: '%s': bad header at offset %zu: %s", c->path,
                      c->base + c->i, what);
}

static int expect(npy_cur *c, char ch)
{
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

/* A quoted Python string ('...' or "...", no escapes) into buf. */
static fmd_status parse_str(npy_cur *c, char *buf, size_t cap)
{
    skip_ws(c);
    if (c->i >= c->n || (c->s[c->i] != '\'' && c->s[c->i] != '"')) return bad(c, "expected a string");
    char q = c->s[c->i++];
    size_t k = 0;
    while (c->i < c->n && c->s[c->i] != q) {
        if (k + 1 >= cap || c->s[c->i] == '\\') return bad(c, "string too long or escaped");
        buf[k++] = c->s[c->i++];
    }
    if (c->i >= c->n) return bad(c, "unterminated string");
    c->i++;
    buf[k] = 0;
    return FMD_OK;
}

fmd_status fmd_npy_load(const char *path, const char **dtype_out, int *ndim_out,
                        int64_t *shape_out, int shape_cap, void **data_out)
{
    static const char *fn = "fmd_npy_load";
    FMD_CHECK_ARG(path && dtype_out && ndim_out && shape_out && data_out,
                  "%s: NULL argument", fn);
    FMD_CHECK_ARG(shape_cap >= 0, "%s: shape_cap < 0", fn);
    FILE *f = fopen(path, "rb");
    if (!f) return fmd_seterr(FMD_ERR_IO, "%s: cannot open '%s'", fn, path);
    fmd_status st = FMD_OK;
    char *hdr = NULL;
    void *data = NULL;
    long fsize = -1;
    if (fseek(f, 0, SEEK_END) == 0) fsize = ftell(f);
    if (fsize < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = fmd_seterr(FMD_ERR_IO, "%s: cannot read '%s'", fn, path);
        goto done;
    }
    uint8_t pre[12];
    if (fsize < 10 || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s' is not a .npy file (bad magic at offset 0)", fn, path);
        goto done;
    }
    size_t hlen, hoff;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        hoff = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fsize < 12 || fread(pre + 10, 1, 2, f) != 2) {
            st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s' truncated at offset 10", fn, path);
            goto done;
        }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
        hoff = 12;
    } else {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': unknown format version %d.%d at offset 6", fn,
                        path, pre[6], pre[7]);
        goto done;
    }
    if (hlen < 2 || hlen > 65536 || hoff + hlen > (size_t)fsize) {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': header length %zu at offset 8 does not fit the "
                        "file (%ld bytes)", fn, path, hlen, fsize);
        goto done;
    }
    hdr = fmd_malloc(hlen + 1);
    if (!hdr) {
        st = fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
        goto done;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        st = fmd_seterr(FMD_ERR_IO, "%s: cannot read '%s'", fn, path);
        goto done;
    }
    hdr[hlen] = 0;
    npy_cur c = {hdr, hlen, 0, hoff, path};
    if (hdr[hlen - 1] != '\n') {
        c.i = hlen - 1;
        st = bad(&c, "header does not end with a newline");
        goto done;
    }
    c.n = hlen - 1;
    char descr[16] = {0}, key[32];
    int have_descr = 0, have_fo = 0, have_shape = 0, fortran = 0, ndim = 0;
    int64_t shape[NPY_MAX_DIMS];
    if (!expect(&c, '{')) {
        st = bad(&c, "expected '{'");
        goto done;
    }
    for (;;) {
        if (expect(&c, '}')) break;
        if ((st = parse_str(&c, key, sizeof key))) goto done;
        if (!expect(&c, ':')) {
            st = bad(&c, "expected ':'");
            goto done;
        }
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if ((st = parse_str(&c, descr, sizeof descr))) goto done;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fo) {
            skip_ws(&c);
            if (c.n - c.i >= 4 && strncmp(c.s + c.i, "True", 4) == 0) {
                fortran = 1;
                c.i += 4;
            } else if (c.n - c.i >= 5 && strncmp(c.s + c.i, "False", 5) == 0) {
                c.i += 5;
            } else {
                st = bad(&c, "fortran_order must be True or False");
                goto done;
            }
            have_fo = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (!expect(&c, '(')) {
                st = bad(&c, "expected '(' after 'shape'");
                goto done;
            }
            for (;;) {
                if (expect(&c, ')')) break;
                skip_ws(&c);
                if (c.i >= c.n || !isdigit((unsigned char)c.s[c.i])) {
                    st = bad(&c, "expected a dimension");
                    goto done;
                }
                int64_t v = 0;
                while (c.i < c.n && isdigit((unsigned char)c.s[c.i])) {
                    if (v > (INT64_MAX - 9) / 10) {
                        st = bad(&c, "dimension too large");
                        goto done;
                    }
                    v = v * 10 + (c.s[c.i++] - '0');
                }
                if (ndim >= NPY_MAX_DIMS) {
                    st = bad(&c, "more than 8 dimensions");
                    goto done;
                }
                shape[ndim++] = v;
                if (expect(&c, ')')) break;
                if (!expect(&c, ',')) {
                    st = bad(&c, "expected ',' or ')' in shape");
                    goto done;
                }
            }
            have_shape = 1;
        } else {
            c.i -= 1;
            st = bad(&c, "unknown or repeated key");
            goto done;
        }
        if (expect(&c, '}')) break;
        if (!expect(&c, ',')) {
            st = bad(&c, "expected ',' or '}'");
            goto done;
        }
    }
    skip_ws(&c);
    if (c.i != c.n) {
        st = bad(&c, "trailing characters after the dict");
        goto done;
    }
    if (!have_descr || !have_fo || !have_shape) {
        st = bad(&c, "missing 'descr', 'fortran_order' or 'shape'");
        goto done;
    }
    if (fortran) {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': Fortran order is not supported (C order only)", fn, path);
        goto done;
    }
    const char *dt;
    if (strcmp(descr, "<f4") == 0) dt = "f4";
    else if (strcmp(descr, "<i4") == 0) dt = "i4";
    else {
        st = fmd_seterr(FMD_ERR_UNSUPPORTED, "%s: '%s': dtype '%s' is not supported (<f4 or <i4)",
                        fn, path, descr);
        goto done;
    }
    uint64_t numel = 1;
    int too_big = -1;   /* the dimension at which the element count passes the file's size */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && numel > ((uint64_t)fsize) / (uint64_t)shape[i]) {
            too_big = i;
            break;
        }
        numel *= (uint64_t)shape[i];
    }
    const uint64_t data_off = hoff + hlen;
    for (int i = too_big + 1; too_big >= 0 && i < ndim; i++)
        if (shape[i] == 0) too_big = -2;  /* a zero dimension: no data after all */
    if (too_big == -2) numel = 0;
    if (too_big >= 0) {
        char txt[NPY_MAX_DIMS * 21 + 2];
        int k = 0;
        for (int i = 0; i < ndim; i++)
            k += snprintf(txt + k, sizeof txt - (size_t)k, "%s%lld", i ? "," : "", (long long)shape[i]);
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': shape (%s) at offset %llu: the element count "
                        "overflows or passes the file's %lld bytes at dimension %d", fn, path, txt,
                        (unsigned long long)hoff, (long long)fsize, too_big);
        goto done;
    }
    if (numel * 4 != (uint64_t)fsize - data_off) {
        st = fmd_seterr(FMD_ERR_FORMAT, "%s: '%s': the shape needs %llu data bytes but the file has "
                        "%llu after offset %llu", fn, path,
                        (unsigned long long)(numel * 4),
                        (unsigned long long)((uint64_t)fsize - data_off), (unsigned long long)data_off);
        goto done;
    }
    if (ndim > shape_cap) {
        st = fmd_seterr(FMD_ERR_INVALID_ARG, "%s: '%s' has %d dimensions but shape_cap is %d", fn,
                        path, ndim, shape_cap);
        goto done;
    }
    data = fmd_malloc(numel ? (size_t)numel * 4 : 4);
    if (!data) {
        st = fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %llu elements", fn, (unsigned long long)numel);
        goto done;
    }
    if (numel && fread(data, 4, (size_t)numel, f) != (size_t)numel) {
        st = fmd_seterr(FMD_ERR_IO, "%s: cannot read the data of '%s'", fn, path);
        goto done;
    }
    for (int i = 0; i < ndim; i++) shape_out[i] = shape[i];
    *ndim_out = ndim;
    *dtype_out = dt;
    *data_out = data;
    data = NULL;
done:
    fclose(f);
    fmd_free(hdr);
    fmd_free(data);
    return st;
}

void fmd_npy_free(void *data) { fmd_free(data); }
