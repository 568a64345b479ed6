/* Model runner (one per rank): owns the backend, the model's weights on it,
 * the paged KV cache (per layer k and v, (B, P, Hkv, D) in the act dtype),
 * the rotary inv_freq table and the workspace; executes one batch (forward +
 * sample) given host-side metadata. The block manager / scheduler above it
 * decide which KV blocks a sequence uses (vLLM's GPUModelRunner role).
 *
 * Parallelism hook: cllm_runner_params.comm / rank / world_size are where
 * tensor/pipeline parallelism plugs in (a communicator from src/dist/); for
 * now comm must be NULL and world_size 1. */
#ifndef CLLM_ENGINE_MODEL_RUNNER_H
#define CLLM_ENGINE_MODEL_RUNNER_H

#include "backend/backend.h"
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
    void *comm;                    /* TP/PP communicator (future); must be NULL */
    int rank, world_size;          /* 0 and 1 for now */
} cllm_runner_params;

/* One batch, host memory (vLLM's input batch). S sequences, T tokens. */
typedef struct cllm_batch_host {
    int num_seqs;                   /* S */
    int num_tokens;                 /* T */
    const int32_t *token_ids;       /* (T) */
    const int32_t *positions;       /* (T) */
    const int32_t *query_start_loc; /* (S+1), [0] = 0, [S] = T */
    const int32_t *seq_lens;        /* (S) context incl. the new tokens */
    const int32_t *block_tables;    /* (S, max_blocks_per_seq); only the first ceil(seq_len/P) are read */
    int max_blocks_per_seq;
    const int32_t *slot_mapping;    /* (T) block*P + offset, <0 = padding */
    const int32_t *logits_indices;  /* (num_logits) batch rows that need logits */
    int num_logits;
} cllm_batch_host;

/* Load the weights through the architecture of cfg->model_type and allocate
 * the KV cache. Errors: CLLM_ERR_UNSUPPORTED (model_type, comm != NULL),
 * CLLM_ERR_NOT_FOUND / CLLM_ERR_FORMAT (tensor), CLLM_ERR_OOM. On failure
 * the backend is still the caller's. */
cllm_status cllm_runner_create(const cllm_runner_params *p, cllm_runner **out);
/* Frees everything, including the backend. NULL is a no-op. */
void cllm_runner_destroy(cllm_runner *r);

/* Upload batch b, run the forward pass and, if tokens_out != NULL, sample
 * one token per logits row with sp (num_logits params, host) into tokens_out
 * (num_logits, host). If logits_out != NULL the (num_logits, V) f32 logits
 * are copied to it (host). Validates the metadata (CLLM_ERR_INVALID_ARG);
 * grows the workspace for larger batches (CLLM_ERR_OOM). Synchronous. */
cllm_status cllm_runner_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_sample_params *sp,
                                int32_t *tokens_out, float *logits_out);

int cllm_runner_num_kv_blocks(const cllm_runner *r);
int cllm_runner_block_size(const cllm_runner *r);
cllm_backend *cllm_runner_backend(cllm_runner *r);   /* borrowed */
const cllm_arch_info *cllm_runner_info(const cllm_runner *r);

#endif
