/* test_train.c - teacher training by flow matching:
 *   - an MLP trained on ring8 samples gives a teacher whose ODE samples
 *     cover all 8 modes with roughly the right mass (CI budget: < 60 s);
 *   - distilling that trained network teacher: its one-step student beats
 *     the teacher's 2-step Euler (the initialisation itself, F = v(z, 1), is
 *     checked in test_distiller; on 784-D Fashion-MNIST the earlier one,
 *     f(z, 1) = z - v(z, 0), diverged: docs/benchmarks.md);
 *   - progress callback (counts, loss decreasing) and cancel;
 *   - periodic checkpoint loads as the same teacher (bit-exact velocities);
 *   - same seed and options give bit-identical weights;
 *   - IDX reader on Fashion-MNIST (when installed) and on corrupt files; a
 *     few DiT steps on the images;
 *   - option errors name the key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "algo/gmm.h"
#include "api/teacher_internal.h"
#include "io/idx.h"
#include "testutil.h"
#include "util/util.h"

static char g_dir[128];
static const char *tmp_path(const char *name)
{
    static char b[4][256];
    static int k;
    k = (k + 1) & 3;
    snprintf(b[k], sizeof b[k], "%s/%s", g_dir, name);
    return b[k];
}

typedef struct {
    int calls;
    double first_loss, last_loss;
    int cancel_at;
} prog_state;

static int on_progress(const fmd_train_stats *s, void *user)
{
    prog_state *p = user;
    p->calls++;
    if (p->calls == 1) p->first_loss = s->loss_avg;
    p->last_loss = s->loss_avg;
    if (s->step % 500 == 0 || s->step == s->steps)
        printf("  step %5lld/%lld loss %.4f lr %.2e |g| %.3f %.0f steps/s eta %.1f s\n",
               (long long)s->step, (long long)s->steps, s->loss_avg, s->lr, s->grad_norm,
               s->steps_per_s, s->eta_s);
    return p->cancel_at && p->calls >= p->cancel_at;
}

/* Distil a trained network teacher (the user's case): the student copies it
 * (F(z, delta) = v(z, 1) at the start, docs/math.md section 5)
 * and after a short run its one-step EMA sample beats the teacher's 2-step
 * Euler on map error and energy distance. */
static void distill_network_teacher(fmd_backend *be, fmd_teacher *T)
{
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "batch", 256));
    CHECK_OK(fmd_options_set_f64(o, "lr", 3e-4));
    fmd_student *s = NULL;
    fmd_distiller *d = NULL;
    CHECK_OK(fmd_student_create(T, be, NULL, &s));
    if (s) CHECK_OK(fmd_distiller_create(T, s, be, o, &d));
    if (d) {
        double t0 = fmd_now();
        CHECK_OK(fmd_distiller_run(d, 400, NULL, NULL));
        double secs = fmd_now() - t0;
        fmd_eval_result rs, re;
        tu_eval_vs_euler(T, d, 1000, 2, &rs, &re);
        printf("ring8 network teacher distilled, 400 steps (%.1f s): student map %.4f ED %.5f; "
               "Euler-2 map %.4f ED %.5f; floor %.5f\n", secs, rs.map_error, rs.energy_distance,
               re.map_error, re.energy_distance, rs.energy_floor);
        CHECK_MSG(rs.map_error < re.map_error, "map error %g, Euler-2's %g", rs.map_error,
                  re.map_error);
        CHECK_MSG(rs.energy_distance < re.energy_distance, "energy distance %g, Euler-2's %g",
                  rs.energy_distance, re.energy_distance);
    }
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
    fmd_options_destroy(o);
}

