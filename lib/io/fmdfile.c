/* fmdfile.c - the .fmd checkpoint container: atomic streaming writer and a
 * bounds-checked reader (layout in fmdfile.h and docs/file-format.md).
 *
 * The reader trusts nothing: every count, length and offset read from the
 * file is checked against the bytes that remain before it is used, every
 * allocation is bounded by the file size or by the caller's buffer, and
 * payloads are inflated in chunks straight into the caller's memory. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "io/fmdfile.h"
#include "util/atomicfile.h"
#include "util/util.h"

static const unsigned char FMDF_MAGIC[8] = {0x89, 'F', 'M', 'D', '\r', '\n', 0x1a, '\n'};
static const unsigned char FMDF_END[8] = {'F', 'M', 'D', 'E', 'N', 'D', 0, 0};
#define FMDF_HEADER_SIZE 16u
#define FMDF_TRAILER_SIZE 32u
#define FMDF_CHUNK (256u << 10)
#define FMDF_ZMAX (1u << 30) /* largest avail_in / avail_out handed to zlib at once */

enum { ENC_STORED = 0, ENC_DEFLATE = 1, ENC_SHUFFLE = 2 };
/* Shuffled encoding: elements in blocks of FMDF_SBLOCK; within a block byte
 * k of every element comes before byte k + 1 of any (k = 0 .. size-1); the
 * result is one zlib stream.  Exponent and sign bytes then sit together and
 * compress, and Huffman-only coding of the planes is several times faster
 * than LZ77 matching over raw floats (see docs/file-format.md). */
#define FMDF_SBLOCK 32768u
#define FMDF_SBUF (FMDF_SBLOCK * 8u)

static void shuffle_block(unsigned char *out, const unsigned char *in, size_t ne, size_t es)
{
    for (size_t i = 0; i < ne; i++)
        for (size_t k = 0; k < es; k++) out[k * ne + i] = in[i * es + k];
}

static void unshuffle_block(unsigned char *out, const unsigned char *in, size_t ne, size_t es)
{
    for (size_t k = 0; k < es; k++)
        for (size_t i = 0; i < ne; i++) out[i * es + k] = in[k * ne + i];
}

size_t fmdf_dtype_size(int dtype)
{
    switch (dtype) {
    case FMDF_F32: return 4;
    case FMDF_I32: return 4;
    case FMDF_U8: return 1;
    case FMDF_F64: return 8;
    default: return 0;
    }
}

const char *fmdf_dtype_name(int dtype)
{
    switch (dtype) {
    case FMDF_F32: return "f32";
    case FMDF_I32: return "i32";
    case FMDF_U8: return "u8";
    case FMDF_F64: return "f64";
    default: return "?";
    }
}

char *fmdf_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = 0;
    if (!buf || n == 0) return buf;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* little-endian helpers */
static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* zlib's allocations go through the library's allocator hooks too */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return fmd_calloc(items, size);
}
static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    fmd_free(p);
}

/* crc32 over any length (zlib's crc32 takes a uInt length) */
static uint32_t crc_update(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n) {
        uInt k = n > FMDF_ZMAX ? FMDF_ZMAX : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

/* numel of a shape, or -1 on a negative dim or overflow of bytes > 2^62 */
static int64_t shape_numel(int ndim, const int64_t *shape, size_t esize)
{
    const int64_t lim = (int64_t)1 << 62;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > lim / shape[i]) return -1;
        n *= shape[i];
    }
    if (esize && n > lim / (int64_t)esize) return -1;
    return n;
}

/* ======================================================================
 * writer
 * ==================================================================== */
typedef struct wtensor {
    char *name;
    uint8_t dtype, enc, ndim;
    int64_t shape[FMDF_MAX_DIMS];
    uint64_t offset, stored, raw;
    uint32_t crc_stored, crc_raw;
} wtensor;

typedef struct wmeta {
    char *key, *value;
} wmeta;

struct fmdf_writer {
    char *path, *tmp;      /* tmp: af.tmp (owned by af) */
    int fd;                /* af.fd */
    afile af;
    int level;
    fmd_status status;     /* first error; commit returns it */
    char errmsg[512];
    uint64_t pos;
    wmeta *meta;
    int nmeta, capmeta;
    wtensor *t;
    int nt, capt;
    unsigned char *chunk; /* FMDF_CHUNK bytes */
    unsigned char *sbuf;  /* FMDF_SBUF bytes (shuffled blocks) */
    int shuffle;
};

/* Record the first error of w (and set it as the thread's last error). */
static fmd_status wfail(fmdf_writer *w, fmd_status st, const char *fmt, ...) FMD_PRINTF(3, 4);
static fmd_status wfail(fmdf_writer *w, fmd_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (w->status == FMD_OK) {
        w->status = st;
        snprintf(w->errmsg, sizeof w->errmsg, "%s", msg);
    }
    return fmd_seterr(st, "%s", msg);
}

