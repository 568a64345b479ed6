/* RMSNorm with fused residual add (HF LlamaRMSNorm; vLLM fused_add_rms_norm):
 * residual += x (stored bf16), then out = r * rsqrt(mean(r^2) + eps) * w with
 * r the (rounded) residual, fp32 math. One block per row; the vector path
 * reads x and residual once with 16-byte loads and keeps the row in
 * registers (E % 8 == 0, E <= 8 * 4 * 1024). */
#include "backend/cuda/cuda_common.cuh"

static __device__ __forceinline__ float block_sum(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
    if (l == 0) red[w] = v;
    __syncthreads();
    v = l < nw ? red[l] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

#define RMS_MAXV 4
static __global__ void rmsnorm_vec_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *res, const __nv_bfloat16 *w, int E,
                                          float eps, __nv_bfloat16 *out) {
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const uint4 *xr = (const uint4 *)(x + row * E);
    uint4 *rr = res ? (uint4 *)(res + row * E) : nullptr;
    int n8 = E / 8;
    float v[RMS_MAXV][8];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < RMS_MAXV; j++) {
        int i = threadIdx.x + j * blockDim.x;
        if (i < n8) {
            uint4 a = xr[i];
            const __nv_bfloat162 *a2 = (const __nv_bfloat162 *)&a;
            if (rr) {
                uint4 b = rr[i], s;
                const __nv_bfloat162 *b2 = (const __nv_bfloat162 *)&b;
                __nv_bfloat162 *s2 = (__nv_bfloat162 *)&s;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    float2 fa = __bfloat1622float2(a2[k]), fb = __bfloat1622float2(b2[k]);
                    s2[k] = __floats2bfloat162_rn(fa.x + fb.x, fa.y + fb.y);
                }
                rr[i] = s;
                a = s;
            }
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 f = __bfloat1622float2(a2[k]);
                v[j][2 * k] = f.x;
                v[j][2 * k + 1] = f.y;
                ss += f.x * f.x + f.y * f.y;
            }
        }
    }
    float r = rsqrtf(block_sum(ss, red) / (float)E + eps);
    uint4 *orow = (uint4 *)(out + row * E);
#pragma unroll
    for (int j = 0; j < RMS_MAXV; j++) {
        int i = threadIdx.x + j * blockDim.x;
        if (i < n8) {
            uint4 wv = ((const uint4 *)w)[i], o;
            const __nv_bfloat162 *w2 = (const __nv_bfloat162 *)&wv;
            __nv_bfloat162 *o2 = (__nv_bfloat162 *)&o;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 fw = __bfloat1622float2(w2[k]);
                o2[k] = __floats2bfloat162_rn(v[j][2 * k] * r * fw.x, v[j][2 * k + 1] * r * fw.y);
            }
            orow[i] = o;
        }
    }
}

static __global__ void rmsnorm_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *res, const __nv_bfloat16 *w, int E,
                                      float eps, __nv_bfloat16 *out) {
    __shared__ float red[32];
    size_t row = blockIdx.x;
    const __nv_bfloat16 *xr = x + row * E;
    __nv_bfloat16 *rr = res ? res + row * E : nullptr;
    float ss = 0.f;
    for (int i = threadIdx.x; i < E; i += blockDim.x) {
        float a = __bfloat162float(xr[i]);
        if (rr) {
            __nv_bfloat16 s = __float2bfloat16_rn(a + __bfloat162float(rr[i]));
            rr[i] = s;
            a = __bfloat162float(s);
        }
        ss += a * a;
    }
    float r = rsqrtf(block_sum(ss, red) / (float)E + eps);
    const __nv_bfloat16 *src = rr ? rr : xr;
    __nv_bfloat16 *orow = out + row * E;
    for (int i = threadIdx.x; i < E; i += blockDim.x)
        orow[i] = __float2bfloat16_rn(__bfloat162float(src[i]) * r * __bfloat162float(w[i]));
}

extern "C" cllm_status cllm_cuda_rmsnorm(const void *x, void *residual, const void *w, int rows, int E, float eps,
                                         void *out, cudaStream_t stream) {
    CLLM_ARG(rows >= 0 && E > 0, "rmsnorm: bad shape rows=%d E=%d", rows, E);
    CLLM_ARG(x && w && out, "rmsnorm: NULL pointer");
    if (rows == 0) return CLLM_OK;
    bool vec = E % 8 == 0 && cllm_aligned(x, 16) && cllm_aligned(w, 16) && cllm_aligned(out, 16) &&
               (!residual || cllm_aligned(residual, 16));
    int n8 = E / 8;
    int threads = 32;
    while (threads < 1024 && threads * RMS_MAXV < n8) threads *= 2;
    if (threads < 128 && n8 >= 128) threads = 128;
    if (vec && threads * RMS_MAXV >= n8) {
        rmsnorm_vec_kernel<<<rows, threads, 0, stream>>>((const __nv_bfloat16 *)x, (__nv_bfloat16 *)residual,
                                                         (const __nv_bfloat16 *)w, E, eps, (__nv_bfloat16 *)out);
    } else {
        rmsnorm_kernel<<<rows, 256, 0, stream>>>((const __nv_bfloat16 *)x, (__nv_bfloat16 *)residual,
                                                 (const __nv_bfloat16 *)w, E, eps, (__nv_bfloat16 *)out);
    }
    CLLM_CU_LAUNCH("rmsnorm");
    return CLLM_OK;
}
