/* test_gmm.c - the Gaussian-mixture oracle (docs/math.md section 13.1):
 *   - the closed-form velocity equals a Monte-Carlo (self-normalised
 *     importance sampling) estimate of E[eps - x0 | x_t], within 5 standard
 *     errors computed from the samples;
 *   - the score relation of the linear interpolant, score = -(x + (1-t) v)/t,
 *     and score = grad log p_t (finite differences of the log density);
 *   - log p_t integrates to 1; v(x, 1) = x - E[x0]; v(x, 0) = -x;
 *   - velocity finite (and bounded) at t in {0, 1e-6, 1 - 1e-6, 1}, far away;
 *   - class-conditional velocity = velocity of that class's sub-mixture;
 *   - exact samples: component frequencies, per-component moments,
 *     determinism per (seed, index);
 *   - presets and the text spec format. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "algo/gmm.h"
#include "testutil.h"

static double work[4096];

static void test_mc_velocity(void)
{
    gmm *g;
    CHECK_OK(gmm_preset("ring8", &g));
    if (!g) return;
    const int N = 400000, d = 2;
    double *x0 = malloc(sizeof(double) * N * d);
    gmm_sample(g, x0, NULL, NULL, N, 123, 0);
    const double ts[3] = {0.25, 0.5, 0.8};
    int worst_ok = 1;
    for (int it = 0; it < 3; it++) {
        double t = ts[it];
        for (int trial = 0; trial < 4; trial++) {
            /* a point of the noised marginal */
            double xs[2], e0 = tu_normal(), e1 = tu_normal();
            const double *src = x0 + 2 * (size_t)(tu_uniform() * N);
            xs[0] = (1 - t) * src[0] + t * e0;
            xs[1] = (1 - t) * src[1] + t * e1;
            double v[2];
            gmm_velocity_row(g, v, xs, t, -1, work);
            /* SNIS: weights N(x_t; (1-t) x0_i, t^2 I), f_i = eps_i - x0_i */
            double lwmax = -INFINITY;
            double *lw = malloc(sizeof(double) * N);
            for (int i = 0; i < N; i++) {
                double a = xs[0] - (1 - t) * x0[2 * i], b = xs[1] - (1 - t) * x0[2 * i + 1];
                lw[i] = -(a * a + b * b) / (2 * t * t);
                if (lw[i] > lwmax) lwmax = lw[i];
            }
            double sw = 0, sw2 = 0, m[2] = {0, 0};
            for (int i = 0; i < N; i++) {
                double w = exp(lw[i] - lwmax);
                lw[i] = w;
                sw += w;
                sw2 += w * w;
                for (int j = 0; j < 2; j++) {
                    double eps = (xs[j] - (1 - t) * x0[2 * i + j]) / t;
                    m[j] += w * (eps - x0[2 * i + j]);
                }
            }
            m[0] /= sw;
            m[1] /= sw;
            double var[2] = {0, 0};
            for (int i = 0; i < N; i++)
                for (int j = 0; j < 2; j++) {
                    double eps = (xs[j] - (1 - t) * x0[2 * i + j]) / t;
                    double f = eps - x0[2 * i + j] - m[j];
                    var[j] += lw[i] * lw[i] * f * f;
                }
            double ess = sw * sw / sw2;
            for (int j = 0; j < 2; j++) {
                double se = sqrt(var[j]) / sw;
                CHECK_MSG(fabs(v[j] - m[j]) < 5 * se + 1e-9,
                          "t=%g x=(%g,%g) coord %d: exact %g vs MC %g (se %g, ess %.0f)", t, xs[0],
                          xs[1], j, v[j], m[j], se, ess);
                if (!(fabs(v[j] - m[j]) < 5 * se + 1e-9)) worst_ok = 0;
            }
            CHECK(ess > 100);
            free(lw);
        }
    }
    CHECK(worst_ok);
    free(x0);
    gmm_destroy(g);
}

