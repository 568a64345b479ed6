/* Paged KV-cache write (vLLM reshape_and_cache layout (B, P, Hkv, D)):
 * token t's K/V rows go to slot slot_mapping[t]; slot < 0 (padding) is skipped. */
#include "backend/cuda/cuda_common.cuh"

static __global__ void kv_write_kernel(const __nv_bfloat16 *k, const __nv_bfloat16 *v, int k_stride, int v_stride,
                                       const int32_t *slots, int Hkv, int D, __nv_bfloat16 *kc, __nv_bfloat16 *vc,
                                       bool vec) {
    int t = blockIdx.x;
    int slot = slots[t];
    if (slot < 0) return;
    int n = Hkv * D;
    const __nv_bfloat16 *kr = k + (size_t)t * k_stride, *vr = v + (size_t)t * v_stride;
    __nv_bfloat16 *kd = kc + (size_t)slot * n, *vd = vc + (size_t)slot * n;
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

extern "C" cllm_status cllm_cuda_kv_write(const void *k, const void *v, int k_stride, int v_stride,
                                          const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                                          cudaStream_t stream) {
    CLLM_ARG(meta && k && v && k_cache && v_cache && meta->slot_mapping, "kv_write: NULL pointer");
    int T = meta->num_tokens;
    CLLM_ARG(T >= 0 && Hkv > 0 && D > 0 && k_stride >= Hkv * D && v_stride >= Hkv * D,
             "kv_write: bad shape T=%d Hkv=%d D=%d k_stride=%d v_stride=%d", T, Hkv, D, k_stride, v_stride);
    if (T == 0) return CLLM_OK;
    bool vec = D % 8 == 0 && k_stride % 8 == 0 && v_stride % 8 == 0 && cllm_aligned(k, 16) && cllm_aligned(v, 16) &&
               cllm_aligned(k_cache, 16) && cllm_aligned(v_cache, 16);
    kv_write_kernel<<<T, 128, 0, stream>>>((const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v, k_stride, v_stride,
                                           meta->slot_mapping, Hkv, D, (__nv_bfloat16 *)k_cache,
                                           (__nv_bfloat16 *)v_cache, vec);
    CLLM_CU_LAUNCH("kv_write");
    return CLLM_OK;
}
