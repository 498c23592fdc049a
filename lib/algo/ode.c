/* ode.c - fixed-step (Euler, Heun, midpoint, RK4) and adaptive
 * Dormand-Prince 5(4) solvers for the sampling ODE (see ode.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "algo/ode.h"
#include "util/optable.h"
#include "util/util.h"

#define OPT_CFG ode_config
static const opt_spec k_solver_spec[] = {
    ODE_OPT_ENTRIES(),
    OPT_NUM("t_start", t_start, 0, 1, 1, 0, NULL, "time the state is at on entry (1: noise)"),
    OPT_NUM("t_end", t_end, 0, 1, 0, 0, NULL, "time to integrate to (0: data)"),
    OPT_NUM("h0", h0, 0, 1, 0.02, OPT_LO_OPEN, "solver=dopri5", "dopri5: first step size"),
    OPT_INT("max_steps", max_steps, 1, 1e12, 100000, 0, "solver=dopri5", "dopri5: step attempts per row before it gives up"),
};
#undef OPT_CFG
const opt_table opt_table_solver = OPT_TABLE("solver", "fmd_teacher_solve", k_solver_spec, NULL);

void ode_config_default(ode_config *c)
{
    memset(c, 0, sizeof *c);
    opt_defaults(&opt_table_solver, c);
}

static const char *const METHOD_NAMES[] = {"euler", "heun", "midpoint", "rk4", "dopri5"};

const char *ode_method_name(int m)
{
    return (m >= ODE_EULER && m <= ODE_DOPRI5) ? METHOD_NAMES[m] : "?";
}

fmd_status ode_config_from_options(ode_config *c, const fmd_options *o, const char *fn)
{
    opt_table t = opt_table_solver;
    t.fn = fn;
    unsigned char given[sizeof k_solver_spec / sizeof k_solver_spec[0]] = {0};
    fmd_status st = opt_apply(&t, o, c, given);
    if (!st) st = opt_check_applies(&t, c, given);
    return st;
}

double ode_grid_time(int i, int steps, double t_start, double t_end, double shift)
{
    if (i <= 0) return t_start;
    if (i >= steps) return t_end;
    double u = 1.0 - (double)i / steps;
    double s = shift * u / (1.0 + (shift - 1.0) * u);
    return t_end + (t_start - t_end) * s;
}

static fmd_status check_cfg(const ode_config *c)
{
    FMD_CHECK_ARG(c->method >= ODE_EULER && c->method <= ODE_DOPRI5, "ode: bad method %d",
                  (int)c->method);
    FMD_CHECK_ARG(c->steps >= 1, "ode: steps must be >= 1 (got %d)", c->steps);
    FMD_CHECK_ARG(isfinite(c->shift) && c->shift > 0, "ode: shift must be > 0 (got %g)", c->shift);
    FMD_CHECK_ARG(c->t_start >= 0 && c->t_start <= 1 && c->t_end >= 0 && c->t_end <= 1,
                  "ode: t_start (%g) and t_end (%g) must lie in [0, 1]", c->t_start, c->t_end);
    if (c->method == ODE_DOPRI5) {
        FMD_CHECK_ARG(isfinite(c->rtol) && isfinite(c->atol) && c->rtol >= 0 && c->atol >= 0 &&
                      c->rtol + c->atol > 0, "ode: rtol (%g) and atol (%g) must be >= 0, not both 0",
                      c->rtol, c->atol);
        FMD_CHECK_ARG(isfinite(c->h0) && c->h0 > 0, "ode: h0 must be > 0 (got %g)", c->h0);
        FMD_CHECK_ARG(c->max_steps >= 1, "ode: max_steps must be >= 1");
    }
    return FMD_OK;
}

static int all_finite(const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------- fixed step */
static fmd_status solve_fixed(ode_field_fn f, void *ctx, double *x, const int32_t *labels,
                              int64_t b, int64_t d, const ode_config *c, ode_stats *stats)
{
    const int64_t n = b * d;
    int nst = c->method == ODE_EULER ? 1 : c->method == ODE_RK4 ? 4 : 2;
    double *k = fmd_calloc((size_t)(nst * n + n), sizeof(double));
    double *tt = fmd_calloc((size_t)b, sizeof(double));
    if (!k || !tt) {
        fmd_free(k);
        fmd_free(tt);
        return fmd_seterr(FMD_ERR_OOM, "ode: out of memory for %lld x %lld states", (long long)b,
                          (long long)d);
    }
    double *k1 = k, *k2 = k + n, *k3 = k + 2 * n, *k4 = k + 3 * n, *y = k + nst * n;
    fmd_status st = FMD_OK;
    int64_t nfe = 0;
#define EVAL(out, xin, tv)                                        \
    do {                                                          \
        for (int64_t r_ = 0; r_ < b; r_++) tt[r_] = (tv);         \
        if ((st = fmd_cancel_poll("ode"))) goto done;            \
        st = f(ctx, out, xin, tt, labels, b);                     \
        nfe++;                                                    \
        if (st) goto done;                                        \
    } while (0)
    for (int i = 0; i < c->steps; i++) {
        double t = ode_grid_time(i, c->steps, c->t_start, c->t_end, c->shift);
        double h = ode_grid_time(i + 1, c->steps, c->t_start, c->t_end, c->shift) - t;
        EVAL(k1, x, t);
        switch (c->method) {
        case ODE_EULER:
            for (int64_t j = 0; j < n; j++) x[j] += h * k1[j];
            break;
        case ODE_HEUN:
            for (int64_t j = 0; j < n; j++) y[j] = x[j] + h * k1[j];
            EVAL(k2, y, t + h);
            for (int64_t j = 0; j < n; j++) x[j] += 0.5 * h * (k1[j] + k2[j]);
            break;
        case ODE_MIDPOINT:
            for (int64_t j = 0; j < n; j++) y[j] = x[j] + 0.5 * h * k1[j];
            EVAL(k2, y, t + 0.5 * h);
            for (int64_t j = 0; j < n; j++) x[j] += h * k2[j];
            break;
        default: /* RK4 */
            for (int64_t j = 0; j < n; j++) y[j] = x[j] + 0.5 * h * k1[j];
            EVAL(k2, y, t + 0.5 * h);
            for (int64_t j = 0; j < n; j++) y[j] = x[j] + 0.5 * h * k2[j];
            EVAL(k3, y, t + 0.5 * h);
            for (int64_t j = 0; j < n; j++) y[j] = x[j] + h * k3[j];
            EVAL(k4, y, t + h);
            for (int64_t j = 0; j < n; j++)
                x[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
            break;
        }
    }
#undef EVAL
    if (!all_finite(x, n))
        st = fmd_seterr(FMD_ERR_NONFINITE, "ode: %s produced a non-finite state",
                        ode_method_name(c->method));
done:
    fmd_free(k);
    fmd_free(tt);
    if (stats) {
        stats->nfe = nfe;
        stats->nfe_mean = (double)nfe;
        stats->accepted = (int64_t)c->steps * b;
        stats->rejected = 0;
    }
    return st;
}

/* ---------------------------------------------------------------- dopri5 */
/* Dormand & Prince (1980) 5(4) tableau, FSAL. */
static const double C2 = 1.0 / 5, C3 = 3.0 / 10, C4 = 4.0 / 5, C5 = 8.0 / 9;
static const double A21 = 1.0 / 5;
static const double A31 = 3.0 / 40, A32 = 9.0 / 40;
static const double A41 = 44.0 / 45, A42 = -56.0 / 15, A43 = 32.0 / 9;
static const double A51 = 19372.0 / 6561, A52 = -25360.0 / 2187, A53 = 64448.0 / 6561,
                    A54 = -212.0 / 729;
static const double A61 = 9017.0 / 3168, A62 = -355.0 / 33, A63 = 46732.0 / 5247,
                    A64 = 49.0 / 176, A65 = -5103.0 / 18656;
static const double B1 = 35.0 / 384, B3 = 500.0 / 1113, B4 = 125.0 / 192, B5 = -2187.0 / 6784,
                    B6 = 11.0 / 84;
/* error coefficients: b (5th order) minus b* (4th order) */
static const double E1 = 71.0 / 57600, E3 = -71.0 / 16695, E4 = 71.0 / 1920,
                    E5 = -17253.0 / 339200, E6 = 22.0 / 525, E7 = -1.0 / 40;

typedef struct {
    ode_field_fn f;
    void *ctx;
    const int32_t *labels;
    int64_t b, d, na;
    int64_t *act;      /* (b) active row indices */
    double *xg, *vg, *tg;
    int32_t *lg;
    int64_t nfe;
    int64_t *row_nfe;
} dp_eval;

/* out[row] = f(xin[row], tin[row]) for the active rows (gathered, one call) */
static fmd_status dp_call(dp_eval *e, double *out, const double *xin, const double *tin)
{
    const int64_t d = e->d;
    fmd_status cst = fmd_cancel_poll("ode");
    if (cst) return cst;
    for (int64_t a = 0; a < e->na; a++) {
        int64_t r = e->act[a];
        memcpy(e->xg + a * d, xin + r * d, (size_t)d * sizeof(double));
        e->tg[a] = tin[r];
        if (e->labels) e->lg[a] = e->labels[r];
        e->row_nfe[r]++;
    }
    fmd_status st = e->f(e->ctx, e->vg, e->xg, e->tg, e->labels ? e->lg : NULL, e->na);
    e->nfe++;
    if (st) return st;
    for (int64_t a = 0; a < e->na; a++)
        memcpy(out + e->act[a] * d, e->vg + a * d, (size_t)d * sizeof(double));
    return FMD_OK;
}

static fmd_status solve_dopri5(ode_field_fn f, void *ctx, double *x, const int32_t *labels,
                               int64_t b, int64_t d, const ode_config *c, ode_stats *stats)
{
    const int64_t n = b * d;
    const double dir = c->t_end < c->t_start ? -1.0 : 1.0;
    double *buf = fmd_calloc((size_t)(10 * n + 4 * b), sizeof(double));
    int64_t *ibuf = fmd_calloc((size_t)(3 * b), sizeof(int64_t));
    int32_t *lg = labels ? fmd_calloc((size_t)b, sizeof(int32_t)) : NULL;
    if (!buf || !ibuf || (labels && !lg)) {
        fmd_free(buf);
        fmd_free(ibuf);
        fmd_free(lg);
        return fmd_seterr(FMD_ERR_OOM, "ode: out of memory for dopri5 (%lld x %lld)", (long long)b,
                          (long long)d);
    }
    double *k1 = buf, *k2 = buf + n, *k3 = buf + 2 * n, *k4 = buf + 3 * n, *k5 = buf + 4 * n,
           *k6 = buf + 5 * n, *k7 = buf + 6 * n, *y = buf + 7 * n, *xg = buf + 8 * n,
           *vg = buf + 9 * n;
    double *t = buf + 10 * n, *h = t + b, *ts = t + 2 * b, *tg = t + 3 * b;
    int64_t *act = ibuf, *row_nfe = ibuf + b, *trials = ibuf + 2 * b;
    dp_eval e = {f, ctx, labels, b, d, 0, act, xg, vg, tg, lg, 0, row_nfe};
    fmd_status st = FMD_OK;
    int64_t acc = 0, rej = 0;
    double span = fabs(c->t_end - c->t_start);
    for (int64_t r = 0; r < b; r++) {
        t[r] = c->t_start;
        h[r] = dir * fmin(c->h0, span);
        act[r] = r;
    }
    e.na = span > 0 ? b : 0;
    /* first stage for every row; later k1 = k7 of the last accepted step (FSAL) */
    if (e.na && (st = dp_call(&e, k1, x, t))) goto done;
    while (e.na > 0) {
        int64_t na = e.na;
#define STAGE(kout, tc, EXPR)                                              \
    do {                                                                   \
        for (int64_t a = 0; a < na; a++) {                                 \
            int64_t r = act[a];                                            \
            double hr = h[r];                                              \
            for (int64_t j = r * d; j < (r + 1) * d; j++) y[j] = x[j] + hr * (EXPR); \
            ts[r] = t[r] + (tc) * hr;                                      \
        }                                                                  \
        if ((st = dp_call(&e, kout, y, ts))) goto done;                    \
    } while (0)
        STAGE(k2, C2, A21 * k1[j]);
        STAGE(k3, C3, A31 * k1[j] + A32 * k2[j]);
        STAGE(k4, C4, A41 * k1[j] + A42 * k2[j] + A43 * k3[j]);
        STAGE(k5, C5, A51 * k1[j] + A52 * k2[j] + A53 * k3[j] + A54 * k4[j]);
        STAGE(k6, 1.0, A61 * k1[j] + A62 * k2[j] + A63 * k3[j] + A64 * k4[j] + A65 * k5[j]);
        STAGE(k7, 1.0, B1 * k1[j] + B3 * k3[j] + B4 * k4[j] + B5 * k5[j] + B6 * k6[j]);
#undef STAGE
        /* y now holds the 5th-order solution of every active row */
        int64_t keep = 0;
        for (int64_t a = 0; a < na; a++) {
            int64_t r = act[a];
            double hr = h[r], err2 = 0;
            int finite = 1;
            for (int64_t j = r * d; j < (r + 1) * d; j++) {
                double ej = hr * (E1 * k1[j] + E3 * k3[j] + E4 * k4[j] + E5 * k5[j] + E6 * k6[j] +
                                  E7 * k7[j]);
                double sc = c->atol + c->rtol * fmax(fabs(x[j]), fabs(y[j]));
                err2 += (ej / sc) * (ej / sc);
                if (!isfinite(y[j])) finite = 0;
            }
            double err = sqrt(err2 / (double)d);
            if (!finite || !isfinite(err)) {
                st = fmd_seterr(FMD_ERR_NONFINITE, "ode: dopri5 row %lld became non-finite at t = %g",
                                (long long)r, t[r]);
                goto done;
            }
            if (++trials[r] > c->max_steps) {
                st = fmd_seterr(FMD_ERR_INTERNAL, "ode: dopri5 row %lld needed more than %lld steps "
                                "(at t = %g, step %g); raise max_steps or the tolerances",
                                (long long)r, (long long)c->max_steps, t[r], h[r]);
                goto done;
            }
            double fac = err > 0 ? 0.9 * pow(err, -0.2) : 5.0;
            if (err <= 1.0) {
                acc++;
                memcpy(x + r * d, y + r * d, (size_t)d * sizeof(double));
                memcpy(k1 + r * d, k7 + r * d, (size_t)d * sizeof(double));
                t[r] = ts[r];
                if (fabs(t[r] - c->t_end) <= 1e-12 * fmax(1.0, span)) {
                    t[r] = c->t_end;
                    continue; /* row finished */
                }
                fac = fmin(5.0, fmax(0.2, fac));
            } else {
                rej++;
                fac = fmin(1.0, fmax(0.2, fac));
            }
            double hn = h[r] * fac;
            double left = c->t_end - t[r];
            if (fabs(hn) >= fabs(left)) hn = left;
            else if (fabs(hn) > 0.5 * fabs(left)) hn = 0.5 * left; /* avoid a tiny last step */
            if (fabs(hn) < 1e-14) {
                st = fmd_seterr(FMD_ERR_INTERNAL, "ode: dopri5 step size underflow on row %lld at "
                                "t = %g", (long long)r, t[r]);
                goto done;
            }
            h[r] = hn;
            act[keep++] = r;
        }
        e.na = keep;
    }
done:
    if (stats) {
        double s = 0;
        for (int64_t r = 0; r < b; r++) s += (double)row_nfe[r];
        stats->nfe = e.nfe;
        stats->nfe_mean = b ? s / (double)b : 0;
        stats->accepted = acc;
        stats->rejected = rej;
    }
    fmd_free(buf);
    fmd_free(ibuf);
    fmd_free(lg);
    return st;
}

fmd_status ode_solve(ode_field_fn f, void *ctx, double *x, const int32_t *labels, int64_t b,
                     int64_t d, const ode_config *cfg, ode_stats *stats)
{
    FMD_CHECK_ARG(f && cfg && (x || b == 0), "ode_solve: NULL argument");
    FMD_CHECK_ARG(b >= 0 && d >= 1, "ode_solve: bad shape (%lld, %lld)", (long long)b, (long long)d);
    fmd_status st = check_cfg(cfg);
    if (st) return st;
    if (stats) memset(stats, 0, sizeof *stats);
    if (b == 0) return FMD_OK;
    if (cfg->method == ODE_DOPRI5) return solve_dopri5(f, ctx, x, labels, b, d, cfg, stats);
    return solve_fixed(f, ctx, x, labels, b, d, cfg, stats);
}
