/* Continuous-batching scheduler (host only), after vLLM v1
 * (vllm/v1/core/sched/scheduler.py).
 *
 * Each step:  cllm_scheduler_schedule() -> plan;  cllm_sched_flatten(plan)
 * -> host arrays in cllm_attn_meta layout;  the model runner executes them
 * and samples one token per plan entry with `sample` set;
 * cllm_scheduler_update(plan, sampled) appends those tokens, advances
 * num_computed_tokens and finishes sequences. Strictly in that order; a
 * second schedule before update is refused.
 *
 * Policy: under the token budget max_num_batched_tokens and max_num_seqs,
 * running sequences first, in admission order (one decode token each, or the
 * next chunk of an unfinished prefill), then waiting ones FCFS with chunked
 * prefill (a prompt over the remaining budget is split across steps), each
 * admission starting from the longest cached prefix. When a running sequence
 * cannot get a block, the most recently admitted running sequence is
 * preempted by recompute (blocks freed, pushed to the front of the waiting
 * queue, num_computed_tokens = 0; its cached full blocks usually come back as
 * prefix hits); no admission happens in a step that preempted. A request that
 * could not fit even alone (min(prompt + max_tokens, max_model_len) - 1
 * tokens of KV over the whole cache) is rejected by cllm_scheduler_add, so
 * the oldest running sequence can always progress: no livelock.
 *
 * Sequences are owned by the scheduler from a successful add until the caller
 * takes them back finished (cllm_scheduler_take_finished) and destroys them.
 */
#ifndef CLLM_ENGINE_SCHEDULER_H
#define CLLM_ENGINE_SCHEDULER_H

#include "backend/backend.h"
#include "engine/sequence.h"
#include "kv/block_manager.h"

typedef struct cllm_scheduler cllm_scheduler;

typedef struct cllm_scheduler_params {
    int max_num_seqs;            /* S per step, default 256 (vLLM) */
    int max_num_batched_tokens;  /* T per step, default 2048 (vLLM v1 chunked prefill) */
    int max_model_len;           /* tokens per sequence (prompt + outputs), must be set (> 0) */
} cllm_scheduler_params;

cllm_scheduler_params cllm_scheduler_default_params(void);

/* One scheduled sequence. Its new tokens are
 * seq->token_ids[start_pos .. start_pos + num_tokens) at those positions; its
 * block table seq->kv.blocks covers start_pos + num_tokens tokens. */
typedef struct cllm_sched_entry {
    cllm_seq *seq;               /* borrowed */
    int start_pos;               /* num_computed_tokens before the step */
    int num_tokens;              /* q_len > 0 */
    bool sample;                 /* step reaches the last known token: logits + sampling */
} cllm_sched_entry;

/* A step plan; owned by the scheduler, valid until the next schedule. */
typedef struct cllm_sched_plan {
    cllm_sched_entry *entries;   /* (num_seqs): running ones first, then admitted */
    int num_seqs;                /* S */
    int num_tokens;              /* T = sum of num_tokens */
    int num_sample;              /* entries with sample set */
    int num_decode_seqs;         /* entries that are a one-token decode (after the prompt) */
    cllm_kv_copy *copies;        /* (num_copies) block copies to do before the step (copy-on-write) */
    int num_copies;
    cllm_seq **preempted;        /* (num_preempted) sequences preempted this step (borrowed) */
    int num_preempted;
} cllm_sched_plan;

/* Create. bm is borrowed and must outlive the scheduler; all its blocks
 * must be free. Errors: CLLM_ERR_INVALID_ARG (non-positive limits), CLLM_ERR_OOM. */
cllm_status cllm_scheduler_create(const cllm_scheduler_params *params, cllm_kv *bm, cllm_scheduler **out);
/* Frees every sequence still held (releasing its blocks). NULL is a no-op. */
void cllm_scheduler_destroy(cllm_scheduler *s);

/* Queue a WAITING sequence (takes ownership on success; on error the caller
 * keeps it). Errors: CLLM_ERR_CONTEXT_LENGTH (prompt > max_model_len),
 * CLLM_ERR_NO_KV_BLOCKS (it could never fit the KV cache, even alone; the
 * message gives the numbers), CLLM_ERR_INVALID_ARG (not WAITING, id in use). */
cllm_status cllm_scheduler_add(cllm_scheduler *s, cllm_seq *seq);

