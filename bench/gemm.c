/* bench/gemm.c - GFLOP/s of each CPU GEMM provider (oneDNN, OpenBLAS) and of
 * the backend's automatic choice, at the shapes the models use.
 *   bench_gemm [--quick] [--json] [--only onednn|openblas|auto]
 * Row-major C(m,n) = A(m,k) B(k,n), all three providers on the same buffers,
 * best of several repetitions after a warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include "backend.h"
#include "util/util.h"

typedef struct { const char *what; int64_t m, n, k; int ta, tb; } shape;

static const shape k_shapes[] = {
    {"MLP hidden (batch 1024, width 256)", 1024, 256, 256, 0, 0},
    {"MLP weight grad (256x256 over 1024)", 256, 256, 1024, 1, 0},
    {"MLP input (batch 1024, d=2 -> 256)", 1024, 256, 2, 0, 0},
    {"DiT tokens qkv-like (3136x1024x256)", 3136, 1024, 256, 0, 0},
    {"DiT tokens fc2-like (3136x256x1024)", 3136, 256, 1024, 0, 0},
    {"SiT-S tokens fc1 (8192x1536x384)", 8192, 1536, 384, 0, 1},
    {"attention scores (256x256x64)", 256, 256, 64, 0, 1},
    {"square 4096^3", 4096, 4096, 4096, 0, 0},
};

static double run(int provider, fmd_backend *be, const shape *s, const float *a, const float *b, float *c, int reps)
{
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    double best = 1e30;
    for (int r = 0; r < reps + 3; r++) {
        double t0 = fmd_now();
        if (provider == 0)
            dnnl_sgemm(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
        else if (provider == 1)
            cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                        (blasint)s->m, (blasint)s->n, (blasint)s->k, 1.0f, a, (blasint)lda, b, (blasint)ldb, 0.0f,
                        c, (blasint)s->n);
        else
            be->ops->gemm(be, s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
        double dt = fmd_now() - t0;
        if (r >= 3 && dt < best) best = dt; /* three warm-up calls (JIT, thread pool) */
    }
    return 2.0 * (double)s->m * s->n * s->k / best * 1e-9;
}

int main(int argc, char **argv)
{
    int quick = 0, json = 0, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            i++;
            only = !strcmp(argv[i], "onednn") ? 0 : !strcmp(argv[i], "openblas") ? 1 : !strcmp(argv[i], "auto") ? 2 : -2;
            if (only == -2) { fprintf(stderr, "bench_gemm: --only onednn|openblas|auto\n"); return 2; }
        } else { fprintf(stderr, "usage: bench_gemm [--quick] [--json] [--only onednn|openblas|auto]\n"); return 2; }
    }
    fmd_backend *be = NULL;
    if (fmd_backend_open("cpu", &be) != FMD_OK) { fprintf(stderr, "%s\n", fmd_last_error()); return 1; }
    int nshapes = (int)(sizeof k_shapes / sizeof k_shapes[0]);
    if (!json) {
        printf("# %s\n", fmd_backend_device(be));
        printf("%-40s %8s %8s %8s   (GFLOP/s, best of reps)\n", "shape (m x n x k)", "oneDNN", "OpenBLAS", "auto");
    } else {
        printf("{\"device\": \"%s\", \"results\": [\n", fmd_backend_device(be));
    }
    for (int i = 0; i < nshapes; i++) {
        const shape *s = &k_shapes[i];
        if (quick && s->m * s->n * s->k > 2000000000LL) continue;
        double flops = 2.0 * s->m * s->n * s->k;
        int reps = flops > 1e10 ? 3 : flops > 1e8 ? 10 : 50;
        float *a = malloc(sizeof(float) * s->m * s->k), *b = malloc(sizeof(float) * s->k * s->n),
              *c = malloc(sizeof(float) * s->m * s->n);
        if (!a || !b || !c) { fprintf(stderr, "out of memory\n"); return 1; }
        for (int64_t j = 0; j < s->m * s->k; j++) a[j] = (float)((j * 7) % 13) * 0.01f;
        for (int64_t j = 0; j < s->k * s->n; j++) b[j] = (float)((j * 5) % 11) * 0.01f;
        /* --only runs one provider: mixing OpenMP (oneDNN) and pthread
         * (OpenBLAS) pools in one process lets each pool's spinning threads
         * slow the other down */
        double g0 = (only < 0 || only == 0) ? run(0, be, s, a, b, c, reps) : 0.0;
        double g1 = (only < 0 || only == 1) ? run(1, be, s, a, b, c, reps) : 0.0;
        double g2 = (only < 0 || only == 2) ? run(2, be, s, a, b, c, reps) : 0.0;
        if (json)
            printf("  {\"shape\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, \"onednn\": %.1f, \"openblas\": %.1f, "
                   "\"auto\": %.1f}%s\n", s->what, (long long)s->m, (long long)s->n, (long long)s->k, g0, g1, g2,
                   i + 1 < nshapes ? "," : "");
        else
            printf("%-40s %8.1f %8.1f %8.1f\n", s->what, g0, g1, g2);
        free(a); free(b); free(c);
    }
    if (json) printf("]}\n");
    fmd_backend_destroy(be);
    return 0;
}
