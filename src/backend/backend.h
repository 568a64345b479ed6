/* The op interface between model code and a compute backend.
 *
 * Model code (src/model/arch/) is written once against this table; the CPU
 * backend (src/backend/cpu/, fp32, the reference) and the CUDA backend
 * (src/backend/cuda/, bf16 activations and weights, fp32 accumulation)
 * implement it. Every op:
 *   - works on "device" pointers of the backend (host memory for CPU);
 *   - uses the backend's activation dtype `act` (CPU: F32, CUDA: BF16) for
 *     activations and weights unless the parameter says otherwise;
 *   - is asynchronous on the backend's stream (CPU: synchronous), allocates
 *     nothing, validates its shapes and returns CLLM_ERR_INVALID_ARG on bad
 *     ones, CLLM_ERR_CUDA when a launch fails.
 *
 * Shape legend (CONVENTIONS.md §5): T tokens in the batch, S sequences,
 * H query heads, Hkv KV heads, D head_dim, E hidden size, I intermediate
 * size, V vocab, B KV blocks, P block_size, K/N matmul in/out features.
 *
 * Sources followed: Hugging Face transformers modeling_llama.py /
 * modeling_qwen3.py (RMSNorm, rotate_half RoPE, GQA attention, SiLU MLP);
 * vLLM's paged KV layout and attention metadata (query_start_loc, seq_lens,
 * block_tables, slot_mapping).
 */
#ifndef CLLM_BACKEND_H
#define CLLM_BACKEND_H

#include "cllm.h"
#include <stddef.h>
#include <stdint.h>

typedef struct cllm_backend cllm_backend;

/* A weight matrix W: (N rows, K cols) row-major, plus an optional bias (N)
 * in the act dtype. y = x @ W^T + bias (torch.nn.Linear).
 * dtype: the storage of data. CLLM_DTYPE_AUTO (0, what every
 * zero-initialized weight has) or the act dtype: act elements. F8_E4M3
 * (backends whose ops->fp8_weights is true: CUDA): float8_e4m3fn codes, one
 * byte per element, and W[n][k] = fp8(data[n][k]) * scale[n] with scale (N)
 * f32 on the device (per output channel; a per-tensor scale is stored
 * repeated N times). The linear op quantizes the activations to FP8 per
 * token for larger batches (W8A8) and reads the FP8 weights with the act
 * activations for decode-sized ones (W8A16); see the CUDA backend's
 * linear_fp8.cu and the CPU reference cllm_cpu_linear_fp8. */
typedef struct cllm_weight {
    void *data;      /* (N, K) device */
    void *bias;      /* (N) device or NULL */
    int64_t n, k;
    cllm_dtype dtype;   /* AUTO / act, or F8_E4M3 */
    float *scale;       /* F8_E4M3: (N) f32 device, owned with data; else NULL */
} cllm_weight;

/* Batch layout for attention and the KV-cache write (vLLM's metadata).
 * All arrays are int32 on the device. Sequence s owns new tokens
 * [query_start_loc[s], query_start_loc[s+1]) of the batch; it has seq_lens[s]
 * tokens of context including those new ones, so new token i of s sits at
 * position seq_lens[s] - q_len(s) + i and attends causally to positions
 * 0..its own (the cached prefix plus the new tokens up to itself).
 * Token t's K/V are written to cache slot slot_mapping[t] = block*P + offset
 * (slot < 0: padding, skipped). Block j of sequence s is
 * block_tables[s * max_blocks_per_seq + j]. */
typedef struct cllm_attn_meta {
    int num_seqs;                 /* S */
    int num_tokens;               /* T = query_start_loc[S] */
    int max_query_len;            /* max over s of q_len(s) (1 = pure decode) */
    int max_seq_len;              /* max over s of seq_lens[s] */
    int block_size;               /* P */
    int max_blocks_per_seq;
    const int32_t *query_start_loc; /* (S+1) */
    const int32_t *seq_lens;        /* (S) */
    const int32_t *block_tables;    /* (S, max_blocks_per_seq) */
    const int32_t *slot_mapping;    /* (T) */
} cllm_attn_meta;

