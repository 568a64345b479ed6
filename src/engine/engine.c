/* The continuous-batching engine of include/cllm.h (vLLM's LLMEngine):
 * requests -> sequences (n per request) -> scheduler plan -> flattened
 * batch -> model runner (forward, logprobs, penalties, sampling) ->
 * scheduler update -> incremental detokenization, stop strings -> outputs.
 *
 * Determinism: token i of a completion is drawn with
 * cllm_sample_params{seed = request seed (+ completion index, as vLLM's
 * parallel sampling does), step = i}, so it depends on the request and the
 * output index only, never on batching, chunking or preemption.
 *
 * Per-completion state lives in "slots"; the scheduler's sequence id is the
 * slot index. Output storage is per step (valid until the next step). */
#include "engine/engine_stop.h"
#include "engine/engine_internal.h"
#include "core/status.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>



cllm_engine_params cllm_engine_default_params(void) {
    cllm_engine_params p;
    memset(&p, 0, sizeof p);
    p.model = cllm_model_default_params();
    p.max_num_seqs = 256;
    p.max_num_batched_tokens = 2048;
    p.gpu_memory_utilization = 0.9f;
    p.enable_prefix_caching = true;
    p.max_num_waiting = 4096;
    return p;
}

void cllm_engine_destroy(cllm_engine *e) {
    if (!e) return;
    cllm_scheduler_destroy(e->sched); /* releases the blocks of sequences still held */
    for (int i = 0; i < e->num_slots; i++) {
        cllm_detokenizer_destroy(e->slots[i].detok);
        free(e->slots[i].text);
    }
    free(e->slots);
    free(e->free_slots);
    for (int i = 0; i < e->num_reqs; i++) eng_req_free(e->reqs[i]);
    free(e->reqs);
    cllm_kv_destroy(e->bm);
    cllm_model_destroy(e->model);
    cllm_batch_host_free(&e->batch);
    eng_step_bufs_free(&e->sb);
    free(e->sp);
    free(e->pen);
    free(e->hist);
    free(e->sampled);
    free(e->tok_lp);
    free(e->top_ids);
    free(e->top_lp);
    free(e->taken);
    eng_plp_free_dead(e);
    free(e->plp_dead);
    free(e->plx_lidx), free(e->plx_tok), free(e->plx_pos), free(e->plx_req);
    free(e->plx_lp), free(e->plx_top_ids), free(e->plx_top_lp);
    free(e);
}

/* KV blocks on CPU: the override, else max_num_seqs * max_model_len tokens,
 * capped at a quarter of the host's memory. */
static int cpu_kv_blocks(cllm_engine *e, const cllm_engine_params *p) {
    if (p->num_gpu_blocks_override > 0) return p->num_gpu_blocks_override;
    if (p->model.num_kv_blocks > 0) return p->model.num_kv_blocks;
    cllm_runner *r = cllm_model_runner(e->model);
    int P = cllm_runner_block_size(r), per_seq = (e->max_model_len + P - 1) / P;
    int64_t want = (int64_t)p->max_num_seqs * per_seq;
    size_t fr = 0, tot = 0;
    size_t bpb = cllm_runner_kv_bytes_per_block(r);
    if (cllm_runner_mem_info(r, &fr, &tot) == CLLM_OK && bpb > 0) {
        int64_t cap = (int64_t)(tot / 4 / bpb);
        if (want > cap) want = cap;
    }
    if (want < per_seq + 1) want = per_seq + 1;
    if (want > (1 << 24)) want = 1 << 24;
    return (int)want;
}

/* CUDA: a forward pass at the largest batch, then what is left of
 * total * gpu_memory_utilization goes to the KV cache (vLLM's
 * determine_num_available_blocks). */
