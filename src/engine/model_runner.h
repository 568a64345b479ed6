/* Model runner (one per rank): owns the backend, the model's weights on it,
 * the paged KV cache (per layer k and v, (B, P, Hkv, D) in the act dtype),
 * the rotary inv_freq table and the workspace; executes one batch (forward +
 * sample) given host-side metadata. The block manager / scheduler above it
 * decide which KV blocks a sequence uses (vLLM's GPUModelRunner role).
 *
 * Tensor parallelism: the runner holds one rank's shard (model/shard.h: its
 * heads, KV heads, intermediate and vocabulary rows) and the tensor-parallel
 * group the forward's collectives run on; every rank of the group executes
 * the same batches in the same order (the executor, engine/executor.c,
 * sends them), and each gets the whole (all-gathered) logits.
 *
 * Pipeline parallelism: the runner holds one stage's layers (and its KV
 * cache for them); a batch is cut into micro-batches of whole sequences
 * that flow stage to stage (the (residual, pending sum) state of each
 * token sent with send/recv over the pipeline group), so that stage k works
 * on micro-batch m while stage k+1 works on m-1 (GPipe within a step); the
 * last stage returns the final-normed rows that need logits to stage 0,
 * which runs the lm_head and samples. CUDA graphs are not used then. */
#ifndef CLLM_ENGINE_MODEL_RUNNER_H
#define CLLM_ENGINE_MODEL_RUNNER_H

#include "backend/backend.h"
#include "engine/scheduler.h"
#include "model/arch/arch.h"
#include "model/config.h"
#include "model/weights.h"

typedef struct cllm_runner cllm_runner;

typedef struct cllm_runner_params {
    const cllm_model_config *cfg;  /* copied */
    cllm_backend *backend;         /* ownership passes to the runner on success */
    cllm_weights *weights;         /* borrowed during create only */
    int block_size;                /* P */
    int num_kv_blocks;             /* B */
    int max_model_len;             /* bounds max_blocks_per_seq */
    int max_num_seqs;
    bool progress;                 /* progress bar while uploading weights */
    const cllm_shard *shard;       /* copied; NULL: the whole model (tp_size 1) */
    cllm_comm *tp;                 /* borrowed tensor-parallel group, NULL when tp_size is 1;
                                    * must outlive the runner */
    cllm_comm *pp;                 /* borrowed pipeline group (group rank = stage), NULL when pp_size is 1 */
    int pp_micro_batches;          /* a step cut into this many micro-batches along the pipeline (0: pp_size) */
    cllm_dtype kv_cache_dtype;     /* vLLM's --kv-cache-dtype: AUTO (the act dtype) or F8_E4M3 (one byte
                                    * per element, per-layer k_scale / v_scale) */
    bool quantize_fp8;             /* vLLM's --quantization fp8: float linears quantized to e4m3 on load
                                    * (cllm_quant_config.online_fp8) */
} cllm_runner_params;

/* One batch, host memory (vLLM's input batch): the scheduler's
 * cllm_batch_host (engine/scheduler.h). The runner reads num_seqs,
 * num_tokens, token_ids, positions, query_start_loc, seq_lens, block_tables
 * (only the first ceil(seq_len/P) of each row), max_blocks_per_seq,
 * slot_mapping (<0 = padding), logits_indices and num_logits; it computes
 * max_query_len / max_seq_len itself. A caller may fill it with borrowed
 * arrays (then it must not call cllm_batch_host_free on it). */

/* Sampling-side options of cllm_runner_execute_ex, all host memory, one
 * entry per logits row (num_logits). */
typedef struct cllm_runner_sample_args {
    const cllm_sample_params *sp;          /* (num_logits) sampler params */
    const cllm_penalty_params *penalties;  /* (num_logits) or NULL: no penalties nor logit bias at all */
    const int32_t *penalty_tokens;         /* history ids the penalties' token_start index */
    int num_penalty_tokens;
    const cllm_logit_bias *logit_bias;     /* entries the penalties' bias_start index */
    int num_logit_bias;
    int logprobs_k;                        /* < 0: no logprobs; else top-k width (0..64) */
    float *token_logprobs;                 /* out (num_logits): raw logprob of the sampled token */
    int32_t *top_ids;                      /* out (num_logits, logprobs_k) when logprobs_k > 0 */
    float *top_logprobs;                   /* out (num_logits, logprobs_k) */
    bool no_graph;                         /* run eagerly even if a CUDA graph fits (a tensor-parallel
                                            * worker follows rank 0's choice: penalties force eager there) */
} cllm_runner_sample_args;

/* Load the weights through the architecture of cfg->model_type and allocate
 * the KV cache. Errors: CLLM_ERR_UNSUPPORTED (model_type),
 * CLLM_ERR_NOT_FOUND / CLLM_ERR_FORMAT (tensor), CLLM_ERR_OOM. On failure
 * the backend is still the caller's. */
cllm_status cllm_runner_create(const cllm_runner_params *p, cllm_runner **out);
/* Frees everything, including the backend. NULL is a no-op. */
void cllm_runner_destroy(cllm_runner *r);

/* Upload batch b, run the forward pass (collective over the tensor-parallel
 * group: every rank calls it with the same batch) and, if tokens_out != NULL, sample
 * one token per logits row with sp (num_logits params, host) into tokens_out
 * (num_logits, host). If logits_out != NULL the (num_logits, V) f32 logits
 * are copied to it (host). Validates the metadata (CLLM_ERR_INVALID_ARG);
 * grows the workspace for larger batches (CLLM_ERR_OOM). Synchronous. */
