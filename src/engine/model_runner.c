/* Model runner: weights + KV cache + workspace on one backend; executes a
 * batch. See model_runner.h. */
#include "engine/model_runner.h"
#include "core/dtype.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* A device buffer that grows on demand. */
typedef struct dbuf {
    void *p;
    size_t cap;
} dbuf;

struct cllm_runner {
    cllm_model_config cfg;
    cllm_backend *be;
    const cllm_arch *arch;
    void *model;
    cllm_arch_info info;
    int block_size, num_kv_blocks, max_blocks_per_seq;
    void **k_cache, **v_cache;     /* (layers) */
    float *inv_freq;               /* device (D/2) */
    dbuf ws, logits, sample_ws, tokens, params;
    dbuf ids, pos, qsl, seq_lens, block_tables, slots, lidx;
};

static cllm_status grow(cllm_backend *be, dbuf *b, size_t need) {
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
        for (int l = 0; r->k_cache && l < r->cfg.num_hidden_layers; l++) {
            if (r->k_cache[l]) be->ops->free(be, r->k_cache[l]);
            if (r->v_cache[l]) be->ops->free(be, r->v_cache[l]);
        }
        if (r->inv_freq) be->ops->free(be, r->inv_freq);
        dbuf *bufs[] = {&r->ws, &r->logits, &r->sample_ws, &r->tokens, &r->params, &r->ids, &r->pos,
                        &r->qsl, &r->seq_lens, &r->block_tables, &r->slots, &r->lidx};
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
    if (p->comm || p->world_size > 1)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "tensor/pipeline parallelism is not implemented yet (world_size %d)",
                          p->world_size);
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
    r->arch = arch;
    r->block_size = p->block_size;
    r->num_kv_blocks = p->num_kv_blocks;
    r->max_blocks_per_seq = (p->max_model_len + p->block_size - 1) / p->block_size;
    cllm_backend *be = p->backend;
    /* r->be is set only on success so that a failing create leaves the backend to the caller */
    CLLM_TRY_GOTO(st, arch->load(be, &r->cfg, p->weights, p->progress, &r->model, &r->info), fail);

    int L = r->cfg.num_hidden_layers, D = r->cfg.head_dim;
    r->k_cache = calloc((size_t)L, sizeof(void *));
    r->v_cache = calloc((size_t)L, sizeof(void *));
    if (!r->k_cache || !r->v_cache) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    size_t kv_bytes = (size_t)p->num_kv_blocks * p->block_size * r->cfg.num_key_value_heads * D *
                      cllm_dtype_size(be->act);
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
        for (int l = 0; r->k_cache && l < r->cfg.num_hidden_layers; l++) {
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
static cllm_status validate(const cllm_runner *r, const cllm_batch_host *b) {
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
static cllm_status put(cllm_backend *be, dbuf *b, const void *src, size_t n) {
    CLLM_TRY(grow(be, b, n));
    return be->ops->h2d(be, b->p, src, n);
}

cllm_status cllm_runner_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_sample_params *sp,
                                int32_t *tokens_out, float *logits_out) {
    CLLM_TRY(validate(r, b));
    cllm_backend *be = r->be;
    int S = b->num_seqs, T = b->num_tokens, NL = b->num_logits, V = r->cfg.vocab_size;
    size_t i32 = sizeof(int32_t);
    CLLM_TRY(put(be, &r->ids, b->token_ids, (size_t)T * i32));
    CLLM_TRY(put(be, &r->pos, b->positions, (size_t)T * i32));
    CLLM_TRY(put(be, &r->qsl, b->query_start_loc, (size_t)(S + 1) * i32));
    CLLM_TRY(put(be, &r->seq_lens, b->seq_lens, (size_t)S * i32));
    CLLM_TRY(put(be, &r->block_tables, b->block_tables, (size_t)S * b->max_blocks_per_seq * i32));
    CLLM_TRY(put(be, &r->slots, b->slot_mapping, (size_t)T * i32));
    CLLM_TRY(put(be, &r->lidx, b->logits_indices, (size_t)NL * i32));
    CLLM_TRY(grow(be, &r->ws, r->arch->workspace_bytes(&r->cfg, T, NL, be->act)));
    CLLM_TRY(grow(be, &r->logits, (size_t)NL * V * sizeof(float)));

    int max_q = 0, max_len = 0;
    for (int s = 0; s < S; s++) {
        int q = b->query_start_loc[s + 1] - b->query_start_loc[s];
        if (q > max_q) max_q = q;
        if (b->seq_lens[s] > max_len) max_len = b->seq_lens[s];
    }
    cllm_attn_meta meta = {
        .num_seqs = S, .num_tokens = T, .max_query_len = max_q, .max_seq_len = max_len,
        .block_size = r->block_size, .max_blocks_per_seq = b->max_blocks_per_seq,
        .query_start_loc = r->qsl.p, .seq_lens = r->seq_lens.p, .block_tables = r->block_tables.p,
        .slot_mapping = r->slots.p,
    };
    cllm_forward_args fa = {
        .num_tokens = T, .token_ids = r->ids.p, .positions = r->pos.p, .meta = &meta,
        .k_cache = r->k_cache, .v_cache = r->v_cache, .inv_freq = r->inv_freq,
        .logits_indices = r->lidx.p, .num_logits = NL, .logits = r->logits.p, .workspace = r->ws.p,
    };
    CLLM_TRY(r->arch->forward(be, r->model, &fa));
    if (tokens_out) {
        CLLM_TRY(put(be, &r->params, sp, (size_t)NL * sizeof *sp));
        CLLM_TRY(grow(be, &r->sample_ws, be->ops->sample_workspace_bytes(NL, V) + 1));
        CLLM_TRY(grow(be, &r->tokens, (size_t)NL * i32));
        CLLM_TRY(be->ops->sample(be, r->logits.p, NL, V, r->params.p, r->sample_ws.p, r->tokens.p));
        CLLM_TRY(be->ops->d2h(be, tokens_out, r->tokens.p, (size_t)NL * i32));
    }
    if (logits_out) CLLM_TRY(be->ops->d2h(be, logits_out, r->logits.p, (size_t)NL * V * sizeof(float)));
    return be->ops->sync(be);
}

int cllm_runner_num_kv_blocks(const cllm_runner *r) { return r->num_kv_blocks; }
int cllm_runner_block_size(const cllm_runner *r) { return r->block_size; }
cllm_backend *cllm_runner_backend(cllm_runner *r) { return r->be; }
const cllm_arch_info *cllm_runner_info(const cllm_runner *r) { return &r->info; }
