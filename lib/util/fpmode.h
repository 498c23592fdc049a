/* fpmode.h - flush-to-zero / denormals-are-zero for the library's training
 * compute, scoped to one API call.
 *
 * Why: a dead SiLU unit or a decayed weight puts subnormal floats into GEMM
 * operands and intermediate sums, and x86 cores take a microcode assist per
 * subnormal: identical distillations ran up to 3x slower depending on the
 * seed (docs/benchmarks.md, "Subnormal numbers").  The activation ops flush
 * their own subnormal results (backend.h); this scope catches the rest (the
 * GEMM's partial sums, AdamW's moments).
 *
 * The caller's floating-point mode is never left changed: fmd_fpmode_enter
 * saves the FTZ/DAZ bits of the calling thread and of the OpenMP workers it
 * will use and sets them; fmd_fpmode_leave puts each thread's bits back (the
 * sticky exception flags raised meanwhile are kept, as any library call
 * would leave them).  Nesting is
 * counted per thread, so an API call made from a progress callback inside
 * another is harmless.  fmd_fpmode_pause / _resume give user callbacks
 * (progress, callback teachers) the caller's mode on the calling thread; the
 * OpenMP workers keep FTZ/DAZ until the outer call returns (documented in
 * fmd.h).  Off x86 (no MXCSR) all of this does nothing.  Setting FMD_FLUSH_DENORMALS=0 in the environment turns it off
 * (IEEE subnormals everywhere, at their cost). */
#ifndef FMD_FPMODE_H
#define FMD_FPMODE_H

typedef struct {
    int depth;           /* the calling thread's nesting depth when paused  */
    unsigned saved;      /* its FTZ/DAZ bits before the outermost enter      */
    unsigned inside;     /* its FTZ/DAZ bits inside the scope                */
} fmd_fpmode_pause_state;

/* Enter the scope on the calling thread and on the OpenMP threads a parallel
 * region of max(threads, omp_get_max_threads()) uses (the calling thread
 * among them).  Inside a parallel region: the calling thread only. */
void fmd_fpmode_enter(int threads);
/* Leave it: each thread that entered restores its mode when its depth
 * returns to zero.  Same `threads` as the matching enter. */
void fmd_fpmode_leave(int threads);
/* Around a user callback on the calling thread. */
void fmd_fpmode_pause(fmd_fpmode_pause_state *p);
void fmd_fpmode_resume(const fmd_fpmode_pause_state *p);

/* Tests: 1 when the calling thread currently flushes (FTZ and DAZ set),
 * 0 when not, -1 where the CPU has no such mode. */
int fmd_fpmode_flushing(void);
/* Tests: the calling thread's MXCSR (control bits and sticky flags), and
 * setting it; no-ops returning 0 off x86. */
unsigned fmd_fpmode_get_raw(void);
void fmd_fpmode_set_raw(unsigned v);

#endif
