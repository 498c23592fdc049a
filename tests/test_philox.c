/* test_philox.c - Philox4x32-10 against Random123's published known-answer
 * vectors, and the split/thread invariance of the backend fills. */
#include <math.h>
#include <string.h>
#include "algo/ode.h"
#include "backend.h"
#include "util/philox.h"
#include "testutil.h"
#include "fmd.h"

static void kat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3)
{
    fmd_philox_ctr c = {{c0, c1, c2, c3}};
    fmd_philox_ctr r = fmd_philox4x32_10(c, k0, k1);
    CHECK_MSG(r.v[0] == e0 && r.v[1] == e1 && r.v[2] == e2 && r.v[3] == e3,
              "got %08x %08x %08x %08x want %08x %08x %08x %08x", r.v[0], r.v[1], r.v[2], r.v[3], e0, e1, e2, e3);
}

int main(void)
{
    kat(0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
    kat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
        0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
    kat(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
        0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1);

    /* The backend fill gives the same numbers for any split of the range and
     * any thread count: fill [0, n) at once, then in odd-sized pieces. */
    fmd_backend *be = NULL;
    CHECK_OK(fmd_backend_open("cpu", &be));
    if (!be) return tu_finish("test_philox");
    enum { N = 100003 };
    float *a = be->ops->alloc(be, N * sizeof(float)), *b = be->ops->alloc(be, N * sizeof(float));
    be->ops->fill_normal(be, a, N, 99, 3, 1000);
    for (int64_t off = 0, piece = 1; off < N; off += piece, piece = piece * 3 + 1) {
        int64_t len = off + piece > N ? N - off : piece;
        be->ops->fill_normal(be, b + off, len, 99, 3, 1000 + (uint64_t)off);
    }
    CHECK(memcmp(a, b, N * sizeof(float)) == 0);
    /* ...and they are the element-wise definition, bit for bit (the fills
     * take a block's four normals at once: fmd_philox_normal_fill) */
    int64_t bad = 0;
    for (int64_t i = 0; i < N; i++) {
        float want = fmd_philox_normal_at(99, 3, 1000 + (uint64_t)i);
        if (memcmp(&a[i], &want, sizeof want) != 0) bad++;
    }
    CHECK_MSG(bad == 0, "%lld of %d backend normals differ from fmd_philox_normal_at", (long long)bad, N);
    for (uint64_t e0 = 0; e0 < 8; e0++) {
        for (int64_t len = 0; len <= 11; len++) {
            float got[11], want[11];
            fmd_philox_normal_fill(got, len, 7, 2, e0);
            for (int64_t i = 0; i < len; i++) want[i] = fmd_philox_normal_at(7, 2, e0 + (uint64_t)i);
            CHECK_MSG(len == 0 || memcmp(got, want, (size_t)len * sizeof(float)) == 0,
                      "fmd_philox_normal_fill(e0 %llu, n %lld) differs", (unsigned long long)e0, (long long)len);
        }
    }
    /* the prior noise of row i, dim j is element (first + i) * dim + j */
    {
        float z[7 * 3];
        CHECK_OK(fmd_prior_noise(z, 7, 3, 11, 5));
        bad = 0;
        for (int64_t i = 0; i < 7; i++)
            for (int64_t j = 0; j < 3; j++) {
                float want = fmd_philox_normal_at(11, FMD_STREAM_PRIOR, (5 + (uint64_t)i) * 3 + (uint64_t)j);
                if (memcmp(&z[i * 3 + j], &want, sizeof want) != 0) bad++;
            }
        CHECK_MSG(bad == 0, "%lld prior-noise values differ from the definition", (long long)bad);
    }
    /* the same over many pieces (the fill runs on the OpenMP threads in
     * pieces of 2^15 floats): an odd row length and first index, so that the
     * pieces start off a Philox block's boundary */
    {
        const int64_t rows = 40001, dim = 5;
        const uint64_t first = 12345;
        float *z = malloc((size_t)(rows * dim) * sizeof(float));
        CHECK(z != NULL);
        if (z) {
            CHECK_OK(fmd_prior_noise(z, rows, dim, 21, first));
            bad = 0;
            for (int64_t e = 0; e < rows * dim; e++) {
                float want = fmd_philox_normal_at(21, FMD_STREAM_PRIOR, first * (uint64_t)dim + (uint64_t)e);
                if (memcmp(&z[e], &want, sizeof want) != 0) bad++;
            }
            CHECK_MSG(bad == 0, "%lld of %lld prior-noise values of a long call differ from the definition",
                      (long long)bad, (long long)(rows * dim));
            free(z);
        }
    }
    /* moments of the normals and the uniforms */
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) { s += a[i]; s2 += (double)a[i] * a[i]; }
    CHECK_MSG(fabs(s / N) < 0.02 && fabs(s2 / N - 1.0) < 0.02, "mean %g var %g", s / N, s2 / N);
    be->ops->fill_uniform(be, b, N, 5, 0, 0);
    double mn = 1, mx = 0;
    s = 0;
    for (int i = 0; i < N; i++) { s += b[i]; if (b[i] < mn) mn = b[i]; if (b[i] > mx) mx = b[i]; }
    CHECK_MSG(mn > 0.0 && mx < 1.0 && fabs(s / N - 0.5) < 0.01, "min %g max %g mean %g", mn, mx, s / N);
    /* a different stream or seed gives different numbers */
    be->ops->fill_normal(be, b, N, 99, 4, 1000);
    CHECK(memcmp(a, b, N * sizeof(float)) != 0);
    be->ops->free(be, a);
    be->ops->free(be, b);
    fmd_backend_destroy(be);
    return tu_finish("test_philox");
}
