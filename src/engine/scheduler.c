/* Continuous-batching scheduler: queues, step plans, preemption, stop
 * checks, plan flattening. See scheduler.h. */
#include "engine/scheduler.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* Ring-buffer deque of sequences (the waiting queue). */
typedef struct seq_deque {
    cllm_seq **a;
    int cap, head, n;
} seq_deque;

struct cllm_scheduler {
    cllm_scheduler_params p;
    cllm_kv *bm;                 /* borrowed */
    seq_deque waiting;
    cllm_seq **running;          /* admission order */
    int n_running, cap_running;
    cllm_seq **finished;
    int n_finished, cap_finished;
    cllm_sched_plan plan;
    int cap_entries, cap_copies, cap_preempted;
    bool plan_pending;
    const cllm_kv_seq **check_buf;
};

/* ------------------------------------------------------------------ deque */
static cllm_status dq_grow(seq_deque *d) {
    if (d->n < d->cap) return CLLM_OK;
    int cap = d->cap ? d->cap * 2 : 64;
    cllm_seq **a = cllm_malloc((size_t)cap * sizeof *a);
    if (!a) return CLLM_ERR_OOM;
    for (int i = 0; i < d->n; i++) a[i] = d->a[(d->head + i) % d->cap];
    free(d->a);
    d->a = a;
    d->cap = cap;
    d->head = 0;
    return CLLM_OK;
}
static cllm_seq *dq_get(const seq_deque *d, int i) { return d->a[(d->head + i) % d->cap]; }
static cllm_status dq_push_back(seq_deque *d, cllm_seq *x) {
    CLLM_TRY(dq_grow(d));
    d->a[(d->head + d->n) % d->cap] = x;
    d->n++;
    return CLLM_OK;
}
static cllm_status dq_push_front(seq_deque *d, cllm_seq *x) {
    CLLM_TRY(dq_grow(d));
    d->head = (d->head + d->cap - 1) % d->cap;
    d->a[d->head] = x;
    d->n++;
    return CLLM_OK;
}
static void dq_remove_at(seq_deque *d, int i) {
    for (int k = i; k + 1 < d->n; k++) d->a[(d->head + k) % d->cap] = d->a[(d->head + k + 1) % d->cap];
    d->n--;
}

/* Grow an array of elem-sized items to hold need. */
static cllm_status grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return CLLM_OK;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(*arr, (size_t)c * elem);
    if (!p) return cllm_error(CLLM_ERR_OOM, "scheduler: out of host memory (%d items)", c);
    *arr = p;
    *cap = c;
    return CLLM_OK;
}

/* -------------------------------------------------------------- lifecycle */
cllm_scheduler_params cllm_scheduler_default_params(void) {
    cllm_scheduler_params p = {0};
    p.max_num_seqs = 256;
    p.max_num_batched_tokens = 2048;
    return p;
}

cllm_status cllm_scheduler_create(const cllm_scheduler_params *params, cllm_kv *bm, cllm_scheduler **out) {
    *out = NULL;
    if (!bm || params->max_num_seqs < 1 || params->max_num_batched_tokens < 1 || params->max_model_len < 1)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "scheduler needs a block manager, max_num_seqs >= 1, max_num_batched_tokens >= 1 and "
                          "max_model_len >= 1 (got %d, %d, %d)",
                          params->max_num_seqs, params->max_num_batched_tokens, params->max_model_len);
    if (cllm_kv_num_free_blocks(bm) != cllm_kv_num_blocks(bm))
        return cllm_error(CLLM_ERR_INVALID_ARG, "scheduler: the block manager already has blocks in use");
    cllm_scheduler *s = cllm_calloc(1, sizeof *s);
    if (!s) return CLLM_ERR_OOM;
    s->p = *params;
    s->bm = bm;
    *out = s;
    return CLLM_OK;
}

static void release(cllm_scheduler *s, cllm_seq *q) {
    cllm_kv_free(s->bm, &q->kv);
    cllm_seq_destroy(q);
}

