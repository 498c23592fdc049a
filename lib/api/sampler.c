/* sampler.c - fmd_sampler: generation from a student (one step, or a jump to
 * t = 1 - delta optionally finished by the teacher), from a teacher (any
 * solver of fmd_teacher_solve), and Best-of-N noise search (docs/math.md
 * section 12).
 *
 * Built on the public calls only (fmd_student_forward, fmd_teacher_solve,
 * fmd_prior_noise), so the sampler sees exactly what a host would.  Noise
 * row i is the prior noise of (seed, first_index + i); a search candidate
 * j >= 1 of sample i is the Philox normal of (seed, stream SEARCH + j,
 * (first_index + i) * dim + d), so results never depend on how a request is
 * split into calls or chunks. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "api/option_tables.h"
#include "api/teacher_internal.h"
#include "util/philox.h"
#include "util/util.h"

/* "search" in the high 48 bits; the candidate index in the low 16. */
#define SMP_STREAM_SEARCH (0x736561726368ull << 16)
#define SMP_MAX_CANDIDATES 65536
/* Rows generated per inner call.  The chunk bounds the host scratch (the
 * noise of a chunk: rows * dim floats) to SMP_CHUNK_BYTES, but is never
 * under SMP_CHUNK_MIN rows nor over SMP_CHUNK_MAX: a GPU student runs
 * passes of up to 16,384 rows (student.c), which 4096-row chunks would cap
 * for small-dimensional students. */
#define SMP_CHUNK_MIN 4096
#define SMP_CHUNK_MAX 65536
#define SMP_CHUNK_BYTES ((int64_t)64 << 20)

struct fmd_sampler {
    fmd_student *student;   /* borrowed, may be NULL */
    fmd_teacher *teacher;   /* borrowed, may be NULL */
    int64_t dim;
    int K;
    fmd_options *defaults;  /* owned copy of the create options */
};

enum { M_STUDENT = 0, M_TEACHER = 1 };

/* The options of a call: the per-call bag over the create bag over these
 * defaults (docs/api.md, the SAMPLER section of fmd.h). */
typedef struct smp_opts {
    int method;                 /* M_*; default: student when there is one    */
    double delta;
    int finish, refine;
    double cfg, cfg_lo, cfg_hi; /* default: the teacher's guidance            */
    ode_config ode;             /* solver, steps, shift, rtol, atol           */
} smp_opts;

#define OPT_CFG smp_opts
static const opt_spec k_smp_spec[] = {
    OPT_E_("method", OT_CHOICE, method, 0, 0, 0, 0, "student|teacher", "student when the sampler has one",
           NULL, "one network evaluation of the student, or the teacher's ODE"),
    OPT_NUM("delta", delta, 0, 1, 1, OPT_LO_OPEN, "method=student", "student jump: f(z, delta) is the state at t = 1 - delta (1: the sample)"),
    OPT_INT("finish", finish, 0, 1, 0, 0, "method=student,delta<1", "1: integrate the teacher from t = 1 - delta to 0 after the jump"),
    OPT_INT("refine", refine, 0, 1, 0, 0, NULL, "best-of-N only: 1 integrates the teacher's ODE from the best noise"),
    OPT_NUM_CTX("cfg", cfg, -1e3, 1e3, "the teacher's", 0, NULL, "guidance scale of the call's teacher evaluations"),
    OPT_NUM_CTX("cfg_lo", cfg_lo, 0, 1, "the teacher's", 0, NULL, "guidance interval in t: low end"),
    OPT_NUM_CTX("cfg_hi", cfg_hi, 0, 1, "the teacher's", 0, NULL, "guidance interval in t: high end"),
    ODE_OPT_ENTRIES(ode.),
};
#undef OPT_CFG
enum { NSMP = (int)(sizeof k_smp_spec / sizeof k_smp_spec[0]) };
const opt_table opt_table_sampler = OPT_TABLE("sampler", "fmd_sampler_sample", k_smp_spec, NULL);

typedef struct smp_call {
    int method;
    float delta;
    int finish, refine;
    int has_cfg;
    double cfg, cfg_lo, cfg_hi;
    ode_config solver;          /* the teacher's solve of the call            */
    ode_config finish_solver;   /* the same from t_start = 1 - delta           */
} smp_call;

