/* mpi_distill.c - data-parallel distillation, run under mpirun -np N
 * (tests/mpi.cmake registers N = 2 and 3).  For three teachers - ring8
 * (a mixture), a small MLP network and a tiny class-conditional DiT
 * network (randomly initialised: the teacher is only a function here) - the
 * same distillation runs twice on every rank: data-parallel over the N ranks (batch 12, rows
 * [r B/N, (r+1) B/N) here) and as one process with the whole batch (the
 * reference, computed redundantly on each rank).  Checked:
 *   - the rows: every random number a rank draws (start times, spans, start
 *     states z, the correction's r and noise) is bit-identical to the
 *     reference's numbers for the same global rows, at the first and the
 *     last step;
 *   - the weights after 50 steps (student, EMA, g; but the attention's key
 *     biases, see maxrel_model), the EMA student's one-step outputs and the
 *     step's statistics agree with the reference within TOL (see below);
 *   - resume across world sizes: a single-process checkpoint at step 25
 *     continued on N ranks, and an N-rank checkpoint continued in one
 *     process, both land on the reference's step-50 weights within TOL;
 *   - a checkpoint is written by rank 0 only, and a failed write returns its
 *     error on every rank;
 *   - a batch not divisible by N is refused naming the batch;
 *   - sums and broadcasts of device buffers staged through the host (the
 *     reference backend's memory path), and the checksum comparison;
 *   - a rank whose weights are perturbed makes every rank stop at the next
 *     checksum (comm_check_every=10) with FMD_ERR_INTERNAL;
 *   - teacher training (fmd_teacher_train_comm) on Fashion-MNIST-sized data
 *     (784 dims, 10 classes): 10 steps on N ranks against one process, the
 *     teacher's weights within TOL; rank 0 alone writes the checkpoint.
 *
 * Tolerance.  The only arithmetic that differs from the single process is
 * the order of summation: each rank's backward sums its own rows, the ranks'
 * partial gradients and loss sums are then added (in one fixed order, the
 * same on every rank), and the GEMMs see fewer rows.  A reordered float sum
 * differs by a few ulp (~1e-7 relative) per step; AdamW's m / sqrt(v) can
 * amplify that on coordinates whose gradient is near zero, and 50 steps
 * accumulate it.  Observed with FMD_NUM_THREADS=1: max relative weight
 * difference (max |w - w_ref| / max |w_ref|) 1e-7 to 3e-6 on 2 and 3 ranks
 * for the three teachers (the test prints it); TOL = 1e-5 leaves a factor 3
 * or more and still fails any
 * wrong row, scale or missing reduction, which move weights by > 1e-3
 * within a few steps (mutating the 1/B scale or dropping the gradient sum
 * fails it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "algo/ff_internal.h"
#include "api/distiller_internal.h"
#include "api/student_internal.h"
#include "api/teacher_internal.h"
#include "comm/comm.h"
#include "nn/model.h"
#include "testutil.h"

#define TOL 1e-5
enum { BATCH = 12, STEPS = 50, HALF = 25 };

static fmd_backend *be;
static fmd_comm *comm;
static int R, N;
static fmd_teacher *T;
static const char *T_name;
static int T_mixture;   /* 1: the student takes width=16 (network teachers: their own shape) */
static char dir[512];

static fmd_student *student(void)
{
    fmd_options *so;
    fmd_student *s = NULL;
    CHECK_OK(fmd_options_create(&so));
    if (T_mixture) CHECK_OK(fmd_options_parse(so, "width=16"));
    CHECK_OK(fmd_options_parse(so, "seed=3"));
    CHECK_OK(fmd_student_create(T, be, so, &s));
    fmd_options_destroy(so);
    return s;
}

/* A distiller of a fresh student (pred + corr, the defaults), data-parallel
 * over c when c is not NULL. */
