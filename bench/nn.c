/* bench/nn.c - throughput of the network engine (lib/nn) on a backend:
 * forward (inference arena) and forward+backward (training arena) of
 *   (a) the MLP: d=2, width 256, depth 4, batch 1024;
 *   (b) a SiT-S/2-like DiT on 32x32x4 latents: hidden 384, depth 12,
 *       6 heads, patch 2, 1000 classes, batch 32.
 * Prints samples/s and achieved GFLOP/s (matmul FLOPs counted analytically:
 * 2*m*n*k per GEMM; forward+backward counted as 3x the forward).
 *
 *   bench_nn [--backend cpu|cuda] [--iters N] [--only mlp|sit]
 * Threads of the CPU backend: FMD_NUM_THREADS.  Compare with
 * bench/pytorch_nn.py (which can run this program in the same run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "nn/model.h"
#include "util/util.h"

static double mlp_flops(const nn_config *c)
{
    double W = c->width, D = c->dim, F = c->temb_dim;
    return 2.0 * (F * W + W * W) + 2.0 * (D * W + (c->depth - 1) * W * W + W * D);
}

static double dit_flops(const nn_config *c)
{
    double P = c->patch_size, T = (double)(c->input_size / c->patch_size) * (c->input_size / c->patch_size);
    double C = c->hidden_size, Cin = c->in_channels, Hm = C * c->mlp_ratio, F = c->temb_dim;
    double Cout = c->learn_sigma ? 2 * Cin : Cin;
    double blk = 2 * T * C * 3 * C + 2 * 2 * T * T * C + 2 * T * C * C + 2 * 2 * T * C * Hm + 2 * C * 6 * C;
    return 2 * T * Cin * P * P * C + 2 * (F * C + C * C) + c->dit_depth * blk + 2 * C * 2 * C +
           2 * T * C * P * P * Cout;
}

static int run(fmd_backend *be, const char *name, nn_config *c, int64_t B, int iters, double flops)
{
    nn_model *m = NULL;
    if (nn_model_create(be, c, 1, &m) || nn_model_randomize(m, 2, 0.02f)) {
        fprintf(stderr, "%s: %s\n", name, fmd_last_error());
        return 1;
    }
    int64_t D = nn_model_dim(m);
    float *h = malloc(sizeof(float) * (size_t)(B * D));
    for (int64_t i = 0; i < B * D; i++) h[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    float *x = be->ops->alloc(be, sizeof(float) * B * D), *out = be->ops->alloc(be, sizeof(float) * B * D);
    float *t = be->ops->alloc(be, sizeof(float) * B);
    int32_t *lab = be->ops->alloc(be, sizeof(int32_t) * B);
    be->ops->upload(be, x, h, sizeof(float) * B * D);
    for (int64_t i = 0; i < B; i++) h[i] = (float)(i + 1) / (float)(B + 1);
    be->ops->upload(be, t, h, sizeof(float) * B);
    int32_t *hl = malloc(sizeof(int32_t) * B);
    for (int64_t i = 0; i < B; i++) hl[i] = c->num_classes ? (int32_t)(i % c->num_classes) : 0;
    be->ops->upload(be, lab, hl, sizeof(int32_t) * B);
    const int32_t *L = c->num_classes ? lab : NULL;

    for (int mode = 0; mode < 2; mode++) {
        fmd_status st = nn_model_reserve_ex(m, B, mode == 0 ? (NN_RESERVE_INFERENCE | NN_RESERVE_NO_JVP)
                                                            : NN_RESERVE_TRAIN);
        if (st) {
            fprintf(stderr, "%s: %s\n", name, fmd_last_error());
            return 1;
        }
        double best = 1e30, total = 0;
        for (int it = 0; it <= iters; it++) {        /* iteration 0 warms up */
            double t0 = fmd_now();
            st = nn_model_forward(m, out, x, t, NULL, L, B);
            if (!st && mode == 1) st = nn_model_zero_grad(m);
            if (!st && mode == 1) st = nn_model_backward(m, out, NULL, B);
            if (!st) st = be->ops->sync(be);
            double dt = fmd_now() - t0;
            if (st) {
                fprintf(stderr, "%s: %s\n", name, fmd_last_error());
                return 1;
            }
            if (it > 0) {
                total += dt;
                if (dt < best) best = dt;
            }
        }
        double mean = total / iters, f = flops * (double)B * (mode ? 3.0 : 1.0);
        printf("fmd   %-4s %-12s batch %5lld: %10.1f samples/s  %7.1f GFLOP/s  (mean %.4f s, best %.4f s, "
               "%d iters, arena %.1f MiB)\n",
               name, mode ? "fwd+bwd" : "forward", (long long)B, (double)B / mean, f / mean * 1e-9,
               mean, best, iters, (double)nn_model_arena_bytes(m) / 1048576.0);
        fflush(stdout);
    }
    be->ops->free(be, x); be->ops->free(be, out); be->ops->free(be, t); be->ops->free(be, lab);
    free(h); free(hl);
    nn_model_destroy(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *bname = "cpu", *only = NULL;
    int iters_mlp = 50, iters_sit = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) bname = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters_mlp = iters_sit = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_nn [--backend cpu|cuda] [--iters N] [--only mlp|sit]\n");
            return 2;
        }
    }
    if (iters_mlp < 1) iters_mlp = iters_sit = 1;
    fmd_backend *be = NULL;
    if (fmd_backend_open(bname, &be)) {
        fprintf(stderr, "backend %s: %s\n", bname, fmd_last_error());
        return 1;
    }
    printf("device: %s\n", fmd_backend_device(be));
    int rc = 0;
    if (!only || !strcmp(only, "mlp")) {
        nn_config c = {0};
        c.arch = NN_ARCH_MLP;
        c.dim = 2;
        c.width = 256;
        c.depth = 4;
        rc |= run(be, "mlp", &c, 1024, iters_mlp, mlp_flops(&(nn_config){.dim = 2, .width = 256,
                                                                            .depth = 4, .temb_dim = 256}));
    }
    if (!only || !strcmp(only, "sit")) {
        nn_config c = {0};
        c.arch = NN_ARCH_DIT;
        nn_config_preset(&c, "SiT-S/2");
        c.input_size = 32;
        c.in_channels = 4;
        c.num_classes = 1000;
        c.learn_sigma = 1;
        c.temb_dim = 256;
        rc |= run(be, "sit", &c, 32, iters_sit, dit_flops(&c));
    }
    fmd_backend_destroy(be);
    return rc;
}
