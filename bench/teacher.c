/* bench/teacher.c - throughput of the teacher machinery:
 *   - mixture velocity (host API, double precision) in rows/s, unguided and
 *     guided, for ring8 and classes4-d32;
 *   - teacher_velocity_dev of a mixture through a backend (host round trip);
 *   - teacher sampling: Dormand-Prince at two tolerances and RK4, NFE and
 *     samples/s;
 *   - .fmd write and read of a 16 MiB tensor at zlib levels 0, 1, 6 (MB/s);
 *   - flow-matching training steps/s of an MLP teacher.
 * Usage: bench_teacher [--backend cpu|cuda] [--quick]
 * Numbers on a shared machine are noisy: report the machine load with them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api/teacher_internal.h"
#include "io/fmdfile.h"
#include "util/util.h"

#define TRY(what, x)                                                                    \
    do {                                                                                \
        fmd_status s_ = (x);                                                            \
        if (s_) {                                                                       \
            fprintf(stderr, "bench_teacher: %s: %s: %s\n", what, fmd_status_name(s_),   \
                    fmd_last_error());                                                  \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static double rows_per_s(fmd_teacher *T, int64_t b, int guided, double min_s)
{
    int64_t D = fmd_teacher_dim(T);
    float *x = malloc(sizeof(float) * b * D), *v = malloc(sizeof(float) * b * D), *t = malloc(sizeof(float) * b);
    int32_t *lab = malloc(sizeof(int32_t) * b);
    fmd_prior_noise(x, b, D, 1, 0);
    for (int64_t i = 0; i < b; i++) {
        t[i] = (float)(i % 97) / 96.0f;
        lab[i] = fmd_teacher_num_classes(T) ? (int32_t)(i % (fmd_teacher_num_classes(T) + 1)) : 0;
    }
    if (guided) TRY("guidance", fmd_teacher_set_guidance(T, 3.0, 0.0, 1.0));
    int64_t rows = 0;
    double t0 = fmd_now();
    while (fmd_now() - t0 < min_s) {
        TRY("velocity", fmd_teacher_velocity(T, v, x, t, fmd_teacher_num_classes(T) ? lab : NULL, b));
        rows += b;
    }
    double r = rows / (fmd_now() - t0);
    if (guided) TRY("guidance", fmd_teacher_set_guidance(T, 1.0, 0.0, 1.0));
    free(x); free(v); free(t); free(lab);
    return r;
}

int main(int argc, char **argv)
{
    const char *bname = "cpu";
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) bname = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: bench_teacher [--backend cpu|cuda] [--quick]\n");
            return 2;
        }
    }
    const double S = quick ? 0.3 : 1.5;
    fmd_backend *be;
    TRY("backend", fmd_backend_open(bname, &be));
    printf("bench_teacher on %s\n", fmd_backend_device(be));

    const char *presets[2] = {"ring8", "classes4-d32"};
    for (int p = 0; p < 2; p++) {
        fmd_teacher *T;
        TRY("preset", fmd_teacher_create_preset(presets[p], &T));
        printf("mixture %-13s velocity, batch 4096: %10.3g rows/s unguided", presets[p],
               rows_per_s(T, 4096, 0, S));
        if (fmd_teacher_num_classes(T)) printf(", %10.3g rows/s guided (w=3)", rows_per_s(T, 4096, 1, S));
        printf("\n");
        /* through the backend (the distiller's path) */
        int64_t b = 512, D = fmd_teacher_dim(T);
        float *h = malloc(sizeof(float) * b * D), *ht = malloc(sizeof(float) * b);
        fmd_prior_noise(h, b, D, 2, 0);
        for (int64_t i = 0; i < b; i++) ht[i] = (float)i / (float)b;
        float *dx = be->ops->alloc(be, sizeof(float) * b * D), *dv = be->ops->alloc(be, sizeof(float) * b * D),
              *dt = be->ops->alloc(be, sizeof(float) * b);
        be->ops->upload(be, dx, h, sizeof(float) * b * D);
        be->ops->upload(be, dt, ht, sizeof(float) * b);
        int64_t calls = 0;
        double t0 = fmd_now();
        while (fmd_now() - t0 < S) {
            TRY("velocity_dev", teacher_velocity_dev(T, be, dv, dx, dt, NULL, b, NULL));
            calls++;
        }
        printf("mixture %-13s teacher_velocity_dev on %s, batch 512: %.3g calls/s (%.1f us/call)\n",
               presets[p], bname, calls / (fmd_now() - t0), 1e6 * (fmd_now() - t0) / calls);
        be->ops->free(be, dx); be->ops->free(be, dv); be->ops->free(be, dt);
        free(h); free(ht);
        /* sampling */
        const char *solvers[3] = {"dopri5", "dopri5", "rk4"};
        const double tols[3] = {1e-4, 1e-6, 0};
        int64_t n = quick ? 256 : 2048;
        float *xs = malloc(sizeof(float) * n * D);
        for (int s = 0; s < 3; s++) {
            fmd_options *o;
            TRY("options", fmd_options_create(&o));
            TRY("options", fmd_options_set_str(o, "solver", solvers[s]));
            if (tols[s] > 0) {
                TRY("options", fmd_options_set_f64(o, "rtol", tols[s]));
                TRY("options", fmd_options_set_f64(o, "atol", tols[s]));
            } else {
                TRY("options", fmd_options_set_i64(o, "steps", 16));
            }
            int64_t nfe = 0;
            double t1 = fmd_now();
            TRY("sample", fmd_teacher_sample(T, xs, NULL, n, 3, 0, o, &nfe));
            double el = fmd_now() - t1;
            printf("mixture %-13s sample %-6s %-8s: %lld samples, NFE %lld, %.3g samples/s\n", presets[p],
                   solvers[s], s < 2 ? (s ? "tol 1e-6" : "tol 1e-4") : "16 steps", (long long)n,
                   (long long)nfe, n / el);
            fmd_options_destroy(o);
        }
        free(xs);
        fmd_teacher_destroy(T);
    }

    /* .fmd write / read */
    const int64_t N = 4 << 20; /* 16 MiB of f32 */
    float *data = malloc(sizeof(float) * N), *back = malloc(sizeof(float) * N);
    fmd_prior_noise(data, N / 256, 256, 4, 0);
    char path[] = "/tmp/fmd_bench_teacher_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    const int levels[3] = {0, 1, 6};
    for (int l = 0; l < 3; l++) {
        fmdf_writer *w;
        int64_t sh[1] = {N};
        double t0 = fmd_now();
        TRY("writer", fmdf_writer_begin(path, &w));
        TRY("level", fmdf_writer_set_level(w, levels[l]));
        TRY("tensor", fmdf_writer_add_tensor(w, "x", FMDF_F32, 1, sh, data));
        TRY("commit", fmdf_writer_commit(w));
        double tw = fmd_now() - t0;
        fmdf_reader *r;
        t0 = fmd_now();
        TRY("open", fmdf_open(path, &r));
        TRY("read", fmdf_read_tensor(r, "x", FMDF_F32, 1, sh, back, sizeof(float) * N));
        fmdf_close(r);
        double tr = fmd_now() - t0;
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fclose(f);
        printf(".fmd 16 MiB of N(0,1) f32, zlib level %d: write %.0f MB/s (incl. fsync), read %.0f MB/s, "
               "file %.1f MiB, bit-exact %s\n", levels[l], 16.777 / tw, 16.777 / tr, sz / 1048576.0,
               memcmp(data, back, sizeof(float) * N) ? "NO" : "yes");
    }
    unlink(path);
    free(data);
    free(back);

    /* training */
    fmd_teacher *M, *T;
    fmd_dataset *ds;
    TRY("preset", fmd_teacher_create_preset("ring8", &M));
    TRY("dataset", fmd_dataset_from_mixture(M, 20000, 1, &ds));
    fmd_options *o;
    TRY("options", fmd_options_create(&o));
    TRY("options", fmd_options_set_i64(o, "width", 256));
    TRY("options", fmd_options_set_i64(o, "depth", 4));
    TRY("options", fmd_options_set_i64(o, "batch", 512));
    int64_t steps = quick ? 50 : 300;
    TRY("options", fmd_options_set_i64(o, "steps", steps));
    double t0 = fmd_now();
    TRY("train", fmd_teacher_train(be, ds, o, NULL, NULL, &T));
    printf("flow-matching MLP 256x4 (d=2), batch 512 on %s: %.0f steps/s\n", bname,
           steps / (fmd_now() - t0));
    fmd_teacher_destroy(T);
    fmd_options_destroy(o);
    fmd_dataset_destroy(ds);
    fmd_teacher_destroy(M);
    fmd_backend_destroy(be);
    return 0;
}