static cllm_status profile_kv_blocks(cllm_engine *e, const cllm_engine_params *p, int *out_blocks) {
    cllm_runner *r = cllm_model_runner(e->model);
    int P = cllm_runner_block_size(r), L = e->max_model_len, per_seq = (L + P - 1) / P;
    int T = p->max_num_batched_tokens, S = (T + L - 1) / L;
    if (S < 1) S = 1;
    int NL = p->max_num_seqs < T ? p->max_num_seqs : T;
    cllm_status st = CLLM_OK;
    cllm_batch_host b = {0};
    int32_t *ids = calloc((size_t)T, 4), *pos = calloc((size_t)T, 4), *slot = calloc((size_t)T, 4);
    int32_t *qsl = calloc((size_t)S + 1, 4), *lens = calloc((size_t)S, 4), *bt = calloc((size_t)S * per_seq, 4);
    int32_t *lidx = calloc((size_t)NL, 4), *tok = calloc((size_t)NL, 4);
    cllm_sample_params *sp = calloc((size_t)NL, sizeof *sp);
    if (!ids || !pos || !slot || !qsl || !lens || !bt || !lidx || !tok || !sp) {
        st = cllm_error(CLLM_ERR_OOM, "out of host memory for the profiling batch");
        goto done;
    }
    for (int s = 0; s < S; s++) {
        int a = s * L, n = (s + 1) * L < T ? L : T - a;
        qsl[s] = a;
        qsl[s + 1] = a + n;
        lens[s] = n;
        for (int j = 0; j < per_seq; j++) bt[(size_t)s * per_seq + j] = j % cllm_runner_num_kv_blocks(r);
        for (int i = 0; i < n; i++) pos[a + i] = i, slot[a + i] = -1; /* no KV writes */
    }
    for (int i = 0; i < NL; i++) lidx[i] = T - 1 - i, sp[i].temperature = 1.0f, sp[i].top_p = 1.0f, sp[i].top_k = -1;
    b.num_seqs = S, b.num_tokens = T, b.token_ids = ids, b.positions = pos, b.query_start_loc = qsl;
    b.seq_lens = lens, b.block_tables = bt, b.max_blocks_per_seq = per_seq, b.slot_mapping = slot;
    b.logits_indices = lidx, b.num_logits = NL;
    CLLM_TRY_GOTO(st, cllm_runner_execute(r, &b, sp, tok, NULL), done);
    size_t fr = 0, tot = 0;
    CLLM_TRY_GOTO(st, cllm_runner_mem_info(r, &fr, &tot), done);
    size_t bpb = cllm_runner_kv_bytes_per_block(r);
    double budget = (double)tot * p->gpu_memory_utilization - (double)(tot - fr) +
                    (double)bpb * cllm_runner_num_kv_blocks(r); /* the profiling cache is given back */
    int64_t nb = budget > 0 ? (int64_t)(budget / (double)bpb) : 0;
    if (nb < per_seq) {
        st = cllm_error(CLLM_ERR_OOM,
                        "only %lld KV blocks fit in gpu_memory_utilization %.2f of %.1f GiB (one sequence of "
                        "max_model_len %d needs %d); raise gpu_memory_utilization or lower max_model_len / "
                        "max_num_batched_tokens",
                        (long long)nb, p->gpu_memory_utilization, tot / 1073741824.0, L, per_seq);
        goto done;
    }
    *out_blocks = nb > (1 << 24) ? (1 << 24) : (int)nb;
done:
    free(ids), free(pos), free(slot), free(qsl), free(lens), free(bt), free(lidx), free(tok), free(sp);
    return st;
}

