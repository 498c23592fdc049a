/* test_fmdfile.c - the .fmd container: bit-exact round trip, typed errors,
 * truncation at >= 64 points and random byte flips rejected with a format
 * error (never a crash: CI runs this under ASan), hostile indexes refused
 * without huge allocations, and atomic writes (the old file survives an
 * aborted, invalid or I/O-failed save). */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <utime.h>
#include <unistd.h>
#include <zlib.h>
#include "io/fmdfile.h"
#include "testutil.h"

static char g_dir[256];

static char *path_in(const char *name)
{
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    if (fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int spit(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(d, 1, n, f);
    fclose(f);
    return w == n;
}

static int count_tmp_files(void)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

/* data of the reference file */
enum { NBIG = 4096 };
static float g_big[NBIG];
static int32_t g_i32[6] = {1, -2, 3, -4, 2147483647, -2147483647 - 1};
static uint8_t g_u8[5] = {0, 1, 127, 128, 255};
static double g_f64[3] = {3.141592653589793, -1e-300, 1e300};
static float g_scalar = 42.5f;
static float g_raw[7] = {1, 2, 3, 4, 5, 6, 7};

static fmd_status write_reference(const char *path, int level_big)
{
    fmdf_writer *w;
    fmd_status st = fmdf_writer_begin(path, &w);
    if (st) return st;
    int64_t sh_big[2] = {64, 64}, sh_i[2] = {2, 3}, sh_u[1] = {5}, sh_d[3] = {1, 3, 1},
            sh_e[2] = {0, 4}, sh_r[1] = {7};
    if ((st = fmdf_writer_add_meta(w, "arch", "mlp"))) goto bad;
    if ((st = fmdf_writer_add_meta(w, "empty", ""))) goto bad;
    if ((st = fmdf_writer_add_meta_i64(w, "width", -123456789012345LL))) goto bad;
    if ((st = fmdf_writer_add_meta_f64(w, "lr", 3e-4))) goto bad;
    if ((st = fmdf_writer_set_level(w, level_big))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "big", FMDF_F32, 2, sh_big, g_big))) goto bad;
    /* plain deflate (no shuffle) for the ints, shuffled Huffman (level 1) for the doubles */
    if ((st = fmdf_writer_set_level(w, 6))) goto bad;
    if ((st = fmdf_writer_set_shuffle(w, 0))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "ints", FMDF_I32, 2, sh_i, g_i32))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "bytes", FMDF_U8, 1, sh_u, g_u8))) goto bad;
    if ((st = fmdf_writer_set_level(w, 1))) goto bad;
    if ((st = fmdf_writer_set_shuffle(w, 1))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "doubles", FMDF_F64, 3, sh_d, g_f64))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "scalar", FMDF_F32, 0, NULL, &g_scalar))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "empty", FMDF_F32, 2, sh_e, NULL))) goto bad;
    if ((st = fmdf_writer_set_level(w, 0))) goto bad;
    if ((st = fmdf_writer_add_tensor(w, "stored", FMDF_F32, 1, sh_r, g_raw))) goto bad;
    return fmdf_writer_commit(w);
bad:
    fmdf_writer_abort(w);
    return st;
}

/* Open and fully read a file image; returns the first error or FMD_OK. */
static fmd_status open_and_read_all(const unsigned char *data, size_t n)
{
    fmdf_reader *r;
    fmd_status st = fmdf_open_memory(data, n, &r);
    if (st) return st;
    static unsigned char buf[NBIG * 4 + 64];
    for (int i = 0; i < fmdf_tensor_count(r) && !st; i++) {
        const fmdf_tensor_info *ti = fmdf_tensor_at(r, i);
        if (ti->nbytes > sizeof buf) {
            st = FMD_ERR_INVALID_ARG; /* a flip can only grow a size through a checked field */
            break;
        }
        st = fmdf_read_tensor(r, ti->name, ti->dtype, -1, NULL, buf, sizeof buf);
    }
    fmdf_close(r);
    return st;
}

