/* cuda_emu.h - just enough of the CUDA runtime, the CUDA C++ kernel language
 * and cuBLAS, on the host, to run backends/cuda/cuda_backend.cu without a GPU
 * (tests only: libfmd-cuda-emu.so, see tests/cuda.cmake).
 *
 * Each block's threads are fibers (ucontext) run round-robin in one host
 * thread; __syncthreads and the warp shuffles are barriers over the block or
 * the warp, so indexing, reductions, shared-memory use and the host code's
 * launch geometry are exercised as on a GPU (blocks run one after another).
 * Launch limits are checked as CUDA does (1024 threads per block, grid y/z <=
 * 65535).  cuBLAS sgemm is a column-major reference loop that rejects the
 * leading dimensions real cuBLAS rejects, so a wrong row-major mapping fails.
 * "Device" memory is host memory.  Not thread-safe (one launch at a time). */
#ifndef FMD_CUDA_EMU_H
#define FMD_CUDA_EMU_H

/* fibers switch with _setjmp/_longjmp between stacks (the fortified
 * longjmp would refuse that) */
#ifdef _FORTIFY_SOURCE
#undef _FORTIFY_SOURCE
#endif
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <tuple>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* ---- runtime API ------------------------------------------------------------ */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorInsufficientDriver = 35,
    cudaErrorDevicesUnavailable = 46,
    cudaErrorNoKernelImageForDevice = 209,
} cudaError_t;
typedef struct emu_stream *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
#define cudaStreamNonBlocking 0x01
struct cudaDeviceProp {
    char name[256];
    int major, minor;
    size_t totalGlobalMem;
};

namespace emu {
inline cudaError_t last_error = cudaSuccess;
inline int streams_live = 0;
}

inline const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidValue: return "invalid argument";
    default: return "emulated CUDA error";
    }
}
inline const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    default: return "cudaErrorUnknown";
    }
}
inline cudaError_t cudaGetLastError(void)
{
    cudaError_t e = emu::last_error;
    emu::last_error = cudaSuccess;
    return e;
}
inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "host emulator");
    p->major = 9;
    p->totalGlobalMem = (size_t)1 << 30;
    return d == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
