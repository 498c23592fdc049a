/* cli.h - shared pieces of the `fmd` command-line tool: flag parsing with
 * generated --help, one-line errors, progress display, model loading.  The
 * tool is a client of fmd.h only. */
#ifndef FMD_CLI_H
#define FMD_CLI_H

#include <stdint.h>
#include <stdio.h>
#include "fmd.h"

/* Exit codes: 0 success, 1 runtime failure (library error, I/O), 2 usage. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef enum { F_BOOL, F_STR, F_I64, F_F64, F_KV, F_OPT } flag_kind;

/* One flag of a subcommand.  F_KV flags are repeatable "key=value" pairs
 * parsed into the fmd_options pointed to by dst (created on first use).
 * F_OPT flags set one library option: "--lr X" is key "lr" of consumer
 * (the library's option tables give its help and default, so the two
 * cannot disagree) in the fmd_options at dst. */
typedef struct cli_flag {
    const char *name;     /* "--steps"                          */
    flag_kind kind;
    void *dst;            /* int*, const char**, int64_t*, double*, fmd_options** */
    const char *metavar;  /* "N" (NULL for F_BOOL)               */
    const char *help;     /* F_OPT: NULL takes the library's     */
    const char *key;      /* F_OPT: the option key               */
    const char *consumer; /* F_OPT: "distiller", "student", ...  */
} cli_flag;

typedef struct cli_cmd {
    const char *name;
    const char *usage;     /* after "fmd NAME " */
    const char *summary;   /* one line */
    const char *details;   /* printed after the flag list, may be NULL */
} cli_cmd;

/* Common flags every subcommand takes. */
typedef struct cli_common {
    int quiet, json, help;
    const char *backend;
} cli_common;

extern const char *cli_prog;   /* "fmd <subcommand>" for messages */

/* Print "fmd <cmd>: message" on stderr (one line) and return code. */
int cli_err(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The library's last error as a one-line failure. */
int cli_lib_err(const char *what);

/* Parse argv[1..] against flags (plus the common ones).  Positional
 * arguments go to pos (up to max_pos).  Returns CLI_OK, or CLI_USAGE after
 * printing the error; *help_out is set when --help was given (the help has
 * been printed then). */
int cli_parse(const cli_cmd *cmd, cli_flag *flags, int nflags, cli_common *common, int argc,
              char **argv, const char **pos, int max_pos, int *npos);
void cli_help(const cli_cmd *cmd, const cli_flag *flags, int nflags, FILE *f);
/* The option table of a library consumer ("distiller", ...) as a text table
 * (markdown = 0, for --help) or a markdown table (docs/); the keys in skip
 * (NULL-terminated, may be NULL) are left out.  Returns CLI_OK, or CLI_USAGE
 * for an unknown consumer. */
int cli_print_options(FILE *f, const char *consumer, int markdown, const char *const *skip);

/* Open the backend named by --backend (NULL: FMD_BACKEND or auto). */
int cli_backend(const cli_common *c, fmd_backend **out);
/* Teacher from "mixture:NAME", "spec:FILE", FILE.fmd, or FILE.safetensors
 * (arch needed; topts may be NULL).  Returns CLI_OK or prints an error. */
int cli_teacher(const char *spec, fmd_backend *be, const char *arch, const fmd_options *topts,
                fmd_teacher **out);
/* Parse "a,b" into two numbers / "CxHxW" into three ints. */
int cli_pair(const char *s, double *a, double *b);
int cli_shape3(const char *s, int *c, int *h, int *w);

/* Progress display: a bar with rate, ETA and live values on a terminal
 * (stderr), plain lines every few seconds otherwise. */
typedef struct cli_progress {
    int enabled, tty;
    int64_t total, start_step;
    double t0, last_print;
    int printed_bar;
} cli_progress;
void cli_progress_begin(cli_progress *p, int quiet, int64_t start_step, int64_t total);
/* extra: a short string of live values ("pred 1.2e-3 corr 4e-2"). */
void cli_progress_update(cli_progress *p, int64_t step, const char *extra, int final);
void cli_progress_end(cli_progress *p);

/* Write samples x (n, dim) to path: .npy (n, dim) or .png (2-D: a density
 * panel; images: a grid with shape and range).  shape may be NULL (inferred:
 * dim = H*W gray or 3*H*W RGB with H = W). */
int cli_write_samples(const char *path, const float *x, int64_t n, int64_t dim, const char *shape,
                      const char *range, const char *title);

/* ---- shared by the subcommands (cmd_common.c) ---- */
#include <signal.h>
/* Set by SIGINT after catch_sigint(); a second Ctrl-C ends the program. */
extern volatile sig_atomic_t g_interrupted;
void catch_sigint(void);   /* and SIGTERM */
/* Refuse an output path that cannot be written (a directory, a missing or
 * read-only directory) before any work is done.  what: "--out". */
int cli_check_writable(const char *path, const char *what);
double wall(void);                                   /* monotonic seconds */
int has_key(const fmd_options *o, const char *k);
int ensure_opts(fmd_options **o);                    /* create *o if NULL */
void json_str(FILE *f, const char *s);              /* a JSON string literal */

/* A growable series of training statistics for the loss curve. */
typedef struct {
    int64_t n, cap;
    double *step, *a, *b, *c;
} series;
void series_free(series *s);
void series_add(series *s, double step, double a, double b, double c);

/* Load the student (if given) and the teacher (if given) on the backend of --backend. */
int load_models(const cli_common *co, const char *student, const char *teacher, const char *arch,
                const fmd_options *topts, fmd_backend **be, fmd_student **S, fmd_teacher **T);

/* The distillation loop of distill and demo: progress display, loss curve, Ctrl-C. */
typedef struct {
    cli_progress prog;
    series curve;
    int64_t total;
} distill_ctx;
int distill_cb(const fmd_distill_stats *s, void *user);
int write_curve(const char *path, const series *s);
/* Run d to `steps` total steps (from where it stands). */
int run_distiller(fmd_distiller *d, int64_t steps, int quiet, distill_ctx *ctx);

/* Data parallelism (distill, train-teacher): the communicator of --comm
 * KIND (NULL: auto, the MPI ranks when started by mpirun, else one
 * process); ranks other than 0 print nothing but their errors (co->quiet,
 * no JSON).  cli_comm_end closes it, first ending every rank of the job
 * when this one failed (rc != 0), and returns rc. */
int cli_comm(const char *kind, cli_common *co, fmd_comm **out);
int cli_comm_end(fmd_comm *comm, int rc);
/* The guidance of the teacher used next to student S (may be NULL): the
 * explicit --cfg / --cfg-interval (cfg NaN, cfgi NULL when absent) win, with a
 * warning naming both when they differ from what S was distilled with;
 * otherwise what S records (fmd_student_made "guidance", noted on stderr
 * unless quiet).  *have = 0: leave the teacher as it is.  Returns CLI_OK or
 * CLI_USAGE (bad --cfg-interval, printed). */
int cli_guidance(const fmd_student *S, double cfg, const char *cfgi, int quiet, double *w,
                 double *lo, double *hi, int *have);

/* Subcommands. */
int cmd_info(int argc, char **argv);
int cmd_train_teacher(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_options(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* The metric table of the evaluator: student (may be NULL) and teacher
 * Euler at each of steps[0..nsteps-1]; printed as text or JSON on stdout.
 * Returns CLI_OK or prints an error. */
int cli_eval_table(fmd_teacher *teacher, fmd_student *student, int64_t n, int64_t seed,
                   const int *steps, int nsteps, int json, const char *indent);

#endif
