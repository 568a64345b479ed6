/* Paged KV-cache write (vLLM reshape_and_cache layout (B, P, Hkv, D)):
 * token t's K/V rows go to slot slot_mapping[t]; slot < 0 (padding) is skipped.
 * A bf16 cache gets the rows as they are; an fp8 cache (--kv-cache-dtype fp8)
 * gets e4m3 codes of x / k_scale (v_scale for V), rounded to nearest even and
 * saturated at +-448 (__NV_SATFINITE), the code cllm_f32_to_fp8_e4m3 gives
 * (vLLM's scaled_fp8_conversion in reshape_and_cache_flash). */
#include "backend/cuda/cuda_common.cuh"
#include <cuda_fp8.h>

static __device__ __forceinline__ uint8_t to_e4m3(float x) {
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}

/* Eight bf16 (16 bytes) -> eight e4m3 codes of x / scale (8 bytes). */
static __device__ __forceinline__ uint2 bf16x8_to_e4m3(uint4 a, float scale) {
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
    uint32_t o[2] = {0u, 0u};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&w[i]);
        const uint32_t pair = (uint32_t)to_e4m3(f.x / scale) | ((uint32_t)to_e4m3(f.y / scale) << 8);
        o[i / 2] |= pair << (16 * (i % 2));
    }
    return make_uint2(o[0], o[1]);
}

template <bool F8>
static __global__ void kv_write_kernel(const __nv_bfloat16 *k, const __nv_bfloat16 *v, int k_stride, int v_stride,
                                       const int32_t *slots, int Hkv, int D, void *kc, void *vc, bool vec,
                                       float ks, float vs) {
    int t = blockIdx.x;
    int slot = slots[t];
    if (slot < 0) return;
    int n = Hkv * D;
    const __nv_bfloat16 *kr = k + (size_t)t * k_stride, *vr = v + (size_t)t * v_stride;
    if constexpr (F8) {
        uint8_t *kd = (uint8_t *)kc + (size_t)slot * n, *vd = (uint8_t *)vc + (size_t)slot * n;
        if (vec) {
            for (int i = threadIdx.x; i < n / 8; i += blockDim.x) {
                ((uint2 *)kd)[i] = bf16x8_to_e4m3(((const uint4 *)kr)[i], ks);
                ((uint2 *)vd)[i] = bf16x8_to_e4m3(((const uint4 *)vr)[i], vs);
            }
        } else {
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                kd[i] = to_e4m3(__bfloat162float(kr[i]) / ks);
                vd[i] = to_e4m3(__bfloat162float(vr[i]) / vs);
            }
        }
    } else {
        __nv_bfloat16 *kd = (__nv_bfloat16 *)kc + (size_t)slot * n, *vd = (__nv_bfloat16 *)vc + (size_t)slot * n;
        if (vec) {
            for (int i = threadIdx.x; i < n / 8; i += blockDim.x) {
                ((uint4 *)kd)[i] = ((const uint4 *)kr)[i];
                ((uint4 *)vd)[i] = ((const uint4 *)vr)[i];
            }
        } else {
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                kd[i] = kr[i];
                vd[i] = vr[i];
            }
        }
    }
}

extern "C" cllm_status cllm_cuda_kv_write(const void *k, const void *v, int k_stride, int v_stride,
                                          const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                                          const cllm_kv_quant *kvq, cudaStream_t stream) {
    CLLM_ARG(meta && k && v && k_cache && v_cache && meta->slot_mapping, "kv_write: NULL pointer");
    int T = meta->num_tokens;
    CLLM_ARG(T >= 0 && Hkv > 0 && D > 0 && k_stride >= Hkv * D && v_stride >= Hkv * D,
             "kv_write: bad shape T=%d Hkv=%d D=%d k_stride=%d v_stride=%d", T, Hkv, D, k_stride, v_stride);
    const bool f8 = kvq && kvq->dtype == CLLM_DTYPE_F8_E4M3;
    CLLM_ARG(!kvq || f8 || kvq->dtype == CLLM_DTYPE_AUTO || kvq->dtype == CLLM_DTYPE_BF16,
             "kv_write: KV cache dtype %d (bf16 or fp8 e4m3)", kvq ? (int)kvq->dtype : 0);
    CLLM_ARG(!f8 || (kvq->k_scale > 0.f && kvq->v_scale > 0.f), "kv_write: fp8 KV scales must be positive");
    if (T == 0) return CLLM_OK;
    bool vec = D % 8 == 0 && k_stride % 8 == 0 && v_stride % 8 == 0 && cllm_aligned(k, 16) && cllm_aligned(v, 16) &&
               cllm_aligned(k_cache, 16) && cllm_aligned(v_cache, 16);
    if (f8)
        kv_write_kernel<true><<<T, 128, 0, stream>>>((const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v, k_stride,
                                                     v_stride, meta->slot_mapping, Hkv, D, k_cache, v_cache, vec,
                                                     kvq->k_scale, kvq->v_scale);
    else
        kv_write_kernel<false><<<T, 128, 0, stream>>>((const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v, k_stride,
                                                      v_stride, meta->slot_mapping, Hkv, D, k_cache, v_cache, vec,
                                                      1.f, 1.f);
    CLLM_CU_LAUNCH("kv_write");
    return CLLM_OK;
}
