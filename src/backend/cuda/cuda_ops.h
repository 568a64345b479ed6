/* The CUDA backend's op entries (one per src/backend/cuda/<op>.cu).
 *
 * Each entry validates its shapes/alignment, launches on `stream`
 * asynchronously, checks the launch and allocates nothing. Device pointers
 * throughout; activations and weights are bf16 (uint16_t storage, "bf16"
 * below), accumulation fp32. Semantics are those of the op table in
 * src/backend/backend.h (same argument names); return codes: CLLM_OK,
 * CLLM_ERR_INVALID_ARG (bad shape/alignment, message says which),
 * CLLM_ERR_CUDA (launch/cuBLASLt failure, message carries file:line). */
#ifndef CLLM_CUDA_OPS_H
#define CLLM_CUDA_OPS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "backend/backend.h"

/* dst (n) bf16 = convert(src (n), src_t in {F32, BF16, F16}); src device. */
cllm_status cllm_cuda_convert_to_bf16(void *dst, const void *src, cllm_dtype src_t, size_t n, cudaStream_t stream);

/* out (T, E) bf16 = table (V, E) bf16 [ids (T) int32 - vocab_start]; ids outside
 * [vocab_start, vocab_start + V) give a zero row. */
cllm_status cllm_cuda_embedding(const int32_t *ids, int T, const void *table, int vocab_start, int V, int E, void *out,
                                cudaStream_t stream);

/* Fused residual add + RMSNorm (HF LlamaRMSNorm; vLLM fused_add_rms_norm):
 * x, residual, out (rows, E) bf16, w (E) bf16; residual may be NULL. */
cllm_status cllm_cuda_rmsnorm(const void *x, void *residual, const void *w, int rows, int E, float eps, void *out,
                              cudaStream_t stream);

/* In-place per-head RMSNorm (Qwen3 q_norm/k_norm): x (T, nheads, D), token row stride `stride` elements. */
cllm_status cllm_cuda_head_rmsnorm(void *x, int T, int nheads, int D, int stride, const void *w, float eps,
                                   cudaStream_t stream);

/* cuBLASLt state for linear: a handle, one workspace and an algo cache. */
typedef struct cllm_cuda_gemm cllm_cuda_gemm;
cllm_status cllm_cuda_gemm_create(size_t workspace_bytes, cllm_cuda_gemm **out);
void cllm_cuda_gemm_destroy(cllm_cuda_gemm *g);
/* out (T, N) = x (T, K) bf16 @ W (N, K)^T bf16 + bias (N) bf16; out bf16 or F32; fp32 accumulation.
 * FP8 weights (w->dtype F8_E4M3) go to cllm_cuda_linear_fp8. */
cllm_status cllm_cuda_linear(cllm_cuda_gemm *g, const void *x, int T, const cllm_weight *w, void *out,
                             cllm_dtype out_dtype, cudaStream_t stream);

/* FP8 weights (linear_fp8.cu; cllm_cuda_linear sends w->dtype F8_E4M3 there):
 * out (T, N) bf16 or f32 = x (T, K) bf16 @ (fp8(W) * scale[n])^T + bias (N) bf16.
 * W (N, K) e4m3 codes, scale (N) f32, both device; K % 16 == 0; x, W, scale,
 * bias, out 16-byte aligned. T <= the GEMV threshold (8): FP8-weight GEMV
 * with bf16 activations (W8A16); above: activations quantized per token into
 * g's FP8 workspace, then a cuBLASLt e4m3 GEMM (W8A8; N % 16 == 0, else the
 * GEMV token chunk by chunk). Capturable; allocates nothing. Exact math:
 * cllm_cpu_linear_fp8. Errors: CLLM_ERR_INVALID_ARG (shape, alignment, dtype,
 * NULL scale), CLLM_ERR_CUDA. */
cllm_status cllm_cuda_linear_fp8(cllm_cuda_gemm *g, const void *x, int T, const cllm_weight *w, void *out,
                                 cllm_dtype out_dtype, cudaStream_t stream);
/* The FP8 linear's paths (cllm_cuda_linear_fp8_last_path, _tune). */
enum {
    CLLM_CUDA_FP8_AUTO = 0,        /* GEMV up to the threshold, else LT_OUTER, else LT_EPILOGUE, else GEMV */
    CLLM_CUDA_FP8_GEMV = 1,        /* W8A16 weight-streaming kernel (every T, 8 tokens per launch) */
    CLLM_CUDA_FP8_LT_OUTER = 2,    /* cuBLASLt W8A8 with outer-vector scales (+ bias epilogue) */
    CLLM_CUDA_FP8_LT_EPILOGUE = 3  /* cuBLASLt W8A8 unscaled into f32 + a scale/bias kernel */
};
/* Process-wide knob (tests, bench; not thread-safe against running linears): path forces a CLLM_CUDA_FP8_*
 * path (a forced LT path still falls back when cuBLASLt refuses it; AUTO restores the default), gemv_max_t the
 * largest T of the GEMV path under AUTO (default 8). Negative: unchanged. The environment variable
 * CLLM_FP8_PATH=gemv|outer|epilogue sets the path at first use. */
