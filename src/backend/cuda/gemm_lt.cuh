/* The cuBLASLt state behind cllm_cuda_gemm (internal to linear.cu and
 * linear_fp8.cu): one handle, one cuBLASLt workspace, the FP8 activation
 * workspace, and the algorithm caches of the bf16 and the FP8 GEMMs. Created
 * once with the backend; every call reuses it (nothing is allocated per
 * call, so the GEMMs can be captured in CUDA graphs). Not thread-safe: one
 * stream uses it. */
#ifndef CLLM_CUDA_GEMM_LT_CUH
#define CLLM_CUDA_GEMM_LT_CUH

#include "backend/cuda/cuda_common.cuh"
#include <cublasLt.h>

#define CLLM_LT(call)                                                                                 \
    do {                                                                                              \
        cublasStatus_t s_ = (call);                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                              \
            return cllm_error(CLLM_ERR_CUDA, "%s:%d: %s failed: cuBLAS status %d (%s)", __FILE__,     \
                              __LINE__, #call, (int)s_, cublasLtGetStatusString(s_));                  \
    } while (0)

#define GEMM_CACHE 128
#define FP8_CACHE 128

typedef struct {
    int T, N, K, out_f32, bias, align;
    cublasLtMatmulAlgo_t algo;
} gemm_entry;

/* One FP8 GEMM configuration (T = the chunk's tokens) and its outcome:
 * mode 1 = outer-vector scales in cuBLASLt (with the bias epilogue when
 * bias), 2 = unscaled FP8 GEMM to f32 + the scale/bias kernel; ok 0: cuBLASLt
 * refused it (no algorithm, or the matmul returned an error), not retried. */
typedef struct {
    int T, N, K, out_f32, bias, mode, align, ok;
    cublasLtMatmulAlgo_t algo;
} fp8_entry;

struct cllm_cuda_gemm {
    cublasLtHandle_t lt;
    void *workspace;              /* cuBLASLt's */
    size_t workspace_bytes;
    gemm_entry cache[GEMM_CACHE];
    int n_cache, next;
    /* FP8 linear (linear_fp8.cu) */
    void *fp8_ws;                 /* activation codes + per-token scales (+ f32 partials, epilogue mode) */
    size_t fp8_ws_bytes;
    fp8_entry fp8_cache[FP8_CACHE];
    int n_fp8, next_fp8;
    int fp8_last_path;            /* the CLLM_CUDA_FP8_* path of the last FP8 call (tests, bench) */
};

/* Alignment in bytes (256 down to 2) of a pointer. */
static inline int cllm_ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    int a = 256;
    while (a > 2 && (u % a)) a /= 2;
    return a;
}

#endif
