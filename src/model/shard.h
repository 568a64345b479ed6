/* What one rank holds of a model (internal): the tensor-parallel slice of
 * every layer (Megatron-LM layout, as vLLM's ColumnParallelLinear /
 * RowParallelLinear / VocabParallelEmbedding) of its pipeline stage's layer
 * range. The forward reads its dimensions from here, never from the full
 * config.
 *
 *   q_proj, k_proj, v_proj, gate_proj, up_proj: column parallel (rows split);
 *   o_proj, down_proj: row parallel (columns split), then an all-reduce;
 *   embed_tokens, lm_head: vocabulary parallel (rows split, padded to a
 *   multiple of tp_size): masked lookup + all-reduce; logits all-gathered.
 *   KV heads: split when tp_size divides num_key_value_heads, else (tp_size a
 *   multiple of it) each KV head is replicated on tp_size / Hkv ranks.
 *
 * Pipeline parallelism: stage pp_rank of pp_size holds the decoder layers
 * [layer_start, layer_end) (contiguous ranges, vLLM's even split with the
 * remainder on the last stages, or --pp-layer-partition). Stage 0 also holds
 * the embedding and the lm_head (so that sampling, logprobs and penalties
 * stay on rank 0, which receives the final-normed rows from the last stage);
 * the last stage holds the final norm. */
#ifndef CLLM_MODEL_SHARD_H
#define CLLM_MODEL_SHARD_H

#include "model/config.h"

typedef struct cllm_shard {
    int tp_rank, tp_size;
    int num_heads;           /* H / tp: query heads [tp_rank * num_heads, +num_heads) */
    int num_kv_heads;        /* Hkv / tp, or 1 when replicated */
    int kv_head_start;       /* first KV head of this rank */
    int intermediate_size;   /* I / tp: rows [tp_rank * I/tp, +I/tp) of gate and up */
    int vocab_size;          /* V, the whole vocabulary (logits width) */
    int vocab_per_rank;      /* Vp = ceil(V / tp): rows of the embedding / lm_head shard */
    int vocab_start;         /* tp_rank * Vp */
    int vocab_rows;          /* real rows of this shard: min(Vp, V - vocab_start), >= 0 */
    int pp_rank, pp_size;    /* pipeline stage */
    int layer_start, layer_end; /* this stage's decoder layers [layer_start, layer_end) */
    /* Mixture of experts (cfg->num_experts > 0): this rank's experts
     * [expert_start, expert_start + num_local_experts), each
     * moe_intermediate_size wide. Tensor parallelism alone: every expert,
     * sliced like a dense MLP (moe_intermediate_size / tp, then the
     * all-reduce); expert parallelism (ep_size > 1, vLLM's
     * --enable-expert-parallel, over the tensor-parallel ranks):
     * num_experts / ep whole experts, tokens dispatched and combined with
     * all-to-all. */
    int ep_size, ep_rank;
    int expert_start, num_local_experts, moe_intermediate_size;
} cllm_shard;

/* The shard of (tp_rank, pp_rank) in a tp_size x pp_size layout:
 *  - the tensor-parallel slice of tp_rank;
 *  - the layers of stage pp_rank: partition NULL or "" splits
 *    num_hidden_layers evenly (the first stages get one fewer when it does
 *    not divide, as vLLM's get_pp_indices); else a comma-separated list of
 *    pp_size positive layer counts that sum to num_hidden_layers ("14,18");
 *  - the experts (see the fields above), with or without expert parallelism
 *    over the tensor-parallel ranks.
 * Errors: CLLM_ERR_INVALID_ARG naming what is wrong and, where it can, what
 * would work: tp_size not dividing num_attention_heads or
 * intermediate_size, or neither dividing nor a multiple of
 * num_key_value_heads ("--tensor-parallel-size 3 does not divide
 * num_attention_heads 32 ...; use one of 1, 2, 4, 8, ..."); more stages than
 * layers, a malformed partition or a wrong sum; tp_size not dividing
 * num_experts (expert parallelism) or moe_intermediate_size (tensor
 * parallelism); expert parallelism on a dense model. */
cllm_status cllm_shard_init(const cllm_model_config *cfg, int tp_rank, int tp_size, int pp_rank, int pp_size,
                            const char *partition, bool expert_parallel, cllm_shard *out);

/* The whole model on one rank. */
void cllm_shard_whole(const cllm_model_config *cfg, cllm_shard *out);

#endif
