/* gmm.h - the Gaussian-mixture oracle (docs/math.md section 13.1), in double.
 *
 * Data x0 ~ sum_k pi_k N(mu_k, s_k^2 I) in d dimensions, optionally with
 * classes (component k belongs to class cls[k]; the class-conditional
 * distribution is the mixture of that class's components with their weights
 * renormalised).  Under x_t = (1 - t) x0 + t eps, every quantity the library
 * needs is closed-form:
 *
 *   sigma_k(t)^2 = (1 - t)^2 s_k^2 + t^2
 *   log gamma_k  = log pi_k - (d/2) log sigma_k^2 - |x - (1-t) mu_k|^2 / (2 sigma_k^2) + const
 *   v(x, t)      = sum_k gamma_k [ (t - (1-t) s_k^2) / sigma_k^2 (x - (1-t) mu_k) - mu_k ]
 *   score(x, t)  = -sum_k gamma_k (x - (1-t) mu_k) / sigma_k^2  =  -(x + (1-t) v) / t
 *
 * Responsibilities are normalised in log space (log-sum-exp), so v stays
 * finite for t in [0, 1] (sigma_k^2 >= min(s_k^2, 1) / (1 + s_k^2) > 0).
 *
 * Labels: label in [0, num_classes) conditions on that class; label ==
 * num_classes (the null class) or a mixture without classes uses all
 * components.
 *
 * Presets (documented in docs/teachers.md and below in gmm.c):
 *   "ring8"        2-D, 8 modes on a circle of radius 2, unequal weights and widths
 *   "grid25"       2-D, 5x5 grid with spacing 1 (coordinates -2..2), unequal weights
 *   "classes4-d32" 32-D, 4 classes x 4 modes, for classifier-free guidance
 */
#ifndef FMD_ALGO_GMM_H
#define FMD_ALGO_GMM_H

#include <stdint.h>
#include "fmd.h"

typedef struct gmm {
    int d;             /* dimension                                         */
    int k;             /* components                                        */
    int num_classes;   /* 0: unconditional                                  */
    double *w;         /* (K) weights, normalised to sum 1                  */
    double *mu;        /* (K, d) means                                      */
    double *s;         /* (K) standard deviations, > 0                      */
    int32_t *cls;      /* (K) class of each component (NULL when no classes) */
    double *class_w;   /* (C) total weight of each class (NULL when no classes) */
} gmm;

#define GMM_MIN_STD 1e-6
#define GMM_MAX_STD 1e6

/* Copy the description into a new mixture.  weights are normalised (must be
 * finite, >= 0, sum > 0); stds in [GMM_MIN_STD, GMM_MAX_STD) (a smaller
 * std underflows std^2 in the velocity); classes (may be NULL when num_classes ==
 * 0) in [0, num_classes) and every class must own a component of positive
 * weight.  Errors: FMD_ERR_INVALID_ARG naming the bad entry, FMD_ERR_OOM. */
fmd_status gmm_create(int d, int k, const double *weights, const double *means,
                      const double *stds, const int32_t *classes, int num_classes, gmm **out);
/* Built-in presets by name (list above).  Errors: FMD_ERR_INVALID_ARG for an
 * unknown name (message lists the names). */
fmd_status gmm_preset(const char *name, gmm **out);
/* Comma-separated preset names (static). */
const char *gmm_preset_names(void);
/* Parse the text spec format (docs/teachers.md):
 *   # comment
 *   dim 2
 *   classes 2                      (optional; default 0)
 *   component weight=0.3 std=0.1 mean=1,0 [class=1]
 * Errors: FMD_ERR_FORMAT naming the line, FMD_ERR_IO, FMD_ERR_OOM. */
fmd_status gmm_parse_spec(const char *text, const char *label, gmm **out);
fmd_status gmm_load_spec(const char *path, gmm **out);
void gmm_destroy(gmm *g);

/* Doubles of scratch one row needs (for gmm_velocity_row). */
int64_t gmm_work_size(const gmm *g);
/* Velocity of one row: v(d) at x(d), time t, label (see above; out-of-range
 * labels are the caller's responsibility to reject).  work: gmm_work_size. */
void gmm_velocity_row(const gmm *g, double *v, const double *x, double t, int label, double *work);
/* Same plus the posterior mean E[x0 | x_t] into x0hat(d) (either output may be NULL). */
void gmm_posterior_row(const gmm *g, double *v, double *x0hat, const double *x, double t,
                       int label, double *work);
/* log p_t(x | label) (the full normalised density of x_t). */
double gmm_logpdf_row(const gmm *g, const double *x, double t, int label, double *work);
/* Score grad_x log p_t(x | label) into score(d). */
void gmm_score_row(const gmm *g, double *score, const double *x, double t, int label, double *work);

/* Threads of the velocity loops (sizes their work: gmm_work_size(g) doubles each). */
int gmm_max_threads(void);

/* Exact data samples: row i of the output is a pure function of (seed,
 * first + i) (Philox).  cond_labels (b) or NULL: when given and a class,
 * sample that class; the null class samples everything.  x (b, d) out;
 * comp (b) out, may be NULL: the component each row came from. */
void gmm_sample(const gmm *g, double *x, int32_t *comp, const int32_t *cond_labels, int64_t b,
                uint64_t seed, uint64_t first);

/* The component whose (data-space) density is largest at x: used to assign
 * samples to modes in tests and metrics.  Also returns the Mahalanobis
 * distance |x - mu| / s to it in *dist (may be NULL). */
int gmm_nearest_mode(const gmm *g, const double *x, double *dist);

#endif
