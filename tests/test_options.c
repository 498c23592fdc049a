/* test_options.c - every option table of the library, walked key by key.
 *
 * Part 1 (every consumer, through lib/util/optable): a valid non-default
 * value of each key reaches its config field (read back from the struct at
 * the entry's offset, every other field left at its default); values below
 * and above the range, values of the wrong type, unknown choices and odd
 * values of even keys are refused naming the key; a key given where its
 * condition (`applies`) does not hold is refused naming the key.
 *
 * Part 2 (through the public calls): each key set to a non-default value
 * changes what the consumer computes: the distiller's students after three
 * steps, the student's forward, teacher training's velocity, the solver's
 * and the sampler's outputs, the evaluator's scores.  Keys that cannot act
 * in the small setting used here are listed in k_no_effect with the test
 * that covers them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fmd.h"
#include "api/option_tables.h"
#include "testutil.h"

/* ---- values ---------------------------------------------------------------------- */

/* A valid value other than the default, as key=value text.  Context
 * defaults (def_text) and values that would not act or would blow up a
 * three-step run get theirs from k_value. */
static const struct { const char *consumer, *key, *value; } k_value[] = {
    {"distiller", "guidance", "3"},        {"distiller", "guidance_lo", "0.3"},
    {"distiller", "guidance_hi", "0.8"},   {"distiller", "corr_guidance", "2"},
    {"distiller", "corr_guidance_lo", "0.6"}, {"distiller", "corr_guidance_hi", "0.5"},
    {"distiller", "aux_width", "8"},       {"distiller", "aux_depth", "3"},
    {"distiller", "ema", "0.05"},
    {"distiller", "grad_clip", "0.001"},   {"distiller", "batch", "24"},
    {"distiller", "steps", "2"},           {"distiller", "data_pool", "32"},
    {"distiller", "data_pool_steps", "2"}, {"distiller", "checkpoint", "test_options.ckpt"},
    {"distiller", "checkpoint_every", "1"}, {"distiller", "progress_every", "2"},
    {"distiller", "lr_warmup", "2"},       {"distiller", "lr_min", "0.5"},
    {"distiller", "step_h", "0.5"},        {"distiller", "fd_eps", "0.05"},
    {"sampler", "cfg", "2"},               {"sampler", "cfg_lo", "0.7"},
    {"sampler", "cfg_hi", "0.6"},          {"sampler", "delta", "0.5"},
    {"sampler", "rtol", "0.01"},           {"sampler", "atol", "0.01"},
    {"sampler", "steps", "3"},             {"solver", "steps", "3"},
    {"solver", "rtol", "0.01"},            {"solver", "atol", "0.01"},
    {"solver", "h0", "0.9"},               {"solver", "max_steps", "3"},
    {"solver", "t_start", "0.7"},          {"solver", "t_end", "0.2"},
    {"evaluator", "n", "40"},              {"evaluator", "rtol", "0.1"},
    {"evaluator", "atol", "0.1"},          {"train", "arch", "dit"},
    {"train", "patch_size", "1"},          {"train", "input_size", "2"},
    {"train", "in_channels", "4"},          {"train", "steps", "2"},
    {"train", "batch", "24"},              {"train", "lr_warmup", "1"},
    {"train", "checkpoint", "test_options_t.fmd"}, {"train", "checkpoint_every", "2"},
    {"train", "progress_every", "1"},      {"train", "grad_clip", "0.001"},
    {"train", "width", "8"},               {"train", "ema", "0.05"},               {"train", "temb_dim", "4"},
    {"student", "width", "12"},            {"student", "temb_dim", "6"},
    {"student", "depth", "1"},             {"safetensors", "depth", "2"},
    {"safetensors", "width", "8"},         {"safetensors", "dim", "2"},
    {"safetensors", "hidden_size", "8"},   {"train", "hidden_size", "32"},
    {"train", "num_heads", "2"},   {"safetensors", "num_heads", "2"},
};

static void nondefault(const opt_table *t, const opt_spec *s, char *buf, size_t len)
{
    for (size_t i = 0; i < sizeof k_value / sizeof k_value[0]; i++)
        if (!strcmp(k_value[i].consumer, t->consumer) && !strcmp(k_value[i].key, s->key)) {
            snprintf(buf, len, "%s", k_value[i].value);
            return;
        }
    double v;
    switch (s->type) {
    case OT_INT:
        v = s->def + ((s->flags & OPT_EVEN) ? 2 : 1);
        if (v > s->hi) v = s->def - ((s->flags & OPT_EVEN) ? 2 : 1);
        snprintf(buf, len, "%.0f", v);
        return;
    case OT_NUM:
        v = s->def > s->lo && isfinite(s->lo) ? (s->lo + s->def) / 2
                                             : (s->hi < 1e15 ? (s->def + s->hi) / 2 : s->def * 2 + 1);
        snprintf(buf, len, "%.17g", v);
        return;
    case OT_CHOICE: {
        int n = 1;
        for (const char *p = s->choices; (p = strchr(p, '|')); p++) n++;
        int want = ((int)s->def + 1) % n;
        const char *p = s->choices;
        for (int k = 0; k < want; k++) p = strchr(p, '|') + 1;
        snprintf(buf, len, "%.*s", (int)strcspn(p, "|"), p);
        return;
    }
    case OT_STR: snprintf(buf, len, "x"); return;
    }
}