static int was_given(const unsigned char *given, const char *key)
{
    return given[opt_find(&opt_table_sampler, key)];
}

static fmd_status call_parse(const char *fn, const fmd_sampler *s, const fmd_options *opts,
                             int search, smp_call *c)
{
    opt_table tab = opt_table_sampler;
    tab.fn = fn;
    smp_opts o;
    unsigned char given[NSMP] = {0};
    memset(c, 0, sizeof *c);
    ode_config_default(&o.ode);   /* the solver keys the sampler does not offer, too */
    opt_defaults(&tab, &o);
    o.method = s->student ? M_STUDENT : M_TEACHER;
    fmd_status st = opt_apply(&tab, s->defaults, &o, given);
    if (!st) st = opt_apply(&tab, opts, &o, given);
    if (!st) st = opt_check_applies(&tab, &o, given);
    if (st) return st;
    c->method = o.method;
    if (c->method == M_STUDENT && !s->student)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: method=student but the sampler has no student", fn);
    if (c->method == M_TEACHER && !s->teacher)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: method=teacher but the sampler has no teacher", fn);
    c->delta = (float)o.delta;
    c->finish = o.finish;
    c->refine = o.refine;
    if (c->refine && !search)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option 'refine' belongs to best-of-N", fn);
    if ((c->finish || c->refine) && !s->teacher)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' needs a teacher", fn,
                          c->finish ? "finish" : "refine");
    const int uses_teacher = c->method == M_TEACHER || c->finish || c->refine;
    if (was_given(given, "cfg") || was_given(given, "cfg_lo") || was_given(given, "cfg_hi")) {
        if (!uses_teacher)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: a student's guidance is fixed when it is "
                              "distilled: 'cfg' needs method=teacher, finish=1 or refine=1", fn);
        c->has_cfg = 1;
        if ((st = fmd_teacher_get_guidance(s->teacher, &c->cfg, &c->cfg_lo, &c->cfg_hi))) return st;
        if (was_given(given, "cfg")) c->cfg = o.cfg;
        if (was_given(given, "cfg_lo")) c->cfg_lo = o.cfg_lo;
        if (was_given(given, "cfg_hi")) c->cfg_hi = o.cfg_hi;
    }
    static const char *const solver_keys[] = {"solver", "steps", "shift", "rtol", "atol"};
    for (size_t i = 0; !uses_teacher && i < sizeof solver_keys / sizeof solver_keys[0]; i++)
        if (was_given(given, solver_keys[i]))
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' needs method=teacher, "
                              "finish=1 or refine=1", fn, solver_keys[i]);
    c->solver = o.ode;
    c->finish_solver = o.ode;
    c->finish_solver.t_start = 1.0 - (double)c->delta;
    return FMD_OK;
}

void fmd_sampler_destroy(fmd_sampler *s)
{
    if (!s) return;
    fmd_options_destroy(s->defaults);
    fmd_free(s);
}

fmd_status fmd_sampler_create(fmd_student *student, fmd_teacher *teacher, const fmd_options *opts,
                              fmd_sampler **out)
{
    static const char *fn = "fmd_sampler_create";
    FMD_CHECK_ARG(out, "%s: out is NULL", fn);
    FMD_CHECK_ARG(student || teacher, "%s: student and teacher are both NULL", fn);
    if (student && teacher) {
        FMD_CHECK_ARG(fmd_student_dim(student) == fmd_teacher_dim(teacher),
                      "%s: student dim %lld != teacher dim %lld", fn,
                      (long long)fmd_student_dim(student), (long long)fmd_teacher_dim(teacher));
        FMD_CHECK_ARG(fmd_student_num_classes(student) == fmd_teacher_num_classes(teacher),
                      "%s: student has %d classes, teacher %d", fn,
                      fmd_student_num_classes(student), fmd_teacher_num_classes(teacher));
    }
    fmd_status st = FMD_OK;
    fmd_sampler *s = fmd_xcalloc(1, sizeof *s, "fmd_sampler");
    if (!s) return FMD_ERR_OOM;
    s->student = student;
    s->teacher = teacher;
    s->dim = student ? fmd_student_dim(student) : fmd_teacher_dim(teacher);
    s->K = student ? fmd_student_num_classes(student) : fmd_teacher_num_classes(teacher);
    st = fmd_options_create(&s->defaults);
    if (!st) st = fmd_options_copy_into(s->defaults, opts);
    if (!st) {
        /* Validate the defaults as a call would use them (search flags allowed). */
        smp_call c;
        st = call_parse(fn, s, NULL, 1, &c);
    }
    if (st) {
        fmd_sampler_destroy(s);
        return st;
    }
    *out = s;
    return FMD_OK;
}

