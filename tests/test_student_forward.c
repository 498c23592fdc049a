/* test_student_forward.c - how fmd_student_forward sizes its passes on the
 * CPU (lib/api/student.c, reserve_forward): a fresh student sized by a small
 * call grows its chunk with a larger one (up to 1024 rows), the result does
 * not depend on how the rows were split into calls, a growth that cannot be
 * allocated falls back to the passes there were, and a distiller's arena is
 * left as the distiller sized it.  (On a device backend the chunk goes up
 * to 16,384 rows: test_cross_backend checks that against the CUDA plugin.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "api/student_internal.h"
#include "testutil.h"
#include "fmd.h"

#define N 3000

static double max_rel(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)a[i]) + 1e-3);
        if (!(d <= m)) m = d;
    }
    return m;
}

int main(void)
{
    fmd_backend *be = NULL;
    fmd_teacher *T = NULL;
    fmd_student *S = NULL;
    fmd_options *so = NULL, *dopt = NULL;
    fmd_distiller *D = NULL;
    static float z[N * 2], dl[N], whole[N * 2], parts[N * 2], again[N * 2];
    CHECK_OK(fmd_backend_open("cpu", &be));
    CHECK_OK(fmd_teacher_create_preset("ring8", &T));
    CHECK_OK(fmd_options_create(&so));
    CHECK_OK(fmd_options_parse(so, "width=32"));
    CHECK_OK(fmd_options_parse(so, "depth=3"));
    CHECK_OK(fmd_options_parse(so, "temb_dim=16"));
    CHECK_OK(fmd_student_create(T, be, so, &S));
    if (!S) return tu_finish("test_student_forward");
    tu_seed(4);
    tu_fill_normal(z, N * 2, 1.0f);
    for (int i = 0; i < N; i++) dl[i] = (float)((i % 50) + 1) / 50.0f;

    /* a first call of 5 rows sizes the passes at 5 rows... */
    CHECK(student_forward_chunk(S) == 0);
    CHECK_OK(fmd_student_forward(S, z, dl, NULL, 5, parts));
    CHECK(student_forward_chunk(S) == 5);
    /* ...and the next, larger call grows them, to 1024 rows at most */
    CHECK_OK(fmd_student_forward(S, z, dl, NULL, 700, parts));
    CHECK(student_forward_chunk(S) == 700);
    CHECK_OK(fmd_student_forward(S, z, dl, NULL, N, whole));
    CHECK_MSG(student_forward_chunk(S) == 1024, "chunk %lld", (long long)student_forward_chunk(S));
    /* the same rows in calls of 5, 700 and the rest */
    CHECK_OK(fmd_student_forward(S, z, dl, NULL, 5, parts));
    CHECK_OK(fmd_student_forward(S, z + 10, dl + 5, NULL, 700, parts + 10));
    CHECK_OK(fmd_student_forward(S, z + 1410, dl + 705, NULL, N - 705, parts + 1410));
    double e = max_rel(whole, parts, N * 2);
    CHECK_MSG(e <= 1e-5, "the split into calls changed the result by %.3g", e);
    CHECK(student_forward_chunk(S) == 1024);

    /* Growing the arena frees the old one first (nn_model_reserve): when the
     * new one cannot be had, the old size comes back and the call still
     * succeeds in the smaller passes (lib/api/student.c, grow_arena).  The
     * same restore keeps a distiller's batch on a device backend. */
    CHECK_OK(fmd_set_allocator(tu_malloc, tu_realloc, tu_free, NULL));
    for (long fail_at = 0; fail_at < 12; fail_at++) {
        for (int sticky = 0; sticky < 2; sticky++) {
            fmd_student *S2 = NULL;
            tu_alloc.fail_at = -1;
            long live0 = tu_alloc.live;
            CHECK_OK(fmd_student_create(T, be, so, &S2));
            if (!S2) break;
            CHECK_OK(fmd_student_forward(S2, z, dl, NULL, 700, again));
            tu_alloc.calls = 0;
            tu_alloc.fail_at = fail_at;
            tu_alloc.sticky = sticky;
            fmd_status st = fmd_student_forward(S2, z, dl, NULL, N, again);
            tu_alloc.fail_at = -1;
            int64_t chunk = student_forward_chunk(S2);
            CHECK_MSG(st == FMD_OK || st == FMD_ERR_OOM, "allocation %ld failing%s: %s", fail_at,
                      sticky ? " on" : "", fmd_status_name(st));
            if (st == FMD_OK) {
                CHECK_MSG(chunk == 700 || chunk == 1024, "allocation %ld failing: chunk %lld", fail_at,
                          (long long)chunk);
                e = max_rel(whole, again, N * 2);
                CHECK_MSG(e <= 1e-5, "allocation %ld failing: the result changed by %.3g", fail_at, e);
            }
            if (fail_at == 0 && !sticky)
                CHECK_MSG(st == FMD_OK && chunk == 700,
                          "a failed growth did not fall back to 700-row passes (%s, chunk %lld)",
                          fmd_status_name(st), (long long)chunk);
            /* the student still works once memory is back */
            memset(again, 0, sizeof again);
            CHECK_OK(fmd_student_forward(S2, z, dl, NULL, N, again));
            e = max_rel(whole, again, N * 2);
            CHECK_MSG(e <= 1e-5, "after allocation %ld failed, the result changed by %.3g", fail_at, e);
            fmd_student_destroy(S2);
            CHECK_MSG(tu_alloc.live == live0, "allocation %ld failing: %ld blocks leaked", fail_at,
                      tu_alloc.live - live0);
        }
    }
    tu_alloc.sticky = 0;

    /* a distiller sizes the arena for its batch; forwards then use that */
    CHECK_OK(fmd_options_create(&dopt));
    CHECK_OK(fmd_options_parse(dopt, "batch=64"));
    CHECK_OK(fmd_distiller_create(T, S, be, dopt, &D));
    CHECK(student_forward_chunk(S) == 64);
    CHECK_OK(fmd_student_forward(S, z, dl, NULL, N, again));
    CHECK_MSG(student_forward_chunk(S) == 64, "the forward resized the distiller's arena");
    e = max_rel(whole, again, N * 2);
    CHECK_MSG(e <= 1e-5, "64-row passes changed the result by %.3g", e);
    CHECK_OK(fmd_distiller_step(D));

    fmd_distiller_destroy(D);
    fmd_student_destroy(S);
    fmd_teacher_destroy(T);
    fmd_options_destroy(so);
    fmd_options_destroy(dopt);
    fmd_backend_destroy(be);
    return tu_finish("test_student_forward");
}
