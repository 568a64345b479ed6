/* Private to the model runner (model_runner.c) and its CUDA-graph decode
 * path (cuda_graph.c): the runner struct and the helpers both use. */
#ifndef CLLM_ENGINE_MODEL_RUNNER_INTERNAL_H
#define CLLM_ENGINE_MODEL_RUNNER_INTERNAL_H

#include "engine/model_runner.h"

/* A device buffer that grows on demand. */
typedef struct dbuf {
    void *p;
    size_t cap;
} dbuf;

/* Graph sizes: 1, 2, 4, 8, 16, 24, ... (vLLM's cudagraph capture sizes). */
#define CLLM_GRAPH_MAX_SIZES 72
#define CLLM_GRAPH_MAX_BATCH 512

/* The CUDA-graph decode state (cuda_graph.c). All buffers are fixed for the
 * largest size smax: a graph bakes their addresses in. */
typedef struct runner_graphs {
    int num_sizes;                        /* 0: no graphs (eager only) */
    int sizes[CLLM_GRAPH_MAX_SIZES];      /* ascending padded batch sizes */
    void *graphs[CLLM_GRAPH_MAX_SIZES];   /* executable graph per size */
    int smax, mbps;                       /* buffer bounds: batch, blocks per sequence */
    void *meta;                           /* device: packed per-step metadata (layout in cuda_graph.c) */
    void *staging;                        /* pinned host copy of meta */
    bool staging_pinned;
    size_t meta_bytes;
    void *ws, *logits, *sample_ws, *tokens;  /* device, fixed */
    uint64_t replays;                     /* steps run through a graph */
    cllm_comm_stats comm_delta[CLLM_GRAPH_MAX_SIZES]; /* collectives each graph replays (counted at capture) */
    double capture_ms;
} runner_graphs;

struct cllm_runner {
    cllm_model_config cfg;
    cllm_shard shard;
    cllm_comm *tp;                 /* borrowed, NULL for tp_size 1 */
    cllm_comm *pp;                 /* borrowed pipeline group (rank = stage), NULL for pp_size 1 */
    int num_layers;                /* this stage's decoder layers: k_cache/v_cache entries */
    int pp_micro_batches;          /* micro-batches a step is cut into along the pipeline */
    dbuf pp_hidden, pp_sel, pp_sel_all, pp_perm;  /* pipeline: stage state, rows for the lm_head */
    cllm_backend *be;
    const cllm_arch *arch;
    void *model;
    cllm_arch_info info;
    int block_size, num_kv_blocks, max_blocks_per_seq;
    int max_model_len, max_num_seqs;
    void **k_cache, **v_cache;     /* (layers) */
    cllm_dtype kv_cache_dtype;     /* AUTO: the act dtype; F8_E4M3: fp8 codes (--kv-cache-dtype fp8) */
    float *inv_freq;               /* device (D/2) */
    dbuf ws, logits, sample_ws, tokens, params;
    dbuf logits2, pen_params, pen_tokens, pen_bias, pen_ws, tok_lp, top_ids, top_lp, pairs;
    dbuf ids, pos, qsl, seq_lens, block_tables, slots, lidx;
    dbuf qsl_prefill;  /* query_start_loc of the prefill part of a split mixed batch, rebased to 0 */
    uint64_t attn_split_steps;
    bool no_attn_split;  /* CLLM_NO_ATTN_SPLIT=1: mixed batches in one attention call (A/B tests, benchmarks) */
    runner_graphs g;
};

/* Device buffers that grow on demand (model_runner.c). */
cllm_status cllm_runner_grow(cllm_backend *be, dbuf *b, size_t need);
cllm_status cllm_runner_put(cllm_backend *be, dbuf *b, const void *src, size_t n);

/* pipeline.c: execute batch b (validated) on this pipeline stage, cut into
 * micro-batches of whole sequences that flow through the stages (see
 * cllm_runner_execute_ex for the arguments; only stage 0 samples and
 * returns tokens / logits). */
cllm_status cllm_runner_pipeline_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                         int32_t *tokens_out, float *logits_out);

/* Penalties + sampling (unless already_sampled) and logprobs of the NL rows
 * of the f32 logits (device) into the sampled tokens (device), then copy the
 * tokens to tokens_out (host). model_runner.c. */
cllm_status cllm_runner_finish_rows(cllm_runner *r, int NL, const cllm_runner_sample_args *a, const float *logits,
                                    int32_t *tokens, bool already_sampled, int32_t *tokens_out);

/* cuda_graph.c: true when batch b (already validated) with sampling args a
 * can run through a captured graph (pure decode, S <= largest size, no
 * penalties, profiling off). */
bool cllm_runner_graph_fits(const cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a);
/* Run batch b through the graph of its padded size (see
 * cllm_runner_execute_ex for the arguments). */
cllm_status cllm_runner_graph_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                      int32_t *tokens_out, float *logits_out);
/* Destroy the graphs (the KV cache moved); keep the buffers. */
void cllm_runner_graphs_reset(cllm_runner *r);
/* Destroy the graphs and free their buffers. */
void cllm_runner_graphs_free(cllm_runner *r);

#endif
