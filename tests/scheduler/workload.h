/* Random request workloads driven through the scheduler with the fake
 * model, checking after every step: plan limits, the fake model's KV reads,
 * cllm_scheduler_check (block manager integrity + ref counts), and for every
 * finished request its outputs against fm_reference_next and vLLM's stop
 * rules, recomputed here from the request parameters. */
#ifndef TEST_WORKLOAD_H
#define TEST_WORKLOAD_H

#include "fake_model.h"

#include "core/status.h"

typedef struct wl_req {
    int32_t *prompt;
    int n_prompt;
    cllm_request_params params;
    int32_t stop_ids[2];
    int32_t *out;             /* outputs when finished */
    int n_out;
    int status;               /* cllm_seq_status, -1 not finished */
    int ext;                  /* finished by the test: 1 abort, 2 "stop string" */
    cllm_status rejected;     /* add's status */
    int preemptions;
} wl_req;

typedef struct wl_cfg {
    int n, B, P, max_num_seqs, budget, max_model_len, vocab, eos_every;
    bool prefix;
    double abort_prob, stopstr_prob;
    uint64_t seed;
} wl_cfg;

typedef struct wl_stats {
    int64_t steps, tokens, preemptions, errors;
    int finished[6], rejected_ctx, rejected_kv;
    double max_usage;
    cllm_kv_stats kv;
} wl_stats;

static inline uint64_t wl_rand(uint64_t *s) {
    *s = fm_splitmix(*s);
    return *s;
}
static inline int wl_range(uint64_t *s, int lo, int hi) { return lo + (int)(wl_rand(s) % (uint64_t)(hi - lo + 1)); }

/* Requests depend on seed and n only, so runs under different configs
 * serve the same requests. */
static inline wl_req *wl_make(int n, int vocab, uint64_t seed) {
    wl_req *r = calloc((size_t)n, sizeof *r);
    uint64_t s = seed;
    int32_t prefixes[6][64];
    const int plen[6] = {0, 8, 17, 32, 40, 64};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 64; j++) prefixes[i][j] = wl_range(&s, 1, vocab - 1);
    for (int i = 0; i < n; i++) {
        wl_req *q = &r[i];
        int pi = wl_range(&s, 0, 5), tail = wl_range(&s, 1, 60);
        if (wl_range(&s, 0, 99) == 0) tail = wl_range(&s, 150, 260);
        q->n_prompt = plen[pi] + tail;
        q->prompt = malloc((size_t)q->n_prompt * sizeof(int32_t));
        for (int j = 0; j < q->n_prompt; j++) q->prompt[j] = j < plen[pi] ? prefixes[pi][j] : wl_range(&s, 1, vocab - 1);
        cllm_request_params p = cllm_request_default_params();
        p.max_tokens = wl_range(&s, 0, 99) < 3 ? -1 : wl_range(&s, 1, 48);
        if (wl_range(&s, 0, 4) == 0) p.min_tokens = wl_range(&s, 0, p.max_tokens > 0 ? p.max_tokens : 10);
        p.ignore_eos = wl_range(&s, 0, 9) == 0;
        p.temperature = (float)wl_range(&s, 0, 10) / 10.0f;
        p.top_k = wl_range(&s, -1, 50);
        p.seed = wl_rand(&s);
        p.has_seed = true;
        if (wl_range(&s, 0, 4) == 0) {
            p.num_stop_token_ids = wl_range(&s, 1, 2);
            q->stop_ids[0] = wl_range(&s, 1, vocab - 1);
            q->stop_ids[1] = wl_range(&s, 1, vocab - 1);
            p.stop_token_ids = q->stop_ids;
        }
        q->params = p;
        q->status = -1;
    }
    return r;
}

static inline void wl_free(wl_req *r, int n) {
    for (int i = 0; i < n; i++) {
        free(r[i].prompt);
        free(r[i].out);
    }
    free(r);
}

#define WL_ERR(...)                                        \
    do {                                                   \
        if (st->errors++ < 10) fprintf(stderr, __VA_ARGS__); \
    } while (0)

/* Does output k (0-based) of q stop the request by vLLM's rules? 1 length, 2 stop, 0 no. */
static inline int wl_stops(const wl_cfg *c, const wl_req *q, const int32_t *out, int k) {
    int n_out = k + 1, total = q->n_prompt + n_out;
    if (total >= c->max_model_len || (q->params.max_tokens >= 0 && n_out >= q->params.max_tokens)) return 1;
    if (n_out < q->params.min_tokens) return 0;
    if (!q->params.ignore_eos && out[k] == FM_EOS) return 2;
    for (int i = 0; i < q->params.num_stop_token_ids; i++)
        if (out[k] == q->stop_ids[i]) return 2;
    return 0;
}

