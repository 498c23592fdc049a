/* fuzz_spec.c - libFuzzer target for the mixture spec text
 * (gmm_parse_spec, what fmd_teacher_load_spec reads): a parsed mixture is
 * also asked for a velocity, so that accepted values are usable ones. */
#include <stdlib.h>
#include <string.h>
#include "algo/gmm.h"
#include "fmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16)) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    gmm *g = NULL;
    if (gmm_parse_spec(text, "fuzz", &g) == FMD_OK) {
        fmd_teacher *T = NULL;
        if (fmd_teacher_create_mixture(g->d, g->k, g->w, g->mu, g->s, g->cls, g->num_classes,
                                       &T) == FMD_OK && g->d <= 4096) {
            float *x = calloc((size_t)g->d, sizeof(float)), *v = calloc((size_t)g->d, sizeof(float));
            float t = 0.5f;
            int32_t lab = g->num_classes;   /* the null class */
            if (x && v) (void)fmd_teacher_velocity(T, v, x, &t, g->num_classes ? &lab : NULL, 1);
            free(x);
            free(v);
        }
        fmd_teacher_destroy(T);
        gmm_destroy(g);
    }
    free(text);
    return 0;
}