static fmd_status wwrite(fmdf_writer *w, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        size_t k = n > FMDF_ZMAX ? FMDF_ZMAX : n;
        ssize_t r = write(w->fd, p, k);
        if (r < 0) {
            if (errno == EINTR) continue;
            return wfail(w, FMD_ERR_IO, "fmd file '%s': write to '%s' failed at offset %" PRIu64
                         ": %s", w->path, w->tmp, w->pos, strerror(errno));
        }
        if (r == 0)
            return wfail(w, FMD_ERR_IO, "fmd file '%s': write to '%s' wrote nothing at offset %"
                         PRIu64, w->path, w->tmp, w->pos);
        p += r;
        n -= (size_t)r;
        w->pos += (uint64_t)r;
    }
    return FMD_OK;
}

static void writer_free(fmdf_writer *w)
{
    if (!w) return;
    afile_abort(&w->af);
    for (int i = 0; i < w->nmeta; i++) {
        fmd_free(w->meta[i].key);
        fmd_free(w->meta[i].value);
    }
    for (int i = 0; i < w->nt; i++) fmd_free(w->t[i].name);
    fmd_free(w->meta);
    fmd_free(w->t);
    fmd_free(w->chunk);
    fmd_free(w->sbuf);
    fmd_free(w->path);
    fmd_free(w);
}

void fmdf_writer_abort(fmdf_writer *w) { writer_free(w); }

fmd_status fmdf_writer_begin(const char *path, fmdf_writer **out)
{
    FMD_CHECK_ARG(path && path[0], "fmdf_writer_begin: path is NULL or empty");
    FMD_CHECK_ARG(out, "fmdf_writer_begin: out is NULL");
    fmdf_writer *w = fmd_xcalloc(1, sizeof *w, "fmd writer");
    if (!w) return FMD_ERR_OOM;
    w->fd = -1;
    w->level = 1;
    w->shuffle = 1;
    w->af.fd = -1;
    w->path = fmd_strdup(path);
    w->chunk = fmd_malloc(FMDF_CHUNK);
    w->sbuf = fmd_malloc(FMDF_SBUF);
    if (!w->path || !w->chunk || !w->sbuf) {
        writer_free(w);
        return fmd_seterr(FMD_ERR_OOM, "fmdf_writer_begin: out of memory");
    }
    fmd_status st0 = afile_begin(&w->af, path, "fmd file");
    if (st0) {
        writer_free(w);
        return st0;
    }
    w->fd = w->af.fd;
    w->tmp = w->af.tmp;
    unsigned char hdr[FMDF_HEADER_SIZE];
    memcpy(hdr, FMDF_MAGIC, 8);
    put_u32(hdr + 8, FMDF_FORMAT_VERSION);
    put_u32(hdr + 12, 0);
    fmd_status st = wwrite(w, hdr, sizeof hdr);
    if (st) {
        writer_free(w);
        return st;
    }
    *out = w;
    return FMD_OK;
}

fmd_status fmdf_writer_set_level(fmdf_writer *w, int level)
{
    FMD_CHECK_ARG(w, "fmdf_writer_set_level: writer is NULL");
    FMD_CHECK_ARG(level >= 0 && level <= 9, "fmdf_writer_set_level: level must be 0..9 (got %d)",
                  level);
    w->level = level;
    return FMD_OK;
}

fmd_status fmdf_writer_set_shuffle(fmdf_writer *w, int shuffle)
{
    FMD_CHECK_ARG(w, "fmdf_writer_set_shuffle: writer is NULL");
    w->shuffle = shuffle != 0;
    return FMD_OK;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= FMDF_MAX_NAME;
}

fmd_status fmdf_writer_add_meta(fmdf_writer *w, const char *key, const char *value)
{
    FMD_CHECK_ARG(w, "fmdf_writer_add_meta: writer is NULL");
    if (w->status) return fmd_seterr(w->status, "%s", w->errmsg);
    if (!key || !name_ok(key))
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_meta: key is NULL, empty or longer "
                     "than %d bytes", FMDF_MAX_NAME);
    if (!value || strlen(value) > FMDF_MAX_VALUE)
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_meta: value of '%s' is NULL or "
                     "longer than %u bytes", key, FMDF_MAX_VALUE);
    for (int i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_meta: duplicate key '%s'", key);
    if (w->nmeta == w->capmeta) {
        int cap = w->capmeta ? 2 * w->capmeta : 16;
        wmeta *m = fmd_realloc(w->meta, (size_t)cap * sizeof *m);
        if (!m) return wfail(w, FMD_ERR_OOM, "fmdf_writer_add_meta: out of memory");
        w->meta = m;
        w->capmeta = cap;
    }
    char *k = fmd_strdup(key), *v = fmd_strdup(value);
    if (!k || !v) {
        fmd_free(k);
        fmd_free(v);
        return wfail(w, FMD_ERR_OOM, "fmdf_writer_add_meta: out of memory");
    }
    w->meta[w->nmeta].key = k;
    w->meta[w->nmeta].value = v;
    w->nmeta++;
    return FMD_OK;
}

fmd_status fmdf_writer_add_meta_i64(fmdf_writer *w, const char *key, int64_t value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, value);
    return fmdf_writer_add_meta(w, key, buf);
}

fmd_status fmdf_writer_add_meta_f64(fmdf_writer *w, const char *key, double value)
{
    char buf[40];
    FMD_CHECK_ARG(w, "fmdf_writer_add_meta_f64: writer is NULL");
    if (!isfinite(value))
        return wfail(w, FMD_ERR_NONFINITE, "fmdf_writer_add_meta_f64: value of '%s' is not finite",
                     key ? key : "(null)");
    snprintf(buf, sizeof buf, "%.17g", value);
    return fmdf_writer_add_meta(w, key, buf);
}