static void test_ring8(fmd_backend *be)
{
    fmd_teacher *mix;
    CHECK_OK(fmd_teacher_create_preset("ring8", &mix));
    fmd_dataset *ds = NULL;
    CHECK_OK(fmd_dataset_from_mixture(mix, 20000, 1, &ds));
    if (!ds) return;
    CHECK(fmd_dataset_size(ds) == 20000 && fmd_dataset_dim(ds) == 2 && fmd_dataset_num_classes(ds) == 0);
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "width", 128));
    CHECK_OK(fmd_options_set_i64(o, "depth", 3));
    CHECK_OK(fmd_options_set_i64(o, "steps", 2000));
    CHECK_OK(fmd_options_set_i64(o, "batch", 256));
    CHECK_OK(fmd_options_set_f64(o, "lr", 2e-3));
    CHECK_OK(fmd_options_set_i64(o, "progress_every", 100));
    CHECK_OK(fmd_options_set_str(o, "checkpoint", tmp_path("ring8.fmd")));
    CHECK_OK(fmd_options_set_i64(o, "checkpoint_every", 700));
    prog_state ps = {0, 0, 0, 0};
    fmd_teacher *T = NULL;
    double t0 = fmd_now();
    CHECK_OK(fmd_teacher_train(be, ds, o, on_progress, &ps, &T));
    double secs = fmd_now() - t0;
    printf("ring8 teacher: 2000 steps in %.1f s (2 shared cores; not asserted)\n", secs);
    CHECK(ps.calls == 20);
    CHECK_MSG(ps.last_loss < 0.8 * ps.first_loss, "loss %g -> %g", ps.first_loss, ps.last_loss);
    if (!T) return;
    CHECK(strcmp(fmd_teacher_kind(T), "network") == 0);
    /* samples of the trained teacher cover all 8 modes */
    const gmm *g = teacher_mixture(mix);
    const int N = 4000;
    float *xs = malloc(sizeof(float) * N * 2);
    fmd_options *so;
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_set_str(so, "solver", "heun"));
    CHECK_OK(fmd_options_set_i64(so, "steps", 50));
    CHECK_OK(fmd_teacher_sample(T, xs, NULL, N, 3, 0, so, NULL));
    int cnt[8] = {0}, near = 0;
    for (int i = 0; i < N; i++) {
        double x[2] = {xs[2 * i], xs[2 * i + 1]}, dist;
        int k = gmm_nearest_mode(g, x, &dist);
        if (dist < 4) {
            cnt[k]++;
            near++;
        }
    }
    printf("ring8 teacher samples: %.1f %% within 4 std of a mode; mass per mode:", 100.0 * near / N);
    for (int k = 0; k < 8; k++) printf(" %.3f/%.3f", cnt[k] / (double)N, g->w[k]);
    printf("\n");
    CHECK_MSG(near > 0.8 * N, "only %d of %d samples near a mode", near, N);
    for (int k = 0; k < 8; k++)
        CHECK_MSG(cnt[k] > 0.5 * g->w[k] * N && cnt[k] < 1.5 * g->w[k] * N,
                  "mode %d: %d samples, expected %.0f", k, cnt[k], g->w[k] * N);
    /* the final checkpoint is the returned teacher */
    fmd_teacher *L = NULL;
    CHECK_OK(fmd_teacher_load(be, tmp_path("ring8.fmd"), NULL, &L));
    if (L) {
        float x[64], t[32], v1[64], v2[64];
        tu_fill_normal(x, 64, 1.5f);
        tu_fill(t, 32, 0, 1);
        CHECK_OK(fmd_teacher_velocity(T, v1, x, t, NULL, 32));
        CHECK_OK(fmd_teacher_velocity(L, v2, x, t, NULL, 32));
        CHECK(memcmp(v1, v2, sizeof v1) == 0);
        fmd_teacher_destroy(L);
    }
    distill_network_teacher(be, T);
    free(xs);
    fmd_options_destroy(so);
    fmd_options_destroy(o);
    fmd_teacher_destroy(T);
    fmd_dataset_destroy(ds);
    fmd_teacher_destroy(mix);
}

