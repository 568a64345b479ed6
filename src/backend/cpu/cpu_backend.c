/* The CPU backend: host memory, fp32 activations and weights, synchronous.
 * Wraps the reference ops of cpu_ops.c in backend.h's op table. */
#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "core/dtype.h"
#include "core/status.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void cpu_destroy(cllm_backend *be) { free(be); }

static cllm_status cpu_alloc(cllm_backend *be, size_t bytes, void **out) {
    /* calloc: untouched pages (e.g. an unused KV cache tail) cost no RAM */
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) return cllm_error(CLLM_ERR_OOM, "cpu backend: cannot allocate %zu bytes (%.2f GiB) of host memory", bytes,
                              (double)bytes / (1 << 30));
    *out = p;
    return CLLM_OK;
}

static void cpu_free(cllm_backend *be, void *p) { free(p); }

static cllm_status cpu_upload(cllm_backend *be, void *dst, size_t dst_off, const void *src, cllm_dtype src_t,
                              size_t n) {
    return cllm_dtype_convert((float *)dst + dst_off, CLLM_DTYPE_F32, src, src_t, n);
}

static cllm_status cpu_copy(cllm_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
    return CLLM_OK;
}

static cllm_status cpu_sync(cllm_backend *be) { return CLLM_OK; }

static cllm_status cpu_embedding(cllm_backend *be, const int32_t *ids, int T, const void *table, int vocab_start,
                                 int V, int E, void *out) {
    return cllm_cpu_embedding(ids, T, table, vocab_start, V, E, out);
}
static cllm_status cpu_copy2d(cllm_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                              size_t width_bytes, size_t rows) {
    if (width_bytes > dst_pitch || width_bytes > src_pitch)
        return cllm_error(CLLM_ERR_INVALID_ARG, "copy2d: width %zu beyond a pitch (%zu, %zu)", width_bytes, dst_pitch,
                          src_pitch);
    for (size_t r = 0; r < rows; r++)
        memmove((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, width_bytes);
    return CLLM_OK;
}
static cllm_status cpu_rmsnorm(cllm_backend *be, const void *x, void *residual, const void *w, int rows, int E,
                               float eps, void *out) {
    return cllm_cpu_rmsnorm(x, residual, w, rows, E, eps, out);
}
static cllm_status cpu_head_rmsnorm(cllm_backend *be, void *x, int T, int nheads, int D, int stride, const void *w,
                                    float eps) {
    return cllm_cpu_head_rmsnorm(x, T, nheads, D, stride, w, eps);
}
static cllm_status cpu_linear(cllm_backend *be, const void *x, int T, const cllm_weight *w, void *out,
                              cllm_dtype out_dtype) {
    if (out_dtype != CLLM_DTYPE_F32)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cpu linear: out_dtype %s unsupported (float32 only)",
                          cllm_dtype_name(out_dtype));
    if (w->dtype != CLLM_DTYPE_AUTO && w->dtype != CLLM_DTYPE_F32)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "cpu linear: %s weights are not supported (the CPU backend "
                          "dequantizes FP8 weights to float32 on load)", cllm_dtype_name(w->dtype));
    return cllm_cpu_linear(x, T, w, out);
}
static cllm_status cpu_rope(cllm_backend *be, void *q, void *k, const int32_t *pos, int T, int H, int Hkv, int D,
                            int q_stride, int k_stride, const float *inv_freq) {
    return cllm_cpu_rope(q, k, pos, T, H, Hkv, D, q_stride, k_stride, inv_freq);
}
static cllm_status cpu_silu_mul(cllm_backend *be, const void *gate_up, int T, int I, void *out) {
    return cllm_cpu_silu_mul(gate_up, T, I, out);
}
static cllm_status cpu_kv_write(cllm_backend *be, const void *k, const void *v, int k_stride, int v_stride,
                                const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                                const cllm_kv_quant *kvq) {
    return cllm_cpu_kv_write(k, v, k_stride, v_stride, meta, Hkv, D, k_cache, v_cache, kvq);
}
/* The reference of the fused prologue: the separate ops in their order. */
static cllm_status cpu_qk_norm_rope_kv_write(cllm_backend *be, void *q, void *k, const void *v, int q_stride,
                                             int kv_stride, const int32_t *pos, int T, int H, int Hkv, int D,
                                             const void *q_norm, const void *k_norm, float eps, const float *inv_freq,
                                             const cllm_attn_meta *meta, void *k_cache, void *v_cache,
                                             const cllm_kv_quant *kvq) {
    (void)be;
    if (!q_norm != !k_norm)
        return cllm_error(CLLM_ERR_INVALID_ARG, "qk_norm_rope_kv_write: q_norm and k_norm go together");
    if (q_norm) {
        CLLM_TRY(cllm_cpu_head_rmsnorm(q, T, H, D, q_stride, q_norm, eps));
        CLLM_TRY(cllm_cpu_head_rmsnorm(k, T, Hkv, D, kv_stride, k_norm, eps));
    }
    CLLM_TRY(cllm_cpu_rope(q, k, pos, T, H, Hkv, D, q_stride, kv_stride, inv_freq));
    return cllm_cpu_kv_write(k, v, kv_stride, kv_stride, meta, Hkv, D, k_cache, v_cache, kvq);
}
static cllm_status cpu_attention(cllm_backend *be, const void *q, int q_stride, const void *k_cache,
                                 const void *v_cache, const cllm_attn_meta *meta, int H, int Hkv, int D, float scale,
                                 void *out, const cllm_kv_quant *kvq) {
    return cllm_cpu_attention(q, q_stride, k_cache, v_cache, meta, H, Hkv, D, scale, out, kvq);
}
static cllm_status cpu_gather_rows(cllm_backend *be, const void *x, const int32_t *idx, int S, int E, void *out) {
    return cllm_cpu_gather_rows(x, idx, S, E, out);
}
static cllm_status cpu_sample(cllm_backend *be, const float *logits, int S, int V, const cllm_sample_params *params,
                              void *workspace, int32_t *tokens) {
    return cllm_cpu_sample(logits, S, V, params, workspace, tokens);
}

