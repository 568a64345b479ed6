/* CPU reference ops (fp32), callable directly (tests) and wrapped by the
 * CPU backend's op table (cpu_backend.c). Each function follows exactly the
 * semantics stated for the op of the same name in src/backend/backend.h;
 * shapes use that header's legend. All pointers are host memory, row-major,
 * float32 unless stated. Loops are parallel with OpenMP; `linear` uses
 * OpenBLAS cblas_sgemm. Nothing here allocates except `attention` (none) and
 * `sample` (uses the caller's workspace).
 * Every function returns CLLM_OK or CLLM_ERR_INVALID_ARG (bad shape/index,
 * message says which). */
#ifndef CLLM_BACKEND_CPU_OPS_H
#define CLLM_BACKEND_CPU_OPS_H

#include "backend/backend.h"

/* out (T, E) = table[ids[t] - vocab_start]; table holds V rows; ids outside
 * [vocab_start, vocab_start + V) give a zero row (backend.h). */
cllm_status cllm_cpu_embedding(const int32_t *ids, int T, const float *table, int vocab_start, int V, int E, float *out);

/* HF LlamaRMSNorm over rows of E; with residual: residual += x first and the
 * norm reads residual (vLLM fused_add_rms_norm). Sum of squares in double. */
cllm_status cllm_cpu_rmsnorm(const float *x, float *residual, const float *w, int rows, int E, float eps,
                             float *out);

/* In-place per-head RMSNorm: x (T, nheads, D) with token rows stride apart. */
cllm_status cllm_cpu_head_rmsnorm(float *x, int T, int nheads, int D, int stride, const float *w, float eps);

/* out (T, N) = x (T, K) @ W^T + bias, fp32 (cblas_sgemm). */
cllm_status cllm_cpu_linear(const float *x, int T, const cllm_weight *w, float *out);

/* The FP8 linear of the CUDA backend (backend/cuda/linear_fp8.cu), exactly,
 * as its oracle: out (T, N) f32 = (sum_k xa[t][k] * fp8(wq[n][k])) *
 * (sx[t] * w_scale[n]) + bias[n], products and sums in double.
 * x (T, K) f32 (the bf16 activations' values); wq (N, K) float8_e4m3fn
 * codes; w_scale (N) f32 (per output channel; a per-tensor scale repeated);
 * bias (N) f32 or NULL. quantize_act true (W8A8, the CUDA cuBLASLt path):
 * xa[t] = fp8 values of cllm_fp8_quantize_row(x[t]) and sx[t] its scale;
 * false (W8A16, the CUDA decode GEMV): xa = x, sx = 1. mag (T, N) f32 or
 * NULL: sum_k |xa[t][k] * fp8(wq[n][k])| * sx[t] * w_scale[n], the size
 * that fp32 accumulation errors scale with (the CUDA test's tolerance).
 * Host memory; allocates K floats + K bytes. Errors: CLLM_ERR_INVALID_ARG,
 * CLLM_ERR_OOM. Sources: vLLM's W8A8 FP8 schemes (per-token dynamic
 * activation scales x per-channel weight scales, Fp8LinearOp). */
cllm_status cllm_cpu_linear_fp8(const float *x, int T, const uint8_t *wq, const float *w_scale, const float *bias,
                                int N, int K, bool quantize_act, float *out, float *mag);

/* In-place rotate_half RoPE of q (T, H, D) and k (T, Hkv, D) (k may be NULL). */
cllm_status cllm_cpu_rope(float *q, float *k, const int32_t *pos, int T, int H, int Hkv, int D, int q_stride,
                          int k_stride, const float *inv_freq);

/* out (T, I) = silu(gate_up[:, :I]) * gate_up[:, I:]. */
cllm_status cllm_cpu_silu_mul(const float *gate_up, int T, int I, float *out);