/* deflate n bytes of data (elements of es bytes) into the file, byte-shuffled
 * block by block when shuffle; updates the crcs and sizes in t */
static fmd_status write_deflate(fmdf_writer *w, wtensor *t, const unsigned char *data, size_t n,
                                size_t es, int shuffle)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = z_alloc;
    zs.zfree = z_free;
    /* level 1 on shuffled planes: Huffman coding only (the planes have no
     * long repeats worth searching for); higher levels search as usual */
    int strategy = shuffle && w->level == 1 ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY;
    if (deflateInit2(&zs, w->level, Z_DEFLATED, 15, 8, strategy) != Z_OK)
        return wfail(w, FMD_ERR_OOM, "fmd file '%s': deflateInit failed for tensor '%s'", w->path,
                     t->name);
    fmd_status st = FMD_OK;
    size_t pos = 0;
    int flush;
    do {
        const unsigned char *piece;
        size_t plen;
        if (shuffle) {
            size_t ne = (n - pos) / es;
            if (ne > FMDF_SBLOCK) ne = FMDF_SBLOCK;
            shuffle_block(w->sbuf, data + pos, ne, es);
            piece = w->sbuf;
            plen = ne * es;
        } else {
            plen = n - pos > FMDF_ZMAX ? FMDF_ZMAX : n - pos;
            piece = data + pos;
        }
        pos += plen;
        flush = pos >= n ? Z_FINISH : Z_NO_FLUSH;
        zs.next_in = (Bytef *)(uintptr_t)piece;
        zs.avail_in = (uInt)plen;
        int zr;
        do { /* until this piece is consumed (and, at the end, the stream finished) */
            zs.next_out = w->chunk;
            zs.avail_out = FMDF_CHUNK;
            zr = deflate(&zs, flush);
            if (zr == Z_STREAM_ERROR) {
                st = wfail(w, FMD_ERR_INTERNAL, "fmd file '%s': deflate failed for tensor '%s'",
                           w->path, t->name);
                break;
            }
            size_t have = FMDF_CHUNK - zs.avail_out;
            if (have) {
                t->crc_stored = crc_update(t->crc_stored, w->chunk, have);
                t->stored += have;
                if ((st = wwrite(w, w->chunk, have))) break;
            }
        } while (zs.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
        if (st) break;
    } while (flush != Z_FINISH);
    deflateEnd(&zs);
    return st;
}

fmd_status fmdf_writer_add_tensor(fmdf_writer *w, const char *name, fmdf_dtype dtype, int ndim,
                                  const int64_t *shape, const void *data)
{
    FMD_CHECK_ARG(w, "fmdf_writer_add_tensor: writer is NULL");
    if (w->status) return fmd_seterr(w->status, "%s", w->errmsg);
    if (!name || !name_ok(name))
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_tensor: name is NULL, empty or "
                     "longer than %d bytes", FMDF_MAX_NAME);
    size_t es = fmdf_dtype_size((int)dtype);
    if (!es)
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_tensor: tensor '%s': bad dtype %d",
                     name, (int)dtype);
    if (ndim < 0 || ndim > FMDF_MAX_DIMS || (ndim > 0 && !shape))
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_tensor: tensor '%s': ndim %d "
                     "(must be 0..%d, shape non-NULL)", name, ndim, FMDF_MAX_DIMS);
    int64_t numel = shape_numel(ndim, shape, es);
    if (numel < 0)
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_tensor: tensor '%s': negative or "
                     "overflowing shape", name);
    if (numel > 0 && !data)
        return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_tensor: tensor '%s': data is NULL",
                     name);
    for (int i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return wfail(w, FMD_ERR_INVALID_ARG, "fmdf_writer_add_tensor: duplicate tensor '%s'",
                         name);
    if (w->nt == w->capt) {
        int cap = w->capt ? 2 * w->capt : 32;
        wtensor *nt = fmd_realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return wfail(w, FMD_ERR_OOM, "fmdf_writer_add_tensor: out of memory");
        w->t = nt;
        w->capt = cap;
    }
    wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->name = fmd_strdup(name);
    if (!t->name) return wfail(w, FMD_ERR_OOM, "fmdf_writer_add_tensor: out of memory");
    w->nt++;
    t->dtype = (uint8_t)dtype;
    t->ndim = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->offset = w->pos;
    t->raw = (uint64_t)numel * es;
    t->crc_raw = crc_update(0, data, (size_t)t->raw);
    if (w->level == 0) {
        t->enc = ENC_STORED;
        t->stored = t->raw;
        t->crc_stored = t->crc_raw;
        return wwrite(w, data, (size_t)t->raw);
    }
    int shuf = w->shuffle && es > 1;
    t->enc = shuf ? ENC_SHUFFLE : ENC_DEFLATE;
    return write_deflate(w, t, data, (size_t)t->raw, es, shuf);
}

