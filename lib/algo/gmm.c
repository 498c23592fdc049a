/* gmm.c - Gaussian-mixture oracle: closed-form velocity, score and density
 * of the noised marginals, exact data samples, presets and the text spec
 * format (see gmm.h for the formulas). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "algo/gmm.h"
#include "util/philox.h"
#include "util/util.h"

#define GMM_STREAM_COMP 0x676d6d636f6d70ull  /* "gmmcomp" */
#define GMM_STREAM_NOISE 0x676d6d6e6f6973ull /* "gmmnois" */
#define LOG_2PI 1.8378770664093454836

void gmm_destroy(gmm *g)
{
    if (!g) return;
    fmd_free(g->w);
    fmd_free(g->mu);
    fmd_free(g->s);
    fmd_free(g->cls);
    fmd_free(g->class_w);
    fmd_free(g);
}

fmd_status gmm_create(int d, int k, const double *weights, const double *means,
                      const double *stds, const int32_t *classes, int num_classes, gmm **out)
{
    FMD_CHECK_ARG(out, "gmm_create: out is NULL");
    FMD_CHECK_ARG(d > 0 && d <= (1 << 24), "gmm_create: dim must be in 1..2^24 (got %d)", d);
    FMD_CHECK_ARG(k > 0 && k <= (1 << 20), "gmm_create: number of components must be in 1..2^20 "
                  "(got %d)", k);
    FMD_CHECK_ARG(weights && means && stds, "gmm_create: weights, means and stds must be non-NULL");
    FMD_CHECK_ARG(num_classes >= 0 && num_classes <= (1 << 20), "gmm_create: num_classes %d out of "
                  "range", num_classes);
    FMD_CHECK_ARG(num_classes == 0 || classes, "gmm_create: classes is NULL but num_classes = %d",
                  num_classes);
    double sum = 0;
    for (int i = 0; i < k; i++) {
        FMD_CHECK_ARG(isfinite(weights[i]) && weights[i] >= 0, "gmm_create: weight[%d] = %g must be "
                      "finite and >= 0", i, weights[i]);
        FMD_CHECK_ARG(isfinite(stds[i]) && stds[i] >= GMM_MIN_STD && stds[i] < GMM_MAX_STD,
                      "gmm_create: std[%d] = %g must be finite and > 0, in [%g, %g)", i,
                      stds[i], GMM_MIN_STD, GMM_MAX_STD);
        for (int j = 0; j < d; j++)
            FMD_CHECK_ARG(isfinite(means[(int64_t)i * d + j]) && fabs(means[(int64_t)i * d + j]) < 1e6,
                          "gmm_create: mean[%d][%d] = %g must be finite and |.| < 1e6", i, j,
                          means[(int64_t)i * d + j]);
        if (num_classes)
            FMD_CHECK_ARG(classes[i] >= 0 && classes[i] < num_classes, "gmm_create: class[%d] = %d "
                          "out of range [0, %d)", i, (int)classes[i], num_classes);
        sum += weights[i];
    }
    FMD_CHECK_ARG(sum > 0, "gmm_create: weights sum to 0");
    gmm *g = fmd_xcalloc(1, sizeof *g, "gmm");
    if (!g) return FMD_ERR_OOM;
    g->d = d;
    g->k = k;
    g->num_classes = num_classes;
    g->w = fmd_calloc((size_t)k, sizeof(double));
    g->mu = fmd_calloc((size_t)k * (size_t)d, sizeof(double));
    g->s = fmd_calloc((size_t)k, sizeof(double));
    if (num_classes) {
        g->cls = fmd_calloc((size_t)k, sizeof(int32_t));
        g->class_w = fmd_calloc((size_t)num_classes, sizeof(double));
    }
    if (!g->w || !g->mu || !g->s || (num_classes && (!g->cls || !g->class_w))) {
        gmm_destroy(g);
        return fmd_seterr(FMD_ERR_OOM, "gmm_create: out of memory (%d components x %d dims)", k, d);
    }
    for (int i = 0; i < k; i++) {
        g->w[i] = weights[i] / sum;
        g->s[i] = stds[i];
        if (num_classes) {
            g->cls[i] = classes[i];
            g->class_w[classes[i]] += g->w[i];
        }
    }
    memcpy(g->mu, means, (size_t)k * (size_t)d * sizeof(double));
    for (int c = 0; c < num_classes; c++)
        if (!(g->class_w[c] > 0)) {
            gmm_destroy(g);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "gmm_create: class %d owns no component of "
                              "positive weight", c);
        }
    *out = g;
    return FMD_OK;
}

