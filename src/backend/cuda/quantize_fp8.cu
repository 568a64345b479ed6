/* quantize_fp8: dynamic per-token FP8 quantization of bf16 activations, the
 * activation half of the W8A8 linear (linear_fp8.cu).
 *
 * One CTA per row t of x (T, K) bf16: amax = max_k |x[t][k]| (block
 * reduction), scale[t] = max(amax / 448, 1 / (448 * 512)) and q[t][k] =
 * e4m3(x[t][k] / scale[t]) rounded to nearest even and saturating
 * (cvt.rn.satfinite.e4m3x2.f32 through __nv_cvt_float_to_fp8). Both
 * divisions are IEEE round-to-nearest (__fdiv_rn), so the codes and scales
 * equal cllm_fp8_quantize_row's (core/fp8_quant.h) bit for bit; the CUDA
 * test checks that. Source: vLLM csrc/quantization/fp8/common.cu
 * (dynamic_per_token_scaled_fp8_quant: the same rule, with a reciprocal). */
#include "backend/cuda/cuda_common.cuh"
#include <cuda_fp8.h>

#define QF_THREADS 256
#define QF_MIN_SCALE (1.0f / (448.0f * 512.0f))

static __device__ __forceinline__ uint32_t q4(float a, float b, float c, float d, float s) {
    uint32_t r = (uint32_t)__nv_cvt_float_to_fp8(__fdiv_rn(a, s), __NV_SATFINITE, __NV_E4M3);
    r |= (uint32_t)__nv_cvt_float_to_fp8(__fdiv_rn(b, s), __NV_SATFINITE, __NV_E4M3) << 8;
    r |= (uint32_t)__nv_cvt_float_to_fp8(__fdiv_rn(c, s), __NV_SATFINITE, __NV_E4M3) << 16;
    r |= (uint32_t)__nv_cvt_float_to_fp8(__fdiv_rn(d, s), __NV_SATFINITE, __NV_E4M3) << 24;
    return r;
}

/* K % 8 == 0, x and q 16 / 8-byte aligned rows. */
static __global__ void __launch_bounds__(QF_THREADS)
quantize_fp8_rows_kernel(const __nv_bfloat16 *__restrict__ x, int K, uint8_t *__restrict__ q,
                         float *__restrict__ scale) {
    __shared__ float red[QF_THREADS / 32];
    const size_t t = blockIdx.x;
    const uint4 *xr = (const uint4 *)(x + t * (size_t)K);
    uint2 *qr = (uint2 *)(q + t * (size_t)K);
    const int K8 = K / 8, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float amax = 0.f;
    for (int c = threadIdx.x; c < K8; c += QF_THREADS) {
        uint4 v = xr[c];
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __bfloat1622float2(h[i]);
            amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (lane == 0) red[warp] = amax;
    __syncthreads();
    if (warp == 0) {
        float v = lane < QF_THREADS / 32 ? red[lane] : 0.f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
        if (lane == 0) red[0] = v;
    }
    __syncthreads();
    const float s = fmaxf(__fdiv_rn(red[0], 448.0f), QF_MIN_SCALE);
    if (threadIdx.x == 0) scale[t] = s;
    for (int c = threadIdx.x; c < K8; c += QF_THREADS) {
        uint4 v = xr[c];
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
        float2 f0 = __bfloat1622float2(h[0]), f1 = __bfloat1622float2(h[1]);
        float2 f2 = __bfloat1622float2(h[2]), f3 = __bfloat1622float2(h[3]);
        qr[c] = make_uint2(q4(f0.x, f0.y, f1.x, f1.y, s), q4(f2.x, f2.y, f3.x, f3.y, s));
    }
}

extern "C" cllm_status cllm_cuda_quantize_fp8_rows(const void *x, int T, int K, uint8_t *q, float *scale,
                                                   cudaStream_t stream) {
    CLLM_ARG(x && q && scale, "quantize_fp8: NULL pointer");
    CLLM_ARG(T >= 0 && K > 0 && K % 8 == 0, "quantize_fp8: bad shape T=%d K=%d (K must be a positive multiple of 8)",
             T, K);
    CLLM_ARG(cllm_aligned(x, 16) && cllm_aligned(q, 8) && cllm_aligned(scale, 4),
             "quantize_fp8: x must be 16-byte aligned, q 8-byte aligned, scale 4-byte aligned");
    if (T == 0) return CLLM_OK;
    quantize_fp8_rows_kernel<<<(unsigned)T, QF_THREADS, 0, stream>>>((const __nv_bfloat16 *)x, K, q, scale);
    CLLM_CU_LAUNCH("quantize_fp8_rows");
    return CLLM_OK;
}
