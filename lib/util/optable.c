/* optable.c - applying an fmd_options bag to a config struct through a
 * consumer's option table (optable.h), and the texts generated from it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/optable.h"
#include "util/util.h"

/* ---- the field an entry describes ------------------------------------------------ */

static void *field(const opt_spec *s, void *cfg) { return (char *)cfg + s->offset; }
static const void *cfield(const opt_spec *s, const void *cfg)
{
    return (const char *)cfg + s->offset;
}

/* A parsed value of one entry, before it is stored. */
typedef struct {
    int64_t i;
    double f;
    const char *s;
} opt_value;

static void store(const opt_spec *s, void *cfg, const opt_value *v)
{
    void *p = field(s, cfg);
    switch (s->store) {
    case OS_I64: *(int64_t *)p = v->i; break;
    case OS_INT: *(int *)p = (int)v->i; break;
    case OS_U64: *(uint64_t *)p = (uint64_t)v->i; break;
    case OS_F64: *(double *)p = v->f; break;
    case OS_F32: *(float *)p = (float)v->f; break;
    case OS_STR: *(const char **)p = v->s; break;
    }
}

/* The entry's value in cfg as a double (numbers, integers, choice index). */
static double as_number(const opt_spec *s, const void *cfg)
{
    const void *p = cfield(s, cfg);
    switch (s->store) {
    case OS_I64: return (double)*(const int64_t *)p;
    case OS_INT: return (double)*(const int *)p;
    case OS_U64: return (double)*(const uint64_t *)p;
    case OS_F64: return *(const double *)p;
    case OS_F32: return (double)*(const float *)p;
    default: return 0.0;
    }
}

/* The i-th name of "a|b|c" into buf; 0 when there is none. */
static int choice_at(const char *choices, int i, char *buf, size_t len)
{
    const char *p = choices;
    for (int k = 0; k < i; k++) {
        p = strchr(p, '|');
        if (!p) return 0;
        p++;
    }
    size_t n = strcspn(p, "|");
    if (n >= len) n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 1;
}

static int choice_index(const char *choices, const char *v)
{
    char name[64];
    for (int i = 0; choice_at(choices, i, name, sizeof name); i++)
        if (strcmp(name, v) == 0) return i;
    return -1;
}

static int in_range(const opt_spec *s, double x)
{
    int lo_ok = (s->flags & OPT_LO_OPEN) ? x > s->lo : x >= s->lo;
    return lo_ok && x <= s->hi;
}

/* A bound as text: integers exactly, other numbers with 10 digits. */
static void bound_text(double x, char *buf, size_t len)
{
    if (x == floor(x) && fabs(x) < 1e7) snprintf(buf, len, "%.0f", x);
    else snprintf(buf, len, "%.10g", x);
}

void opt_range_text(const opt_spec *s, char *buf, size_t len)
{
    if (s->type == OT_CHOICE || s->type == OT_STR) {
        snprintf(buf, len, "%s", s->type == OT_CHOICE ? s->choices : "");
        return;
    }
    const char *open = (s->flags & OPT_LO_OPEN) ? "(" : "[";
    char lo[32], hi[32];
    bound_text(s->lo, lo, sizeof lo);
    bound_text(s->hi, hi, sizeof hi);
    if (s->hi >= 1e15) snprintf(buf, len, "%s%s, inf)", open, lo);
    else snprintf(buf, len, "%s%s, %s]%s", open, lo, hi, (s->flags & OPT_EVEN) ? ", even" : "");
}

/* Edit distance of two short keys (for "did you mean"). */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

int opt_find(const opt_table *t, const char *key)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->spec[i].key, key) == 0) return i;
    return -1;
}

static fmd_status unknown_key(const opt_table *t, const char *k)
{
    for (const opt_gone *g = t->gone; g && g->key; g++)
        if (strcmp(g->key, k) == 0)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' was %s", t->fn, k, g->note);
    int best = -1, bd = 3;
    for (int i = 0; i < t->n; i++) {
        int d = distance(k, t->spec[i].key);
        if (d < bd) bd = d, best = i;
    }
    if (best >= 0)
        return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: unknown option '%s' (did you mean '%s'? `fmd "
                          "options %s` lists them)", t->fn, k, t->spec[best].key, t->consumer);
    return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: unknown option '%s' (`fmd options %s` lists them)",
                      t->fn, k, t->consumer);
}