static cllm_status cpu_apply_penalties(cllm_backend *be, const float *logits, int S, int V,
                                       const cllm_penalty_params *params, const int32_t *token_ids,
                                       const cllm_logit_bias *bias, void *workspace, float *out) {
    return cllm_cpu_apply_penalties(logits, S, V, params, token_ids, bias, workspace, out);
}
static cllm_status cpu_logprobs(cllm_backend *be, const float *logits, int S, int V, const int32_t *tokens, int k,
                                float *token_logprob, int32_t *top_ids, float *top_logprobs) {
    return cllm_cpu_logprobs(logits, S, V, tokens, k, token_logprob, top_ids, top_logprobs);
}
static cllm_status cpu_copy_blocks(cllm_backend *be, void *cache, size_t block_bytes, const int32_t *pairs, int n) {
    return cllm_cpu_copy_blocks(cache, block_bytes, pairs, n);
}
static cllm_status cpu_mem_info(cllm_backend *be, size_t *free_bytes, size_t *total_bytes) {
    return cllm_cpu_mem_info(free_bytes, total_bytes);
}

static const char *cpu_device_name(cllm_backend *be) { return "cpu"; }
static cllm_status cpu_moe_route(cllm_backend *be, const float *logits, int T, int NE, int k, bool renormalize,
                                 int32_t *ids, float *weights) {
    return cllm_cpu_moe_route(logits, T, NE, k, renormalize, ids, weights);
}
static cllm_status cpu_moe_experts(cllm_backend *be, const void *x, int T, int E, const int32_t *ids, const float *w,
                                   int k, const cllm_weight *gate_up, const cllm_weight *down, int expert_start,
                                   int num_local, int I, void *workspace, void *out) {
    return cllm_cpu_moe_experts(x, T, E, ids, w, k, gate_up, down, expert_start, num_local, I, workspace, out);
}
static cllm_status cpu_moe_combine(cllm_backend *be, const void *y, const int32_t *rows, const float *w, int n, int k,
                                   int E, void *out) {
    return cllm_cpu_moe_combine(y, rows, w, n, k, E, out);
}

static const cllm_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .h2d = cpu_copy,
    .d2h = cpu_copy,
    .sync = cpu_sync,
    .copy2d = cpu_copy2d,
    .embedding = cpu_embedding,
    .rmsnorm = cpu_rmsnorm,
    .head_rmsnorm = cpu_head_rmsnorm,
    .linear = cpu_linear,
    .rope = cpu_rope,
    .silu_mul = cpu_silu_mul,
    .kv_write = cpu_kv_write,
    .qk_norm_rope_kv_write = cpu_qk_norm_rope_kv_write,
    .attention = cpu_attention,
    .gather_rows = cpu_gather_rows,
    .sample = cpu_sample,
    .sample_workspace_bytes = cllm_cpu_sample_workspace_bytes,
    .apply_penalties = cpu_apply_penalties,
    .penalties_workspace_bytes = cllm_cpu_penalties_workspace_bytes,
    .logprobs = cpu_logprobs,
    .copy_blocks = cpu_copy_blocks,
    .mem_info = cpu_mem_info,
    .device_name = cpu_device_name,
    .moe_route = cpu_moe_route,
    .moe_experts = cpu_moe_experts,
    .moe_workspace_bytes = cllm_cpu_moe_workspace_bytes,
    .moe_combine = cpu_moe_combine,
};

cllm_status cllm_backend_cpu_create(int num_threads, cllm_backend **out) {
    *out = NULL;
    if (num_threads < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "cpu backend: num_threads %d < 0", num_threads);
    cllm_backend *be = calloc(1, sizeof *be);
    if (!be) return cllm_error(CLLM_ERR_OOM, "cpu backend: out of memory");
    if (num_threads > 0) omp_set_num_threads(num_threads);
    be->ops = &cpu_ops;
    be->act = CLLM_DTYPE_F32;
    be->impl = NULL;
    *out = be;
    return CLLM_OK;
}