int64_t fmd_sampler_dim(const fmd_sampler *s) { return s ? s->dim : 0; }
int fmd_sampler_num_classes(const fmd_sampler *s) { return s ? s->K : 0; }

/* Apply the call's guidance to the teacher; *saved receives the old one. */
static fmd_status guidance_push(fmd_sampler *s, const smp_call *c, double saved[3])
{
    if (!c->has_cfg) return FMD_OK;
    fmd_status st = fmd_teacher_get_guidance(s->teacher, &saved[0], &saved[1], &saved[2]);
    if (st) return st;
    return fmd_teacher_set_guidance(s->teacher, c->cfg, c->cfg_lo, c->cfg_hi);
}

/* Restore the teacher's guidance; st is the call's status, whose message is
 * kept when it is an error. */
static void guidance_pop(fmd_sampler *s, const smp_call *c, const double saved[3], fmd_status st)
{
    if (!c->has_cfg) return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fmd_last_error());
    fmd_teacher_set_guidance(s->teacher, saved[0], saved[1], saved[2]);
    if (st != FMD_OK) fmd_seterr(st, "%s", msg);
}

/* out (m, dim) from the noises z (m, dim) by the call's method; lab (m) or
 * NULL; dl (m) scratch.  *nfe receives evaluations per row. */
static fmd_status generate(fmd_sampler *s, const smp_call *c, const float *z, const int32_t *lab,
                           int64_t m, float *dl, float *out, int64_t *nfe)
{
    const int64_t D = s->dim;
    fmd_status st;
    int64_t e = 0;
    if (c->method == M_TEACHER) {
        memcpy(out, z, (size_t)(m * D) * sizeof(float));
        st = teacher_solve_cfg("fmd_sampler", s->teacher, out, lab, m, &c->solver, &e);
        if (st) return st;
        *nfe = e;
    } else {
        for (int64_t i = 0; i < m; i++) dl[i] = c->delta;
        st = fmd_student_forward(s->student, z, dl, s->K ? lab : NULL, m, out);
        if (st) return st;
        *nfe = 1;
        if (c->finish && c->delta < 1.0f) {
            st = teacher_solve_cfg("fmd_sampler", s->teacher, out, lab, m, &c->finish_solver, &e);
            if (st) return st;
            *nfe += e;
        }
    }
    for (int64_t i = 0; i < m * D; i++)
        if (!isfinite(out[i]))
            return fmd_seterr(FMD_ERR_NONFINITE, "fmd_sampler: non-finite output in row %lld",
                              (long long)(i / D));
    return FMD_OK;
}

static int64_t chunk_rows(int64_t dim)
{
    int64_t rows = SMP_CHUNK_BYTES / (dim * (int64_t)sizeof(float));
    return rows < SMP_CHUNK_MIN ? SMP_CHUNK_MIN : rows > SMP_CHUNK_MAX ? SMP_CHUNK_MAX : rows;
}

static fmd_status check_common(const char *fn, const fmd_sampler *s, const int32_t *labels,
                               int64_t n, const float *out, int64_t out_len)
{
    FMD_CHECK_ARG(s, "%s: sampler is NULL", fn);
    FMD_CHECK_ARG(n >= 0, "%s: n must be >= 0 (got %lld)", fn, (long long)n);
    FMD_CHECK_ARG(n <= INT64_MAX / s->dim, "%s: n * dim overflows", fn);
    FMD_CHECK_ARG(out || n == 0, "%s: out is NULL", fn);
    FMD_CHECK_ARG(out_len >= n * s->dim, "%s: out holds %lld floats but n * dim = %lld * %lld = %lld "
                  "are needed", fn, (long long)out_len, (long long)n, (long long)s->dim,
                  (long long)(n * s->dim));
    for (int64_t i = 0; labels && i < n; i++)
        FMD_CHECK_ARG(labels[i] >= 0 && labels[i] <= s->K, "%s: labels[%lld] = %d outside [0, %d]",
                      fn, (long long)i, (int)labels[i], s->K);
    return FMD_OK;
}

