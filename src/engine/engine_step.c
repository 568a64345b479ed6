/* cllm_engine_step: schedule -> flatten -> runner (forward, logprobs,
 * penalties, sampling) -> scheduler update -> detokenize, stop strings ->
 * outputs. See engine.c for the determinism rule. */
#include "engine/engine_internal.h"
#include "engine/engine_stop.h"
#include "core/profile.h"
#include "core/status.h"
#include "core/clock.h"

#include <stdlib.h>
#include <string.h>

#define SAMPLING_EPS 1e-5f /* vLLM: temperature below this is greedy */

void eng_step_bufs_free(eng_step_bufs *b) {
    free(b->outs);
    free(b->tok);
    free(b->lp);
    free(b->top_ids);
    free(b->top_lp);
    free(b->text_off);
    free(b->text);
    memset(b, 0, sizeof *b);
}

static cllm_status grow_arr(void **p, size_t need, size_t elem, size_t *cap) {
    if (need <= *cap) return CLLM_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return cllm_error(CLLM_ERR_OOM, "out of host memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return CLLM_OK;
}

/* The output entry of slot si in this step (created on first use). */
static cllm_status get_out(cllm_engine *e, int si, int *oi) {
    eng_slot *s = &e->slots[si];
    eng_step_bufs *b = &e->sb;
    if (s->out_pos >= 0) {
        *oi = s->out_pos;
        return CLLM_OK;
    }
    if (b->num_outs == b->cap_outs) {
        int cap = b->cap_outs ? 2 * b->cap_outs : 64;
        void *p;
        if (!(p = realloc(b->outs, sizeof *b->outs * (size_t)cap))) goto oom;
        b->outs = p;
        if (!(p = realloc(b->tok, sizeof *b->tok * (size_t)cap))) goto oom;
        b->tok = p;
        if (!(p = realloc(b->lp, sizeof *b->lp * (size_t)cap))) goto oom;
        b->lp = p;
        if (!(p = realloc(b->top_ids, sizeof *b->top_ids * (size_t)cap * ENG_MAX_LOGPROBS))) goto oom;
        b->top_ids = p;
        if (!(p = realloc(b->top_lp, sizeof *b->top_lp * (size_t)cap * ENG_MAX_LOGPROBS))) goto oom;
        b->top_lp = p;
        if (!(p = realloc(b->text_off, sizeof *b->text_off * (size_t)(2 * cap)))) goto oom;
        b->text_off = p;
        b->cap_outs = cap;
    }
    int i = b->num_outs++;
    cllm_request_output *o = &b->outs[i];
    memset(o, 0, sizeof *o);
    o->request_id = s->req->id;
    o->index = s->index;
    o->num_prompt_tokens = s->req->num_prompt;
    b->text_off[2 * i] = s->emitted;     /* text start in the slot, later the pool offset */
    b->text_off[2 * i + 1] = (size_t)-1; /* pool offset once copied */
    s->out_pos = i;
    *oi = i;
    return CLLM_OK;
oom:
    return cllm_error(CLLM_ERR_OOM, "out of host memory for step outputs");
}

/* Copy output oi's new text (slot text [start, emitted)) into the pool. */
static cllm_status copy_text(cllm_engine *e, int oi, const eng_slot *s) {
    eng_step_bufs *b = &e->sb;
    if (b->text_off[2 * oi + 1] != (size_t)-1) return CLLM_OK;
    size_t start = b->text_off[2 * oi], n = s->emitted > start ? s->emitted - start : 0;
    CLLM_TRY(grow_arr((void **)&b->text, b->text_len + n + 1, 1, &b->text_cap));
    if (n) memcpy(b->text + b->text_len, s->text + start, n);
    b->text_off[2 * oi + 1] = b->text_len;
    b->outs[oi].text_delta_len = n;
    b->text_len += n;
    b->text[b->text_len++] = '\0';
    return CLLM_OK;
}

static cllm_status append_text(eng_slot *s, const char *d, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1) cap *= 2;
        char *t = realloc(s->text, cap);
        if (!t) return cllm_error(CLLM_ERR_OOM, "out of host memory for output text");
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, d, n);
    s->len += n;
    s->text[s->len] = '\0';
    return CLLM_OK;
}

