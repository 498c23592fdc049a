/* options.c - fmd_options: a small ordered bag of typed key/value pairs. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

enum { OPT_F64, OPT_I64, OPT_STR };
#define OPT_KEY_MAX 64

typedef struct {
    char key[OPT_KEY_MAX];
    int type;
    double f;
    int64_t i;
    char *s;
} opt_entry;

struct fmd_options {
    opt_entry *e;
    int n, cap;
};

fmd_status fmd_options_create(fmd_options **out)
{
    FMD_CHECK_ARG(out, "fmd_options_create: out is NULL");
    fmd_options *o = fmd_xcalloc(1, sizeof *o, "fmd_options");
    if (!o) return FMD_ERR_OOM;
    *out = o;
    return FMD_OK;
}

void fmd_options_destroy(fmd_options *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) fmd_free(o->e[i].s);
    fmd_free(o->e);
    fmd_free(o);
}

static opt_entry *find(const fmd_options *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->e[i].key, key) == 0) return &o->e[i];
    return NULL;
}

static fmd_status slot(fmd_options *o, const char *fn, const char *key, opt_entry **out)
{
    FMD_CHECK_ARG(o, "%s: opts is NULL", fn);
    FMD_CHECK_ARG(key && key[0], "%s: key is NULL or empty", fn);
    FMD_CHECK_ARG(strlen(key) < OPT_KEY_MAX, "%s: key '%.40s...' longer than %d bytes", fn, key,
                  OPT_KEY_MAX - 1);
    opt_entry *e = find(o, key);
    if (!e) {
        if (o->n == o->cap) {
            int cap = o->cap ? 2 * o->cap : 16;
            opt_entry *ne = fmd_realloc(o->e, (size_t)cap * sizeof *ne);
            if (!ne) return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", fn);
            o->e = ne;
            o->cap = cap;
        }
        e = &o->e[o->n++];
        memset(e, 0, sizeof *e);
        strcpy(e->key, key);
    }
    fmd_free(e->s);
    e->s = NULL;
    *out = e;
    return FMD_OK;
}

fmd_status fmd_options_set_f64(fmd_options *o, const char *key, double v)
{
    if (!isfinite(v))
        return fmd_seterr(FMD_ERR_NONFINITE, "fmd_options_set_f64: value of '%s' is not finite",
                          key ? key : "(null)");
    opt_entry *e = NULL;
    fmd_status st = slot(o, "fmd_options_set_f64", key, &e);
    if (st) return st;
    e->type = OPT_F64;
    e->f = v;
    return FMD_OK;
}

fmd_status fmd_options_set_i64(fmd_options *o, const char *key, int64_t v)
{
    opt_entry *e = NULL;
    fmd_status st = slot(o, "fmd_options_set_i64", key, &e);
    if (st) return st;
    e->type = OPT_I64;
    e->i = v;
    e->f = (double)v;
    return FMD_OK;
}

fmd_status fmd_options_set_str(fmd_options *o, const char *key, const char *v)
{
    FMD_CHECK_ARG(v, "fmd_options_set_str: value of '%s' is NULL", key ? key : "(null)");
    char *copy = fmd_strdup(v);
    if (!copy) return fmd_seterr(FMD_ERR_OOM, "fmd_options_set_str: out of memory");
    opt_entry *e = NULL;
    fmd_status st = slot(o, "fmd_options_set_str", key, &e);
    if (st) { fmd_free(copy); return st; }
    e->type = OPT_STR;
    e->s = copy;
    return FMD_OK;
}

fmd_status fmd_options_parse(fmd_options *o, const char *kv)
{
    FMD_CHECK_ARG(o && kv, "fmd_options_parse: NULL argument");
    const char *eq = strchr(kv, '=');
    FMD_CHECK_ARG(eq && eq != kv, "fmd_options_parse: expected key=value, got '%s'", kv);
    char key[OPT_KEY_MAX];
    size_t kl = (size_t)(eq - kv);
    FMD_CHECK_ARG(kl < OPT_KEY_MAX, "fmd_options_parse: key too long in '%s'", kv);
    memcpy(key, kv, kl);
    key[kl] = '\0';
    const char *val = eq + 1;
    char *end;
    errno = 0;
    long long iv = strtoll(val, &end, 10);
    if (*val && !*end && errno == 0) return fmd_options_set_i64(o, key, (int64_t)iv);
    errno = 0;
    double dv = strtod(val, &end);
    if (*val && !*end && errno == 0) return fmd_options_set_f64(o, key, dv);
    return fmd_options_set_str(o, key, val);
}

static fmd_status get(const fmd_options *o, const char *fn, const char *key, opt_entry **out)
{
    FMD_CHECK_ARG(o && key, "%s: NULL argument", fn);
    opt_entry *e = find(o, key);
    FMD_CHECK_ARG(e, "%s: no option '%s'", fn, key);
    *out = e;
    return FMD_OK;
}

fmd_status fmd_options_get_f64(const fmd_options *o, const char *key, double *out)
{
    opt_entry *e = NULL;
    fmd_status st = get(o, "fmd_options_get_f64", key, &e);
    if (st) return st;
    FMD_CHECK_ARG(out, "fmd_options_get_f64: out is NULL");
    FMD_CHECK_ARG(e->type != OPT_STR, "fmd_options_get_f64: option '%s' is a string", key);
    *out = e->f;
    return FMD_OK;
}

fmd_status fmd_options_get_i64(const fmd_options *o, const char *key, int64_t *out)
{
    opt_entry *e = NULL;
    fmd_status st = get(o, "fmd_options_get_i64", key, &e);
    if (st) return st;
    FMD_CHECK_ARG(out, "fmd_options_get_i64: out is NULL");
    FMD_CHECK_ARG(e->type == OPT_I64, "fmd_options_get_i64: option '%s' is not an integer", key);
    *out = e->i;
    return FMD_OK;
}

fmd_status fmd_options_get_str(const fmd_options *o, const char *key, const char **out)
{
    opt_entry *e = NULL;
    fmd_status st = get(o, "fmd_options_get_str", key, &e);
    if (st) return st;
    FMD_CHECK_ARG(out, "fmd_options_get_str: out is NULL");
    FMD_CHECK_ARG(e->type == OPT_STR, "fmd_options_get_str: option '%s' is not a string", key);
    *out = e->s;
    return FMD_OK;
}

int fmd_options_count(const fmd_options *o) { return o ? o->n : 0; }

const char *fmd_options_key(const fmd_options *o, int i)
{
    return (o && i >= 0 && i < o->n) ? o->e[i].key : NULL;
}

fmd_status fmd_options_copy_into(fmd_options *dst, const fmd_options *src)
{
    for (int i = 0; src && i < src->n; i++) {
        const opt_entry *e = &src->e[i];
        fmd_status st = e->type == OPT_STR   ? fmd_options_set_str(dst, e->key, e->s)
                        : e->type == OPT_I64 ? fmd_options_set_i64(dst, e->key, e->i)
                                             : fmd_options_set_f64(dst, e->key, e->f);
        if (st) return st;
    }
    return FMD_OK;
}