static void test_score_and_density(void)
{
    gmm *g;
    CHECK_OK(gmm_preset("grid25", &g));
    if (!g) return;
    double maxrel = 0, maxfd = 0;
    for (int trial = 0; trial < 200; trial++) {
        double t = 0.02 + 0.96 * tu_uniform();
        double x[2] = {3 * (tu_uniform() - 0.5) * 2, 3 * (tu_uniform() - 0.5) * 2};
        double v[2], s[2];
        gmm_velocity_row(g, v, x, t, -1, work);
        gmm_score_row(g, s, x, t, -1, work);
        for (int j = 0; j < 2; j++) {
            double rel = -(x[j] + (1 - t) * v[j]) / t;
            double e = fabs(rel - s[j]) / (1 + fabs(s[j]));
            if (e > maxrel) maxrel = e;
            double h = 1e-5, xp[2] = {x[0], x[1]}, xm[2] = {x[0], x[1]};
            xp[j] += h;
            xm[j] -= h;
            double fd = (gmm_logpdf_row(g, xp, t, -1, work) - gmm_logpdf_row(g, xm, t, -1, work)) / (2 * h);
            e = fabs(fd - s[j]) / (1 + fabs(s[j]));
            if (e > maxfd) maxfd = e;
        }
    }
    CHECK_MSG(maxrel < 1e-10, "score relation max rel err %g", maxrel);
    CHECK_MSG(maxfd < 1e-5, "score vs finite-difference grad log p max rel err %g", maxfd);
    /* the density of x_t integrates to 1 (t = 0.3: sigma >= 0.3, grid 0.02) */
    double sum = 0, h = 0.02;
    for (double a = -6; a < 6; a += h)
        for (double b = -6; b < 6; b += h) {
            double x[2] = {a + h / 2, b + h / 2};
            sum += exp(gmm_logpdf_row(g, x, 0.3, -1, work)) * h * h;
        }
    CHECK_MSG(fabs(sum - 1) < 1e-3, "integral of p_t = %g", sum);
    /* v(x, 1) = x - E[x0]; v(x, 0) = -x */
    double mean[2] = {0, 0};
    for (int k = 0; k < g->k; k++)
        for (int j = 0; j < 2; j++) mean[j] += g->w[k] * g->mu[2 * k + j];
    double x[2] = {0.3, -1.7}, v[2];
    gmm_velocity_row(g, v, x, 1.0, -1, work);
    CHECK(fabs(v[0] - (x[0] - mean[0])) < 1e-12 && fabs(v[1] - (x[1] - mean[1])) < 1e-12);
    gmm_velocity_row(g, v, x, 0.0, -1, work);
    CHECK(fabs(v[0] + x[0]) < 1e-12 && fabs(v[1] + x[1]) < 1e-12);
    gmm_destroy(g);
}

static void test_finite_ends(void)
{
    const char *names[3] = {"ring8", "grid25", "classes4-d32"};
    for (int p = 0; p < 3; p++) {
        gmm *g;
        CHECK_OK(gmm_preset(names[p], &g));
        if (!g) continue;
        const int d = g->d;
        double *x = malloc(sizeof(double) * d), *v = malloc(sizeof(double) * d);
        const double ts[6] = {0.0, 1e-6, 0.5, 1 - 1e-6, 1.0, 1e-12};
        int bad = 0;
        for (int trial = 0; trial < 60; trial++) {
            double scale = trial < 20 ? 1 : trial < 40 ? 30 : 1000;
            for (int j = 0; j < d; j++) x[j] = scale * tu_normal();
            if (trial % 10 == 0) gmm_sample(g, x, NULL, NULL, 1, 9, (uint64_t)trial);
            for (int it = 0; it < 6; it++)
                for (int lab = -1; lab <= g->num_classes; lab++) {
                    gmm_velocity_row(g, v, x, ts[it], lab, work);
                    for (int j = 0; j < d; j++)
                        if (!isfinite(v[j]) || fabs(v[j]) > 1e4 * (1 + fabs(x[j]))) bad++;
                    if (!isfinite(gmm_logpdf_row(g, x, ts[it], lab, work))) bad++;
                }
        }
        CHECK_MSG(bad == 0, "%s: %d non-finite or huge values", names[p], bad);
        free(x);
        free(v);
        gmm_destroy(g);
    }
}

