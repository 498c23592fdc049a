/* test_ode.c - the ODE solvers on exact mixture teachers:
 *   - convergence orders: log-log slope of the global error against the step
 *     size is 1 (Euler), 2 (Heun, midpoint), 4 (RK4) within +-0.3, on
 *     uniform and shifted grids;
 *   - Dormand-Prince meets its tolerance and spends more NFE for tighter ones;
 *   - NFE counts of the fixed-step methods;
 *   - teacher samples (Dormand-Prince, 1e-6) match the mixture's own samples:
 *     energy distance at the finite-sample floor, every mode present with
 *     its mass within +-20 %;
 *   - a guided (CFG) class-conditional teacher's samples differ measurably
 *     from the class data, while unguided ones match it;
 *   - a sample depends only on (seed, index), not on the batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "algo/gmm.h"
#include "algo/ode.h"
#include "api/teacher_internal.h"
#include "testutil.h"

/* global error of a fixed-step method against a tight dopri5 reference */
static double fixed_error(fmd_teacher *T, const double *z, const double *ref, int64_t b,
                          int m, int steps, double shift)
{
    const int64_t d = fmd_teacher_dim(T);
    double *x = malloc(sizeof(double) * b * d);
    memcpy(x, z, sizeof(double) * b * d);
    ode_config c;
    ode_config_default(&c);
    c.method = m;
    c.steps = steps;
    c.shift = shift;
    ode_stats s;
    fmd_status st = teacher_solve_f64(T, x, NULL, b, &c, &s);
    CHECK_OK(st);
    int per = m == ODE_EULER ? 1 : m == ODE_RK4 ? 4 : 2;
    CHECK(s.nfe == (int64_t)per * steps);
    double e = 0;
    for (int64_t i = 0; i < b * d; i++) e += (x[i] - ref[i]) * (x[i] - ref[i]);
    free(x);
    return sqrt(e / (double)b);
}

static double slope(const double *h, const double *e, int n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        mx += log(h[i]) / n;
        my += log(e[i]) / n;
    }
    for (int i = 0; i < n; i++) {
        sxy += (log(h[i]) - mx) * (log(e[i]) - my);
        sxx += (log(h[i]) - mx) * (log(h[i]) - mx);
    }
    return sxy / sxx;
}

