/* fpmode.c - the scoped FTZ/DAZ mode of fpmode.h. */
#include "util/fpmode.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) /* every x86-64 CPU has DAZ; some 32-bit SSE2 ones did not */
#include <xmmintrin.h>
#define FP_HAVE 1
#define FP_BITS 0x8040u /* MXCSR: FTZ (bit 15) | DAZ (bit 6) */
unsigned fmd_fpmode_get_raw(void) { return _mm_getcsr(); }
void fmd_fpmode_set_raw(unsigned v) { _mm_setcsr(v); }
#else
#define FP_HAVE 0
#define FP_BITS 0u
unsigned fmd_fpmode_get_raw(void) { return 0; }
void fmd_fpmode_set_raw(unsigned v) { (void)v; }
#endif

/* Per thread: how many scopes it is inside, and its FTZ/DAZ bits before the
 * first.  Only those two bits are ever changed or restored: the other control
 * bits and the sticky exception flags raised inside a call are the caller's. */
static _Thread_local int tl_depth;
static _Thread_local unsigned tl_saved;

static void put_bits(unsigned bits)
{
    fmd_fpmode_set_raw((fmd_fpmode_get_raw() & ~FP_BITS) | bits);
}

static int flush_wanted(void)
{
    const char *e = getenv("FMD_FLUSH_DENORMALS");
    return !(e && strcmp(e, "0") == 0);
}

/* Depth is counted whether or not flushing is wanted, so leave always
 * restores exactly what enter saved. */
static void enter_self(int on)
{
    if (tl_depth++ == 0) {
        tl_saved = fmd_fpmode_get_raw() & FP_BITS;
        if (on) fmd_fpmode_set_raw(fmd_fpmode_get_raw() | FP_BITS);
    }
}

static void leave_self(void)
{
    if (tl_depth > 0 && --tl_depth == 0) put_bits(tl_saved);
}

static int team_size(int threads)
{
    int m = omp_get_max_threads();
    return threads > m ? threads : m;
}

/* A thread already inside a scope (not paused) only counts: its workers
 * entered with it.  The outermost enter, and one made from a paused
 * callback, visits the team. */
void fmd_fpmode_enter(int threads)
{
    if (!FP_HAVE) return;
    if (tl_depth > 0) {
        tl_depth++;
        return;
    }
    int on = flush_wanted(), n = team_size(threads);
    if (n > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(n)
        enter_self(on);
    } else {
        enter_self(on);
    }
}

void fmd_fpmode_leave(int threads)
{
    if (!FP_HAVE) return;
    if (tl_depth > 1) {
        tl_depth--;
        return;
    }
    int n = team_size(threads);
    if (n > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(n)
        leave_self();
    } else {
        leave_self();
    }
}

void fmd_fpmode_pause(fmd_fpmode_pause_state *p)
{
    p->depth = tl_depth;
    p->saved = tl_saved;
    p->inside = fmd_fpmode_get_raw() & FP_BITS;
    if (tl_depth) {
        put_bits(tl_saved);
        tl_depth = 0;
    }
}

void fmd_fpmode_resume(const fmd_fpmode_pause_state *p)
{
    if (!p->depth) return;
    tl_depth = p->depth;
    tl_saved = p->saved;
    put_bits(p->inside);
}

int fmd_fpmode_flushing(void)
{
    if (!FP_HAVE) return -1;
    return (fmd_fpmode_get_raw() & FP_BITS) == FP_BITS;
}
