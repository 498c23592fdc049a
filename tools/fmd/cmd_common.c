/* cmd_common.c - pieces the subcommands share: Ctrl-C, the clock, option
 * helpers, JSON strings, the loss-curve series, loading the models of a
 * sample or eval run, and the distillation loop with its progress display
 * (distill and demo). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"

volatile sig_atomic_t g_interrupted = 0;
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}
void catch_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;   /* a second Ctrl-C ends the program at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);  /* kill, a batch system's stop: the same orderly end */
}

int cli_check_writable(const char *path, const char *what)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return cli_err(CLI_FAIL, "%s '%s' is a directory", what, path);
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cli_err(CLI_FAIL, "%s '%s': directory '%s' does not exist", what, path, dir);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.fmd-probe-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) return cli_err(CLI_FAIL, "%s '%s': cannot write in '%s' (%s)", what, path, dir,
                               strerror(errno));
    close(fd);
    unlink(probe);
    return CLI_OK;
}

double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int has_key(const fmd_options *o, const char *k)
{
    for (int i = 0; i < fmd_options_count(o); i++)
        if (strcmp(fmd_options_key(o, i), k) == 0) return 1;
    return 0;
}

/* Make sure *o exists. */
int ensure_opts(fmd_options **o)
{
    if (!*o && fmd_options_create(o) != FMD_OK) return cli_lib_err("out of memory");
    return CLI_OK;
}

void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

void series_free(series *s)
{
    free(s->step);
    free(s->a);
    free(s->b);
    free(s->c);
    memset(s, 0, sizeof *s);
}

void series_add(series *s, double step, double a, double b, double c)
{
    if (s->n == s->cap) {
        int64_t nc = s->cap ? 2 * s->cap : 256;
        double *p[4] = {realloc(s->step, (size_t)nc * sizeof(double)),
                        realloc(s->a, (size_t)nc * sizeof(double)),
                        realloc(s->b, (size_t)nc * sizeof(double)),
                        realloc(s->c, (size_t)nc * sizeof(double))};
        if (p[0]) s->step = p[0];
        if (p[1]) s->a = p[1];
        if (p[2]) s->b = p[2];
        if (p[3]) s->c = p[3];
        if (!p[0] || !p[1] || !p[2] || !p[3]) return;   /* curve just stops growing */
        s->cap = nc;
    }
    s->step[s->n] = step;
    s->a[s->n] = a;
    s->b[s->n] = b;
    s->c[s->n] = c;
    s->n++;
}

/* Load the student (if given) and teacher (if given). */
int load_models(const cli_common *co, const char *student, const char *teacher,
                       const char *arch, const fmd_options *topts, fmd_backend **be,
                       fmd_student **S, fmd_teacher **T)
{
    int rc = cli_backend(co, be);
    if (rc) return rc;
    if (teacher && (rc = cli_teacher(teacher, *be, arch, topts, T))) return rc;
    if (student) {
        if (access(student, R_OK) != 0)
            return cli_err(CLI_FAIL, "student '%s': %s", student, strerror(errno));
        if (fmd_student_load(student, *be, S) != FMD_OK) {
            char what[600];
            snprintf(what, sizeof what, "cannot load student '%s'", student);
            return cli_lib_err(what);
        }
    }
    return CLI_OK;
}

int distill_cb(const fmd_distill_stats *s, void *user)
{
    distill_ctx *c = user;
    series_add(&c->curve, (double)s->step, s->loss_pred, s->loss_corr, s->loss_aux);
    char extra[160];
    snprintf(extra, sizeof extra, "pred %.3g corr %.3g aux %.3g", s->loss_pred, s->loss_corr,
             s->loss_aux);
    cli_progress_update(&c->prog, s->step, extra, s->step >= c->total);
    return g_interrupted ? 1 : 0;
}

int write_curve(const char *path, const series *s)
{
    const double *ys[3] = {s->a, s->b, s->c};
    const char *names[3] = {"prediction", "correction", "auxiliary"};
    if (fmd_plot_curves(path, s->step, ys, names, 3, s->n, "distillation losses", 1, 720, 400))
        return cli_lib_err("cannot write the loss curve");
    return CLI_OK;
}

/* Run a distiller to `steps` total steps with the progress display. */
int run_distiller(fmd_distiller *d, int64_t steps, int quiet, distill_ctx *ctx)
{
    int64_t done = fmd_distiller_steps(d);
    ctx->total = steps;
    cli_progress_begin(&ctx->prog, quiet, done, steps);
    catch_sigint();
    fmd_status st = steps > done ? fmd_distiller_run(d, steps - done, distill_cb, ctx) : FMD_OK;
    cli_progress_end(&ctx->prog);
    if (st == FMD_ERR_CANCELLED && g_interrupted)
        return cli_err(CLI_FAIL, "interrupted at step %lld (the last checkpoint is kept)",
                       (long long)fmd_distiller_steps(d));
    if (st != FMD_OK) return cli_lib_err("distillation failed");
    return CLI_OK;
}

int cli_comm(const char *kind, cli_common *co, fmd_comm **out)
{
    if (fmd_comm_open(kind, NULL, out) != FMD_OK) return cli_lib_err("--comm");
    if (fmd_comm_rank(*out) != 0) {
        co->quiet = 1;
        co->json = 0;
    }
    return CLI_OK;
}

int cli_comm_end(fmd_comm *comm, int rc)
{
    if (rc != CLI_OK && fmd_comm_size(comm) > 1) {
        fflush(stdout);
        fmd_comm_abort(comm, rc);
    }
    fmd_comm_close(comm);
    return rc;
}

int cli_guidance(const fmd_student *S, double cfg, const char *cfgi, int quiet, double *w,
                 double *lo, double *hi, int *have)
{
    *w = 1;
    *lo = 0;
    *hi = 1;
    *have = 0;
    const char *rs = S ? fmd_student_made(S, "guidance") : NULL;
    const char *rlo = S ? fmd_student_made(S, "guidance_lo") : NULL;
    const char *rhi = S ? fmd_student_made(S, "guidance_hi") : NULL;
    double sw = rs ? strtod(rs, NULL) : 1, slo = rlo ? strtod(rlo, NULL) : 0,
           shi = rhi ? strtod(rhi, NULL) : 1;
    if (!isnan(cfg) || cfgi) {
        if (cfgi && cli_pair(cfgi, lo, hi) != 0)
            return cli_err(CLI_USAGE, "--cfg-interval expects LO,HI (got '%s')", cfgi);
        if (!cfgi && rs && sw != 1) {   /* --cfg alone keeps the student's interval */
            *lo = slo;
            *hi = shi;
        }
        *w = isnan(cfg) ? (rs ? sw : 1.0) : cfg;
        *have = 1;
        /* the record holds the float the distiller used */
        if (rs && ((float)*w != (float)sw ||
                   (sw != 1 && ((float)*lo != (float)slo || (float)*hi != (float)shi))))
            fprintf(stderr, "%s: warning: the teacher's guidance here is %g on [%g, %g], but the "
                    "student was distilled with guidance %g on [%g, %g]\n", cli_prog, *w, *lo, *hi,
                    sw, slo, shi);
        return CLI_OK;
    }
    if (rs && sw != 1) {
        *w = sw;
        *lo = slo;
        *hi = shi;
        *have = 1;
        if (!quiet)
            fprintf(stderr, "%s: the teacher uses the student's guidance %g on [%g, %g] (override "
                    "with --cfg)\n", cli_prog, sw, slo, shi);
    }
    return CLI_OK;
}
