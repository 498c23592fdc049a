/* idx.c - IDX (MNIST-family) reader, plain or gzip (zlib's inflate). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "io/idx.h"
#include "util/util.h"

void idx_free(idx_array *a)
{
    if (!a) return;
    fmd_free(a->data);
    a->data = NULL;
}

/* A byte source over a plain or gzip file, with zlib's allocations going
 * through the library's allocator hooks (so OOM tests reach them). */
typedef struct {
    FILE *f;
    int gz, ended, zerr, zinit;
    z_stream zs;
    unsigned char *in;      /* IDX_CHUNK bytes of compressed input */
} src;

#define IDX_CHUNK (64u << 10)

static voidpf z_alloc(voidpf o, uInt n, uInt m) { (void)o; return fmd_calloc(n, m); }
static void z_free(voidpf o, voidpf p) { (void)o; fmd_free(p); }

/* read up to n bytes; returns bytes read, or -1 on a decompression error */
static int64_t sread(src *s, void *buf, int64_t n)
{
    if (!s->gz) return (int64_t)fread(buf, 1, (size_t)n, s->f);
    int64_t got = 0;
    while (got < n && !s->ended) {
        if (s->zs.avail_in == 0) {
            size_t k = fread(s->in, 1, IDX_CHUNK, s->f);
            if (k == 0) return got; /* compressed stream cut short */
            s->zs.next_in = s->in;
            s->zs.avail_in = (uInt)k;
        }
        int64_t want = n - got > (1 << 30) ? (1 << 30) : n - got;
        s->zs.next_out = (Bytef *)buf + got;
        s->zs.avail_out = (uInt)want;
        int r = inflate(&s->zs, Z_NO_FLUSH);
        got += want - s->zs.avail_out;
        if (r == Z_STREAM_END) s->ended = 1;
        else if (r != Z_OK && r != Z_BUF_ERROR) {
            s->zerr = r == Z_MEM_ERROR ? 2 : 1;
            return -1;
        }
    }
    return got;
}

/* Read the count data bytes into a buffer that grows as they arrive (gzip:
 * the declared size is not trusted before the data is there). */
static int64_t sread_grow(src *s, uint8_t **buf, int64_t count)
{
    int64_t cap = count < ((int64_t)1 << 20) ? count : ((int64_t)1 << 20), got = 0;
    uint8_t *b = fmd_malloc((size_t)cap);
    if (!b) return -2;
    for (;;) {
        int64_t r = sread(s, b + got, cap - got);
        if (r < 0) { fmd_free(b); return -1; }
        got += r;
        if (got < cap || cap == count) break;       /* stream ended, or all there */
        int64_t ncap = cap * 2 < count ? cap * 2 : count;
        uint8_t *nb = fmd_realloc(b, (size_t)ncap);
        if (!nb) { fmd_free(b); return -2; }
        b = nb;
        cap = ncap;
    }
    *buf = b;
    return got;
}