static inline void wl_collect(const wl_cfg *c, const fake_model *fm, wl_req *r, cllm_seq *sq, wl_stats *st) {
    wl_req *q = &r[sq->id];
    q->status = sq->status;
    q->n_out = cllm_seq_num_output_tokens(sq);
    q->preemptions = sq->num_preemptions;
    q->out = malloc((size_t)(q->n_out ? q->n_out : 1) * sizeof(int32_t));
    memcpy(q->out, cllm_seq_output_tokens(sq), (size_t)q->n_out * sizeof(int32_t));
    st->finished[sq->status]++;
    if (sq->num_prompt_tokens != q->n_prompt || memcmp(sq->token_ids, q->prompt, (size_t)q->n_prompt * 4))
        WL_ERR("request %lld: prompt changed\n", (long long)sq->id);
    /* outputs against the cache-free reference */
    uint64_t h = 0;
    int L = 0;
    for (; L < q->n_prompt; L++) h = fm_fold(h, fm_mix(q->prompt[L], L));
    for (int k = 0; k < q->n_out; k++, L++) {
        int32_t want = fm_token(fm, sq->id, h, L);
        if (q->out[k] != want) {
            WL_ERR("request %lld: output %d is %d, reference %d\n", (long long)sq->id, k, q->out[k], want);
            break;
        }
        h = fm_fold(h, fm_mix(q->out[k], L));
    }
    /* stop rules */
    for (int k = 0; k + 1 < q->n_out; k++)
        if (wl_stops(c, q, q->out, k)) WL_ERR("request %lld: should have stopped at output %d\n", (long long)sq->id, k);
    int want_status;
    if (q->ext == 1) want_status = CLLM_SEQ_FINISHED_ABORTED;
    else if (q->ext == 2) want_status = CLLM_SEQ_FINISHED_STOPPED;
    else if (q->n_out == 0) want_status = -2;
    else {
        int s = wl_stops(c, q, q->out, q->n_out - 1);
        want_status = s == 1 ? CLLM_SEQ_FINISHED_LENGTH : s == 2 ? CLLM_SEQ_FINISHED_STOPPED : -2;
    }
    if (q->ext && q->n_out > 0 && wl_stops(c, q, q->out, q->n_out - 1))
        WL_ERR("request %lld: finished by the test after a stop\n", (long long)sq->id);
    if (q->status != want_status)
        WL_ERR("request %lld: status %d, expected %d (%d outputs)\n", (long long)sq->id, q->status, want_status, q->n_out);
}

