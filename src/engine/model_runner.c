/* Model runner: weights + KV cache + workspace on one backend; executes a
 * batch. See model_runner.h. */
#include "engine/model_runner_internal.h"
#include "core/dtype.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of one cached K or V element: 1 for fp8, else the act dtype's. */
static size_t kv_elem_bytes(const cllm_runner *r, const cllm_backend *be) {
    return r->kv_cache_dtype == CLLM_DTYPE_F8_E4M3 ? 1 : cllm_dtype_size(be->act);
}

cllm_status cllm_runner_grow(cllm_backend *be, dbuf *b, size_t need) {
    if (need <= b->cap) return CLLM_OK;
    if (b->p) be->ops->free(be, b->p);
    b->p = NULL;
    b->cap = 0;
    size_t cap = need + need / 4;
    CLLM_TRY(be->ops->alloc(be, cap, &b->p));
    b->cap = cap;
    return CLLM_OK;
}

static void dfree(cllm_backend *be, dbuf *b) {
    if (b->p) be->ops->free(be, b->p);
    b->p = NULL;
    b->cap = 0;
}

void cllm_runner_destroy(cllm_runner *r) {
    if (!r) return;
    cllm_backend *be = r->be;
    if (be) {
        cllm_runner_graphs_free(r);
        for (int l = 0; r->k_cache && l < r->num_layers; l++) {
            if (r->k_cache[l]) be->ops->free(be, r->k_cache[l]);
            if (r->v_cache[l]) be->ops->free(be, r->v_cache[l]);
        }
        if (r->inv_freq) be->ops->free(be, r->inv_freq);
        dbuf *bufs[] = {&r->ws, &r->logits, &r->sample_ws, &r->tokens, &r->params, &r->ids, &r->pos,
                        &r->qsl, &r->seq_lens, &r->block_tables, &r->slots, &r->lidx, &r->qsl_prefill,
                        &r->logits2, &r->pen_params, &r->pen_tokens, &r->pen_bias, &r->pen_ws, &r->tok_lp, &r->top_ids,
                        &r->top_lp, &r->pairs, &r->pp_hidden, &r->pp_sel, &r->pp_sel_all, &r->pp_perm};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dfree(be, bufs[i]);
        if (r->arch && r->model) r->arch->destroy(be, r->model);
        cllm_backend_destroy(be);
    }
    free(r->k_cache);
    free(r->v_cache);
    free(r);
}

