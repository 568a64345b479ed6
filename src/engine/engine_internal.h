/* Engine internals shared by engine.c (create/destroy/stats),
 * engine_request.c (add_request/abort) and engine_step.c (step, outputs). */
#ifndef CLLM_ENGINE_ENGINE_INTERNAL_H
#define CLLM_ENGINE_ENGINE_INTERNAL_H

#include "cllm.h"
#include "engine/executor.h"
#include "engine/model_runner.h"
#include "model/config.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kv/block_manager.h"

/* One request (n completions). */
typedef struct eng_req {
    uint64_t id;
    int n, num_done;
    int *slots;               /* (n) slot of each completion */
    int num_prompt;
    int logprobs;             /* -1: none */
    int prompt_logprobs;      /* -1: none; else top-k width of the prompt logprobs */
    int plp_filled;           /* prompt_logprobs entries 1..plp_filled are computed */
    cllm_logprob_entry *plp;  /* (num_prompt) prompt logprobs; entry 0 has none (NAN, 0 top) */
    int32_t *plp_top_ids;     /* (num_prompt, prompt_logprobs) */
    float *plp_top_lp;
    bool skip_special_tokens, include_stop_str;
    bool prompt_counted;
    bool hidden;              /* partially added (add_request failed): no outputs */
    char **stop;              /* (num_stop) owned copies */
    int num_stop;
    double t_add_ms;
} eng_req;

/* One completion (one scheduler sequence; its id is the slot index). */
typedef struct eng_slot {
    bool used;
    eng_req *req;             /* borrowed from e->reqs */
    int index;                /* completion index */
    cllm_seq *seq;            /* held by the scheduler until taken back */
    cllm_detokenizer *detok;
    char *text;               /* output text so far (truncated at a stop string) */
    size_t len, cap, emitted; /* bytes; emitted: already reported */
    uint64_t seed;
    bool stop_string;         /* finished by a stop string */
    double first_token_ms;
    int out_pos;              /* index in this step's outputs, -1 */
} eng_slot;

/* Per-step output storage (valid until the next step). */
typedef struct eng_step_bufs {
    cllm_request_output *outs;
    int num_outs, cap_outs;
    int32_t *tok;             /* (cap_outs) the new token of output i */
    cllm_logprob_entry *lp;   /* (cap_outs) */
    int32_t *top_ids;         /* (cap_outs, MAX) */
    float *top_lp;
    size_t *text_off;         /* (cap_outs) offset in text */
    char *text;
    size_t text_len, text_cap;
} eng_step_bufs;

struct cllm_engine {
    char *dir;                /* resolved model directory (owned) */
    cllm_model_config cfg;
    cllm_tokenizer *tok;      /* owned */
    cllm_executor *ex;        /* owned: rank 0's worker and the other ranks' channel */
    double load_ms;           /* wall time of cllm_engine_create */
    cllm_kv *bm;
    cllm_scheduler *sched;
    int max_model_len, max_blocks_per_seq, max_num_waiting;
    bool check;               /* integrity check after every step */
    uint64_t next_id;
    eng_req **reqs;           /* active requests, sorted by id */
    int num_reqs, cap_reqs;
    eng_slot *slots;
    int num_slots, cap_slots;
    int *free_slots;
    int num_free_slots;
    /* step scratch */
    cllm_batch_host batch;
    cllm_sample_params *sp;
    cllm_penalty_params *pen;
    int32_t *hist;
    size_t cap_hist;
    int num_hist;
    cllm_logit_bias *bias;        /* the rows' logit bias (cllm_penalty_params bias_start / num_bias) */
    size_t cap_bias;
    int num_bias;
    int lp_k;                 /* logprobs top-k width of this step, -1: none */
    int32_t *sampled;
    float *tok_lp;
    int32_t *top_ids;
    float *top_lp;
    int cap_rows;
    cllm_seq **taken;
    int cap_taken;
    eng_step_bufs sb;
    /* prompt_logprobs rows of this step (engine_prompt_lp.c) */
    int32_t *plx_lidx;        /* (NL + NX) logits rows: the sampling rows, then the prompt rows */
    int32_t *plx_tok;         /* (NX) prompt token each prompt row scores */
    int32_t *plx_pos;         /* (NX) entry index in its request's prompt_logprobs */
    eng_req **plx_req;        /* (NX) borrowed */
    size_t cap_plx;
    int plx_k;                /* max top-k over the rows */
    float *plx_lp;            /* (NX) */
    int32_t *plx_top_ids;     /* (NX, plx_k) */
    float *plx_top_lp;
    size_t cap_plx_top;
    void **plp_dead;          /* prompt_logprobs arrays of requests finished this step: freed next step */
    int num_plp_dead, cap_plp_dead;
    uint64_t prompt_tokens_total, generation_tokens_total, num_preemptions;
};

#define ENG_MAX_LOGPROBS 20   /* vLLM's default max_logprobs */

void eng_req_free(eng_req *r);
/* prompt_logprobs (engine_prompt_lp.c). Allocate r's prompt_logprobs for
 * prompt ids (n) with top-k width k; entry 0 gets logprob NAN, no top. */
cllm_status eng_plp_init(eng_req *r, const int32_t *ids, int n, int k);
/* The prompt rows this step needs (prefill positions whose logits score the
 * next prompt token and were not computed before); writes plx_lidx (the NL
 * sampling rows of e->batch first), *nx = NX. */
cllm_status eng_plp_rows(cllm_engine *e, const cllm_sched_plan *plan, int NL, int *nx);
/* After the execute whose logits rows [NL, NL + NX) are the prompt rows:
 * compute their logprobs and store them in the requests. */
cllm_status eng_plp_fetch(cllm_engine *e, int NL, int NX);
/* Keep r's prompt_logprobs alive until the next step (outputs point at
 * them), detaching them from r. */
void eng_plp_retire(cllm_engine *e, eng_req *r);
/* Free the retired arrays (start of a step, destroy). */
void eng_plp_free_dead(cllm_engine *e);
/* Release slot i (detokenizer, text) to the free list. */
void eng_slot_release(cllm_engine *e, int i);
void eng_step_bufs_free(eng_step_bufs *b);
/* Active request by id (binary search), or NULL. */
eng_req *eng_find_req(cllm_engine *e, uint64_t id, int *pos);
/* Drop request at position pos of e->reqs (freeing it). */
void eng_remove_req(cllm_engine *e, int pos);

#endif
