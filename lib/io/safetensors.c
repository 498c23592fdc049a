/* safetensors.c - strict safetensors reader and F32 writer (see
 * safetensors.h).  The header is parsed by a small recursive-descent JSON
 * parser that accepts exactly the JSON grammar (RFC 8259) and the schema of
 * safetensors; every number taken from the file is range-checked before use. */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/safetensors.h"
#include "util/util.h"

struct st_file {
    FILE *fp;                 /* NULL for memory images */
    unsigned char *mem;       /* memory image (owned) */
    uint64_t size;            /* total bytes */
    uint64_t data_start;      /* 8 + header length */
    st_tensor *t;
    int n, cap;
    char **meta;              /* key, value pairs */
    int nmeta, capmeta;
    char path[256];
};

static const struct { const char *name; int size; } DT[ST_DTYPE_COUNT] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2},
    {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8},
    {"F64", 8}};

const char *st_dtype_name(st_dtype d) { return d >= 0 && d < ST_DTYPE_COUNT ? DT[d].name : "?"; }

/* ---- JSON parsing ------------------------------------------------------------ */
typedef struct jp {
    const char *s;
    size_t n, i;
    const char *who;          /* file name for messages */
    int depth;
} jp;

#define JERR(p, ...) jerr_(p, __VA_ARGS__)
static fmd_status jerr_(jp *p, const char *fmt, ...) FMD_PRINTF(2, 3);
static fmd_status jerr_(jp *p, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: header byte %zu (file offset %zu): %s",
                      p->who, p->i, p->i + 8, msg);
}

