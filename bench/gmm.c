/* gmm.c - the distillation benchmark on exact Gaussian-mixture teachers
 * (docs/math.md).
 *
 * For each teacher (ring8, grid25, classes4-d32 with CFG w = 3, --cfg W to change) it prints
 * one table: the teacher's Euler with 1/2/4/8/16 steps, the teacher's
 * Dormand-Prince solution (rtol 1e-5, scored against the 1e-6 reference),
 * and one-step students trained without data with prediction only,
 * correction only, both, and the data-based baseline (fed the
 * mixture's unguided data samples).  Columns: NFE, map error, energy
 * distance (the finite-sample floor is printed in the header), mode
 * coverage, mass error, training wall time, steps/s.  Learning curves
 * (EMA student, every --eval-every steps) are printed after each table and
 * kept in the JSON.  Then bench/pytorch_freeflow.py runs the same
 * algorithm on the same MLP and the ratio of steps/s is printed.
 *
 *   bench_gmm [--steps N] [--eval-every K] [--teachers a,b] [--rows r,..]
 *             [--set key=value]... [--student key=value]... [--eval-n N]
 *             [--json FILE] [--pytorch-steps N] [--no-pytorch] [--quiet] [--parallel]
 *             [--tset teacher:key=value]... [--tstudent teacher:key=value]...
 *             [--threads teacher=N]... [--cfg W] [--backend cpu|cuda]
 * rows: euler, dp, pred, corr, both, data, pool (the data-based baseline fed
 * the teacher's own ODE samples instead of the mixture's data: on a guided
 * teacher it separates the baseline's wrong distribution from its anchoring;
 * not in the default rows; with --set data_pool=N the distiller draws
 * that pool itself, Heun instead of Dormand-Prince).  --set / --student apply to every
 * teacher, --tset / --tstudent to one.  --parallel trains every student row
 * in its own process at once (set FMD_NUM_THREADS=1; --threads gives one
 * teacher's children more).  --backend trains on another backend (the CUDA
 * plugin); PyTorch then runs on its GPU too, with the interpreter named by
 * FMD_PYTHON (default /usr/bin/python3).  Timing is wall-clock on a
 * shared machine: run it alone for numbers worth quoting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include "fmd.h"
#include "api/teacher_internal.h"
#include "algo/gmm.h"
#include "util/util.h"

#define MAXSET 64
#define MAXCURVE 256

typedef struct {
    char name[48];
    int64_t nfe;
    fmd_eval_result r;
    double train_s, steps_per_s, cpu_steps_per_s;
    int trained;
    char note[96];        /* why training stopped early, if it did */
    int ncurve;
    int64_t cstep[MAXCURVE];
    double cmap[MAXCURVE], ced[MAXCURVE];
} row;

static struct {
    int64_t steps, eval_every, eval_n, pt_steps;
    const char *teachers, *rows, *json;
    const char *set[MAXSET];
    int nset;
    const char *sset[MAXSET];
    int nsset;
    const char *tset[MAXSET];     /* "teacher:key=value" (distiller)   */
    int ntset;
    const char *tsset[MAXSET];    /* "teacher:key=value" (student)     */
    int ntsset;
    const char *threads[8];       /* "teacher=N" for --parallel children */
    int nthreads;
    int pytorch, quiet, jobs;
    double cfg;                   /* guidance of class-conditional teachers */
    const char *backend;          /* "cpu" (default) or "cuda" */
} A;

static void die(const char *what, fmd_status st)
{
    fprintf(stderr, "bench_gmm: %s: %s (%s)\n", what, fmd_status_name(st), fmd_last_error());
    exit(1);
}
#define TRY(what, expr)                  \
    do {                                 \
        fmd_status st_ = (expr);         \
        if (st_) die(what, st_);         \
    } while (0)

static int has(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; p && *p;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == n && strncmp(p, item, n) == 0) return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

typedef struct {
    fmd_evaluator *ev;
    fmd_distiller *d;
    row *r;
    double t_train, t_last;
    int64_t every;
} curve_ctx;

