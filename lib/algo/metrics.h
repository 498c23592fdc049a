/* metrics.h - sample-quality metrics against a teacher (docs/math.md section 11):
 * energy distance between sample sets, map error, mode assignment. */
#ifndef FMD_ALGO_METRICS_H
#define FMD_ALGO_METRICS_H

#include <stdint.h>
#include "algo/gmm.h"

/* Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between x (n, d) and
 * y (m, d) (V-statistics over all pairs, double accumulation; OpenMP). */
double metrics_energy_distance(const float *x, int64_t n, const float *y, int64_t m, int64_t d);

/* Map error  sum |x - phi|^2 / sum |phi - mean(phi)|^2  over n rows of d. */
double metrics_map_error(const float *x, const float *phi, int64_t n, int64_t d);

/* count[k] += number of rows of x (n, d) whose nearest mode (gmm_nearest_mode)
 * is component k (count has g->k entries, zeroed by the caller).  Returns
 * FMD_ERR_OOM (message set) when its row buffer cannot be allocated. */
fmd_status metrics_mode_counts(const gmm *g, const float *x, int64_t n, int64_t *count);

#endif
