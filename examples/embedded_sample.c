/* embedded_sample.c - one-step generation on a small box: load a distilled
 * student (.fmd), draw n samples with one network evaluation each, write a
 * PNG (a density picture for 2-D students, an image grid otherwise).
 *   embedded_sample student.fmd out.png [n] [seed]
 * Build: cc embedded_sample.c $(pkg-config --cflags --libs fmd) */
#include <stdio.h>
#include <stdlib.h>
#include "fmd.h"

static int fail(const char *what)
{
    fprintf(stderr, "embedded_sample: %s: %s\n", what, fmd_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (argc > 3 && atoll(argv[3]) < 1)) {
        fprintf(stderr, "usage: %s student.fmd out.png [n >= 1] [seed]\n", argv[0]);
        return 2;
    }
    int64_t n = argc > 3 ? atoll(argv[3]) : 4096;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    fmd_backend *be = NULL;
    fmd_student *s = NULL;
    if (fmd_backend_open(NULL, &be) || fmd_student_load(argv[1], be, &s)) return fail("load");
    int64_t d = fmd_student_dim(s);
    float *z = malloc(sizeof(float) * n * d), *x = malloc(sizeof(float) * n * d);
    float *delta = malloc(sizeof(float) * n);
    int32_t *labels = fmd_student_num_classes(s) ? malloc(sizeof(int32_t) * n) : NULL;
    if (!z || !x || !delta) return 1;
    for (int64_t i = 0; i < n; i++) {
        delta[i] = 1.0f; /* the whole way from noise (t = 1) to data (t = 0) */
        if (labels) labels[i] = (int32_t)(i % fmd_student_num_classes(s));
    }
    fmd_status st = fmd_prior_noise(z, n, d, seed, 0);
    if (!st) st = fmd_student_forward(s, z, delta, labels, n, x); /* x = f(z, 1) */
    if (st) return fail("sample");
    int c = d % 3 == 0 && d > 3 ? 3 : 1, side = 1;
    while ((int64_t)(side + 1) * (side + 1) * c <= d) side++;
    if (d == 2) {
        const float *pts[1] = {x};
        const char *title[1] = {"one-step student"};
        st = fmd_plot_density_panels(argv[2], 1, pts, &n, title, NULL, 512);
    } else if ((int64_t)side * side * c == d) {
        st = fmd_plot_image_grid(argv[2], x, n < 64 ? n : 64, c, side, side, 0, -1.0f, 1.0f);
    } else {
        fprintf(stderr, "embedded_sample: dim %lld is neither 2-D nor an image\n", (long long)d);
        return 1;
    }
    if (st) return fail("write png");
    printf("wrote %s: %lld samples of dim %lld, one network evaluation each\n", argv[2],
           (long long)n, (long long)d);
    free(z), free(x), free(delta), free(labels);
    fmd_student_destroy(s);
    fmd_backend_destroy(be);
    return 0;
}