cllm_status cllm_runner_create(const cllm_runner_params *p, cllm_runner **out) {
    *out = NULL;
    if (p->block_size <= 0 || p->num_kv_blocks <= 0 || p->max_model_len <= 0 || p->max_num_seqs <= 0)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "runner: block_size %d, num_kv_blocks %d, max_model_len %d, max_num_seqs %d must be > 0",
                          p->block_size, p->num_kv_blocks, p->max_model_len, p->max_num_seqs);
    const cllm_arch *arch = cllm_arch_find(p->cfg->model_type);
    if (!arch) return CLLM_ERR_UNSUPPORTED;
    cllm_status st = CLLM_OK;
    cllm_runner *r = calloc(1, sizeof *r);
    if (!r) return cllm_error(CLLM_ERR_OOM, "out of memory");
    r->cfg = *p->cfg;
    r->cfg.quant.online_fp8 = p->quantize_fp8;
    r->arch = arch;
    if (p->shard) r->shard = *p->shard;
    else cllm_shard_whole(p->cfg, &r->shard);
    r->tp = r->shard.tp_size > 1 ? p->tp : NULL;
    r->pp = r->shard.pp_size > 1 ? p->pp : NULL;
    r->num_layers = r->shard.layer_end - r->shard.layer_start;
    r->pp_micro_batches = p->pp_micro_batches > 0 ? p->pp_micro_batches : r->shard.pp_size;
    if (r->shard.pp_size > 1 && (!r->pp || cllm_comm_size(r->pp) != r->shard.pp_size)) {
        int pps = r->shard.pp_size;
        free(r);
        return cllm_error(CLLM_ERR_INVALID_ARG, "runner: a pipeline stage of %d needs its group", pps);
    }
    if (r->shard.tp_size > 1 && (!r->tp || cllm_comm_size(r->tp) != r->shard.tp_size)) {
        int tps = r->shard.tp_size;
        free(r);
        return cllm_error(CLLM_ERR_INVALID_ARG, "runner: a tensor-parallel shard of size %d needs its group", tps);
    }
    r->block_size = p->block_size;
    cllm_backend *be = p->backend;
    if (p->kv_cache_dtype != CLLM_DTYPE_AUTO && p->kv_cache_dtype != be->act &&
        p->kv_cache_dtype != CLLM_DTYPE_F8_E4M3) {
        free(r);
        return cllm_error(CLLM_ERR_INVALID_ARG, "runner: KV cache dtype %s (auto or fp8 only)",
                          cllm_dtype_name(p->kv_cache_dtype));
    }
    r->kv_cache_dtype = p->kv_cache_dtype == CLLM_DTYPE_F8_E4M3 ? CLLM_DTYPE_F8_E4M3 : CLLM_DTYPE_AUTO;
    const char *nosplit = getenv("CLLM_NO_ATTN_SPLIT");
    r->no_attn_split = nosplit && nosplit[0] && strcmp(nosplit, "0") != 0;
    r->num_kv_blocks = p->num_kv_blocks;
    r->max_blocks_per_seq = (p->max_model_len + p->block_size - 1) / p->block_size;
    r->max_model_len = p->max_model_len;
    r->max_num_seqs = p->max_num_seqs;
    /* r->be is set only on success so that a failing create leaves the backend to the caller */
    CLLM_TRY_GOTO(st, arch->load(be, &r->cfg, &r->shard, p->weights, p->progress, &r->model, &r->info), fail);

    int L = r->num_layers, D = r->cfg.head_dim;
    r->k_cache = calloc((size_t)L, sizeof(void *));
    r->v_cache = calloc((size_t)L, sizeof(void *));
    if (!r->k_cache || !r->v_cache) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    size_t kv_bytes = (size_t)p->num_kv_blocks * p->block_size * r->shard.num_kv_heads * D *
                      kv_elem_bytes(r, be);
    for (int l = 0; l < L; l++) {
        st = be->ops->alloc(be, kv_bytes, &r->k_cache[l]);
        if (st == CLLM_OK) st = be->ops->alloc(be, kv_bytes, &r->v_cache[l]);
        if (st != CLLM_OK) {
            st = cllm_error_wrap(st, "KV cache (%d blocks of %d tokens, %d layers); lower --max-model-len",
                                 p->num_kv_blocks, p->block_size, L);
            goto fail;
        }
    }
    float *inv = malloc(sizeof(float) * (size_t)(D / 2));
    if (!inv) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    cllm_config_rope_inv_freq(&r->cfg, inv);
    st = be->ops->alloc(be, sizeof(float) * (size_t)(D / 2), (void **)&r->inv_freq);
    if (st == CLLM_OK) st = be->ops->h2d(be, r->inv_freq, inv, sizeof(float) * (size_t)(D / 2));
    free(inv);
    if (st != CLLM_OK) goto fail;
    r->be = be;
    *out = r;
    return CLLM_OK;
fail:
    r->be = be; /* free what was allocated on it, then hand the backend back */
    {
        cllm_backend *keep = r->be;
        for (int l = 0; r->k_cache && l < r->num_layers; l++) {
            if (r->k_cache[l]) keep->ops->free(keep, r->k_cache[l]);
            if (r->v_cache[l]) keep->ops->free(keep, r->v_cache[l]);
        }
        if (r->inv_freq) keep->ops->free(keep, r->inv_freq);
        if (r->model) arch->destroy(keep, r->model);
        free(r->k_cache);
        free(r->v_cache);
        free(r);
    }
    return st;
}