static void test_roundtrip(void)
{
    const int levels[3] = {0, 1, 6};
    for (int li = 0; li < 3; li++) {
        const char *p = path_in("ref.fmd");
        CHECK_OK(write_reference(p, levels[li]));
        fmdf_reader *r;
        CHECK_OK(fmdf_open(p, &r));
        if (!r) return;
        CHECK(fmdf_format_version(r) == FMDF_FORMAT_VERSION);
        CHECK(fmdf_meta_count(r) == 4);
        CHECK(strcmp(fmdf_meta_key(r, 0), "arch") == 0 && strcmp(fmdf_meta_value(r, 0), "mlp") == 0);
        CHECK(fmdf_meta_get(r, "empty") && fmdf_meta_get(r, "empty")[0] == 0);
        CHECK(fmdf_meta_get(r, "nope") == NULL);
        int64_t iv = 0;
        double dv = 0;
        CHECK_OK(fmdf_meta_i64(r, "width", &iv));
        CHECK(iv == -123456789012345LL);
        CHECK_OK(fmdf_meta_f64(r, "lr", &dv));
        CHECK(dv == 3e-4);
        CHECK_STATUS(fmdf_meta_i64(r, "arch", &iv), FMD_ERR_FORMAT);
        CHECK_STATUS(fmdf_meta_i64(r, "missing", &iv), FMD_ERR_FORMAT);
        CHECK(strstr(fmd_last_error(), "missing") != NULL);
        CHECK(fmdf_tensor_count(r) == 7);
        CHECK(strcmp(fmdf_tensor_at(r, 0)->name, "big") == 0);
        CHECK(fmdf_tensor_at(r, 7) == NULL);

        static float big[NBIG];
        int64_t sh_big[2] = {64, 64};
        CHECK_OK(fmdf_read_tensor(r, "big", FMDF_F32, 2, sh_big, big, sizeof big));
        CHECK(memcmp(big, g_big, sizeof big) == 0);
        int32_t ii[6];
        CHECK_OK(fmdf_read_tensor(r, "ints", FMDF_I32, -1, NULL, ii, sizeof ii));
        CHECK(memcmp(ii, g_i32, sizeof ii) == 0);
        uint8_t uu[5];
        CHECK_OK(fmdf_read_tensor(r, "bytes", FMDF_U8, -1, NULL, uu, sizeof uu));
        CHECK(memcmp(uu, g_u8, sizeof uu) == 0);
        double dd[3];
        int64_t sh_d[3] = {1, 3, 1};
        CHECK_OK(fmdf_read_tensor(r, "doubles", FMDF_F64, 3, sh_d, dd, sizeof dd));
        CHECK(memcmp(dd, g_f64, sizeof dd) == 0);
        float sc = 0;
        CHECK_OK(fmdf_read_tensor(r, "scalar", FMDF_F32, 0, NULL, &sc, sizeof sc));
        CHECK(sc == g_scalar);
        const fmdf_tensor_info *e = fmdf_tensor_find(r, "empty");
        CHECK(e && e->numel == 0 && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 4);
        CHECK_OK(fmdf_read_tensor(r, "empty", FMDF_F32, -1, NULL, NULL, 0));
        float raw[7];
        CHECK_OK(fmdf_read_tensor(r, "stored", FMDF_F32, -1, NULL, raw, sizeof raw));
        CHECK(memcmp(raw, g_raw, sizeof raw) == 0);

        /* typed errors name the tensor */
        int64_t wrong[2] = {32, 128};
        CHECK_STATUS(fmdf_read_tensor(r, "big", FMDF_F32, 2, wrong, big, sizeof big),
                     FMD_ERR_INVALID_ARG);
        CHECK(strstr(fmd_last_error(), "big") && strstr(fmd_last_error(), "[64, 64]"));
        CHECK_STATUS(fmdf_read_tensor(r, "big", FMDF_F64, -1, NULL, big, sizeof big),
                     FMD_ERR_INVALID_ARG);
        CHECK_STATUS(fmdf_read_tensor(r, "big", FMDF_F32, -1, NULL, big, sizeof big - 4),
                     FMD_ERR_INVALID_ARG);
        CHECK_STATUS(fmdf_read_tensor(r, "absent", FMDF_F32, -1, NULL, big, sizeof big),
                     FMD_ERR_INVALID_ARG);
        fmdf_close(r);
    }
    fmdf_close(NULL);
    fmdf_writer_abort(NULL);
    CHECK(count_tmp_files() == 0);

    /* tensors spanning several shuffle blocks (32768 elements) with a partial
     * last block, under every encoding */
    const int64_t NF = 70001, ND = 40000;
    float *f = malloc(sizeof(float) * NF), *fb = malloc(sizeof(float) * NF);
    double *d = malloc(sizeof(double) * ND), *db = malloc(sizeof(double) * ND);
    for (int64_t i = 0; i < NF; i++) f[i] = (float)(tu_normal() * 0.02);
    for (int64_t i = 0; i < ND; i++) d[i] = tu_normal();
    for (int mode = 0; mode < 4; mode++) {
        fmdf_writer *w;
        CHECK_OK(fmdf_writer_begin(path_in("blocks.fmd"), &w));
        CHECK_OK(fmdf_writer_set_level(w, mode == 0 ? 0 : mode == 3 ? 9 : 1));
        CHECK_OK(fmdf_writer_set_shuffle(w, mode != 2));
        CHECK_OK(fmdf_writer_add_tensor(w, "f", FMDF_F32, 1, &NF, f));
        CHECK_OK(fmdf_writer_add_tensor(w, "d", FMDF_F64, 1, &ND, d));
        CHECK_OK(fmdf_writer_commit(w));
        fmdf_reader *r;
        CHECK_OK(fmdf_open(path_in("blocks.fmd"), &r));
        if (!r) continue;
        memset(fb, 0, sizeof(float) * NF);
        memset(db, 0, sizeof(double) * ND);
        CHECK_OK(fmdf_read_tensor(r, "f", FMDF_F32, 1, &NF, fb, sizeof(float) * NF));
        CHECK_OK(fmdf_read_tensor(r, "d", FMDF_F64, 1, &ND, db, sizeof(double) * ND));
        CHECK_MSG(memcmp(f, fb, sizeof(float) * NF) == 0 && memcmp(d, db, sizeof(double) * ND) == 0,
                  "multi-block round trip, mode %d", mode);
        fmdf_close(r);
    }
    free(f); free(fb); free(d); free(db);
}