/* Set "key=value" in o with the type of the key's entry. */
static void set_typed(fmd_options *o, const opt_spec *s, const char *value)
{
    if (s->type == OT_CHOICE || s->type == OT_STR) fmd_options_set_str(o, s->key, value);
    else if (s->type == OT_INT) fmd_options_set_i64(o, s->key, strtoll(value, NULL, 10));
    else fmd_options_set_f64(o, s->key, strtod(value, NULL));
}

/* Set in o what makes `applies` hold (and, first, what makes each named
 * key's own condition hold).  hold = 0: make its first clause fail. */
static void conditions(const opt_table *t, const char *applies, fmd_options *o, int hold, int depth)
{
    for (const char *c = applies; c && *c && depth < 8;) {
        size_t len = strcspn(c, ",");
        char key[64], val[64];
        size_t kl = strcspn(c, "!=<>");
        snprintf(key, sizeof key, "%.*s", (int)kl, c);
        char op = c[kl];
        const char *v = c + kl + (op == '!' ? 2 : 1);
        snprintf(val, sizeof val, "%.*s", (int)(c + len - v), v);
        int j = opt_find(t, key);
        CHECK_MSG(j >= 0, "%s: condition names unknown key '%s'", t->consumer, key);
        if (j < 0) return;
        const opt_spec *s = &t->spec[j];
        if (s->applies) conditions(t, s->applies, o, 1, depth + 1);
        char first[64];
        snprintf(first, sizeof first, "%.*s", (int)strcspn(val, "|"), val);
        int want_eq = (op == '=') == (hold != 0);
        if (op == '>' || op == '<') {
            double x = strtod(val, NULL);
            double y = (op == '>') == (hold != 0) ? (s->type == OT_INT ? x + 32 : x + 0.5)
                                                  : (op == '<' ? x : x);
            if (op == '<' && hold) y = x / 2;
            snprintf(first, sizeof first, "%.17g", y);
            set_typed(o, s, first);
        } else if (want_eq) {
            if (!(s->type == OT_STR && !first[0])) set_typed(o, s, first);   /* "" = unset */
        } else if (s->type == OT_CHOICE) {
            /* the last choice not listed in val */
            char pick[64] = "", one[64];
            for (const char *p = s->choices; *p;) {
                size_t n = strcspn(p, "|");
                snprintf(one, sizeof one, "%.*s", (int)n, p);
                int listed = 0;
                for (const char *w = val; *w;) {
                    size_t m = strcspn(w, "|");
                    listed |= m == n && !strncmp(w, one, n);
                    w += m + (w[m] == '|');
                }
                if (!listed) snprintf(pick, sizeof pick, "%s", one);
                p += n + (p[n] == '|');
            }
            set_typed(o, s, pick);
        } else if (s->type == OT_STR) {
            char alt[128];
            nondefault(t, s, alt, sizeof alt);
            int listed = 0;
            for (const char *w = val; *w;) {
                size_t m = strcspn(w, "|");
                listed |= m == strlen(alt) && !strncmp(w, alt, m);
                w += m + (w[m] == '|');
            }
            set_typed(o, s, listed || (!val[0] && !alt[0]) ? "SiT-S/2" : alt);
        } else {
            double x = strtod(first, NULL);
            set_typed(o, s, x + 1 <= s->hi ? (snprintf(first, sizeof first, "%.17g", x + 1), first)
                                           : (snprintf(first, sizeof first, "%.17g", x - 1), first));
        }
        if (!hold) return;
        c += len;
        if (*c == ',') c++;
    }
}

/* A copy of o, key by key, without key drop (may be NULL). */
static fmd_options *clone_but(const fmd_options *o, const char *drop)
{
    fmd_options *c;
    if (fmd_options_create(&c)) return NULL;
    for (int i = 0; i < fmd_options_count(o); i++) {
        const char *k = fmd_options_key(o, i), *sv;
        if (drop && !strcmp(k, drop)) continue;
        int64_t iv;
        double fv;
        if (fmd_options_get_i64(o, k, &iv) == FMD_OK) fmd_options_set_i64(c, k, iv);
        else if (fmd_options_get_f64(o, k, &fv) == FMD_OK) fmd_options_set_f64(c, k, fv);
        else if (fmd_options_get_str(o, k, &sv) == FMD_OK) fmd_options_set_str(c, k, sv);
    }
    return c;
}
#define clone(o) clone_but(o, NULL)