static int on_progress(const fmd_distill_stats *s, void *user)
{
    curve_ctx *c = user;
    double now = fmd_now();
    c->t_train += now - c->t_last;
    if (c->every > 0 && s->step % c->every == 0 && c->r->ncurve < MAXCURVE) {
        fmd_student *ema;
        fmd_eval_result e;
        memset(&e, 0, sizeof e);
        e.struct_size = sizeof e;
        fmd_distiller_ema_student(c->d, &ema);
        if (fmd_evaluator_student(c->ev, ema, &e) == FMD_OK) {
            int k = c->r->ncurve++;
            c->r->cstep[k] = s->step;
            c->r->cmap[k] = e.map_error;
            c->r->ced[k] = e.energy_distance;
            if (!A.quiet)
                fprintf(stderr, "  %-10s step %6lld  map %.4f  ED %.5f  |D| %.4f  |vN-v| %.4f  lam %.3g  %.0f st/s\n",
                        c->r->name, (long long)s->step, e.map_error, e.energy_distance,
                        s->delta_norm, s->vdiff_norm, s->lambda, s->steps_per_s);
        }
    }
    c->t_last = fmd_now();
    return 0;
}

/* Apply the "teacher:key=value" entries of list that name tname. */
static void apply_teacher_opts(fmd_options *o, const char *tname, const char *const *list, int n)
{
    size_t l = strlen(tname);
    for (int i = 0; i < n; i++)
        if (!strncmp(list[i], tname, l) && list[i][l] == ':')
            TRY(list[i], fmd_options_parse(o, list[i] + l + 1));
}

static void train_row(fmd_teacher *T, const char *tname, fmd_backend *be, fmd_evaluator *ev,
                      row *r, const char *kind)
{
    fmd_options *so, *o;
    TRY("options", fmd_options_create(&so));
    TRY("options", fmd_options_create(&o));
    for (int i = 0; i < A.nsset; i++) TRY(A.sset[i], fmd_options_parse(so, A.sset[i]));
    apply_teacher_opts(so, tname, A.tsset, A.ntsset);
    if (strcmp(kind, "pred") == 0) TRY("opt", fmd_options_set_i64(o, "corr", 0));
    if (strcmp(kind, "corr") == 0) TRY("opt", fmd_options_set_i64(o, "pred", 0));
    int pool = strcmp(kind, "pool") == 0, data_based = pool || strcmp(kind, "data") == 0;
    if (data_based) {
        TRY("opt", fmd_options_set_i64(o, "corr", 0));
        TRY("opt", fmd_options_set_i64(o, "data_based", 1));
    }
    for (int i = 0; i < A.nset; i++) TRY(A.set[i], fmd_options_parse(o, A.set[i]));
    apply_teacher_opts(o, tname, A.tset, A.ntset);
    int64_t every = A.eval_every > 0 ? A.eval_every : A.steps;
    TRY("opt", fmd_options_set_i64(o, "progress_every", every));
    fmd_student *s;
    fmd_distiller *d;
    TRY("fmd_student_create", fmd_student_create(T, be, so, &s));
    TRY("fmd_distiller_create", fmd_distiller_create(T, s, be, o, &d));
    int64_t own_pool = 0;   /* --set data_pool=N: the distiller drew its pool itself */
    if (data_based && fmd_options_get_i64(o, "data_pool", &own_pool) != FMD_OK) own_pool = 0;
    if (data_based && !own_pool) {
        /* data: the mixture's unguided data samples (uniform classes); pool:
         * the teacher's own (guided) ODE samples, Dormand-Prince from noises
         * of seed 778 (the evaluator's are seed 0) */
        int64_t n = 65536, D = fmd_teacher_dim(T);
        int K = fmd_teacher_num_classes(T);
        float *x = malloc((size_t)(n * D) * sizeof(float));
        int32_t *lab = K ? malloc((size_t)n * sizeof(int32_t)) : NULL;
        if (!x || (K && !lab)) die("malloc", FMD_ERR_OOM);
        for (int64_t i = 0; lab && i < n; i++) lab[i] = (int32_t)(i % K);
        if (pool) TRY("fmd_teacher_sample", fmd_teacher_sample(T, x, lab, n, 778, 0, NULL, NULL));
        else TRY("fmd_teacher_sample_data", fmd_teacher_sample_data(T, n, 777, 0, lab, x, NULL));
        TRY("fmd_distiller_set_data", fmd_distiller_set_data(d, x, lab, n));
        free(x);
        free(lab);
    }
    curve_ctx c = {ev, d, r, 0.0, fmd_now(), every};
    clock_t c0 = clock();
    fmd_status rst = fmd_distiller_run(d, A.steps, on_progress, &c);
    double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    int64_t done = fmd_distiller_steps(d);
    if (rst) { /* keep the row: the weights are those of the last good step */
        snprintf(r->note, sizeof r->note, "stopped at step %lld: %s", (long long)done,
                 fmd_status_name(rst));
        fprintf(stderr, "bench_gmm: %s: %s\n", r->name, fmd_last_error());
    }
    r->train_s = c.t_train + (fmd_now() - c.t_last);
    r->steps_per_s = r->train_s > 0 ? (double)done / r->train_s : 0;
    /* process CPU time per step (includes the curve evaluations; with
     * --eval-every 0 it is the training alone) */
    r->cpu_steps_per_s = cpu > 0 ? (double)done / cpu : 0;
    r->trained = 1;
    fmd_student *ema;
    TRY("ema", fmd_distiller_ema_student(d, &ema));
    r->r.struct_size = sizeof r->r;
    TRY("evaluate", fmd_evaluator_student(ev, ema, &r->r));
    r->nfe = 1;
    fmd_distiller_destroy(d);
    fmd_student_destroy(s);
    fmd_options_destroy(so);
    fmd_options_destroy(o);
}