static void test_orders(void)
{
    /* a smooth 2-D mixture (widths 0.35-0.5) so that the asymptotic regime
     * starts at moderate step counts */
    double w[4] = {1, 2, 1.5, 0.7}, s[4] = {0.35, 0.5, 0.4, 0.45};
    double mu[8] = {1.5, 0, -1, 1, 0, -1.5, -1.2, -1};
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_mixture(2, 4, w, mu, s, NULL, 0, &T));
    if (!T) return;
    const int64_t b = 64, d = 2;
    double *z = malloc(sizeof(double) * b * d), *ref = malloc(sizeof(double) * b * d);
    float *zf = malloc(sizeof(float) * b * d);
    fmd_prior_noise(zf, b, d, 7, 0);
    for (int64_t i = 0; i < b * d; i++) ref[i] = z[i] = zf[i];
    ode_config c;
    ode_config_default(&c);
    c.rtol = c.atol = 1e-12;
    ode_stats st;
    CHECK_OK(teacher_solve_f64(T, ref, NULL, b, &c, &st));
    const struct { int m; double order; int s0; } M[4] = {
        {ODE_EULER, 1, 32}, {ODE_HEUN, 2, 16}, {ODE_MIDPOINT, 2, 16}, {ODE_RK4, 4, 16}};
    for (int shifted = 0; shifted < 2; shifted++)
        for (int k = 0; k < 4; k++) {
            double h[4], e[4];
            for (int i = 0; i < 4; i++) {
                int steps = M[k].s0 << i;
                h[i] = 1.0 / steps;
                e[i] = fixed_error(T, z, ref, b, M[k].m, steps, shifted ? 2.0 : 1.0);
            }
            double sl = slope(h, e, 4);
            CHECK_MSG(fabs(sl - M[k].order) < 0.3, "%s (shift %d): slope %.3f, expected %.0f "
                      "(errors %.3g %.3g %.3g %.3g)", ode_method_name(M[k].m), shifted ? 2 : 1, sl,
                      M[k].order, e[0], e[1], e[2], e[3]);
            printf("order %-8s shift %d: slope %.3f  errors %.3g .. %.3g\n", ode_method_name(M[k].m),
                   shifted ? 2 : 1, sl, e[0], e[3]);
        }
    /* dopri5 meets its tolerance; tighter tolerance, more NFE, smaller error */
    double prev_err = 1e9;
    int64_t prev_nfe = 0;
    const double tols[3] = {1e-4, 1e-6, 1e-8};
    for (int i = 0; i < 3; i++) {
        double *x = malloc(sizeof(double) * b * d);
        memcpy(x, z, sizeof(double) * b * d);
        c.rtol = c.atol = tols[i];
        CHECK_OK(teacher_solve_f64(T, x, NULL, b, &c, &st));
        /* global error in units of the per-step tolerance atol + rtol |x| */
        double emax = 0, eunit = 0;
        for (int64_t j = 0; j < b * d; j++) {
            emax = fmax(emax, fabs(x[j] - ref[j]));
            eunit = fmax(eunit, fabs(x[j] - ref[j]) / (tols[i] + tols[i] * fabs(ref[j])));
        }
        printf("dopri5 tol %g: max error %.3g (%.2f tolerance units), nfe %lld (mean %.1f), "
               "rejected %lld\n", tols[i], emax, eunit, (long long)st.nfe, st.nfe_mean,
               (long long)st.rejected);
        /* the controller bounds the local error per step; the global error
         * over the ~10-40 steps of a path stays within a small multiple */
        CHECK_MSG(eunit < 20, "dopri5 tol %g: max error %g = %g tolerance units", tols[i], emax, eunit);
        CHECK(emax < prev_err && st.nfe > prev_nfe);
        prev_err = emax;
        prev_nfe = st.nfe;
        free(x);
    }
    /* grid: endpoints, monotone, shift > 1 packs steps near t = 1 */
    CHECK(ode_grid_time(0, 10, 1, 0, 3) == 1 && ode_grid_time(10, 10, 1, 0, 3) == 0);
    for (int i = 0; i < 10; i++) CHECK(ode_grid_time(i + 1, 10, 1, 0, 3) < ode_grid_time(i, 10, 1, 0, 3));
    CHECK(1 - ode_grid_time(1, 10, 1, 0, 3) < 1 - ode_grid_time(1, 10, 1, 0, 1));
    free(z);
    free(ref);
    free(zf);
    fmd_teacher_destroy(T);
}

/* energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (U-statistics for the within terms) */
static double energy_distance(const float *x, int64_t n, const float *y, int64_t m, int64_t d)
{
    double xy = 0, xx = 0, yy = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            double s = 0;
            for (int64_t k = 0; k < d; k++) s += (x[i * d + k] - y[j * d + k]) * (x[i * d + k] - y[j * d + k]);
            xy += sqrt(s);
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < d; k++) s += (x[i * d + k] - x[j * d + k]) * (x[i * d + k] - x[j * d + k]);
            xx += sqrt(s);
        }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = i + 1; j < m; j++) {
            double s = 0;
            for (int64_t k = 0; k < d; k++) s += (y[i * d + k] - y[j * d + k]) * (y[i * d + k] - y[j * d + k]);
            yy += sqrt(s);
        }
    return 2 * xy / ((double)n * m) - 2 * xx / ((double)n * (n - 1)) - 2 * yy / ((double)m * (m - 1));
}

