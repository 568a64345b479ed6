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

#include "cllm.h"
#include "kv/block_manager.h"
#include <stdbool.h>
#include <stdint.h>

/* vLLM SamplingParams. Pointers are borrowed by cllm_seq_create, which
 * copies what they point at. */
typedef struct cllm_request_params {
    int n;                        /* output sequences per request, default 1 */
    float temperature;            /* default 1.0; 0 = greedy */
    float top_p;                  /* (0, 1], default 1.0 */
    int top_k;                    /* <= 0: off (vLLM -1), default -1 */
    float min_p;                  /* [0, 1], default 0 */
    float repetition_penalty;     /* > 0, default 1.0 (off) */
    float presence_penalty;       /* [-2, 2], default 0 */
    float frequency_penalty;      /* [-2, 2], default 0 */
    uint64_t seed;                /* used when has_seed */
    bool has_seed;
    const char *const *stop;      /* num_stop stop strings (matched by the caller on text) */
    int num_stop;
    const int32_t *stop_token_ids;/* num_stop_token_ids ids that finish with reason "stop" */
    int num_stop_token_ids;
    bool ignore_eos;              /* default false */
    int max_tokens;               /* default 16 (vLLM); < 0: up to max_model_len */
    int min_tokens;               /* default 0: no eos/stop-token stop before this many outputs */
    int logprobs;                 /* < 0: none (vLLM None), default -1 */
    int prompt_logprobs;          /* < 0: none, default -1 */
} cllm_request_params;

/* vLLM defaults (see field comments). */
cllm_request_params cllm_request_default_params(void);

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