static void test_repro_cancel_errors(fmd_backend *be)
{
    fmd_teacher *mix;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &mix));
    fmd_dataset *ds = NULL;
    CHECK_OK(fmd_dataset_from_mixture(mix, 500, 2, &ds));
    if (!ds) return;
    CHECK(fmd_dataset_num_classes(ds) == 4);
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "width", 32));
    CHECK_OK(fmd_options_set_i64(o, "depth", 2));
    CHECK_OK(fmd_options_set_i64(o, "steps", 40));
    CHECK_OK(fmd_options_set_i64(o, "batch", 32));
    CHECK_OK(fmd_options_set_i64(o, "seed", 5));
    fmd_teacher *A = NULL, *B = NULL;
    CHECK_OK(fmd_teacher_train(be, ds, o, NULL, NULL, &A));
    CHECK_OK(fmd_teacher_train(be, ds, o, NULL, NULL, &B));
    if (A && B) {
        CHECK(fmd_teacher_num_classes(A) == 4);
        float x[32 * 8], t[8], v1[32 * 8], v2[32 * 8];
        int32_t lab[8] = {0, 1, 2, 3, 4, 0, 1, 2};
        tu_fill_normal(x, 32 * 8, 1);
        tu_fill(t, 8, 0, 1);
        CHECK_OK(fmd_teacher_velocity(A, v1, x, t, lab, 8));
        CHECK_OK(fmd_teacher_velocity(B, v2, x, t, lab, 8));
        CHECK(memcmp(v1, v2, sizeof v1) == 0);
        /* a different seed gives different weights */
        fmd_teacher *C = NULL;
        CHECK_OK(fmd_options_set_i64(o, "seed", 6));
        CHECK_OK(fmd_teacher_train(be, ds, o, NULL, NULL, &C));
        if (C) {
            CHECK_OK(fmd_teacher_velocity(C, v2, x, t, lab, 8));
            CHECK(memcmp(v1, v2, sizeof v1) != 0);
        }
        fmd_teacher_destroy(C);
    }
    /* cancel */
    prog_state ps = {0, 0, 0, 2};
    CHECK_OK(fmd_options_set_i64(o, "progress_every", 5));
    fmd_teacher *Z = NULL;
    CHECK_STATUS(fmd_teacher_train(be, ds, o, on_progress, &ps, &Z), FMD_ERR_CANCELLED);
    CHECK(Z == NULL && ps.calls == 2);
    /* option errors */
    CHECK_OK(fmd_options_set_f64(o, "lr_typo", 1));
    CHECK_STATUS(fmd_teacher_train(be, ds, o, NULL, NULL, &Z), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "lr_typo") != NULL);
    fmd_options *o2;
    CHECK_OK(fmd_options_create(&o2));
    CHECK_OK(fmd_options_set_str(o2, "arch", "dit"));
    CHECK_STATUS(fmd_teacher_train(be, ds, o2, NULL, NULL, &Z), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmd_options_set_str(o2, "arch", "mlp"));
    CHECK_OK(fmd_options_set_i64(o2, "batch", 0));
    CHECK_STATUS(fmd_teacher_train(be, ds, o2, NULL, NULL, &Z), FMD_ERR_INVALID_ARG);
    CHECK_STATUS(fmd_teacher_train(NULL, ds, NULL, NULL, NULL, &Z), FMD_ERR_INVALID_ARG);
    /* data set API */
    float row[32];
    int32_t lb = -5;
    CHECK_OK(fmd_dataset_get(ds, 499, row, &lb));
    CHECK(lb >= 0 && lb < 4);
    CHECK_STATUS(fmd_dataset_get(ds, 500, row, &lb), FMD_ERR_INVALID_ARG);
    float bad[4] = {0, NAN, 1, 2};
    fmd_dataset *d2 = NULL;
    CHECK_STATUS(fmd_dataset_create(bad, NULL, 2, 2, 0, &d2), FMD_ERR_NONFINITE);
    int32_t badl[2] = {0, 3};
    bad[1] = 0;
    CHECK_STATUS(fmd_dataset_create(bad, badl, 2, 2, 3, &d2), FMD_ERR_INVALID_ARG);
    badl[1] = 2;
    CHECK_OK(fmd_dataset_create(bad, badl, 2, 2, 3, &d2));
    fmd_dataset_destroy(d2);
    fmd_dataset_destroy(NULL);
    fmd_options_destroy(o2);
    fmd_options_destroy(o);
    fmd_teacher_destroy(A);
    fmd_teacher_destroy(B);
    fmd_dataset_destroy(ds);
    fmd_teacher_destroy(mix);
}