void cllm_scheduler_destroy(cllm_scheduler *s) {
    if (!s) return;
    for (int i = 0; i < s->waiting.n; i++) release(s, dq_get(&s->waiting, i));
    for (int i = 0; i < s->n_running; i++) release(s, s->running[i]);
    for (int i = 0; i < s->n_finished; i++) release(s, s->finished[i]);
    free(s->waiting.a);
    free(s->running);
    free(s->finished);
    free(s->plan.entries);
    free(s->plan.copies);
    free(s->plan.preempted);
    free(s->check_buf);
    free(s);
}

int cllm_scheduler_num_waiting(const cllm_scheduler *s) { return s->waiting.n; }
int cllm_scheduler_num_running(const cllm_scheduler *s) { return s->n_running; }
int cllm_scheduler_num_unfinished(const cllm_scheduler *s) { return s->waiting.n + s->n_running + s->n_finished; }

/* Final token count of a sequence: min(prompt + max_tokens, max_model_len). */
static int64_t final_len(const cllm_scheduler *s, const cllm_seq *q) {
    int64_t n = q->params.max_tokens < 0 ? s->p.max_model_len : (int64_t)q->num_prompt_tokens + q->params.max_tokens;
    return n < s->p.max_model_len ? n : s->p.max_model_len;
}

static cllm_seq *find_unfinished(const cllm_scheduler *s, int64_t id, int *where, int *idx) {
    for (int i = 0; i < s->n_running; i++)
        if (s->running[i]->id == id) { *where = 1; *idx = i; return s->running[i]; }
    for (int i = 0; i < s->waiting.n; i++)
        if (dq_get(&s->waiting, i)->id == id) { *where = 0; *idx = i; return dq_get(&s->waiting, i); }
    return NULL;
}

cllm_status cllm_scheduler_add(cllm_scheduler *s, cllm_seq *q) {
    if (!q || q->status != CLLM_SEQ_WAITING || q->kv.num_blocks != 0 || q->num_tokens != q->num_prompt_tokens)
        return cllm_error(CLLM_ERR_INVALID_ARG, "scheduler_add: the sequence must be new (WAITING, no blocks, no outputs)");
    int where, idx;
    if (find_unfinished(s, q->id, &where, &idx))
        return cllm_error(CLLM_ERR_INVALID_ARG, "scheduler_add: request id %lld is already queued", (long long)q->id);
    if (q->num_prompt_tokens > s->p.max_model_len)
        return cllm_error(CLLM_ERR_CONTEXT_LENGTH,
                          "request %lld: prompt of %d tokens is longer than max_model_len %d; shorten it",
                          (long long)q->id, q->num_prompt_tokens, s->p.max_model_len);
    int64_t kv_tokens = final_len(s, q) - 1, P = cllm_kv_block_size(s->bm);
    if (kv_tokens < q->num_prompt_tokens) kv_tokens = q->num_prompt_tokens;
    int64_t need = (kv_tokens + P - 1) / P;
    if (need > cllm_kv_num_blocks(s->bm))
        return cllm_error(CLLM_ERR_NO_KV_BLOCKS,
                          "request %lld: %d prompt tokens + max_tokens %d need %lld KV blocks but the cache has only "
                          "%d; lower max_tokens or raise num_kv_blocks",
                          (long long)q->id, q->num_prompt_tokens, q->params.max_tokens, (long long)need,
                          cllm_kv_num_blocks(s->bm));
    return dq_push_back(&s->waiting, q);
}

static cllm_status push_finished(cllm_scheduler *s, cllm_seq *q, cllm_seq_status st) {
    cllm_kv_free(s->bm, &q->kv);
    q->status = st;
    CLLM_TRY(grow((void **)&s->finished, &s->cap_finished, s->n_finished + 1, sizeof *s->finished));
    s->finished[s->n_finished++] = q;
    return CLLM_OK;
}