fmd_status fmdf_writer_commit(fmdf_writer *w)
{
    FMD_CHECK_ARG(w, "fmdf_writer_commit: writer is NULL");
    if (w->status) {
        fmd_status st = fmd_seterr(w->status, "%s", w->errmsg);
        writer_free(w);
        return st;
    }
    /* index size */
    uint64_t isz = 8;
    for (int i = 0; i < w->nmeta; i++)
        isz += 8 + strlen(w->meta[i].key) + strlen(w->meta[i].value);
    for (int i = 0; i < w->nt; i++) isz += 4 + strlen(w->t[i].name) + 4 + 8 * (uint64_t)w->t[i].ndim + 32;
    unsigned char *idx = fmd_malloc((size_t)isz + FMDF_TRAILER_SIZE);
    if (!idx) {
        fmd_status st = wfail(w, FMD_ERR_OOM, "fmdf_writer_commit: out of memory for the index "
                              "(%" PRIu64 " bytes)", isz);
        writer_free(w);
        return st;
    }
    unsigned char *p = idx;
    put_u32(p, (uint32_t)w->nmeta); p += 4;
    for (int i = 0; i < w->nmeta; i++) {
        uint32_t kl = (uint32_t)strlen(w->meta[i].key), vl = (uint32_t)strlen(w->meta[i].value);
        put_u32(p, kl); p += 4;
        memcpy(p, w->meta[i].key, kl); p += kl;
        put_u32(p, vl); p += 4;
        memcpy(p, w->meta[i].value, vl); p += vl;
    }
    put_u32(p, (uint32_t)w->nt); p += 4;
    for (int i = 0; i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        uint32_t nl = (uint32_t)strlen(t->name);
        put_u32(p, nl); p += 4;
        memcpy(p, t->name, nl); p += nl;
        p[0] = t->dtype; p[1] = t->enc; p[2] = t->ndim; p[3] = 0; p += 4;
        for (int d = 0; d < t->ndim; d++) { put_u64(p, (uint64_t)t->shape[d]); p += 8; }
        put_u64(p, t->offset); p += 8;
        put_u64(p, t->stored); p += 8;
        put_u64(p, t->raw); p += 8;
        put_u32(p, t->crc_stored); p += 4;
        put_u32(p, t->crc_raw); p += 4;
    }
    uint64_t ioff = w->pos;
    put_u64(p, ioff);
    put_u64(p + 8, isz);
    put_u32(p + 16, crc_update(0, idx, (size_t)isz));
    put_u32(p + 20, 0);
    memcpy(p + 24, FMDF_END, 8);
    fmd_status st = wwrite(w, idx, (size_t)isz + FMDF_TRAILER_SIZE);
    fmd_free(idx);
    if (!st) {
        st = afile_commit(&w->af, "fmd file");   /* fsync, close, rename, fsync the directory */
        w->fd = -1;
        w->tmp = NULL;
    }
    writer_free(w);
    return st;
}

/* ======================================================================
 * reader
 * ==================================================================== */
typedef struct rtensor {
    fmdf_tensor_info info;
    uint8_t enc;
    uint64_t offset, stored;
    uint32_t crc_stored, crc_raw;
} rtensor;

struct fmdf_reader {
    char *label;                 /* path or "<memory>" for messages */
    int fd;                      /* -1 for memory readers */
    const unsigned char *mem;
    uint64_t size;
    uint32_t version;
    int nmeta;
    char **mkey, **mval;
    int nt;
    rtensor *t;
    unsigned char *chunk;        /* FMDF_CHUNK bytes, allocated on first read */
    unsigned char *sbuf;         /* FMDF_SBUF bytes, for shuffled tensors      */
};

static fmd_status rread(fmdf_reader *r, uint64_t off, void *buf, size_t n)
{
    if (off > r->size || n > r->size - off)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': read of %zu bytes at offset %" PRIu64
                          " is past the end (%" PRIu64 " bytes)", r->label, n, off, r->size);
    if (r->mem) {
        memcpy(buf, r->mem + off, n);
        return FMD_OK;
    }
    unsigned char *p = buf;
    while (n) {
        size_t k = n > FMDF_ZMAX ? FMDF_ZMAX : n;
        ssize_t got = pread(r->fd, p, k, (off_t)off);
        if (got < 0) {
            if (errno == EINTR) continue;
            return fmd_seterr(FMD_ERR_IO, "fmd file '%s': read at offset %" PRIu64 " failed: %s",
                              r->label, off, strerror(errno));
        }
        if (got == 0)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': unexpected end of file at offset %"
                              PRIu64 " (file shrank while reading?)", r->label, off);
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return FMD_OK;
}

void fmdf_close(fmdf_reader *r)
{
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    for (int i = 0; i < r->nmeta; i++) {
        fmd_free(r->mkey[i]);
        fmd_free(r->mval[i]);
    }
    fmd_free(r->mkey);
    fmd_free(r->mval);
    for (int i = 0; i < r->nt; i++) fmd_free((char *)r->t[i].info.name);
    fmd_free(r->t);
    fmd_free(r->chunk);
    fmd_free(r->sbuf);
    fmd_free(r->label);
    fmd_free(r);
}

/* a bounded cursor over the index */
typedef struct {
    const unsigned char *p;
    uint64_t n, pos, base; /* base: file offset of the index, for messages */
    const char *label;
} cursor;

