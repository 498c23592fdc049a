/* cli.c - the shared pieces of the `fmd` tool (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_prog = "fmd";

int cli_err(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one line: newlines in library messages become spaces */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "%s: %s\n", cli_prog, msg);
    return code;
}

/* Exit codes (docs/cli.md): a value the library refuses as invalid
 * (FMD_ERR_INVALID_ARG: a bad option or argument) is a usage error, 2; every
 * other failure is 1. */
int cli_lib_err(const char *what)
{
    fmd_status st = fmd_last_status();
    return cli_err(st == FMD_ERR_INVALID_ARG ? CLI_USAGE : CLI_FAIL, "%s: %s (%s)", what,
                   fmd_last_error(), fmd_status_name(st));
}

/* The library's index of key in consumer's table, or -1. */
static int option_index(const char *consumer, const char *key)
{
    char k[64];
    for (int i = 0; i < fmd_option_count(consumer); i++)
        if (fmd_option_describe(consumer, i, FMD_OPTION_KEY, k, sizeof k) == FMD_OK &&
            strcmp(k, key) == 0)
            return i;
    return -1;
}

static void option_field(const char *consumer, int i, int what, char *buf, size_t len)
{
    if (fmd_option_describe(consumer, i, what, buf, len) != FMD_OK) snprintf(buf, len, "?");
}

/* s into f with '|' escaped, so a markdown table cell holds it. */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

int cli_print_options(FILE *f, const char *consumer, int markdown, const char *const *skip)
{
    int n = fmd_option_count(consumer);
    if (n < 0) return cli_err(CLI_USAGE, "unknown option table '%s' (see fmd options)", consumer);
    if (markdown)
        fprintf(f, "| key | type | default | range | applies | meaning |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        char key[64], type[16], def[128], range[128], applies[128], help[512];
        option_field(consumer, i, FMD_OPTION_KEY, key, sizeof key);
        int skipped = 0;
        for (int j = 0; skip && skip[j]; j++) skipped |= strcmp(skip[j], key) == 0;
        if (skipped) continue;
        option_field(consumer, i, FMD_OPTION_TYPE, type, sizeof type);
        option_field(consumer, i, FMD_OPTION_DEFAULT, def, sizeof def);
        option_field(consumer, i, FMD_OPTION_RANGE, range, sizeof range);
        option_field(consumer, i, FMD_OPTION_APPLIES, applies, sizeof applies);
        option_field(consumer, i, FMD_OPTION_HELP, help, sizeof help);
        if (markdown) {
            const char *cells[] = {type, def, range, applies, help};
            fprintf(f, "| `%s` |", key);
            for (int c = 0; c < 5; c++) {
                fputc(' ', f);
                md_cell(f, cells[c]);
                fputs(" |", f);
            }
            fputc('\n', f);
        } else {
            fprintf(f, "  %-18s %s (default %s%s%s%s%s)\n", key, help, def, range[0] ? "; " : "",
                    range, applies[0] ? "; with " : "", applies);
        }
    }
    return CLI_OK;
}

static const cli_flag k_common[] = {
    {"--backend", F_STR, NULL, "NAME", "cpu, cuda or auto (default: $FMD_BACKEND, else auto)"},
    {"--quiet", F_BOOL, NULL, NULL, "no progress output"},
    {"--json", F_BOOL, NULL, NULL, "print the result as JSON on stdout"},
    {"--help", F_BOOL, NULL, NULL, "show this help"},
};

