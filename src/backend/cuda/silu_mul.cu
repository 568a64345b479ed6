/* SwiGLU activation: out (T, I) = silu(gate_up[:, :I]) * gate_up[:, I:] (HF LlamaMLP), fp32 math. */
#include "backend/cuda/cuda_common.cuh"

static __device__ __forceinline__ float silu_f(float g) { return g / (1.f + __expf(-g)); }

static __global__ void silu_mul_vec_kernel(const __nv_bfloat16 *gu, int I, __nv_bfloat16 *out, size_t n8) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    int I8 = I / 8;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += stride) {
        size_t t = i / I8, c = i % I8;
        uint4 g = ((const uint4 *)(gu + t * 2 * I))[c];
        uint4 u = ((const uint4 *)(gu + t * 2 * I + I))[c];
        const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)&g, *u2 = (const __nv_bfloat162 *)&u;
        uint4 r;
        __nv_bfloat162 *r2 = (__nv_bfloat162 *)&r;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 gf = __bfloat1622float2(g2[j]), uf = __bfloat1622float2(u2[j]);
            r2[j] = __floats2bfloat162_rn(silu_f(gf.x) * uf.x, silu_f(gf.y) * uf.y);
        }
        ((uint4 *)(out + t * I))[c] = r;
    }
}

static __global__ void silu_mul_kernel(const __nv_bfloat16 *gu, int I, __nv_bfloat16 *out, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        size_t t = i / I, c = i % I;
        float g = __bfloat162float(gu[t * 2 * I + c]), u = __bfloat162float(gu[t * 2 * I + I + c]);
        out[i] = __float2bfloat16_rn(silu_f(g) * u);
    }
}

extern "C" cllm_status cllm_cuda_silu_mul(const void *gate_up, int T, int I, void *out, cudaStream_t stream) {
    CLLM_ARG(T >= 0 && I > 0, "silu_mul: bad shape T=%d I=%d", T, I);
    CLLM_ARG(gate_up && out, "silu_mul: NULL pointer");
    if (T == 0) return CLLM_OK;
    bool vec = I % 8 == 0 && cllm_aligned(gate_up, 16) && cllm_aligned(out, 16);
    size_t n = (size_t)T * I / (vec ? 8 : 1);
    size_t blocks = (n + 255) / 256;
    if (blocks > 132 * 16) blocks = 132 * 16;
    if (vec)
        silu_mul_vec_kernel<<<(unsigned)blocks, 256, 0, stream>>>((const __nv_bfloat16 *)gate_up, I,
                                                                  (__nv_bfloat16 *)out, n);
    else
        silu_mul_kernel<<<(unsigned)blocks, 256, 0, stream>>>((const __nv_bfloat16 *)gate_up, I,
                                                              (__nv_bfloat16 *)out, n);
    CLLM_CU_LAUNCH("silu_mul");
    return CLLM_OK;
}