/* --jobs: one child process per student row; the row comes back through a
 * pipe.  Children build their own teacher, evaluator and backend (nothing
 * OpenMP-related crosses the fork). */
typedef struct {
    pid_t pid;
    int fd, teacher, slot;
} job;

static void child_row(const char *tname, int nproc_eval, const char *kind, row *r, int fd)
{
    fmd_backend *be;
    fmd_teacher *T;
    fmd_options *eo;
    fmd_evaluator *ev;
    size_t l = strlen(tname);
    for (int i = 0; i < A.nthreads; i++)
        if (!strncmp(A.threads[i], tname, l) && A.threads[i][l] == '=') {
            setenv("FMD_NUM_THREADS", A.threads[i] + l + 1, 1);
            setenv("OMP_NUM_THREADS", A.threads[i] + l + 1, 1);
        }
    TRY("fmd_backend_open", fmd_backend_open(A.backend, &be));
    TRY("preset", fmd_teacher_create_preset(tname, &T));
    if (fmd_teacher_num_classes(T) > 0) TRY("guidance", fmd_teacher_set_guidance(T, A.cfg, 0.0, 1.0));
    TRY("options", fmd_options_create(&eo));
    TRY("options", fmd_options_set_i64(eo, "n", nproc_eval));
    TRY("fmd_evaluator_create", fmd_evaluator_create(T, eo, &ev));
    train_row(T, tname, be, ev, r, kind);
    ssize_t w = write(fd, r, sizeof *r);
    close(fd);
    _exit(w == (ssize_t)sizeof *r ? 0 : 1);
}

static void print_table(const char *teacher, const row *rows, int n, double floor)
{
    printf("\n## %s  (energy-distance floor %.5f)\n\n", teacher, floor);
    printf("| %-22s | %4s | %9s | %9s | %7s | %8s | %8s | %8s |\n", "method", "NFE", "map err",
           "energy", "modes", "mass err", "train s", "steps/s");
    printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------", "------", "-----------",
           "-----------", "---------", "----------", "----------", "----------");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        char modes[32], tr[32], sps[32];
        if (r->r.modes_total >= 0) snprintf(modes, sizeof modes, "%d/%d", r->r.modes_covered, r->r.modes_total);
        else snprintf(modes, sizeof modes, "-");
        if (r->trained) {
            snprintf(tr, sizeof tr, "%.1f", r->train_s);
            snprintf(sps, sizeof sps, "%.1f", r->steps_per_s);
        } else {
            snprintf(tr, sizeof tr, "-");
            snprintf(sps, sizeof sps, "-");
        }
        printf("| %-22s | %4lld | %9.5f | %9.5f | %7s | %8.4f | %8s | %8s |\n", r->name,
               (long long)r->nfe, r->r.map_error, r->r.energy_distance, modes, r->r.mass_error, tr, sps);
    }
    for (int i = 0; i < n; i++)
        if (rows[i].note[0]) printf("\n%s: %s\n", rows[i].name, rows[i].note);
    int any = 0;
    for (int i = 0; i < n; i++) any |= rows[i].ncurve > 1;
    if (!any) return;
    printf("\nLearning curves (EMA student; map error / energy distance):\n\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        if (r->ncurve < 2) continue;
        printf("  %-12s", r->name);
        for (int k = 0; k < r->ncurve; k++)
            printf(" %lld:%.4f/%.4f", (long long)r->cstep[k], r->cmap[k], r->ced[k]);
        printf("\n");
    }
}

