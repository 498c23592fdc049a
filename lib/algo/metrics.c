/* metrics.c - energy distance, map error and mode counts (docs/math.md section 11). */
#include <math.h>
#include <string.h>
#include "algo/metrics.h"
#include "util/util.h"

/* mean over all pairs of |a_i - b_j| */
static double mean_pair_dist(const float *a, int64_t n, const float *b, int64_t m, int64_t d)
{
    double acc = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : acc)
    for (int64_t i = 0; i < n; i++) {
        const float *ai = a + i * d;
        double row = 0.0;
        for (int64_t j = 0; j < m; j++) {
            const float *bj = b + j * d;
            float s = 0.0f;
            for (int64_t k = 0; k < d; k++) {
                float e = ai[k] - bj[k];
                s += e * e;
            }
            row += sqrt((double)s);
        }
        acc += row;
    }
    return acc / ((double)n * (double)m);
}

double metrics_energy_distance(const float *x, int64_t n, const float *y, int64_t m, int64_t d)
{
    if (n <= 0 || m <= 0) return NAN;
    return 2.0 * mean_pair_dist(x, n, y, m, d) - mean_pair_dist(x, n, x, n, d) -
           mean_pair_dist(y, m, y, m, d);
}

double metrics_map_error(const float *x, const float *phi, int64_t n, int64_t d)
{
    if (n <= 0) return NAN;
    double num = 0.0, den = 0.0;
    for (int64_t k = 0; k < d; k++) {
        double mean = 0.0;
        for (int64_t i = 0; i < n; i++) mean += phi[i * d + k];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            double e = (double)x[i * d + k] - phi[i * d + k];
            double c = phi[i * d + k] - mean;
            num += e * e;
            den += c * c;
        }
    }
    return den > 0 ? num / den : NAN;
}

fmd_status metrics_mode_counts(const gmm *g, const float *x, int64_t n, int64_t *count)
{
    double buf[1024];
    double *row = g->d <= 1024 ? buf : fmd_malloc((size_t)g->d * sizeof(double));
    if (!row) return fmd_seterr(FMD_ERR_OOM, "metrics_mode_counts: out of memory");
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < g->d; k++) row[k] = x[i * g->d + k];
        int c = gmm_nearest_mode(g, row, NULL);
        if (c >= 0 && c < g->k) count[c]++;
    }
    if (row != buf) fmd_free(row);
    return FMD_OK;
}