static void test_samples_match_data(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    if (!T) return;
    const gmm *g = teacher_mixture(T);
    const int64_t N = 3000, d = 2;
    float *xs = malloc(sizeof(float) * N * d), *xd = malloc(sizeof(float) * N * d),
          *xd2 = malloc(sizeof(float) * N * d);
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_str(o, "solver", "dopri5"));
    CHECK_OK(fmd_options_set_f64(o, "rtol", 1e-6));
    CHECK_OK(fmd_options_set_f64(o, "atol", 1e-6));
    int64_t nfe = 0;
    CHECK_OK(fmd_teacher_sample(T, xs, NULL, N, 11, 0, o, &nfe));
    CHECK(nfe > 10);
    CHECK_OK(fmd_teacher_sample_data(T, N, 12, 0, NULL, xd, NULL));
    CHECK_OK(fmd_teacher_sample_data(T, N, 13, 0, NULL, xd2, NULL));
    double ed = energy_distance(xs, N, xd, N, d);
    double floor1 = energy_distance(xd2, N, xd, N, d);
    float *xd3 = malloc(sizeof(float) * N * d);
    CHECK_OK(fmd_teacher_sample_data(T, N, 14, 0, NULL, xd3, NULL));
    double floor2 = energy_distance(xd2, N, xd3, N, d);
    double fl = fmax(fabs(floor1), fabs(floor2));
    printf("ring8 dopri5(1e-6) samples: nfe %lld, energy distance to data %.2e, floor %.2e %.2e\n",
           (long long)nfe, ed, floor1, floor2);
    /* the U-statistic's standard deviation at N=3000 is ~1e-3 here; a mismatch
     * such as a 10 % wrong mode mass gives ~1e-2 */
    CHECK_MSG(ed < 3 * fl + 1e-3, "energy distance %g vs floor %g", ed, fl);
    /* every mode, mass within +-20 % */
    int cnt[8] = {0};
    for (int64_t i = 0; i < N; i++) {
        double x[2] = {xs[2 * i], xs[2 * i + 1]}, dist;
        int k = gmm_nearest_mode(g, x, &dist);
        cnt[k]++;
    }
    for (int k = 0; k < 8; k++)
        CHECK_MSG(fabs(cnt[k] / (double)N - g->w[k]) < 0.2 * g->w[k], "mode %d: mass %.4f vs %.4f", k,
                  cnt[k] / (double)N, g->w[k]);
    /* a row depends only on (seed, index): rows 100..109 from a batch of 10 */
    float part[20];
    CHECK_OK(fmd_teacher_sample(T, part, NULL, 10, 11, 100, o, NULL));
    CHECK(memcmp(part, xs + 200, sizeof part) == 0);
    /* fixed-step solvers through the public API */
    fmd_options *o2;
    CHECK_OK(fmd_options_create(&o2));
    CHECK_OK(fmd_options_set_str(o2, "solver", "heun"));
    CHECK_OK(fmd_options_set_i64(o2, "steps", 20));
    CHECK_OK(fmd_teacher_sample(T, part, NULL, 10, 11, 100, o2, &nfe));
    CHECK(nfe == 40);
    double diff = 0;
    for (int i = 0; i < 20; i++) diff = fmax(diff, fabs(part[i] - xs[200 + i]));
    CHECK(diff > 1e-6 && diff < 0.5); /* close to the accurate solution, not equal */
    CHECK_OK(fmd_options_set_str(o2, "solver", "rk5"));
    CHECK_STATUS(fmd_teacher_sample(T, part, NULL, 10, 11, 100, o2, &nfe), FMD_ERR_INVALID_ARG);
    CHECK_OK(fmd_options_set_str(o2, "solver", "rk4"));
    CHECK_OK(fmd_options_set_i64(o2, "stepz", 3));
    CHECK_STATUS(fmd_teacher_sample(T, part, NULL, 10, 11, 100, o2, &nfe), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "stepz") != NULL);
    fmd_options_destroy(o2);
    fmd_options_destroy(o);
    free(xs);
    free(xd);
    free(xd2);
    free(xd3);
    fmd_teacher_destroy(T);
}

