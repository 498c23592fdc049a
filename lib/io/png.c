/* png.c - a minimal PNG writer (8-bit gray, RGB, RGBA; filter 0 per row)
 * on zlib's deflate and crc32: the pictures of the `fmd` tool need no
 * libpng.  The file goes through the library's atomic writer
 * (util/atomicfile.h: temporary, fsync, rename), so a failed write never
 * leaves a half picture under the final name. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include "util/atomicfile.h"
#include "util/util.h"

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int write_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len)
{
    uint8_t hdr[8];
    put_be32(hdr, len);
    memcpy(hdr + 4, type, 4);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (len) crc = crc32(crc, data, len);
    uint8_t tail[4];
    put_be32(tail, (uint32_t)crc);
    return fwrite(hdr, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) &&
           fwrite(tail, 1, 4, f) == 4;
}

fmd_status fmd_write_png(const char *path, const uint8_t *pixels, int width, int height, int channels)
{
    static const char *fn = "fmd_write_png";
    FMD_CHECK_ARG(path && *path, "%s: path is NULL or empty", fn);
    FMD_CHECK_ARG(pixels, "%s: pixels is NULL", fn);
    FMD_CHECK_ARG(width >= 1 && width <= 65536 && height >= 1 && height <= 65536,
                  "%s: size %dx%d outside [1, 65536]", fn, width, height);
    FMD_CHECK_ARG(channels == 1 || channels == 3 || channels == 4,
                  "%s: channels must be 1, 3 or 4 (got %d)", fn, channels);
    const size_t row = (size_t)width * (size_t)channels;
    FMD_CHECK_ARG((row + 1) * (size_t)height < ((size_t)1 << 31),
                  "%s: a %dx%dx%d picture is too large (2 GiB raw at most)", fn, width, height,
                  channels);
    const size_t raw_len = (row + 1) * (size_t)height;
    uint8_t *raw = fmd_malloc(raw_len);
    uLongf zcap = compressBound((uLong)raw_len);
    uint8_t *z = fmd_malloc(zcap);
    if (!raw || !z) {
        fmd_free(raw);
        fmd_free(z);
        return fmd_seterr(FMD_ERR_OOM, "%s: out of memory for a %dx%d picture", fn, width, height);
    }
    for (int y = 0; y < height; y++) {
        raw[(size_t)y * (row + 1)] = 0;   /* filter: none */
        memcpy(raw + (size_t)y * (row + 1) + 1, pixels + (size_t)y * row, row);
    }
    int zr = compress2(z, &zcap, raw, (uLong)raw_len, 6);
    fmd_free(raw);
    if (zr != Z_OK) {
        fmd_free(z);
        return fmd_seterr(FMD_ERR_INTERNAL, "%s: deflate failed (%d)", fn, zr);
    }
    afile a;
    fmd_status st = afile_begin(&a, path, fn);
    if (!st) st = afile_stdio(&a, fn);
    if (st) {
        afile_abort(&a);
        fmd_free(z);
        return st;
    }
    FILE *f = a.fp;
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)width);
    put_be32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8;   /* bit depth */
    ihdr[9] = channels == 1 ? 0 : channels == 3 ? 2 : 6;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;   /* deflate, adaptive filtering, no interlace */
    int ok = fwrite(sig, 1, 8, f) == 8 && write_chunk(f, "IHDR", ihdr, 13) &&
             write_chunk(f, "IDAT", z, (uint32_t)zcap) && write_chunk(f, "IEND", NULL, 0);
    fmd_free(z);
    if (!ok) {
        st = fmd_seterr(FMD_ERR_IO, "%s: cannot write '%s' (temporary '%s')", fn, path, a.tmp);
        afile_abort(&a);
        return st;
    }
    return afile_commit(&a, fn);
}