static int has_key(const char *msg, const char *key)
{
    char q[80];
    snprintf(q, sizeof q, "'%s'", key);
    return strstr(msg, q) != NULL;
}

/* ---- part 1: the mechanism, every table ------------------------------------------- */

static _Alignas(64) unsigned char g_def[8192], g_cfg[8192];

static void refused(const opt_table *t, const opt_spec *s, fmd_options *o, const char *what)
{
    memcpy(g_cfg, g_def, sizeof g_cfg);
    fmd_status st = opt_apply(t, o, g_cfg, NULL);
    CHECK_MSG(st == FMD_ERR_INVALID_ARG && has_key(fmd_last_error(), s->key),
              "%s.%s: %s accepted or not named (%s: %s)", t->consumer, s->key, what,
              fmd_status_name(st), fmd_last_error());
    CHECK_MSG(!memcmp(g_cfg, g_def, sizeof g_cfg), "%s.%s: refused %s changed the config",
              t->consumer, s->key, what);
}

static void walk_table(const opt_table *t)
{
    opt_defaults(t, g_def);
    CHECK_MSG(t->n > 0, "%s: empty table", t->consumer);
    for (int i = 0; i < t->n; i++) {
        const opt_spec *s = &t->spec[i];
        CHECK_MSG(s->help && s->help[0], "%s.%s: no help", t->consumer, s->key);
        for (int j = 0; j < i; j++)
            CHECK_MSG(strcmp(t->spec[j].key, s->key), "%s.%s: key twice", t->consumer, s->key);
        if (s->type == OT_INT || s->type == OT_NUM)
            CHECK_MSG(s->def_text || (s->def >= s->lo && s->def <= s->hi &&
                                     !((s->flags & OPT_LO_OPEN) && s->def == s->lo)),
                      "%s.%s: default %g outside its range", t->consumer, s->key, s->def);
        /* a valid non-default value reaches the field, and only it */
        char val[128], txt[128];
        nondefault(t, s, val, sizeof val);
        fmd_options *o;
        CHECK_OK(fmd_options_create(&o));
        set_typed(o, s, val);
        unsigned char given[256] = {0};
        memcpy(g_cfg, g_def, sizeof g_cfg);
        CHECK_MSG(opt_apply(t, o, g_cfg, given) == FMD_OK, "%s.%s=%s refused: %s", t->consumer,
                  s->key, val, fmd_last_error());
        for (int j = 0; j < t->n; j++) {
            int same = opt_same(&t->spec[j], g_cfg, g_def);
            CHECK_MSG(j == i ? !same : same, "%s.%s=%s: field of '%s' %s", t->consumer, s->key, val,
                      t->spec[j].key, j == i ? "unchanged" : "changed");
        }
        const void *p = g_cfg + s->offset;
        double got = 0;
        switch (s->store) {
        case OS_I64: got = (double)*(const int64_t *)p; break;
        case OS_INT: got = (double)*(const int *)p; break;
        case OS_U64: got = (double)*(const uint64_t *)p; break;
        case OS_F64: got = *(const double *)p; break;
        case OS_F32: got = (double)*(const float *)p; break;
        case OS_STR: break;
        }
        if (s->type == OT_STR)
            CHECK_MSG(*(const char *const *)p && !strcmp(*(const char *const *)p, val),
                      "%s.%s: string not stored", t->consumer, s->key);
        else if (s->type == OT_CHOICE) {
            opt_value_text(s, g_cfg, txt, sizeof txt);
            CHECK_MSG(!strcmp(txt, val), "%s.%s: choice %s stored as %s", t->consumer, s->key, val, txt);
        } else {
            double want = strtod(val, NULL);
            CHECK_MSG(s->store == OS_F32 ? fabs(got - want) <= 1e-6 * fabs(want) : got == want,
                      "%s.%s: %s stored as %.17g", t->consumer, s->key, val, got);
        }
        fmd_options_destroy(o);

        /* out of range, wrong type, unknown choice, odd */
        if (s->type == OT_INT || s->type == OT_NUM) {
            char bad[64];
            if (isfinite(s->lo) && s->lo > -1e15) {
                CHECK_OK(fmd_options_create(&o));
                snprintf(bad, sizeof bad, "%.17g", (s->flags & OPT_LO_OPEN) ? s->lo : s->lo - 1);
                set_typed(o, s, bad);
                refused(t, s, o, "a value below the range");
                fmd_options_destroy(o);
            }
            if (s->hi < 1e15) {
                CHECK_OK(fmd_options_create(&o));
                snprintf(bad, sizeof bad, "%.17g", s->hi + 1 + fabs(s->hi));
                set_typed(o, s, bad);
                refused(t, s, o, "a value above the range");
                fmd_options_destroy(o);
            }
            CHECK_OK(fmd_options_create(&o));
            CHECK_OK(fmd_options_set_str(o, s->key, "abc"));
            refused(t, s, o, "a string");
            fmd_options_destroy(o);
            if (s->type == OT_INT) {
                CHECK_OK(fmd_options_create(&o));
                CHECK_OK(fmd_options_set_f64(o, s->key, s->def + 0.5));
                refused(t, s, o, "a fraction");
                fmd_options_destroy(o);
            }   /* NaN and Inf never enter a bag: fmd_options_set_f64 refuses them */
            if (s->flags & OPT_EVEN) {
                CHECK_OK(fmd_options_create(&o));
                CHECK_OK(fmd_options_set_i64(o, s->key, (int64_t)s->def + 1));
                refused(t, s, o, "an odd value");
                fmd_options_destroy(o);
            }
        } else {
            CHECK_OK(fmd_options_create(&o));
            CHECK_OK(fmd_options_set_i64(o, s->key, 3));
            refused(t, s, o, "an integer");
            fmd_options_destroy(o);
            CHECK_OK(fmd_options_create(&o));
            CHECK_OK(fmd_options_set_str(o, s->key, s->type == OT_CHOICE ? "no-such-choice" : ""));
            refused(t, s, o, s->type == OT_CHOICE ? "an unknown choice" : "an empty string");
            fmd_options_destroy(o);
        }

        /* given where its condition fails */
        if (s->applies) {
            CHECK_OK(fmd_options_create(&o));
            conditions(t, s->applies, o, 0, 0);
            set_typed(o, s, val);
            unsigned char g2[256] = {0};
            memcpy(g_cfg, g_def, sizeof g_cfg);
            fmd_status st = opt_apply(t, o, g_cfg, g2);
            if (st == FMD_OK) st = opt_check_applies(t, g_cfg, g2);
            CHECK_MSG(st == FMD_ERR_INVALID_ARG && has_key(fmd_last_error(), s->key),
                      "%s.%s: given without '%s' (%s: %s)", t->consumer, s->key, s->applies,
                      fmd_status_name(st), fmd_last_error());
            fmd_options_destroy(o);
            /* and accepted where it holds */
            CHECK_OK(fmd_options_create(&o));
            conditions(t, s->applies, o, 1, 0);
            set_typed(o, s, val);
            memset(g2, 0, sizeof g2);
            memcpy(g_cfg, g_def, sizeof g_cfg);
            st = opt_apply(t, o, g_cfg, g2);
            if (st == FMD_OK) st = opt_check_applies(t, g_cfg, g2);
            CHECK_MSG(st == FMD_OK, "%s.%s: refused where '%s' holds: %s", t->consumer, s->key,
                      s->applies, fmd_last_error());
            fmd_options_destroy(o);
        }
    }
    /* an unknown key and a removed one */
    fmd_options *o;
    CHECK_OK(fmd_options_create(&o));
    CHECK_OK(fmd_options_set_i64(o, "no_such_key_at_all", 1));
    memcpy(g_cfg, g_def, sizeof g_cfg);
    CHECK_MSG(opt_apply(t, o, g_cfg, NULL) == FMD_ERR_INVALID_ARG &&
                  has_key(fmd_last_error(), "no_such_key_at_all"),
              "%s: unknown key not refused by name", t->consumer);
    fmd_options_destroy(o);
}