/* Check the host metadata the ops rely on (they trust it). */
cllm_status cllm_runner_check_batch(const cllm_runner *r, const cllm_batch_host *b) {
    int S = b->num_seqs, T = b->num_tokens, P = r->block_size;
    if (S <= 0 || T <= 0 || b->num_logits <= 0 || b->max_blocks_per_seq <= 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "batch: %d sequences, %d tokens, %d logits rows (all must be > 0)", S,
                          T, b->num_logits);
    if (b->query_start_loc[0] != 0 || b->query_start_loc[S] != T)
        return cllm_error(CLLM_ERR_INVALID_ARG, "batch: query_start_loc must start at 0 and end at T=%d", T);
    for (int s = 0; s < S; s++) {
        int q = b->query_start_loc[s + 1] - b->query_start_loc[s], L = b->seq_lens[s];
        int nb = (L + P - 1) / P;
        if (q < 0 || L < q || nb > b->max_blocks_per_seq)
            return cllm_error(CLLM_ERR_INVALID_ARG, "batch: sequence %d has %d new tokens, %d context, %d blocks max",
                              s, q, L, b->max_blocks_per_seq);
        for (int j = 0; j < nb; j++) {
            int32_t blk = b->block_tables[(size_t)s * b->max_blocks_per_seq + j];
            if (blk < 0 || blk >= r->num_kv_blocks)
                return cllm_error(CLLM_ERR_INVALID_ARG, "batch: sequence %d block %d is %d, not in [0, %d)", s, j,
                                  blk, r->num_kv_blocks);
        }
    }
    for (int t = 0; t < T; t++) {
        if (b->slot_mapping[t] >= (int64_t)r->num_kv_blocks * P)
            return cllm_error(CLLM_ERR_INVALID_ARG, "batch: slot %d of token %d beyond the KV cache", b->slot_mapping[t], t);
        if (b->token_ids[t] < 0 || b->token_ids[t] >= r->cfg.vocab_size)
            return cllm_error(CLLM_ERR_INVALID_ARG, "batch: token id %d not in the vocabulary [0, %d)", b->token_ids[t],
                              r->cfg.vocab_size);
    }
    for (int i = 0; i < b->num_logits; i++)
        if (b->logits_indices[i] < 0 || b->logits_indices[i] >= T)
            return cllm_error(CLLM_ERR_INVALID_ARG, "batch: logits row %d not in [0, %d)", b->logits_indices[i], T);
    return CLLM_OK;
}

/* Grow buffer b to n bytes and copy host src into it. */
cllm_status cllm_runner_put(cllm_backend *be, dbuf *b, const void *src, size_t n) {
    CLLM_TRY(cllm_runner_grow(be, b, n));
    return be->ops->h2d(be, b->p, src, n);
}

cllm_status cllm_runner_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_sample_params *sp,
                                int32_t *tokens_out, float *logits_out) {
    cllm_runner_sample_args a = {.sp = sp, .logprobs_k = -1};
    return cllm_runner_execute_ex(r, b, &a, tokens_out, logits_out);
}

/* Logprobs, penalties and sampling of the NL logits rows (see
 * cllm_runner_execute_ex and model_runner_internal.h). */