/* A JSON number, or null for NaN/Inf. */
static const char *jnum(double v, char *buf)
{
    if (isfinite(v)) snprintf(buf, 32, "%.6g", v);
    else snprintf(buf, 32, "null");
    return buf;
}

static void json_rows(FILE *f, const row *rows, int n)
{
    char b1[32], b2[32], b3[32];
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        fprintf(f, "%s{\"name\":\"%s\",\"nfe\":%lld,\"map_error\":%s,\"energy_distance\":%s,"
                   "\"modes_covered\":%d,\"modes_total\":%d,\"mass_error\":%s,\"train_s\":%.4g,"
                   "\"steps_per_s\":%.4g,\"note\":\"%s\",\"curve\":[",
                i ? "," : "", r->name, (long long)r->nfe, jnum(r->r.map_error, b1),
                jnum(r->r.energy_distance, b2), r->r.modes_covered, r->r.modes_total,
                jnum(r->r.mass_error, b3), r->train_s, r->steps_per_s, r->note);
        for (int k = 0; k < r->ncurve; k++)
            fprintf(f, "%s{\"step\":%lld,\"map_error\":%s,\"energy_distance\":%s}", k ? "," : "",
                    (long long)r->cstep[k], jnum(r->cmap[k], b1), jnum(r->ced[k], b2));
        fprintf(f, "]}");
    }
}