/* A token sampled for slot si (already appended by the scheduler, which may
 * have finished the sequence). row: logits row, for logprobs. */
static cllm_status on_token(cllm_engine *e, int si, int32_t tok, int row, double now_ms) {
    eng_slot *s = &e->slots[si];
    eng_req *r = s->req;
    cllm_seq *q = s->seq;
    if (!r->prompt_counted) {
        e->prompt_tokens_total += (uint64_t)r->num_prompt;
        r->prompt_counted = true;
    }
    e->generation_tokens_total++;
    bool first = s->first_token_ms == 0;
    if (first) s->first_token_ms = now_ms;
    int oi;
    CLLM_TRY(get_out(e, si, &oi));
    eng_step_bufs *b = &e->sb;
    if (first && r->plp) { /* kept alive until the next step even if r finishes now (eng_plp_retire) */
        b->outs[oi].prompt_logprobs = r->plp;
        b->outs[oi].num_prompt_logprobs = r->num_prompt;
    }
    b->tok[oi] = tok;
    b->outs[oi].num_new_tokens = 1;
    if (r->logprobs >= 0) {
        cllm_logprob_entry *lp = &b->lp[oi];
        int k = r->logprobs, kmax = e->lp_k;
        lp->token_id = tok;
        lp->logprob = e->tok_lp[row];
        lp->num_top = k;
        memcpy(b->top_ids + (size_t)oi * ENG_MAX_LOGPROBS, e->top_ids + (size_t)row * kmax, sizeof(int32_t) * (size_t)k);
        memcpy(b->top_lp + (size_t)oi * ENG_MAX_LOGPROBS, e->top_lp + (size_t)row * kmax, sizeof(float) * (size_t)k);
        b->outs[oi].logprobs = lp; /* pointers fixed at the end of the step */
    }
    /* vLLM: the eos / stop token that finished the sequence is not
     * detokenized unless include_stop_str_in_output */
    bool by_token = q->status == CLLM_SEQ_FINISHED_STOPPED;
    if (by_token && !r->include_stop_str) return CLLM_OK;
    char *d = NULL;
    size_t n = 0;
    CLLM_TRY(cllm_detokenizer_step(s->detok, tok, &d, &n));
    size_t old = s->len;
    cllm_status st = append_text(s, d, n);
    cllm_free(d);
    CLLM_TRY(st);
    size_t upto = s->len;
    if (r->num_stop > 0 && !by_token) {
        size_t stop_at = 0, safe = 0;
        if (cllm_engine_stop_scan(s->text, s->len, old, (const char *const *)r->stop, r->num_stop, r->include_stop_str,
                                  &stop_at, &safe)) {
            s->len = stop_at;
            s->text[s->len] = '\0';
            s->stop_string = true;
            if (!cllm_seq_is_finished(q)) cllm_scheduler_finish(e->sched, q->id, CLLM_SEQ_FINISHED_STOPPED);
            upto = s->len;
        } else {
            upto = safe;
        }
    }
    if (upto > s->emitted) s->emitted = upto;
    return CLLM_OK;
}

