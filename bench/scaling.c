/* scaling.c - time of a data-parallel distillation step (bench/scaling.sh
 * runs it under mpirun -np 1, 2, ... for weak and strong scaling).
 *
 *   bench_scaling [--batch B] [--steps S] [--width W] [--depth D]
 *
 * ring8 teacher (closed form: the step's cost is the student's and g's),
 * MLP student of width W and depth D, pred + corr, the global batch B over
 * the ranks of fmd_comm_open("auto").  Rank 0 prints one line: ranks,
 * batch, rows per rank, ms per step (mean of S steps after 3 warm-up steps,
 * between barriers), and the ms of summing the step's gradients over the
 * ranks (the student's and g's parameters, timed alone 20 times) and their
 * share of the step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "api/distiller_internal.h"
#include "comm/comm.h"
#include "nn/model.h"
#include "fmd.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_scaling: %s: %s\n", what, fmd_last_error());
    exit(1);
}

int main(int argc, char **argv)
{
    long batch = 512, steps = 50, width = 256, depth = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--batch")) batch = v;
        else if (!strcmp(argv[i], "--steps")) steps = v;
        else if (!strcmp(argv[i], "--width")) width = v;
        else if (!strcmp(argv[i], "--depth")) depth = v;
        else {
            fprintf(stderr, "bench_scaling: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    fmd_comm *comm = NULL;
    fmd_backend *be = NULL;
    fmd_teacher *T = NULL;
    fmd_student *S = NULL;
    fmd_distiller *D = NULL;
    fmd_options *so = NULL, *o = NULL;
    char kv[64];
    if (fmd_comm_open(NULL, NULL, &comm)) die("fmd_comm_open");
    if (fmd_backend_open("cpu", &be)) die("fmd_backend_open");
    if (fmd_teacher_create_preset("ring8", &T)) die("teacher");
    fmd_options_create(&so);
    snprintf(kv, sizeof kv, "width=%ld", width);
    fmd_options_parse(so, kv);
    snprintf(kv, sizeof kv, "depth=%ld", depth);
    fmd_options_parse(so, kv);
    if (fmd_student_create(T, be, so, &S)) die("student");
    fmd_options_create(&o);
    snprintf(kv, sizeof kv, "batch=%ld", batch);
    fmd_options_parse(o, kv);
    fmd_options_parse(o, "steps=100000");
    if (fmd_distiller_create(T, S, be, o, &D)) die("distiller");
    if (fmd_distiller_set_comm(D, comm)) die("fmd_distiller_set_comm");
    if (fmd_distiller_run(D, 3, NULL, NULL)) die("warm-up");
    fmd_comm_barrier(comm);
    double t0 = now();
    if (fmd_distiller_run(D, steps, NULL, NULL)) die("run");
    fmd_comm_barrier(comm);
    double step_ms = (now() - t0) * 1e3 / (double)steps;
    /* the sums of one step: the student's gradient and g's */
    int64_t n = fmd_student_num_params(S) + nn_model_num_params(distiller_aux(D));
    float *buf = calloc((size_t)n, sizeof(float));
    fmd_comm_barrier(comm);
    t0 = now();
    for (int k = 0; k < 20; k++)
        if (comm_sum_f32(comm, buf, n)) die("sum");
    fmd_comm_barrier(comm);
    double sum_ms = (now() - t0) * 1e3 / 20.0;
    int N = fmd_comm_size(comm);
    if (fmd_comm_rank(comm) == 0)
        printf("ranks %d batch %ld rows/rank %ld params %lld step_ms %.3f allreduce_ms %.3f "
               "share %.3f\n", N, batch, batch / N, (long long)n, step_ms, N > 1 ? sum_ms : 0.0,
               N > 1 ? sum_ms / step_ms : 0.0);
    free(buf);
    fmd_distiller_destroy(D);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_options_destroy(so);
    fmd_options_destroy(o);
    fmd_backend_destroy(be);
    fmd_comm_close(comm);
    return 0;
}
