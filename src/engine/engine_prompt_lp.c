/* prompt_logprobs (vLLM SamplingParams.prompt_logprobs): for each prompt
 * token i >= 1, the raw log-probability of token i given tokens 0..i-1 (the
 * logits row at position i-1) and the top-k alternatives there; token 0 has
 * none. Computed across chunked prefill: each step's prefill chunk [a, b)
 * adds logits rows for positions [max(a, filled), min(b, n-1)) after the
 * step's sampling rows; the runner computes their logprobs on the device.
 * Requests with prompt_logprobs skip prefix-cache hits (scheduler.c), so
 * every position is computed; after preemption the recomputed positions are
 * not scored twice (filled). The result is attached to each completion's
 * first output. */
#include "engine/engine_internal.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cllm_status eng_plp_init(eng_req *r, const int32_t *ids, int n, int k) {
    r->plp = calloc((size_t)n, sizeof *r->plp);
    r->plp_top_ids = calloc((size_t)n * k + 1, sizeof(int32_t));
    r->plp_top_lp = calloc((size_t)n * k + 1, sizeof(float));
    if (!r->plp || !r->plp_top_ids || !r->plp_top_lp) return cllm_error(CLLM_ERR_OOM, "out of memory (prompt_logprobs)");
    for (int i = 0; i < n; i++) {
        r->plp[i].token_id = ids[i];
        r->plp[i].logprob = NAN;
        r->plp[i].top_ids = r->plp_top_ids + (size_t)i * k;
        r->plp[i].top_logprobs = r->plp_top_lp + (size_t)i * k;
        r->plp[i].num_top = i == 0 ? 0 : k;
    }
    r->prompt_logprobs = k;
    r->plp_filled = 0;
    return CLLM_OK;
}

static cllm_status grow(void **p, size_t need, size_t elem, size_t cap) {
    if (need <= cap && *p) return CLLM_OK;
    void *q = realloc(*p, (need ? need : 1) * elem);
    if (!q) return cllm_error(CLLM_ERR_OOM, "out of host memory (prompt_logprobs rows)");
    *p = q;
    return CLLM_OK;
}

cllm_status eng_plp_rows(cllm_engine *e, const cllm_sched_plan *plan, int NL, int *nx) {
    *nx = 0;
    int NX = 0;
    e->plx_k = 0;
    for (int i = 0; i < plan->num_seqs; i++) { /* count first: most steps have none */
        const cllm_sched_entry *en = &plan->entries[i];
        const eng_req *r = e->slots[en->seq->id].req;
        if (r->prompt_logprobs < 0) continue;
        int from = en->start_pos > r->plp_filled ? en->start_pos : r->plp_filled;
        int to = en->start_pos + en->num_tokens < r->num_prompt - 1 ? en->start_pos + en->num_tokens : r->num_prompt - 1;
        if (to > from) NX += to - from;
    }
    if (NX == 0) return CLLM_OK;
    size_t need = (size_t)NL + (size_t)NX;
    if (need > e->cap_plx) {
        size_t c = need * 2;
        CLLM_TRY(grow((void **)&e->plx_lidx, c, sizeof(int32_t), 0));
        CLLM_TRY(grow((void **)&e->plx_tok, c, sizeof(int32_t), 0));
        CLLM_TRY(grow((void **)&e->plx_pos, c, sizeof(int32_t), 0));
        CLLM_TRY(grow((void **)&e->plx_req, c, sizeof(eng_req *), 0));
        CLLM_TRY(grow((void **)&e->plx_lp, c, sizeof(float), 0));
        e->cap_plx = c;
    }
    memcpy(e->plx_lidx, e->batch.logits_indices, sizeof(int32_t) * (size_t)NL);
    int j = 0;
    for (int i = 0; i < plan->num_seqs; i++) {
        const cllm_sched_entry *en = &plan->entries[i];
        eng_req *r = e->slots[en->seq->id].req;
        if (r->prompt_logprobs < 0) continue;
        int from = en->start_pos > r->plp_filled ? en->start_pos : r->plp_filled;
        int to = en->start_pos + en->num_tokens < r->num_prompt - 1 ? en->start_pos + en->num_tokens : r->num_prompt - 1;
        for (int p = from; p < to; p++, j++) {
            e->plx_lidx[NL + j] = e->batch.query_start_loc[i] + (p - en->start_pos);
            e->plx_tok[j] = en->seq->token_ids[p + 1];
            e->plx_pos[j] = p + 1;
            e->plx_req[j] = r;
        }
        if (to > r->plp_filled) r->plp_filled = to; /* another completion of r in this step skips them */
        if (r->prompt_logprobs > e->plx_k) e->plx_k = r->prompt_logprobs;
    }
    CLLM_ASSERT(j == NX);
    size_t top = (size_t)NX * (size_t)e->plx_k + 1;
    if (top > e->cap_plx_top) {
        CLLM_TRY(grow((void **)&e->plx_top_ids, top * 2, sizeof(int32_t), 0));
        CLLM_TRY(grow((void **)&e->plx_top_lp, top * 2, sizeof(float), 0));
        e->cap_plx_top = top * 2;
    }
    *nx = NX;
    return CLLM_OK;
}

cllm_status eng_plp_fetch(cllm_engine *e, int NL, int NX) {
    int K = e->plx_k;
    CLLM_TRY(cllm_executor_logprobs_rows(e->ex, NL, NX, e->plx_tok, K, e->plx_lp, e->plx_top_ids, e->plx_top_lp));
    for (int j = 0; j < NX; j++) {
        eng_req *q = e->plx_req[j];
        int k = q->prompt_logprobs, pos = e->plx_pos[j];
        q->plp[pos].logprob = e->plx_lp[j];
        memcpy(q->plp_top_ids + (size_t)pos * k, e->plx_top_ids + (size_t)j * K, sizeof(int32_t) * (size_t)k);
        memcpy(q->plp_top_lp + (size_t)pos * k, e->plx_top_lp + (size_t)j * K, sizeof(float) * (size_t)k);
    }
    return CLLM_OK;
}

void eng_plp_retire(cllm_engine *e, eng_req *r) {
    if (!r->plp) return;
    if (e->num_plp_dead + 3 > e->cap_plp_dead) {
        int cap = e->cap_plp_dead ? 2 * e->cap_plp_dead : 48;
        void **d = realloc(e->plp_dead, sizeof(void *) * (size_t)cap);
        if (!d) return; /* keep them with r: freed now (outputs of this step then must not be read) */
        e->plp_dead = d;
        e->cap_plp_dead = cap;
    }
    e->plp_dead[e->num_plp_dead++] = r->plp;
    e->plp_dead[e->num_plp_dead++] = r->plp_top_ids;
    e->plp_dead[e->num_plp_dead++] = r->plp_top_lp;
    r->plp = NULL, r->plp_top_ids = NULL, r->plp_top_lp = NULL;
}

void eng_plp_free_dead(cllm_engine *e) {
    for (int i = 0; i < e->num_plp_dead; i++) free(e->plp_dead[i]);
    e->num_plp_dead = 0;
}