fmd_status idx_read(const char *path, int64_t max_bytes, idx_array *out)
{
    FMD_CHECK_ARG(path && out, "idx_read: path and out must be non-NULL");
    FMD_CHECK_ARG(max_bytes >= 1 && max_bytes <= IDX_MAX_BYTES, "idx_read: max_bytes %lld outside "
                  "[1, %lld]", (long long)max_bytes, (long long)IDX_MAX_BYTES);
    memset(out, 0, sizeof *out);
    src S;
    memset(&S, 0, sizeof S);
    src *f = &S;
    S.f = fopen(path, "rb");
    if (!S.f) return fmd_seterr(FMD_ERR_IO, "idx file '%s': cannot open: %s", path, strerror(errno));
    fmd_status st = FMD_OK;
    unsigned char hdr[4], dimb[16];
    struct stat sb;
    const int64_t fsize = fstat(fileno(S.f), &sb) == 0 ? (int64_t)sb.st_size : -1;
    int c0 = fgetc(S.f), c1 = fgetc(S.f);
    rewind(S.f);
    if (c0 == 0x1f && c1 == 0x8b) { /* gzip */
        S.gz = 1;
        S.in = fmd_malloc(IDX_CHUNK);
        S.zs.zalloc = z_alloc;
        S.zs.zfree = z_free;
        if (!S.in || inflateInit2(&S.zs, 16 + MAX_WBITS) != Z_OK) {
            st = fmd_seterr(FMD_ERR_OOM, "idx file '%s': out of memory for the decompressor", path);
            goto done;
        }
        S.zinit = 1;
    }
    if (sread(f, hdr, 4) != 4) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': shorter than its 4-byte header", path);
        goto done;
    }
    if (hdr[0] != 0 || hdr[1] != 0) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': bad magic at offset 0 (not an IDX file)", path);
        goto done;
    }
    if (hdr[2] != 0x08) {
        st = fmd_seterr(FMD_ERR_UNSUPPORTED, "idx file '%s': element type 0x%02x at offset 2 (only "
                        "0x08 = unsigned byte is supported)", path, hdr[2]);
        goto done;
    }
    int nd = hdr[3];
    if (nd < 1 || nd > 4) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': %d dimensions at offset 3 (expected 1..4)",
                        path, nd);
        goto done;
    }
    if (sread(f, dimb, 4 * nd) != 4 * nd) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': truncated in the dimension list (offset 4)",
                        path);
        goto done;
    }
    int64_t count = 1;
    for (int i = 0; i < nd; i++) {
        const unsigned char *b = dimb + 4 * i;
        int64_t v = (int64_t)b[0] << 24 | (int64_t)b[1] << 16 | (int64_t)b[2] << 8 | b[3];
        if (v < 1 || v > IDX_MAX_BYTES / count) {
            st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': dimension %d = %lld at offset %d out of "
                            "range (total limited to %lld bytes)", path, i, (long long)v, 4 + 4 * i,
                            (long long)IDX_MAX_BYTES);
            goto done;
        }
        out->dims[i] = v;
        count *= v;
    }
    out->ndim = nd;
    out->count = count;
    const int64_t hbytes = 4 + 4 * nd;
    if (count > max_bytes) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': the dimensions declare %lld data bytes, over "
                        "max_bytes = %lld (the cap on %s data; raise it to read this file)", path,
                        (long long)count, (long long)max_bytes, S.gz ? "decompressed" : "IDX");
        goto done;
    }
    if (!S.gz && fsize >= 0 && fsize - hbytes != count) {
        /* a plain file must hold exactly what its dimensions declare: checked
         * before the data buffer is allocated */
        st = fsize - hbytes < count
                 ? fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': data truncated at offset %lld: the "
                              "dimensions declare %lld data bytes, the file holds %lld", path,
                              (long long)fsize, (long long)count, (long long)(fsize - hbytes))
                 : fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': trailing bytes after offset %lld",
                              path, (long long)(hbytes + count));
        goto done;
    }
    int64_t got;
    if (S.gz) {
        got = sread_grow(f, &out->data, count);
        if (got == -2) {
            st = fmd_seterr(FMD_ERR_OOM, "idx file '%s': out of memory for %lld bytes", path,
                            (long long)count);
            goto done;
        }
    } else {
        out->data = fmd_malloc((size_t)count);
        if (!out->data) {
            st = fmd_seterr(FMD_ERR_OOM, "idx file '%s': out of memory for %lld bytes", path,
                            (long long)count);
            goto done;
        }
        got = sread(f, out->data, count);
    }
    if (got < 0) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': decompression error: %s", path,
                        S.zs.msg ? S.zs.msg : "corrupt gzip data");
        goto done;
    }
    if (got != count) {
        st = fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': data truncated at offset %lld (%lld of %lld "
                        "bytes)", path, (long long)(4 + 4 * nd + got), (long long)got, (long long)count);
        goto done;
    }
    unsigned char extra;
    int64_t more = sread(f, &extra, 1);
    if (more == 0 && S.gz && !S.ended) more = -1; /* data complete but the gzip stream is not */
    if (more == 0 && S.gz && (S.zs.avail_in != 0 || fgetc(S.f) != EOF)) more = 1;
    if (more != 0) {
        st = more < 0 ? fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': decompression error after the data",
                                   path)
                      : fmd_seterr(FMD_ERR_FORMAT, "idx file '%s': trailing bytes after offset %lld",
                                   path, (long long)(4 + 4 * nd + count));
        goto done;
    }
done:
    if (S.zerr == 2) /* whatever was reported, the cause is memory */
        st = fmd_seterr(FMD_ERR_OOM, "idx file '%s': out of memory while inflating", path);
    if (S.zinit) inflateEnd(&S.zs);
    fmd_free(S.in);
    fclose(S.f);
    if (st) idx_free(out);
    return st;
}