static void test_writer_args(void)
{
    fmdf_writer *w;
    CHECK_STATUS(fmdf_writer_begin(NULL, &w), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmdf_writer_begin(path_in("no/such/dir/x.fmd"), &w), FMD_ERR_IO);
    CHECK_OK(fmdf_writer_begin(path_in("args.fmd"), &w));
    int64_t sh[1] = {2};
    float d[2] = {1, 2};
    CHECK_OK(fmdf_writer_add_meta(w, "k", "v"));
    CHECK_STATUS(fmdf_writer_set_level(w, 10), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmdf_writer_add_tensor(w, "a", FMDF_F32, 1, sh, d));
    fmdf_writer_abort(w);
    CHECK(access(path_in("args.fmd"), F_OK) != 0);
    CHECK_OK(fmdf_writer_begin(path_in("args.fmd"), &w));
    CHECK_OK(fmdf_writer_add_meta(w, "k", "v"));
    CHECK_STATUS(fmdf_writer_add_meta(w, "k", "v2"), FMD_ERR_INVALID_ARG);
    /* later adds and the commit report the first error */
    CHECK_STATUS(fmdf_writer_add_tensor(w, "a", FMDF_F32, 1, sh, d), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "duplicate key") != NULL);
    CHECK_STATUS(fmdf_writer_commit(w), FMD_ERR_INVALID_ARG);
    CHECK(access(path_in("args.fmd"), F_OK) != 0);
    CHECK_OK(fmdf_writer_begin(path_in("args.fmd"), &w));
    CHECK_STATUS(fmdf_writer_add_tensor(w, "a", (fmdf_dtype)9, 1, sh, d), FMD_ERR_INVALID_ARG);
    /* a failed add poisons the writer: commit reports it and writes nothing */
    CHECK_STATUS(fmdf_writer_commit(w), FMD_ERR_INVALID_ARG);
    CHECK(access(path_in("args.fmd"), F_OK) != 0);
    CHECK(count_tmp_files() == 0);
}

