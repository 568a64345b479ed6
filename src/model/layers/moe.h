/* The mixture-of-experts MLP block (internal; every MoE family: qwen3_moe,
 * mixtral): router, top-k routing, the experts, and with expert parallelism
 * the dispatch and combine of tokens over all-to-all.
 * Sources: transformers Qwen3MoeSparseMoeBlock / MixtralSparseMoeBlock;
 * vLLM's FusedMoE (experts sharded over tensor-parallel ranks, or whole
 * experts spread over the ranks with --enable-expert-parallel). */
#ifndef CLLM_MODEL_LAYERS_MOE_H
#define CLLM_MODEL_LAYERS_MOE_H

#include "dist/comm.h"
#include "model/layers/loader.h"

typedef struct cllm_moe {
    cllm_weight router;        /* (num_experts, E), replicated */
    void *gate_up_all;         /* (num_local, 2I, E): gate rows then up rows of each local expert */
    void *down_all;            /* (num_local, E, I) */
    cllm_weight *gate_up, *down; /* (num_local) views into them (host array) */
    int num_experts, top_k, num_local, expert_start, I;
    bool renormalize;
    bool ep;                   /* expert parallelism: dispatch/combine over the tensor-parallel group */
    uint64_t *tokens_per_expert; /* (num_experts) assignments this rank routed (its token share), cumulative */
    uint64_t rows_computed;    /* (token, expert) rows this rank's experts computed, cumulative */
} cllm_moe;

/* Load layer l's block: the router `PREFIX.gate.weight` and the local
 * experts' `PREFIX.experts.N.{gate,up,down}` tensors, where PREFIX and the
 * names follow the family (qwen3_moe: mlp, gate_proj / up_proj / down_proj;
 * mixtral: block_sparse_moe, w1 / w3 / w2), sliced as the shard says.
 * Errors: the loader's. */
cllm_status cllm_moe_load(cllm_loader *L, const cllm_model_config *cfg, const cllm_shard *sh, int l, cllm_moe *m);
void cllm_moe_free(cllm_backend *be, cllm_moe *m);

/* Workspace of cllm_moe_forward for T tokens (bytes) on the backend whose
 * ops these are (its moe_workspace_bytes for the experts). */
size_t cllm_moe_workspace_bytes(const cllm_backend_ops *ops, const cllm_model_config *cfg, const cllm_shard *sh,
                                cllm_dtype act, int T);

/* out (T, E) act = the block applied to x (T, E) act (the normed hidden
 * states, the same on every tensor-parallel rank). Without expert
 * parallelism out is this rank's partial sum (its slice of every expert):
 * the caller all-reduces it over tp as for a dense MLP. With expert
 * parallelism out is complete on every rank (no all-reduce): each rank
 * routes its share of the tokens, sends each (token, expert) to the rank
 * holding the expert with all-to-all-v (counts first), the experts run
 * there, the results come back the same way and are summed with the
 * routing weights, and an all-gather gives every rank every token. tp: the
 * tensor-parallel group (may be NULL with one rank). Synchronizes with the
 * host when expert parallelism or statistics need the routing. */
cllm_status cllm_moe_forward(cllm_backend *be, cllm_moe *m, const void *x, int T, int E, void *out, void *workspace,
                             cllm_comm *tp);

#endif
