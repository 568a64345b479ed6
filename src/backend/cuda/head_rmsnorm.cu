/* In-place per-head RMSNorm (Qwen3 q_norm / k_norm, HF Qwen3RMSNorm) over
 * D-wide heads of x (T, nheads, D) with token row stride `stride`; one warp per head, fp32 math. */
#include "backend/cuda/cuda_common.cuh"

static __global__ void head_rmsnorm_kernel(__nv_bfloat16 *x, int T, int nheads, int D, int stride,
                                           const __nv_bfloat16 *w, float eps) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (warp >= T * nheads) return;
    int t = warp / nheads, h = warp % nheads;
    __nv_bfloat16 *p = x + (size_t)t * stride + (size_t)h * D;
    float ss = 0.f;
    for (int i = lane; i < D; i += 32) {
        float a = __bfloat162float(p[i]);
        ss += a * a;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    float r = rsqrtf(ss / (float)D + eps);
    for (int i = lane; i < D; i += 32) p[i] = __float2bfloat16_rn(__bfloat162float(p[i]) * r * __bfloat162float(w[i]));
}

extern "C" cllm_status cllm_cuda_head_rmsnorm(void *x, int T, int nheads, int D, int stride, const void *w, float eps,
                                              cudaStream_t stream) {
    CLLM_ARG(T >= 0 && nheads > 0 && D > 0 && stride >= nheads * D,
             "head_rmsnorm: bad shape T=%d nheads=%d D=%d stride=%d (stride must be >= nheads*D)", T, nheads, D, stride);
    CLLM_ARG(x && w, "head_rmsnorm: NULL pointer");
    if (T == 0) return CLLM_OK;
    long warps = (long)T * nheads;
    head_rmsnorm_kernel<<<(unsigned)((warps + 7) / 8), 256, 0, stream>>>((__nv_bfloat16 *)x, T, nheads, D, stride,
                                                                         (const __nv_bfloat16 *)w, eps);
    CLLM_CU_LAUNCH("head_rmsnorm");
    return CLLM_OK;
}