cllm_status cllm_runner_finish_rows(cllm_runner *r, int NL, const cllm_runner_sample_args *a, const float *logits,
                                    int32_t *tokens, bool already_sampled, int32_t *tokens_out) {
    cllm_backend *be = r->be;
    int V = r->cfg.vocab_size;
    size_t i32 = sizeof(int32_t);
    const float *lg = logits;
    if (a->penalties && !already_sampled) {
        if (!be->ops->apply_penalties)
            return cllm_error(CLLM_ERR_UNSUPPORTED, "backend %s has no penalties op (presence/frequency/repetition "
                              "penalty, logit_bias)", be->ops->name);
        for (int i = 0; i < NL; i++) {
            const cllm_penalty_params *p = &a->penalties[i];
            if (p->token_start < 0 || p->num_prompt < 0 || p->num_output < 0 ||
                (int64_t)p->token_start + p->num_prompt + p->num_output > a->num_penalty_tokens)
                return cllm_error(CLLM_ERR_INVALID_ARG, "runner: penalty row %d history beyond %d tokens", i,
                                  a->num_penalty_tokens);
            if (p->bias_start < 0 || p->num_bias < 0 || (int64_t)p->bias_start + p->num_bias > a->num_logit_bias)
                return cllm_error(CLLM_ERR_INVALID_ARG, "runner: penalty row %d logit bias beyond %d entries", i,
                                  a->num_logit_bias);
        }
        CLLM_TRY(cllm_runner_put(be, &r->pen_params, a->penalties, (size_t)NL * sizeof *a->penalties));
        CLLM_TRY(cllm_runner_put(be, &r->pen_tokens, a->penalty_tokens, (size_t)a->num_penalty_tokens * i32 + i32));
        if (a->num_logit_bias > 0)
            CLLM_TRY(cllm_runner_put(be, &r->pen_bias, a->logit_bias, (size_t)a->num_logit_bias * sizeof *a->logit_bias));
        CLLM_TRY(cllm_runner_grow(be, &r->pen_ws, be->ops->penalties_workspace_bytes(NL, V) + 1));
        float *dst = (float *)logits;
        if (a->logprobs_k >= 0) { /* keep the raw logits for logprobs */
            CLLM_TRY(cllm_runner_grow(be, &r->logits2, (size_t)NL * V * sizeof(float)));
            dst = r->logits2.p;
        }
        CLLM_TRY(be->ops->apply_penalties(be, logits, NL, V, r->pen_params.p, r->pen_tokens.p,
                                           a->num_logit_bias > 0 ? r->pen_bias.p : NULL, r->pen_ws.p, dst));
        lg = dst;
    }
    if (!already_sampled) {
        CLLM_TRY(cllm_runner_put(be, &r->params, a->sp, (size_t)NL * sizeof *a->sp));
        CLLM_TRY(cllm_runner_grow(be, &r->sample_ws, be->ops->sample_workspace_bytes(NL, V) + 1));
        CLLM_TRY(be->ops->sample(be, lg, NL, V, r->params.p, r->sample_ws.p, tokens));
    }
    if (a->logprobs_k >= 0) {
        int k = a->logprobs_k;
        if (!be->ops->logprobs)
            return cllm_error(CLLM_ERR_UNSUPPORTED, "backend %s has no logprobs op", be->ops->name);
        CLLM_TRY(cllm_runner_grow(be, &r->tok_lp, (size_t)NL * sizeof(float)));
        CLLM_TRY(cllm_runner_grow(be, &r->top_ids, (size_t)NL * k * i32 + i32));
        CLLM_TRY(cllm_runner_grow(be, &r->top_lp, (size_t)NL * k * sizeof(float) + 4));
        CLLM_TRY(be->ops->logprobs(be, logits, NL, V, tokens, k, r->tok_lp.p, r->top_ids.p, r->top_lp.p));
        CLLM_TRY(be->ops->d2h(be, a->token_logprobs, r->tok_lp.p, (size_t)NL * sizeof(float)));
        if (k > 0) {
            CLLM_TRY(be->ops->d2h(be, a->top_ids, r->top_ids.p, (size_t)NL * k * i32));
            CLLM_TRY(be->ops->d2h(be, a->top_logprobs, r->top_lp.p, (size_t)NL * k * sizeof(float)));
        }
    }
    return be->ops->d2h(be, tokens_out, tokens, (size_t)NL * i32);
}