static fmd_status cneed(cursor *c, uint64_t k, const char *what)
{
    if (k > c->n - c->pos)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': index truncated reading %s at offset %"
                          PRIu64 " (%" PRIu64 " bytes needed, %" PRIu64 " left)", c->label, what,
                          c->base + c->pos, k, c->n - c->pos);
    return FMD_OK;
}

static fmd_status cstr(cursor *c, uint32_t maxlen, int allow_empty, const char *what, char **out)
{
    fmd_status st = cneed(c, 4, what);
    if (st) return st;
    uint32_t len = get_u32(c->p + c->pos);
    if ((!allow_empty && len == 0) || len > maxlen)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': %s length %u at offset %" PRIu64
                          " out of range (%s..%u)", c->label, what, len, c->base + c->pos,
                          allow_empty ? "0" : "1", maxlen);
    c->pos += 4;
    if ((st = cneed(c, len, what))) return st;
    if (memchr(c->p + c->pos, 0, len))
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': %s at offset %" PRIu64
                          " contains a NUL byte", c->label, what, c->base + c->pos);
    char *s = fmd_malloc((size_t)len + 1);
    if (!s) return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory reading %s", c->label, what);
    memcpy(s, c->p + c->pos, len);
    s[len] = '\0';
    c->pos += len;
    *out = s;
    return FMD_OK;
}

static fmd_status parse_index(fmdf_reader *r, const unsigned char *idx, uint64_t isz, uint64_t ioff)
{
    cursor c = {idx, isz, 0, ioff, r->label};
    fmd_status st;
    if ((st = cneed(&c, 4, "metadata count"))) return st;
    uint32_t nm = get_u32(idx);
    c.pos = 4;
    /* each entry takes at least 9 bytes: a cheap bound before allocating */
    if (nm > (isz - c.pos) / 9 || nm > INT_MAX / 2)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': metadata count %u at offset %" PRIu64
                          " exceeds the index size", r->label, nm, ioff);
    r->mkey = fmd_calloc(nm ? nm : 1, sizeof *r->mkey);
    r->mval = fmd_calloc(nm ? nm : 1, sizeof *r->mval);
    if (!r->mkey || !r->mval) return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory", r->label);
    for (uint32_t i = 0; i < nm; i++) {
        uint64_t at = ioff + c.pos;
        if ((st = cstr(&c, FMDF_MAX_NAME, 0, "metadata key", &r->mkey[i]))) return st;
        r->nmeta = (int)i + 1;
        if ((st = cstr(&c, FMDF_MAX_VALUE, 1, "metadata value", &r->mval[i]))) return st;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(r->mkey[j], r->mkey[i]) == 0)
                return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': duplicate metadata key '%s' at "
                                  "offset %" PRIu64, r->label, r->mkey[i], at);
    }
    if ((st = cneed(&c, 4, "tensor count"))) return st;
    uint32_t nt = get_u32(idx + c.pos);
    uint64_t cnt_at = ioff + c.pos;
    c.pos += 4;
    if (nt > (isz - c.pos) / 41 || nt > INT_MAX / 2)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor count %u at offset %" PRIu64
                          " exceeds the index size", r->label, nt, cnt_at);
    r->t = fmd_calloc(nt ? nt : 1, sizeof *r->t);
    if (!r->t) return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory", r->label);
    for (uint32_t i = 0; i < nt; i++) {
        rtensor *t = &r->t[i];
        uint64_t at = ioff + c.pos;
        char *name = NULL;
        if ((st = cstr(&c, FMDF_MAX_NAME, 0, "tensor name", &name))) return st;
        t->info.name = name;
        r->nt = (int)i + 1;
        if ((st = cneed(&c, 4, "tensor dtype"))) return st;
        const unsigned char *q = idx + c.pos;
        int dtype = q[0], enc = q[1], ndim = q[2];
        if (!fmdf_dtype_size(dtype) || (enc != ENC_STORED && enc != ENC_DEFLATE && enc != ENC_SHUFFLE) ||
            ndim > FMDF_MAX_DIMS || q[3] != 0)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s' (entry at offset %" PRIu64
                              "): bad dtype %d, encoding %d, ndim %d or reserved byte %d", r->label,
                              name, at, dtype, enc, ndim, q[3]);
        c.pos += 4;
        if ((st = cneed(&c, 8 * (uint64_t)ndim + 32, "tensor entry"))) return st;
        q = idx + c.pos;
        t->info.dtype = (fmdf_dtype)dtype;
        t->info.ndim = ndim;
        for (int d = 0; d < ndim; d++) {
            uint64_t v = get_u64(q + 8 * d);
            if (v > (uint64_t)INT64_MAX)
                return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s': dimension %d at "
                                  "offset %" PRIu64 " is negative", r->label, name, d,
                                  ioff + c.pos + 8 * d);
            t->info.shape[d] = (int64_t)v;
        }
        q += 8 * ndim;
        t->enc = (uint8_t)enc;
        t->offset = get_u64(q);
        t->stored = get_u64(q + 8);
        uint64_t raw = get_u64(q + 16);
        t->crc_stored = get_u32(q + 24);
        t->crc_raw = get_u32(q + 28);
        c.pos += 8 * (uint64_t)ndim + 32;
        size_t es = fmdf_dtype_size(dtype);
        int64_t numel = shape_numel(ndim, t->info.shape, es);
        if (numel < 0 || raw != (uint64_t)numel * es)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s' (entry at offset %" PRIu64
                              "): raw size %" PRIu64 " does not match its shape and dtype",
                              r->label, name, at, raw);
        t->info.numel = numel;
        t->info.nbytes = raw;
        if (t->offset < FMDF_HEADER_SIZE || t->offset > ioff || t->stored > ioff - t->offset)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s' (entry at offset %" PRIu64
                              "): payload [%" PRIu64 ", +%" PRIu64 ") lies outside the data "
                              "region [16, %" PRIu64 ")", r->label, name, at, t->offset, t->stored,
                              ioff);
        if (enc == ENC_STORED && t->stored != raw)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': stored tensor '%s' has %" PRIu64
                              " bytes, expected %" PRIu64, r->label, name, t->stored, raw);
        /* deflate never expands beyond ~1032:1; refuse payloads that claim more */
        if (enc != ENC_STORED && (t->stored < 8 || raw / 1032 > t->stored))
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s': compressed size %" PRIu64
                              " impossible for raw size %" PRIu64, r->label, name, t->stored, raw);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(r->t[j].info.name, name) == 0)
                return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': duplicate tensor '%s' at offset %"
                                  PRIu64, r->label, name, at);
    }
    if (c.pos != isz)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': %" PRIu64 " stray bytes at the end of the "
                          "index (offset %" PRIu64 ")", r->label, isz - c.pos, ioff + c.pos);
    return FMD_OK;
}