/* Paged KV write; slot_mapping[t] < 0 skips token t (the cache size is not
 * known here: slots must be < B*P, the caller's invariant). kvq NULL or not
 * fp8: f32 rows copied; fp8 (kvq->dtype F8_E4M3): each element stored as
 * cllm_f32_to_fp8_e4m3(x / scale), one byte. */
cllm_status cllm_cpu_kv_write(const float *k, const float *v, int k_stride, int v_stride,
                              const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                              const cllm_kv_quant *kvq);

/* Causal paged GQA attention (online softmax in fp32). With an fp8 cache
 * (kvq->dtype F8_E4M3) each K/V element is dequantized as
 * cllm_fp8_e4m3_to_f32(q) * scale before use: the result is bit for bit the
 * f32 attention over the dequantized cache. */
cllm_status cllm_cpu_attention(const float *q, int q_stride, const void *k_cache, const void *v_cache,
                               const cllm_attn_meta *meta, int H, int Hkv, int D, float scale, float *out,
                               const cllm_kv_quant *kvq);

/* out (S, E) = x[idx[s]]; idx values must be >= 0 (upper bound unchecked). */
cllm_status cllm_cpu_gather_rows(const float *x, const int32_t *idx, int S, int E, float *out);

/* The sampler of backend.h's cllm_sample_params, one row at a time.
 * Details where backend.h is brief (vLLM's order): top-k keeps the k highest
 * probabilities (ties broken by lower id); top-p works on the distribution
 * renormalized over the top-k set and keeps, in descending-probability order
 * (ties: lower id first), tokens until the cumulative mass reaches
 * top_p * (top-k mass) (at least one token); min-p then keeps tokens with
 * prob >= min_p * max_prob. The draw: target = u * (kept mass), walk the kept
 * tokens in id order accumulating prob, pick the first whose running sum
 * exceeds target (the last kept one if rounding leaves none).
 * Softmax: max-subtracted exp in fp32, sums in double.
 * workspace: cllm_cpu_sample_workspace_bytes(S, V) bytes. */
cllm_status cllm_cpu_sample(const float *logits, int S, int V, const cllm_sample_params *params, void *workspace,
                            int32_t *tokens);
size_t cllm_cpu_sample_workspace_bytes(int S, int V);

/* backend.h apply_penalties (vLLM order: logit bias, repetition over
 * prompt+output, then frequency/presence over output). workspace: S*V
 * int32 (scratch). */
cllm_status cllm_cpu_apply_penalties(const float *logits, int S, int V, const cllm_penalty_params *params,
                                     const int32_t *token_ids, const cllm_logit_bias *bias, void *workspace,
                                     float *out);
size_t cllm_cpu_penalties_workspace_bytes(int S, int V);

/* backend.h logprobs: raw log_softmax (sum in double), token logprob and
 * the top k (descending, ties lower id first). */
cllm_status cllm_cpu_logprobs(const float *logits, int S, int V, const int32_t *tokens, int k, float *token_logprob,
                              int32_t *top_ids, float *top_logprobs);

/* backend.h copy_blocks: memcpy of whole blocks. */
cllm_status cllm_cpu_copy_blocks(void *cache, size_t block_bytes, const int32_t *pairs, int n);

/* Host available / physical memory (sysconf). */
cllm_status cllm_cpu_mem_info(size_t *free_bytes, size_t *total_bytes);

/* Mixture of experts (cpu_moe.c); semantics in backend.h. */
cllm_status cllm_cpu_moe_route(const float *logits, int T, int NE, int k, bool renormalize, int32_t *ids,
                               float *weights);
size_t cllm_cpu_moe_workspace_bytes(int T, int k, int E, int I);
cllm_status cllm_cpu_moe_experts(const float *x, int T, int E, const int32_t *ids, const float *weights, int k,
                                 const cllm_weight *gate_up, const cllm_weight *down, int expert_start,
                                 int num_local, int I, void *workspace, float *out);
cllm_status cllm_cpu_moe_combine(const float *y, const int32_t *rows, const float *w, int n, int k, int E, float *out);

#endif
