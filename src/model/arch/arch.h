/* Model architectures (internal): a registry from config.json's model_type
 * to the code that loads a checkpoint's weights onto a backend and runs the
 * forward pass of a batch. One dense decoder (llama.c) serves llama,
 * mistral, qwen2 and qwen3; new families add a file and a registry line. */
#ifndef CLLM_MODEL_ARCH_H
#define CLLM_MODEL_ARCH_H

#include "backend/backend.h"
#include "dist/comm.h"
#include "model/config.h"
#include "model/shard.h"
#include "model/weights.h"

/* Inputs and outputs of one forward pass; every pointer is device memory of
 * the backend unless noted. */
typedef struct cllm_forward_args {
    int num_tokens;                 /* T */
    const int32_t *token_ids;       /* (T) */
    const int32_t *positions;       /* (T) */
    const cllm_attn_meta *meta;     /* host struct holding device arrays */
    /* Optional split of a mixed batch for attention (vLLM reorders decodes
     * first for the same reason): attn_decode covers the first
     * attn_decode->num_tokens tokens (sequences with one new token, served by
     * the backend's decode kernel), attn_prefill the rest, as a batch of its
     * own (query_start_loc rebased to 0; q and out offset by the decode
     * tokens). Both NULL: one attention call over meta. The KV write always
     * uses meta. */
    const cllm_attn_meta *attn_decode, *attn_prefill;
    void *const *k_cache;           /* host array (layers) of device (B, P, Hkv, D) */
    void *const *v_cache;
    cllm_dtype kv_cache_dtype;      /* the caches' elements: AUTO (act) or F8_E4M3 (with each layer's
                                     * k_scale / v_scale from the checkpoint, 1 when absent) */
    const float *inv_freq;          /* (D/2) f32 */
    const int32_t *logits_indices;  /* (num_logits) rows of the batch that need logits */
    int num_logits;
    float *logits;                  /* (num_logits, V) f32 out, V the whole vocabulary */
    void *workspace;                /* workspace_bytes(model, T, num_logits, act) bytes */
    cllm_comm *tp;                  /* tensor-parallel group of the model's shard (NULL: tp_size 1);
                                     * device memory comm on CUDA (NCCL), host on CPU (TCP) */
    /* Pipeline parallelism (the shard's pp_size > 1; both NULL otherwise):
     * hidden (T, 2E) act: the (residual, pending sum) state between stages,
     * read at entry on stages > 0 (received from the previous stage) and left
     * there at exit on the non-last stages (to send to the next); the last
     * stage writes the final-normed rows that need logits to sel_out
     * (num_logits, E) act and runs no lm_head: stage 0 does (head below).
     * Stage 0 embeds, every stage runs its layers [layer_start, layer_end)
     * with k_cache/v_cache indexed by the stage's layer. */
    void *hidden;
    void *sel_out;
} cllm_forward_args;

typedef struct cllm_arch_info {
    size_t weight_bytes;            /* bytes of this rank's weights on the backend */
    int64_t num_params;             /* parameters of this rank's shard (tied embeddings counted once) */
} cllm_arch_info;

typedef struct cllm_arch {
    const char *model_type;
    /* Load this rank's slice (shard) of every tensor through cllm_weights_get
     * (shape-checked against the whole tensor), upload it to backend buffers
     * in be->act (fusing q/k/v and gate/up), release it. *model is owned by
     * the caller, freed with destroy. */
    cllm_status (*load)(cllm_backend *be, const cllm_model_config *cfg, const cllm_shard *shard, cllm_weights *w,
                        bool progress, void **model, cllm_arch_info *info);
    void (*destroy)(cllm_backend *be, void *model);
    /* Workspace of a forward of T tokens and num_logits logits rows. */
    size_t (*workspace_bytes)(const void *model, int T, int num_logits, cllm_dtype act);
    cllm_status (*forward)(cllm_backend *be, void *model, const cllm_forward_args *a);
    /* Stage 0 of a pipeline: logits (num_logits, V) f32 = lm_head over the
     * last stage's final-normed rows sel (num_logits, E) act (all-gathered
     * over tp like the forward's). workspace: workspace_bytes(model, 0,
     * num_logits, act) bytes. */
    cllm_status (*head)(cllm_backend *be, void *model, const void *sel, int num_logits, float *logits,
                        void *workspace, cllm_comm *tp);
    /* Mixture of experts (may be NULL): add this rank's cumulative counts
     * over its layers: routed (num_experts) = assignments its router sent to
     * each expert, *computed += rows its experts computed. */
    void (*expert_stats)(const void *model, uint64_t *routed, uint64_t *computed);
} cllm_arch;

/* The architecture for cfg->model_type, or NULL (message set,
 * CLLM_ERR_UNSUPPORTED naming the supported types). */
const cllm_arch *cllm_arch_find(const char *model_type);

/* The dense Llama-family decoder (llama.c). */
extern const cllm_arch cllm_arch_llama_family;

#endif
