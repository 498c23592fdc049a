/* bench/gpu.c - throughput of distillation and one-step sampling, CPU vs GPU.
 *   bench_gpu [--seconds S] [--quick] [--backends cuda,cpu] [--models mlp,sit]
 *
 * Models (random weights; throughput does not depend on their values):
 *   mlp - an MLP network teacher (d = 2, width 256, depth 4, the library's
 *         default student size) and its student;
 *   sit - a SiT-B/2-sized DiT (latent 32x32x4, patch 2, hidden 768, depth 12,
 *         12 heads, 1000 classes) and its student.
 * For each model and backend: FreeFlow distillation steps per second (one
 * step = prediction + correction objectives with their teacher evaluations,
 * student backward, auxiliary update, AdamW, EMA; fmd_distiller_step) and
 * one-step generation samples per second (fmd_student_forward with delta = 1,
 * host buffers in and out, so transfers are included), and the same through
 * fmd_sampler_sample (the column "sampler smp/s": the prior noise drawn on
 * the host for every call, as a host program sampling a student pays it).
 * Each figure is the mean over as many repetitions as fit in S seconds
 * (default 2) after one warm-up.  --quick shrinks the DiT (hidden 128,
 * depth 2) for a smoke run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/teacher_internal.h"
#include "backend.h"
#include "nn/model.h"
#include "util/util.h"

static double g_seconds = 2.0;
static int g_quick = 0;

typedef struct {
    const char *name;
    int dit;
    int64_t train_batch[2];    /* cpu, gpu */
    int64_t sample_batch[2];
    int min_steps[2];          /* timed steps at least (after the warm-up) */
} model_spec;

static void make_config(const model_spec *ms, nn_config *c)
{
    memset(c, 0, sizeof *c);
    if (!ms->dit) {
        c->arch = NN_ARCH_MLP;
        c->dim = 2;
        c->width = 256;
        c->depth = 4;
        c->temb_dim = 256;
        return;
    }
    nn_config_preset(c, "SiT-B/2");
    c->input_size = 32;
    c->in_channels = 4;
    c->num_classes = 1000;
    if (g_quick) {
        c->hidden_size = 128;
        c->dit_depth = 2;
        c->num_heads = 4;
        c->num_classes = 10;
    }
}

/* Runs fn until g_seconds have passed (at least min_reps); returns reps/s. */
typedef fmd_status (*rep_fn)(void *ctx);
static fmd_status timed(rep_fn fn, void *ctx, int min_reps, double *per_s)
{
    fmd_status st = fn(ctx); /* warm-up */
    if (st) return st;
    double t0 = fmd_now(), t;
    int reps = 0;
    do {
        if ((st = fn(ctx))) return st;
        reps++;
        t = fmd_now() - t0;
    } while (t < g_seconds || reps < min_reps);
    *per_s = reps / t;
    return FMD_OK;
}

static fmd_status step_fn(void *ctx) { return fmd_distiller_step((fmd_distiller *)ctx); }

typedef struct {
    fmd_student *s;
    fmd_sampler *sm;
    float *z, *delta, *out;
    int32_t *labels;
    int64_t n, dim;
} sample_ctx;

static fmd_status sample_fn(void *ctx)
{
    sample_ctx *c = ctx;
    return fmd_student_forward(c->s, c->z, c->delta, c->labels, c->n, c->out);
}

static fmd_status sampler_fn(void *ctx)
{
    sample_ctx *c = ctx;
    return fmd_sampler_sample(c->sm, c->labels, c->n, 3, 0, NULL, c->out, c->n * c->dim, NULL);
}

