/* test_backend_ops.c - every op of the backend named on the command line
 * (default cpu) against the plain-C reference, on random and edge shapes:
 * 1, odd sizes, non-multiples of the vector width, large; all GEMM
 * transposes and beta paths.  "cuda" without a GPU reports SKIPPED (77). */
#include <stdlib.h>
#include <string.h>
#include "opcheck.h"
#include "testutil.h"

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "cpu";
    fmd_backend *be = NULL, *ref = NULL;
    int rc = tu_open_backend("test_backend_ops", name, &be);
    if (rc) return rc;
    CHECK_OK(fmdb_open_reference(&ref));
    if (!be || !ref) return tu_finish("test_backend_ops");
    printf("backend: %s\n", fmd_backend_device(be));

    static const int64_t full[][3] = {
        {1, 1, 1}, {1, 7, 3}, {2, 3, 5}, {7, 13, 5}, {17, 31, 65}, {15, 33, 9},
        {64, 64, 64}, {129, 257, 31}, {257, 3, 511}, {300, 128, 200}, {4, 1000, 3},
    };
    /* The sanitizer build (FMD_TEST_SMALL_SHAPES, set by FMD_SANITIZE; or
     * FMD_TEST_SMALL_SHAPES=1 in the environment) runs the same ops, edge
     * sizes and block boundaries (a size past 128 and 256 in each position)
     * with a 27x smaller sum of m n k: ASan slows the reference loops ~20x. */
    static const int64_t small[][3] = {
        {1, 1, 1}, {1, 7, 3}, {2, 3, 5}, {7, 13, 5}, {17, 31, 65}, {15, 33, 9},
        {64, 64, 64}, {129, 9, 17}, {5, 257, 3}, {3, 5, 257}, {4, 1000, 3},
    };
#ifdef FMD_TEST_SMALL_SHAPES
    int use_small = 1;
#else
    const char *env = getenv("FMD_TEST_SMALL_SHAPES");
    int use_small = env && env[0] == '1';
#endif
    const int64_t(*shapes)[3] = use_small ? small : full;
    int nshapes = use_small ? (int)(sizeof small / sizeof small[0]) : (int)(sizeof full / sizeof full[0]);
    printf("shapes: %s\n", use_small ? "small (sanitizer build)" : "full");
    for (int ci = 0; ci < opcheck_num_cases(); ci++) {
        double worst = 0.0;
        int ok = 1;
        for (int si = 0; si < nshapes; si++)
            for (int v = 0; v < opcheck_case_variants(ci); v++) {
                double w = 0.0;
                fmd_status s = opcheck_run(be, ref, ci, shapes[si], v, (uint64_t)(1000 * ci + 10 * si + v), &w);
                CHECK_MSG(s == FMD_OK, "%s", fmd_last_error());
                if (s != FMD_OK) ok = 0;
                if (w > worst) worst = w;
            }
        printf("  %-28s %s  worst NMSE %.2e\n", opcheck_case_name(ci), ok ? "ok  " : "FAIL", worst);
    }
    CHECK_OK(fmd_backend_selfcheck(be));
    fmd_backend_destroy(be);
    fmd_backend_destroy(ref);
    return tu_finish("test_backend_ops");
}