static void ws(jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static int peek(jp *p) { ws(p); return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

static fmd_status expect(jp *p, char c)
{
    if (peek(p) != c) return JERR(p, "expected '%c'", c);
    p->i++;
    return FMD_OK;
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parse a string into a new fmd_malloc'd UTF-8 buffer (*out). */
static fmd_status parse_string(jp *p, char **out)
{
    if (peek(p) != '"') return JERR(p, "expected a string");
    p->i++;
    size_t cap = 32, len = 0;
    char *b = fmd_malloc(cap);
    if (!b) return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory");
    for (;;) {
        if (p->i >= p->n) { fmd_free(b); return JERR(p, "unterminated string"); }
        unsigned char c = (unsigned char)p->s[p->i++];
        uint32_t cp;
        if (c == '"') break;
        if (c < 0x20) { fmd_free(b); return JERR(p, "control character in string"); }
        if (c == '\\') {
            if (p->i >= p->n) { fmd_free(b); return JERR(p, "unterminated escape"); }
            char e = p->s[p->i++];
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = 8; break;
            case 'f': cp = 12; break;
            case 'n': cp = 10; break;
            case 'r': cp = 13; break;
            case 't': cp = 9; break;
            case 'u': {
                if (p->i + 4 > p->n) { fmd_free(b); return JERR(p, "short \\u escape"); }
                cp = 0;
                for (int k = 0; k < 4; k++) {
                    int h = hexv((unsigned char)p->s[p->i++]);
                    if (h < 0) { fmd_free(b); return JERR(p, "bad \\u escape"); }
                    cp = cp * 16 + (uint32_t)h;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo = 0;
                    if (p->i + 6 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
                        fmd_free(b);
                        return JERR(p, "unpaired surrogate");
                    }
                    p->i += 2;
                    for (int k = 0; k < 4; k++) {
                        int h = hexv((unsigned char)p->s[p->i++]);
                        if (h < 0) { fmd_free(b); return JERR(p, "bad \\u escape"); }
                        lo = lo * 16 + (uint32_t)h;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) { fmd_free(b); return JERR(p, "unpaired surrogate"); }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fmd_free(b);
                    return JERR(p, "unpaired surrogate");
                }
                break;
            }
            default: fmd_free(b); return JERR(p, "bad escape '\\%c'", e);
            }
        } else {
            cp = c;     /* raw bytes >= 0x80 are copied as they are (UTF-8 passthrough) */
        }
        if (len + 5 > cap) {
            cap *= 2;
            char *nb = fmd_realloc(b, cap);
            if (!nb) { fmd_free(b); return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory"); }
            b = nb;
        }
        if (c == '\\' && cp >= 0x80) {
            if (cp < 0x800) {
                b[len++] = (char)(0xC0 | (cp >> 6));
                b[len++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                b[len++] = (char)(0xE0 | (cp >> 12));
                b[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                b[len++] = (char)(0x80 | (cp & 0x3F));
            } else {
                b[len++] = (char)(0xF0 | (cp >> 18));
                b[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                b[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                b[len++] = (char)(0x80 | (cp & 0x3F));
            }
        } else {
            if (c == '\\' && cp == 0) { fmd_free(b); return JERR(p, "NUL character in string"); }
            b[len++] = (char)cp;
        }
    }
    b[len] = 0;
    *out = b;
    return FMD_OK;
}

/* A non-negative JSON integer (no sign, no fraction/exponent) below 2^63. */
static fmd_status parse_uint(jp *p, uint64_t *out)
{
    int c = peek(p);
    if (c < '0' || c > '9') return JERR(p, "expected a non-negative integer");
    if (c == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
        return JERR(p, "leading zero in number");
    uint64_t v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (v > (UINT64_C(0x7FFFFFFFFFFFFFFF) - d) / 10) return JERR(p, "integer too large");
        v = v * 10 + d;
        p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return JERR(p, "expected an integer");
    *out = v;
    return FMD_OK;
}

static fmd_status parse_uint_array(jp *p, uint64_t *v, int maxn, int *count)
{
    fmd_status st = expect(p, '[');
    if (st) return st;
    int n = 0;
    if (peek(p) == ']') {
        p->i++;
        *count = 0;
        return FMD_OK;
    }
    for (;;) {
        if (n >= maxn) return JERR(p, "too many elements (at most %d)", maxn);
        st = parse_uint(p, &v[n++]);
        if (st) return st;
        int c = peek(p);
        if (c == ',') { p->i++; continue; }
        if (c == ']') { p->i++; break; }
        return JERR(p, "expected ',' or ']'");
    }
    *count = n;
    return FMD_OK;
}

static int find_tensor(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return i;
    return -1;
}

static fmd_status parse_metadata(jp *p, st_file *f)
{
    fmd_status st = expect(p, '{');
    if (st) return st;
    if (peek(p) == '}') { p->i++; return FMD_OK; }
    for (;;) {
        char *k = NULL, *v = NULL;
        st = parse_string(p, &k);
        if (st) return st;
        for (int i = 0; i < f->nmeta; i++)
            if (!strcmp(f->meta[2 * i], k)) { fmd_free(k); return JERR(p, "duplicate metadata key"); }
        if ((st = expect(p, ':')) || (st = parse_string(p, &v))) { fmd_free(k); return st; }
        if (f->nmeta == f->capmeta) {
            int nc = f->capmeta ? 2 * f->capmeta : 8;
            char **nm = fmd_realloc(f->meta, sizeof(char *) * 2 * (size_t)nc);
            if (!nm) { fmd_free(k); fmd_free(v); return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory"); }
            f->meta = nm;
            f->capmeta = nc;
        }
        f->meta[2 * f->nmeta] = k;
        f->meta[2 * f->nmeta + 1] = v;
        f->nmeta++;
        int c = peek(p);
        if (c == ',') { p->i++; continue; }
        if (c == '}') { p->i++; return FMD_OK; }
        return JERR(p, "expected ',' or '}' in __metadata__");
    }
}

static fmd_status parse_entry(jp *p, st_file *f, char *name)
{
    /* name is owned by the caller until stored */
    st_tensor t;
    memset(&t, 0, sizeof t);
    int have_dtype = 0, have_shape = 0, have_off = 0;
    fmd_status st = expect(p, '{');
    if (st) return st;
    if (peek(p) == '}') return JERR(p, "tensor '%s': empty entry", name);
    for (;;) {
        char *k = NULL;
        st = parse_string(p, &k);
        if (st) return st;
        if ((st = expect(p, ':'))) { fmd_free(k); return st; }
        if (!strcmp(k, "dtype")) {
            fmd_free(k);
            if (have_dtype) return JERR(p, "tensor '%s': duplicate dtype", name);
            char *d = NULL;
            if ((st = parse_string(p, &d))) return st;
            int found = -1;
            for (int i = 0; i < ST_DTYPE_COUNT; i++)
                if (!strcmp(d, DT[i].name)) found = i;
            if (found < 0) {
                st = JERR(p, "tensor '%s': unknown dtype '%.20s'", name, d);
                fmd_free(d);
                return st;
            }
            fmd_free(d);
            t.dtype = (st_dtype)found;
            have_dtype = 1;
        } else if (!strcmp(k, "shape")) {
            fmd_free(k);
            if (have_shape) return JERR(p, "tensor '%s': duplicate shape", name);
            uint64_t v[ST_MAX_DIMS];
            if ((st = parse_uint_array(p, v, ST_MAX_DIMS, &t.ndim))) return st;
            uint64_t numel = 1;
            for (int i = 0; i < t.ndim; i++) {
                if (v[i] > 0 && numel > (UINT64_C(1) << 62) / v[i])
                    return JERR(p, "tensor '%s': shape product overflows", name);
                numel *= v[i];
                t.shape[i] = (int64_t)v[i];
            }
            t.numel = (int64_t)numel;
            have_shape = 1;
        } else if (!strcmp(k, "data_offsets")) {
            fmd_free(k);
            if (have_off) return JERR(p, "tensor '%s': duplicate data_offsets", name);
            uint64_t v[2];
            int cnt = 0;
            if ((st = parse_uint_array(p, v, 2, &cnt))) return st;
            if (cnt != 2) return JERR(p, "tensor '%s': data_offsets needs 2 numbers", name);
            t.begin = v[0];
            t.end = v[1];
            have_off = 1;
        } else {
            st = JERR(p, "tensor '%s': unknown field '%.40s'", name, k);
            fmd_free(k);
            return st;
        }
        int c = peek(p);
        if (c == ',') { p->i++; continue; }
        if (c == '}') { p->i++; break; }
        return JERR(p, "tensor '%s': expected ',' or '}'", name);
    }
    if (!have_dtype || !have_shape || !have_off)
        return JERR(p, "tensor '%s': needs dtype, shape and data_offsets", name);
    uint64_t data_size = f->size - f->data_start;
    uint64_t bytes = (uint64_t)t.numel * (uint64_t)DT[t.dtype].size;
    if (t.begin > t.end || t.end > data_size)
        return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: tensor '%s': data_offsets [%" PRIu64
                          ", %" PRIu64 ") outside the %" PRIu64 "-byte data section",
                          p->who, name, t.begin, t.end, data_size);
    if (t.end - t.begin != bytes)
        return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: tensor '%s': %" PRIu64 " bytes for %"
                          PRId64 " %s elements (expected %" PRIu64 ")",
                          p->who, name, t.end - t.begin, t.numel, DT[t.dtype].name, bytes);
    if (f->n == f->cap) {
        int nc = f->cap ? 2 * f->cap : 64;
        st_tensor *nt = fmd_realloc(f->t, sizeof *nt * (size_t)nc);
        if (!nt) return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory");
        f->t = nt;
        f->cap = nc;
    }
    t.name = name;
    f->t[f->n++] = t;
    return FMD_OK;
}

static fmd_status parse_header(st_file *f, const char *hdr, size_t n, const char *who)
{
    jp p = {hdr, n, 0, who, 0};
    fmd_status st = expect(&p, '{');
    if (st) return st;
    int seen_meta = 0;
    if (peek(&p) == '}') {
        p.i++;
    } else {
        for (;;) {
            char *k = NULL;
            if ((st = parse_string(&p, &k))) return st;
            if ((st = expect(&p, ':'))) { fmd_free(k); return st; }
            if (!strcmp(k, "__metadata__")) {
                fmd_free(k);
                if (seen_meta) return JERR(&p, "duplicate __metadata__");
                seen_meta = 1;
                if ((st = parse_metadata(&p, f))) return st;
            } else {
                if (find_tensor(f, k) >= 0) {
                    st = JERR(&p, "duplicate tensor '%s'", k);
                    fmd_free(k);
                    return st;
                }
                if ((st = parse_entry(&p, f, k))) { fmd_free(k); return st; }
            }
            int c = peek(&p);
            if (c == ',') { p.i++; continue; }
            if (c == '}') { p.i++; break; }
            return JERR(&p, "expected ',' or '}'");
        }
    }
    ws(&p);
    if (p.i != p.n) return JERR(&p, "trailing bytes after the header object");
    return FMD_OK;
}

/* ---- open / close -------------------------------------------------------------- */
static fmd_status read_at(st_file *f, uint64_t off, void *dst, size_t n)
{
    if (off > f->size || n > f->size - off)
        return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: read of %zu bytes at %" PRIu64
                          " beyond the %" PRIu64 "-byte file", f->path, n, off, f->size);
    if (f->mem) {
        memcpy(dst, f->mem + off, n);
        return FMD_OK;
    }
    if (fseeko(f->fp, (off_t)off, SEEK_SET) != 0 || fread(dst, 1, n, f->fp) != n)
        return fmd_seterr(FMD_ERR_IO, "safetensors %s: cannot read %zu bytes at offset %" PRIu64,
                          f->path, n, off);
    return FMD_OK;
}

static fmd_status finish_open(st_file *f, st_file **out)
{
    unsigned char lenb[8];
    if (f->size < 8) {
        fmd_status e = fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: file of %" PRIu64 " bytes is "
                                  "shorter than the 8-byte header length", f->path, f->size);
        st_close(f);
        return e;
    }
    fmd_status st = read_at(f, 0, lenb, 8);
    if (st) { st_close(f); return st; }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | lenb[i];
    if (hl < 2 || hl > ST_MAX_HEADER || hl > f->size - 8) {
        st = fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: header length %" PRIu64 " at offset 0 is "
                        "invalid (file has %" PRIu64 " bytes, limit %u)", f->path, hl, f->size,
                        ST_MAX_HEADER);
        st_close(f);
        return st;
    }
    char *hdr = fmd_malloc((size_t)hl);
    if (!hdr) { st_close(f); return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory for the header"); }
    st = read_at(f, 8, hdr, (size_t)hl);
    f->data_start = 8 + hl;
    if (!st) st = parse_header(f, hdr, (size_t)hl, f->path);
    fmd_free(hdr);
    if (st) { st_close(f); return st; }
    *out = f;
    return FMD_OK;
}

fmd_status st_open(const char *path, st_file **out)
{
    FMD_CHECK_ARG(path && out, "st_open: path and out must not be NULL");
    st_file *f = fmd_xcalloc(1, sizeof *f, "safetensors file");
    if (!f) return FMD_ERR_OOM;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fp = fopen(path, "rb");
    if (!f->fp) {
        fmd_status st = fmd_seterr(FMD_ERR_IO, "safetensors: cannot open '%s': %s", path, strerror(errno));
        st_close(f);
        return st;
    }
    off_t sz = fseeko(f->fp, 0, SEEK_END) == 0 ? ftello(f->fp) : -1;
    if (sz < 0) {
        st_close(f);
        return fmd_seterr(FMD_ERR_IO, "safetensors: cannot size '%s'", path);
    }
    f->size = (uint64_t)sz;
    return finish_open(f, out);
}

fmd_status st_open_mem(const void *data, size_t size, st_file **out)
{
    FMD_CHECK_ARG((data || !size) && out, "st_open_mem: data and out must not be NULL");
    st_file *f = fmd_xcalloc(1, sizeof *f, "safetensors file");
    if (!f) return FMD_ERR_OOM;
    snprintf(f->path, sizeof f->path, "<memory>");
    f->mem = fmd_malloc(size ? size : 1);
    if (!f->mem) { st_close(f); return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory"); }
    if (size) memcpy(f->mem, data, size);
    f->size = size;
    return finish_open(f, out);
}

void st_close(st_file *f)
{
    if (!f) return;
    if (f->fp) fclose(f->fp);
    fmd_free(f->mem);
    for (int i = 0; i < f->n; i++) fmd_free(f->t[i].name);
    for (int i = 0; i < 2 * f->nmeta; i++) fmd_free(f->meta[i]);
    fmd_free(f->t);
    fmd_free(f->meta);
    fmd_free(f);
}

int st_count(const st_file *f) { return f ? f->n : 0; }
const st_tensor *st_at(const st_file *f, int i) { return f && i >= 0 && i < f->n ? &f->t[i] : NULL; }
const st_tensor *st_find(const st_file *f, const char *name)
{
    int i = f && name ? find_tensor(f, name) : -1;
    return i >= 0 ? &f->t[i] : NULL;
}
const char *st_metadata(const st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- conversion ------------------------------------------------------------------ */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, bits;
    if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else {                       /* subnormal: normalise */
            int sh = 0;
            while (!(m & 0x400u)) { m <<= 1; sh++; }
            m &= 0x3FFu;
            bits = sign | ((uint32_t)(127 - 15 + 1 - sh) << 23) | (m << 13);
        }
    } else if (e == 31) {
        bits = sign | 0x7F800000u | (m << 13);
    } else {
        bits = sign | ((e + 127 - 15) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

fmd_status st_read_f32(st_file *f, const st_tensor *t, float *dst, int64_t n)
{
    FMD_CHECK_ARG(f && t && dst, "st_read_f32: arguments must not be NULL");
    FMD_CHECK_ARG(n == t->numel, "st_read_f32: tensor '%s' has %lld elements, buffer %lld",
                  t->name, (long long)t->numel, (long long)n);
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return fmd_seterr(FMD_ERR_UNSUPPORTED, "safetensors %s: tensor '%s' has dtype %s "
                          "(supported: F32, F16, BF16)", f->path, t->name, DT[t->dtype].name);
    size_t es = (size_t)DT[t->dtype].size;
    const size_t chunk = 1 << 16;
    unsigned char *buf = fmd_malloc(chunk * es);
    if (!buf) return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory");
    fmd_status st = FMD_OK;
    for (int64_t i = 0; i < n && !st; i += (int64_t)chunk) {
        size_t k = (size_t)(n - i) < chunk ? (size_t)(n - i) : chunk;
        st = read_at(f, f->data_start + t->begin + (uint64_t)i * es, buf, k * es);
        if (st) break;
        for (size_t j = 0; j < k; j++) {
            const unsigned char *b = buf + j * es;
            uint32_t bits;
            switch (t->dtype) {
            case ST_F32:
                bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
                memcpy(&dst[i + (int64_t)j], &bits, 4);
                break;
            case ST_BF16:
                bits = ((uint32_t)b[0] | (uint32_t)b[1] << 8) << 16;
                memcpy(&dst[i + (int64_t)j], &bits, 4);
                break;
            default:
                dst[i + (int64_t)j] = f16_to_f32((uint16_t)(b[0] | b[1] << 8));
            }
        }
    }
    fmd_free(buf);
    return st;
}

/* ---- load into a model ------------------------------------------------------------- */
static fmd_status shape_str(const int64_t *s, int nd, char *out, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (int i = 0; i < nd && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, i ? ", %lld" : "%lld", (long long)s[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
    return FMD_OK;
}

static fmd_status load_view(st_file *f, const st_tensor *t, const nn_param *v, float *dev_base,
                            fmd_backend *be, float *host)
{
    int same = t->ndim == v->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == v->shape[i];
    if (!same) {
        char a[96], b[96];
        shape_str(t->shape, t->ndim, a, sizeof a);
        shape_str(v->shape, v->ndim, b, sizeof b);
        return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: tensor '%s' has shape %s, the model "
                          "expects %s", f->path, t->name, a, b);
    }
    fmd_status st = st_read_f32(f, t, host, t->numel);
    if (st) return st;
    be->ops->upload(be, dev_base + v->offset, host, (size_t)v->numel * sizeof(float));
    return FMD_OK;
}

fmd_status st_load_model(st_file *f, nn_model *m, int flags, char **skipped)
{
    FMD_CHECK_ARG(f && m, "st_load_model: file and model must not be NULL");
    FMD_CHECK_ARG((flags & ~ST_LOAD_SKIP_UNUSED) == 0, "st_load_model: unknown flags 0x%x", flags);
    if (skipped) *skipped = NULL;
    fmd_backend *be = nn_model_backend(m);
    /* every parameter must be present; check names first so that nothing is
     * half-loaded on the common errors */
    for (int i = 0; i < nn_model_num_views(m); i++) {
        const nn_param *v = nn_model_view(m, i);
        if (!st_find(f, v->name))
            return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: tensor '%s' is missing", f->path, v->name);
    }
    size_t cap = 0, len = 0;
    char *list = NULL;
    int64_t maxn = 1;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        if (nn_model_find(m, t->name) || nn_model_find_buffer(m, t->name)) {
            if (t->numel > maxn) maxn = t->numel;
            continue;
        }
        if (!(flags & ST_LOAD_SKIP_UNUSED)) {
            fmd_free(list);
            return fmd_seterr(FMD_ERR_FORMAT, "safetensors %s: tensor '%s' is not a parameter of "
                              "the model (ask to skip unused tensors to ignore it)", f->path, t->name);
        }
        fmd_log(FMD_LOG_INFO, "safetensors %s: skipping unused tensor '%s'", f->path, t->name);
        size_t need = len + strlen(t->name) + 3;
        if (need > cap) {
            cap = need * 2;
            char *nl = fmd_realloc(list, cap);
            if (!nl) { fmd_free(list); return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory"); }
            list = nl;
        }
        len += (size_t)snprintf(list + len, cap - len, "%s%s", len ? ", " : "", t->name);
    }
    float *host = fmd_malloc((size_t)maxn * sizeof(float));
    if (!host) { fmd_free(list); return fmd_seterr(FMD_ERR_OOM, "safetensors: out of memory"); }
    fmd_status st = FMD_OK;
    for (int i = 0; i < nn_model_num_views(m) && !st; i++) {
        const nn_param *v = nn_model_view(m, i);
        st = load_view(f, st_find(f, v->name), v, nn_model_params(m), be, host);
    }
    for (int i = 0; i < nn_model_num_buffers(m) && !st; i++) {
        const nn_param *v = nn_model_buffer_view(m, i);
        const st_tensor *t = st_find(f, v->name);
        if (t) st = load_view(f, t, v, nn_model_buffer_data(m), be, host);
    }
    fmd_free(host);
    if (!st && !fmdb_ok(be))
        st = fmd_seterr(be->status, "st_load_model: backend %s: %s", be->name, be->errmsg);
    if (st || !skipped) fmd_free(list);
    else *skipped = list;
    return st;
}

/* ---- writer ------------------------------------------------------------------------ */
static int json_str(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    if (o < cap) out[o] = '"';
    o++;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        int k;
        if (c == '"' || c == '\\') k = snprintf(tmp, sizeof tmp, "\\%c", c);
        else if (c < 0x20) k = snprintf(tmp, sizeof tmp, "\\u%04x", c);
        else { tmp[0] = (char)c; tmp[1] = 0; k = 1; }
        for (int i = 0; i < k; i++, o++)
            if (o < cap) out[o] = tmp[i];
    }
    if (o < cap) out[o] = '"';
    o++;
    if (o < cap) out[o] = 0;
    return (int)o;
}

fmd_status st_write(const char *path, const st_entry *e, int n, const char *const *meta, int nmeta)
{
    FMD_CHECK_ARG(path && (e || n == 0) && n >= 0 && nmeta >= 0 && (meta || nmeta == 0),
                  "st_write: bad arguments");
    for (int i = 0; i < n; i++) {
        FMD_CHECK_ARG(e[i].name && e[i].data && e[i].ndim >= 0 && e[i].ndim <= ST_MAX_DIMS,
                      "st_write: entry %d is malformed", i);
        for (int j = 0; j < i; j++)
            FMD_CHECK_ARG(strcmp(e[i].name, e[j].name), "st_write: duplicate name '%s'", e[i].name);
    }
    /* header size: measure, then fill */
    char *hdr = NULL;
    size_t cap = 0, len = 0;
    for (int pass = 0; pass < 2; pass++) {
        len = 0;
        uint64_t off = 0;
#define PUT(...) len += (size_t)snprintf(hdr ? hdr + len : NULL, hdr ? cap - len : 0, __VA_ARGS__)
#define PUTS(s) len += (size_t)json_str(hdr ? hdr + len : NULL, hdr ? cap - len : 0, s)
        PUT("{");
        if (nmeta) {
            PUT("\"__metadata__\":{");
            for (int i = 0; i < nmeta; i++) {
                if (i) PUT(",");
                PUTS(meta[2 * i]);
                PUT(":");
                PUTS(meta[2 * i + 1]);
            }
            PUT("}");
        }
        for (int i = 0; i < n; i++) {
            int64_t numel = 1;
            if (nmeta || i) PUT(",");
            PUTS(e[i].name);
            PUT(":{\"dtype\":\"F32\",\"shape\":[");
            for (int j = 0; j < e[i].ndim; j++) {
                PUT(j ? ",%lld" : "%lld", (long long)e[i].shape[j]);
                numel *= e[i].shape[j];
            }
            PUT("],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + (uint64_t)numel * 4));
            off += (uint64_t)numel * 4;
        }
        PUT("}");
#undef PUT
#undef PUTS
        if (pass == 0) {
            cap = len + 8 + 1;
            hdr = fmd_malloc(cap);
            if (!hdr) return fmd_seterr(FMD_ERR_OOM, "st_write: out of memory");
        }
    }
    while (len % 8) hdr[len++] = ' ';     /* pad so the data is 8-byte aligned */
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fmd_free(hdr);
        return fmd_seterr(FMD_ERR_IO, "st_write: cannot create '%s': %s", path, strerror(errno));
    }
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fwrite(lb, 1, 8, fp) == 8 && fwrite(hdr, 1, len, fp) == len;
    for (int i = 0; ok && i < n; i++) {
        int64_t numel = 1;
        for (int j = 0; j < e[i].ndim; j++) numel *= e[i].shape[j];
        for (int64_t k = 0; ok && k < numel; k++) {
            uint32_t bits;
            unsigned char b[4];
            memcpy(&bits, &e[i].data[k], 4);
            for (int q = 0; q < 4; q++) b[q] = (unsigned char)(bits >> (8 * q));
            ok = fwrite(b, 1, 4, fp) == 4;
        }
    }
    ok = (fclose(fp) == 0) && ok;
    fmd_free(hdr);
    if (!ok) return fmd_seterr(FMD_ERR_IO, "st_write: write to '%s' failed", path);
    return FMD_OK;
}

fmd_status st_save_model(nn_model *m, const char *path)
{
    FMD_CHECK_ARG(m && path, "st_save_model: model and path must not be NULL");
    fmd_backend *be = nn_model_backend(m);
    int nv = nn_model_num_views(m), nb = nn_model_num_buffers(m);
    int64_t np = nn_model_num_params(m), nbuf = 0;
    for (int i = 0; i < nb; i++) nbuf += nn_model_buffer_view(m, i)->numel;
    float *host = fmd_malloc((size_t)(np + nbuf + 1) * sizeof(float));
    st_entry *e = fmd_malloc(sizeof *e * (size_t)(nv + nb + 1));
    if (!host || !e) {
        fmd_free(host);
        fmd_free(e);
        return fmd_seterr(FMD_ERR_OOM, "st_save_model: out of memory");
    }
    be->ops->download(be, host, nn_model_params(m), (size_t)np * sizeof(float));
    if (nbuf) be->ops->download(be, host + np, nn_model_buffer_data(m), (size_t)nbuf * sizeof(float));
    fmd_status st = be->ops->sync(be);
    if (st) st = fmd_seterr(st, "st_save_model: backend %s: %s", be->name, be->errmsg);
    int k = 0;
    for (int i = 0; i < nv; i++, k++) {
        const nn_param *v = nn_model_view(m, i);
        e[k].name = v->name;
        e[k].ndim = v->ndim;
        e[k].shape = v->shape;
        e[k].data = host + v->offset;
    }
    for (int i = 0; i < nb; i++, k++) {
        const nn_param *v = nn_model_buffer_view(m, i);
        e[k].name = v->name;
        e[k].ndim = v->ndim;
        e[k].shape = v->shape;
        e[k].data = host + np + v->offset;
    }
    if (!st) st = st_write(path, e, k, NULL, 0);
    fmd_free(host);
    fmd_free(e);
    return st;
}