inline cudaError_t cudaMalloc(void **p, size_t n)
{
    /* poison new memory: kernels must not rely on zeroed allocations */
    *p = malloc(n);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xA5, n);
    return cudaSuccess;
}
template <class T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
inline cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t)
{
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = (cudaStream_t)(uintptr_t)0x5157;
    emu::streams_live++;
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { emu::streams_live--; return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

/* ---- the kernel language: fibers per block --------------------------------- */
namespace emu {
struct fiber {
    ucontext_t ctx;     /* first entry only                                  */
    jmp_buf jb;         /* where the fiber yielded                           */
    uint3 tid;
    int flat;
    bool started, done;
};
struct barrier {
    int arrived;
    unsigned gen;
};
const int MAX_THREADS = 1024;
const size_t STACK = 64 * 1024;
inline fiber fibers[MAX_THREADS];
inline char *stacks[MAX_THREADS];
inline fiber *cur = nullptr;
inline ucontext_t sched;
inline jmp_buf sched_jb;
inline uint3 bidx;
inline dim3 bdim, gdim;
inline barrier block_bar;
inline barrier warp_bar[MAX_THREADS / 32];
inline double shfl_slot[MAX_THREADS];
inline int or_acc;
inline void (*body_fn)(void *);
inline void *body_arg;

inline int nthreads() { return (int)(bdim.x * bdim.y * bdim.z); }
inline void yield()
{
    if (!_setjmp(cur->jb)) _longjmp(sched_jb, 1);
}
inline void wait(barrier &b, int count)
{
    unsigned g = b.gen;
    if (++b.arrived == count) {
        b.arrived = 0;
        b.gen++;
    } else {
        while (b.gen == g) yield();
    }
}
inline int warp_size_of(int flat)
{
    int w0 = flat / 32 * 32, n = nthreads() - w0;
    return n < 32 ? n : 32;
}
/* A fiber's life: run the kernel body for its thread of the current block,
 * park (done), and run again when the next block or launch resumes it; the
 * contexts are made once, switches are _setjmp/_longjmp (no system call). */
inline void entry()
{
    for (;;) {
        body_fn(body_arg);
        cur->done = true;
        yield();
    }
}

/* getcontext "returns twice" only for contexts resumed at the point of the
 * call; these are all redirected to entry() by makecontext. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wclobbered"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline void start_fiber(int i)
{
    fiber *f = &fibers[i];
    if (!stacks[i]) stacks[i] = (char *)malloc(STACK);
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = stacks[i];
    f->ctx.uc_stack.ss_size = STACK;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, entry, 0);
    f->started = true;
    swapcontext(&sched, &f->ctx);
}

inline void run(dim3 g, dim3 b, void (*fn)(void *), void *arg)
{
    if (b.x * b.y * b.z > (unsigned)MAX_THREADS || b.x * b.y * b.z == 0 || g.x == 0 || g.y == 0 ||
        g.z == 0 || g.y > 65535 || g.z > 65535 || g.x > 2147483647u || b.z > 64) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    int n = (int)(b.x * b.y * b.z);
    bdim = b;
    gdim = g;
    body_fn = fn;
    body_arg = arg;
    for (unsigned bz = 0; bz < g.z; bz++)
        for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++) {
                bidx = {bx, by, bz};
                block_bar = {0, 0};
                for (int w = 0; w < (n + 31) / 32; w++) warp_bar[w] = {0, 0};
                or_acc = 0;
                for (int i = 0; i < n; i++) {
                    fibers[i].flat = i;
                    fibers[i].tid = {(unsigned)i % b.x, (unsigned)i / b.x % b.y, (unsigned)i / (b.x * b.y)};
                    fibers[i].done = false;
                }
                int live = n;
                while (live) {
                    live = 0;
                    for (int i = 0; i < n; i++) {
                        if (fibers[i].done) continue;
                        cur = &fibers[i];
                        if (!_setjmp(sched_jb)) {
                            if (!cur->started) start_fiber(i);
                            else _longjmp(cur->jb, 1);
                        }
                        if (!fibers[i].done) live++;
                    }
                }
            }
}
#pragma GCC diagnostic pop

template <class... P> struct launcher {
    dim3 g, b;
    void (*k)(P...);
    template <class... A> void operator()(A &&...a)
    {
        std::tuple<P...> args(std::forward<A>(a)...);
        auto call = [](void *p) {
            auto *self = (std::pair<void (*)(P...), std::tuple<P...> *> *)p;
            std::apply(self->first, *self->second);
        };
        std::pair<void (*)(P...), std::tuple<P...> *> ctx(k, &args);
        run(g, b, call, &ctx);
    }
};
template <class... P> launcher<P...> launch(dim3 g, dim3 b, void (*k)(P...)) { return {g, b, k}; }
} /* namespace emu */

#define KLAUNCH(kernel, grid, block, stream) emu::launch(dim3(grid), dim3(block), kernel)
#define threadIdx (emu::cur->tid)
#define blockIdx (emu::bidx)
#define blockDim (emu::bdim)
#define gridDim (emu::gdim)

inline void __syncthreads() { emu::wait(emu::block_bar, emu::nthreads()); }
inline int __syncthreads_or(int p)
{
    if (p) emu::or_acc = 1;
    __syncthreads();
    int r = emu::or_acc;
    __syncthreads();
    if (emu::cur->flat == 0) emu::or_acc = 0;
    __syncthreads();
    return r;
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    (void)mask;
    int t = emu::cur->flat, w = t / 32, lane = t % 32, ws = emu::warp_size_of(t);
    emu::shfl_slot[t] = (double)v;
    emu::wait(emu::warp_bar[w], ws);
    int src = lane ^ lane_mask;
    T r = src < ws ? (T)emu::shfl_slot[w * 32 + src] : v;
    emu::wait(emu::warp_bar[w], ws);
    return r;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }

/* ---- cuBLAS ----------------------------------------------------------------- */
typedef struct emu_blas *cublasHandle_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
} cublasStatus_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;

inline cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = (cublasHandle_t)(uintptr_t)0xB1A5;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline const char *cublasGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "success" : s == CUBLAS_STATUS_INVALID_VALUE ? "invalid value" : "error";
}
inline const char *cublasGetStatusName(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
           : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_ERROR";
}

/* Column-major C(m,n) = alpha op(A)(m,k) op(B)(k,n) + beta C, checked as cuBLAS. */
inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                                int m, int n, int k, const float *alpha, const float *A,
                                                int lda, long long sa, const float *B, int ldb, long long sb,
                                                const float *beta, float *C, int ldc, long long sc, int batch)
{
    int ar = ta == CUBLAS_OP_N ? m : k, br = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) ||
        ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int bi = 0; bi < batch; bi++) {
        const float *a = A + bi * sa, *b = B + bi * sb;
        float *c = C + bi * sc;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0.0;
                for (int l = 0; l < k; l++) {
                    float x = ta == CUBLAS_OP_N ? a[i + (long long)l * lda] : a[l + (long long)i * lda];
                    float y = tb == CUBLAS_OP_N ? b[l + (long long)j * ldb] : b[j + (long long)l * ldb];
                    acc += (double)x * y;
                }
                float *o = c + i + (long long)j * ldc;
                *o = *alpha * (float)acc + (*beta == 0.0f ? 0.0f : *beta * *o);
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                  int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                  const float *beta, float *C, int ldc)
{
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

#endif
