/* Internal helpers shared by the CUDA op files: error-check macros that
 * carry file:line into cllm_error(CLLM_ERR_CUDA, ...), argument checks,
 * bf16 helpers and alignment tests. Not a public header. */
#ifndef CLLM_CUDA_COMMON_CUH
#define CLLM_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include "backend/cuda/cuda_ops.h"

extern "C" {
#include "core/status.h"
}

/* Return CLLM_ERR_CUDA with "file:line: call: cuda message" on failure. */
#define CLLM_CU(call)                                                                           \
    do {                                                                                        \
        cudaError_t e_ = (call);                                                                \
        if (e_ != cudaSuccess)                                                                  \
            return cllm_error(CLLM_ERR_CUDA, "%s:%d: %s failed: %s (%s)", __FILE__, __LINE__,   \
                              #call, cudaGetErrorString(e_), cudaGetErrorName(e_));             \
    } while (0)

/* Check the last kernel launch. */
#define CLLM_CU_LAUNCH(name) CLLM_CU(cudaGetLastError())

/* Argument validation: return CLLM_ERR_INVALID_ARG with a message. */
#define CLLM_ARG(cond, ...)                                                                     \
    do {                                                                                        \
        if (!(cond)) return cllm_error(CLLM_ERR_INVALID_ARG, __VA_ARGS__);                      \
    } while (0)

static inline bool cllm_aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

/* A 16-byte read-only global load that does not allocate in L1 (weights
 * streamed once per kernel: GEMV, the MoE experts). p 16-byte aligned. */
static __device__ __forceinline__ uint4 ld_stream16(const uint4 *p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

#endif