/* ---------------------------------------------------------------- presets */

/* ring8: 8 modes on a circle of radius 2 (mode j at angle 2 pi j / 8);
 * weights (1, 2, 1, 2, ...) * (1 + j/8) before normalisation, so no two
 * neighbours weigh the same (largest/smallest = 3.75); std 0.10 for even j and
 * 0.18 for odd j.  Neighbouring modes are 1.53 apart (>= 5 std). */
static fmd_status preset_ring8(gmm **out)
{
    double w[8], mu[16], s[8];
    for (int j = 0; j < 8; j++) {
        double a = 2.0 * M_PI * j / 8.0;
        mu[2 * j] = 2.0 * cos(a);
        mu[2 * j + 1] = 2.0 * sin(a);
        w[j] = (j % 2 ? 2.0 : 1.0) * (1.0 + j / 8.0);
        s[j] = j % 2 ? 0.18 : 0.10;
    }
    return gmm_create(2, 8, w, mu, s, NULL, 0, out);
}

/* grid25: 5x5 grid, coordinates {-2,-1,0,1,2}^2, std 0.08 (the four corners
 * 0.12), weight 1 + ((row + col) mod 3) / 2 (1, 1.5, 2). */
static fmd_status preset_grid25(gmm **out)
{
    double w[25], mu[50], s[25];
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 5; c++) {
            int j = r * 5 + c;
            mu[2 * j] = c - 2.0;
            mu[2 * j + 1] = r - 2.0;
            w[j] = 1.0 + ((r + c) % 3) / 2.0;
            s[j] = ((r == 0 || r == 4) && (c == 0 || c == 4)) ? 0.12 : 0.08;
        }
    return gmm_create(2, 25, w, mu, s, NULL, 0, out);
}

/* classes4-d32: 4 classes x 4 modes in 32-D.  Class c has a centre C_c of
 * norm 3 and mode j of class c sits at C_c + O_cj with |O_cj| = 1.5; the
 * directions are fixed Philox normals (seed 0xC1A55E5, normalised).
 * std 0.25 + 0.05 j; weight (1 + j/2) (1 + c/4).  Classes overlap enough
 * that guidance (scale > 1) moves samples visibly away from the data. */
static fmd_status preset_classes4(gmm **out)
{
    enum { D = 32, C = 4, M = 4, K = C * M };
    double w[K], mu[K * D], s[K], cen[C][D], off[D];
    int32_t cls[K];
    const uint64_t seed = 0xC1A55E5ull;
    for (int c = 0; c < C; c++) {
        double n2 = 0;
        for (int j = 0; j < D; j++) {
            cen[c][j] = fmd_philox_normal_at(seed, 1, (uint64_t)c * D + j);
            n2 += cen[c][j] * cen[c][j];
        }
        for (int j = 0; j < D; j++) cen[c][j] *= 3.0 / sqrt(n2);
    }
    for (int c = 0; c < C; c++)
        for (int m = 0; m < M; m++) {
            int k = c * M + m;
            double n2 = 0;
            for (int j = 0; j < D; j++) {
                off[j] = fmd_philox_normal_at(seed, 2, (uint64_t)k * D + j);
                n2 += off[j] * off[j];
            }
            for (int j = 0; j < D; j++) mu[k * D + j] = cen[c][j] + off[j] * 1.5 / sqrt(n2);
            s[k] = 0.25 + 0.05 * m;
            w[k] = (1.0 + m / 2.0) * (1.0 + c / 4.0);
            cls[k] = c;
        }
    return gmm_create(D, K, w, mu, s, cls, C, out);
}

const char *gmm_preset_names(void) { return "ring8, grid25, classes4-d32"; }

fmd_status gmm_preset(const char *name, gmm **out)
{
    FMD_CHECK_ARG(name && out, "gmm_preset: name and out must be non-NULL");
    if (strcmp(name, "ring8") == 0) return preset_ring8(out);
    if (strcmp(name, "grid25") == 0) return preset_grid25(out);
    if (strcmp(name, "classes4-d32") == 0) return preset_classes4(out);
    return fmd_seterr(FMD_ERR_INVALID_ARG, "unknown mixture preset '%.64s' (known: %s)", name,
                      gmm_preset_names());
}

/* ---------------------------------------------------------------- spec files */

typedef struct {
    int d, nc, k, cap;
    double *w, *mu, *s;
    int32_t *cls;
} spec_acc;