cllm_status cllm_runner_execute_ex(cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                   int32_t *tokens_out, float *logits_out) {
    CLLM_TRY(cllm_runner_check_batch(r, b));
    if (r->pp) return cllm_runner_pipeline_execute(r, b, a, tokens_out, logits_out);
    if (cllm_runner_graph_fits(r, b, a)) return cllm_runner_graph_execute(r, b, a, tokens_out, logits_out);
    cllm_backend *be = r->be;
    int S = b->num_seqs, T = b->num_tokens, NL = b->num_logits, V = r->cfg.vocab_size;
    size_t i32 = sizeof(int32_t);
    CLLM_TRY(cllm_runner_put(be, &r->ids, b->token_ids, (size_t)T * i32));
    CLLM_TRY(cllm_runner_put(be, &r->pos, b->positions, (size_t)T * i32));
    CLLM_TRY(cllm_runner_put(be, &r->qsl, b->query_start_loc, (size_t)(S + 1) * i32));
    CLLM_TRY(cllm_runner_put(be, &r->seq_lens, b->seq_lens, (size_t)S * i32));
    CLLM_TRY(cllm_runner_put(be, &r->block_tables, b->block_tables, (size_t)S * b->max_blocks_per_seq * i32));
    CLLM_TRY(cllm_runner_put(be, &r->slots, b->slot_mapping, (size_t)T * i32));
    CLLM_TRY(cllm_runner_put(be, &r->lidx, b->logits_indices, (size_t)NL * i32));
    CLLM_TRY(cllm_runner_grow(be, &r->ws, r->arch->workspace_bytes(r->model, T, NL, be->act)));
    CLLM_TRY(cllm_runner_grow(be, &r->logits, (size_t)NL * V * sizeof(float)));

    /* One pass over the sequences: the whole batch's bounds, and for a mixed
     * batch the split below: the leading one-token sequences (Sd of them,
     * the scheduler puts running decodes first) and the rest. */
    int max_q = 0, max_len = 0, Sd = 0, dec_len = 0, pre_q = 0, pre_len = 0;
    for (int s = 0; s < S; s++) {
        int q = b->query_start_loc[s + 1] - b->query_start_loc[s], len = b->seq_lens[s];
        if (q > max_q) max_q = q;
        if (len > max_len) max_len = len;
        if (Sd == s && q == 1) {
            Sd++;
            if (len > dec_len) dec_len = len;
        } else {
            if (q > pre_q) pre_q = q;
            if (len > pre_len) pre_len = len;
        }
    }
    cllm_attn_meta meta = {
        .num_seqs = S, .num_tokens = T, .max_query_len = max_q, .max_seq_len = max_len,
        .block_size = r->block_size, .max_blocks_per_seq = b->max_blocks_per_seq,
        .query_start_loc = r->qsl.p, .seq_lens = r->seq_lens.p, .block_tables = r->block_tables.p,
        .slot_mapping = r->slots.p,
    };
    /* A mixed batch runs attention in two parts, so the decode rows get the
     * backend's decode kernel (tensor cores on CUDA) and the prefill chunks
     * the prefill kernel as a batch of their own. */
    cllm_attn_meta mdec, mpre;
    bool split = Sd > 0 && Sd < S && pre_q > 1 && !r->no_attn_split;
    if (split) {
        int Sp = S - Sd, Td = b->query_start_loc[Sd];
        int32_t *h = malloc((size_t)(Sp + 1) * i32);
        if (!h) return cllm_error(CLLM_ERR_OOM, "out of memory");
        for (int s = 0; s <= Sp; s++) h[s] = b->query_start_loc[Sd + s] - Td; /* rebased to 0 */
        cllm_status st = cllm_runner_put(be, &r->qsl_prefill, h, (size_t)(Sp + 1) * i32);
        free(h);
        CLLM_TRY(st);
        mdec = meta;
        mdec.num_seqs = Sd, mdec.num_tokens = Td, mdec.max_query_len = 1, mdec.max_seq_len = dec_len;
        mpre = meta;
        mpre.num_seqs = Sp, mpre.num_tokens = T - Td, mpre.max_query_len = pre_q, mpre.max_seq_len = pre_len;
        mpre.query_start_loc = r->qsl_prefill.p;
        mpre.seq_lens = (const int32_t *)r->seq_lens.p + Sd;
        mpre.block_tables = (const int32_t *)r->block_tables.p + (size_t)Sd * b->max_blocks_per_seq;
        mpre.slot_mapping = (const int32_t *)r->slots.p + Td;
        r->attn_split_steps++;
    }
    cllm_forward_args fa = {
        .num_tokens = T, .token_ids = r->ids.p, .positions = r->pos.p, .meta = &meta,
        .attn_decode = split ? &mdec : NULL, .attn_prefill = split ? &mpre : NULL,
        .k_cache = r->k_cache, .v_cache = r->v_cache, .kv_cache_dtype = r->kv_cache_dtype, .inv_freq = r->inv_freq,
        .logits_indices = r->lidx.p, .num_logits = NL, .logits = r->logits.p, .workspace = r->ws.p,
        .tp = r->tp,
    };
    CLLM_TRY(r->arch->forward(be, r->model, &fa));
    if (logits_out) CLLM_TRY(be->ops->d2h(be, logits_out, r->logits.p, (size_t)NL * V * sizeof(float)));
    if (tokens_out) {
        CLLM_TRY(cllm_runner_grow(be, &r->tokens, (size_t)NL * i32));
        CLLM_TRY(cllm_runner_finish_rows(r, NL, a, r->logits.p, r->tokens.p, false, tokens_out));
    }
    return be->ops->sync(be);
}