static fmd_distiller *distiller(fmd_student **s, fmd_comm *c, int64_t batch)
{
    char kv[64];
    fmd_options *o;
    fmd_distiller *d = NULL;
    *s = student();
    CHECK_OK(fmd_options_create(&o));
    snprintf(kv, sizeof kv, "batch=%lld", (long long)batch);
    CHECK_OK(fmd_options_parse(o, kv));
    CHECK_OK(fmd_options_parse(o, "seed=5"));
    CHECK_OK(fmd_options_parse(o, "steps=50"));
    CHECK_OK(fmd_options_parse(o, "comm_check_every=10"));
    CHECK_OK(fmd_distiller_create(T, *s, be, o, &d));
    fmd_options_destroy(o);
    if (d && c) CHECK_OK(fmd_distiller_set_comm(d, c));
    return d;
}

static double maxrel(const float *a, const float *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - (double)b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

/* maxrel over the parameters of models a and b (the same config) except
 * the attention's key biases (the middle third of each attn.qkv.bias):
 * softmax is invariant to them, so their exact gradient is 0 and what a
 * step computes for them is rounding noise, which AdamW's m / sqrt(v) turns
 * into steps of size lr with a sign that depends on the summation order
 * (observed: 7e-4 apart after 50 steps, any reordering; the output does not
 * depend on them at all). */
static double maxrel_model(nn_model *a, nn_model *b)
{
    double num = 0.0, den = 0.0;
    const float *pa = nn_model_params(a), *pb = nn_model_params(b);
    for (int i = 0; i < nn_model_num_views(b); i++) {
        const nn_param *v = nn_model_view(b, i);
        const size_t len = strlen(v->name);
        const int qkv_bias = len >= 13 && strcmp(v->name + len - 13, "attn.qkv.bias") == 0;
        for (int64_t j = 0; j < v->numel; j++) {
            if (qkv_bias && j >= v->numel / 3 && j < 2 * v->numel / 3) continue;
            num = fmax(num, fabs((double)pa[v->offset + j] - (double)pb[v->offset + j]));
            den = fmax(den, fabs((double)pb[v->offset + j]));
        }
    }
    return den > 0 ? num / den : num;
}

/* The rows the parallel trainer p drew are the reference ref's rows. */
static void check_rows(ff_trainer *p, ff_trainer *ref, const char *when)
{
    const int64_t D = p->D;
    CHECK(p->gB == ref->B && p->B * N == ref->B && p->r0 == (int64_t)R * p->B);
    CHECK(p->gBp == ref->Bp && p->gBc == ref->Bc);
    int bad = 0;
    bad += memcmp(p->h_t0, ref->h_t0 + p->r0, (size_t)p->B * sizeof(float)) != 0;
    bad += memcmp(p->h_dl, ref->h_dl + p->r0, (size_t)p->B * sizeof(float)) != 0;
    bad += memcmp(p->X0, ref->X0 + p->r0 * D, (size_t)(p->B * D) * sizeof(float)) != 0;
    if (p->K) bad += memcmp(p->h_lab, ref->h_lab + p->r0, (size_t)p->B * sizeof(int32_t)) != 0;
    if (p->Bc > 0) {
        bad += memcmp(p->h_r, ref->h_r + p->c0, (size_t)p->Bc * sizeof(float)) != 0;
        bad += memcmp(p->cn, ref->cn + p->c0 * D, (size_t)(p->Bc * D) * sizeof(float)) != 0;
    }
    CHECK_MSG(bad == 0, "%s, rank %d (%s): %d of the drawn row arrays differ from the single "
              "process's rows %lld..%lld", T_name, R, when, bad, (long long)p->r0,
              (long long)(p->r0 + p->B - 1));
}

/* The weights of d (student, EMA, g) against ref's: the max relative
 * difference. */
static double weights_diff(fmd_distiller *d, fmd_student *s, fmd_distiller *ref, fmd_student *rs)
{
    fmd_student *e, *re;
    CHECK_OK(fmd_distiller_ema_student(d, &e));
    CHECK_OK(fmd_distiller_ema_student(ref, &re));
    double w = maxrel_model(student_net(s), student_net(rs));
    w = fmax(w, maxrel_model(student_net(e), student_net(re)));
    nn_model *ga = distiller_aux(d), *gb = distiller_aux(ref);
    CHECK(ga && gb);
    if (ga && gb) w = fmax(w, maxrel_model(ga, gb));
    /* and the function: the EMA student's one-step map on 16 noises */
    enum { M = 16 };
    const int64_t D = fmd_student_dim(e);
    float *z = malloc(sizeof(float) * M * D * 3), *fa = z + M * D, *fb = fa + M * D;
    float dl[M];
    int32_t lab[M];
    for (int i = 0; i < M; i++) {
        dl[i] = 1.0f;
        lab[i] = i % (fmd_student_num_classes(e) > 0 ? fmd_student_num_classes(e) : 1);
    }
    CHECK_OK(fmd_prior_noise(z, M, D, 77, 0));
    const int32_t *lp = fmd_student_num_classes(e) > 0 ? lab : NULL;
    CHECK_OK(fmd_student_forward(e, z, dl, lp, M, fa));
    CHECK_OK(fmd_student_forward(re, z, dl, lp, M, fb));
    w = fmax(w, maxrel(fa, fb, M * D));
    free(z);
    return w;
}

static void path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* The collectives on device buffers of a backend whose memory is not the
 * host's are staged (comm.c): the reference backend ("ref") takes that
 * path.  Sums are exact here (small integers), broadcasts take rank 0's. */
static void test_staged_collectives(void)
{
    fmd_backend *ref = NULL;
    CHECK_OK(fmdb_open_reference(&ref));
    if (!ref) return;
    enum { n = 1000 };
    float h[n], *dv = ref->ops->alloc(ref, sizeof h);
    for (int i = 0; i < n; i++) h[i] = (float)(R + 1) * (float)i;
    ref->ops->upload(ref, dv, h, sizeof h);
    CHECK_OK(comm_sum_dev(comm, ref, dv, n));
    ref->ops->download(ref, h, dv, sizeof h);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += h[i] != (float)(N * (N + 1) / 2) * (float)i;
    for (int i = 0; i < n; i++) h[i] = (float)R;
    ref->ops->upload(ref, dv, h, sizeof h);
    CHECK_OK(comm_bcast_dev(comm, ref, dv, n));
    ref->ops->download(ref, h, dv, sizeof h);
    for (int i = 0; i < n; i++) bad += h[i] != 0.0f;
    CHECK_MSG(bad == 0, "rank %d: %d staged sums or broadcasts wrong", R, bad);
    uint64_t hash = 0;
    CHECK_OK(comm_hash_dev(ref, dv, n, &hash));
    int nbad = -1;
    CHECK_OK(comm_same_everywhere(comm, hash, &nbad));
    CHECK(nbad == 0);
    CHECK_OK(comm_same_everywhere(comm, hash + (uint64_t)R, &nbad));
    CHECK(nbad == N - 1);
    ref->ops->free(ref, dv);
    fmd_backend_destroy(ref);
}

static void test_batch_not_divisible(void)
{
    fmd_student *s;
    fmd_distiller *d = distiller(&s, NULL, 4 * N + 1);
    if (d) {
        CHECK_STATUS(fmd_distiller_set_comm(d, comm), FMD_ERR_INVALID_ARG);
        CHECK_MSG(strstr(fmd_last_error(), "batch") && strstr(fmd_last_error(), "divisible"),
                  "message: %s", fmd_last_error());
    }
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
}

static void test_equivalence_and_resume(void)
{
    fmd_student *ps, *rs;
    fmd_distiller *pd = distiller(&ps, comm, BATCH), *rd = distiller(&rs, NULL, BATCH);
    if (!pd || !rd) goto out;
    CHECK_OK(fmd_distiller_step(pd));
    CHECK_OK(fmd_distiller_step(rd));
    check_rows(distiller_trainer(pd), distiller_trainer(rd), "step 0");
    CHECK_OK(fmd_distiller_run(pd, HALF - 1, NULL, NULL));
    CHECK_OK(fmd_distiller_run(rd, HALF - 1, NULL, NULL));
    char ck_ref[600], ck_par[600];
    path(ck_ref, sizeof ck_ref, "single.fmd");
    path(ck_par, sizeof ck_par, "parallel.fmd");
    if (R == 0) CHECK_OK(fmd_distiller_save(rd, ck_ref));
    CHECK_OK(fmd_distiller_save(pd, ck_par));   /* collective: rank 0 writes */
    CHECK_OK(fmd_comm_barrier(comm));
    if (T_mixture) {
        /* written once, by rank 0: a path of each rank's own exists for rank 0 only */
        char mine[700];
        snprintf(mine, sizeof mine, "%s/rank%d.fmd", dir, R);
        CHECK_OK(fmd_distiller_save(pd, mine));
        CHECK_MSG((access(mine, F_OK) == 0) == (R == 0), "rank %d: '%s' %s", R, mine,
                  R == 0 ? "was not written" : "was written by a rank other than 0");
        unlink(mine);
        /* rank 0 cannot write: every rank returns its status */
        CHECK_STATUS(fmd_distiller_save(pd, "/nonexistent-dir/x.fmd"), FMD_ERR_IO);
        CHECK_MSG(R == 0 || strstr(fmd_last_error(), "rank 0 could not write"), "rank %d: %s", R,
                  fmd_last_error());
    }
    CHECK_OK(fmd_distiller_run(pd, STEPS - HALF, NULL, NULL));
    CHECK_OK(fmd_distiller_run(rd, STEPS - HALF, NULL, NULL));
    check_rows(distiller_trainer(pd), distiller_trainer(rd), "step 49");
    double w = weights_diff(pd, ps, rd, rs);
    fmd_distill_stats a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
    CHECK_OK(fmd_distiller_stats(pd, &a));
    CHECK_OK(fmd_distiller_stats(rd, &b));
    double sd = fmax(fabs(a.loss_pred - b.loss_pred) / fabs(b.loss_pred),
                     fabs(a.loss_aux - b.loss_aux) / fabs(b.loss_aux));
    sd = fmax(sd, fabs(a.lambda - b.lambda) / fabs(b.lambda));
    sd = fmax(sd, fabs(a.grad_norm - b.grad_norm) / fabs(b.grad_norm));
    if (R == 0)
        printf("%s, %d ranks, %d steps: max relative weight difference to one process %.3g, "
               "statistics %.3g (tolerance %g)\n", T_name, N, STEPS, w, sd, TOL);
    CHECK_MSG(w < TOL, "%s, rank %d: weights differ from the single process by %.3g", T_name, R, w);
    CHECK_MSG(sd < TOL, "%s, rank %d: statistics differ from the single process by %.3g", T_name,
              R, sd);
    CHECK(a.step == STEPS && b.step == STEPS);

    /* resume 1 -> N and N -> 1 from step 25: the reference's step 50 */
    fmd_student *s1, *s2;
    fmd_distiller *d1 = distiller(&s1, comm, BATCH), *d2 = distiller(&s2, NULL, BATCH);
    if (d1 && d2) {
        CHECK_OK(fmd_distiller_resume(d1, ck_ref));
        CHECK_OK(fmd_distiller_resume(d2, ck_par));
        CHECK(fmd_distiller_steps(d1) == HALF && fmd_distiller_steps(d2) == HALF);
        CHECK_OK(fmd_distiller_run(d1, STEPS - HALF, NULL, NULL));
        CHECK_OK(fmd_distiller_run(d2, STEPS - HALF, NULL, NULL));
        double w1 = weights_diff(d1, s1, rd, rs), w2 = weights_diff(d2, s2, rd, rs);
        if (R == 0)
            printf("%s, resume at step %d: 1 -> %d ranks %.3g, %d ranks -> 1 %.3g\n", T_name, HALF,
                   N, w1, N, w2);
        CHECK_MSG(w1 < TOL, "%s, rank %d: 1 -> %d resume differs by %.3g", T_name, R, N, w1);
        CHECK_MSG(w2 < TOL, "%s, rank %d: %d -> 1 resume differs by %.3g", T_name, R, N, w2);
        check_rows(distiller_trainer(d1), distiller_trainer(rd), "resumed, step 49");
    }
    fmd_distiller_destroy(d1);
    fmd_distiller_destroy(d2);
    fmd_student_destroy(s1);
    fmd_student_destroy(s2);

    /* a diverged rank stops every rank at the next checksum (step 60) */
    if (R == N - 1) nn_model_params(student_net(ps))[0] += 1e-3f;
    CHECK_STATUS(fmd_distiller_run(pd, 10, NULL, NULL), FMD_ERR_INTERNAL);
    CHECK_MSG(strstr(fmd_last_error(), "differ between the ranks"), "message: %s", fmd_last_error());
    if (R == 0) {
        unlink(ck_ref);
        unlink(ck_par);
    }
out:
    fmd_distiller_destroy(pd);
    fmd_distiller_destroy(rd);
    fmd_student_destroy(ps);
    fmd_student_destroy(rs);
}

/* A randomly initialised network teacher of config c (teacher form). */
static fmd_teacher *network_teacher(nn_config c)
{
    nn_model *m = NULL;
    fmd_teacher *t = NULL;
    CHECK_OK(nn_model_create(be, &c, 21, &m));
    if (m) CHECK_OK(nn_model_randomize(m, 22, 0.3f));
    if (m) CHECK_OK(teacher_wrap_network(be, m, 0, &t));
    return t;
}

static void with_teacher(fmd_teacher *t, const char *name, int mixture)
{
    T = t;
    T_name = name;
    T_mixture = mixture;
    if (t) test_equivalence_and_resume();
    fmd_teacher_destroy(t);
    T = NULL;
}

/* 784-dim data with 10 classes (the shape of Fashion-MNIST), trained 10
 * steps with and without comm: the same teacher. */
static void test_teacher_train(void)
{
    enum { n = 600, dim = 784 };
    float *x = malloc(sizeof(float) * n * dim);
    int32_t lab[n];
    tu_seed(7);
    for (int64_t i = 0; i < (int64_t)n * dim; i++) x[i] = (float)(2.0 * tu_uniform() - 1.0);
    for (int i = 0; i < n; i++) lab[i] = i % 10;
    fmd_dataset *ds = NULL;
    CHECK_OK(fmd_dataset_create(x, lab, n, dim, 10, &ds));
    free(x);
    fmd_options *o, *oc;
    char ck[600], kv[700];
    path(ck, sizeof ck, "teacher.fmd");
    snprintf(kv, sizeof kv, "checkpoint=%s", ck);
    static const char *const kvs[] = {"width=64", "steps=10", "batch=12", "lr_warmup=2"};
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_create(&oc));
    for (int i = 0; i < 4; i++) {
        CHECK_OK(fmd_options_parse(o, kvs[i]));
        CHECK_OK(fmd_options_parse(oc, kvs[i]));
    }
    CHECK_OK(fmd_options_parse(oc, kv));
    fmd_teacher *tp = NULL, *t1 = NULL;
    CHECK_OK(fmd_teacher_train_comm(comm, be, ds, oc, NULL, NULL, &tp));
    CHECK_OK(fmd_comm_barrier(comm));
    /* the file is rank 0's; the single-process reference writes none */
    CHECK_MSG(access(ck, R_OK) == 0, "rank %d: no checkpoint '%s' after the run", R, ck);
    CHECK_OK(fmd_comm_barrier(comm));
    if (R == 0) unlink(ck);
    CHECK_OK(fmd_teacher_train(be, ds, o, NULL, NULL, &t1));
    if (tp && t1) {
        const nn_model *a = teacher_network(tp), *b = teacher_network(t1);
        double w = maxrel(nn_model_params((nn_model *)a), nn_model_params((nn_model *)b),
                          nn_model_num_params(b));
        if (R == 0)
            printf("teacher training, %d ranks, 10 steps: max relative weight difference %.3g\n",
                   N, w);
        CHECK_MSG(w < TOL, "rank %d: the teacher differs from one process's by %.3g", R, w);
    }
    /* a batch the ranks cannot share */
    CHECK_OK(fmd_options_set_i64(o, "batch", 4 * N + 1));
    fmd_teacher *tb = NULL;
    CHECK_STATUS(fmd_teacher_train_comm(comm, be, ds, o, NULL, NULL, &tb), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "divisible") != NULL && tb == NULL);
    fmd_teacher_destroy(tp);
    fmd_teacher_destroy(t1);
    fmd_options_destroy(o);
    fmd_options_destroy(oc);
    fmd_dataset_destroy(ds);
}