static void spec_free(spec_acc *a)
{
    fmd_free(a->w);
    fmd_free(a->mu);
    fmd_free(a->s);
    fmd_free(a->cls);
}

static int parse_double(const char *s, const char *end, double *out)
{
    char buf[64];
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e;
    errno = 0;
    double v = strtod(buf, &e);
    if (errno || *e || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static fmd_status spec_line(spec_acc *a, char *line, const char *label, int lineno)
{
#define SPEC_ERR(...) fmd_seterr(FMD_ERR_FORMAT, __VA_ARGS__)
    char *save = NULL;
    char *tok = strtok_r(line, " \t\r", &save);
    if (!tok) return FMD_OK;
    if (strcmp(tok, "dim") == 0 || strcmp(tok, "classes") == 0) {
        int isdim = tok[0] == 'd';
        char *v = strtok_r(NULL, " \t\r", &save);
        char *e;
        long x = v ? strtol(v, &e, 10) : -1;
        if (!v || *e || x < (isdim ? 1 : 0) || x > (1 << 20) || strtok_r(NULL, " \t\r", &save))
            return SPEC_ERR("mixture spec '%s' line %d: '%s' needs one integer (%s)", label, lineno,
                            tok, isdim ? ">= 1" : ">= 0");
        if (a->k) return SPEC_ERR("mixture spec '%s' line %d: '%s' must come before the components",
                                  label, lineno, tok);
        if (isdim) a->d = (int)x;
        else a->nc = (int)x;
        return FMD_OK;
    }
    if (strcmp(tok, "component") != 0)
        return SPEC_ERR("mixture spec '%s' line %d: unknown keyword '%.32s' (expected dim, classes, "
                        "component)", label, lineno, tok);
    if (a->d <= 0) return SPEC_ERR("mixture spec '%s' line %d: 'dim' must come first", label, lineno);
    if (a->k == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        if (cap > (1 << 20)) return SPEC_ERR("mixture spec '%s': too many components", label);
        double *w = fmd_realloc(a->w, (size_t)cap * sizeof *w);
        if (w) a->w = w;
        double *s = fmd_realloc(a->s, (size_t)cap * sizeof *s);
        if (s) a->s = s;
        int32_t *c = fmd_realloc(a->cls, (size_t)cap * sizeof *c);
        if (c) a->cls = c;
        double *mu = fmd_realloc(a->mu, (size_t)cap * (size_t)a->d * sizeof *mu);
        if (mu) a->mu = mu;
        if (!w || !s || !c || !mu) return fmd_seterr(FMD_ERR_OOM, "mixture spec: out of memory");
        a->cap = cap;
    }
    int k = a->k;
    int have_w = 0, have_s = 0, have_mu = 0, have_c = 0;
    a->cls[k] = 0;
    while ((tok = strtok_r(NULL, " \t\r", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) return SPEC_ERR("mixture spec '%s' line %d: expected key=value, got '%.32s'", label,
                                 lineno, tok);
        *eq = 0;
        char *val = eq + 1, *vend = val + strlen(val);
        if (strcmp(tok, "weight") == 0) {
            if (!parse_double(val, vend, &a->w[k]) || a->w[k] < 0)
                return SPEC_ERR("mixture spec '%s' line %d: bad weight '%.32s'", label, lineno, val);
            have_w = 1;
        } else if (strcmp(tok, "std") == 0) {
            if (!parse_double(val, vend, &a->s[k]) || !(a->s[k] > 0))
                return SPEC_ERR("mixture spec '%s' line %d: bad std '%.32s'", label, lineno, val);
            have_s = 1;
        } else if (strcmp(tok, "class") == 0) {
            double c;
            if (!parse_double(val, vend, &c) || c != floor(c) || c < 0 || c >= a->nc)
                return SPEC_ERR("mixture spec '%s' line %d: class '%.32s' not in [0, %d)", label,
                                lineno, val, a->nc);
            a->cls[k] = (int32_t)c;
            have_c = 1;
        } else if (strcmp(tok, "mean") == 0) {
            const char *p = val;
            for (int j = 0; j < a->d; j++) {
                const char *q = strchr(p, ',');
                if (!q) q = vend;
                if ((j == a->d - 1) != (q == vend) ||
                    !parse_double(p, q, &a->mu[(int64_t)k * a->d + j]))
                    return SPEC_ERR("mixture spec '%s' line %d: mean needs %d comma-separated "
                                    "numbers", label, lineno, a->d);
                p = q + 1;
            }
            have_mu = 1;
        } else {
            return SPEC_ERR("mixture spec '%s' line %d: unknown key '%.32s' (expected weight, std, "
                            "mean, class)", label, lineno, tok);
        }
    }
    if (!have_w || !have_s || !have_mu)
        return SPEC_ERR("mixture spec '%s' line %d: a component needs weight=, std= and mean=", label,
                        lineno);
    if (a->nc > 0 && !have_c)
        return SPEC_ERR("mixture spec '%s' line %d: class= is required when classes > 0", label,
                        lineno);
    a->k++;
    return FMD_OK;
#undef SPEC_ERR
}

fmd_status gmm_parse_spec(const char *text, const char *label, gmm **out)
{
    FMD_CHECK_ARG(text && out, "gmm_parse_spec: text and out must be non-NULL");
    if (!label) label = "<string>";
    spec_acc a;
    memset(&a, 0, sizeof a);
    fmd_status st = FMD_OK;
    int lineno = 0;
    const char *p = text;
    char *line = NULL;
    while (*p && !st) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        lineno++;
        line = fmd_malloc(n + 1);
        if (!line) {
            st = fmd_seterr(FMD_ERR_OOM, "mixture spec: out of memory");
            break;
        }
        memcpy(line, p, n);
        line[n] = 0;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        st = spec_line(&a, line, label, lineno);
        fmd_free(line);
        p = e ? e + 1 : p + n;
    }
    if (!st && a.k == 0)
        st = fmd_seterr(FMD_ERR_FORMAT, "mixture spec '%s': no components", label);
    if (!st) {
        st = gmm_create(a.d, a.k, a.w, a.mu, a.s, a.nc ? a.cls : NULL, a.nc, out);
        if (st == FMD_ERR_INVALID_ARG) {
            char pre[300];
            snprintf(pre, sizeof pre, "mixture spec '%s'", label);
            st = fmd_err_prefix(FMD_ERR_FORMAT, pre);
        }
    }
    spec_free(&a);
    return st;
}

fmd_status gmm_load_spec(const char *path, gmm **out)
{
    FMD_CHECK_ARG(path && out, "gmm_load_spec: path and out must be non-NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return fmd_seterr(FMD_ERR_IO, "mixture spec '%s': cannot open: %s", path, strerror(errno));
    const size_t maxsz = 64u << 20;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    fmd_status st = FMD_OK;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > maxsz + 8192) {
                st = fmd_seterr(FMD_ERR_FORMAT, "mixture spec '%s': larger than 64 MiB", path);
                break;
            }
            char *nb = fmd_realloc(buf, cap);
            if (!nb) {
                st = fmd_seterr(FMD_ERR_OOM, "mixture spec '%s': out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) {
            if (ferror(f)) st = fmd_seterr(FMD_ERR_IO, "mixture spec '%s': read error", path);
            break;
        }
    }
    fclose(f);
    if (!st) {
        buf[n] = 0;
        if (memchr(buf, 0, n)) st = fmd_seterr(FMD_ERR_FORMAT, "mixture spec '%s': NUL byte", path);
        else st = gmm_parse_spec(buf, path, out);
    }
    fmd_free(buf);
    return st;
}

/* ---------------------------------------------------------------- math */

int64_t gmm_work_size(const gmm *g) { return g->k; }

int gmm_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int uses(const gmm *g, int k, int label)
{
    return !g->num_classes || label < 0 || label >= g->num_classes || g->cls[k] == label;
}

/* logits[k] = log pi_k + log N(x; (1-t) mu_k, sigma_k^2 I) (-inf when unused);
 * returns the log-sum-exp (the log density) and leaves normalised
 * responsibilities gamma_k in logits. */
static double responsibilities(const gmm *g, const double *x, double t, int label, double *lg)
{
    const int d = g->d;
    const double a = 1.0 - t;
    double mx = -INFINITY;
    for (int k = 0; k < g->k; k++) {
        if (!uses(g, k, label) || g->w[k] <= 0) {
            lg[k] = -INFINITY;
            continue;
        }
        double s2 = a * a * g->s[k] * g->s[k] + t * t;
        const double *mu = g->mu + (int64_t)k * d;
        double r2 = 0;
        for (int j = 0; j < d; j++) {
            double e = x[j] - a * mu[j];
            r2 += e * e;
        }
        lg[k] = log(g->w[k]) - 0.5 * d * (LOG_2PI + log(s2)) - 0.5 * r2 / s2;
        if (lg[k] > mx) mx = lg[k];
    }
    double sum = 0;
    for (int k = 0; k < g->k; k++) {
        lg[k] = lg[k] == -INFINITY ? 0.0 : exp(lg[k] - mx);
        sum += lg[k];
    }
    for (int k = 0; k < g->k; k++) lg[k] /= sum;
    double logp = mx + log(sum);
    /* a class-conditional density is normalised by the class weight */
    if (g->num_classes && label >= 0 && label < g->num_classes) logp -= log(g->class_w[label]);
    return logp;
}

void gmm_posterior_row(const gmm *g, double *v, double *x0hat, const double *x, double t,
                       int label, double *work)
{
    const int d = g->d;
    const double a = 1.0 - t;
    responsibilities(g, x, t, label, work);
    if (v) memset(v, 0, (size_t)d * sizeof *v);
    if (x0hat) memset(x0hat, 0, (size_t)d * sizeof *x0hat);
    for (int k = 0; k < g->k; k++) {
        double gk = work[k];
        if (gk == 0) continue;
        double s2k = g->s[k] * g->s[k];
        double s2 = a * a * s2k + t * t;
        double cv = (t - a * s2k) / s2;   /* coefficient of (x - a mu) in E[eps - x0 | k] */
        double cx = a * s2k / s2;         /* coefficient of (x - a mu) in E[x0 | k]       */
        const double *mu = g->mu + (int64_t)k * d;
        for (int j = 0; j < d; j++) {
            double e = x[j] - a * mu[j];
            if (v) v[j] += gk * (cv * e - mu[j]);
            if (x0hat) x0hat[j] += gk * (mu[j] + cx * e);
        }
    }
}

void gmm_velocity_row(const gmm *g, double *v, const double *x, double t, int label, double *work)
{
    gmm_posterior_row(g, v, NULL, x, t, label, work);
}

double gmm_logpdf_row(const gmm *g, const double *x, double t, int label, double *work)
{
    return responsibilities(g, x, t, label, work);
}

void gmm_score_row(const gmm *g, double *score, const double *x, double t, int label, double *work)
{
    const int d = g->d;
    const double a = 1.0 - t;
    responsibilities(g, x, t, label, work);
    memset(score, 0, (size_t)d * sizeof *score);
    for (int k = 0; k < g->k; k++) {
        double gk = work[k];
        if (gk == 0) continue;
        double s2 = a * a * g->s[k] * g->s[k] + t * t;
        const double *mu = g->mu + (int64_t)k * d;
        for (int j = 0; j < d; j++) score[j] -= gk * (x[j] - a * mu[j]) / s2;
    }
}

void gmm_sample(const gmm *g, double *x, int32_t *comp, const int32_t *cond_labels, int64_t b,
                uint64_t seed, uint64_t first)
{
    const int d = g->d;
    for (int64_t i = 0; i < b; i++) {
        uint64_t idx = first + (uint64_t)i;
        int label = cond_labels ? cond_labels[i] : -1;
        if (!g->num_classes || label < 0 || label >= g->num_classes) label = -1;
        double total = label >= 0 ? g->class_w[label] : 1.0;
        double u = (double)fmd_philox_uniform_at(seed, GMM_STREAM_COMP, idx) * total;
        int pick = -1;
        double acc = 0;
        for (int k = 0; k < g->k; k++) {
            if (label >= 0 && g->cls[k] != label) continue;
            if (g->w[k] <= 0) continue;
            pick = k;
            acc += g->w[k];
            if (u < acc) break;
        }
        const double *mu = g->mu + (int64_t)pick * d;
        for (int j = 0; j < d; j++)
            x[i * d + j] = mu[j] + g->s[pick] * (double)fmd_philox_normal_at(
                                                   seed, GMM_STREAM_NOISE, idx * (uint64_t)d + j);
        if (comp) comp[i] = pick;
    }
}

int gmm_nearest_mode(const gmm *g, const double *x, double *dist)
{
    int best = 0;
    double bl = -INFINITY, bd = 0;
    for (int k = 0; k < g->k; k++) {
        const double *mu = g->mu + (int64_t)k * g->d;
        double r2 = 0;
        for (int j = 0; j < g->d; j++) r2 += (x[j] - mu[j]) * (x[j] - mu[j]);
        double s2 = g->s[k] * g->s[k];
        double l = -0.5 * g->d * log(s2) - 0.5 * r2 / s2;
        if (l > bl) {
            bl = l;
            best = k;
            bd = sqrt(r2 / s2);
        }
    }
    if (dist) *dist = bd;
    return best;
}