static fmd_status reader_init(fmdf_reader *r)
{
    unsigned char hdr[FMDF_HEADER_SIZE], tr[FMDF_TRAILER_SIZE];
    fmd_status st;
    if (r->size < FMDF_HEADER_SIZE + FMDF_TRAILER_SIZE + 8)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': %" PRIu64 " bytes is too short for an "
                          ".fmd file (truncated?)", r->label, r->size);
    if ((st = rread(r, 0, hdr, sizeof hdr))) return st;
    if (memcmp(hdr, FMDF_MAGIC, 8) != 0)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': bad magic at offset 0 (not an .fmd file)",
                          r->label);
    r->version = get_u32(hdr + 8);
    if (r->version == 0)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': format version 0 at offset 8", r->label);
    if (r->version > FMDF_FORMAT_VERSION)
        return fmd_seterr(FMD_ERR_VERSION, "fmd file '%s': format version %u is newer than this "
                          "library's %u", r->label, r->version, FMDF_FORMAT_VERSION);
    if (get_u32(hdr + 12) != 0)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': unknown header flags 0x%x at offset 12",
                          r->label, get_u32(hdr + 12));
    uint64_t toff = r->size - FMDF_TRAILER_SIZE;
    if ((st = rread(r, toff, tr, sizeof tr))) return st;
    if (memcmp(tr + 24, FMDF_END, 8) != 0)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': bad end marker at offset %" PRIu64
                          " (truncated or appended-to file)", r->label, toff + 24);
    uint64_t ioff = get_u64(tr), isz = get_u64(tr + 8);
    uint32_t icrc = get_u32(tr + 16);
    if (get_u32(tr + 20) != 0)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': reserved trailer word at offset %" PRIu64
                          " is not 0", r->label, toff + 20);
    if (ioff < FMDF_HEADER_SIZE || ioff > toff || isz != toff - ioff || isz < 8)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': index offset %" PRIu64 " / size %" PRIu64
                          " (trailer at offset %" PRIu64 ") inconsistent with the file size %"
                          PRIu64, r->label, ioff, isz, toff, r->size);
    unsigned char *idx = fmd_malloc((size_t)isz);
    if (!idx)
        return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory for the index (%" PRIu64
                          " bytes)", r->label, isz);
    st = rread(r, ioff, idx, (size_t)isz);
    if (!st && crc_update(0, idx, (size_t)isz) != icrc)
        st = fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': index CRC32 mismatch (index at offset %"
                        PRIu64 ", %" PRIu64 " bytes)", r->label, ioff, isz);
    if (!st) st = parse_index(r, idx, isz, ioff);
    fmd_free(idx);
    return st;
}

static fmd_status reader_new(const char *label, fmdf_reader **out)
{
    fmdf_reader *r = fmd_xcalloc(1, sizeof *r, "fmd reader");
    if (!r) return FMD_ERR_OOM;
    r->fd = -1;
    r->label = fmd_strdup(label);
    if (!r->label) {
        fmd_free(r);
        return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory", label);
    }
    *out = r;
    return FMD_OK;
}

fmd_status fmdf_open(const char *path, fmdf_reader **out)
{
    FMD_CHECK_ARG(path && path[0], "fmdf_open: path is NULL or empty");
    FMD_CHECK_ARG(out, "fmdf_open: out is NULL");
    fmdf_reader *r = NULL;
    fmd_status st = reader_new(path, &r);
    if (st) return st;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        st = fmd_seterr(FMD_ERR_IO, "fmd file '%s': cannot open: %s", path, strerror(errno));
        fmdf_close(r);
        return st;
    }
    struct stat sb;
    if (fstat(r->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = fmd_seterr(FMD_ERR_IO, "fmd file '%s': not a regular file", path);
        fmdf_close(r);
        return st;
    }
    r->size = (uint64_t)sb.st_size;
    st = reader_init(r);
    if (st) {
        fmdf_close(r);
        return st;
    }
    *out = r;
    return FMD_OK;
}