/* A finished sequence taken back from the scheduler: final output, free. */
static cllm_status on_finished(cllm_engine *e, cllm_seq *q) {
    int si = (int)q->id;
    eng_slot *s = &e->slots[si];
    eng_req *r = s->req;
    cllm_status st = CLLM_OK;
    bool by_token = q->status == CLLM_SEQ_FINISHED_STOPPED && !s->stop_string;
    if (!s->stop_string && !(by_token && !r->include_stop_str)) {
        char *d = NULL;
        size_t n = 0;
        st = cllm_detokenizer_flush(s->detok, &d, &n);
        if (st == CLLM_OK) st = append_text(s, d, n);
        cllm_free(d);
    }
    if (st == CLLM_OK) s->emitted = s->len;
    if (st == CLLM_OK && !r->hidden) {
        int oi;
        st = get_out(e, si, &oi);
        if (st == CLLM_OK) {
            cllm_request_output *o = &e->sb.outs[oi];
            o->finished = true;
            o->finish_reason = s->stop_string ? "stop" : cllm_seq_finish_reason(q);
            o->num_output_tokens = cllm_seq_num_output_tokens(q);
            o->first_token_time_s = s->first_token_ms > 0 ? (s->first_token_ms - r->t_add_ms) / 1000.0 : 0;
            st = copy_text(e, oi, s);
        }
    }
    cllm_seq_destroy(q);
    s->seq = NULL;
    r->slots[s->index] = -1; /* the slot is reused by later requests: abort(r) must not reach it */
    eng_slot_release(e, si);
    r->num_done++;
    if (r->num_done == r->n) {
        int pos;
        if (eng_find_req(e, r->id, &pos)) eng_remove_req(e, pos);
    }
    return st;
}

/* Per-row sampler, penalty and logprob inputs for the flattened batch. */
static cllm_status build_rows(cllm_engine *e, const cllm_sched_plan *plan, int NL, int need, bool *any_pen) {
    size_t cap = (size_t)e->cap_rows;
    if ((size_t)need > cap) {
        NL = need; /* grow to need rows; NL is restored below */
        size_t c = cap;
        CLLM_TRY(grow_arr((void **)&e->sp, (size_t)NL, sizeof *e->sp, &c));
        c = cap;
        CLLM_TRY(grow_arr((void **)&e->pen, (size_t)NL, sizeof *e->pen, &c));
        c = cap;
        CLLM_TRY(grow_arr((void **)&e->sampled, (size_t)NL, sizeof *e->sampled, &c));
        c = cap;
        CLLM_TRY(grow_arr((void **)&e->tok_lp, (size_t)NL, sizeof *e->tok_lp, &c));
        c = cap;
        CLLM_TRY(grow_arr((void **)&e->top_ids, (size_t)NL * ENG_MAX_LOGPROBS, sizeof *e->top_ids, &c));
        c = cap;
        CLLM_TRY(grow_arr((void **)&e->top_lp, (size_t)NL * ENG_MAX_LOGPROBS, sizeof *e->top_lp, &c));
        e->cap_rows = NL;
        NL = e->batch.num_logits;
    }
    *any_pen = false;
    e->lp_k = -1;
    size_t nh = 0, nb = 0;
    for (int i = 0; i < NL; i++) {
        const cllm_seq *q = plan->entries[e->batch.logits_entries[i]].seq;
        const eng_slot *s = &e->slots[q->id];
        const cllm_request_params *p = &q->params;
        cllm_sample_params *sp = &e->sp[i];
        sp->temperature = p->temperature < SAMPLING_EPS ? 0.0f : p->temperature;
        sp->top_p = p->top_p;
        sp->min_p = p->min_p;
        sp->top_k = p->top_k;
        sp->seed = s->seed;
        sp->step = (uint64_t)cllm_seq_num_output_tokens(q);
        if (p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f ||
            q->num_logit_bias > 0)
            *any_pen = true;
        if (s->req->logprobs > e->lp_k) e->lp_k = s->req->logprobs;
        nh += (size_t)q->num_tokens;
        nb += (size_t)q->num_logit_bias;
    }
    if (!*any_pen) return CLLM_OK;
    CLLM_TRY(grow_arr((void **)&e->hist, nh + 1, sizeof *e->hist, &e->cap_hist));
    CLLM_TRY(grow_arr((void **)&e->bias, nb + 1, sizeof *e->bias, &e->cap_bias));
    size_t at = 0, bt = 0;
    for (int i = 0; i < NL; i++) {
        const cllm_seq *q = plan->entries[e->batch.logits_entries[i]].seq;
        cllm_penalty_params *pp = &e->pen[i];
        pp->repetition_penalty = q->params.repetition_penalty;
        pp->presence_penalty = q->params.presence_penalty;
        pp->frequency_penalty = q->params.frequency_penalty;
        pp->token_start = (int32_t)at;
        pp->num_prompt = q->num_prompt_tokens;
        pp->num_output = q->num_tokens - q->num_prompt_tokens;
        memcpy(e->hist + at, q->token_ids, sizeof(int32_t) * (size_t)q->num_tokens);
        at += (size_t)q->num_tokens;
        pp->bias_start = (int32_t)bt;
        pp->num_bias = q->num_logit_bias;
        if (q->num_logit_bias > 0) memcpy(e->bias + bt, q->logit_bias, sizeof *e->bias * (size_t)q->num_logit_bias);
        bt += (size_t)q->num_logit_bias;
    }
    e->num_hist = (int)at;
    e->num_bias = (int)bt;
    return CLLM_OK;
}