static void test_truncation(void)
{
    const char *p = path_in("ref.fmd");
    CHECK_OK(write_reference(p, 6));
    size_t n;
    unsigned char *img = slurp(p, &n);
    CHECK(img && n > 200);
    if (!img) return;
    CHECK_OK(open_and_read_all(img, n));
    /* every truncation point for the first and last 512 bytes, and >= 256 evenly spaced */
    int tested = 0, rejected = 0;
    for (size_t cut = 0; cut < n; cut++) {
        int near = cut < 512 || cut + 512 > n;
        if (!near && cut % (n / 256 + 1) != 0) continue;
        unsigned char *c = malloc(cut ? cut : 1);
        memcpy(c, img, cut);
        fmd_status st = open_and_read_all(c, cut);
        tested++;
        if (st == FMD_ERR_FORMAT) rejected++;
        else fprintf(stderr, "truncation at %zu gave %s\n", cut, fmd_status_name(st));
        free(c);
    }
    CHECK(tested >= 64);
    CHECK_MSG(rejected == tested, "%d of %d truncations rejected", rejected, tested);
    /* through the file path too (pread path), a few points */
    for (int k = 1; k <= 8; k++) {
        size_t cut = n * (size_t)k / 9;
        CHECK(spit(path_in("cut.fmd"), img, cut));
        fmdf_reader *r = NULL;
        CHECK_STATUS(fmdf_open(path_in("cut.fmd"), &r), FMD_ERR_FORMAT);
        CHECK(strstr(fmd_last_error(), "cut.fmd") != NULL);
    }
    /* appended garbage is rejected too */
    unsigned char *longer = malloc(n + 3);
    memcpy(longer, img, n);
    memset(longer + n, 0, 3);
    CHECK_STATUS(open_and_read_all(longer, n + 3), FMD_ERR_FORMAT);
    free(longer);
    free(img);
}

static void test_byte_flips(void)
{
    const char *p = path_in("ref.fmd");
    CHECK_OK(write_reference(p, 6));
    size_t n;
    unsigned char *img = slurp(p, &n);
    if (!img) return;
    unsigned char *c = malloc(n);
    int bad = 0, trials = 1500;
    tu_seed(77);
    for (int i = 0; i < trials; i++) {
        memcpy(c, img, n);
        size_t pos = (size_t)(tu_uniform() * (double)n) % n;
        unsigned char mask = (unsigned char)(1u << (int)(tu_uniform() * 8));
        if (i % 3 == 2) mask = (unsigned char)(1 + (int)(tu_uniform() * 255));
        c[pos] ^= mask;
        fmd_status st = open_and_read_all(c, n);
        /* every byte of the file is covered by a CRC or a validated field */
        if (st != FMD_ERR_FORMAT && st != FMD_ERR_VERSION) {
            bad++;
            if (bad < 5) fprintf(stderr, "flip at %zu (^0x%02x) gave %s\n", pos, mask, fmd_status_name(st));
        }
    }
    CHECK_MSG(bad == 0, "%d of %d byte flips not rejected", bad, trials);
    /* every single byte position, one flip each */
    bad = 0;
    for (size_t pos = 0; pos < n; pos++) {
        memcpy(c, img, n);
        c[pos] ^= 0x10;
        fmd_status st = open_and_read_all(c, n);
        if (st != FMD_ERR_FORMAT && st != FMD_ERR_VERSION) bad++;
    }
    CHECK_MSG(bad == 0, "%d single-position flips not rejected", bad);
    free(c);
    free(img);
}