fmd_status fmdf_open_memory(const void *data, size_t size, fmdf_reader **out)
{
    FMD_CHECK_ARG(data || size == 0, "fmdf_open_memory: data is NULL");
    FMD_CHECK_ARG(out, "fmdf_open_memory: out is NULL");
    fmdf_reader *r = NULL;
    fmd_status st = reader_new("<memory>", &r);
    if (st) return st;
    r->mem = data ? data : (const unsigned char *)"";
    r->size = size;
    st = reader_init(r);
    if (st) {
        fmdf_close(r);
        return st;
    }
    *out = r;
    return FMD_OK;
}

uint32_t fmdf_format_version(const fmdf_reader *r) { return r ? r->version : 0; }
int fmdf_meta_count(const fmdf_reader *r) { return r ? r->nmeta : 0; }
const char *fmdf_meta_key(const fmdf_reader *r, int i)
{
    return (r && i >= 0 && i < r->nmeta) ? r->mkey[i] : NULL;
}
const char *fmdf_meta_value(const fmdf_reader *r, int i)
{
    return (r && i >= 0 && i < r->nmeta) ? r->mval[i] : NULL;
}

const char *fmdf_meta_get(const fmdf_reader *r, const char *key)
{
    if (!r || !key) return NULL;
    for (int i = 0; i < r->nmeta; i++)
        if (strcmp(r->mkey[i], key) == 0) return r->mval[i];
    return NULL;
}

fmd_status fmdf_meta_str(const fmdf_reader *r, const char *key, const char **out)
{
    FMD_CHECK_ARG(r && key && out, "fmdf_meta_str: NULL argument");
    const char *v = fmdf_meta_get(r, key);
    if (!v)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': metadata key '%s' is missing", r->label,
                          key);
    *out = v;
    return FMD_OK;
}

fmd_status fmdf_meta_i64(const fmdf_reader *r, const char *key, int64_t *out)
{
    const char *v = NULL;
    fmd_status st = fmdf_meta_str(r, key, &v);
    if (st) return st;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': metadata '%s' = '%.40s' is not an integer",
                          r->label, key, v);
    *out = (int64_t)x;
    return FMD_OK;
}

fmd_status fmdf_meta_f64(const fmdf_reader *r, const char *key, double *out)
{
    const char *v = NULL;
    fmd_status st = fmdf_meta_str(r, key, &v);
    if (st) return st;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': metadata '%s' = '%.40s' is not a finite "
                          "number", r->label, key, v);
    *out = x;
    return FMD_OK;
}

int fmdf_tensor_count(const fmdf_reader *r) { return r ? r->nt : 0; }
const fmdf_tensor_info *fmdf_tensor_at(const fmdf_reader *r, int i)
{
    return (r && i >= 0 && i < r->nt) ? &r->t[i].info : NULL;
}

static rtensor *find_tensor(const fmdf_reader *r, const char *name)
{
    if (!r || !name) return NULL;
    for (int i = 0; i < r->nt; i++)
        if (strcmp(r->t[i].info.name, name) == 0) return &r->t[i];
    return NULL;
}

const fmdf_tensor_info *fmdf_tensor_find(const fmdf_reader *r, const char *name)
{
    rtensor *t = find_tensor(r, name);
    return t ? &t->info : NULL;
}