static cllm_status check_engine_params(const cllm_engine_params *p) {
    if (p->max_num_seqs < 1) return cllm_error(CLLM_ERR_INVALID_ARG, "max_num_seqs must be >= 1, got %d", p->max_num_seqs);
    if (p->max_num_batched_tokens < 1)
        return cllm_error(CLLM_ERR_INVALID_ARG, "max_num_batched_tokens must be >= 1, got %d", p->max_num_batched_tokens);
    if (!(p->gpu_memory_utilization > 0.0f && p->gpu_memory_utilization <= 1.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG, "gpu_memory_utilization must be in (0, 1], got %g",
                          p->gpu_memory_utilization);
    if (p->num_gpu_blocks_override < 0 || p->max_num_waiting < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "num_gpu_blocks_override and max_num_waiting must be >= 0");
    return CLLM_OK;
}

cllm_status cllm_engine_create(const cllm_engine_params *params, cllm_engine **out) {
    *out = NULL;
    cllm_engine_params p = params ? *params : cllm_engine_default_params();
    CLLM_TRY(check_engine_params(&p));
    cllm_engine *e = calloc(1, sizeof *e);
    if (!e) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    e->p = p;
    e->max_num_waiting = p.max_num_waiting > 0 ? p.max_num_waiting : 4096;
    const char *chk = getenv("CLLM_ENGINE_CHECK");
#ifndef NDEBUG
    e->check = !(chk && chk[0] == '0');
#else
    e->check = chk && chk[0] == '1';
#endif
    cllm_model_params mp = p.model;
    mp.max_num_seqs = p.max_num_seqs;
    bool cuda = mp.device == CLLM_DEVICE_CUDA;
    if (cuda || mp.num_kv_blocks <= 0) mp.num_kv_blocks = 1; /* sized below */
    mp.enforce_eager = true; /* graphs are captured below, over the final KV cache */
    if (p.num_gpu_blocks_override > 0) mp.num_kv_blocks = p.num_gpu_blocks_override;
    CLLM_TRY_GOTO(st, cllm_model_load(&mp, &e->model), fail);
    e->max_model_len = cllm_model_max_model_len(e->model);
    cllm_runner *r = cllm_model_runner(e->model);
    int blocks = 0;
    if (p.num_gpu_blocks_override > 0) blocks = p.num_gpu_blocks_override;
    else if (cuda) {
        /* the graphs' fixed buffers first, so the sizing counts them (else KV + graphs exceed the budget) */
        if (!p.enforce_eager && !p.model.enforce_eager) CLLM_TRY_GOTO(st, cllm_runner_reserve_graph_buffers(r), fail);
        CLLM_TRY_GOTO(st, profile_kv_blocks(e, &p, &blocks), fail);
    }
    else blocks = cpu_kv_blocks(e, &p);
    if (blocks != cllm_runner_num_kv_blocks(r)) CLLM_TRY_GOTO(st, cllm_runner_resize_kv(r, blocks), fail);
    if (!p.enforce_eager && !p.model.enforce_eager) CLLM_TRY_GOTO(st, cllm_runner_capture_graphs(r), fail);
    int P = cllm_runner_block_size(r);
    cllm_kv_params kp = cllm_kv_default_params();
    kp.num_blocks = blocks;
    kp.block_size = P;
    kp.enable_prefix_caching = p.enable_prefix_caching;
    CLLM_TRY_GOTO(st, cllm_kv_create(&kp, &e->bm), fail);
    cllm_scheduler_params sp = cllm_scheduler_default_params();
    sp.max_num_seqs = p.max_num_seqs;
    sp.max_num_batched_tokens = p.max_num_batched_tokens;
    sp.max_model_len = e->max_model_len;
    CLLM_TRY_GOTO(st, cllm_scheduler_create(&sp, e->bm, &e->sched), fail);
    e->max_blocks_per_seq = (e->max_model_len + P - 1) / P + 1;
    CLLM_LOG_I("KV cache: %d blocks, %lld tokens, max concurrency %.2fx for max_model_len %d", blocks,
               (long long)blocks * P, (double)blocks * P / e->max_model_len, e->max_model_len);
    *out = e;
    return CLLM_OK;
fail:
    cllm_engine_destroy(e);
    return st;
}

const cllm_tokenizer *cllm_engine_tokenizer(const cllm_engine *e) { return cllm_model_tokenizer(e->model); }
int32_t cllm_engine_max_model_len(const cllm_engine *e) { return e->max_model_len; }

bool cllm_engine_has_unfinished(const cllm_engine *e) { return e->num_reqs > 0; }

void cllm_engine_get_stats(const cllm_engine *e, cllm_engine_stats *s) {
    memset(s, 0, sizeof *s);
    cllm_kv_stats ks;
    cllm_kv_get_stats(e->bm, &ks);
    s->num_running = cllm_scheduler_num_running(e->sched);
    s->num_waiting = cllm_scheduler_num_waiting(e->sched);
    s->num_kv_blocks = ks.num_blocks;
    s->num_free_kv_blocks = ks.num_free_blocks + ks.num_evictable_blocks;
    s->kv_cache_usage = (float)ks.usage;
    s->prefix_cache_queries = (uint64_t)ks.prefix_query_tokens;
    s->prefix_cache_hits = (uint64_t)ks.prefix_hit_tokens;
    s->prompt_tokens_total = e->prompt_tokens_total;
    s->generation_tokens_total = e->generation_tokens_total;
    s->num_preemptions = e->num_preemptions;
}
