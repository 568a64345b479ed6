/* In-place rotary embedding, HF rotate_half (NeoX) convention, fp32 angles
 * pos * inv_freq[i] with precise sincosf. One thread per (token, head, i < D/2). */
#include "backend/cuda/cuda_common.cuh"

static __global__ void rope_kernel(__nv_bfloat16 *q, __nv_bfloat16 *k, const int32_t *pos, int T, int H, int Hkv,
                                   int D, int q_stride, int k_stride, const float *inv_freq) {
    int half = D / 2;
    long n = (long)T * (H + Hkv) * half;
    for (long idx = (long)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (long)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        long th = idx / half;
        int hh = (int)(th % (H + Hkv));
        int t = (int)(th / (H + Hkv));
        __nv_bfloat16 *p = hh < H ? q + (size_t)t * q_stride + (size_t)hh * D
                                  : k + (size_t)t * k_stride + (size_t)(hh - H) * D;
        float s, c;
        sincosf((float)pos[t] * inv_freq[i], &s, &c);
        float x0 = __bfloat162float(p[i]), x1 = __bfloat162float(p[i + half]);
        p[i] = __float2bfloat16_rn(x0 * c - x1 * s);
        p[i + half] = __float2bfloat16_rn(x1 * c + x0 * s);
    }
}

extern "C" cllm_status cllm_cuda_rope(void *q, void *k, const int32_t *pos, int T, int H, int Hkv, int D, int q_stride,
                                      int k_stride, const float *inv_freq, cudaStream_t stream) {
    CLLM_ARG(T >= 0 && H > 0 && Hkv >= 0 && D > 0 && D % 2 == 0, "rope: bad shape T=%d H=%d Hkv=%d D=%d", T, H, Hkv, D);
    CLLM_ARG(q_stride >= H * D && (Hkv == 0 || k_stride >= Hkv * D), "rope: row stride too small (q_stride=%d k_stride=%d)",
             q_stride, k_stride);
    CLLM_ARG(q && pos && inv_freq && (k || Hkv == 0), "rope: NULL pointer");
    if (T == 0) return CLLM_OK;
    long n = (long)T * (H + Hkv) * (D / 2);
    long blocks = (n + 255) / 256;
    if (blocks > 132 * 32) blocks = 132 * 32;
    rope_kernel<<<(unsigned)blocks, 256, 0, stream>>>((__nv_bfloat16 *)q, (__nv_bfloat16 *)k, pos, T, H, Hkv, D,
                                                       q_stride, k_stride, inv_freq);
    CLLM_CU_LAUNCH("rope");
    return CLLM_OK;
}
