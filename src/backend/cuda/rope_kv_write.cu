/* The attention prologue in one launch: per-head RMSNorm of q and k (Qwen3
 * q_norm / k_norm, optional), rotary embedding of q and k (HF rotate_half),
 * and the paged KV write of k and v (vLLM reshape_and_cache layout (B, P,
 * Hkv, D)): what head_rmsnorm.cu, rope.cu and kv_write.cu do in three or four
 * launches, with the same arithmetic (the normed value is rounded to bf16
 * before the rotation, sums of squares in the order of head_rmsnorm_kernel,
 * precise sincosf of pos * inv_freq[i]).
 *
 * One warp per (token, head) over the H query heads, Hkv key heads and Hkv
 * value heads of a token. A q or k head: lane l loads elements l, l + 32, ...
 * (at most 8: D <= 256), sums their squares, warp-reduces, scales by the norm
 * weight, stages the bf16-rounded values in shared memory, then rotates the
 * pairs (i, i + D/2) and writes them back in place (q, k) and, for k, into
 * the cache slot. A v head is copied into its cache slot. slot < 0 (padding)
 * skips the cache writes. An fp8 cache (f8) gets e4m3 codes of x / k_scale
 * (v_scale for V), as kv_write.cu writes them. */
#include "backend/cuda/cuda_common.cuh"
#include <cuda_fp8.h>

#define RKW_WARPS 8
#define RKW_MAX_D 256

static __global__ void __launch_bounds__(RKW_WARPS * 32)
qk_norm_rope_kv_write_kernel(__nv_bfloat16 *q, __nv_bfloat16 *k, const __nv_bfloat16 *v, int q_stride, int kv_stride,
                             const int32_t *__restrict__ pos, int T, int H, int Hkv, int D,
                             const __nv_bfloat16 *__restrict__ qn, const __nv_bfloat16 *__restrict__ kn, float eps,
                             const float *__restrict__ inv_freq, const int32_t *__restrict__ slots, void *kc,
                             void *vc, bool f8, float ks, float vs) {
    __shared__ float stage[RKW_WARPS][RKW_MAX_D];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long w = (long)blockIdx.x * RKW_WARPS + warp;
    const int nh = H + 2 * Hkv;
    if (w >= (long)T * nh) return; /* warp-uniform */
    const int t = (int)(w / nh), hh = (int)(w % nh);
    const int slot = slots[t];
    const size_t n = (size_t)Hkv * D; /* one cache slot */
    if (hh >= H + Hkv) {              /* v head: the cache copy */
        const int g = hh - H - Hkv;
        if (slot < 0) return;
        const __nv_bfloat16 *src = v + (size_t)t * kv_stride + (size_t)g * D;
        const size_t o = (size_t)slot * n + (size_t)g * D;
        if (f8) {
            uint8_t *dst = (uint8_t *)vc + o;
            for (int i = lane; i < D; i += 32)
                dst[i] = (uint8_t)__nv_cvt_float_to_fp8(__bfloat162float(src[i]) / vs, __NV_SATFINITE, __NV_E4M3);
        } else {
            __nv_bfloat16 *dst = (__nv_bfloat16 *)vc + o;
            for (int i = lane; i < D; i += 32) dst[i] = src[i];
        }
        return;
    }
    const bool is_q = hh < H;
    const int g = is_q ? hh : hh - H;
    __nv_bfloat16 *p = is_q ? q + (size_t)t * q_stride + (size_t)g * D : k + (size_t)t * kv_stride + (size_t)g * D;
    const __nv_bfloat16 *nw = is_q ? qn : kn;
    float *s = stage[warp];
    float x[RKW_MAX_D / 32];
    float ss = 0.f;
#pragma unroll
    for (int m = 0; m < RKW_MAX_D / 32; m++) {
        const int i = lane + 32 * m;
        x[m] = i < D ? __bfloat162float(p[i]) : 0.f;
        ss += x[m] * x[m]; /* the order of head_rmsnorm_kernel: i = lane, lane + 32, ... */
    }
    if (nw) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float r = rsqrtf(ss / (float)D + eps);
#pragma unroll
        for (int m = 0; m < RKW_MAX_D / 32; m++) {
            const int i = lane + 32 * m;
            if (i < D) x[m] = __bfloat162float(__float2bfloat16_rn(x[m] * r * __bfloat162float(nw[i])));
        }
    }
