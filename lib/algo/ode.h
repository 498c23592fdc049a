/* ode.h - ODE solvers for the sampling ODE dx/dt = v(x, t, c), integrated
 * from t_start (default 1, noise) down to t_end (default 0, data).
 *
 * The state lives on the host in double precision; the velocity field is a
 * callback over a batch with per-row times (a teacher: lib/api/teacher.c
 * wraps teacher velocities as an ode_field_fn).  Fixed-step methods (Euler,
 * Heun, midpoint, RK4) use a uniform or shifted time grid; Dormand-Prince
 * 5(4) adapts one step size per row (rows are independent: a sample's path
 * does not depend on the other rows of the batch), with FSAL.
 *
 * Shifted grid (as in SD3 / flow-matching samplers): with u_i = 1 - i/N
 * mapped to [t_end, t_start], t_i = shift*u / (1 + (shift - 1)*u), so
 * shift > 1 spends more steps near t = 1 (noise).  shift = 1 is uniform.
 */
#ifndef FMD_ALGO_ODE_H
#define FMD_ALGO_ODE_H

#include <stdint.h>
#include "fmd.h"

/* Philox stream of the prior noise used by fmd_teacher_sample (and by the
 * sampler, so that teacher and student start from the same z):
 * z[i][j] = fmd_philox_normal_at(seed, FMD_STREAM_PRIOR, (first + i) * dim + j). */
#define FMD_STREAM_PRIOR 0x7072696f72ull /* "prior" */

/* v(b, d) = field at x(b, d), times t(b), labels(b) (may be NULL). */
typedef fmd_status (*ode_field_fn)(void *ctx, double *v, const double *x, const double *t,
                                   const int32_t *labels, int64_t b);

typedef enum { ODE_EULER = 0, ODE_HEUN, ODE_MIDPOINT, ODE_RK4, ODE_DOPRI5 } ode_method;

typedef struct ode_config {
    int method;          /* ode_method; default ODE_DOPRI5                   */
    int steps;           /* fixed-step methods: number of steps (default 32) */
    double shift;        /* time-grid shift, > 0 (default 1 = uniform)      */
    double rtol, atol;   /* dopri5 tolerances (default 1e-5, 1e-5)           */
    double t_start;      /* default 1                                        */
    double t_end;        /* default 0                                        */
    double h0;           /* dopri5 first |step| (default 0.02)               */
    int64_t max_steps;   /* dopri5 step attempts per row (default 100000)    */
} ode_config;

typedef struct ode_stats {
    int64_t nfe;          /* batched field evaluations (max over rows)        */
    double nfe_mean;      /* field evaluations per row, averaged              */
    int64_t accepted;     /* dopri5: accepted steps summed over rows          */
    int64_t rejected;     /* dopri5: rejected steps summed over rows          */
} ode_stats;

/* The option-table entries (util/optable.h) of the solver keys a sampler
 * offers too, for a config that holds an ode_config at path P (e.g. `ode.`;
 * empty in the solver's own table): one definition for both tables. */
#define ODE_OPT_ENTRIES(P)                                                                      \
    OPT_CHOICE("solver", P method, "euler|heun|midpoint|rk4|dopri5", 4, 0, NULL,                \
               "the ODE solver: fixed-step Euler, Heun, midpoint, RK4, or adaptive Dormand-Prince 5(4)"), \
    OPT_INT("steps", P steps, 1, 1000000, 32, 0, "solver=euler|heun|midpoint|rk4",             \
            "steps of a fixed-step solver"),                                                    \
    OPT_NUM("shift", P shift, 0, 1e6, 1, OPT_LO_OPEN, "solver=euler|heun|midpoint|rk4",         \
            "time-grid shift t = s u / (1 + (s - 1) u) of a fixed-step solver (1: uniform)"),   \
    OPT_NUM("rtol", P rtol, 0, 1, 1e-5, 0, "solver=dopri5", "dopri5: relative tolerance"),     \
    OPT_NUM("atol", P atol, 0, 1, 1e-5, 0, "solver=dopri5", "dopri5: absolute tolerance")

/* The defaults of the solver's option table (ode.c; consumer "solver"). */
void ode_config_default(ode_config *c);
const char *ode_method_name(int m);
/* Apply opts (may be NULL) to c through the solver's option table (keys
 * solver, steps, shift, rtol, atol, t_start, t_end, h0, max_steps); fn
 * names the public call in messages.  Errors: FMD_ERR_INVALID_ARG naming the
 * key (unknown, bad value, or a key that does not apply to the solver). */
fmd_status ode_config_from_options(ode_config *c, const fmd_options *opts, const char *fn);
/* Time of grid point i (0..steps) of a fixed-step solve. */
double ode_grid_time(int i, int steps, double t_start, double t_end, double shift);

/* Integrate x(b, d) in place from t_start to t_end.  Allocates its work
 * buffers (O(8 b d) doubles).  stats may be NULL.  Errors: the field's
 * status, FMD_ERR_NONFINITE (a row went NaN/Inf), FMD_ERR_INTERNAL (dopri5
 * exceeded max_steps; message names the row and time), FMD_ERR_OOM,
 * FMD_ERR_INVALID_ARG (bad config). */
fmd_status ode_solve(ode_field_fn f, void *ctx, double *x, const int32_t *labels, int64_t b,
                     int64_t d, const ode_config *cfg, ode_stats *stats);

#endif