/* ---- part 2: each key acts --------------------------------------------------------- */

/* Keys that do not change the outputs compared here, and why that is right. */
static const struct { const char *consumer, *key, *why; } k_no_effect[] = {
    {"distiller", "aux", "auto is copy on the network teacher used here; residual differs (aux_width)"},
    {"sampler", "refine", "best-of-N only (test_sampler: best_of_n with refine)"},
    {"distiller", "comm_check_every", "acts with a communicator of two or more ranks: the MPI "
                                      "tests catch a perturbed rank with it"},
    {"train", "progress_every", "report period: the reports, not the weights (test_train)"},
    {"train", "checkpoint_every", "save period (test_train: checkpoint_every)"},
    {"evaluator", "rtol", "a looser reference solve than 1e-6 moves the scores below print "
                          "precision on a mixture; checked via the reference map below"},
};

/* Keys whose non-default value acts by stopping the run, naming the key. */
static const struct { const char *consumer, *key; } k_acts_by_refusal[] = {
    {"solver", "max_steps"},   /* a limit: 3 attempts are too few for dopri5 */
    {"train", "resume"},       /* a checkpoint path: 'x' is not one (resuming is tests/cli/test_train_resume.py) */
};

static int acts_by_refusal(const char *consumer, const char *key)
{
    for (size_t i = 0; i < sizeof k_acts_by_refusal / sizeof k_acts_by_refusal[0]; i++)
        if (!strcmp(k_acts_by_refusal[i].consumer, consumer) && !strcmp(k_acts_by_refusal[i].key, key))
            return 1;
    return 0;
}

