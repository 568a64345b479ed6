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
#include "core/dtype.h"
#include "core/status.h"
#include "core/clock.h"
#include "engine/engine.h"
#include "model/arch/arch.h"
#include "model/hub.h"

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
    cllm_executor_destroy(e->ex); /* stops the worker processes */
    cllm_tokenizer_destroy(e->tok);
    free(e->dir);
    cllm_batch_host_free(&e->batch);
    eng_step_bufs_free(&e->sb);
    free(e->sp);
    free(e->pen);
    free(e->hist);
    free(e->bias);
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

static cllm_status check_engine_params(const cllm_engine_params *p) {
    const cllm_model_params *m = &p->model;
    if (!m->model || !*m->model) return cllm_error(CLLM_ERR_INVALID_ARG, "no model given (--model DIR or ORG/NAME)");
    if (m->block_size <= 0 || m->block_size > 4096)
        return cllm_error(CLLM_ERR_INVALID_ARG, "block_size %d must be in [1, 4096]", m->block_size);
    if (m->max_model_len < 0 || m->num_kv_blocks < 0 || m->num_threads < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "max_model_len, num_kv_blocks, num_threads must be >= 0");
    if (m->device != CLLM_DEVICE_CPU && m->device != CLLM_DEVICE_CUDA)
        return cllm_error(CLLM_ERR_INVALID_ARG, "unknown device %d", (int)m->device);
    if (m->kv_cache_dtype != CLLM_DTYPE_AUTO && m->kv_cache_dtype != CLLM_DTYPE_F8_E4M3)
        return cllm_error(CLLM_ERR_INVALID_ARG, "kv_cache_dtype %s: valid values are %s",
                          cllm_dtype_name(m->kv_cache_dtype), CLLM_KV_CACHE_DTYPES);
    if (m->quantization != CLLM_QUANTIZATION_NONE && m->quantization != CLLM_QUANTIZATION_FP8)
        return cllm_error(CLLM_ERR_INVALID_ARG, "quantization %d: valid values are none and fp8", (int)m->quantization);
    if (m->tensor_parallel_size < 0 || m->tensor_parallel_size > 64)
        return cllm_error(CLLM_ERR_INVALID_ARG, "tensor_parallel_size must be in [1, 64], got %d", m->tensor_parallel_size);
    if (m->dist_timeout_s < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "dist_timeout must be > 0 seconds");
    if (m->pipeline_parallel_size < 0 || m->pipeline_parallel_size > 64 || m->pp_micro_batches < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "pipeline_parallel_size must be in [1, 64] and pp_micro_batches >= 0");
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

/* Resolve the model, read its config and tokenizer, settle max_model_len. */
static cllm_status load_model_info(cllm_engine *e, const cllm_model_params *mp) {
    CLLM_TRY(cllm_hub_resolve(mp->model, mp->revision, mp->progress, &e->dir));
    CLLM_TRY(cllm_config_load(e->dir, &e->cfg));
    if (!cllm_arch_find(e->cfg.model_type)) return CLLM_ERR_UNSUPPORTED;
    int max_len = mp->max_model_len ? mp->max_model_len : e->cfg.max_position_embeddings;
    if (max_len > e->cfg.max_position_embeddings)
        return cllm_error(CLLM_ERR_INVALID_ARG, "max_model_len %d is larger than the model's max_position_embeddings %d",
                          max_len, e->cfg.max_position_embeddings);
    if (e->cfg.sliding_window > 0 && max_len > e->cfg.sliding_window)
        return cllm_error(CLLM_ERR_UNSUPPORTED,
                          "the model uses sliding-window attention (window %d) which cllm does not implement; "
                          "pass --max-model-len %d or less",
                          e->cfg.sliding_window, e->cfg.sliding_window);
    e->max_model_len = max_len;
    return cllm_tokenizer_load(e->dir, &e->tok);
}

cllm_status cllm_engine_create(const cllm_engine_params *params, cllm_engine **out) {
    return cllm_engine_create_sized(params, NULL, out);
}

cllm_status cllm_engine_create_sized(const cllm_engine_params *params,
                                     void (*size)(cllm_engine_params *p, int max_model_len), cllm_engine **out) {
    *out = NULL;
    cllm_engine_params p = params ? *params : cllm_engine_default_params();
    CLLM_TRY(check_engine_params(&p));
    double t0 = cllm_now_ms();
    cllm_engine *e = calloc(1, sizeof *e);
    if (!e) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    e->max_num_waiting = p.max_num_waiting > 0 ? p.max_num_waiting : 4096;
    const char *chk = getenv("CLLM_ENGINE_CHECK");
#ifndef NDEBUG
    e->check = !(chk && chk[0] == '0');
#else
    e->check = chk && chk[0] == '1';
#endif
    CLLM_TRY_GOTO(st, load_model_info(e, &p.model), fail);
    if (size) size(&p, e->max_model_len);
    bool cuda = p.model.device == CLLM_DEVICE_CUDA, eager = p.enforce_eager || p.model.enforce_eager;
    /* the model loads with a 1-block KV cache (an override: its final size); the cache is sized below */
    int initial = p.num_gpu_blocks_override > 0 ? p.num_gpu_blocks_override : 1;
    cllm_executor_params xp = {
        .model = &p.model, .model_dir = e->dir, .cfg = &e->cfg, .max_model_len = e->max_model_len,
        .max_num_seqs = p.max_num_seqs, .num_kv_blocks = initial,
    };
    CLLM_TRY_GOTO(st, cllm_executor_create(&xp, &e->ex), fail);
    cllm_runner *r = cllm_executor_runner(e->ex);
    int blocks = 0;
    if (p.num_gpu_blocks_override > 0) blocks = p.num_gpu_blocks_override;
    else if (p.kv_cache_memory_bytes > 0) {
        uint64_t nb = p.kv_cache_memory_bytes / cllm_runner_kv_bytes_per_block(r);
        int per_seq = (e->max_model_len + cllm_runner_block_size(r) - 1) / cllm_runner_block_size(r);
        if (nb < (uint64_t)per_seq) {
            st = cllm_error(CLLM_ERR_OOM, "kv_cache_memory_bytes %llu holds %llu KV blocks of %zu bytes; one sequence "
                            "of max_model_len %d needs %d: raise it or lower max_model_len",
                            (unsigned long long)p.kv_cache_memory_bytes, (unsigned long long)nb,
                            cllm_runner_kv_bytes_per_block(r), e->max_model_len, per_seq);
            goto fail;
        }
        blocks = nb > (1u << 24) ? 1 << 24 : (int)nb;
    } else if (!cuda && p.model.num_kv_blocks > 0) blocks = p.model.num_kv_blocks;
    else {
        /* the graphs' fixed buffers first, so the sizing counts them (else KV + graphs exceed the budget) */
        if (cuda && !eager) CLLM_TRY_GOTO(st, cllm_executor_reserve_graph_buffers(e->ex), fail);
        CLLM_TRY_GOTO(st, cllm_executor_available_blocks(e->ex, p.max_num_batched_tokens, p.max_num_seqs,
                                                         p.gpu_memory_utilization, &blocks), fail);
    }
    if (blocks != cllm_runner_num_kv_blocks(r)) CLLM_TRY_GOTO(st, cllm_executor_resize_kv(e->ex, blocks), fail);
    if (!eager) CLLM_TRY_GOTO(st, cllm_executor_capture_graphs(e->ex), fail);
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
    e->load_ms = cllm_now_ms() - t0;
    CLLM_LOG_I("KV cache: %d blocks, %lld tokens, %s, %.1f MiB per rank, max concurrency %.2fx for max_model_len %d",
               blocks, (long long)blocks * P, cllm_dtype_name(cllm_runner_kv_cache_dtype(r)),
               (double)cllm_runner_kv_bytes_per_block(r) * blocks / 1048576.0, (double)blocks * P / e->max_model_len,
               e->max_model_len);
    *out = e;
    return CLLM_OK;
fail:
    cllm_engine_destroy(e);
    return st;
}

cllm_status cllm_engine_check_health(const cllm_engine *e) { return cllm_executor_check_health(e->ex); }

cllm_status cllm_engine_get_distributed_stats(cllm_engine *e, cllm_comm_stats **stats, int *n) {
    return cllm_executor_dist_stats(e->ex, stats, n);
}

cllm_status cllm_engine_get_expert_stats(cllm_engine *e, cllm_expert_stats *s) {
    memset(s, 0, sizeof *s);
    return cllm_executor_expert_stats(e->ex, &s->tokens_per_expert, &s->num_experts, &s->tokens_per_rank,
                                      &s->num_ranks);
}

const cllm_model_config *cllm_engine_model_config(const cllm_engine *e) { return &e->cfg; }
cllm_executor *cllm_engine_executor(cllm_engine *e) { return e->ex; }
double cllm_engine_load_ms(const cllm_engine *e) { return e->load_ms; }

const cllm_tokenizer *cllm_engine_tokenizer(const cllm_engine *e) { return e->tok; }
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