static void test_classes(void)
{
    gmm *g;
    CHECK_OK(gmm_preset("classes4-d32", &g));
    if (!g) return;
    CHECK(g->d == 32 && g->k == 16 && g->num_classes == 4);
    const int d = 32;
    /* the sub-mixture of class 2 */
    double w[4], s[4], mu[4 * 32];
    int m = 0;
    for (int k = 0; k < g->k; k++)
        if (g->cls[k] == 2) {
            w[m] = g->w[k];
            s[m] = g->s[k];
            memcpy(mu + m * d, g->mu + k * d, sizeof(double) * d);
            m++;
        }
    CHECK(m == 4);
    gmm *sub;
    CHECK_OK(gmm_create(d, 4, w, mu, s, NULL, 0, &sub));
    double x[32], v1[32], v2[32], vn[32], vall[32];
    double maxe = 0;
    for (int trial = 0; trial < 20; trial++) {
        for (int j = 0; j < d; j++) x[j] = 2 * tu_normal();
        double t = tu_uniform();
        gmm_velocity_row(g, v1, x, t, 2, work);
        gmm_velocity_row(sub, v2, x, t, -1, work);
        gmm_velocity_row(g, vn, x, t, 4, work);    /* null class */
        gmm_velocity_row(g, vall, x, t, -1, work);
        for (int j = 0; j < d; j++) {
            maxe = fmax(maxe, fabs(v1[j] - v2[j]));
            CHECK(vn[j] == vall[j]);
        }
        /* class-conditional log density is normalised by the class weight */
        double l1 = gmm_logpdf_row(g, x, t, 2, work), l2 = gmm_logpdf_row(sub, x, t, -1, work);
        CHECK(fabs(l1 - l2) < 1e-9 * (1 + fabs(l2)));
    }
    CHECK_MSG(maxe < 1e-12, "class velocity vs sub-mixture: %g", maxe);
    /* class-conditional sampling only draws that class */
    int32_t lab[200], comp[200];
    double *xs = malloc(sizeof(double) * 200 * d);
    for (int i = 0; i < 200; i++) lab[i] = i % 5; /* 4 = null */
    gmm_sample(g, xs, comp, lab, 200, 5, 0);
    int wrong = 0, null_classes[4] = {0};
    for (int i = 0; i < 200; i++) {
        if (lab[i] < 4 && g->cls[comp[i]] != lab[i]) wrong++;
        if (lab[i] == 4) null_classes[g->cls[comp[i]]]++;
    }
    CHECK(wrong == 0);
    CHECK(null_classes[0] > 0 && null_classes[3] > 0);
    free(xs);
    gmm_destroy(sub);
    gmm_destroy(g);
}

static void test_sampling(void)
{
    gmm *g;
    CHECK_OK(gmm_preset("ring8", &g));
    if (!g) return;
    const int N = 200000;
    double *x = malloc(sizeof(double) * N * 2);
    int32_t *comp = malloc(sizeof(int32_t) * N);
    gmm_sample(g, x, comp, NULL, N, 42, 0);
    int cnt[8] = {0};
    double m[8][2] = {{0}}, ss[8] = {0};
    for (int i = 0; i < N; i++) {
        cnt[comp[i]]++;
        for (int j = 0; j < 2; j++) m[comp[i]][j] += x[2 * i + j];
    }
    for (int k = 0; k < 8; k++) {
        double p = g->w[k], sd = sqrt(N * p * (1 - p));
        CHECK_MSG(fabs(cnt[k] - N * p) < 5 * sd, "component %d: %d draws, expected %.0f", k, cnt[k],
                  N * p);
        for (int j = 0; j < 2; j++) m[k][j] /= cnt[k];
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < 2; j++) {
            double e = x[2 * i + j] - m[comp[i]][j];
            ss[comp[i]] += e * e;
        }
    for (int k = 0; k < 8; k++) {
        double sd = sqrt(ss[k] / (2.0 * cnt[k]));
        CHECK_MSG(fabs(sd / g->s[k] - 1) < 0.03, "component %d: std %g vs %g", k, sd, g->s[k]);
        CHECK(fabs(m[k][0] - g->mu[2 * k]) < 5 * g->s[k] / sqrt(cnt[k]) + 1e-12);
        /* every sample of component k is nearest to mode k (modes >= 5 std apart) */
    }
    int mis = 0;
    for (int i = 0; i < 2000; i++) mis += gmm_nearest_mode(g, x + 2 * i, NULL) != comp[i];
    CHECK_MSG(mis < 10, "%d of 2000 samples nearest to another mode", mis);
    /* row i depends only on (seed, first + i) */
    double y[20];
    int32_t c2[10];
    gmm_sample(g, y, c2, NULL, 10, 42, 1000);
    CHECK(memcmp(y, x + 2000, sizeof y) == 0 && memcmp(c2, comp + 1000, sizeof c2) == 0);
    /* unequal weights */
    double wmin = 1, wmax = 0;
    for (int k = 0; k < 8; k++) {
        wmin = fmin(wmin, g->w[k]);
        wmax = fmax(wmax, g->w[k]);
    }
    CHECK(wmax / wmin > 2);
    free(x);
    free(comp);
    gmm_destroy(g);
}