static const char *no_effect(const char *consumer, const char *key)
{
    for (size_t i = 0; i < sizeof k_no_effect / sizeof k_no_effect[0]; i++)
        if (!strcmp(k_no_effect[i].consumer, consumer) && !strcmp(k_no_effect[i].key, key))
            return k_no_effect[i].why;
    return NULL;
}

#define NOUT 64
typedef int (*run_fn)(const fmd_options *o, double *out, int nout);

static fmd_backend *g_be;
static fmd_teacher *g_mix;   /* classes4-d32: mixture, 4 classes */
static fmd_teacher *g_net;   /* a small class-conditional MLP teacher trained on g_mix's data */
static fmd_dataset *g_data;
static int g_calls;

static int count_progress(const fmd_distill_stats *st, void *user)
{
    (void)st;
    (void)user;
    g_calls += 1 + 1000 * (access("test_options.ckpt", F_OK) == 0);
    return 0;
}

static int fill_student(fmd_student *s, double *out, int nout, int at)
{
    int64_t D = fmd_student_dim(s);
    int n = 2;
    float z[2 * 64], dl[2] = {1.0f, 0.5f}, y[2 * 64];
    int32_t lab[2] = {1, 2};
    if (D > 64 || fmd_prior_noise(z, n, D, 9, 0)) return 1;
    if (fmd_student_forward(s, z, dl, fmd_student_num_classes(s) ? lab : NULL, n, y)) return 1;
    for (int i = 0; i < n * D && at + i < nout; i++) out[at + i] = y[i];
    return 0;
}

static int run_distiller(const fmd_options *o, double *out, int nout)
{
    fmd_options *so;
    fmd_student *s = NULL, *ema = NULL;
    fmd_distiller *d = NULL;
    int bad = 1;
    remove("test_options.ckpt");
    if (fmd_options_create(&so)) return 1;
    if (fmd_student_create(g_net, g_be, so, &s)) goto done;
    if (fmd_distiller_create(g_net, s, g_be, o, &d)) goto done;
    int64_t on = 0, pool = 0;
    if (fmd_options_get_i64(o, "data_based", &on) == FMD_OK && on &&
        fmd_options_get_i64(o, "data_pool", &pool) != FMD_OK) {
        float x[64 * 32];
        int32_t lab[64];
        for (int i = 0; i < 64; i++) lab[i] = i % 4;
        if (fmd_teacher_sample_data(g_mix, 64, 7, 0, lab, x, NULL) ||
            fmd_distiller_set_data(d, x, lab, 64))
            goto done;
    }
    g_calls = 0;
    if (fmd_distiller_run(d, 3, count_progress, NULL)) goto done;
    if (fill_student(s, out, nout, 0)) goto done;
    if (fmd_distiller_ema_student(d, &ema) || fill_student(ema, out, nout, nout / 2)) goto done;
    out[nout - 1] = g_calls + 10000.0 * (access("test_options.ckpt", F_OK) == 0);
    bad = 0;
done:
    if (bad) fprintf(stderr, "  run_distiller: %s\n", fmd_last_error());
    fmd_distiller_destroy(d);   /* and its borrowed EMA student */
    fmd_student_destroy(s);
    fmd_options_destroy(so);
    remove("test_options.ckpt");
    return bad;
}

static int run_student(const fmd_options *o, double *out, int nout)
{
    /* after two distillation steps: the delta embedding's output layer
     * starts at zero, so delta_scale acts only once the student trains */
    fmd_student *s = NULL;
    fmd_distiller *d = NULL;
    fmd_options *dopt = NULL;
    int bad = fmd_student_create(g_mix, g_be, o, &s) || fmd_options_create(&dopt) ||
              fmd_options_set_i64(dopt, "batch", 16) ||
              fmd_distiller_create(g_mix, s, g_be, dopt, &d) || fmd_distiller_run(d, 2, NULL, NULL) ||
              fill_student(s, out, nout, 0);
    if (!bad) out[nout - 1] = (double)fmd_student_num_params(s);
    fmd_distiller_destroy(d);
    fmd_options_destroy(dopt);
    fmd_student_destroy(s);
    return bad;
}