static fmd_status read_inflate(fmdf_reader *r, rtensor *t, unsigned char *dst)
{
    const int shuffle = t->enc == ENC_SHUFFLE;
    const size_t es = fmdf_dtype_size(t->info.dtype);
    const uint64_t total = t->info.nbytes;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = z_alloc;
    zs.zfree = z_free;
    if (inflateInit(&zs) != Z_OK)
        return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': inflateInit failed", r->label);
    fmd_status st = FMD_OK;
    uint64_t in_left = t->stored, in_off = t->offset, done = 0;
    uint32_t crc_s = 0;
    int zr = Z_OK;
    /* output window: the next slice of dst, or the shuffle buffer for the
     * next block; once all of the tensor is delivered, a 1-byte sink that
     * must stay empty (a stream that wants to write past it is corrupt) */
    unsigned char *win = NULL, sink[1];
    uint64_t win_len = 0, win_fill = 0;
    for (;;) {
        if (win_fill == win_len && done < total) {
            if (win_len) {
                if (shuffle) unshuffle_block(dst + done, r->sbuf, (size_t)(win_len / es), es);
                done += win_len;
            }
            if (done < total) {
                uint64_t left = total - done;
                if (shuffle) {
                    uint64_t ne = left / es > FMDF_SBLOCK ? FMDF_SBLOCK : left / es;
                    win = r->sbuf;
                    win_len = ne * es;
                } else {
                    win = dst + done;
                    win_len = left > FMDF_ZMAX ? FMDF_ZMAX : left;
                }
                win_fill = 0;
            }
        }
        if (zr == Z_STREAM_END) break;
        if (zs.avail_in == 0) {
            if (in_left == 0) break; /* input exhausted before the stream ended */
            size_t k = in_left > FMDF_CHUNK ? FMDF_CHUNK : (size_t)in_left;
            if ((st = rread(r, in_off, r->chunk, k))) break;
            crc_s = crc_update(crc_s, r->chunk, k);
            zs.next_in = r->chunk;
            zs.avail_in = (uInt)k;
            in_off += k;
            in_left -= k;
        }
        const int full = done == total;
        uInt room = full ? 1 : (uInt)(win_len - win_fill);
        zs.next_out = full ? sink : win + win_fill;
        zs.avail_out = room;
        zr = inflate(&zs, Z_NO_FLUSH);
        if (full) {
            if (zs.avail_out == 0) {
                zr = Z_DATA_ERROR; /* produced output beyond the declared size */
                break;
            }
        } else {
            win_fill += room - zs.avail_out;
        }
        if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_MEM_ERROR || zr == Z_STREAM_ERROR)
            break;
        if (zr == Z_BUF_ERROR && zs.avail_in != 0) break; /* no progress possible */
    }
    inflateEnd(&zs);
    if (st) return st;
    if (zr == Z_MEM_ERROR)
        return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': tensor '%s': out of memory inflating",
                          r->label, t->info.name);
    /* finish the stored CRC over any input inflate did not need */
    while (in_left) {
        size_t k = in_left > FMDF_CHUNK ? FMDF_CHUNK : (size_t)in_left;
        if ((st = rread(r, in_off, r->chunk, k))) return st;
        crc_s = crc_update(crc_s, r->chunk, k);
        in_off += k;
        in_left -= k;
    }
    if (crc_s != t->crc_stored)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s': CRC32 mismatch in its "
                          "payload at offset %" PRIu64 " (%" PRIu64 " bytes)", r->label,
                          t->info.name, t->offset, t->stored);
    if (zr != Z_STREAM_END || done != total || zs.avail_in != 0)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s': corrupt deflate stream at "
                          "offset %" PRIu64 " (%s, %" PRIu64 " of %" PRIu64 " bytes inflated)",
                          r->label, t->info.name, t->offset, zs.msg ? zs.msg : "wrong length",
                          done + (shuffle ? 0 : win_fill), total);
    return FMD_OK;
}

fmd_status fmdf_read_tensor(fmdf_reader *r, const char *name, fmdf_dtype dtype, int ndim,
                            const int64_t *shape, void *dst, size_t dst_bytes)
{
    FMD_CHECK_ARG(r, "fmdf_read_tensor: reader is NULL");
    FMD_CHECK_ARG(name, "fmdf_read_tensor: name is NULL");
    rtensor *t = find_tensor(r, name);
    if (!t)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd file '%s': no tensor named '%s'", r->label, name);
    if (t->info.dtype != dtype)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd file '%s': tensor '%s' has dtype %s, expected %s",
                          r->label, name, fmdf_dtype_name(t->info.dtype), fmdf_dtype_name(dtype));
    if (ndim >= 0) {
        int same = ndim == t->info.ndim && (ndim == 0 || shape);
        for (int i = 0; same && i < ndim; i++) same = shape[i] == t->info.shape[i];
        if (!same) {
            char a[160], b[160];
            return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd file '%s': tensor '%s' has shape %s, "
                              "expected %s", r->label, name,
                              fmdf_shape_str(a, sizeof a, t->info.ndim, t->info.shape),
                              shape ? fmdf_shape_str(b, sizeof b, ndim > FMDF_MAX_DIMS ?
                                                     FMDF_MAX_DIMS : ndim, shape) : "(NULL)");
        }
    }
    if (dst_bytes < t->info.nbytes || (!dst && t->info.nbytes))
        return fmd_seterr(FMD_ERR_INVALID_ARG, "fmd file '%s': tensor '%s' needs %" PRIu64
                          " bytes, buffer has %zu", r->label, name, t->info.nbytes, dst_bytes);
    fmd_status st;
    if (!r->chunk) {
        r->chunk = fmd_malloc(FMDF_CHUNK);
        if (!r->chunk) return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory", r->label);
    }
    if (t->enc == ENC_SHUFFLE && !r->sbuf) {
        r->sbuf = fmd_malloc(FMDF_SBUF);
        if (!r->sbuf) return fmd_seterr(FMD_ERR_OOM, "fmd file '%s': out of memory", r->label);
    }
    if (t->enc == ENC_STORED) {
        if ((st = rread(r, t->offset, dst, (size_t)t->stored))) return st;
        if (crc_update(0, dst, (size_t)t->stored) != t->crc_stored)
            return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s': CRC32 mismatch in its "
                              "payload at offset %" PRIu64, r->label, name, t->offset);
    } else if ((st = read_inflate(r, t, dst))) {
        return st;
    }
    if (crc_update(0, dst, (size_t)t->info.nbytes) != t->crc_raw)
        return fmd_seterr(FMD_ERR_FORMAT, "fmd file '%s': tensor '%s': CRC32 of the inflated data "
                          "does not match (payload at offset %" PRIu64 ")", r->label, name,
                          t->offset);
    return FMD_OK;
}
