/* evaluate.c - fmd_evaluator: map error, energy distance (with its
 * finite-sample floor) and mode coverage of one-step students and teacher
 * solvers against the teacher's Dormand-Prince solution (docs/math.md section 11). */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "algo/metrics.h"
#include "api/option_tables.h"
#include "api/teacher_internal.h"
#include "util/philox.h"
#include "util/util.h"

enum { S_EVAL_Z = 0x6576616c, S_EVAL_REF = 0x65766172, S_EVAL_FLOOR = 0x65766166 };

struct fmd_evaluator {
    fmd_teacher *T;
    int64_t n, D;
    int K;
    float *z, *phi, *ref, *x;      /* (n, D) each                               */
    int32_t *lab;                  /* (n) or NULL                               */
    double floor;
    const gmm *g;                  /* mixture teachers, else NULL               */
    int64_t *ref_count, *count;    /* per component                             */
    fmd_options *dp;               /* dopri5 options of the reference           */
};

void fmd_evaluator_destroy(fmd_evaluator *ev)
{
    if (!ev) return;
    fmd_free(ev->z);
    fmd_free(ev->phi);
    fmd_free(ev->ref);
    fmd_free(ev->x);
    fmd_free(ev->lab);
    fmd_free(ev->ref_count);
    fmd_free(ev->count);
    fmd_options_destroy(ev->dp);
    fmd_free(ev);
}

static void draw(float *z, int64_t n, int64_t D, uint64_t seed, uint64_t stream)
{
    fmd_philox_normal_fill(z, n * D, seed, stream, 0);
}

/* The evaluator's options (docs/api.md). */
typedef struct eval_opts {
    int64_t n;
    uint64_t seed;
    double rtol, atol;
} eval_opts;

#define OPT_CFG eval_opts
static const opt_spec k_eval_spec[] = {
    OPT_INT("n", n, 2, 1e8, 2000, 0, NULL, "evaluation samples (noises)"),
    OPT_INT("seed", seed, 0, 9.2e18, 1234, 0, NULL, "seed of the noises and of the two teacher sample sets"),
    OPT_NUM("rtol", rtol, 0, 1, 1e-6, OPT_LO_OPEN, NULL, "relative tolerance of the reference Dormand-Prince solve"),
    OPT_NUM("atol", atol, 0, 1, 1e-6, OPT_LO_OPEN, NULL, "absolute tolerance of the reference Dormand-Prince solve"),
};
#undef OPT_CFG
const opt_table opt_table_evaluator = OPT_TABLE("evaluator", "fmd_evaluator_create", k_eval_spec, NULL);

fmd_status fmd_evaluator_create(fmd_teacher *T, const fmd_options *opts, fmd_evaluator **out)
{
    const char *fn = "fmd_evaluator_create";
    FMD_CHECK_ARG(T && out, "%s: NULL argument", fn);
    eval_opts eo;
    opt_defaults(&opt_table_evaluator, &eo);
    fmd_status st0 = opt_apply(&opt_table_evaluator, opts, &eo, NULL);
    if (st0) return st0;
    const int64_t n = eo.n;
    const uint64_t seed = eo.seed;
    const double rtol = eo.rtol, atol = eo.atol;
    fmd_evaluator *ev = fmd_xcalloc(1, sizeof *ev, "fmd_evaluator");
    if (!ev) return FMD_ERR_OOM;
    ev->T = T;
    ev->n = n;
    ev->D = teacher_dim(T);
    ev->K = teacher_num_classes(T);
    ev->g = teacher_mixture(T);
    size_t sz = (size_t)(n * ev->D) * sizeof(float);
    ev->z = fmd_malloc(sz);
    ev->phi = fmd_malloc(sz);
    ev->ref = fmd_malloc(sz);
    ev->x = fmd_malloc(sz);
    if (ev->K) ev->lab = fmd_malloc((size_t)n * sizeof(int32_t));
    if (ev->g) {
        ev->ref_count = fmd_calloc((size_t)ev->g->k, sizeof(int64_t));
        ev->count = fmd_calloc((size_t)ev->g->k, sizeof(int64_t));
    }
    fmd_status st = FMD_OK;
    if (!ev->z || !ev->phi || !ev->ref || !ev->x || (ev->K && !ev->lab) ||
        (ev->g && (!ev->ref_count || !ev->count)))
        st = fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %lld samples", fn, (long long)n);
    if (!st) st = fmd_options_create(&ev->dp);
    if (!st) st = fmd_options_set_str(ev->dp, "solver", "dopri5");
    if (!st) st = fmd_options_set_f64(ev->dp, "rtol", rtol);
    if (!st) st = fmd_options_set_f64(ev->dp, "atol", atol);
    if (st) {
        fmd_evaluator_destroy(ev);
        return st;
    }
    for (int64_t i = 0; ev->lab && i < n; i++) ev->lab[i] = (int32_t)(i % ev->K);
    /* reference map Phi(z), an independent reference set and the floor set */
    draw(ev->z, n, ev->D, (uint64_t)seed, S_EVAL_Z);
    memcpy(ev->phi, ev->z, sz);
    st = fmd_teacher_solve(T, ev->phi, ev->lab, n, ev->dp, NULL);
    if (!st) {
        draw(ev->ref, n, ev->D, (uint64_t)seed, S_EVAL_REF);
        st = fmd_teacher_solve(T, ev->ref, ev->lab, n, ev->dp, NULL);
    }
    if (!st) {
        draw(ev->x, n, ev->D, (uint64_t)seed, S_EVAL_FLOOR);
        st = fmd_teacher_solve(T, ev->x, ev->lab, n, ev->dp, NULL);
    }
    if (st) {
        fmd_evaluator_destroy(ev);
        return st;
    }
    ev->floor = metrics_energy_distance(ev->x, n, ev->ref, n, ev->D);
    if (ev->g && (st = metrics_mode_counts(ev->g, ev->ref, n, ev->ref_count))) {
        fmd_evaluator_destroy(ev);
        return st;
    }
    *out = ev;
    return FMD_OK;
}