int main(void)
{
    if (fmd_comm_open("mpi", NULL, &comm) != FMD_OK) {
        fprintf(stderr, "%s\n", fmd_last_error());
        return 1;
    }
    R = fmd_comm_rank(comm);
    N = fmd_comm_size(comm);
    if (N < 2) {
        fmd_comm_close(comm);
        return tu_skip("mpi_distill", "needs mpirun -np 2 or more");
    }
    /* a folder of rank 0's choosing, the same on every rank */
    const char *tmp = getenv("TMPDIR");
    long pid = (long)getpid();
    comm_bcast(comm, &pid, sizeof pid);
    snprintf(dir, sizeof dir, "%s", tmp && *tmp ? tmp : "/tmp");
    char sub[64];
    snprintf(sub, sizeof sub, "/fmd-mpi-%ld", pid);
    strncat(dir, sub, sizeof dir - strlen(dir) - 1);
    if (R == 0) mkdir(dir, 0700);
    CHECK_OK(fmd_comm_barrier(comm));
    /* a second communicator shares MPI; closing it leaves the first working */
    fmd_comm *c2 = NULL;
    CHECK_OK(fmd_comm_open("mpi", NULL, &c2));
    CHECK(fmd_comm_rank(c2) == R && fmd_comm_size(c2) == N);
    fmd_comm_close(c2);
    CHECK_OK(fmd_comm_barrier(comm));
    int rc = tu_open_backend("mpi_distill", "cpu", &be);
    if (rc) return rc;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    T_name = "ring8";
    T_mixture = 1;
    test_staged_collectives();
    test_batch_not_divisible();
    test_teacher_train();
    with_teacher(T, "ring8", 1);
    nn_config mc = {0};
    mc.arch = NN_ARCH_MLP;
    mc.dim = 2;
    mc.width = 16;
    mc.depth = 2;
    mc.temb_dim = 8;
    mc.time_scale = 30.0f;
    with_teacher(network_teacher(mc), "MLP teacher", 0);
    nn_config dc = {0};
    dc.arch = NN_ARCH_DIT;
    dc.num_classes = 3;
    dc.input_size = 4;
    dc.patch_size = 2;
    dc.in_channels = 2;
    dc.hidden_size = 8;
    dc.dit_depth = 2;
    dc.num_heads = 2;
    dc.mlp_ratio = 2.0f;
    dc.temb_dim = 8;
    dc.time_scale = 4.0f;
    dc.delta_scale = 4.0f;
    with_teacher(network_teacher(dc), "DiT teacher (3 classes)", 0);
    fmd_backend_destroy(be);
    if (R == 0) rmdir(dir);
    char name[64];
    snprintf(name, sizeof name, "mpi_distill rank %d of %d", R, N);
    int ret = tu_finish(name);
    /* every rank's verdict: the job fails when any rank failed */
    double f = ret ? 1.0 : 0.0;
    comm_sum_f64(comm, &f, 1);
    fmd_comm_close(comm);
    return f > 0 ? 1 : 0;
}