uint64_t cllm_runner_attn_split_steps(const cllm_runner *r) { return r->attn_split_steps; }
const cllm_shard *cllm_runner_shard(const cllm_runner *r) { return &r->shard; }
void cllm_runner_expert_stats(const cllm_runner *r, uint64_t *routed, uint64_t *computed) {
    if (r->cfg.num_experts > 0 && r->arch->expert_stats) r->arch->expert_stats(r->model, routed, computed);
}
int cllm_runner_num_kv_blocks(const cllm_runner *r) { return r->num_kv_blocks; }
int cllm_runner_block_size(const cllm_runner *r) { return r->block_size; }
cllm_backend *cllm_runner_backend(cllm_runner *r) { return r->be; }
const cllm_arch_info *cllm_runner_info(const cllm_runner *r) { return &r->info; }

cllm_status cllm_runner_copy_blocks(cllm_runner *r, const cllm_kv_copy *pairs, int n) {
    if (n <= 0) return CLLM_OK;
    cllm_backend *be = r->be;
    if (!be->ops->copy_blocks)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "backend %s has no copy_blocks op (copy-on-write)", be->ops->name);
    for (int i = 0; i < n; i++)
        if (pairs[i].src < 0 || pairs[i].src >= r->num_kv_blocks || pairs[i].dst < 0 ||
            pairs[i].dst >= r->num_kv_blocks || pairs[i].src == pairs[i].dst)
            return cllm_error(CLLM_ERR_INVALID_ARG, "copy_blocks: pair %d (%d -> %d) not in [0, %d)", i, pairs[i].src,
                              pairs[i].dst, r->num_kv_blocks);
    _Static_assert(sizeof(cllm_kv_copy) == 2 * sizeof(int32_t), "pairs layout");
    CLLM_TRY(cllm_runner_put(be, &r->pairs, pairs, (size_t)n * sizeof *pairs));
    size_t bb = cllm_runner_kv_bytes_per_block(r) / 2 / (size_t)r->num_layers;
    for (int l = 0; l < r->num_layers; l++) {
        CLLM_TRY(be->ops->copy_blocks(be, r->k_cache[l], bb, r->pairs.p, n));
        CLLM_TRY(be->ops->copy_blocks(be, r->v_cache[l], bb, r->pairs.p, n));
    }
    return CLLM_OK;
}

size_t cllm_runner_kv_bytes_per_block(const cllm_runner *r) {
    return 2 * (size_t)r->num_layers * (size_t)r->block_size * (size_t)r->shard.num_kv_heads *
           (size_t)r->cfg.head_dim * kv_elem_bytes(r, r->be);
}