/* a file with a well-formed trailer and a CRC-valid hostile index */
static size_t make_hostile(unsigned char *buf, const unsigned char *index, size_t isz)
{
    static const unsigned char magic[8] = {0x89, 'F', 'M', 'D', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(buf, magic, 8);
    memset(buf + 8, 0, 8);
    buf[8] = 1;
    n = 16;
    memset(buf + n, 0xAB, 64); /* payload bytes */
    n += 64;
    size_t ioff = n;
    memcpy(buf + n, index, isz);
    n += isz;
    uint64_t v[2] = {ioff, isz};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 8; i++) buf[n + 8 * k + i] = (unsigned char)(v[k] >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0, index, (uInt)isz);
    for (int i = 0; i < 4; i++) buf[n + 16 + i] = (unsigned char)(crc >> (8 * i));
    memset(buf + n + 20, 0, 4);
    memcpy(buf + n + 24, "FMDEND\0\0", 8);
    return n + 32;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void test_hostile(void)
{
    unsigned char idx[256], file[512];
    fmdf_reader *r;
    /* huge metadata count */
    memset(idx, 0, sizeof idx);
    put32(idx, 0xFFFFFFFFu);
    size_t n = make_hostile(file, idx, 8);
    CHECK_STATUS(fmdf_open_memory(file, n, &r), FMD_ERR_FORMAT);
    /* huge key length */
    put32(idx, 1);
    put32(idx + 4, 0x7FFFFFFFu);
    n = make_hostile(file, idx, 16);
    CHECK_STATUS(fmdf_open_memory(file, n, &r), FMD_ERR_FORMAT);
    /* tensor claiming 2^40 elements from an 8-byte deflate payload: impossible ratio */
    memset(idx, 0, sizeof idx);
    size_t k = 0;
    put32(idx + k, 0); k += 4;            /* no metadata */
    put32(idx + k, 1); k += 4;            /* one tensor  */
    put32(idx + k, 1); k += 4;
    idx[k++] = 'x';
    idx[k++] = FMDF_F32; idx[k++] = 1; idx[k++] = 1; idx[k++] = 0;
    put64(idx + k, 1ull << 40); k += 8;   /* shape */
    put64(idx + k, 16); k += 8;           /* offset */
    put64(idx + k, 8); k += 8;            /* stored */
    put64(idx + k, 4ull << 40); k += 8;   /* raw */
    put32(idx + k, 0); k += 4;
    put32(idx + k, 0); k += 4;
    n = make_hostile(file, idx, k);
    CHECK_STATUS(fmdf_open_memory(file, n, &r), FMD_ERR_FORMAT);
    CHECK(strstr(fmd_last_error(), "'x'") != NULL);
    /* same, stored encoding, sizes consistent but payload beyond the data region */
    idx[14] = 0;                          /* encoding: stored */
    put64(idx + 17, 4);                   /* shape 4 */
    put64(idx + 33, 1000);                /* stored 1000 > region */
    put64(idx + 41, 16);                  /* raw 16 */
    n = make_hostile(file, idx, k);
    CHECK_STATUS(fmdf_open_memory(file, n, &r), FMD_ERR_FORMAT);
    /* well-formed tiny stored tensor whose CRC is wrong: open works, read is refused */
    put64(idx + 33, 16);
    n = make_hostile(file, idx, k);
    r = NULL;
    CHECK_OK(fmdf_open_memory(file, n, &r));
    float buf[4];
    CHECK_STATUS(fmdf_read_tensor(r, "x", FMDF_F32, -1, NULL, buf, sizeof buf), FMD_ERR_FORMAT);
    CHECK(strstr(fmd_last_error(), "CRC") != NULL);
    fmdf_close(r);
    /* not an .fmd at all, and a newer version */
    CHECK_STATUS(fmdf_open_memory("hello world, this is not a checkpoint at all!!!!!!!!", 52, &r),
                 FMD_ERR_FORMAT);
    n = make_hostile(file, idx, k);
    file[8] = 2;
    CHECK_STATUS(fmdf_open_memory(file, n, &r), FMD_ERR_VERSION);
    CHECK_STATUS(fmdf_open(path_in("does-not-exist.fmd"), &r), FMD_ERR_IO);
}

static void test_atomic(void)
{
    const char *p = path_in("atomic.fmd");
    CHECK_OK(write_reference(p, 6));
    size_t n0;
    unsigned char *orig = slurp(p, &n0);
    /* an aborted save leaves the old file */
    fmdf_writer *w;
    int64_t sh[1] = {NBIG};
    CHECK_OK(fmdf_writer_begin(p, &w));
    CHECK_OK(fmdf_writer_add_tensor(w, "other", FMDF_F32, 1, sh, g_big));
    fmdf_writer_abort(w);
    size_t n1;
    unsigned char *now = slurp(p, &n1);
    CHECK(now && n1 == n0 && memcmp(now, orig, n0) == 0);
    free(now);
    /* an I/O failure mid-write (file size limit) leaves the old file */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 4096;
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        fmd_status st = fmdf_writer_begin(p, &w);
        CHECK_OK(st);
        if (!st) {
            CHECK_OK(fmdf_writer_set_level(w, 0));
            st = fmdf_writer_add_tensor(w, "other", FMDF_F32, 1, sh, g_big);
            CHECK_STATUS(st, FMD_ERR_IO);
            CHECK(strstr(fmd_last_error(), "atomic.fmd") != NULL);
            CHECK_STATUS(fmdf_writer_commit(w), FMD_ERR_IO);
        }
        setrlimit(RLIMIT_FSIZE, &old);
        now = slurp(p, &n1);
        CHECK(now && n1 == n0 && memcmp(now, orig, n0) == 0);
        free(now);
    }
    signal(SIGXFSZ, SIG_DFL);
    /* a successful save replaces it */
    CHECK_OK(fmdf_writer_begin(p, &w));
    CHECK_OK(fmdf_writer_add_meta(w, "v", "2"));
    CHECK_OK(fmdf_writer_commit(w));
    /* the umask decides the permissions (not a private 0600 temporary) */
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0644);
    fmdf_reader *r;
    CHECK_OK(fmdf_open(p, &r));
    CHECK(fmdf_tensor_count(r) == 0 && fmdf_meta_get(r, "v") && strcmp(fmdf_meta_get(r, "v"), "2") == 0);
    fmdf_close(r);
    CHECK(count_tmp_files() == 0);
    free(orig);
}