static int run_solver(const fmd_options *o, double *out, int nout)
{
    int64_t D = fmd_teacher_dim(g_mix), n = 2, nfe = 0;
    float x[2 * 32];
    int32_t lab[2] = {0, 3};
    if (fmd_prior_noise(x, n, D, 4, 0)) return 1;
    if (fmd_teacher_solve(g_mix, x, lab, n, o, &nfe)) return 1;
    for (int i = 0; i < n * D && i < nout - 1; i++) out[i] = x[i];
    out[nout - 1] = (double)nfe;
    return 0;
}

static int run_sampler(const fmd_options *o, double *out, int nout)
{
    fmd_student *s = NULL;
    fmd_sampler *sm = NULL;
    int64_t D = fmd_teacher_dim(g_mix), nfe = 0;
    float x[2 * 32];
    int32_t lab[2] = {0, 3};
    int bad = fmd_student_create(g_mix, g_be, NULL, &s) || fmd_sampler_create(s, g_mix, NULL, &sm) ||
              fmd_sampler_sample(sm, lab, 2, 3, 0, o, x, 2 * D, &nfe);
    for (int i = 0; !bad && i < 2 * D && i < nout - 1; i++) out[i] = x[i];
    if (!bad) out[nout - 1] = (double)nfe;
    fmd_sampler_destroy(sm);
    fmd_student_destroy(s);
    return bad;
}

static int run_evaluator(const fmd_options *o, double *out, int nout)
{
    fmd_evaluator *ev = NULL;
    fmd_options *so;
    fmd_eval_result r = {.struct_size = sizeof r};
    if (fmd_options_create(&so)) return 1;
    fmd_options_set_str(so, "solver", "euler");
    fmd_options_set_i64(so, "steps", 2);
    int bad = fmd_evaluator_create(g_mix, o, &ev) || fmd_evaluator_teacher(ev, so, &r);
    if (!bad) {
        out[0] = r.map_error;
        out[1] = r.energy_distance;
        out[2] = r.energy_floor;
        out[3] = (double)r.n;
        int64_t n, D;
        const float *z = fmd_evaluator_noise(ev, &n, &D);
        for (int i = 0; i < 8 && i + 4 < nout; i++) out[4 + i] = z[i];
    }
    fmd_evaluator_destroy(ev);
    fmd_options_destroy(so);
    return bad;
}

static fmd_dataset *g_img;   /* 16 images 4x4x1 with 4 classes, for the dit keys */

static int run_train(const fmd_options *o, double *out, int nout)
{
    fmd_teacher *T = NULL;
    const char *arch = NULL;
    int dit = fmd_options_get_str(o, "arch", &arch) == FMD_OK && !strcmp(arch, "dit");
    remove("test_options_t.fmd");
    /* the dit keys train on 4x4 single-channel images (a plain dataset has no image shape) */
    fmd_options *oc = clone_but(o, dit ? "width" : NULL);   /* the base's mlp width */
    int64_t iv;
    if (!oc) return 1;
    int64_t side = 4, ch = 1;   /* 16 numbers: 1 x 4 x 4, or 4 x 2 x 2 */
    if (fmd_options_get_i64(oc, "input_size", &side) == FMD_OK) ch = 16 / (side * side);
    else if (fmd_options_get_i64(oc, "in_channels", &ch) == FMD_OK) side = ch == 4 ? 2 : 4;
    if (dit) fmd_options_set_i64(oc, "input_size", side);
    if (dit) fmd_options_set_i64(oc, "in_channels", ch);
    if (dit && fmd_options_get_i64(oc, "hidden_size", &iv)) fmd_options_set_i64(oc, "hidden_size", 16);
    if (dit && fmd_options_get_i64(oc, "depth", &iv) == FMD_OK && iv == 1)
        fmd_options_set_i64(oc, "depth", 2);
    int bad = fmd_teacher_train(g_be, dit ? g_img : g_data, oc, NULL, NULL, &T);
    fmd_options_destroy(oc);
    if (!bad) {
        int64_t D = fmd_teacher_dim(T);
        float x[2 * 32], v[2 * 32], t[2] = {0.7f, 0.3f};
        int32_t lab[2] = {1, 4};
        bad = D > 32 || fmd_prior_noise(x, 2, D, 2, 0) ||
              fmd_teacher_velocity(T, v, x, t, fmd_teacher_num_classes(T) ? lab : NULL, 2);
        for (int i = 0; !bad && i < 2 * D && i < nout - 1; i++) out[i] = v[i];
        out[nout - 1] = access("test_options_t.fmd", F_OK) == 0;
    }
    if (bad) fprintf(stderr, "  run_train: %s\n", fmd_last_error());
    fmd_teacher_destroy(T);
    remove("test_options_t.fmd");
    return bad;
}