/* How one layer's paged KV cache stores its elements (vLLM's
 * --kv-cache-dtype). dtype CLLM_DTYPE_AUTO (or the act dtype): the
 * activation dtype, unscaled (a NULL cllm_kv_quant pointer means the same).
 * CLLM_DTYPE_F8_E4M3: float8_e4m3fn codes, one byte per element, written as
 * q = cllm_f32_to_fp8_e4m3(x / k_scale) (round to nearest even, saturating
 * at +-448, vLLM's fp8 KV-cache convention) and read as
 * x = cllm_fp8_e4m3_to_f32(q) * k_scale (v_scale for V). The scales are the
 * layer's per-tensor k_scale / v_scale from the checkpoint (compressed-tensors
 * kv_cache_scheme), 1.0 when it has none (vLLM's default). */
typedef struct cllm_kv_quant {
    cllm_dtype dtype;
    float k_scale, v_scale;
} cllm_kv_quant;

/* Per-sequence sampling parameters as the sampler op reads them (device).
 * temperature 0 = greedy (argmax, lowest id on ties). Otherwise: logits /
 * temperature, softmax, keep top_k (<=0: all), keep the smallest set of
 * highest-probability tokens whose mass reaches top_p, keep tokens with
 * prob >= min_p * max_prob, renormalize, draw with u = cllm_philox_uniform(
 * seed, step) by inverse CDF over the kept tokens in id order. */
typedef struct cllm_sample_params {
    float temperature;
    float top_p;
    float min_p;
    int32_t top_k;
    uint64_t seed;
    uint64_t step;   /* index of the token being sampled for this sequence */
} cllm_sample_params;

/* One logit_bias entry (OpenAI's logit_bias; vLLM's LogitBiasLogitsProcessor):
 * logits[token_id] += value. */
typedef struct cllm_logit_bias {
    int32_t token_id;
    float value;
} cllm_logit_bias;

/* Per-row penalty parameters as the apply_penalties op reads them (device).
 * Row s's history is token_ids[token_start .. token_start + num_prompt +
 * num_output): first the num_prompt prompt tokens, then the num_output
 * generated ones. Its logit bias is bias[bias_start .. bias_start +
 * num_bias), token ids unique within the row. */
typedef struct cllm_penalty_params {
    float repetition_penalty;  /* 1 = off; > 0 */
    float presence_penalty;    /* 0 = off */
    float frequency_penalty;   /* 0 = off */
    int32_t token_start;
    int32_t num_prompt;
    int32_t num_output;
    int32_t bias_start;
    int32_t num_bias;          /* 0 = no logit bias */
} cllm_penalty_params;