/* Run a non-empty plan through the runner and apply the tokens. */
static cllm_status run_plan(cllm_engine *e, const cllm_sched_plan *plan) {
    cllm_executor *ex = e->ex;
    CLLM_TRY(cllm_executor_copy_blocks(ex, plan->copies, plan->num_copies));
    CLLM_TRY(cllm_sched_flatten(plan, cllm_runner_block_size(cllm_executor_runner(ex)), 0, &e->batch));
    int NL = e->batch.num_logits, NX = 0;
    bool any_pen = false;
    CLLM_TRY(eng_plp_rows(e, plan, NL, &NX)); /* prompt_logprobs rows go after the sampling rows */
    if (NL > 0) CLLM_TRY(build_rows(e, plan, NL, NL + NX, &any_pen));
    if (NL == 0) { /* prefill chunks only: forward for the KV, one dummy logits row */
        int32_t last = e->batch.num_tokens - 1;
        cllm_batch_host b = e->batch;
        b.logits_indices = NX > 0 ? e->plx_lidx : &last;
        b.num_logits = NX > 0 ? NX : 1;
        CLLM_TRY(cllm_executor_execute(ex, &b, NULL, NULL, NULL));
        if (cllm_prof_on) cllm_prof_switch(CLLM_PROF_NONE); /* execute ends synchronized */
        if (NX > 0) CLLM_TRY(eng_plp_fetch(e, 0, NX));
        return cllm_scheduler_update(e->sched, plan, NULL, 0);
    }
    cllm_batch_host bx = e->batch;
    if (NX > 0) { /* the prompt rows are sampled greedily too (ignored), without penalties */
        for (int i = NL; i < NL + NX; i++) {
            e->sp[i] = (cllm_sample_params){.temperature = 0.0f, .top_p = 1.0f, .top_k = -1};
            e->pen[i] = (cllm_penalty_params){.repetition_penalty = 1.0f};
        }
        bx.logits_indices = e->plx_lidx;
        bx.num_logits = NL + NX;
    }
    cllm_runner_sample_args a = {
        .sp = e->sp, .penalties = any_pen ? e->pen : NULL, .penalty_tokens = e->hist, .num_penalty_tokens = e->num_hist,
        .logit_bias = e->bias, .num_logit_bias = e->num_bias,
        .logprobs_k = e->lp_k, .token_logprobs = e->tok_lp, .top_ids = e->top_ids, .top_logprobs = e->top_lp,
    };
    CLLM_TRY(cllm_executor_execute_ex(ex, &bx, &a, e->sampled, NULL));
    if (cllm_prof_on) cllm_prof_switch(CLLM_PROF_NONE); /* execute ends synchronized */
    if (NX > 0) CLLM_TRY(eng_plp_fetch(e, NL, NX));
    CLLM_TRY(cllm_scheduler_update(e->sched, plan, e->sampled, NL));
    double now = cllm_now_ms();
    for (int i = 0; i < NL; i++) {
        const cllm_seq *q = plan->entries[e->batch.logits_entries[i]].seq;
        if (q->status == CLLM_SEQ_FINISHED_ABORTED) continue;
        CLLM_TRY(on_token(e, (int)q->id, e->sampled[i], i, now));
    }
    return CLLM_OK;
}