fmd_status fmd_sampler_sample(fmd_sampler *s, const int32_t *labels, int64_t n, uint64_t seed,
                              uint64_t first_index, const fmd_options *opts, float *out,
                              int64_t out_len, int64_t *nfe_out)
{
    static const char *fn = "fmd_sampler_sample";
    fmd_status st = check_common(fn, s, labels, n, out, out_len);
    if (st) return st;
    smp_call c;
    if ((st = call_parse(fn, s, opts, 0, &c))) return st;
    const int64_t D = s->dim;
    const int64_t rows = chunk_rows(D);
    const int64_t chunk = n < rows ? (n ? n : 1) : rows;
    float *z = fmd_malloc((size_t)(chunk * D) * sizeof(float));
    float *dl = fmd_malloc((size_t)chunk * sizeof(float));
    int32_t *lab = s->K ? fmd_malloc((size_t)chunk * sizeof(int32_t)) : NULL;
    double saved[3];
    int pushed = 0;
    int64_t nfe = 0;
    if (!z || !dl || (s->K && !lab)) {
        st = fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %lld rows", fn, (long long)chunk);
        goto done;
    }
    if ((st = guidance_push(s, &c, saved))) goto done;
    pushed = 1;
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        int64_t m = n - r0 < chunk ? n - r0 : chunk;
        if ((st = fmd_cancel_poll(fn))) goto done;
        fmd_prior_noise(z, m, D, seed, first_index + (uint64_t)r0);
        for (int64_t i = 0; lab && i < m; i++) lab[i] = labels ? labels[r0 + i] : s->K;
        int64_t e = 0;
        if ((st = generate(s, &c, z, lab, m, dl, out + r0 * D, &e))) goto done;
        if (e > nfe) nfe = e;
    }
    if (nfe_out) *nfe_out = nfe;
done:
    if (pushed) guidance_pop(s, &c, saved, st);
    fmd_free(z);
    fmd_free(dl);
    fmd_free(lab);
    return st;
}

/* Candidate j of sample index idx: j = 0 is the ordinary prior noise. */
static void candidate_noise(float *z, int64_t D, uint64_t seed, uint64_t idx, int64_t j)
{
    if (j == 0) {
        fmd_prior_noise(z, 1, D, seed, idx);
        return;
    }
    for (int64_t d = 0; d < D; d++)
        z[d] = fmd_philox_normal_at(seed, SMP_STREAM_SEARCH | (uint64_t)(j - 1),
                                    idx * (uint64_t)D + (uint64_t)d);
}