void cllm_cuda_linear_fp8_tune(int path, int gemv_max_t);
/* The CLLM_CUDA_FP8_* path the last cllm_cuda_linear_fp8 on g took (0 before any). */
int cllm_cuda_linear_fp8_last_path(const cllm_cuda_gemm *g);
/* Dynamic per-token FP8 quantization (quantize_fp8.cu): x (T, K) bf16 -> q (T, K) e4m3 codes and scale (T) f32,
 * bit for bit cllm_fp8_quantize_row (core/fp8_quant.h) of each row. K % 8 == 0; x 16-byte, q 8-byte aligned. */
cllm_status cllm_cuda_quantize_fp8_rows(const void *x, int T, int K, uint8_t *q, float *scale, cudaStream_t stream);

/* In-place rotate_half RoPE on q (T, H, D) stride q_stride and k (T, Hkv, D) stride k_stride;
 * pos (T) int32, inv_freq (D/2) fp32. */
cllm_status cllm_cuda_rope(void *q, void *k, const int32_t *pos, int T, int H, int Hkv, int D, int q_stride,
                           int k_stride, const float *inv_freq, cudaStream_t stream);

/* out (T, I) = silu(gate_up[:, :I]) * gate_up[:, I:]. */
cllm_status cllm_cuda_silu_mul(const void *gate_up, int T, int I, void *out, cudaStream_t stream);

/* Paged KV write: caches (B, P, Hkv, D); slot < 0 skipped. kvq NULL (or AUTO/BF16): bf16
 * cache; F8_E4M3: fp8 codes e4m3(x / k_scale) (v_scale for V), round to nearest even,
 * saturated at +-448, as cllm_f32_to_fp8_e4m3 (the CPU op). */
cllm_status cllm_cuda_kv_write(const void *k, const void *v, int k_stride, int v_stride, const cllm_attn_meta *meta,
                               int Hkv, int D, void *k_cache, void *v_cache, const cllm_kv_quant *kvq,
                               cudaStream_t stream);

/* head_rmsnorm (q_norm, k_norm: both or neither) + rope + kv_write in one launch (rope_kv_write.cu);
 * bf16, D even and <= 256. */
cllm_status cllm_cuda_qk_norm_rope_kv_write(void *q, void *k, const void *v, int q_stride, int kv_stride,
                                            const int32_t *pos, int T, int H, int Hkv, int D, const void *q_norm,
                                            const void *k_norm, float eps, const float *inv_freq,
                                            const cllm_attn_meta *meta, void *k_cache, void *v_cache,
                                            const cllm_kv_quant *kvq, cudaStream_t stream);

/* Paged causal GQA attention (prefill chunks + decode in one batch), split-K over the
 * context when the grid is small. Caches bf16 (kvq NULL, AUTO or BF16) or fp8 e4m3 codes
 * read as code * k_scale / v_scale (kvq F8_E4M3). workspace: fp32 partials,
 * workspace_bytes of it; the number of splits is limited so that they fit (0 bytes: no
 * split). Kernels: decode (tensor cores, max_query_len <= 1, G <= 8, D 64/128/256),
 * prefill/mixed (tensor cores, D 64/128/256), else the CUDA-core kernel (any D, a
 * multiple of 8, <= 256). */
cllm_status cllm_cuda_attention(const void *q, int q_stride, const void *k_cache, const void *v_cache,
                                const cllm_attn_meta *meta, int H, int Hkv, int D, float scale, void *out,
                                const cllm_kv_quant *kvq, void *workspace, size_t workspace_bytes, int num_sms,
                                cudaStream_t stream);

/* Benchmark knob for the decode split (defaults 16, 512): aim for ctas_per_sm CTAs per
 * SM, splits at least min_split_keys long; values <= 0 leave a setting unchanged.
 * Process-wide; not thread-safe against concurrent attention launches. */
void cllm_cuda_attention_tune(int ctas_per_sm, int min_split_keys);

/* Adaptive decode split: each decode row uses only the splits its own seq_len needs (one per
 * min_split_keys keys), so a launch sized for max_model_len (CUDA graphs) costs a short sequence
 * what a launch sized for it would. Off by default until measured on a GPU (also
 * CLLM_CUDA_ATTN_ADAPTIVE_SPLIT=1). Process-wide, like cllm_cuda_attention_tune. */
void cllm_cuda_attention_adaptive_split(int on);

/* out (S, E) = x[idx[s]]. */
cllm_status cllm_cuda_gather_rows(const void *x, const int32_t *idx, int S, int E, void *out, cudaStream_t stream);