static int run_one(const model_spec *ms, fmd_backend *be, int gpu)
{
    nn_config cfg;
    make_config(ms, &cfg);
    nn_model *net = NULL;
    fmd_teacher *T = NULL;
    fmd_student *S = NULL;
    fmd_distiller *D = NULL;
    fmd_options *o = NULL;
    sample_ctx sc = {0};
    double steps_s = 0, samples_s = 0, sampler_s = 0;
    int64_t tb = ms->train_batch[gpu], sb = ms->sample_batch[gpu];
    fmd_status st = nn_model_create(be, &cfg, 1, &net);
    if (!st) st = teacher_wrap_network(be, net, 0, &T);
    if (!st) st = fmd_student_create(T, be, NULL, &S);
    if (!st) st = fmd_options_create(&o);
    if (!st) {
        fmd_options_set_i64(o, "batch", tb);
        fmd_options_set_i64(o, "seed", 7);
        st = fmd_distiller_create(T, S, be, o, &D);
    }
    double t_create = fmd_now();
    if (!st) st = timed(step_fn, D, ms->min_steps[gpu], &steps_s);
    t_create = fmd_now() - t_create;
    fmd_distiller_destroy(D);
    D = NULL;
    if (!st) {
        int64_t dim = fmd_student_dim(S);
        int ncls = fmd_student_num_classes(S);
        sc.s = S;
        sc.n = sb;
        sc.dim = dim;
        sc.z = malloc((size_t)(sb * dim) * sizeof(float));
        sc.out = malloc((size_t)(sb * dim) * sizeof(float));
        sc.delta = malloc((size_t)sb * sizeof(float));
        sc.labels = ncls ? malloc((size_t)sb * sizeof(int32_t)) : NULL;
        if (!sc.z || !sc.out || !sc.delta || (ncls && !sc.labels)) st = FMD_ERR_OOM;
        else {
            st = fmd_prior_noise(sc.z, sb, dim, 3, 0);
            for (int64_t i = 0; i < sb; i++) {
                sc.delta[i] = 1.0f;
                if (sc.labels) sc.labels[i] = (int32_t)(i % ncls);
            }
        }
        if (!st) st = timed(sample_fn, &sc, 1, &samples_s);
        if (!st) st = fmd_sampler_create(S, NULL, NULL, &sc.sm);
        if (!st) st = timed(sampler_fn, &sc, 1, &sampler_s);
    }
    if (st) {
        printf("%-8s %-5s  FAILED: %s: %s\n", ms->name, fmd_backend_name(be), fmd_status_name(st),
               fmd_last_error());
    } else {
        printf("%-8s %-5s %6lld %10.2f %12.1f %8lld %14.1f %14.1f   %s\n", ms->name,
               fmd_backend_name(be), (long long)tb, steps_s, steps_s * (double)tb, (long long)sb,
               samples_s * (double)sb, sampler_s * (double)sb, fmd_backend_device(be));
    }
    fflush(stdout);
    fmd_sampler_destroy(sc.sm);
    free(sc.z);
    free(sc.out);
    free(sc.delta);
    free(sc.labels);
    fmd_options_destroy(o);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    return st != FMD_OK;
}

int main(int argc, char **argv)
{
    const char *backends = "cuda,cpu", *models = "mlp,sit";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) g_seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) g_quick = 1;
        else if (!strcmp(argv[i], "--backends") && i + 1 < argc) backends = argv[++i];
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gpu [--seconds S] [--quick] [--backends cuda,cpu] [--models mlp,sit]\n");
            return 2;
        }
    }
    /* batches: the MLP at the distiller's default batch; the SiT at what a
     * CPU finishes in about a second per step, and a batch that fills a GPU */
    const model_spec specs[] = {
        {"mlp", 0, {512, 512}, {65536, 65536}, {2, 2}},
        {g_quick ? "dit-tiny" : "SiT-B/2", 1, {g_quick ? 8 : 4, g_quick ? 8 : 32}, {g_quick ? 16 : 8, g_quick ? 16 : 64},
         {1, 2}},
    };
    printf("# bench_gpu: %.1f s per figure%s\n", g_seconds, g_quick ? " (quick sizes)" : "");
    printf("%-8s %-5s %6s %10s %12s %8s %14s %14s   %s\n", "model", "be", "batch", "steps/s",
           "train smp/s", "n", "1-step smp/s", "sampler smp/s", "device");
    int fails = 0;
    char list[64];
    snprintf(list, sizeof list, "%s", backends);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        fmd_backend *be = NULL;
        if (fmd_backend_open(tok, &be) != FMD_OK) {
            printf("%-8s %-5s  unavailable: %s\n", "-", tok, fmd_last_error());
            continue;
        }
        int gpu = strcmp(fmd_backend_name(be), "cpu") != 0;
        for (int m = 0; m < 2; m++)
            if (strstr(models, m ? "sit" : "mlp")) fails += run_one(&specs[m], be, gpu);
        fmd_backend_destroy(be);
    }
    return fails ? 1 : 0;
}