static void running_remove_at(cllm_scheduler *s, int i) {
    memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

bool cllm_scheduler_finish(cllm_scheduler *s, int64_t id, cllm_seq_status status) {
    CLLM_ASSERT(status >= CLLM_SEQ_FINISHED_STOPPED);
    int where, idx;
    cllm_seq *q = find_unfinished(s, id, &where, &idx);
    if (!q) return false;
    /* reserve first so the move cannot fail half-way */
    if (grow((void **)&s->finished, &s->cap_finished, s->n_finished + 1, sizeof *s->finished) != CLLM_OK) return false;
    if (where == 1) running_remove_at(s, idx);
    else dq_remove_at(&s->waiting, idx);
    push_finished(s, q, status);
    return true;
}

int cllm_scheduler_take_finished(cllm_scheduler *s, cllm_seq **out, int cap) {
    if (s->plan_pending) return 0;
    int n = s->n_finished < cap ? s->n_finished : cap;
    if (n <= 0) return 0;
    memcpy(out, s->finished, (size_t)n * sizeof *out);
    memmove(s->finished, s->finished + n, (size_t)(s->n_finished - n) * sizeof *s->finished);
    s->n_finished -= n;
    return n;
}

/* --------------------------------------------------------------- schedule */
static cllm_status preempt_last(cllm_scheduler *s, cllm_seq **victim) {
    cllm_seq *q = s->running[s->n_running - 1];
    CLLM_TRY(grow((void **)&s->plan.preempted, &s->cap_preempted, s->plan.num_preempted + 1, sizeof(cllm_seq *)));
    CLLM_TRY(dq_push_front(&s->waiting, q));
    s->n_running--;
    cllm_kv_free(s->bm, &q->kv);
    q->status = CLLM_SEQ_PREEMPTED;
    q->num_preemptions++;
    s->plan.preempted[s->plan.num_preempted++] = q;
    *victim = q;
    return CLLM_OK;
}

/* Allocate num_new tokens for q and append a plan entry. */
static cllm_status commit(cllm_scheduler *s, cllm_seq *q, int num_new) {
    cllm_sched_plan *pl = &s->plan;
    int P = cllm_kv_block_size(s->bm);
    int max_cow = q->kv.num_blocks + num_new / P + 2;
    CLLM_TRY(grow((void **)&pl->copies, &s->cap_copies, pl->num_copies + max_cow, sizeof *pl->copies));
    CLLM_TRY(grow((void **)&pl->entries, &s->cap_entries, pl->num_seqs + 1, sizeof *pl->entries));
    int start = q->kv.num_computed_tokens, nc = 0;
    CLLM_TRY(cllm_kv_allocate(s->bm, &q->kv, num_new, pl->copies + pl->num_copies, max_cow, &nc));
    pl->num_copies += nc;
    cllm_sched_entry *e = &pl->entries[pl->num_seqs++];
    e->seq = q;
    e->start_pos = start;
    e->num_tokens = num_new;
    e->sample = start + num_new == q->num_tokens;
    pl->num_tokens += num_new;
    pl->num_sample += e->sample;
    pl->num_decode_seqs += num_new == 1 && start >= q->num_prompt_tokens;
    return CLLM_OK;
}

static cllm_status schedule_running(cllm_scheduler *s, int *budget) {
    for (int i = 0; i < s->n_running && *budget > 0;) {
        cllm_seq *q = s->running[i];
        int num_new = q->num_tokens - q->kv.num_computed_tokens;
        CLLM_ASSERT(num_new > 0);
        if (num_new > *budget) num_new = *budget;
        bool ok = false;
        for (;;) {
            if (cllm_kv_can_allocate(s->bm, &q->kv, num_new)) { ok = true; break; }
            cllm_seq *victim;
            CLLM_TRY(preempt_last(s, &victim));
            if (victim == q) break;
        }
        if (!ok) break;
        CLLM_TRY(commit(s, q, num_new));
        *budget -= num_new;
        i++;
    }
    return CLLM_OK;
}

static cllm_status schedule_waiting(cllm_scheduler *s, int *budget) {
    while (s->waiting.n > 0 && s->n_running < s->p.max_num_seqs && *budget > 0) {
        cllm_seq *q = dq_get(&s->waiting, 0);
        int computed = 0;
        /* prompt_logprobs need the logits of every prompt position: no
         * prefix-cache hits for such requests (as vLLM) */
        if (q->params.prompt_logprobs < 0) CLLM_TRY(cllm_kv_get_computed_blocks(s->bm, &q->kv, &computed));
        int num_new = q->num_tokens - computed;
        CLLM_ASSERT(num_new > 0); /* the lookup never covers the last token */
        if (num_new > *budget) num_new = *budget;
        if (!cllm_kv_can_allocate(s->bm, &q->kv, num_new)) {
            cllm_kv_free(s->bm, &q->kv); /* give the prefix hits back; FCFS: stop here */
            break;
        }
        CLLM_TRY(grow((void **)&s->running, &s->cap_running, s->n_running + 1, sizeof *s->running));
        cllm_status st = commit(s, q, num_new);
        if (st != CLLM_OK) {
            cllm_kv_free(s->bm, &q->kv);
            return st;
        }
        dq_remove_at(&s->waiting, 0);
        q->status = CLLM_SEQ_RUNNING;
        s->running[s->n_running++] = q;
        *budget -= num_new;
    }
    return CLLM_OK;
}

cllm_status cllm_scheduler_schedule(cllm_scheduler *s, const cllm_sched_plan **plan) {
    *plan = NULL;
    if (s->plan_pending)
        return cllm_error(CLLM_ERR_INVALID_ARG, "scheduler: the previous plan was not applied (call cllm_scheduler_update)");
    cllm_sched_plan *pl = &s->plan;
    pl->num_seqs = pl->num_tokens = pl->num_sample = pl->num_decode_seqs = 0;
    pl->num_copies = pl->num_preempted = 0;
    int budget = s->p.max_num_batched_tokens;
    CLLM_TRY(schedule_running(s, &budget));
    if (pl->num_preempted == 0) CLLM_TRY(schedule_waiting(s, &budget));
    s->plan_pending = true;
    *plan = pl;
    return CLLM_OK;
}

/* ----------------------------------------------------------------- update */
/* vLLM v1 check_stop (vllm/v1/core/sched/utils.py). */
static cllm_seq_status check_stop(const cllm_scheduler *s, cllm_seq *q) {
    int n_out = cllm_seq_num_output_tokens(q);
    if (q->num_tokens >= s->p.max_model_len || (q->params.max_tokens >= 0 && n_out >= q->params.max_tokens))
        return CLLM_SEQ_FINISHED_LENGTH;
    if (n_out < q->params.min_tokens) return CLLM_SEQ_RUNNING;
    int32_t last = q->token_ids[q->num_tokens - 1];
    if (!q->params.ignore_eos && q->eos_token_id >= 0 && last == q->eos_token_id) return CLLM_SEQ_FINISHED_STOPPED;
    for (int i = 0; i < q->params.num_stop_token_ids; i++)
        if (last == q->params.stop_token_ids[i]) {
            q->stop_reason = last;
            return CLLM_SEQ_FINISHED_STOPPED;
        }
    return CLLM_SEQ_RUNNING;
}

bool cllm_scheduler_plan_pending(const cllm_scheduler *s) { return s->plan_pending; }

cllm_status cllm_scheduler_update(cllm_scheduler *s, const cllm_sched_plan *plan, const int32_t *sampled,
                                  int num_sampled) {
    if (!s->plan_pending || plan != &s->plan)
        return cllm_error(CLLM_ERR_INVALID_ARG, "scheduler_update: no pending plan or not this scheduler's plan");
    if (num_sampled != plan->num_sample || (num_sampled > 0 && !sampled))
        return cllm_error(CLLM_ERR_INVALID_ARG, "scheduler_update: %d sampled tokens for %d sampling entries",
                          num_sampled, plan->num_sample);
    s->plan_pending = false;
    int k = 0;
    for (int i = 0; i < plan->num_seqs; i++) {
        const cllm_sched_entry *e = &plan->entries[i];
        cllm_seq *q = e->seq;
        int32_t tok = e->sample ? sampled[k++] : -1;
        if (cllm_seq_is_finished(q)) continue; /* aborted after schedule */
        CLLM_ASSERT(q->status == CLLM_SEQ_RUNNING && q->kv.num_computed_tokens == e->start_pos);
        q->kv.num_computed_tokens += e->num_tokens;
        if (!e->sample) continue;
        CLLM_TRY(cllm_seq_append_token(q, tok));
        cllm_seq_status st = check_stop(s, q);
        if (st != CLLM_SEQ_RUNNING) cllm_scheduler_finish(s, q->id, st);
    }
    return CLLM_OK;
}

/* ------------------------------------------------------------------ check */
cllm_status cllm_scheduler_check(const cllm_scheduler *s) {
    if (s->n_running > s->p.max_num_seqs)
        return cllm_error(CLLM_ERR_INTERNAL, "scheduler check: %d running > max_num_seqs %d", s->n_running,
                          s->p.max_num_seqs);
    for (int i = 0; i < s->waiting.n; i++) {
        const cllm_seq *q = dq_get(&s->waiting, i);
        if (q->kv.num_blocks != 0 || q->kv.num_computed_tokens != 0 ||
            (q->status != CLLM_SEQ_WAITING && q->status != CLLM_SEQ_PREEMPTED))
            return cllm_error(CLLM_ERR_INTERNAL, "scheduler check: waiting request %lld holds %d blocks, status %d",
                              (long long)q->id, q->kv.num_blocks, q->status);
    }
    for (int i = 0; i < s->n_finished; i++)
        if (s->finished[i]->kv.num_blocks != 0)
            return cllm_error(CLLM_ERR_INTERNAL, "scheduler check: finished request %lld still holds blocks",
                              (long long)s->finished[i]->id);
    const cllm_kv_seq **ks = malloc((size_t)(s->n_running + 1) * sizeof *ks);
    if (!ks) return cllm_error(CLLM_ERR_OOM, "scheduler check: out of host memory");
    cllm_status st = CLLM_OK;
    for (int i = 0; i < s->n_running && st == CLLM_OK; i++) {
        const cllm_seq *q = s->running[i];
        ks[i] = &q->kv;
        if (q->status != CLLM_SEQ_RUNNING || q->kv.num_computed_tokens >= q->num_tokens ||
            q->kv.tokens != q->token_ids || q->kv.num_tokens != q->num_tokens)
            st = cllm_error(CLLM_ERR_INTERNAL, "scheduler check: running request %lld: status %d, %d/%d computed",
                            (long long)q->id, q->status, q->kv.num_computed_tokens, q->num_tokens);
    }
    if (st == CLLM_OK) st = cllm_kv_check(s->bm, ks, s->n_running);
    free(ks);
    return st;
}

/* ---------------------------------------------------------------- flatten */
static cllm_status grow_sz(int32_t **a, size_t need) {
    int32_t *p = realloc(*a, (need ? need : 1) * sizeof *p);
    if (!p) return cllm_error(CLLM_ERR_OOM, "flatten: out of host memory (%zu ints)", need);
    *a = p;
    return CLLM_OK;
}

static cllm_status batch_reserve(cllm_batch_host *b, size_t T, size_t S, size_t BT) {
    if (T > b->cap_t) {
        CLLM_TRY(grow_sz(&b->token_ids, T));
        CLLM_TRY(grow_sz(&b->positions, T));
        CLLM_TRY(grow_sz(&b->slot_mapping, T));
        b->cap_t = T;
    }
    if (S > b->cap_s) {
        CLLM_TRY(grow_sz(&b->query_start_loc, S + 1));
        CLLM_TRY(grow_sz(&b->seq_lens, S));
        CLLM_TRY(grow_sz(&b->logits_indices, S));
        CLLM_TRY(grow_sz(&b->logits_entries, S));
        b->cap_s = S;
    }
    if (BT > b->cap_bt) {
        CLLM_TRY(grow_sz(&b->block_tables, BT));
        b->cap_bt = BT;
    }
    if (!b->query_start_loc) CLLM_TRY(grow_sz(&b->query_start_loc, 1));
    return CLLM_OK;
}

cllm_status cllm_sched_flatten(const cllm_sched_plan *plan, int P, int max_blocks_per_seq, cllm_batch_host *b) {
    if (P < 1) return cllm_error(CLLM_ERR_INVALID_ARG, "flatten: block_size %d < 1", P);
    int S = plan->num_seqs, widest = 1;
    for (int i = 0; i < S; i++) {
        const cllm_sched_entry *e = &plan->entries[i];
        int nb = (e->start_pos + e->num_tokens + P - 1) / P;
        if (nb > e->seq->kv.num_blocks)
            return cllm_error(CLLM_ERR_INVALID_ARG, "flatten: request %lld has %d blocks for %d tokens (aborted?)",
                              (long long)e->seq->id, e->seq->kv.num_blocks, e->start_pos + e->num_tokens);
        if (nb > widest) widest = nb;
    }
    if (max_blocks_per_seq <= 0) max_blocks_per_seq = widest;
    if (widest > max_blocks_per_seq)
        return cllm_error(CLLM_ERR_INVALID_ARG, "flatten: a sequence needs %d blocks, max_blocks_per_seq is %d", widest,
                          max_blocks_per_seq);
    CLLM_TRY(batch_reserve(b, (size_t)plan->num_tokens, (size_t)S, (size_t)S * max_blocks_per_seq));
    b->num_seqs = S;
    b->num_tokens = plan->num_tokens;
    b->block_size = P;
    b->max_blocks_per_seq = max_blocks_per_seq;
    b->max_query_len = b->max_seq_len = 0;
    b->num_logits = 0;
    int t = 0;
    b->query_start_loc[0] = 0;
    for (int i = 0; i < S; i++) {
        const cllm_sched_entry *e = &plan->entries[i];
        const cllm_seq *q = e->seq;
        int seq_len = e->start_pos + e->num_tokens, nb = (seq_len + P - 1) / P;
        int32_t *row = b->block_tables + (size_t)i * max_blocks_per_seq;
        memcpy(row, q->kv.blocks, (size_t)nb * sizeof(int32_t));
        memset(row + nb, 0, (size_t)(max_blocks_per_seq - nb) * sizeof(int32_t));
        for (int j = 0; j < e->num_tokens; j++, t++) {
            int pos = e->start_pos + j;
            b->token_ids[t] = q->token_ids[pos];
            b->positions[t] = pos;
            b->slot_mapping[t] = q->kv.blocks[pos / P] * P + pos % P;
        }
        b->query_start_loc[i + 1] = t;
        b->seq_lens[i] = seq_len;
        if (e->num_tokens > b->max_query_len) b->max_query_len = e->num_tokens;
        if (seq_len > b->max_seq_len) b->max_seq_len = seq_len;
        if (e->sample) {
            b->logits_indices[b->num_logits] = t - 1;
            b->logits_entries[b->num_logits++] = i;
        }
    }
    CLLM_ASSERT(t == plan->num_tokens && b->num_logits == plan->num_sample);
    return CLLM_OK;
}

void cllm_batch_host_free(cllm_batch_host *b) {
    if (!b) return;
    free(b->token_ids);
    free(b->positions);
    free(b->slot_mapping);
    free(b->query_start_loc);
    free(b->seq_lens);
    free(b->block_tables);
    free(b->logits_indices);
    free(b->logits_entries);
    memset(b, 0, sizeof *b);
}

cllm_attn_meta cllm_batch_host_attn_meta(const cllm_batch_host *b) {
    cllm_attn_meta m;
    memset(&m, 0, sizeof m);
    m.num_seqs = b->num_seqs;
    m.num_tokens = b->num_tokens;
    m.max_query_len = b->max_query_len;
    m.max_seq_len = b->max_seq_len;
    m.block_size = b->block_size;
    m.max_blocks_per_seq = b->max_blocks_per_seq;
    m.query_start_loc = b->query_start_loc;
    m.seq_lens = b->seq_lens;
    m.block_tables = b->block_tables;
    m.slot_mapping = b->slot_mapping;
    return m;
}