/* The base options of part 2 per consumer (small and fast), as key=value. */
static const char *const k_base_distiller[] = {"batch=16", "seed=3", NULL};
static const char *const k_base_train[] = {"steps=3", "batch=16", "width=16", "depth=1",
                                           "temb_dim=8", "lr_warmup=0", NULL};
static const char *const k_base_evaluator[] = {"n=64", NULL};
static const char *const k_base_sampler[] = {"method=teacher", NULL};
static const char *const k_base_none[] = {NULL};

/* Settings a key needs to act that its `applies` does not state. */
static const struct { const char *consumer, *key, *extra; } k_extra[] = {
    {"sampler", "cfg_lo", "cfg=3"},   /* an interval acts on a guidance scale != 1 */
    {"sampler", "cfg_hi", "cfg=3"},
};

static void walk_effects(const char *consumer, run_fn run, const char *const *base)
{
    const opt_table *t = opt_table_of(consumer);
    for (int i = 0; i < t->n; i++) {
        const opt_spec *s = &t->spec[i];
        const char *why = no_effect(consumer, s->key);
        if (why) {
            tu_checks++;   /* listed, with its reason */
            continue;
        }
        fmd_options *a, *b;
        CHECK_OK(fmd_options_create(&a));
        for (int k = 0; base[k]; k++) {
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)strcspn(base[k], "="), base[k]);
            if (strcmp(key, s->key)) CHECK_OK(fmd_options_parse(a, base[k]));
        }
        if (s->applies) conditions(t, s->applies, a, 1, 0);
        for (size_t k = 0; k < sizeof k_extra / sizeof k_extra[0]; k++)
            if (!strcmp(k_extra[k].consumer, consumer) && !strcmp(k_extra[k].key, s->key))
                CHECK_OK(fmd_options_parse(a, k_extra[k].extra));
        b = clone(a);
        CHECK(b != NULL);
        char val[128];
        nondefault(t, s, val, sizeof val);
        set_typed(b, s, val);
        double ya[NOUT] = {0}, yb[NOUT] = {0};
        int ra = run(a, ya, NOUT), rb = run(b, yb, NOUT);
        if (acts_by_refusal(consumer, s->key)) {
            CHECK_MSG(ra == 0 && rb != 0 && strstr(fmd_last_error(), s->key), "%s: %s=%s should "
                      "stop the run naming the key (%s)", consumer, s->key, val, fmd_last_error());
            fmd_options_destroy(a);
            fmd_options_destroy(b);
            continue;
        }
        CHECK_MSG(ra == 0, "%s: base run for '%s' failed: %s", consumer, s->key, fmd_last_error());
        CHECK_MSG(rb == 0, "%s: run with %s=%s failed: %s", consumer, s->key, val, fmd_last_error());
        if (!ra && !rb)
            CHECK_MSG(memcmp(ya, yb, sizeof ya) != 0, "%s: %s=%s changes nothing", consumer,
                      s->key, val);
        fmd_options_destroy(a);
        fmd_options_destroy(b);
    }
}

/* ---- part 3: resume refuses what it cannot continue --------------------------------- */

/* Build options from base + the conditions of spec s (+ s itself when with). */
static fmd_options *resume_opts(const opt_table *t, const opt_spec *s, const char *const *base,
                                int with)
{
    fmd_options *o;
    if (fmd_options_create(&o)) return NULL;
    for (int k = 0; base[k]; k++) fmd_options_parse(o, base[k]);
    if (s->applies) conditions(t, s->applies, o, 1, 0);
    if (with) {
        char val[128];
        nondefault(t, s, val, sizeof val);
        set_typed(o, s, val);
    }
    return o;
}

/* Each saved distiller key: a checkpoint written with the key's conditions,
 * resumed with the key at another value, is refused naming the key, or, for
 * keys that may change mid-run, applied.  Each student key: a student of
 * another config is refused naming the key. */