fmd_status fmd_sampler_best_of_n(fmd_sampler *s, const int32_t *labels, int64_t n, uint64_t seed,
                                 uint64_t first_index, int64_t candidates, fmd_reward_fn reward,
                                 fmd_reward_batch_fn reward_batch, void *user,
                                 const fmd_options *opts, float *out, int64_t out_len,
                                 float *noise_out, int64_t noise_len, double *scores_out,
                                 int64_t *nfe_out)
{
    static const char *fn = "fmd_sampler_best_of_n";
    fmd_status st = check_common(fn, s, labels, n, out, out_len);
    if (st) return st;
    FMD_CHECK_ARG((reward != NULL) != (reward_batch != NULL),
                  "%s: give exactly one of reward and reward_batch", fn);
    FMD_CHECK_ARG(candidates >= 1 && candidates <= SMP_MAX_CANDIDATES,
                  "%s: candidates must be in [1, %d] (got %lld)", fn, SMP_MAX_CANDIDATES,
                  (long long)candidates);
    FMD_CHECK_ARG(!noise_out || noise_len >= n * s->dim,
                  "%s: noise_out holds %lld floats but %lld are needed", fn, (long long)noise_len,
                  (long long)(n * s->dim));
    smp_call c;
    if ((st = call_parse(fn, s, opts, 1, &c))) return st;
    const int64_t D = s->dim, N = candidates;
    int64_t B = chunk_rows(D) / N;   /* samples per chunk */
    if (B < 1) B = 1;
    if (B > n) B = n ? n : 1;
    const int64_t M = B * N;          /* candidate rows per chunk */
    float *z = fmd_malloc((size_t)(M * D) * sizeof(float));
    float *xs = fmd_malloc((size_t)(M * D) * sizeof(float));
    float *best = fmd_malloc((size_t)(B * D) * sizeof(float));
    float *dl = fmd_malloc((size_t)M * sizeof(float));
    int32_t *lab = fmd_malloc((size_t)M * sizeof(int32_t));
    double *sc = fmd_malloc((size_t)M * sizeof(double));
    double saved[3];
    int pushed = 0;
    int64_t nfe = 0, nfe_refine = 0;
    if (!z || !xs || !best || !dl || !lab || !sc) {
        st = fmd_seterr(FMD_ERR_OOM, "%s: out of memory for %lld candidate rows", fn, (long long)M);
        goto done;
    }
    if ((st = guidance_push(s, &c, saved))) goto done;
    pushed = 1;
    for (int64_t r0 = 0; r0 < n; r0 += B) {
        const int64_t b = n - r0 < B ? n - r0 : B, m = b * N;
        if ((st = fmd_cancel_poll(fn))) goto done;
        for (int64_t i = 0; i < b; i++) {
            const uint64_t idx = first_index + (uint64_t)(r0 + i);
            const int32_t l = labels ? labels[r0 + i] : s->K;
            for (int64_t j = 0; j < N; j++) {
                candidate_noise(z + (i * N + j) * D, D, seed, idx, j);
                lab[i * N + j] = l;
            }
        }
        int64_t e = 0;
        if ((st = generate(s, &c, z, s->K ? lab : NULL, m, dl, xs, &e))) goto done;
        if (e > nfe) nfe = e;
        if (reward_batch) {
            if (reward_batch(sc, xs, lab, m, D, user) != 0) {
                st = fmd_seterr(FMD_ERR_CANCELLED, "%s: reward_batch returned non-zero", fn);
                goto done;
            }
        } else {
            for (int64_t r = 0; r < m; r++) sc[r] = reward(xs + r * D, D, lab[r], user);
        }
        for (int64_t i = 0; i < b; i++) {
            int64_t bj = 0;
            for (int64_t j = 0; j < N; j++) {
                const double v = sc[i * N + j];
                if (isnan(v)) {
                    st = fmd_seterr(FMD_ERR_NONFINITE, "%s: reward of sample %lld, candidate %lld "
                                    "is NaN", fn, (long long)(r0 + i), (long long)j);
                    goto done;
                }
                if (v > sc[i * N + bj]) bj = j;
            }
            const int64_t w = i * N + bj;
            memcpy(out + (r0 + i) * D, xs + w * D, (size_t)D * sizeof(float));
            memcpy(best + i * D, z + w * D, (size_t)D * sizeof(float));
            if (noise_out) memcpy(noise_out + (r0 + i) * D, z + w * D, (size_t)D * sizeof(float));
            if (scores_out) scores_out[r0 + i] = sc[w];
            lab[i] = lab[w];   /* w >= i * N >= i: compacting in place is safe */
        }
        if (c.refine) {
            /* The teacher's ODE from the winning noises, written over out. */
            float *dst = out + r0 * D;
            memcpy(dst, best, (size_t)(b * D) * sizeof(float));
            if ((st = teacher_solve_cfg(fn, s->teacher, dst, s->K ? lab : NULL, b, &c.solver, &e)))
                goto done;
            if (e > nfe_refine) nfe_refine = e;
            for (int64_t i = 0; i < b * D; i++)
                if (!isfinite(dst[i])) {
                    st = fmd_seterr(FMD_ERR_NONFINITE, "%s: non-finite refined sample %lld", fn,
                                    (long long)(r0 + i / D));
                    goto done;
                }
        }
    }
    if (nfe_out) *nfe_out = nfe * N + nfe_refine;
done:
    if (pushed) guidance_pop(s, &c, saved, st);
    fmd_free(z);
    fmd_free(xs);
    fmd_free(best);
    fmd_free(dl);
    fmd_free(lab);
    fmd_free(sc);
    return st;
}