static int write_gz(const char *path, const unsigned char *d, size_t n)
{
    gzFile f = gzopen(path, "wb");
    if (!f) return 0;
    int ok = gzwrite(f, d, (unsigned)n) == (int)n;
    return gzclose(f) == Z_OK && ok;
}

static void test_idx(fmd_backend *be)
{
    /* synthetic files: good, truncated, bad magic, trailing bytes, plain (not gz) */
    unsigned char img[4 + 12 + 2 * 3 * 3];
    memset(img, 0, sizeof img);
    img[2] = 0x08;
    img[3] = 3;
    img[7] = 2; img[11] = 3; img[15] = 3;
    for (int i = 0; i < 18; i++) img[16 + i] = (unsigned char)(i * 15);
    unsigned char lab[4 + 4 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 4};
    CHECK(write_gz(tmp_path("img.gz"), img, sizeof img));
    CHECK(write_gz(tmp_path("lab.gz"), lab, sizeof lab));
    fmd_dataset *d = NULL;
    CHECK_OK(fmd_dataset_load_idx(tmp_path("img.gz"), tmp_path("lab.gz"), &d));
    if (d) {
        CHECK(fmd_dataset_size(d) == 2 && fmd_dataset_dim(d) == 9 && fmd_dataset_num_classes(d) == 5);
        float x[9];
        int32_t l;
        CHECK_OK(fmd_dataset_get(d, 1, x, &l));
        CHECK(l == 4 && x[0] == 9 * 15 * (2.0f / 255.0f) - 1.0f);
        fmd_dataset_destroy(d);
    }
    idx_array a;
    CHECK(write_gz(tmp_path("trunc.gz"), img, sizeof img - 5));
    CHECK_STATUS(idx_read(tmp_path("trunc.gz"), IDX_DEFAULT_MAX_BYTES, &a), FMD_ERR_FORMAT);
    CHECK(strstr(fmd_last_error(), "truncated") != NULL);
    unsigned char longer[sizeof img + 1];
    memcpy(longer, img, sizeof img);
    longer[sizeof img] = 1;
    CHECK(write_gz(tmp_path("long.gz"), longer, sizeof longer));
    CHECK_STATUS(idx_read(tmp_path("long.gz"), IDX_DEFAULT_MAX_BYTES, &a), FMD_ERR_FORMAT);
    unsigned char bad[sizeof img];
    memcpy(bad, img, sizeof img);
    bad[0] = 7;
    CHECK(write_gz(tmp_path("bad.gz"), bad, sizeof bad));
    CHECK_STATUS(idx_read(tmp_path("bad.gz"), IDX_DEFAULT_MAX_BYTES, &a), FMD_ERR_FORMAT);
    bad[0] = 0;
    bad[4] = 0x7f; /* 2 billion images */
    CHECK(write_gz(tmp_path("bad.gz"), bad, sizeof bad));
    CHECK_STATUS(idx_read(tmp_path("bad.gz"), IDX_DEFAULT_MAX_BYTES, &a), FMD_ERR_FORMAT);
    FILE *f = fopen(tmp_path("plain.idx"), "wb");
    if (f) {
        fwrite(img, 1, sizeof img, f);
        fclose(f);
    }
    CHECK_OK(idx_read(tmp_path("plain.idx"), IDX_DEFAULT_MAX_BYTES, &a));
    CHECK(a.count == 18 && a.data[17] == 255);
    idx_free(&a);
    /* a corrupt gzip stream (flipped byte inside the deflate data) */
    size_t n;
    FILE *g = fopen(tmp_path("img.gz"), "rb");
    unsigned char gz[512];
    n = g ? fread(gz, 1, sizeof gz, g) : 0;
    if (g) fclose(g);
    if (n > 20) {
        gz[n - 12] ^= 0xff;
        g = fopen(tmp_path("flip.gz"), "wb");
        fwrite(gz, 1, n, g);
        fclose(g);
        fmd_status st = idx_read(tmp_path("flip.gz"), IDX_DEFAULT_MAX_BYTES, &a);
        CHECK(st == FMD_ERR_FORMAT);
        if (!st) idx_free(&a);
    }
    CHECK_STATUS(fmd_dataset_load_idx(tmp_path("img.gz"), tmp_path("trunc.gz"), &d), FMD_ERR_FORMAT);
    CHECK_STATUS(fmd_dataset_load_idx(tmp_path("none.gz"), NULL, &d), FMD_ERR_IO);
    const char *names[] = {"img.gz", "lab.gz", "trunc.gz", "long.gz", "bad.gz", "plain.idx", "flip.gz"};
    for (int i = 0; i < 7; i++) unlink(tmp_path(names[i]));

    /* the real Fashion-MNIST test split, when installed */
    const char *fi = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *fl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(fi, R_OK) != 0 || access(fl, R_OK) != 0) {
        printf("fashion-mnist not installed: real-file checks skipped\n");
        return;
    }
    CHECK_OK(fmd_dataset_load_idx(fi, fl, &d));
    if (!d) return;
    CHECK(fmd_dataset_size(d) == 10000 && fmd_dataset_dim(d) == 784 && fmd_dataset_num_classes(d) == 10);
    int per[10] = {0};
    float x[784], mn = 1e9f, mx = -1e9f;
    for (int64_t i = 0; i < 10000; i++) {
        int32_t l;
        fmd_dataset_get(d, i, x, &l);
        per[l]++;
        for (int j = 0; j < 784; j++) {
            mn = fminf(mn, x[j]);
            mx = fmaxf(mx, x[j]);
        }
    }
    for (int c = 0; c < 10; c++) CHECK(per[c] == 1000);
    CHECK(mn == -1.0f && mx == 1.0f);
    /* a few steps of a tiny DiT on the images: the image path runs and the loss is finite */
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_str(o, "arch", "dit"));
    CHECK_OK(fmd_options_set_i64(o, "patch_size", 4));
    CHECK_OK(fmd_options_set_i64(o, "hidden_size", 32));
    CHECK_OK(fmd_options_set_i64(o, "depth", 1));
    CHECK_OK(fmd_options_set_i64(o, "num_heads", 2));
    CHECK_OK(fmd_options_set_i64(o, "steps", 3));
    CHECK_OK(fmd_options_set_i64(o, "batch", 8));
    CHECK_OK(fmd_options_set_i64(o, "progress_every", 1));
    prog_state ps = {0, 0, 0, 0};
    fmd_teacher *T = NULL;
    CHECK_OK(fmd_teacher_train(be, d, o, on_progress, &ps, &T));
    CHECK(ps.calls == 3 && isfinite(ps.last_loss) && ps.last_loss > 0);
    CHECK(T && fmd_teacher_dim(T) == 784 && fmd_teacher_num_classes(T) == 10);
    fmd_teacher_destroy(T);
    fmd_options_destroy(o);
    fmd_dataset_destroy(d);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/fmd_test_train_XXXXXX");
    if (!mkdtemp(g_dir)) return tu_skip("test_train", "no temporary directory");
    tu_seed(5);
    setvbuf(stdout, NULL, _IONBF, 0);
    fmd_backend *be = NULL;
    /* FMD_TEST_BACKEND=cuda runs the same checks on the GPU (default cpu) */
    int rc = tu_open_backend("test_train", NULL, &be);
    if (rc) return rc;
    test_idx(be);
    test_repro_cancel_errors(be);
    test_ring8(be);
    fmd_backend_destroy(be);
    unlink(tmp_path("ring8.fmd"));
    rmdir(g_dir);
    return tu_finish("test_train");
}