void cli_help(const cli_cmd *cmd, const cli_flag *flags, int nflags, FILE *f)
{
    fprintf(f, "usage: fmd %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->usage, cmd->summary);
    for (int pass = 0; pass < 2; pass++) {
        const cli_flag *fl = pass ? k_common : flags;
        int n = pass ? (int)(sizeof k_common / sizeof k_common[0]) : nflags;
        for (int i = 0; i < n; i++) {
            char left[64];
            snprintf(left, sizeof left, "%s%s%s", fl[i].name, fl[i].metavar ? " " : "",
                     fl[i].metavar ? fl[i].metavar : "");
            if (fl[i].kind == F_OPT && !fl[i].help) {
                /* the library's help and default for the key */
                int k = option_index(fl[i].consumer, fl[i].key);
                char help[512] = "?", def[128] = "?";
                if (k >= 0) {
                    option_field(fl[i].consumer, k, FMD_OPTION_HELP, help, sizeof help);
                    option_field(fl[i].consumer, k, FMD_OPTION_DEFAULT, def, sizeof def);
                }
                fprintf(f, "  %-26s %s (default %s)\n", left, help, def);
            } else {
                fprintf(f, "  %-26s %s\n", left, fl[i].help);
            }
        }
    }
    if (cmd->details) fprintf(f, "\n%s", cmd->details);
}

static int parse_value(const cli_flag *fl, const char *v)
{
    char *end;
    switch (fl->kind) {
    case F_STR:
        *(const char **)fl->dst = v;
        return CLI_OK;
    case F_I64: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) return cli_err(CLI_USAGE, "%s expects an integer (got '%s')", fl->name, v);
        *(int64_t *)fl->dst = x;
        return CLI_OK;
    }
    case F_F64: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return cli_err(CLI_USAGE, "%s expects a number (got '%s')", fl->name, v);
        *(double *)fl->dst = x;
        return CLI_OK;
    }
    case F_KV: {
        fmd_options **o = (fmd_options **)fl->dst;
        if (!*o && fmd_options_create(o) != FMD_OK) return cli_lib_err(fl->name);
        if (fmd_options_parse(*o, v) != FMD_OK)
            return cli_err(CLI_USAGE, "%s expects key=value (got '%s')", fl->name, v);
        return CLI_OK;
    }
    case F_OPT: {
        fmd_options **o = (fmd_options **)fl->dst;
        char kv[600];
        if (!*o && fmd_options_create(o) != FMD_OK) return cli_lib_err(fl->name);
        if (!*v) return cli_err(CLI_USAGE, "%s needs a value", fl->name);
        snprintf(kv, sizeof kv, "%s=%s", fl->key, v);
        if (fmd_options_parse(*o, kv) != FMD_OK) return cli_lib_err(fl->name);
        return CLI_OK;
    }
    default:
        return CLI_OK;
    }
}

int cli_parse(const cli_cmd *cmd, cli_flag *flags, int nflags, cli_common *common, int argc,
              char **argv, const char **pos, int max_pos, int *npos)
{
    static char prog[64];
    snprintf(prog, sizeof prog, "fmd %s", cmd->name);
    cli_prog = prog;
    memset(common, 0, sizeof *common);
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == 0) {
            if (*npos >= max_pos)
                return cli_err(CLI_USAGE, "unexpected argument '%s' (see fmd %s --help)", a, cmd->name);
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_help(cmd, flags, nflags, stdout);
            common->help = 1;
            return CLI_OK;
        }
        /* --flag=value form */
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a, nl);
        name[nl] = 0;
        if (eq) val = eq + 1;
        if (strcmp(name, "--quiet") == 0 || strcmp(name, "-q") == 0) {
            common->quiet = 1;
            continue;
        }
        if (strcmp(name, "--json") == 0) {
            common->json = 1;
            continue;
        }
        if (strcmp(name, "--backend") == 0) {
            if (!val) {
                if (i + 1 >= argc) return cli_err(CLI_USAGE, "--backend needs a value");
                val = argv[++i];
            }
            common->backend = val;
            continue;
        }
        const cli_flag *fl = NULL;
        for (int k = 0; k < nflags; k++)
            if (strcmp(flags[k].name, name) == 0) fl = &flags[k];
        if (!fl) return cli_err(CLI_USAGE, "unknown flag '%s' (see fmd %s --help)", name, cmd->name);
        if (fl->kind == F_BOOL) {
            if (val) return cli_err(CLI_USAGE, "%s takes no value", fl->name);
            *(int *)fl->dst = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) return cli_err(CLI_USAGE, "%s needs a value (%s)", fl->name, fl->metavar);
            val = argv[++i];
        }
        int rc = parse_value(fl, val);
        if (rc) return rc;
    }
    return CLI_OK;
}