static void test_cfg_mismatch(void)
{
    fmd_teacher *T;
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &T));
    if (!T) return;
    const int64_t N = 1200, d = 32;
    float *xg = malloc(sizeof(float) * N * d), *xu = malloc(sizeof(float) * N * d),
          *xd = malloc(sizeof(float) * N * d), *xd2 = malloc(sizeof(float) * N * d);
    int32_t *lab = malloc(sizeof(int32_t) * N);
    for (int64_t i = 0; i < N; i++) lab[i] = (int32_t)(i % 4);
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_f64(o, "rtol", 1e-5));
    CHECK_OK(fmd_options_set_f64(o, "atol", 1e-5));
    CHECK_OK(fmd_teacher_sample(T, xu, lab, N, 21, 0, o, NULL));
    CHECK_OK(fmd_teacher_set_guidance(T, 4.0, 0.0, 1.0));
    CHECK_OK(fmd_teacher_sample(T, xg, lab, N, 21, 0, o, NULL));
    CHECK_OK(fmd_teacher_sample_data(T, N, 22, 0, lab, xd, NULL));
    CHECK_OK(fmd_teacher_sample_data(T, N, 23, 0, lab, xd2, NULL));
    /* per class energy distances */
    double ed_g = 0, ed_u = 0, ed_f = 0;
    float *a = malloc(sizeof(float) * N * d), *bq = malloc(sizeof(float) * N * d),
          *c = malloc(sizeof(float) * N * d), *e = malloc(sizeof(float) * N * d);
    for (int cl = 0; cl < 4; cl++) {
        int64_t n = 0;
        for (int64_t i = 0; i < N; i++)
            if (lab[i] == cl) {
                memcpy(a + n * d, xg + i * d, sizeof(float) * d);
                memcpy(bq + n * d, xu + i * d, sizeof(float) * d);
                memcpy(c + n * d, xd + i * d, sizeof(float) * d);
                memcpy(e + n * d, xd2 + i * d, sizeof(float) * d);
                n++;
            }
        ed_g += energy_distance(a, n, c, n, d) / 4;
        ed_u += energy_distance(bq, n, c, n, d) / 4;
        ed_f += energy_distance(e, n, c, n, d) / 4;
    }
    printf("classes4-d32: energy distance to class data: guided(w=4) %.3g, unguided %.3g, floor %.3g\n",
           ed_g, ed_u, ed_f);
    double fl = fmax(fabs(ed_f), 0.005);
    CHECK_MSG(ed_g > 0.05 && ed_g > 8 * fl, "guided samples too close to data: %g (floor %g)", ed_g, ed_f);
    CHECK_MSG(ed_u < 3 * fl, "unguided samples far from data: %g (floor %g)", ed_u, ed_f);
    /* guidance only inside the interval: an empty interval at t > 0.999 acts like w = 1 */
    CHECK_OK(fmd_teacher_set_guidance(T, 4.0, 0.9995, 1.0));
    float *xi = malloc(sizeof(float) * 8 * d);
    CHECK_OK(fmd_teacher_sample(T, xi, lab, 8, 21, 0, o, NULL));
    double dmax = 0;
    for (int64_t i = 0; i < 8 * d; i++) dmax = fmax(dmax, fabs(xi[i] - xu[i]));
    CHECK_MSG(dmax < 0.05, "interval [0.9995, 1]: max change %g", dmax);
    free(xi);
    fmd_options_destroy(o);
    free(a); free(bq); free(c); free(e);
    free(xg); free(xu); free(xd); free(xd2); free(lab);
    fmd_teacher_destroy(T);
}

int main(void)
{
    test_orders();
    test_samples_match_data();
    test_cfg_mismatch();
    return tu_finish("test_ode");
}
