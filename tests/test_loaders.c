/* test_loaders.c - loaders check before they allocate: hostile inputs that
 * declare huge sizes in a few bytes (a 10-byte "safetensors" file given with
 * arch SiT-XL/2, an 8-byte IDX header declaring 2 GiB, a gzip IDX file whose
 * header declares far more than its stream holds, a small gzip file that
 * inflates to 256 MiB) are each loaded in a forked child whose address space
 * is limited to 256 MiB above what it already holds (RLIMIT_AS), and must fail
 * with FMD_ERR_FORMAT and a message naming the field, not with
 * FMD_ERR_OOM or a crash.  Without the limit (the sanitizer build, whose
 * shadow memory RLIMIT_AS cannot accommodate) the same statuses and
 * messages are checked. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifndef TU_ASAN
#define TU_ASAN 0
#endif

static char dir[512];

static long vm_size_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

typedef fmd_status (*load_fn)(const char *path, const void *ctx);

/* Run fn(path, ctx) in a child under the address-space limit; the child
 * exits 0 when the status is want and the message holds every word of need
 * (NULL-terminated). */
static void limited(const char *what, load_fn fn, const char *path, const void *ctx,
                    fmd_status want, const char *const *need)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!TU_ASAN) {
            long vs = vm_size_bytes();
            struct rlimit r;
            r.rlim_cur = r.rlim_max = (rlim_t)(vs > 0 ? vs : 0) + ((rlim_t)256 << 20);
            if (setrlimit(RLIMIT_AS, &r) != 0) _exit(3);
        }
        fmd_status st = fn(path, ctx);
        const char *m = fmd_last_error();
        int bad = st != want;
        for (int i = 0; need && need[i]; i++)
            if (!strstr(m, need[i])) bad = 1;
        if (bad)
            fprintf(stderr, "%s: got %s (%s), expected %s\n", what, fmd_status_name(st), m,
                    fmd_status_name(want));
        else
            printf("  %s: %s: %s\n", what, fmd_status_name(st), m);
        fflush(NULL);
        _exit(bad ? 1 : 0);
    }
    int ws = 0;
    CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid);
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%s: child %s %d", what,
              WIFEXITED(ws) ? "exited" : "killed by signal",
              WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
}

static void write_file(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n);
    if (f) fclose(f);
}

/* gzip of an IDX header (dims) followed by nzero zero bytes */
static void write_gz_idx(const char *path, const uint32_t *dims, int nd, int64_t nzero)
{
    gzFile g = gzopen(path, "wb9");
    CHECK(g != NULL);
    if (!g) return;
    unsigned char h[20] = {0, 0, 8, (unsigned char)nd};
    for (int i = 0; i < nd; i++)
        for (int j = 0; j < 4; j++) h[4 + 4 * i + j] = (unsigned char)(dims[i] >> (24 - 8 * j));
    CHECK(gzwrite(g, h, (unsigned)(4 + 4 * nd)) == 4 + 4 * nd);
    static unsigned char z[1 << 16];
    int ok = 1;
    for (int64_t left = nzero; left > 0;) {
        unsigned k = left > (int64_t)sizeof z ? (unsigned)sizeof z : (unsigned)left;
        ok &= gzwrite(g, z, k) == (int)k;
        left -= k;
    }
    CHECK(ok);
    CHECK(gzclose(g) == Z_OK);
}

static fmd_status load_idx(const char *path, const void *ctx)
{
    fmd_dataset *d = NULL;
    fmd_options *o = NULL;
    const int64_t *max_bytes = ctx;
    if (max_bytes) {
        fmd_options_create(&o);
        fmd_options_set_i64(o, "max_bytes", *max_bytes);
    }
    fmd_status st = fmd_dataset_load_idx_opts(path, NULL, o, &d);
    fmd_options_destroy(o);
    fmd_dataset_destroy(d);
    return st;
}

static fmd_status load_st(const char *path, const void *ctx)
{
    fmd_backend *be = NULL;
    fmd_status st = fmd_backend_open("cpu", &be);
    if (st) return st;
    fmd_teacher *T = NULL;
    st = fmd_teacher_load_safetensors(be, path, (const char *)ctx, NULL, &T);
    fmd_teacher_destroy(T);
    fmd_backend_destroy(be);
    return st;
}