#pragma unroll
    for (int m = 0; m < RKW_MAX_D / 32; m++) {
        const int i = lane + 32 * m;
        if (i < D) s[i] = x[m];
    }
    __syncwarp();
    const int half = D / 2;
    const bool to_cache = !is_q && slot >= 0;
    const size_t co = (size_t)slot * n + (size_t)g * D;
    for (int i = lane; i < half; i += 32) {
        float sn, cs;
        sincosf((float)pos[t] * inv_freq[i], &sn, &cs);
        const float x0 = s[i], x1 = s[i + half];
        const __nv_bfloat16 y0 = __float2bfloat16_rn(x0 * cs - x1 * sn), y1 = __float2bfloat16_rn(x1 * cs + x0 * sn);
        p[i] = y0;
        p[i + half] = y1;
        if (to_cache) {
            if (f8) {
                uint8_t *c8 = (uint8_t *)kc + co;
                c8[i] = (uint8_t)__nv_cvt_float_to_fp8(__bfloat162float(y0) / ks, __NV_SATFINITE, __NV_E4M3);
                c8[i + half] = (uint8_t)__nv_cvt_float_to_fp8(__bfloat162float(y1) / ks, __NV_SATFINITE, __NV_E4M3);
            } else {
                __nv_bfloat16 *c = (__nv_bfloat16 *)kc + co;
                c[i] = y0, c[i + half] = y1;
            }
        }
    }
}

extern "C" cllm_status cllm_cuda_qk_norm_rope_kv_write(void *q, void *k, const void *v, int q_stride, int kv_stride,
                                                       const int32_t *pos, int T, int H, int Hkv, int D,
                                                       const void *q_norm, const void *k_norm, float eps,
                                                       const float *inv_freq, const cllm_attn_meta *meta,
                                                       void *k_cache, void *v_cache, const cllm_kv_quant *kvq,
                                                       cudaStream_t stream) {
    CLLM_ARG(meta && q && k && v && pos && inv_freq && k_cache && v_cache && meta->slot_mapping,
             "qk_norm_rope_kv_write: NULL pointer");
    CLLM_ARG(!q_norm == !k_norm, "qk_norm_rope_kv_write: q_norm and k_norm go together");
    CLLM_ARG(T == meta->num_tokens && T >= 0 && H > 0 && Hkv > 0 && D > 0 && D % 2 == 0 && D <= RKW_MAX_D,
             "qk_norm_rope_kv_write: bad shape T=%d (meta %d) H=%d Hkv=%d D=%d (even, <= %d)", T, meta->num_tokens, H,
             Hkv, D, RKW_MAX_D);
    CLLM_ARG(q_stride >= H * D && kv_stride >= Hkv * D, "qk_norm_rope_kv_write: row stride too small (%d, %d)",
             q_stride, kv_stride);
    const bool f8 = kvq && kvq->dtype == CLLM_DTYPE_F8_E4M3;
    CLLM_ARG(!kvq || f8 || kvq->dtype == CLLM_DTYPE_AUTO || kvq->dtype == CLLM_DTYPE_BF16,
             "qk_norm_rope_kv_write: KV cache dtype %d (bf16 or fp8 e4m3)", kvq ? (int)kvq->dtype : 0);
    CLLM_ARG(!f8 || (kvq->k_scale > 0.f && kvq->v_scale > 0.f),
             "qk_norm_rope_kv_write: fp8 KV scales must be positive");
    if (T == 0) return CLLM_OK;
    const long warps = (long)T * (H + 2 * Hkv);
    qk_norm_rope_kv_write_kernel<<<(unsigned)((warps + RKW_WARPS - 1) / RKW_WARPS), RKW_WARPS * 32, 0, stream>>>(
        (__nv_bfloat16 *)q, (__nv_bfloat16 *)k, (const __nv_bfloat16 *)v, q_stride, kv_stride, pos, T, H, Hkv, D,
        (const __nv_bfloat16 *)q_norm, (const __nv_bfloat16 *)k_norm, eps, inv_freq, meta->slot_mapping, k_cache,
        v_cache, f8, f8 ? kvq->k_scale : 1.f, f8 ? kvq->v_scale : 1.f);
    CLLM_CU_LAUNCH("qk_norm_rope_kv_write");
    return CLLM_OK;
}