/* Read key k of o as entry s into *v, with every check. */
static fmd_status read_value(const opt_table *t, const opt_spec *s, const fmd_options *o,
                             const char *k, opt_value *v)
{
    char range[128];
    memset(v, 0, sizeof *v);
    switch (s->type) {
    case OT_INT:
        if (fmd_options_get_i64(o, k, &v->i) != FMD_OK) {
            double f;
            if (fmd_options_get_f64(o, k, &f) == FMD_OK)
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' = %g must be an integer",
                                  t->fn, k, f);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be an integer", t->fn, k);
        }
        if (!in_range(s, (double)v->i) || ((s->flags & OPT_EVEN) && v->i % 2 != 0)) {
            opt_range_text(s, range, sizeof range);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' = %lld outside %s", t->fn, k,
                              (long long)v->i, range);
        }
        v->f = (double)v->i;
        return FMD_OK;
    case OT_NUM:
        if (fmd_options_get_f64(o, k, &v->f) != FMD_OK)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be a number", t->fn, k);
        if (!in_range(s, v->f)) {
            opt_range_text(s, range, sizeof range);
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' = %g outside %s", t->fn, k,
                              v->f, range);
        }
        return FMD_OK;
    case OT_CHOICE: {
        const char *str;
        if (fmd_options_get_str(o, k, &str) != FMD_OK)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be one of %s", t->fn, k,
                              s->choices);
        int idx = choice_index(s->choices, str);
        if (idx < 0)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' = '%.64s' (expected one of %s)",
                              t->fn, k, str, s->choices);
        v->i = idx;
        return FMD_OK;
    }
    case OT_STR:
        if (fmd_options_get_str(o, k, &v->s) != FMD_OK)
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' must be a string", t->fn, k);
        if (!v->s[0])
            return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' is empty", t->fn, k);
        return FMD_OK;
    }
    return fmd_seterr(FMD_ERR_INTERNAL, "%s: option '%s' has no type", t->fn, k);
}

void opt_defaults(const opt_table *t, void *cfg)
{
    for (int i = 0; i < t->n; i++) {
        const opt_spec *s = &t->spec[i];
        opt_value v = {(int64_t)s->def, s->def, NULL};
        store(s, cfg, &v);
    }
}

fmd_status opt_apply(const opt_table *t, const fmd_options *o, void *cfg, unsigned char *given)
{
    const int n = fmd_options_count(o);
    /* check every key before anything is stored */
    for (int i = 0; i < n; i++) {
        const char *k = fmd_options_key(o, i);
        int j = opt_find(t, k);
        if (j < 0) return unknown_key(t, k);
        opt_value v;
        fmd_status st = read_value(t, &t->spec[j], o, k, &v);
        if (st) return st;
    }
    for (int i = 0; i < n; i++) {
        const char *k = fmd_options_key(o, i);
        int j = opt_find(t, k);
        opt_value v;
        read_value(t, &t->spec[j], o, k, &v);
        store(&t->spec[j], cfg, &v);
        if (given) given[j] = 1;
    }
    return FMD_OK;
}

/* ---- conditions ------------------------------------------------------------------ */

/* One clause "key=value", "key!=value" or "key>number" holds in cfg. */
static int clause_holds(const opt_table *t, const void *cfg, const char *c, size_t len)
{
    char buf[96], val[64];
    if (len >= sizeof buf) return 0;
    memcpy(buf, c, len);
    buf[len] = '\0';
    char *op = strpbrk(buf, "!=<>");
    if (!op) return 0;
    int kind = *op == '>' ? 2 : *op == '<' ? 3 : *op == '!' ? 1 : 0;
    const char *want = op + (kind == 1 ? 2 : 1);
    *op = '\0';
    int j = opt_find(t, buf);
    if (j < 0) return 0;
    const opt_spec *s = &t->spec[j];
    if (kind == 2) return as_number(s, cfg) > atof(want);
    if (kind == 3) return as_number(s, cfg) < atof(want);
    /* want may list alternatives: "mlp|dit" */
    opt_value_text(s, cfg, val, sizeof val);
    int eq = 0;
    for (const char *w = want; !eq;) {
        size_t wl = strcspn(w, "|");
        char one[64];
        if (wl >= sizeof one) break;
        memcpy(one, w, wl);
        one[wl] = '\0';
        eq = strcmp(val, one) == 0;
        if (!eq && s->type != OT_CHOICE && s->type != OT_STR) eq = as_number(s, cfg) == atof(one);
        if (!w[wl]) break;
        w += wl + 1;
    }
    return kind == 1 ? !eq : eq;
}