static void idx_cases(void)
{
    char p[600];
    /* 8 bytes declaring a 1-d array of 2^31 - 1 bytes */
    const unsigned char big[8] = {0x00, 0x00, 0x08, 0x01, 0x7f, 0xff, 0xff, 0xff};
    snprintf(p, sizeof p, "%s/big.idx", dir);
    write_file(p, big, sizeof big);
    limited("raw IDX declaring 2 GiB", load_idx, p, NULL, FMD_ERR_FORMAT,
            (const char *const[]){"max_bytes", "2147483647", NULL});
    /* the same within the cap: the file size is checked before allocating */
    const unsigned char mid[12] = {0x00, 0x00, 0x08, 0x01, 0x10, 0x00, 0x00, 0x00, 1, 2, 3, 4};
    snprintf(p, sizeof p, "%s/mid.idx", dir);
    write_file(p, mid, sizeof mid);
    limited("raw IDX declaring 256 MiB, holding 4 bytes", load_idx, p, NULL, FMD_ERR_FORMAT,
            (const char *const[]){"truncated", "declare 268435456", "holds 4", NULL});
    /* raw file longer than declared */
    const unsigned char longer[10] = {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x01, 7, 8};
    snprintf(p, sizeof p, "%s/long.idx", dir);
    write_file(p, longer, sizeof longer);
    limited("raw IDX with a trailing byte", load_idx, p, NULL, FMD_ERR_FORMAT,
            (const char *const[]){"trailing bytes after offset 9", NULL});
    /* gzip declaring 1 GiB (65536 x 128 x 128) but holding 1000 bytes */
    uint32_t dshort[3] = {65536, 128, 128};
    snprintf(p, sizeof p, "%s/short.idx.gz", dir);
    write_gz_idx(p, dshort, 3, 1000);
    limited("gzip IDX declaring 1 GiB, holding 1000 bytes", load_idx, p, NULL, FMD_ERR_FORMAT,
            (const char *const[]){"truncated", "1000 of 1073741824", NULL});
    /* a 255 KB gzip file that inflates to 65536 x 64 x 64 = 256 MiB: valid,
     * refused by a 64 MiB cap while the buffer grows */
    uint32_t dbig[3] = {65536, 64, 64};
    snprintf(p, sizeof p, "%s/bomb.idx.gz", dir);
    write_gz_idx(p, dbig, 3, (int64_t)65536 * 64 * 64);
    const int64_t cap = 64 << 20;
    limited("gzip IDX of 256 MiB under max_bytes = 64 MiB", load_idx, p, &cap, FMD_ERR_FORMAT,
            (const char *const[]){"max_bytes = 67108864", "decompressed", NULL});
    /* the cap option is validated */
    const int64_t zero = 0;
    limited("max_bytes = 0", load_idx, p, &zero, FMD_ERR_INVALID_ARG,
            (const char *const[]){"max_bytes", NULL});
    /* and within the cap a real file still loads */
    uint32_t dok[3] = {3, 4, 5};
    snprintf(p, sizeof p, "%s/ok.idx.gz", dir);
    write_gz_idx(p, dok, 3, 60);
    limited("gzip IDX 3x4x5", load_idx, p, NULL, FMD_OK, NULL);
}

static void safetensors_cases(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/ten.safetensors", dir);
    write_file(p, "0123456789", 10);
    limited("10-byte safetensors as SiT-XL/2", load_st, p, "SiT-XL/2", FMD_ERR_FORMAT,
            (const char *const[]){"header length", NULL});
    /* a valid header without tensors */
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"}}";
    unsigned char b[64] = {0};
    size_t hl = strlen(json);
    b[0] = (unsigned char)hl;
    memcpy(b + 8, json, hl);
    snprintf(p, sizeof p, "%s/empty.safetensors", dir);
    write_file(p, b, 8 + hl);
    limited("tensorless safetensors as SiT-XL/2", load_st, p, "SiT-XL/2", FMD_ERR_FORMAT,
            (const char *const[]){"holds no tensors", NULL});
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/fmd_test_loaders_%d", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    if (TU_ASAN) printf("sanitizer build: the address-space limit is not applied\n");
    idx_cases();
    safetensors_cases();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_loaders");
}