/* Drive cfg->n requests to completion. Returns the number of errors. */
static inline int64_t wl_run(const wl_cfg *c, wl_req *r, wl_stats *st) {
    memset(st, 0, sizeof *st);
    cllm_kv_params kp = cllm_kv_default_params();
    kp.num_blocks = c->B;
    kp.block_size = c->P;
    kp.enable_prefix_caching = c->prefix;
    cllm_kv *bm = NULL;
    cllm_scheduler *sc = NULL;
    cllm_scheduler_params sp = cllm_scheduler_default_params();
    sp.max_num_seqs = c->max_num_seqs;
    sp.max_num_batched_tokens = c->budget;
    sp.max_model_len = c->max_model_len;
    if (cllm_kv_create(&kp, &bm) != CLLM_OK || cllm_scheduler_create(&sp, bm, &sc) != CLLM_OK) {
        fprintf(stderr, "setup: %s\n", cllm_last_error());
        return 1;
    }
    fake_model fm;
    fm_init(&fm, c->B, c->P, c->vocab, c->eos_every);
    uint64_t rs = c->seed ^ 0x5eedULL;
    int next = 0;
    cllm_seq *done[64];
    for (;;) {
        for (int k = wl_range(&rs, 0, 3); k > 0 && next < c->n; k--, next++) {
            wl_req *q = &r[next];
            cllm_seq *sq = NULL;
            if (cllm_seq_create(next, q->prompt, q->n_prompt, &q->params, FM_EOS, &sq) != CLLM_OK) {
                WL_ERR("seq_create %d: %s\n", next, cllm_last_error());
                continue;
            }
            q->rejected = cllm_scheduler_add(sc, sq);
            if (q->rejected != CLLM_OK) {
                cllm_seq_destroy(sq);
                st->rejected_ctx += q->rejected == CLLM_ERR_CONTEXT_LENGTH;
                st->rejected_kv += q->rejected == CLLM_ERR_NO_KV_BLOCKS;
            }
            /* the exact admission rule, recomputed */
            int fin = q->params.max_tokens < 0 ? c->max_model_len : q->n_prompt + q->params.max_tokens;
            if (fin > c->max_model_len) fin = c->max_model_len;
            int kv = fin - 1 > q->n_prompt ? fin - 1 : q->n_prompt;
            cllm_status want = q->n_prompt > c->max_model_len ? CLLM_ERR_CONTEXT_LENGTH
                               : (kv + c->P - 1) / c->P > c->B ? CLLM_ERR_NO_KV_BLOCKS : CLLM_OK;
            if (q->rejected != want) WL_ERR("request %d: add gave %d, expected %d\n", next, q->rejected, want);
        }
        if (next > 0 && (double)(wl_rand(&rs) % 10000) < c->abort_prob * 10000) {
            int id = wl_range(&rs, 0, next - 1);
            if (cllm_scheduler_abort(sc, id)) r[id].ext = 1;
        }
        if (next > 0 && (double)(wl_rand(&rs) % 10000) < c->stopstr_prob * 10000) {
            int id = wl_range(&rs, 0, next - 1);
            if (cllm_scheduler_finish(sc, id, CLLM_SEQ_FINISHED_STOPPED)) r[id].ext = 2;
        }
        const cllm_sched_plan *pl = NULL;
        if (cllm_scheduler_schedule(sc, &pl) != CLLM_OK) {
            WL_ERR("schedule: %s\n", cllm_last_error());
            break;
        }
        if (pl->num_tokens > c->budget || pl->num_seqs > c->max_num_seqs)
            WL_ERR("plan over budget: %d tokens %d seqs\n", pl->num_tokens, pl->num_seqs);
        st->preemptions += pl->num_preempted;
        int ns = 0;
        if (pl->num_seqs > 0) ns = fm_execute(&fm, pl);
        if (ns < 0) break;
        if (pl->num_seqs > 0 && (double)(wl_rand(&rs) % 10000) < c->abort_prob * 10000) {
            int id = wl_range(&rs, 0, next - 1); /* abort between execute and update */
            if (cllm_scheduler_abort(sc, id)) r[id].ext = 1;
        }
        if (cllm_scheduler_update(sc, pl, fm.sampled, ns) != CLLM_OK) {
            WL_ERR("update: %s\n", cllm_last_error());
            break;
        }
        if (cllm_scheduler_check(sc) != CLLM_OK) {
            WL_ERR("step %lld: %s\n", (long long)st->steps, cllm_last_error());
            break;
        }
        cllm_kv_stats ks;
        cllm_kv_get_stats(bm, &ks);
        if (ks.usage > st->max_usage) st->max_usage = ks.usage;
        int nd;
        while ((nd = cllm_scheduler_take_finished(sc, done, 64)) > 0)
            for (int i = 0; i < nd; i++) {
                wl_collect(c, &fm, r, done[i], st);
                cllm_seq_destroy(done[i]);
            }
        st->steps++;
        if (pl->num_seqs == 0 && cllm_scheduler_num_waiting(sc) > 0 && cllm_scheduler_num_running(sc) == 0) {
            WL_ERR("deadlock: %d waiting, nothing runnable\n", cllm_scheduler_num_waiting(sc));
            break;
        }
        if (next == c->n && cllm_scheduler_num_unfinished(sc) == 0) break;
        if (st->steps > 200LL * c->n + 1000) {
            WL_ERR("no progress after %lld steps\n", (long long)st->steps);
            break;
        }
    }
    for (int i = 0; i < c->n; i++)
        if (r[i].rejected == CLLM_OK && r[i].status < 0) WL_ERR("request %d never finished\n", i);
    cllm_kv_get_stats(bm, &st->kv);
    if (st->kv.num_used_blocks != 0) WL_ERR("%d blocks still in use at the end\n", st->kv.num_used_blocks);
    if (cllm_kv_check(bm, NULL, 0) != CLLM_OK) WL_ERR("final check: %s\n", cllm_last_error());
    st->tokens = fm.tokens_run;
    st->errors += fm.errors;
    fm_free(&fm);
    cllm_scheduler_destroy(sc);
    cllm_kv_destroy(bm);
    return st->errors;
}

#endif