cllm_dtype cllm_runner_kv_cache_dtype(const cllm_runner *r) {
    return r->kv_cache_dtype == CLLM_DTYPE_F8_E4M3 ? CLLM_DTYPE_F8_E4M3 : r->be->act;
}

cllm_status cllm_runner_resize_kv(cllm_runner *r, int num_blocks) {
    if (num_blocks <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "resize_kv: %d blocks", num_blocks);
    cllm_backend *be = r->be;
    int L = r->num_layers;
    cllm_runner_graphs_reset(r); /* they point into the old cache: capture again */
    for (int l = 0; l < L; l++) {
        if (r->k_cache[l]) be->ops->free(be, r->k_cache[l]);
        if (r->v_cache[l]) be->ops->free(be, r->v_cache[l]);
        r->k_cache[l] = r->v_cache[l] = NULL;
    }
    size_t bytes = cllm_runner_kv_bytes_per_block(r) / 2 / (size_t)L * (size_t)num_blocks;
    for (int l = 0; l < L; l++) {
        cllm_status st = be->ops->alloc(be, bytes, &r->k_cache[l]);
        if (st == CLLM_OK) st = be->ops->alloc(be, bytes, &r->v_cache[l]);
        if (st != CLLM_OK) return cllm_error_wrap(st, "KV cache of %d blocks; lower gpu_memory_utilization use", num_blocks);
    }
    r->num_kv_blocks = num_blocks;
    return CLLM_OK;
}

cllm_status cllm_runner_mem_info(cllm_runner *r, size_t *free_bytes, size_t *total_bytes) {
    if (!r->be->ops->mem_info)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "backend %s cannot report its memory", r->be->ops->name);
    return r->be->ops->mem_info(r->be, free_bytes, total_bytes);
}

cllm_status cllm_runner_logprobs_rows(cllm_runner *r, int row0, int n, const int32_t *tokens, int k,
                                      float *token_logprobs, int32_t *top_ids, float *top_logprobs) {
    cllm_backend *be = r->be;
    int V = r->cfg.vocab_size;
    size_t i32 = sizeof(int32_t);
    if (n <= 0) return CLLM_OK;
    if (row0 < 0 || k < 0 || k > 64 || (size_t)(row0 + n) * V * sizeof(float) > r->logits.cap)
        return cllm_error(CLLM_ERR_INVALID_ARG, "logprobs_rows: rows [%d, %d) or k %d out of range", row0, row0 + n, k);
    if (!be->ops->logprobs) return cllm_error(CLLM_ERR_UNSUPPORTED, "backend %s has no logprobs op", be->ops->name);
    /* the sampling scratch buffers are free between executes */
    CLLM_TRY(cllm_runner_put(be, &r->tokens, tokens, (size_t)n * i32));
    CLLM_TRY(cllm_runner_grow(be, &r->tok_lp, (size_t)n * sizeof(float)));
    CLLM_TRY(cllm_runner_grow(be, &r->top_ids, (size_t)n * k * i32 + i32));
    CLLM_TRY(cllm_runner_grow(be, &r->top_lp, (size_t)n * k * sizeof(float) + 4));
    const float *lg = (const float *)r->logits.p + (size_t)row0 * V;
    CLLM_TRY(be->ops->logprobs(be, lg, n, V, r->tokens.p, k, r->tok_lp.p, r->top_ids.p, r->top_lp.p));
    CLLM_TRY(be->ops->d2h(be, token_logprobs, r->tok_lp.p, (size_t)n * sizeof(float)));
    if (k > 0) {
        CLLM_TRY(be->ops->d2h(be, top_ids, r->top_ids.p, (size_t)n * k * i32));
        CLLM_TRY(be->ops->d2h(be, top_logprobs, r->top_lp.p, (size_t)n * k * sizeof(float)));
    }
    return be->ops->sync(be);
}