static void test_spec_and_args(void)
{
    const char *spec =
        "# two classes in 2-D\n"
        "dim 2\n"
        "classes 2\n"
        "component weight=1 std=0.1 mean=1,0 class=0   # first\n"
        "\n"
        "component weight=3 std=0.2 mean=-1,0.5 class=1\n";
    gmm *g;
    CHECK_OK(gmm_parse_spec(spec, "spec", &g));
    if (g) {
        CHECK(g->d == 2 && g->k == 2 && g->num_classes == 2);
        CHECK(fabs(g->w[1] - 0.75) < 1e-15 && g->s[1] == 0.2 && g->mu[3] == 0.5 && g->cls[1] == 1);
        gmm_destroy(g);
    }
    g = NULL;
    CHECK_STATUS(gmm_parse_spec("dim 2\ncomponent weight=1 std=0.1 mean=1\n", "s", &g), FMD_ERR_FORMAT);
    CHECK(strstr(fmd_last_error(), "line 2") != NULL);
    CHECK_STATUS(gmm_parse_spec("dim 2\ncomponent weight=1 std=-1 mean=1,2\n", "s", &g), FMD_ERR_FORMAT);
    CHECK_STATUS(gmm_parse_spec("dim 2\nbogus\n", "s", &g), FMD_ERR_FORMAT);
    CHECK_STATUS(gmm_parse_spec("component weight=1 std=1 mean=1\n", "s", &g), FMD_ERR_FORMAT);
    CHECK_STATUS(gmm_parse_spec("dim 1\nclasses 2\ncomponent weight=1 std=1 mean=1 class=0\n", "s", &g),
                 FMD_ERR_FORMAT); /* class 1 owns nothing */
    CHECK_STATUS(gmm_parse_spec("# nothing\n", "s", &g), FMD_ERR_FORMAT);
    CHECK_STATUS(gmm_load_spec("/nonexistent/spec.txt", &g), FMD_ERR_IO);
    CHECK_STATUS(gmm_preset("ring9", &g), FMD_ERR_INVALID_ARG);
    CHECK(strstr(fmd_last_error(), "ring8") != NULL);
    double w1[1] = {1}, s0[1] = {0}, mu[2] = {0, 0};
    CHECK_STATUS(gmm_create(2, 1, w1, mu, s0, NULL, 0, &g), FMD_ERR_INVALID_ARG);
    double wn[1] = {NAN}, s1[1] = {1};
    CHECK_STATUS(gmm_create(2, 1, wn, mu, s1, NULL, 0, &g), FMD_ERR_INVALID_ARG);
    gmm_destroy(NULL);
}

int main(void)
{
    tu_seed(3);
    test_mc_velocity();
    test_score_and_density();
    test_finite_ends();
    test_classes();
    test_sampling();
    test_spec_and_args();
    return tu_finish("test_gmm");
}
