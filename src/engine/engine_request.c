/* Engine requests: validation, fan-out into n sequences, abort.
 * See include/cllm.h (engine section) and engine.c. */
#include "engine/engine_internal.h"
#include "core/status.h"
#include "core/clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void eng_req_free(eng_req *r) {
    if (!r) return;
    for (int i = 0; i < r->num_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->slots);
    free(r->plp);
    free(r->plp_top_ids);
    free(r->plp_top_lp);
    free(r);
}

eng_req *eng_find_req(cllm_engine *e, uint64_t id, int *pos) {
    int lo = 0, hi = e->num_reqs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (e->reqs[mid]->id == id) {
            if (pos) *pos = mid;
            return e->reqs[mid];
        }
        if (e->reqs[mid]->id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void eng_remove_req(cllm_engine *e, int pos) {
    eng_plp_retire(e, e->reqs[pos]);
    eng_req_free(e->reqs[pos]);
    memmove(e->reqs + pos, e->reqs + pos + 1, sizeof(eng_req *) * (size_t)(e->num_reqs - pos - 1));
    e->num_reqs--;
}

static uint64_t clock_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec;
    x ^= x >> 33; /* splitmix finalizer so close clocks give far seeds */
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

cllm_status cllm_request_params_check(const cllm_request_params *params) {
    if (!params) return cllm_error(CLLM_ERR_INVALID_ARG, "request parameters: NULL pointer");
    cllm_request_params p = *params;
    if (p.max_tokens <= 0) p.max_tokens = -1; /* public API: <= 0 means up to max_model_len */
    CLLM_TRY(cllm_request_params_validate(&p));
    if (p.logprobs < -1 || p.logprobs > ENG_MAX_LOGPROBS)
        return cllm_error(CLLM_ERR_INVALID_ARG, "logprobs must be -1 (none) or in [0, %d] (max_logprobs), got %d",
                          ENG_MAX_LOGPROBS, p.logprobs);
    if (p.prompt_logprobs < -1 || p.prompt_logprobs > ENG_MAX_LOGPROBS)
        return cllm_error(CLLM_ERR_INVALID_ARG, "prompt_logprobs must be -1 (none) or in [0, %d] (max_logprobs), got %d",
                          ENG_MAX_LOGPROBS, p.prompt_logprobs);
    if (p.n > 256) return cllm_error(CLLM_ERR_INVALID_ARG, "n must be <= 256, got %d", p.n);
    return CLLM_OK;
}

/* cllm_request_params_check plus what needs the model: the vocabulary (V). */
static cllm_status validate(const cllm_request_params *p, int V) {
    CLLM_TRY(cllm_request_params_check(p));
    for (int i = 0; i < p->num_stop_token_ids; i++)
        if (p->stop_token_ids[i] < 0 || p->stop_token_ids[i] >= V)
            return cllm_error(CLLM_ERR_INVALID_ARG, "stop_token_ids[%d] = %d is not in the vocabulary [0, %d)", i,
                              p->stop_token_ids[i], V);
    for (int i = 0; i < p->num_logit_bias; i++)
        if (p->logit_bias_token_ids[i] < 0 || p->logit_bias_token_ids[i] >= V)
            return cllm_error(CLLM_ERR_INVALID_ARG, "logit_bias: token id %d is not in the vocabulary [0, %d)",
                              p->logit_bias_token_ids[i], V);
    return CLLM_OK;
}

/* Take a free slot index (growing the table). */
static cllm_status slot_take(cllm_engine *e, int *out) {
    if (e->num_free_slots > 0) {
        *out = e->free_slots[--e->num_free_slots];
        return CLLM_OK;
    }
    if (e->num_slots == e->cap_slots) {
        int cap = e->cap_slots ? 2 * e->cap_slots : 64;
        eng_slot *s = realloc(e->slots, sizeof *s * (size_t)cap);
        if (!s) return cllm_error(CLLM_ERR_OOM, "out of memory");
        e->slots = s;
        int *f = realloc(e->free_slots, sizeof *f * (size_t)cap);
        if (!f) return cllm_error(CLLM_ERR_OOM, "out of memory");
        e->free_slots = f;
        e->cap_slots = cap;
    }
    memset(&e->slots[e->num_slots], 0, sizeof e->slots[0]);
    *out = e->num_slots++;
    return CLLM_OK;
}

void eng_slot_release(cllm_engine *e, int i) {
    eng_slot *s = &e->slots[i];
    cllm_detokenizer_destroy(s->detok);
    free(s->text);
    memset(s, 0, sizeof *s);
    e->free_slots[e->num_free_slots++] = i;
}

/* Tokenize (or copy) the prompt into *ids. */
static cllm_status get_prompt(cllm_engine *e, const char *prompt, const int32_t *prompt_ids, size_t n,
                              int32_t **ids, size_t *n_ids) {
    const cllm_tokenizer *tok = e->tok;
    int V = e->cfg.vocab_size;
    if (prompt_ids) {
        for (size_t i = 0; i < n; i++)
            if (prompt_ids[i] < 0 || prompt_ids[i] >= V)
                return cllm_error(CLLM_ERR_INVALID_ARG, "prompt_token_ids[%zu] = %d is not in the vocabulary [0, %d)",
                                  i, prompt_ids[i], V);
        *ids = malloc(sizeof(int32_t) * (n ? n : 1));
        if (!*ids) return cllm_error(CLLM_ERR_OOM, "out of memory");
        memcpy(*ids, prompt_ids, sizeof(int32_t) * n);
        *n_ids = n;
        return CLLM_OK;
    }
    if (!prompt) return cllm_error(CLLM_ERR_INVALID_ARG, "add_request: give prompt text or prompt_token_ids");
    return cllm_tokenizer_encode(tok, prompt, strlen(prompt), true, ids, n_ids);
}

/* Build one sequence of request r for completion index k. */
static cllm_status add_completion(cllm_engine *e, eng_req *r, int k, const int32_t *ids, int n,
                                  const cllm_request_params *p, uint64_t seed) {
    const cllm_model_config *cfg = &e->cfg;
    cllm_request_params q = *p;
    q.n = 1;
    /* extra eos ids of generation_config become stop tokens (vLLM
     * update_from_generation_config), unless ignore_eos */
    int32_t stop_ids[256 + 16];
    int ns = 0;
    for (int i = 0; i < p->num_stop_token_ids && ns < 256; i++) stop_ids[ns++] = p->stop_token_ids[i];
    if (!p->ignore_eos)
        for (int i = 1; i < cfg->num_eos_token_ids && ns < (int)(sizeof stop_ids / sizeof stop_ids[0]); i++)
            stop_ids[ns++] = cfg->eos_token_ids[i];
    q.stop_token_ids = stop_ids;
    q.num_stop_token_ids = ns;
    q.stop = NULL, q.num_stop = 0; /* matched on text here, not by the scheduler */
    int32_t eos = cfg->num_eos_token_ids > 0 ? cfg->eos_token_ids[0] : cllm_tokenizer_eos_id(e->tok);
    int si = -1;
    CLLM_TRY(slot_take(e, &si));
    eng_slot *s = &e->slots[si];
    s->used = true;
    s->req = r;
    s->index = k;
    s->seed = seed;
    s->out_pos = -1;
    r->slots[k] = si;
    cllm_status st = cllm_detokenizer_create(e->tok, ids, (size_t)n, p->skip_special_tokens,
                                             &s->detok);
    cllm_seq *seq = NULL;
    if (st == CLLM_OK) st = cllm_seq_create(si, ids, n, &q, eos, &seq);
    if (st == CLLM_OK) st = cllm_scheduler_add(e->sched, seq);
    if (st != CLLM_OK) {
        cllm_seq_destroy(seq);
        eng_slot_release(e, si);
        r->slots[k] = -1;
        return st;
    }
    s->seq = seq;
    return CLLM_OK;
}

cllm_status cllm_engine_add_request(cllm_engine *e, const char *prompt, const int32_t *prompt_ids,
                                    size_t num_prompt_ids, const cllm_request_params *params,
                                    uint64_t *request_id) {
    cllm_request_params p = params ? *params : cllm_request_default_params();
    if (p.max_tokens <= 0) p.max_tokens = -1; /* public API: <= 0 means up to max_model_len */
    CLLM_TRY(validate(&p, e->cfg.vocab_size));
    if (cllm_scheduler_num_waiting(e->sched) + p.n > e->max_num_waiting)
        return cllm_error(CLLM_ERR_NO_KV_BLOCKS, "the waiting queue is full (%d sequences, max_num_waiting %d); retry later",
                          cllm_scheduler_num_waiting(e->sched), e->max_num_waiting);
    int32_t *ids = NULL;
    size_t n = 0;
    CLLM_TRY(get_prompt(e, prompt, prompt_ids, num_prompt_ids, &ids, &n));
    cllm_status st = CLLM_OK;
    eng_req *r = NULL;
    if (n == 0) {
        st = cllm_error(CLLM_ERR_INVALID_ARG, "the prompt is empty (no tokens); give some text or prompt_token_ids");
        goto fail;
    }
    int L = e->max_model_len;
    if ((int64_t)n > L || (p.max_tokens > 0 && (int64_t)n + p.max_tokens > L)) {
        st = cllm_error(CLLM_ERR_CONTEXT_LENGTH,
                        "This model's maximum context length is %d tokens. However, you requested %lld tokens (%zu in "
                        "the messages, %d in the completion). Please reduce the length of the messages or completion.",
                        L, (long long)n + (p.max_tokens > 0 ? p.max_tokens : 0), n, p.max_tokens > 0 ? p.max_tokens : 0);
        goto fail;
    }
    r = calloc(1, sizeof *r);
    if (!r || !(r->slots = malloc(sizeof(int) * (size_t)p.n))) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    if (p.num_stop > 0) {
        if (!(r->stop = calloc((size_t)p.num_stop, sizeof(char *)))) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        for (int i = 0; i < p.num_stop; i++, r->num_stop++)
            if (!(r->stop[i] = cllm_strdup(p.stop[i]))) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    }
    r->id = e->next_id;
    r->n = p.n;
    r->num_prompt = (int)n;
    r->logprobs = p.logprobs;
    r->prompt_logprobs = -1;
    if (p.prompt_logprobs >= 0 && (st = eng_plp_init(r, ids, (int)n, p.prompt_logprobs)) != CLLM_OK) goto fail;
    r->skip_special_tokens = p.skip_special_tokens;
    r->include_stop_str = p.include_stop_str_in_output;
    r->t_add_ms = cllm_now_ms();
    for (int k = 0; k < p.n; k++) r->slots[k] = -1;
    if (e->num_reqs == e->cap_reqs) {
        int cap = e->cap_reqs ? 2 * e->cap_reqs : 64;
        eng_req **a = realloc(e->reqs, sizeof *a * (size_t)cap);
        if (!a) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        e->reqs = a;
        e->cap_reqs = cap;
    }
    uint64_t seed = p.has_seed ? p.seed : clock_seed();
    for (int k = 0; k < p.n; k++) {
        st = add_completion(e, r, k, ids, (int)n, &p, seed + (uint64_t)k);
        if (st != CLLM_OK) { /* undo the completions already queued */
            for (int j = 0; j < k; j++) cllm_scheduler_abort(e->sched, r->slots[j]);
            if (k > 0) { /* they are finished now; the next step takes and releases them silently */
                r->n = k;
                r->hidden = true;
                e->reqs[e->num_reqs++] = r;
                e->next_id++;
                r = NULL;
            }
            goto fail;
        }
    }
    e->reqs[e->num_reqs++] = r;
    *request_id = e->next_id++;
    cllm_free(ids);
    return CLLM_OK;
fail:
    eng_req_free(r);
    cllm_free(ids);
    return st;
}

cllm_status cllm_engine_abort(cllm_engine *e, uint64_t request_id) {
    eng_req *r = eng_find_req(e, request_id, NULL);
    if (!r) return cllm_error(CLLM_ERR_NOT_FOUND, "abort: no unfinished request with id %llu", (unsigned long long)request_id);
    for (int k = 0; k < r->n; k++)
        if (r->slots[k] >= 0 && e->slots[r->slots[k]].seq) cllm_scheduler_abort(e->sched, r->slots[k]);
    return CLLM_OK;
}
