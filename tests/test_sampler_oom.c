/* test_sampler_oom.c - allocation-failure sweep over the sampler and the
 * picture/file writers: for N = 0, 1, 2, ... every host allocation from the
 * N-th on fails; each scenario must return FMD_OK or FMD_ERR_OOM (never
 * another status, a crash or a leak) and succeed once N passes what it
 * needs.  Scenarios: sampler create + teacher sampling with per-call
 * guidance + Best-of-N with refinement; .npy save/load; PNG, density
 * panels, curves, image grid; fmd_file_describe of a .fmd. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "fmd.h"


#define tmp_path tu_tmp_path

#define TRY(x) do { fmd_status s_ = (x); if (s_) { st = s_; goto out; } } while (0)

static double reward(const float *x, int64_t dim, int32_t label, void *user)
{
    (void)dim, (void)label, (void)user;
    return x[0];
}

static fmd_status sc_sampler(void)
{
    fmd_status st = FMD_OK;
    fmd_teacher *T = NULL;
    fmd_sampler *s = NULL;
    fmd_options *o = NULL;
    float x[6 * 32], z[6 * 32];
    int32_t lab[6] = {0, 1, 2, 3, 4, 1};
    TRY(fmd_teacher_create_preset("classes4-d32", &T));
    TRY(fmd_options_create(&o));
    TRY(fmd_options_set_str(o, "solver", "euler"));
    TRY(fmd_options_set_i64(o, "steps", 3));
    TRY(fmd_sampler_create(NULL, T, o, &s));
    TRY(fmd_options_set_f64(o, "cfg", 2.0));
    TRY(fmd_sampler_sample(s, lab, 6, 1, 0, o, x, 6 * 32, NULL));
    TRY(fmd_options_set_i64(o, "refine", 1));
    TRY(fmd_sampler_best_of_n(s, lab, 6, 1, 0, 3, reward, NULL, NULL, o, x, 6 * 32, z, 6 * 32,
                              NULL, NULL));
out:
    fmd_sampler_destroy(s);
    fmd_options_destroy(o);
    fmd_teacher_destroy(T);
    return st;
}

static fmd_status sc_files(void)
{
    fmd_status st = FMD_OK;
    float x[40 * 2];
    for (int i = 0; i < 80; i++) x[i] = (float)((i * 37) % 17) / 7.0f - 1.0f;
    int64_t sh[2] = {40, 2};
    const char *dt;
    int nd;
    int64_t shape[8];
    void *data = NULL;
    TRY(fmd_npy_save(tmp_path("x.npy"), "f4", 2, sh, x));
    TRY(fmd_npy_load(tmp_path("x.npy"), &dt, &nd, shape, 8, &data));
    uint8_t px[12 * 5 * 3] = {0};
    TRY(fmd_write_png(tmp_path("p.png"), px, 12, 5, 3));
    const float *pts[1] = {x};
    const int64_t cnt[1] = {40};
    const char *title[1] = {"t"};
    TRY(fmd_plot_density_panels(tmp_path("d.png"), 1, pts, cnt, title, NULL, 40));
    double y[40];
    for (int i = 0; i < 40; i++) y[i] = 1.0 + i;
    const double *ys[1] = {y};
    TRY(fmd_plot_curves(tmp_path("c.png"), NULL, ys, NULL, 1, 40, "c", 1, 200, 150));
    TRY(fmd_plot_image_grid(tmp_path("g.png"), x, 5, 1, 4, 4, 0, -1.0f, 1.0f));
    char buf[256];
    TRY(fmd_file_describe(tmp_path("t.fmd"), 1, buf, sizeof buf, NULL));
out:
    fmd_npy_free(data);
    return st;
}

/* sticky failures are set in main (tu_oom_sweep in testutil); a sweep that
 * passes no failure point would test nothing */
static void sweep(const char *name, fmd_status (*fn)(void))
{
    CHECK_MSG(tu_oom_sweep(name, fn) > 3, "%s: fewer than 4 allocation points", name);
}

int main(void)
{
    if (tu_tmp_dir("sampler_oom")) return tu_skip("test_sampler_oom", "cannot create a temporary folder");
    fmd_teacher *T = NULL;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    CHECK_OK(fmd_teacher_save(T, tmp_path("t.fmd")));
    fmd_teacher_destroy(T);
    tu_alloc.sticky = 1;
    CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL));
    sweep("sampler", sc_sampler);
    sweep("files", sc_files);
    CHECK_OK(fmd_set_allocator(NULL, NULL, NULL, NULL));
    tu_tmp_remove();
    return tu_finish("test_sampler_oom");
}