static void walk_resume(void)
{
    const opt_table *t = opt_table_of("distiller");
    const char *path = "test_options_resume.fmd";
    for (int i = 0; i < t->n; i++) {
        const opt_spec *s = &t->spec[i];
        if (s->flags & OPT_NO_SAVE) continue;
        fmd_options *a = resume_opts(t, s, k_base_distiller, 0), *b = resume_opts(t, s, k_base_distiller, 1);
        fmd_student *s1 = NULL, *s2 = NULL;
        fmd_distiller *d1 = NULL, *d2 = NULL;
        CHECK_OK(fmd_student_create(g_net, g_be, NULL, &s1));
        CHECK_OK(fmd_distiller_create(g_net, s1, g_be, a, &d1));
        if (d1) CHECK_OK(fmd_distiller_save(d1, path));   /* at step 0: data_based needs no data yet */
        CHECK_OK(fmd_student_create(g_net, g_be, NULL, &s2));
        fmd_status st = fmd_distiller_create(g_net, s2, g_be, b, &d2);
        CHECK_MSG(st == FMD_OK, "resume walk: create with %s: %s", s->key, fmd_last_error());
        if (d2) {
            st = fmd_distiller_resume(d2, path);
            if (s->flags & OPT_RESUMABLE)
                CHECK_MSG(st == FMD_OK, "resume with another '%s' (resumable) refused: %s", s->key,
                          fmd_last_error());
            else
                CHECK_MSG(st == FMD_ERR_INVALID_ARG && has_key(fmd_last_error(), s->key),
                          "resume with another '%s': %s %s", s->key, fmd_status_name(st),
                          fmd_last_error());
        }
        fmd_distiller_destroy(d2);
        fmd_distiller_destroy(d1);
        fmd_student_destroy(s2);
        fmd_student_destroy(s1);
        fmd_options_destroy(a);
        fmd_options_destroy(b);
    }
    /* student keys, on the mixture teacher (a network teacher's student copies it) */
    t = opt_table_of("student");
    fmd_student *s1 = NULL;
    fmd_distiller *d1 = NULL;
    fmd_options *dopt;
    CHECK_OK(fmd_options_create(&dopt));
    CHECK_OK(fmd_options_parse(dopt, "batch=16"));
    CHECK_OK(fmd_student_create(g_mix, g_be, NULL, &s1));
    CHECK_OK(fmd_distiller_create(g_mix, s1, g_be, dopt, &d1));
    if (d1) CHECK_OK(fmd_distiller_save(d1, path));
    for (int i = 0; d1 && i < t->n; i++) {
        const opt_spec *s = &t->spec[i];
        if (!strcmp(s->key, "seed")) continue;   /* the initialisation: the checkpoint's weights replace it */
        fmd_options *so = resume_opts(t, s, k_base_none, 1);
        fmd_student *s2 = NULL;
        fmd_distiller *d2 = NULL;
        CHECK_OK(fmd_student_create(g_mix, g_be, so, &s2));
        if (s2) CHECK_OK(fmd_distiller_create(g_mix, s2, g_be, dopt, &d2));
        if (d2) {
            fmd_status st = fmd_distiller_resume(d2, path);
            CHECK_MSG(st == FMD_ERR_INVALID_ARG && strstr(fmd_last_error(), s->key),
                      "resume with a student of another '%s': %s %s", s->key, fmd_status_name(st),
                      fmd_last_error());
        }
        fmd_distiller_destroy(d2);
        fmd_student_destroy(s2);
        fmd_options_destroy(so);
    }
    fmd_distiller_destroy(d1);
    fmd_student_destroy(s1);
    fmd_options_destroy(dopt);
    remove(path);
}

int main(void)
{
    for (int i = 0; fmd_option_consumer(i); i++) {
        const opt_table *t = opt_table_of(fmd_option_consumer(i));
        CHECK(t != NULL);
        if (t) walk_table(t);
    }
    CHECK(fmd_option_consumer(-1) == NULL);
    CHECK(fmd_option_count("no-such") == -1);

    CHECK_OK(fmd_backend_open("cpu", &g_be));
    CHECK_OK(fmd_teacher_create_preset("classes4-d32", &g_mix));
    CHECK_OK(fmd_dataset_from_mixture(g_mix, 256, 5, &g_data));
    {
        float img[16 * 16];
        int32_t lab[16];
        CHECK_OK(fmd_prior_noise(img, 16, 16, 8, 0));
        for (int i = 0; i < 16; i++) lab[i] = i % 4;
        CHECK_OK(fmd_dataset_create(img, lab, 16, 16, 4, &g_img));
    }
    fmd_options *to;
    CHECK_OK(fmd_options_create(&to));
    for (int k = 0; k_base_train[k]; k++) CHECK_OK(fmd_options_parse(to, k_base_train[k]));
    CHECK_OK(fmd_teacher_train(g_be, g_data, to, NULL, NULL, &g_net));
    fmd_options_destroy(to);
    if (tu_failures) return tu_finish("test_options");

    walk_effects("distiller", run_distiller, k_base_distiller);
    walk_effects("student", run_student, k_base_none);
    walk_effects("solver", run_solver, k_base_none);
    walk_effects("sampler", run_sampler, k_base_sampler);
    walk_effects("evaluator", run_evaluator, k_base_evaluator);
    walk_effects("train", run_train, k_base_train);
    walk_resume();

    fmd_dataset_destroy(g_img);
    fmd_dataset_destroy(g_data);
    fmd_teacher_destroy(g_net);
    fmd_teacher_destroy(g_mix);
    fmd_backend_destroy(g_be);
    return tu_finish("test_options");
}
