/* test_pictures.c - the files of the PICTURES AND FILES section: .npy
 * round trips bit-exactly and rejects corrupt headers with a format error;
 * PNGs decode (zlib inflate of the IDAT stream, CRC of every chunk) to the
 * pixels that were written; plots and file descriptions are produced and
 * reject bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "testutil.h"
#include "fmd.h"

static char g_dir[256];

static const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static unsigned char *read_all(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)*len + 1);
    if (p && fread(p, 1, (size_t)*len, f) != (size_t)*len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decode an 8-bit filter-0 PNG as fmd_write_png writes it; returns pixels. */
static unsigned char *png_decode(const char *path, int *w, int *h, int *ch)
{
    long len = 0;
    unsigned char *f = read_all(path, &len);
    if (!f || len < 8 || memcmp(f, "\x89PNG\r\n\x1a\n", 8) != 0) {
        free(f);
        return NULL;
    }
    unsigned char *idat = NULL;
    size_t idat_len = 0;
    long off = 8;
    int ok = 1;
    while (off + 12 <= len) {
        uint32_t n = be32(f + off);
        if (off + 12 + (long)n > len) {
            ok = 0;
            break;
        }
        const unsigned char *type = f + off + 4, *data = f + off + 8;
        uint32_t crc = (uint32_t)crc32(crc32(0L, type, 4), data, n);
        if (crc != be32(f + off + 8 + n)) ok = 0;
        if (memcmp(type, "IHDR", 4) == 0) {
            *w = (int)be32(data);
            *h = (int)be32(data + 4);
            *ch = data[9] == 0 ? 1 : data[9] == 2 ? 3 : data[9] == 6 ? 4 : 0;
            if (data[8] != 8) ok = 0;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            idat = realloc(idat, idat_len + n);
            memcpy(idat + idat_len, data, n);
            idat_len += n;
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        off += 12 + (long)n;
    }
    free(f);
    if (!ok || !idat || *ch == 0) {
        free(idat);
        return NULL;
    }
    uLongf raw_len = (uLongf)((size_t)*w * *ch + 1) * (uLongf)*h;
    unsigned char *raw = malloc(raw_len);
    if (uncompress(raw, &raw_len, idat, idat_len) != Z_OK) ok = 0;
    free(idat);
    unsigned char *px = malloc((size_t)*w * *h * *ch);
    for (int y = 0; ok && y < *h; y++) {
        unsigned char *row = raw + (size_t)y * ((size_t)*w * *ch + 1);
        if (row[0] != 0) ok = 0;
        memcpy(px + (size_t)y * *w * *ch, row + 1, (size_t)*w * *ch);
    }
    free(raw);
    if (!ok) {
        free(px);
        return NULL;
    }
    return px;
}

static void test_npy(void)
{
    float x[6 * 5];
    int32_t lab[7] = {0, -1, 2, 3, 2147483647, -2147483647 - 1, 9};
    tu_fill_normal(x, 30, 1.0f);
    int64_t sh[2] = {6, 5}, sl[1] = {7};
    CHECK_OK(fmd_npy_save(tmp_path("x.npy"), "f4", 2, sh, x));
    CHECK_OK(fmd_npy_save(tmp_path("l.npy"), "i4", 1, sl, lab));
    const char *dt = NULL;
    int nd = 0;
    int64_t shape[8];
    void *data = NULL;
    CHECK_OK(fmd_npy_load(tmp_path("x.npy"), &dt, &nd, shape, 8, &data));
    CHECK(strcmp(dt, "f4") == 0 && nd == 2 && shape[0] == 6 && shape[1] == 5);
    CHECK(data && memcmp(data, x, sizeof x) == 0);
    fmd_npy_free(data);
    CHECK_OK(fmd_npy_load(tmp_path("l.npy"), &dt, &nd, shape, 8, &data));
    CHECK(strcmp(dt, "i4") == 0 && nd == 1 && shape[0] == 7);
    CHECK(data && memcmp(data, lab, sizeof lab) == 0);
    fmd_npy_free(data);
    /* the data starts at a multiple of 64 */
    long len = 0;
    unsigned char *f = read_all(tmp_path("x.npy"), &len);
    CHECK(f && (len - (long)sizeof x) % 64 == 0 && f[6] == 1);
    /* corrupt variants: magic, header length, shape vs size, dtype, order, dict */
    struct {
        const char *what;
        const char *hdr;
        fmd_status want;
    } cases[] = {
        {"big-endian", "{'descr': '>f4', 'fortran_order': False, 'shape': (6, 5), }", FMD_ERR_UNSUPPORTED},
        {"float64", "{'descr': '<f8', 'fortran_order': False, 'shape': (6, 5), }", FMD_ERR_UNSUPPORTED},
        {"fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (6, 5), }", FMD_ERR_FORMAT},
        {"too many rows", "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 5), }", FMD_ERR_FORMAT},
        {"huge shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", FMD_ERR_FORMAT},
        {"missing key", "{'descr': '<f4', 'shape': (6, 5), }", FMD_ERR_FORMAT},
        {"unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 5), 'x': 1}", FMD_ERR_FORMAT},
        {"bad shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (6, -5), }", FMD_ERR_FORMAT},
        {"unterminated", "{'descr': '<f4, 'fortran_order': False, 'shape': (6, 5), }", FMD_ERR_FORMAT},
        {"no brace", "'descr': '<f4', 'fortran_order': False, 'shape': (6, 5)", FMD_ERR_FORMAT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char hdr[256];
        int hl = snprintf(hdr, sizeof hdr, "%s", cases[k].hdr);
        while ((10 + hl + 1) % 64) hdr[hl++] = ' ';
        hdr[hl++] = '\n';
        unsigned char buf[1024];
        unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
        memcpy(buf, pre, 10);
        memcpy(buf + 10, hdr, (size_t)hl);
        memcpy(buf + 10 + hl, x, sizeof x);
        write_all(tmp_path("bad.npy"), buf, 10 + (size_t)hl + sizeof x);
        data = NULL;
        fmd_status st = fmd_npy_load(tmp_path("bad.npy"), &dt, &nd, shape, 8, &data);
        CHECK_MSG(st == cases[k].want, "npy case '%s': got %s (%s)", cases[k].what,
                  fmd_status_name(st), fmd_last_error());
        CHECK(data == NULL);
    }
    /* truncations of the good file at every length */
    for (long cut = 0; f && cut < len; cut += 7) {
        write_all(tmp_path("cut.npy"), f, (size_t)cut);
        data = NULL;
        fmd_status st = fmd_npy_load(tmp_path("cut.npy"), &dt, &nd, shape, 8, &data);
        CHECK_MSG(st == FMD_ERR_FORMAT, "truncated at %ld: %s", cut, fmd_status_name(st));
        CHECK(data == NULL);
    }
    free(f);
    CHECK_STATUS(fmd_npy_load(tmp_path("absent.npy"), &dt, &nd, shape, 8, &data), FMD_ERR_IO);
    CHECK_STATUS(fmd_npy_load(tmp_path("x.npy"), &dt, &nd, shape, 1, &data), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_npy_save(tmp_path("y.npy"), "f8", 2, sh, x), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_npy_save(tmp_path("y.npy"), "f4", 0, sh, x), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_npy_save("/nonexistent-dir/y.npy", "f4", 2, sh, x), FMD_ERR_IO);
}

static void test_png(void)
{
    enum { W = 37, H = 23 };
    unsigned char px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (unsigned char)(i * 31 + (i / 7));
    for (int ch = 1; ch <= 4; ch++) {
        if (ch == 2) continue;
        CHECK_OK(fmd_write_png(tmp_path("p.png"), px, W, ch == 4 ? H / 2 : H, ch));
        int w = 0, h = 0, c = 0;
        unsigned char *got = png_decode(tmp_path("p.png"), &w, &h, &c);
        CHECK_MSG(got != NULL, "PNG with %d channels does not decode", ch);
        CHECK(w == W && h == (ch == 4 ? H / 2 : H) && c == ch);
        if (got) CHECK(memcmp(got, px, (size_t)w * h * c) == 0);
        free(got);
    }
    CHECK_STATUS(fmd_write_png(tmp_path("p.png"), px, 0, H, 3), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_write_png(tmp_path("p.png"), px, W, H, 2), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_write_png(tmp_path("p.png"), NULL, W, H, 3), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_write_png("/nonexistent-dir/p.png", px, W, H, 3), FMD_ERR_IO);
}

static void test_plots(void)
{
    float a[400 * 2], b[300 * 2];
    tu_fill_normal(a, 800, 1.0f);
    tu_fill_normal(b, 600, 0.5f);
    const float *pts[2] = {a, b};
    const int64_t cnt[2] = {400, 300};
    const char *titles[2] = {"teacher", "student, 1 NFE"};
    CHECK_OK(fmd_plot_density_panels(tmp_path("d.png"), 2, pts, cnt, titles, NULL, 100));
    int w = 0, h = 0, c = 0;
    unsigned char *got = png_decode(tmp_path("d.png"), &w, &h, &c);
    CHECK(got != NULL && c == 3 && w == 8 + 2 * (100 + 8) && h > 100);
    /* the title is drawn: some dark pixels in the title band */
    int dark = 0;
    for (int y = 0; got && y < 15; y++)
        for (int x = 0; x < w; x++) dark += got[(y * w + x) * 3] < 60;
    CHECK(dark > 20);
    free(got);
    const double bounds[4] = {1, -1, 0, 1};
    CHECK_STATUS(fmd_plot_density_panels(tmp_path("d.png"), 2, pts, cnt, titles, bounds, 100),
                 FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_plot_density_panels(tmp_path("d.png"), 0, pts, cnt, titles, NULL, 100),
                 FMD_ERR_INVALID_ARG);
    double y1[50], y2[50];
    for (int i = 0; i < 50; i++) y1[i] = 1.0 / (1 + i), y2[i] = i % 7 ? 0.5 : NAN;
    const double *ys[2] = {y1, y2};
    const char *names[2] = {"pred", "corr"};
    CHECK_OK(fmd_plot_curves(tmp_path("c.png"), NULL, ys, names, 2, 50, "losses", 1, 320, 200));
    got = png_decode(tmp_path("c.png"), &w, &h, &c);
    CHECK(got != NULL && w == 320 && h == 200);
    free(got);
    CHECK_STATUS(fmd_plot_curves(tmp_path("c.png"), NULL, ys, names, 2, 50, "x", 0, 10, 200),
                 FMD_ERR_INVALID_ARG);
    float img[5 * 3 * 4 * 6];
    tu_fill(img, 5 * 3 * 4 * 6, -1.0f, 1.0f);
    CHECK_OK(fmd_plot_image_grid(tmp_path("g.png"), img, 5, 3, 4, 6, 3, -1.0f, 1.0f));
    got = png_decode(tmp_path("g.png"), &w, &h, &c);
    CHECK(got != NULL && c == 3 && w == 3 * (6 + 2) + 2 && h == 2 * (4 + 2) + 2);
    /* pixel (0,0) of image 0 channel 0 */
    if (got) {
        float u = (img[0] + 1.0f) / 2.0f;
        CHECK(abs((int)got[(2 * w + 2) * 3] - (int)(u * 255.0f + 0.5f)) <= 1);
    }
    free(got);
    CHECK_STATUS(fmd_plot_image_grid(tmp_path("g.png"), img, 5, 2, 4, 6, 3, -1.0f, 1.0f),
                 FMD_ERR_INVALID_ARG);
}

static void test_describe(void)
{
    fmd_teacher *T = NULL;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    CHECK_OK(fmd_teacher_save(T, tmp_path("t.fmd")));
    fmd_teacher_destroy(T);
    size_t need = 0;
    char buf[16384];
    CHECK_OK(fmd_file_describe(tmp_path("t.fmd"), 0, buf, sizeof buf, &need));
    CHECK(need > 10 && need <= sizeof buf && strstr(buf, "CRC check: ok") != NULL);
    CHECK_OK(fmd_file_describe(tmp_path("t.fmd"), 1, buf, sizeof buf, &need));
    CHECK(buf[0] == '{' && strstr(buf, "\"crc_ok\": true") != NULL);
    char tiny[8];
    CHECK_OK(fmd_file_describe(tmp_path("t.fmd"), 0, tiny, sizeof tiny, &need));
    CHECK(strlen(tiny) == 7 && need > 8);
    /* a flipped payload byte is found by the CRC check */
    long len = 0;
    unsigned char *f = read_all(tmp_path("t.fmd"), &len);
    CHECK(f != NULL && len > 40);
    if (f) {
        f[20] ^= 0x5a;
        write_all(tmp_path("bad.fmd"), f, (size_t)len);
        fmd_status st = fmd_file_describe(tmp_path("bad.fmd"), 0, buf, sizeof buf, NULL);
        CHECK_MSG(st == FMD_ERR_FORMAT, "flipped byte: %s", fmd_status_name(st));
        write_all(tmp_path("junk.fmd"), "hello world, not a model", 24);
        CHECK(fmd_file_describe(tmp_path("junk.fmd"), 0, buf, sizeof buf, NULL) != FMD_OK);
        free(f);
    }
    CHECK_STATUS(fmd_file_describe(tmp_path("absent.fmd"), 0, buf, sizeof buf, NULL), FMD_ERR_IO);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/fmd_test_pictures_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
    if (system(cmd) != 0) return tu_skip("test_pictures", "cannot create a temporary folder");
    tu_seed(3);
    test_npy();
    test_png();
    test_plots();
    test_describe();
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return tu_finish("test_pictures");
}
