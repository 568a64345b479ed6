/* A request being served: token ids (prompt + outputs), sampling
 * parameters, status and KV-cache progress (host only).
 *
 * Follows vLLM v1's Request (vllm/v1/request.py) and SamplingParams
 * (vllm/sampling_params.py): same field names and meanings. n > 1 is served
 * as vLLM v1 does, by the caller fanning the request out into n sequences
 * (they share the prompt's blocks through the prefix cache).
 */
#ifndef CLLM_ENGINE_SEQUENCE_H
#define CLLM_ENGINE_SEQUENCE_H

#include "backend/backend.h"
#include "cllm.h"
#include "kv/block_manager.h"
#include <stdbool.h>
#include <stdint.h>

/* The request parameters are cllm.h's cllm_request_params (vLLM
 * SamplingParams); cllm_request_default_params() is defined in sequence.c.
 * Here max_tokens < 0 means "up to max_model_len" (the engine maps the public
 * API's max_tokens <= 0 to -1). Pointers are borrowed by cllm_seq_create,
 * which copies what they point at. */

/* Validate ranges as vLLM SamplingParams._verify_args does. Returns
 * CLLM_ERR_INVALID_ARG naming the field and the allowed range. */
cllm_status cllm_request_params_validate(const cllm_request_params *p);

typedef enum cllm_seq_status {
    CLLM_SEQ_WAITING = 0,
    CLLM_SEQ_RUNNING = 1,
    CLLM_SEQ_PREEMPTED = 2,
    CLLM_SEQ_FINISHED_STOPPED = 3,   /* eos, stop token id or stop string: "stop" */
    CLLM_SEQ_FINISHED_LENGTH = 4,    /* max_tokens or max_model_len: "length" */
    CLLM_SEQ_FINISHED_ABORTED = 5,   /* aborted or rejected: "abort" */
} cllm_seq_status;

typedef struct cllm_seq {
    int64_t id;                   /* caller's request id */
    cllm_request_params params;   /* stop / stop_token_ids point at owned copies */
    int32_t eos_token_id;         /* -1: none */
    int32_t *token_ids;           /* (num_tokens): prompt then outputs, owned */
    int num_tokens;
    int num_prompt_tokens;
    int cap_tokens;
    cllm_seq_status status;
    int32_t stop_reason;          /* stop token id that finished it, else -1 */
    int num_preemptions;
    cllm_kv_seq kv;               /* block table, computed tokens (kv.num_computed_tokens) */
    /* owned copies behind params.stop / params.stop_token_ids */
    char **stop_owned;
    int32_t *stop_ids_owned;
    /* params' logit_bias, sorted by token id, one entry per id (the last
     * value given), owned; params.logit_bias_* are NULL / 0 */
    cllm_logit_bias *logit_bias;
    int num_logit_bias;
} cllm_seq;

/* Create a sequence for prompt (n_prompt >= 1 ids, copied) with params
 * (validated and deep-copied; NULL = defaults) and eos id (-1 = none).
 * Status WAITING. *out is owned by the caller until handed to the
 * scheduler (cllm_scheduler_add). Errors: CLLM_ERR_INVALID_ARG, CLLM_ERR_OOM. */
cllm_status cllm_seq_create(int64_t id, const int32_t *prompt, int n_prompt, const cllm_request_params *params,
                            int32_t eos_token_id, cllm_seq **out);
/* Frees the sequence's own memory. Its KV blocks must have been released
 * (cllm_kv_free) already: asserts otherwise. NULL is a no-op. */
void cllm_seq_destroy(cllm_seq *s);

/* Append one generated token. Errors: CLLM_ERR_OOM. */
cllm_status cllm_seq_append_token(cllm_seq *s, int32_t token);

static inline int cllm_seq_num_output_tokens(const cllm_seq *s) { return s->num_tokens - s->num_prompt_tokens; }
static inline const int32_t *cllm_seq_output_tokens(const cllm_seq *s) { return s->token_ids + s->num_prompt_tokens; }
static inline bool cllm_seq_is_finished(const cllm_seq *s) { return s->status >= CLLM_SEQ_FINISHED_STOPPED; }

/* "stop" | "length" | "abort" for finished sequences, NULL otherwise
 * (static strings, vLLM finish_reason). */
const char *cllm_seq_finish_reason(const cllm_seq *s);

#endif
