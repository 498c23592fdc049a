/* distill_ring8.c - distil the built-in ring8 mixture teacher into a one-step
 * student without data, and print how it compares with the teacher's own
 * ODE solver.  Uses only the public header.
 *
 *   distill_ring8 [steps] [student.fmd]
 *
 * Build: cc distill_ring8.c $(pkg-config --cflags --libs fmd) -o distill_ring8 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fmd.h"

#define TRY(expr)                                                                     \
    do {                                                                              \
        fmd_status st_ = (expr);                                                      \
        if (st_ != FMD_OK) {                                                          \
            fprintf(stderr, "%s failed: %s: %s\n", #expr, fmd_status_name(st_),      \
                    fmd_last_error());                                                \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

static int progress(const fmd_distill_stats *s, void *user)
{
    (void)user;
    fprintf(stderr, "step %6lld  |Delta_G| %.4f  |v_N - v| %.4f  lambda %.3f  %.0f steps/s\n",
            (long long)s->step, s->delta_norm, s->vdiff_norm, s->lambda, s->steps_per_s);
    return 0;
}

static void print_row(const char *name, const fmd_eval_result *r)
{
    printf("| %-20s | %4lld | %9.5f | %9.5f | %5d/%d |\n", name, (long long)r->nfe, r->map_error,
           r->energy_distance, r->modes_covered, r->modes_total);
}

int main(int argc, char **argv)
{
    long long steps = argc > 1 ? atoll(argv[1]) : 4000;
    const char *out = argc > 2 ? argv[2] : NULL;
    fmd_backend *be;
    fmd_teacher *teacher;
    fmd_student *student, *ema;
    fmd_distiller *dist;
    fmd_options *sopt, *dopt;
    TRY(fmd_backend_open(NULL, &be));
    TRY(fmd_teacher_create_preset("ring8", &teacher));

    /* a small MLP student; the settings the benchmark found to work */
    TRY(fmd_options_create(&sopt));
    TRY(fmd_options_set_i64(sopt, "width", 128));
    TRY(fmd_options_set_i64(sopt, "temb_dim", 64));
    TRY(fmd_options_create(&dopt));
    TRY(fmd_options_set_i64(dopt, "progress_every", steps >= 10 ? steps / 10 : 1));
    TRY(fmd_student_create(teacher, be, sopt, &student));
    TRY(fmd_distiller_create(teacher, student, be, dopt, &dist));

    printf("distilling ring8 on %s for %lld steps\n", fmd_backend_device(be), steps);
    fflush(stdout);
    TRY(fmd_distiller_run(dist, steps, progress, NULL));
    TRY(fmd_distiller_ema_student(dist, &ema));
    if (out) {
        TRY(fmd_student_save(ema, out));
        printf("student saved to %s\n", out);
    }

    /* score against the teacher's Dormand-Prince solution on 2000 noises */
    fmd_evaluator *ev;
    TRY(fmd_evaluator_create(teacher, NULL, &ev));
    fmd_eval_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    printf("\n| %-20s | %4s | %9s | %9s | %7s |\n", "sampler", "NFE", "map err", "energy", "modes");
    printf("|----------------------|------|-----------|-----------|---------|\n");
    static const int ks[] = {1, 2, 4, 8, 16};
    for (int i = 0; i < 5; i++) {
        fmd_options *so;
        char name[32];
        TRY(fmd_options_create(&so));
        TRY(fmd_options_set_str(so, "solver", "euler"));
        TRY(fmd_options_set_i64(so, "steps", ks[i]));
        TRY(fmd_evaluator_teacher(ev, so, &r));
        snprintf(name, sizeof name, "teacher Euler-%d", ks[i]);
        print_row(name, &r);
        fmd_options_destroy(so);
    }
    TRY(fmd_evaluator_student(ev, ema, &r));
    print_row("student (1 step)", &r);
    printf("\nenergy distance between two teacher sample sets (floor): %.5f\n", r.energy_floor);

    fmd_evaluator_destroy(ev);
    fmd_distiller_destroy(dist);
    fmd_student_destroy(student);
    fmd_options_destroy(sopt);
    fmd_options_destroy(dopt);
    fmd_teacher_destroy(teacher);
    fmd_backend_destroy(be);
    return 0;
}