/* The mixture as JSON for bench/pytorch_freeflow.py. */
static int write_spec(fmd_teacher *T, const char *path, double w)
{
    const gmm *g = teacher_mixture(T);
    FILE *f = fopen(path, "w");
    if (!g || !f) {
        if (f) fclose(f);
        return -1;
    }
    fprintf(f, "{\"dim\":%d,\"num_classes\":%d,\"guidance\":%g,\"weights\":[", g->d, g->num_classes, w);
    for (int k = 0; k < g->k; k++) fprintf(f, "%s%.17g", k ? "," : "", g->w[k]);
    fprintf(f, "],\"stds\":[");
    for (int k = 0; k < g->k; k++) fprintf(f, "%s%.17g", k ? "," : "", g->s[k]);
    fprintf(f, "],\"classes\":[");
    for (int k = 0; g->cls && k < g->k; k++) fprintf(f, "%s%d", k ? "," : "", g->cls[k]);
    fprintf(f, "],\"means\":[");
    for (int k = 0; k < g->k; k++) {
        fprintf(f, "%s[", k ? "," : "");
        for (int j = 0; j < g->d; j++) fprintf(f, "%s%.17g", j ? "," : "", g->mu[k * g->d + j]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    fclose(f);
    return 0;
}

/* Run the PyTorch implementation on the same settings; returns its steps/s
 * (0 when it could not run). */
static double run_pytorch(fmd_teacher *T, int64_t batch, int width, int depth, int temb, double h,
                          double lr, double *cpu_sps, char *why, size_t nwhy)
{
    const char *src = getenv("FMD_SOURCE_DIR");
    char script[1024], spec[] = "/tmp/fmd_bench_gmm_spec_XXXXXX", cmd[4096];
    if (src) {
        snprintf(script, sizeof script, "%s/bench/pytorch_freeflow.py", src);
    } else { /* next to this source file */
        snprintf(script, sizeof script, "%s", __FILE__);
        char *slash = strrchr(script, '/');
        snprintf(slash ? slash + 1 : script, sizeof script - (size_t)(slash ? slash + 1 - script : 0),
                 "pytorch_freeflow.py");
    }
    int fd = mkstemp(spec);
    if (fd < 0) {
        snprintf(why, nwhy, "mkstemp failed");
        return 0;
    }
    close(fd);
    if (write_spec(T, spec, 1.0)) {
        snprintf(why, nwhy, "cannot write the mixture spec");
        remove(spec);
        return 0;
    }
    const char *threads = getenv("FMD_NUM_THREADS");
    const char *py = getenv("FMD_PYTHON");
    snprintf(cmd, sizeof cmd,
             "%s %s --spec %s --steps %lld --batch %lld --width %d --depth %d "
             "--temb %d --h %g --lr %g --threads %s --device %s 2>&1",
             py && *py ? py : "/usr/bin/python3", script, spec, (long long)A.pt_steps,
             (long long)batch, width, depth, temb, h, lr, threads ? threads : "0",
             strcmp(A.backend, "cuda") ? "cpu" : "cuda");
    FILE *p = popen(cmd, "r");
    double sps = 0;
    char line[4096];
    why[0] = '\0';
    while (p && fgets(line, sizeof line, p)) {
        char *k = strstr(line, "\"steps_per_s\":");
        char *kc = strstr(line, "\"cpu_steps_per_s\":");
        if (k) sps = atof(k + 14);
        if (kc) *cpu_sps = atof(kc + 18);
        else if (!A.quiet) fprintf(stderr, "  pytorch: %s", line);
        if (!sps) snprintf(why, nwhy, "%.200s", line);
    }
    if (p) pclose(p);
    remove(spec);
    return sps;
}

int main(int argc, char **argv)
{
    A.steps = 10000;
    A.eval_every = 1000;
    A.eval_n = 2000;
    A.pt_steps = 300;
    A.teachers = "ring8,grid25,classes4-d32";
    A.rows = "euler,dp,pred,corr,both,data";
    A.pytorch = 1;
    A.cfg = 3.0;
    A.backend = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--steps") && v) A.steps = atoll(argv[++i]);
        else if (!strcmp(a, "--eval-every") && v) A.eval_every = atoll(argv[++i]);
        else if (!strcmp(a, "--eval-n") && v) A.eval_n = atoll(argv[++i]);
        else if (!strcmp(a, "--cfg") && v) A.cfg = atof(argv[++i]);
        else if (!strcmp(a, "--backend") && v) A.backend = argv[++i];
        else if (!strcmp(a, "--teachers") && v) A.teachers = argv[++i];
        else if (!strcmp(a, "--rows") && v) A.rows = argv[++i];
        else if (!strcmp(a, "--set") && v && A.nset < MAXSET) A.set[A.nset++] = argv[++i];
        else if (!strcmp(a, "--student") && v && A.nsset < MAXSET) A.sset[A.nsset++] = argv[++i];
        else if (!strcmp(a, "--json") && v) A.json = argv[++i];
        else if (!strcmp(a, "--pytorch-steps") && v) A.pt_steps = atoll(argv[++i]);
        else if (!strcmp(a, "--no-pytorch")) A.pytorch = 0;
        else if (!strcmp(a, "--quiet")) A.quiet = 1;
        else if (!strcmp(a, "--parallel")) A.jobs = 1;
        else if (!strcmp(a, "--tset") && v && A.ntset < MAXSET) A.tset[A.ntset++] = argv[++i];
        else if (!strcmp(a, "--tstudent") && v && A.ntsset < MAXSET) A.tsset[A.ntsset++] = argv[++i];
        else if (!strcmp(a, "--threads") && v && A.nthreads < 8) A.threads[A.nthreads++] = argv[++i];
        else {
            fprintf(stderr, "usage: bench_gmm [--steps N] [--eval-every K] [--teachers a,b] "
                            "[--rows euler,dp,pred,corr,both,data] [--set k=v]... [--student k=v]... "
                            "[--eval-n N] [--json FILE] [--pytorch-steps N] [--no-pytorch] [--quiet] [--parallel] "
                            "[--tset t:k=v]... [--tstudent t:k=v]... [--threads t=N]... [--cfg W] [--backend cpu|cuda]\n");
            return 2;
        }
    }
    static const char *const names[] = {"ring8", "grid25", "classes4-d32"};
    enum { NKINDS = 5 };
    static const char *const kinds[NKINDS] = {"pred", "corr", "both", "data", "pool"};
    static const char *const labels[NKINDS] = {"student pred-only", "student corr-only",
                                               "student pred+corr", "data-based baseline",
                                               "teacher-pool baseline"};
    static job jobs[3][NKINDS];
    if (A.jobs) {
        /* every student row in its own process, all at once, before this
         * process touches OpenMP */
        fflush(stdout);
        fflush(stderr);
        for (int ti = 0; ti < 3; ti++)
            for (int k = 0; k < NKINDS; k++) {
                if (!has(A.teachers, names[ti]) || !has(A.rows, kinds[k])) continue;
                int p[2];
                if (pipe(p)) {
                    perror("pipe");
                    return 1;
                }
                pid_t pid = fork();
                if (pid < 0) {
                    perror("fork");
                    return 1;
                }
                if (pid == 0) {
                    close(p[0]);
                    static row r;
                    memset(&r, 0, sizeof r);
                    snprintf(r.name, sizeof r.name, "%s", labels[k]);
                    child_row(names[ti], (int)A.eval_n, kinds[k], &r, p[1]);
                }
                close(p[1]);
                jobs[ti][k].pid = pid;
                jobs[ti][k].fd = p[0];
            }
    }
    fmd_backend *be;
    TRY("fmd_backend_open", fmd_backend_open(A.backend, &be));
    printf("# bench_gmm: libfmd %s, %s, %lld steps per student\n", fmd_version(),
           fmd_backend_device(be), (long long)A.steps);
    FILE *jf = NULL;
    if (A.json) {
        jf = !strcmp(A.json, "-") ? stdout : fopen(A.json, "w");
        if (!jf) {
            fprintf(stderr, "bench_gmm: cannot open %s\n", A.json);
            return 1;
        }
        fprintf(jf, "{\"device\":\"%s\",\"steps\":%lld,\"teachers\":[", fmd_backend_device(be),
                (long long)A.steps);
    }
    int nt = 0;
    double lib_sps = 0, lib_cpu = 0;
    fmd_teacher *ring = NULL;
    for (int ti = 0; ti < 3; ti++) {
        if (!has(A.teachers, names[ti])) continue;
        fmd_teacher *T;
        TRY("fmd_teacher_create_preset", fmd_teacher_create_preset(names[ti], &T));
        if (fmd_teacher_num_classes(T) > 0) TRY("guidance", fmd_teacher_set_guidance(T, A.cfg, 0.0, 1.0));
        fmd_options *eo;
        TRY("options", fmd_options_create(&eo));
        TRY("options", fmd_options_set_i64(eo, "n", A.eval_n));
        fmd_evaluator *ev;
        double t0 = fmd_now();
        TRY("fmd_evaluator_create", fmd_evaluator_create(T, eo, &ev));
        if (!A.quiet) fprintf(stderr, "%s: reference solved in %.1f s\n", names[ti], fmd_now() - t0);
        row rows[16];
        int n = 0;
        memset(rows, 0, sizeof rows);
        if (has(A.rows, "euler")) {
            static const int ks[] = {1, 2, 4, 8, 16};
            for (int k = 0; k < 5; k++) {
                fmd_options *so;
                TRY("options", fmd_options_create(&so));
                TRY("opt", fmd_options_set_str(so, "solver", "euler"));
                TRY("opt", fmd_options_set_i64(so, "steps", ks[k]));
                row *r = &rows[n++];
                snprintf(r->name, sizeof r->name, "teacher Euler-%d", ks[k]);
                r->r.struct_size = sizeof r->r;
                TRY("evaluate", fmd_evaluator_teacher(ev, so, &r->r));
                r->nfe = r->r.nfe;
                fmd_options_destroy(so);
            }
        }
        if (has(A.rows, "dp")) {
            row *r = &rows[n++];
            snprintf(r->name, sizeof r->name, "teacher Dormand-Prince");
            r->r.struct_size = sizeof r->r;
            TRY("evaluate", fmd_evaluator_teacher(ev, NULL, &r->r));
            r->nfe = r->r.nfe;
        }
        for (int k = 0; k < NKINDS; k++) {
            if (!has(A.rows, kinds[k])) continue;
            row *r = &rows[n++];
            snprintf(r->name, sizeof r->name, "%s", labels[k]);
            if (A.jobs) {
                /* collect the child's row */
                job *j = &jobs[ti][k];
                ssize_t got = 0, m;
                while (got < (ssize_t)sizeof *r && (m = read(j->fd, (char *)r + got, sizeof *r - got)) > 0)
                    got += m;
                close(j->fd);
                int wst = 0;
                waitpid(j->pid, &wst, 0);
                if (got != (ssize_t)sizeof *r || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
                    fprintf(stderr, "bench_gmm: the %s/%s child failed\n", names[ti], kinds[k]);
                    memset(r, 0, sizeof *r);
                    snprintf(r->name, sizeof r->name, "%s", labels[k]);
                    snprintf(r->note, sizeof r->note, "child process failed");
                    r->r.map_error = r->r.energy_distance = r->r.mass_error = NAN;
                    r->r.modes_total = r->r.modes_covered = -1;
                }
            } else {
                train_row(T, names[ti], be, ev, r, kinds[k]);
            }
            if (ti == 0 && k == 2) {
                lib_sps = r->steps_per_s;
                lib_cpu = r->cpu_steps_per_s;
            }
        }
        double floor = n > 0 ? rows[0].r.energy_floor : 0.0;
        print_table(names[ti], rows, n, floor);
        fflush(stdout);
        if (jf) {
            fprintf(jf, "%s{\"name\":\"%s\",\"energy_floor\":%.6g,\"rows\":[", nt ? "," : "",
                    names[ti], floor);
            json_rows(jf, rows, n);
            fprintf(jf, "]}");
        }
        nt++;
        fmd_evaluator_destroy(ev);
        fmd_options_destroy(eo);
        if (ti == 0) ring = T;
        else fmd_teacher_destroy(T);
    }
    double pt_sps = 0, pt_cpu = 0;
    char why[256] = "";
    if (A.pytorch && ring && lib_sps > 0) {
        /* the student settings the library used (defaults unless --student) */
        int64_t batch = 512, width = 256, depth = 4, temb = 256;
        double h = 0.05, lr = 3e-4;
        for (int i = 0; i < A.nset; i++) {
            if (!strncmp(A.set[i], "batch=", 6)) batch = atoll(A.set[i] + 6);
            if (!strncmp(A.set[i], "step_h=", 7)) h = atof(A.set[i] + 7);
            if (!strncmp(A.set[i], "lr=", 3)) lr = atof(A.set[i] + 3);
        }
        for (int i = 0; i < A.nsset; i++) {
            if (!strncmp(A.sset[i], "width=", 6)) width = atoll(A.sset[i] + 6);
            if (!strncmp(A.sset[i], "depth=", 6)) depth = atoll(A.sset[i] + 6);
            if (!strncmp(A.sset[i], "temb_dim=", 9)) temb = atoll(A.sset[i] + 9);
        }
        pt_sps = run_pytorch(ring, batch, (int)width, (int)depth, (int)temb, h, lr, &pt_cpu, why,
                             sizeof why);
        if (pt_sps > 0)
            printf("\nPyTorch (bench/pytorch_freeflow.py, same algorithm and MLP, ring8, pred+corr, "
                   "%s threads): wall %.1f steps/s, CPU-time %.1f steps/s; libfmd wall %.1f, CPU-time "
                   "%.1f steps/s; libfmd / PyTorch = %.2fx (wall), %.2fx (CPU time)\n",
                   getenv("FMD_NUM_THREADS") ? getenv("FMD_NUM_THREADS") : "default", pt_sps,
                   pt_cpu, lib_sps, lib_cpu, lib_sps / pt_sps, pt_cpu > 0 ? lib_cpu / pt_cpu : 0.0);
        else
            printf("\nPyTorch comparison not run: %s\n", why[0] ? why : "no output");
    }
    if (jf) {
        fprintf(jf, "],\"libfmd_steps_per_s\":%.4g,\"pytorch_steps_per_s\":%.4g,\"speedup\":%.4g,"
                    "\"libfmd_cpu_steps_per_s\":%.4g,\"pytorch_cpu_steps_per_s\":%.4g,\"cpu_speedup\":%.4g}\n",
                lib_sps, pt_sps, pt_sps > 0 ? lib_sps / pt_sps : 0.0, lib_cpu, pt_cpu,
                pt_cpu > 0 ? lib_cpu / pt_cpu : 0.0);
        if (jf != stdout) fclose(jf);
    }
    fmd_teacher_destroy(ring);
    fmd_backend_destroy(be);
    return 0;
}
