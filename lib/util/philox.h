/* philox.h - Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
 * as 1, 2, 3", SC'11), counter-based: the value at element index e of the
 * sequence (seed, stream) is a pure function of (seed, stream, e).  That is
 * what makes samples identical on every backend, batch split, thread count,
 * and after a resume.  Header-only so that the CUDA plugin compiles the same
 * code for the device (FMD_HD expands to __host__ __device__ there).
 *
 * Layout: element e lives in block e/4, lane e%4.  The block's counter is
 * {block_lo, block_hi, stream_lo, stream_hi}, the key {seed_lo, seed_hi}.
 * Uniform lane l: ((x_l >> 8) + 0.5) * 2^-24, in (0, 1), exactly
 * representable.  Normal lanes 0,1 come from Box-Muller on (u0, u1), lanes
 * 2,3 from (u2, u3).  The 32-bit words are bit-identical everywhere; the
 * normals may differ in the last ulp between math libraries. */
#ifndef FMD_PHILOX_H
#define FMD_PHILOX_H

#include <stdint.h>
#include <math.h>

#ifdef __CUDACC__
#define FMD_HD __host__ __device__ __forceinline__
#else
#define FMD_HD static inline
#endif

typedef struct { uint32_t v[4]; } fmd_philox_ctr;

FMD_HD fmd_philox_ctr fmd_philox4x32_10(fmd_philox_ctr c, uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c.v[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c.v[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        fmd_philox_ctr n;
        n.v[0] = hi1 ^ c.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ c.v[3] ^ k1;
        n.v[3] = lo0;
        c = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

FMD_HD fmd_philox_ctr fmd_philox_block(uint64_t seed, uint64_t stream, uint64_t block)
{
    fmd_philox_ctr c;
    c.v[0] = (uint32_t)block;
    c.v[1] = (uint32_t)(block >> 32);
    c.v[2] = (uint32_t)stream;
    c.v[3] = (uint32_t)(stream >> 32);
    return fmd_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

FMD_HD float fmd_philox_u01(uint32_t x)
{
    return ((float)(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

/* Uniform (0,1) at element index e. */
FMD_HD float fmd_philox_uniform_at(uint64_t seed, uint64_t stream, uint64_t e)
{
    fmd_philox_ctr r = fmd_philox_block(seed, stream, e >> 2);
    return fmd_philox_u01(r.v[e & 3]);
}

/* Box-Muller on one lane pair: radius and angle; the pair's normals are
 * rad * cos(th) (even lane) and rad * sin(th) (odd lane). */
FMD_HD void fmd_philox_polar(uint32_t x1, uint32_t x2, float *rad, float *th)
{
    *rad = sqrtf(-2.0f * logf(fmd_philox_u01(x1)));
    *th = 6.28318530717958647692f * fmd_philox_u01(x2);
}

/* Standard normal at element index e (Box-Muller on the lane pair). */
FMD_HD float fmd_philox_normal_at(uint64_t seed, uint64_t stream, uint64_t e)
{
    fmd_philox_ctr r = fmd_philox_block(seed, stream, e >> 2);
    /* the lanes are picked by selects, not by r.v[e & 2]: GCC 12.2 at -O2
     * miscompiled that index in a loop over e (test_philox) */
    float rad, th;
    fmd_philox_polar((e & 2) ? r.v[2] : r.v[0], (e & 2) ? r.v[3] : r.v[1], &rad, &th);
    return (e & 1) ? rad * sinf(th) : rad * cosf(th);
}

#ifndef __CUDACC__
/* out[i] = fmd_philox_normal_at(seed, stream, e0 + i) for i in [0, n), the
 * same floats, with one Philox block per four elements and one logarithm per
 * Box-Muller pair instead of four blocks and four logarithms (host noise of
 * the sampler and the CPU backend: 3-4x faster). */
static inline void fmd_philox_normal_fill(float *out, int64_t n, uint64_t seed, uint64_t stream,
                                          uint64_t e0)
{
    /* head up to a block boundary, whole blocks, tail (bounds computed up
     * front: GCC's loop analysis warns on the `i + 4 <= n` form) */
    int64_t head = (int64_t)((4 - (e0 & 3)) & 3), i = 0;
    if (head > n) head = n;
    const int64_t body_end = n > head ? head + ((n - head) & ~(int64_t)3) : head;
    for (; i < head; i++) out[i] = fmd_philox_normal_at(seed, stream, e0 + (uint64_t)i);
    for (; i < body_end; i += 4) {
        fmd_philox_ctr r = fmd_philox_block(seed, stream, (e0 + (uint64_t)i) >> 2);
        float rad, th;
        fmd_philox_polar(r.v[0], r.v[1], &rad, &th);
        out[i] = rad * cosf(th);
        out[i + 1] = rad * sinf(th);
        fmd_philox_polar(r.v[2], r.v[3], &rad, &th);
        out[i + 2] = rad * cosf(th);
        out[i + 3] = rad * sinf(th);
    }
    for (; i < n; i++) out[i] = fmd_philox_normal_at(seed, stream, e0 + (uint64_t)i);
}
#endif

#endif
