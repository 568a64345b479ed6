/* Row gather: out (S, E) = x[idx[s]] (the rows that need logits). */
#include "backend/cuda/cuda_common.cuh"

static __global__ void gather_rows_kernel(const __nv_bfloat16 *x, const int32_t *idx, int E, __nv_bfloat16 *out,
                                          bool vec) {
    int s = blockIdx.x;
    const __nv_bfloat16 *r = x + (size_t)idx[s] * E;
    __nv_bfloat16 *o = out + (size_t)s * E;
    if (vec) {
        for (int i = threadIdx.x; i < E / 8; i += blockDim.x) ((uint4 *)o)[i] = ((const uint4 *)r)[i];
    } else {
        for (int i = threadIdx.x; i < E; i += blockDim.x) o[i] = r[i];
    }
}

extern "C" cllm_status cllm_cuda_gather_rows(const void *x, const int32_t *idx, int S, int E, void *out,
                                             cudaStream_t stream) {
    CLLM_ARG(S >= 0 && E > 0, "gather_rows: bad shape S=%d E=%d", S, E);
    CLLM_ARG(x && idx && out, "gather_rows: NULL pointer");
    if (S == 0) return CLLM_OK;
    bool vec = E % 8 == 0 && cllm_aligned(x, 16) && cllm_aligned(out, 16);
    gather_rows_kernel<<<S, 128, 0, stream>>>((const __nv_bfloat16 *)x, idx, E, (__nv_bfloat16 *)out, vec);
    CLLM_CU_LAUNCH("gather_rows");
    return CLLM_OK;
}
