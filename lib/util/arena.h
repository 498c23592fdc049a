/* arena.h - count-and-place layout of many buffers in one allocation (the
 * llm.c way): a layout function takes every buffer in turn with
 * fmd_arena_take, first with base NULL to count the floats, then, after one
 * allocation of that many, with the real base to place them.  The list of
 * buffers is written once; freeing is one call.  lib/nn lays out activation
 * arenas this way, lib/algo the trainers' buffers. */
#ifndef FMD_UTIL_ARENA_H
#define FMD_UTIL_ARENA_H

#include <stdint.h>

/* base + *off (NULL when base is NULL); advances *off by n floats rounded up
 * to 16 (64-byte alignment of every buffer).  n <= 0 takes one block. */
static inline float *fmd_arena_take(float *base, int64_t *off, int64_t n)
{
    float *p = base ? base + *off : (float *)0;
    if (n <= 0) n = 1;
    *off += (n + 15) & ~(int64_t)15;
    return p;
}

#endif