static int g_info_lines;
static char g_info_last[512];
static void log_sink(int level, const char *msg, void *user)
{
    (void)user;
    if (level == FMD_LOG_INFO && strstr(msg, "interrupted save")) {
        g_info_lines++;
        snprintf(g_info_last, sizeof g_info_last, "%s", msg);
    }
}

static void touch(const char *path, time_t mtime)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("partial", f);
        fclose(f);
    }
    struct utimbuf u = {mtime, mtime};
    CHECK(utime(path, &u) == 0);
}

/* The temporaries of killed writers are removed by the next save of the same
 * path (with an INFO line each); a live writer's, a newer legacy one and
 * other files' are kept.  The .fmd, .npy and .png writers share the rule. */
static void test_stale_tmp(void)
{
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    CHECK(dead > 0 && waitpid(dead, NULL, 0) == dead);
    char kinds[3][32] = {"stale.fmd", "stale.npy", "stale.png"};
    fmd_set_log_callback(log_sink, NULL, FMD_LOG_INFO);
    for (int k = 0; k < 3; k++) {
        char p[600], t_dead[700], t_live[700], t_old[700], t_new[700], t_other[700];
        snprintf(p, sizeof p, "%s", path_in(kinds[k]));
        /* an existing file from an hour ago */
        touch(p, time(NULL) - 3600);
        snprintf(t_dead, sizeof t_dead, "%s.tmp.%ld.7", p, (long)dead);
        snprintf(t_live, sizeof t_live, "%s.tmp.%ld.99999", p, (long)getpid());
        snprintf(t_old, sizeof t_old, "%s.tmp", p);            /* legacy, older than p */
        snprintf(t_new, sizeof t_new, "%s.tmp.0a1b2c3d4", p);  /* legacy, newer than p */
        snprintf(t_other, sizeof t_other, "%sx.tmp.%ld.1", p, (long)dead);
        touch(t_dead, time(NULL) - 60);
        touch(t_live, time(NULL) - 60);
        touch(t_old, time(NULL) - 7200);
        touch(t_new, time(NULL));
        touch(t_other, time(NULL) - 60);
        g_info_lines = 0;
        if (k == 0) {
            fmdf_writer *w;
            CHECK_OK(fmdf_writer_begin(p, &w));
            CHECK_OK(fmdf_writer_add_meta(w, "v", "3"));
            CHECK_OK(fmdf_writer_commit(w));
        } else if (k == 1) {
            int64_t sh[1] = {5};
            CHECK_OK(fmd_npy_save(p, "f4", 1, sh, g_big));
        } else {
            uint8_t px[4 * 3] = {0};
            CHECK_OK(fmd_write_png(p, px, 2, 2, 3));
        }
        CHECK_MSG(access(t_dead, F_OK) != 0, "%s: the dead writer's temporary is still there", p);
        CHECK_MSG(access(t_old, F_OK) != 0, "%s: the old legacy temporary is still there", p);
        CHECK(access(t_live, F_OK) == 0);
        CHECK(access(t_new, F_OK) == 0);
        CHECK(access(t_other, F_OK) == 0);
        CHECK_MSG(g_info_lines == 2, "%s: %d INFO lines", p, g_info_lines);
        CHECK(strstr(g_info_last, p) != NULL);
        unlink(t_live);
        unlink(t_new);
        unlink(t_other);
    }
    fmd_set_log_callback(NULL, NULL, 0);
    CHECK(count_tmp_files() == 0);
}

static void cleanup(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char buf[600];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(buf, sizeof buf, "%s/%s", g_dir, e->d_name);
        unlink(buf);
    }
    if (d) closedir(d);
    rmdir(g_dir);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/fmd_test_fmdfile_XXXXXX");
    if (!mkdtemp(g_dir)) return tu_skip("test_fmdfile", "cannot create a temporary directory");
    tu_seed(1);
    umask(022);
    for (int i = 0; i < NBIG; i++) g_big[i] = (float)(tu_normal() * (i % 7 == 0 ? 1e-3 : 1.0));
    test_roundtrip();
    test_writer_args();
    test_truncation();
    test_byte_flips();
    test_hostile();
    test_atomic();
    test_stale_tmp();
    cleanup();
    return tu_finish("test_fmdfile");
}