typedef struct cllm_backend_ops {
    const char *name;       /* "cpu" | "cuda" */
    /* true: linear takes F8_E4M3 weights (cllm_weight.dtype), so the loader
     * keeps FP8 checkpoint linears (tensor / channel scales) and
     * `--quantization fp8` ones in FP8 (src/model/layers/loader_fp8.c);
     * false (CPU): FP8 weights are dequantized to the act dtype on load and
     * linear refuses them (CLLM_ERR_UNSUPPORTED). */
    bool fp8_weights;

    void (*destroy)(cllm_backend *be);

    /* Memory. alloc returns CLLM_ERR_OOM with the size in the message. */
    cllm_status (*alloc)(cllm_backend *be, size_t bytes, void **out);
    void (*free)(cllm_backend *be, void *p);
    /* Copy n elements of host data (dtype src_t: F32/BF16/F16) into the
     * backend buffer dst at element offset dst_off, converting to the act
     * dtype. Used for weights (one tensor or one part of a fused tensor). */
    cllm_status (*upload)(cllm_backend *be, void *dst, size_t dst_off, const void *src, cllm_dtype src_t, size_t n);
    /* Raw byte copies; h2d/d2h are ordered on the stream, d2h synchronizes. */
    cllm_status (*h2d)(cllm_backend *be, void *dst, const void *src, size_t bytes);
    cllm_status (*d2h)(cllm_backend *be, void *dst, const void *src, size_t bytes);
    cllm_status (*sync)(cllm_backend *be);
    /* 2-D copy inside the backend's memory (cudaMemcpy2DAsync): rows rows of
     * width_bytes, from src (row pitch src_pitch bytes) to dst (dst_pitch);
     * asynchronous on the stream, capturable. Used to lay the all-gathered
     * vocabulary shards of the logits side by side. */
    cllm_status (*copy2d)(cllm_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                          size_t width_bytes, size_t rows);

    /* out (T, E) = table[ids[t] - vocab_start]; ids (T) int32; table (V, E)
     * holds the rows [vocab_start, vocab_start + V) of the vocabulary. An id
     * outside that range gives a zero row (vLLM's VocabParallelEmbedding:
     * each tensor-parallel rank looks up its own rows, an all-reduce sums
     * them). With vocab_start 0 and every id in [0, V) it is the plain
     * lookup; callers validate ids against the whole vocabulary. */
    cllm_status (*embedding)(cllm_backend *be, const int32_t *ids, int T, const void *table, int vocab_start, int V,
                             int E, void *out);

    /* RMSNorm over the last dim E of rows rows (HF LlamaRMSNorm: fp32 math,
     * x * rsqrt(mean(x^2) + eps) * w). If residual != NULL it is first
     * updated in place, residual += x, and the norm reads residual (vLLM's
     * fused_add_rms_norm). out may alias x when residual == NULL. */
    cllm_status (*rmsnorm)(cllm_backend *be, const void *x, void *residual, const void *w, int rows, int E,
                           float eps, void *out);

    /* In-place RMSNorm of each D-wide head: x is (T, nheads, D) whose token
     * rows are stride elements apart (heads contiguous inside a row);
     * w (D). Qwen3 q_norm / k_norm. */
    cllm_status (*head_rmsnorm)(cllm_backend *be, void *x, int T, int nheads, int D, int stride,
                                const void *w, float eps);

    /* out (T, N) = x (T, K) @ W^T + bias. out_dtype is the act dtype or F32
     * (logits). W in the act dtype, or FP8 (see cllm_weight) where
     * fp8_weights says so. */
    cllm_status (*linear)(cllm_backend *be, const void *x, int T, const cllm_weight *w, void *out,
                          cllm_dtype out_dtype);

    /* In-place rotary embedding, HF rotate_half (NeoX) convention: for each
     * head and i < D/2, angle = pos[t] * inv_freq[i] (fp32),
     * (x[i], x[i+D/2]) <- (x[i]*cos - x[i+D/2]*sin, x[i+D/2]*cos + x[i]*sin).
     * q (T, H, D) with row stride q_stride, k (T, Hkv, D) with row stride
     * k_stride (elements); pos (T) int32; inv_freq (D/2) float32 device
     * (llama3 rope_scaling already applied on the host). */
    cllm_status (*rope)(cllm_backend *be, void *q, void *k, const int32_t *pos, int T, int H, int Hkv, int D,
                        int q_stride, int k_stride, const float *inv_freq);

    /* out (T, I) = silu(gate_up[:, :I]) * gate_up[:, I:]; gate_up (T, 2I). */
    cllm_status (*silu_mul)(cllm_backend *be, const void *gate_up, int T, int I, void *out);

    /* Write the new tokens' K and V into the paged cache:
     * k, v (T, Hkv, D) act with row strides k_stride, v_stride; caches
     * (B, P, Hkv, D) contiguous in the dtype kvq says (NULL: act; fp8:
     * quantized with kvq's scales); slot_mapping (T) from meta. A backend
     * without the fp8 cache returns CLLM_ERR_UNSUPPORTED for it (CUDA so far). */
    cllm_status (*kv_write)(cllm_backend *be, const void *k, const void *v, int k_stride, int v_stride,
                            const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                            const cllm_kv_quant *kvq);

    /* Optional (NULL: the model calls head_rmsnorm, rope and kv_write): the
     * attention prologue in one op, equal to head_rmsnorm(q, q_norm),
     * head_rmsnorm(k, k_norm) (both skipped when q_norm and k_norm are NULL),
     * rope(q, k) and kv_write(k, v) in that order: q (T, H, D) and k, v
     * (T, Hkv, D) with row strides q_stride and kv_stride, modified in place
     * as those ops modify them; D even and <= 256; the cache in the act dtype
     * (kvq NULL), or kvq's fp8 where the backend has it. */
    cllm_status (*qk_norm_rope_kv_write)(cllm_backend *be, void *q, void *k, const void *v, int q_stride,
                                         int kv_stride, const int32_t *pos, int T, int H, int Hkv, int D,
                                         const void *q_norm, const void *k_norm, float eps, const float *inv_freq,
                                         const cllm_attn_meta *meta, void *k_cache, void *v_cache,
                                         const cllm_kv_quant *kvq);

    /* Causal GQA attention of the batch's new tokens over the paged cache
     * (which already holds their own K/V): q (T, H, D) with row stride
     * q_stride; out (T, H, D) contiguous; scale usually 1/sqrt(D); query
     * head h reads KV head h / (H / Hkv). Softmax in fp32. The caches are
     * in the dtype kvq says (NULL: act; fp8: dequantized on read with kvq's
     * scales, exactly as attention over the dequantized K/V in f32). */
    cllm_status (*attention)(cllm_backend *be, const void *q, int q_stride, const void *k_cache,
                             const void *v_cache, const cllm_attn_meta *meta, int H, int Hkv, int D,
                             float scale, void *out, const cllm_kv_quant *kvq);

    /* out (S, E) = x[idx[s]]; idx (S) int32 device. Selects the rows that
     * need logits (the last token of each sequence). */
    cllm_status (*gather_rows)(cllm_backend *be, const void *x, const int32_t *idx, int S, int E, void *out);

    /* Sample one token per row of logits (S, V) float32 with per-row params
     * (S) (device); writes tokens (S) int32. workspace: at least
     * sample_workspace_bytes(S, V) bytes (device). */
    cllm_status (*sample)(cllm_backend *be, const float *logits, int S, int V, const cllm_sample_params *params,
                          void *workspace, int32_t *tokens);
    size_t (*sample_workspace_bytes)(int S, int V);

    /* ---- Added for the continuous-batching engine (src/engine/engine.c).
     * A backend may leave these NULL; the runner then reports
     * CLLM_ERR_UNSUPPORTED when a request needs them. */

    /* Logit bias and penalties in vLLM v1's sampler order, one row at a time:
     * out (S, V) f32 = logits (S, V) f32 (out may alias logits), then for
     * row s with history and bias as cllm_penalty_params says (ids outside
     * [0, V) are ignored):
     *   0. logit bias: x[token_id] += value for each of the row's bias
     *      entries (vLLM applies its logit-bias processor before the
     *      penalties);
     *   1. repetition (HF RepetitionPenaltyLogitsProcessor, vLLM): for every
     *      id v occurring in prompt OR output (counted once),
     *      x = x > 0 ? x / repetition_penalty : x * repetition_penalty;
     *   2. frequency/presence (OpenAI): with c = occurrences of v among the
     *      OUTPUT tokens only, x -= frequency_penalty * c +
     *      presence_penalty * (c > 0 ? 1 : 0).
     * Rows with repetition 1, presence = frequency = 0 and no bias are
     * copied unchanged. params (S), token_ids and bias device memory (bias
     * may be NULL when no row has num_bias > 0). workspace: at least
     * penalties_workspace_bytes(S, V) bytes (device), e.g. per-row counts. */
    cllm_status (*apply_penalties)(cllm_backend *be, const float *logits, int S, int V,
                                   const cllm_penalty_params *params, const int32_t *token_ids,
                                   const cllm_logit_bias *bias, void *workspace, float *out);
    size_t (*penalties_workspace_bytes)(int S, int V);

    /* Log-probabilities of rows of logits (S, V) f32 (vLLM v1 default
     * logprobs_mode raw_logprobs: the model's raw distribution, before
     * penalties and temperature): lp(v) = x_v - max - log(sum_u exp(x_u - max))
     * (fp32 inputs, the sum accumulated in at least fp32).
     * token_logprob (S) f32 = lp(tokens[s]) (tokens (S) int32, e.g. the
     * sampled ones; out of range: -inf). If k > 0: top_ids (S, k) int32 and
     * top_logprobs (S, k) f32 = the k highest lp of the row in descending
     * order, ties broken by the lower id first. 0 <= k <= min(V, 64);
     * top_ids/top_logprobs may be NULL when k == 0. All device memory; no
     * workspace. */
    cllm_status (*logprobs)(cllm_backend *be, const float *logits, int S, int V, const int32_t *tokens, int k,
                            float *token_logprob, int32_t *top_ids, float *top_logprobs);

    /* Copy whole KV blocks inside one cache tensor (copy-on-write, vLLM
     * copy_blocks): for i < n, block pairs[2i+1] <- block pairs[2i] of cache
     * (B blocks of block_bytes bytes each, contiguous). pairs (2n) int32
     * device; sources and destinations are distinct and no destination is a
     * source of another pair. Called once per layer per K and V cache. */
    cllm_status (*copy_blocks)(cllm_backend *be, void *cache, size_t block_bytes, const int32_t *pairs, int n);

    /* Device memory: free and total bytes (CUDA: cudaMemGetInfo; CPU: the
     * host's available and physical memory). Used to size the KV cache. */
    cllm_status (*mem_info)(cllm_backend *be, size_t *free_bytes, size_t *total_bytes);

    /* ---- Added for CUDA-graph decode (src/engine/cuda_graph.c, vLLM's
     * CUDA graphs). NULL on backends without graphs (CPU): the runner then
     * always runs eagerly.
     *
     * graph_capture_begin starts recording the backend stream (relaxed
     * thread-local capture): ops called until graph_capture_end are recorded,
     * not run; they must not allocate, sync, or copy from pageable memory.
     * graph_capture_end stops recording and instantiates the graph into
     * *graph (an opaque executable graph owned by the caller; NULL on error,
     * the capture is always ended). graph_launch replays it on the stream
     * (asynchronous; it reads and writes the same device addresses as when
     * captured). graph_destroy frees it (NULL is a no-op). */
    cllm_status (*graph_capture_begin)(cllm_backend *be);
    cllm_status (*graph_capture_end)(cllm_backend *be, void **graph);
    cllm_status (*graph_launch)(cllm_backend *be, void *graph);
    void (*graph_destroy)(cllm_backend *be, void *graph);
    /* Page-locked host memory for staging buffers (h2d from it is truly
     * asynchronous). NULL: use malloc/free. host_alloc: CLLM_ERR_OOM. */
    cllm_status (*host_alloc)(cllm_backend *be, size_t bytes, void **out);
    void (*host_free)(cllm_backend *be, void *p);
    /* The native stream (CUDA: cudaStream_t) that ops run on, for
     * communicators that enqueue on it (NCCL). NULL op or NULL result: none. */
    void *(*native_stream)(cllm_backend *be);
    /* The device's name ("NVIDIA H100 80GB HBM3"; CPU: "cpu"), for the
     * benchmarks' ceilings. NULL op: "unknown". */
    const char *(*device_name)(cllm_backend *be);

    /* ---- Mixture of experts (src/model/layers/moe.c; sources: transformers
     * Qwen3MoeSparseMoeBlock, MixtralSparseMoeBlock). NULL: the backend runs
     * no MoE model (loading one reports CLLM_ERR_UNSUPPORTED).
     *
     * moe_route: router logits (T, NE) f32 -> softmax over the NE experts
     * (fp32) -> the k largest probabilities in descending order (ties: the
     * lower expert id first) -> topk_ids (T, k) int32 and topk_weights (T, k)
     * f32, divided by their sum when renormalize (HF norm_topk_prob; Mixtral
     * always). All device memory. */
    cllm_status (*moe_route)(cllm_backend *be, const float *logits, int T, int num_experts, int k, bool renormalize,
                             int32_t *topk_ids, float *topk_weights);
    /* moe_experts: out (T, E) act = sum over j of topk_weights[t, j] *
     * expert_{topk_ids[t, j]}(x[t]) for the j whose expert this rank holds
     * (expert_start <= id < expert_start + num_local; the others add nothing:
     * expert parallelism); out is all zeros for a token with none. Expert e
     * (local index e - expert_start): down_e(silu(gate_e(x)) * up_e(x)) with
     * gate_up[e] (2I, E) (gate rows first) and down[e] (E, I), host arrays of
     * num_local weights in the act dtype. x (T, E) act, topk_* (T, k) device.
     * workspace: moe_workspace_bytes(T, k, E, I) bytes (device). The CPU op
     * permutes the assignments by expert, runs one GEMM pair per expert and
     * un-permutes with the weights. The CUDA op (backend/cuda/moe.cu) needs
     * the experts equally spaced in memory (data of expert e = data of
     * expert 0 + e * stride, as cllm_moe_load allocates them), E and I
     * multiples of 8, k <= 32, and is capturable in a CUDA graph; it picks
     * a GEMV path for T * k <= 64 and a grouped GEMM above (the workspace
     * size follows the path). */
    cllm_status (*moe_experts)(cllm_backend *be, const void *x, int T, int E, const int32_t *topk_ids,
                               const float *topk_weights, int k, const cllm_weight *gate_up, const cllm_weight *down,
                               int expert_start, int num_local, int I, void *workspace, void *out);
    size_t (*moe_workspace_bytes)(int T, int k, int E, int I);
    /* moe_combine (expert parallelism): out (n, E) act, out[i] = sum over j
     * of w[i, j] * y[rows[i * k + j]] (rows (n * k) int32 device, -1: none;
     * y (M, E) act; w (n, k) f32). */
    cllm_status (*moe_combine)(cllm_backend *be, const void *y, const int32_t *rows, const float *w, int n, int k,
                               int E, void *out);
} cllm_backend_ops;