/* Score ev->x (the samples just produced). */
static fmd_status score(fmd_evaluator *ev, fmd_eval_result *r, double seconds, int64_t nfe)
{
    fmd_eval_result o;
    memset(&o, 0, sizeof o);
    o.n = ev->n;
    o.map_error = metrics_map_error(ev->x, ev->phi, ev->n, ev->D);
    o.energy_distance = metrics_energy_distance(ev->x, ev->n, ev->ref, ev->n, ev->D);
    o.energy_floor = ev->floor;
    o.seconds = seconds;
    o.nfe = nfe;
    o.modes_covered = o.modes_total = -1;
    o.mass_error = -1.0;
    if (ev->g) {
        memset(ev->count, 0, (size_t)ev->g->k * sizeof(int64_t));
        fmd_status st = metrics_mode_counts(ev->g, ev->x, ev->n, ev->count);
        if (st) return st;
        o.modes_covered = o.modes_total = 0;
        o.mass_error = 0.0;
        for (int k = 0; k < ev->g->k; k++) {
            double fr = (double)ev->ref_count[k] / (double)ev->n;
            double fs = (double)ev->count[k] / (double)ev->n;
            if (fabs(fs - fr) > o.mass_error) o.mass_error = fabs(fs - fr);
            if (fr < 0.005) continue;
            o.modes_total++;
            if ((double)ev->count[k] >= 0.2 * (double)ev->ref_count[k]) o.modes_covered++;
        }
    }
    size_t keep = r->struct_size;
    memcpy(r, &o, keep < sizeof o ? keep : sizeof o);
    r->struct_size = keep;
    return FMD_OK;
}

fmd_status fmd_evaluator_student(fmd_evaluator *ev, fmd_student *s, fmd_eval_result *out)
{
    const char *fn = "fmd_evaluator_student";
    FMD_CHECK_ARG(ev && s && out, "%s: NULL argument", fn);
    FMD_CHECK_ARG(out->struct_size >= offsetof(fmd_eval_result, energy_distance),
                  "%s: out->struct_size too small", fn);
    FMD_CHECK_ARG(fmd_student_dim(s) == ev->D && fmd_student_num_classes(s) == ev->K,
                  "%s: the student does not match the teacher (dim %lld vs %lld, classes %d vs %d)",
                  fn, (long long)fmd_student_dim(s), (long long)ev->D, fmd_student_num_classes(s),
                  ev->K);
    float *one = fmd_malloc((size_t)ev->n * sizeof(float));
    if (!one) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
    for (int64_t i = 0; i < ev->n; i++) one[i] = 1.0f;
    double t0 = fmd_now();
    fmd_status st = fmd_student_forward(s, ev->z, one, ev->lab, ev->n, ev->x);
    double t1 = fmd_now();
    fmd_free(one);
    if (st) return st;
    return score(ev, out, t1 - t0, 1);
}

fmd_status fmd_evaluator_teacher(fmd_evaluator *ev, const fmd_options *solver_opts,
                                 fmd_eval_result *out)
{
    const char *fn = "fmd_evaluator_teacher";
    FMD_CHECK_ARG(ev && out, "%s: NULL argument", fn);
    FMD_CHECK_ARG(out->struct_size >= offsetof(fmd_eval_result, energy_distance),
                  "%s: out->struct_size too small", fn);
    memcpy(ev->x, ev->z, (size_t)(ev->n * ev->D) * sizeof(float));
    int64_t nfe = 0;
    double t0 = fmd_now();
    fmd_status st = fmd_teacher_solve(ev->T, ev->x, ev->lab, ev->n, solver_opts, &nfe);
    double t1 = fmd_now();
    if (st) return st;
    return score(ev, out, t1 - t0, nfe);
}

const float *fmd_evaluator_noise(const fmd_evaluator *ev, int64_t *n, int64_t *dim)
{
    if (!ev) return NULL;
    if (n) *n = ev->n;
    if (dim) *dim = ev->D;
    return ev->z;
}

const int32_t *fmd_evaluator_labels(const fmd_evaluator *ev) { return ev ? ev->lab : NULL; }