cllm_status cllm_engine_step(cllm_engine *e, const cllm_request_output **outputs, int *num_outputs) {
    *outputs = NULL;
    *num_outputs = 0;
    eng_step_bufs *b = &e->sb;
    b->num_outs = 0;
    b->text_len = 0;
    eng_plp_free_dead(e); /* the previous step's outputs are no longer valid */
    const cllm_sched_plan *plan = NULL;
    CLLM_TRY(cllm_scheduler_schedule(e->sched, &plan));
    e->num_preemptions += (uint64_t)plan->num_preempted;
    if (plan->num_seqs > 0) {
        cllm_status st = run_plan(e, plan);
        if (st != CLLM_OK) {
            /* leave the scheduler consistent: apply the plan without tokens is
             * impossible, so abort every request of the failed step */
            for (int i = 0; i < plan->num_seqs; i++) cllm_scheduler_abort(e->sched, plan->entries[i].seq->id);
            if (cllm_scheduler_plan_pending(e->sched)) { /* the failure came before the plan was applied */
                int32_t *zeros = calloc((size_t)plan->num_sample + 1, sizeof(int32_t));
                if (zeros) cllm_scheduler_update(e->sched, plan, zeros, plan->num_sample);
                free(zeros);
            }
            return st; /* cllm_last_error() still says what failed */
        }
    } else {
        CLLM_TRY(cllm_scheduler_update(e->sched, plan, NULL, 0));
    }
    if (e->cap_taken < 64) {
        size_t c = (size_t)e->cap_taken;
        CLLM_TRY(grow_arr((void **)&e->taken, 64, sizeof *e->taken, &c));
        e->cap_taken = (int)c;
    }
    for (;;) {
        int n = cllm_scheduler_take_finished(e->sched, e->taken, e->cap_taken);
        for (int i = 0; i < n; i++) CLLM_TRY(on_finished(e, e->taken[i]));
        if (n < e->cap_taken) break;
    }
    /* text of outputs still running, then fix the pointers into the pools */
    for (int i = 0; i < b->num_outs; i++) {
        if (!b->outs[i].finished) {
            int si = -1;
            eng_req *r = eng_find_req(e, b->outs[i].request_id, NULL);
            if (r) si = r->slots[b->outs[i].index];
            CLLM_ASSERT(si >= 0);
            const eng_slot *s = &e->slots[si];
            CLLM_TRY(copy_text(e, i, s));
            b->outs[i].num_output_tokens = cllm_seq_num_output_tokens(s->seq);
            b->outs[i].first_token_time_s = s->first_token_ms > 0 ? (s->first_token_ms - r->t_add_ms) / 1000.0 : 0;
            e->slots[si].out_pos = -1;
        }
    }
    for (int i = 0; i < b->num_outs; i++) {
        cllm_request_output *o = &b->outs[i];
        o->text_delta = b->text + b->text_off[2 * i + 1];
        o->new_token_ids = o->num_new_tokens ? &b->tok[i] : NULL;
        if (o->logprobs) {
            b->lp[i].top_ids = b->top_ids + (size_t)i * ENG_MAX_LOGPROBS;
            b->lp[i].top_logprobs = b->top_lp + (size_t)i * ENG_MAX_LOGPROBS;
            o->logprobs = o->num_new_tokens ? &b->lp[i] : NULL;
        }
    }
    if (e->check) CLLM_TRY(cllm_scheduler_check(e->sched));
    *outputs = b->outs;
    *num_outputs = b->num_outs;
    return CLLM_OK;
}