struct cllm_backend {
    const cllm_backend_ops *ops;
    cllm_dtype act;   /* activation and weight dtype */
    void *impl;       /* backend-private state */
};

/* Strided weight upload (a tensor-parallel column slice): rows rows of cols
 * elements each, row r read from src + r * src_ld elements (dtype src_t:
 * F32/BF16/F16, host), written contiguously (rows, cols) into dst at element
 * offset dst_off in the act dtype. Packs rows into a bounded host buffer and
 * calls ops->upload per chunk. Errors: CLLM_ERR_OOM, upload's errors. */
cllm_status cllm_backend_upload2d(cllm_backend *be, void *dst, size_t dst_off, const void *src, cllm_dtype src_t,
                                  size_t rows, size_t cols, size_t src_ld);
/* Upload n zero elements into dst at element offset dst_off (padding rows). */
cllm_status cllm_backend_upload_zeros(cllm_backend *be, void *dst, size_t dst_off, size_t n);

/* Roofline ceilings of the backend's device, for the benchmarks' ratios:
 * the figures measured on the cards cllm is run on (shared/device/README.md:
 * device-to-device copy counting bytes read + written, and a bf16 8192^3
 * matrix product): H100 80GB HBM3 3.03e12 B/s and 801e12 FLOP/s, H200
 * 4.30e12 B/s and 790e12 FLOP/s. *card is the device name; for a device not
 * in the table (and the CPU) *bytes_per_s = *flops = 0: no ratio is printed. */
void cllm_backend_ceilings(cllm_backend *be, const char **card, double *bytes_per_s, double *flops);

/* Native stream of the backend (CUDA: its cudaStream_t; CPU: NULL), for the
 * NCCL communicator that must enqueue on it. */
void *cllm_backend_native_stream(cllm_backend *be);

/* Create the CPU backend. num_threads 0 = all cores. */
cllm_status cllm_backend_cpu_create(int num_threads, cllm_backend **out);
/* Create the CUDA backend on device_id. Returns CLLM_ERR_NO_DEVICE with a
 * message when cllm was built without CUDA or no GPU is present. */
cllm_status cllm_backend_cuda_create(int device_id, cllm_backend **out);
void cllm_backend_destroy(cllm_backend *be);
/* CUDA devices this process sees (0 without CUDA or without a GPU). */
int cllm_backend_cuda_device_count(void);

/* Counter-based uniform in [0, 1) from (seed, step): the same on every
 * backend (Philox-4x32-10 keyed by seed, counter = step; first output
 * word >> 8, times 2^-24). Host and device implementations must agree bit for bit. */
float cllm_philox_uniform(uint64_t seed, uint64_t step);

#endif