/* Plan the next step (see the policy above). An empty plan (num_seqs 0)
 * means nothing is runnable. Errors: CLLM_ERR_INVALID_ARG (previous plan not
 * updated yet), CLLM_ERR_OOM. */
cllm_status cllm_scheduler_schedule(cllm_scheduler *s, const cllm_sched_plan **plan);

/* True between cllm_scheduler_schedule and the cllm_scheduler_update of its plan. */
bool cllm_scheduler_plan_pending(const cllm_scheduler *s);

/* Apply an executed plan: sampled (num_sampled == plan->num_sample) holds
 * one token per entry with sample set, in entry order (= logits_indices
 * order of cllm_sched_flatten). Advances num_computed_tokens, appends the
 * tokens, and finishes sequences by vLLM's check_stop order: length
 * (num_tokens >= max_model_len or outputs >= max_tokens), then nothing before
 * min_tokens outputs, then eos (unless ignore_eos), then stop_token_ids.
 * Entries aborted since schedule are skipped. Errors: CLLM_ERR_INVALID_ARG
 * (not the pending plan, wrong count), CLLM_ERR_OOM. */
cllm_status cllm_scheduler_update(cllm_scheduler *s, const cllm_sched_plan *plan, const int32_t *sampled,
                                  int num_sampled);

/* Finish request id now with reason status (CLLM_SEQ_FINISHED_*), freeing
 * its blocks: abort (any time, waiting or running), or a stop string found
 * by the caller on the text (CLLM_SEQ_FINISHED_STOPPED). Returns false if no
 * unfinished request has that id. */
bool cllm_scheduler_finish(cllm_scheduler *s, int64_t id, cllm_seq_status status);
static inline bool cllm_scheduler_abort(cllm_scheduler *s, int64_t id) {
    return cllm_scheduler_finish(s, id, CLLM_SEQ_FINISHED_ABORTED);
}

/* Move up to cap finished sequences into out (caller-owned from now on:
 * read their outputs, then cllm_seq_destroy). Returns how many. While a plan
 * is pending (between schedule and update) returns 0, so no sequence the
 * plan points at is handed out. */
int cllm_scheduler_take_finished(cllm_scheduler *s, cllm_seq **out, int cap);

int cllm_scheduler_num_waiting(const cllm_scheduler *s);
int cllm_scheduler_num_running(const cllm_scheduler *s);
/* Waiting + running + finished-not-taken. */
int cllm_scheduler_num_unfinished(const cllm_scheduler *s);

/* Integrity: cllm_kv_check over the running sequences' block tables,
 * waiting sequences hold no blocks, running ones cover their computed
 * tokens, queues within limits. CLLM_ERR_INTERNAL with details. */
cllm_status cllm_scheduler_check(const cllm_scheduler *s);

/* Host arrays of one step in cllm_attn_meta layout (all int32), grown by
 * cllm_sched_flatten and released by cllm_batch_host_free. */
typedef struct cllm_batch_host {
    int num_seqs, num_tokens, num_logits;      /* S, T, rows needing logits */
    int max_query_len, max_seq_len, block_size, max_blocks_per_seq;
    int32_t *token_ids;        /* (T) */
    int32_t *positions;        /* (T) start_pos + i */
    int32_t *slot_mapping;     /* (T) block*P + offset */
    int32_t *query_start_loc;  /* (S+1) */
    int32_t *seq_lens;         /* (S) start_pos + q_len */
    int32_t *block_tables;     /* (S, max_blocks_per_seq), padded with 0 (vLLM) */
    int32_t *logits_indices;   /* (num_logits) row of T: last new token of each sampling entry */
    int32_t *logits_entries;   /* (num_logits) plan entry of each logits row */
    size_t cap_t, cap_s, cap_bt;
} cllm_batch_host;

/* Flatten plan into b (arrays grown as needed, owned by b). P = block size;
 * max_blocks_per_seq: row width of block_tables, 0 = the plan's largest
 * table (a fixed width suits CUDA graphs). Errors: CLLM_ERR_INVALID_ARG (a
 * table wider than max_blocks_per_seq), CLLM_ERR_OOM. */
cllm_status cllm_sched_flatten(const cllm_sched_plan *plan, int block_size, int max_blocks_per_seq,
                               cllm_batch_host *b);
void cllm_batch_host_free(cllm_batch_host *b);
/* An attention meta pointing at b's host arrays (the runner uploads them
 * and swaps in device pointers). */
cllm_attn_meta cllm_batch_host_attn_meta(const cllm_batch_host *b);

#endif