fmd_status opt_check_applies(const opt_table *t, const void *cfg, const unsigned char *given)
{
    for (int i = 0; i < t->n; i++) {
        const opt_spec *s = &t->spec[i];
        if (!given || !given[i] || !s->applies) continue;
        for (const char *c = s->applies; *c;) {
            size_t len = strcspn(c, ",");
            if (!clause_holds(t, cfg, c, len))
                return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: option '%s' applies with %s only",
                                  t->fn, s->key, s->applies);
            c += len;
            if (*c == ',') c++;
        }
    }
    return FMD_OK;
}

/* ---- texts ------------------------------------------------------------------------ */

void opt_value_text(const opt_spec *s, const void *cfg, char *buf, size_t len)
{
    const void *p = cfield(s, cfg);
    if (s->type == OT_CHOICE) {
        if (!choice_at(s->choices, *(const int *)p, buf, len)) snprintf(buf, len, "?");
        return;
    }
    switch (s->store) {
    case OS_I64: snprintf(buf, len, "%lld", (long long)*(const int64_t *)p); break;
    case OS_INT: snprintf(buf, len, "%d", *(const int *)p); break;
    case OS_U64: snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case OS_F64: snprintf(buf, len, "%.17g", *(const double *)p); break;
    case OS_F32: snprintf(buf, len, "%.9g", (double)*(const float *)p); break;
    case OS_STR: snprintf(buf, len, "%s", *(const char *const *)p ? *(const char *const *)p : ""); break;
    }
}

fmd_status opt_parse_text(const opt_table *t, const opt_spec *s, const char *text, void *cfg)
{
    /* through a one-key bag, so a stored value passes the checks a given one does */
    fmd_options *o = NULL;
    opt_value v;
    fmd_status st = fmd_options_create(&o);
    if (!st) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s=%s", s->key, text);
        st = s->type == OT_CHOICE || s->type == OT_STR ? fmd_options_set_str(o, s->key, text)
                                                       : fmd_options_parse(o, kv);
    }
    if (!st) st = read_value(t, s, o, s->key, &v);
    if (!st && s->type == OT_STR) v.s = text;   /* o's copy goes with o */
    fmd_options_destroy(o);
    if (st == FMD_ERR_OOM) return st;
    if (st)
        return fmd_seterr(FMD_ERR_FORMAT, "%s: stored option '%s' = '%.64s' is not valid", t->fn,
                          s->key, text);
    store(s, cfg, &v);
    return FMD_OK;
}

int opt_same(const opt_spec *s, const void *a, const void *b)
{
    if (s->store == OS_STR) {
        const char *x = *(const char *const *)cfield(s, a), *y = *(const char *const *)cfield(s, b);
        return (!x && !y) || (x && y && strcmp(x, y) == 0);
    }
    if (s->store == OS_I64 || s->store == OS_U64)
        return memcmp(cfield(s, a), cfield(s, b), 8) == 0;
    return as_number(s, a) == as_number(s, b);
}

void opt_default_text(const opt_spec *s, char *buf, size_t len)
{
    if (s->def_text) {
        snprintf(buf, len, "%s", s->def_text);
        return;
    }
    switch (s->type) {
    case OT_INT: snprintf(buf, len, "%lld", (long long)s->def); break;
    case OT_NUM: snprintf(buf, len, "%g", s->def); break;
    case OT_CHOICE:
        if (!choice_at(s->choices, (int)s->def, buf, len)) snprintf(buf, len, "?");
        break;
    case OT_STR: snprintf(buf, len, "none"); break;
    }
}