/* Sampling (see cllm_sample_params): logits (S, V) fp32, params (S) device, tokens (S) int32. */
cllm_status cllm_cuda_sample(const float *logits, int S, int V, const cllm_sample_params *params, void *workspace,
                             int32_t *tokens, cudaStream_t stream);
size_t cllm_cuda_sample_workspace_bytes(int S, int V);

/* Engine ops (backend.h apply_penalties / logprobs / copy_blocks / mem_info), all device memory:
 * logit bias and penalties on logits (S, V) fp32 -> out (may alias), params (S), workspace of
 * cllm_cuda_penalties_workspace_bytes (needs no clearing); rows the CPU op would reject are copied
 * unchanged (no host sync to report them). */
cllm_status cllm_cuda_apply_penalties(const float *logits, int S, int V, const cllm_penalty_params *params,
                                      const int32_t *token_ids, const cllm_logit_bias *bias, void *workspace,
                                      float *out, cudaStream_t stream);
size_t cllm_cuda_penalties_workspace_bytes(int S, int V);
/* Raw log_softmax of logits (S, V) fp32: token_logprob (S), top-k (k <= min(V, 64)) ids/logprobs (S, k). */
cllm_status cllm_cuda_logprobs(const float *logits, int S, int V, const int32_t *tokens, int k, float *token_logprob,
                               int32_t *top_ids, float *top_logprobs, cudaStream_t stream);
/* Block pairs[2i+1] <- block pairs[2i] of cache (blocks of block_bytes); pairs (2n) int32 device. */
cllm_status cllm_cuda_copy_blocks(void *cache, size_t block_bytes, const int32_t *pairs, int n, cudaStream_t stream);
/* cudaMemGetInfo of the current device. */
cllm_status cllm_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);

/* Device Philox uniforms for tests: out[i] = cllm_philox_uniform(seeds[i], steps[i]). */
cllm_status cllm_cuda_philox_uniform(const uint64_t *seeds, const uint64_t *steps, int n, float *out,
                                     cudaStream_t stream);

/* Mixture of experts (backend.h moe_*; moe.cu says how). route: logits (T, NE) f32 -> ids, weights (T, k);
 * NE <= 512, k <= 32. experts: x, out (T, E) bf16, the experts of a layer equally spaced in memory, E and I
 * multiples of 8, k <= 32, num_local <= 1024; workspace of cllm_cuda_moe_workspace_bytes(T, k, E, I) for the
 * path selected now. combine: out (n, E) = sum_j w[i, j] y[rows[i k + j]] (rows -1: none). */
cllm_status cllm_cuda_moe_route(const float *logits, int T, int NE, int k, bool renormalize, int32_t *ids,
                                float *weights, cudaStream_t stream);
cllm_status cllm_cuda_moe_experts(cllm_cuda_gemm *g, const void *x, int T, int E, const int32_t *ids,
                                  const float *weights, int k, const cllm_weight *gate_up, const cllm_weight *down,
                                  int expert_start, int num_local, int I, void *workspace, void *out,
                                  cudaStream_t stream);
size_t cllm_cuda_moe_workspace_bytes(int T, int k, int E, int I);
cllm_status cllm_cuda_moe_combine(const void *y, const int32_t *rows, const float *w, int n, int k, int E, void *out,
                                  cudaStream_t stream);
/* moe_experts paths: AUTO picks GEMV when T * k <= gemv_max_rows (default 64), else GROUPED (both capturable);
 * LOOP (one cuBLASLt GEMM pair per expert, counts copied to the host: a stream sync, refused under capture) is
 * for the benchmark's comparison only; XGEMV (expert-major GEMV, capturable) is selectable here and not yet
 * picked by AUTO (moe.cu, path (c)). */
enum {
    CLLM_CUDA_MOE_AUTO = 0,
    CLLM_CUDA_MOE_GEMV = 1,
    CLLM_CUDA_MOE_GROUPED = 2,
    CLLM_CUDA_MOE_LOOP = 3,
    CLLM_CUDA_MOE_XGEMV = 4
};
/* Benchmark/test knob, process-wide (not thread-safe against running MoE ops): path (a CLLM_CUDA_MOE_* value),
 * stop_after (0: the whole op; grouped, loop and xgemv paths: 1 after the permutation, 2 after gate_up + SwiGLU, 3
 * after down, before the combine), gemv_max_rows (the AUTO threshold on T * k). Negative values leave a setting
 * unchanged. moe_workspace_bytes follows the path set here: set it before sizing the workspace. */
void cllm_cuda_moe_tune(int path, int stop_after, int gemv_max_rows);
/* The path cllm_cuda_moe_experts takes for T tokens, top-k k (a CLLM_CUDA_MOE_* value other than AUTO). */
int cllm_cuda_moe_path(int T, int k, int num_local);

#ifdef __cplusplus
}
#endif
#endif