cllm_status cllm_runner_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_sample_params *sp,
                                int32_t *tokens_out, float *logits_out);

/* The checks execute makes of batch b before anything runs (shapes, block
 * and slot ranges, token ids): CLLM_ERR_INVALID_ARG naming the first bad
 * field. The executor calls it before sending a batch to the workers. */
cllm_status cllm_runner_check_batch(const cllm_runner *r, const cllm_batch_host *b);

/* Like cllm_runner_execute, with the engine's sampling options: logprobs
 * of the raw logits (before penalties/temperature, vLLM's default), then
 * penalties (into a second logits buffer when logprobs are wanted), then
 * the sampler. tokens_out (num_logits) host. logits_out (optional, host)
 * receives the raw logits. Errors: as cllm_runner_execute, plus
 * CLLM_ERR_UNSUPPORTED when the backend lacks the penalties/logprobs op. */
cllm_status cllm_runner_execute_ex(cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                   int32_t *tokens_out, float *logits_out);

/* Logprobs of logits rows [row0, row0 + n) of the last execute (the rows
 * its batch's logits_indices selected; valid until the next execute), for
 * given target tokens: token_logprobs (n) = raw log_softmax at tokens[i]
 * (host, n ids), and if k > 0 the top-k ids/logprobs (n, k) (backend
 * logprobs op semantics). Used for prompt_logprobs. All outputs host.
 * Errors: CLLM_ERR_INVALID_ARG (rows beyond the last execute's logits, k
 * not in [0, 64]), CLLM_ERR_UNSUPPORTED (no logprobs op). */
cllm_status cllm_runner_logprobs_rows(cllm_runner *r, int row0, int n, const int32_t *tokens, int k,
                                      float *token_logprobs, int32_t *top_ids, float *top_logprobs);

/* Copy KV blocks (copy-on-write pairs of the block manager) in every
 * layer's K and V cache, before the step that writes into dst. Errors:
 * CLLM_ERR_INVALID_ARG (a block out of range), CLLM_ERR_UNSUPPORTED (backend
 * has no copy_blocks), backend errors. */
cllm_status cllm_runner_copy_blocks(cllm_runner *r, const cllm_kv_copy *pairs, int n);

/* Bytes of KV cache one block takes over all layers (K and V): 2 x layers x
 * P x Hkv (local) x D x the element size (fp8: 1, else the act dtype's). */
size_t cllm_runner_kv_bytes_per_block(const cllm_runner *r);
/* The dtype the KV cache stores: the act dtype, or F8_E4M3 (--kv-cache-dtype fp8). */
cllm_dtype cllm_runner_kv_cache_dtype(const cllm_runner *r);

/* Replace the KV cache by one of num_blocks blocks (contents lost): used
 * after the profiling run sizes the cache. Errors: CLLM_ERR_INVALID_ARG,
 * CLLM_ERR_OOM (the runner then holds no cache: destroy it). */
cllm_status cllm_runner_resize_kv(cllm_runner *r, int num_blocks);

/* Free and total device memory (backend mem_info). */
cllm_status cllm_runner_mem_info(cllm_runner *r, size_t *free_bytes, size_t *total_bytes);

/* CUDA-graph decode (vLLM's CUDA graphs; src/engine/cuda_graph.c).
 * Capture one graph of forward + sampling per padded decode batch size
 * 1, 2, 4, 8, 16, 24, ... up to the first size >= max_num_seqs (at most 512),
 * over fixed device buffers; afterwards cllm_runner_execute(_ex) runs every
 * pure-decode step (each sequence 1 new token, no penalties) of at most that
 * many sequences by one metadata upload + one graph launch, padding the
 * batch with idle rows. Call it once the KV cache is final (resize_kv drops
 * the graphs). A no-op on backends without graph ops (CPU). Logs the
 * capture time. Errors: CLLM_ERR_OOM, CLLM_ERR_CUDA (capture failed: the
 * runner is then eager-only; --enforce-eager avoids it). */
cllm_status cllm_runner_capture_graphs(cllm_runner *r);

/* Allocate the graphs' fixed device buffers (metadata, workspace, logits,
 * sampler workspace for the largest capture size) now, so that a KV-cache
 * sizing pass that runs afterwards counts them as used memory;
 * cllm_runner_capture_graphs then reuses them. No-op on backends without
 * graph ops. Errors: CLLM_ERR_OOM. */
cllm_status cllm_runner_reserve_graph_buffers(cllm_runner *r);

/* Number of captured graphs, steps replayed through them so far, and the
 * last capture's wall time (ms). Any pointer may be NULL. */
void cllm_runner_graph_stats(const cllm_runner *r, int *num_graphs, uint64_t *replays, double *capture_ms);

/* Steps so far whose attention ran in two parts (a mixed batch: the leading
 * one-token sequences through the backend's decode kernel, the prefill
 * chunks separately; CLLM_NO_ATTN_SPLIT=1 turns the split off). */
uint64_t cllm_runner_attn_split_steps(const cllm_runner *r);

/* The shard this runner holds. */
const cllm_shard *cllm_runner_shard(const cllm_runner *r);

/* Mixture-of-experts counts of this rank (see cllm_arch.expert_stats):
 * routed (num_experts) and *computed are added to. No-op for dense models. */
void cllm_runner_expert_stats(const cllm_runner *r, uint64_t *routed, uint64_t *computed);

int cllm_runner_num_kv_blocks(const cllm_runner *r);
int cllm_runner_block_size(const cllm_runner *r);
cllm_backend *cllm_runner_backend(cllm_runner *r);   /* borrowed */
const cllm_arch_info *cllm_runner_info(const cllm_runner *r);

#endif
