/* test_teacher_oom.c - allocation-failure sweep (zlib's infcover, libuv's
 * loop_init_oom) over the teacher code: for N = 0, 1, 2, ... the N-th host
 * allocation fails; every call must return FMD_OK or FMD_ERR_OOM (never
 * another status, a crash or a leak), and once N passes the number of
 * allocations the scenario needs, it succeeds.  Covers mixture creation and
 * velocity (with guidance), spec files, .fmd save and load (zlib included:
 * its allocations go through the hooks), the ODE solvers, IDX reading,
 * data sets, and a few flow-matching steps on the CPU backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "api/teacher_internal.h"
#include "io/fmdfile.h"
#include "io/idx.h"
#include "testutil.h"


static char g_dir[128];
static const char *tmp_path(const char *name)
{
    static char b[4][256];
    static int k;
    k = (k + 1) & 3;
    snprintf(b[k], sizeof b[k], "%s/%s", g_dir, name);
    return b[k];
}

#define TRY(x) do { fmd_status s_ = (x); if (s_) { st = s_; goto out; } } while (0)

static fmd_status sc_mixture(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *T = NULL;
    float x[16 * 32], t[16], v[16 * 32];
    int32_t lab[16];
    for (int i = 0; i < 16 * 32; i++) x[i] = (float)((i * 37) % 11) * 0.3f - 1.5f;
    for (int i = 0; i < 16; i++) {
        t[i] = (float)i / 15.0f;
        lab[i] = i % 5;
    }
    TRY(fmd_teacher_create_preset("classes4-d32", &T));
    TRY(fmd_teacher_velocity(T, v, x, t, lab, 16));
    TRY(fmd_teacher_set_guidance(T, 2.0, 0.1, 0.9));
    TRY(fmd_teacher_velocity(T, v, x, t, lab, 16));
    TRY(fmd_teacher_sample_data(T, 16, 1, 0, lab, x, NULL));
out:
    fmd_teacher_destroy(T);
    return st;
}

static fmd_status sc_spec(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *T = NULL;
    TRY(fmd_teacher_load_spec(tmp_path("oom.spec"), &T));
out:
    fmd_teacher_destroy(T);
    return st;
}

static fmd_status sc_save_load(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *T = NULL, *L = NULL;
    float x[8] = {0.1f, 0.2f, -1, 1, 2, 0, 0.5f, -0.5f}, t[4] = {0.1f, 0.5f, 0.9f, 1}, v[8];
    TRY(fmd_teacher_create_preset("grid25", &T));
    TRY(fmd_teacher_save(T, tmp_path("oom.fmd")));
    TRY(fmd_teacher_load(NULL, tmp_path("oom.fmd"), NULL, &L));
    TRY(fmd_teacher_velocity(L, v, x, t, NULL, 4));
out:
    fmd_teacher_destroy(T);
    fmd_teacher_destroy(L);
    return st;
}

static fmd_status sc_solve(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *T = NULL;
    fmd_options *o = NULL;
    float x[16];
    int64_t nfe;
    TRY(fmd_teacher_create_preset("ring8", &T));
    TRY(fmd_teacher_sample(T, x, NULL, 8, 3, 0, NULL, &nfe));
    TRY(fmd_options_create(&o));
    TRY(fmd_options_set_str(o, "solver", "rk4"));
    TRY(fmd_options_set_i64(o, "steps", 4));
    TRY(fmd_teacher_sample(T, x, NULL, 8, 3, 0, o, &nfe));
out:
    fmd_options_destroy(o);
    fmd_teacher_destroy(T);
    return st;
}

static fmd_status sc_idx(void)
{
    fmd_status st = FMD_OK;
    fmd_dataset *d = NULL;
    TRY(fmd_dataset_load_idx(tmp_path("oom-img.gz"), tmp_path("oom-lab.gz"), &d));
out:
    fmd_dataset_destroy(d);
    return st;
}

static fmd_status sc_train(void)
{
    fmd_status st = FMD_OK;
    fmd_backend *be = NULL;
    fmd_teacher *T = NULL, *M = NULL;
    fmd_dataset *d = NULL;
    fmd_options *o = NULL;
    TRY(fmd_backend_open("cpu", &be));
    TRY(fmd_teacher_create_preset("ring8", &M));
    TRY(fmd_dataset_from_mixture(M, 64, 1, &d));
    TRY(fmd_options_create(&o));
    TRY(fmd_options_set_i64(o, "width", 8));
    TRY(fmd_options_set_i64(o, "depth", 1));
    TRY(fmd_options_set_i64(o, "temb_dim", 8));
    TRY(fmd_options_set_i64(o, "steps", 2));
    TRY(fmd_options_set_i64(o, "batch", 4));
    TRY(fmd_options_set_str(o, "checkpoint", tmp_path("oom-train.fmd")));
    TRY(fmd_options_set_i64(o, "checkpoint_every", 1));
    TRY(fmd_teacher_train(be, d, o, NULL, NULL, &T));
out:
    fmd_options_destroy(o);
    fmd_teacher_destroy(T);
    fmd_dataset_destroy(d);
    fmd_teacher_destroy(M);
    fmd_backend_destroy(be);
    return st;
}

/* sticky failures are set in main (tu_oom_sweep in testutil) */
static void sweep(const char *name, fmd_status (*fn)(void))
{
    tu_oom_sweep(name, fn);
}

static int write_gz(const char *path, const unsigned char *d, size_t n)
{
    gzFile f = gzopen(path, "wb");
    if (!f) return 0;
    int ok = gzwrite(f, d, (unsigned)n) == (int)n;
    return gzclose(f) == Z_OK && ok;
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/fmd_test_oom_XXXXXX");
    if (!mkdtemp(g_dir)) return tu_skip("test_teacher_oom", "no temporary directory");
    FILE *f = fopen(tmp_path("oom.spec"), "w");
    if (f) {
        fputs("dim 3\nclasses 2\ncomponent weight=1 std=0.1 mean=1,0,0 class=0\n"
              "component weight=2 std=0.2 mean=0,1,0 class=1\n", f);
        fclose(f);
    }
    unsigned char img[16 + 3 * 4] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
    unsigned char lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2};
    for (int i = 0; i < 12; i++) img[16 + i] = (unsigned char)(20 * i);
    CHECK(write_gz(tmp_path("oom-img.gz"), img, sizeof img));
    CHECK(write_gz(tmp_path("oom-lab.gz"), lab, sizeof lab));
    tu_alloc.sticky = 1;
    CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL));
    sweep("mixture", sc_mixture);
    sweep("spec", sc_spec);
    sweep("save_load", sc_save_load);
    sweep("solve", sc_solve);
    sweep("idx", sc_idx);
    sweep("train", sc_train);
    CHECK_OK(fmd_set_allocator(NULL, NULL, NULL, NULL));
    const char *files[] = {"oom.spec", "oom.fmd", "oom-img.gz", "oom-lab.gz", "oom-train.fmd"};
    for (int i = 0; i < 5; i++) unlink(tmp_path(files[i]));
    rmdir(g_dir);
    return tu_finish("test_teacher_oom");
}