int cli_backend(const cli_common *c, fmd_backend **out)
{
    if (fmd_backend_open(c->backend, out) != FMD_OK) return cli_lib_err("cannot open the backend");
    return CLI_OK;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int cli_teacher(const char *spec, fmd_backend *be, const char *arch, const fmd_options *topts,
                fmd_teacher **out)
{
    fmd_status st;
    if (strncmp(spec, "mixture:", 8) == 0) {
        st = fmd_teacher_create_preset(spec + 8, out);
    } else if (strncmp(spec, "spec:", 5) == 0) {
        st = fmd_teacher_load_spec(spec + 5, out);
    } else if (ends_with(spec, ".safetensors")) {
        if (!arch) return cli_err(CLI_USAGE, "teacher '%s': a safetensors teacher needs --arch", spec);
        st = fmd_teacher_load_safetensors(be, spec, arch, topts, out);
    } else {
        if (access(spec, R_OK) != 0)
            return cli_err(CLI_FAIL, "teacher '%s': no such file (expected mixture:NAME, spec:FILE, "
                           "FILE.fmd or FILE.safetensors)", spec);
        st = fmd_teacher_load(be, spec, topts, out);
    }
    if (st != FMD_OK) {
        char what[600];
        snprintf(what, sizeof what, "cannot load teacher '%s'", spec);
        return cli_lib_err(what);
    }
    return CLI_OK;
}

int cli_pair(const char *s, double *a, double *b)
{
    char *end;
    *a = strtod(s, &end);
    if (end == s || *end != ',') return -1;
    const char *t = end + 1;
    *b = strtod(t, &end);
    if (end == t || *end) return -1;
    return isfinite(*a) && isfinite(*b) ? 0 : -1;
}

int cli_shape3(const char *s, int *c, int *h, int *w)
{
    char tail;
    if (sscanf(s, "%dx%dx%d%c", c, h, w, &tail) != 3) return -1;
    return (*c >= 1 && *h >= 1 && *w >= 1) ? 0 : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_begin(cli_progress *p, int quiet, int64_t start_step, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->enabled = !quiet;
    p->tty = isatty(2);
    p->total = total;
    p->start_step = start_step;
    p->t0 = p->last_print = now_s();
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_update(cli_progress *p, int64_t step, const char *extra, int final)
{
    if (!p->enabled) return;
    double t = now_s(), el = t - p->t0;
    double rate = el > 0 ? (double)(step - p->start_step) / el : 0;
    double eta = rate > 0 ? (double)(p->total - step) / rate : -1;
    char etas[32], els[32];
    fmt_time(etas, sizeof etas, eta);
    fmt_time(els, sizeof els, el);
    if (p->tty) {
        if (!final && t - p->last_print < 0.1) return;
        p->last_print = t;
        const int W = 24;
        int fill = p->total > 0 ? (int)((double)W * (double)step / (double)p->total) : W;
        if (fill > W) fill = W;
        char bar[32];
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        fprintf(stderr, "\r[%s] %lld/%lld  %.0f it/s  %s  ETA %s  %s\033[K", bar, (long long)step,
                (long long)p->total, rate, els, etas, extra ? extra : "");
        p->printed_bar = 1;
        if (final) {
            fputc('\n', stderr);
            p->printed_bar = 0;
        }
        fflush(stderr);
    } else {
        if (!final && t - p->last_print < 5.0) return;
        p->last_print = t;
        fprintf(stderr, "step %lld/%lld  %.0f it/s  elapsed %s  ETA %s  %s\n", (long long)step,
                (long long)p->total, rate, els, etas, extra ? extra : "");
        fflush(stderr);
    }
}

void cli_progress_end(cli_progress *p)
{
    if (p->enabled && p->tty && p->printed_bar) {
        fputc('\n', stderr);
        p->printed_bar = 0;
    }
}

int cli_write_samples(const char *path, const float *x, int64_t n, int64_t dim, const char *shape,
                      const char *range, const char *title)
{
    fmd_status st;
    if (ends_with(path, ".npy")) {
        int64_t sh[2] = {n, dim};
        st = fmd_npy_save(path, "f4", 2, sh, x);
    } else if (ends_with(path, ".png")) {
        if (dim == 2 && !shape) {
            const float *pts[1] = {x};
            int64_t cnt[1] = {n};
            const char *tt[1] = {title};
            st = fmd_plot_density_panels(path, 1, pts, cnt, tt, NULL, 384);
        } else {
            int c = 0, h = 0, w = 0;
            if (shape) {
                if (cli_shape3(shape, &c, &h, &w) != 0)
                    return cli_err(CLI_USAGE, "--shape expects CxHxW (got '%s')", shape);
                if ((int64_t)c * h * w != dim)
                    return cli_err(CLI_USAGE, "--shape %s has %lld numbers but samples have %lld",
                                   shape, (long long)c * h * w, (long long)dim);
            } else {
                for (int cc = 1; cc <= 3 && !c; cc += 2) {
                    if (dim % cc) continue;
                    int64_t hw = dim / cc, s = (int64_t)llround(sqrt((double)hw));
                    if (s * s == hw) c = cc, h = w = (int)s;
                }
                if (!c)
                    return cli_err(CLI_USAGE, "cannot draw %lld-number samples as a picture: give "
                                   "--shape CxHxW or write .npy", (long long)dim);
            }
            if (c != 1 && c != 3)
                return cli_err(CLI_USAGE, "pictures need 1 or 3 channels (got %d): write .npy", c);
            double lo = -1, hi = 1;
            if (range && (cli_pair(range, &lo, &hi) != 0 || !(hi > lo)))
                return cli_err(CLI_USAGE, "--range expects LO,HI with LO < HI (got '%s')", range);
            st = fmd_plot_image_grid(path, x, n > 1024 ? 1024 : n, c, h, w, 0, (float)lo, (float)hi);
        }
    } else {
        return cli_err(CLI_USAGE, "output '%s': expected a .png or .npy file name", path);
    }
    if (st != FMD_OK) return cli_lib_err("cannot write the samples");
    return CLI_OK;
}

int cli_eval_table(fmd_teacher *teacher, fmd_student *student, int64_t n, int64_t seed,
                   const int *steps, int nsteps, int json, const char *indent)
{
    fmd_options *eo = NULL;
    fmd_evaluator *ev = NULL;
    int rc = CLI_OK;
    if (fmd_options_create(&eo) || fmd_options_set_i64(eo, "n", n) ||
        fmd_options_set_i64(eo, "seed", seed) || fmd_evaluator_create(teacher, eo, &ev)) {
        fmd_options_destroy(eo);
        return cli_lib_err("cannot create the evaluator");
    }
    fmd_options_destroy(eo);
    int rows = nsteps + (student ? 1 : 0);
    if (json) printf("%s[", indent ? indent : "");
    else
        printf("%-22s %10s %10s %10s %8s %10s %6s\n", "sampler", "map_err", "energy", "floor",
               "modes", "mass_err", "NFE");
    for (int r = 0; r < rows; r++) {
        fmd_eval_result res;
        memset(&res, 0, sizeof res);
        res.struct_size = sizeof res;
        char name[64];
        fmd_status st;
        if (student && r == 0) {
            snprintf(name, sizeof name, "student 1-step");
            st = fmd_evaluator_student(ev, student, &res);
        } else {
            int k = steps[r - (student ? 1 : 0)];
            snprintf(name, sizeof name, "teacher euler %d", k);
            fmd_options *so = NULL;
            st = fmd_options_create(&so);
            if (!st) st = fmd_options_set_str(so, "solver", "euler");
            if (!st) st = fmd_options_set_i64(so, "steps", k);
            if (!st) st = fmd_evaluator_teacher(ev, so, &res);
            fmd_options_destroy(so);
        }
        if (st) {
            rc = cli_lib_err("evaluation failed");
            break;
        }
        if (json) {
            printf("%s{\"sampler\": \"%s\", \"n\": %lld, \"map_error\": %.6g, \"energy_distance\": "
                   "%.6g, \"energy_floor\": %.6g, \"modes_covered\": %d, \"modes_total\": %d, "
                   "\"mass_error\": %.6g, \"nfe\": %lld, \"seconds\": %.6g}",
                   r ? ", " : "", name, (long long)res.n, res.map_error, res.energy_distance,
                   res.energy_floor, res.modes_covered, res.modes_total, res.mass_error,
                   (long long)res.nfe, res.seconds);
        } else {
            char modes[32], mass[32];
            if (res.modes_total >= 0) {
                snprintf(modes, sizeof modes, "%d/%d", res.modes_covered, res.modes_total);
                snprintf(mass, sizeof mass, "%.4g", res.mass_error);
            } else {
                snprintf(modes, sizeof modes, "-");
                snprintf(mass, sizeof mass, "-");
            }
            printf("%-22s %10.4g %10.4g %10.4g %8s %10s %6lld\n", name, res.map_error,
                   res.energy_distance, res.energy_floor, modes, mass, (long long)res.nfe);
        }
    }
    if (json) printf("]");
    fflush(stdout);
    fmd_evaluator_destroy(ev);
    return rc;
}
