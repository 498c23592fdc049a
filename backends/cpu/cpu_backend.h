/* cpu_backend.h - private state of the CPU backend (shared with bench/gemm.c). */
#ifndef FMD_CPU_BACKEND_H
#define FMD_CPU_BACKEND_H
#include <stdint.h>

enum { CPU_GEMM_AUTO = 0, CPU_GEMM_ONEDNN = 1, CPU_GEMM_OPENBLAS = 2 };

typedef struct cpu_ctx {
    int threads;
    int gemm;   /* CPU_GEMM_* chosen by FMD_CPU_GEMM */
} cpu_ctx;

/* Hot element-wise kernels are compiled for AVX-512, AVX2 and baseline x86-64
 * and picked at load time (GCC's target_clones; plain code elsewhere). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define CPU_CLONES
#endif

/* The provider a GEMM of this shape runs on. */
int cpu_gemm_pick(const cpu_ctx *c, int64_t m, int64_t n, int64_t k);
#endif
