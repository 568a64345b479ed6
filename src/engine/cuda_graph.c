/* CUDA-graph decode for the model runner (vLLM's CUDA graphs, "piecewise"
 * not needed here: the whole forward + sampler of a pure-decode step is one
 * graph).
 *
 * At start (cllm_runner_capture_graphs) one graph is captured per padded
 * batch size 1, 2, 4, 8, 16, 24, ... (vLLM's cudagraph capture sizes) up to
 * the first size >= max_num_seqs. Every graph reads its inputs from ONE fixed
 * device buffer (the packed metadata below) and writes into fixed logits /
 * token buffers, so a step only has to (1) pack the metadata into a pinned
 * host staging buffer, (2) upload it with one h2d, (3) launch the graph of
 * the smallest size >= S. Padding rows are idle sequences: token 0 at
 * position 0, slot -1 (kv_write skips it), seq_len 0 (attention reads no
 * keys and writes zeros), greedy sampling; their outputs are ignored.
 *
 * Attention is captured with max_query_len 1 and max_seq_len =
 * max_model_len, so the split-K grid covers any context; under capture the
 * attention launcher lets each CTA derive its sequence's split length from
 * seq_lens on the device (src/backend/cuda/attention.cu).
 *
 * Packed metadata layout (each part 256-byte aligned, smax = largest size,
 * M = max blocks per sequence of the runner):
 *   token_ids (smax) | positions (smax) | query_start_loc (smax+1) |
 *   seq_lens (smax) | slot_mapping (smax) | logits_indices (smax) |
 *   sample params (smax) | block_tables (smax, M)   -- last, so that a step
 * uploads only up to the last used block-table entry. */
#include "engine/model_runner_internal.h"
#include "core/profile.h"
#include "core/status.h"
#include "core/clock.h"

#include <stdlib.h>
#include <string.h>

typedef struct layout {
    size_t ids, pos, qsl, lens, slots, lidx, sp, bt, total;
} layout;

static size_t al(size_t n) { return (n + 255) / 256 * 256; }

static layout make_layout(int smax, int mbps) {
    layout L;
    size_t n = (size_t)smax, i32 = sizeof(int32_t), o = 0;
    L.ids = o, o += al(n * i32);
    L.pos = o, o += al(n * i32);
    L.qsl = o, o += al((n + 1) * i32);
    L.lens = o, o += al(n * i32);
    L.slots = o, o += al(n * i32);
    L.lidx = o, o += al(n * i32);
    L.sp = o, o += al(n * sizeof(cllm_sample_params));
    L.bt = o, o += al(n * (size_t)mbps * i32);
    L.total = o;
    return L;
}

static cllm_sample_params greedy(void) {
    cllm_sample_params p = {.temperature = 0.0f, .top_p = 1.0f, .min_p = 0.0f, .top_k = -1};
    return p;
}

void cllm_runner_graphs_reset(cllm_runner *r) {
    runner_graphs *g = &r->g;
    for (int i = 0; i < CLLM_GRAPH_MAX_SIZES; i++) {
        if (g->graphs[i]) r->be->ops->graph_destroy(r->be, g->graphs[i]);
        g->graphs[i] = NULL;
    }
    g->num_sizes = 0;
}

void cllm_runner_graphs_free(cllm_runner *r) {
    cllm_backend *be = r->be;
    runner_graphs *g = &r->g;
    cllm_runner_graphs_reset(r);
    void *dev[] = {g->meta, g->ws, g->logits, g->sample_ws, g->tokens};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) be->ops->free(be, dev[i]);
    if (g->staging) {
        if (g->staging_pinned) be->ops->host_free(be, g->staging);
        else free(g->staging);
    }
    g->meta = g->ws = g->logits = g->sample_ws = g->tokens = g->staging = NULL;
    g->smax = g->mbps = 0;
}

/* Allocate the fixed buffers for batch smax and mbps blocks per sequence. */
static cllm_status alloc_buffers(cllm_runner *r, int smax, int mbps) {
    runner_graphs *g = &r->g;
    if (g->meta && g->smax == smax && g->mbps == mbps) return CLLM_OK;
    cllm_runner_graphs_free(r);
    cllm_backend *be = r->be;
    int V = r->cfg.vocab_size;
    layout L = make_layout(smax, mbps);
    g->meta_bytes = L.total;
    CLLM_TRY(be->ops->alloc(be, L.total, &g->meta));
    if (be->ops->host_alloc) {
        CLLM_TRY(be->ops->host_alloc(be, L.total, &g->staging));
        g->staging_pinned = true;
    } else {
        g->staging = malloc(L.total);
        g->staging_pinned = false;
        if (!g->staging) return cllm_error(CLLM_ERR_OOM, "out of host memory for the graph staging buffer");
    }
    CLLM_TRY(be->ops->alloc(be, r->arch->workspace_bytes(r->model, smax, smax, be->act), &g->ws));
    CLLM_TRY(be->ops->alloc(be, (size_t)smax * V * sizeof(float), &g->logits));
    CLLM_TRY(be->ops->alloc(be, be->ops->sample_workspace_bytes(smax, V) + 1, &g->sample_ws));
    CLLM_TRY(be->ops->alloc(be, (size_t)smax * sizeof(int32_t), &g->tokens));
    g->smax = smax;
    g->mbps = mbps;
    return CLLM_OK;
}

/* vLLM's capture sizes: 1, 2, 4, 8, then steps of 8 up to the first size >=
 * max_num_seqs (at most CLLM_GRAPH_MAX_BATCH). Returns how many. */
static int graph_sizes(const cllm_runner *r, int *sizes) {
    int n = 0;
    for (int s = 1;; s = s < 8 ? 2 * s : s + 8) {
        sizes[n++] = s;
        if (s >= r->max_num_seqs || s >= CLLM_GRAPH_MAX_BATCH) break;
    }
    return n;
}

cllm_status cllm_runner_reserve_graph_buffers(cllm_runner *r) {
    cllm_backend *be = r->be;
    if (!be->ops->graph_capture_begin || !be->ops->graph_capture_end || !be->ops->graph_launch ||
        !be->ops->graph_destroy || r->pp)
        return CLLM_OK;
    int sizes[CLLM_GRAPH_MAX_SIZES], n = graph_sizes(r, sizes);
    return alloc_buffers(r, sizes[n - 1], r->max_blocks_per_seq);
}

/* Pack S real decode rows of b (may be NULL: no real rows) and padding up to
 * Sp rows into the staging buffer; returns the bytes to upload. */
static size_t pack(cllm_runner *r, const cllm_batch_host *b, const cllm_sample_params *sp, int S, int Sp) {
    runner_graphs *g = &r->g;
    layout L = make_layout(g->smax, g->mbps);
    char *h = g->staging;
    int32_t *ids = (int32_t *)(h + L.ids), *pos = (int32_t *)(h + L.pos), *qsl = (int32_t *)(h + L.qsl);
    int32_t *lens = (int32_t *)(h + L.lens), *slots = (int32_t *)(h + L.slots), *lidx = (int32_t *)(h + L.lidx);
    int32_t *bt = (int32_t *)(h + L.bt);
    cllm_sample_params *p = (cllm_sample_params *)(h + L.sp);
    int P = r->block_size, M = g->mbps;
    size_t bt_used = 0;
    for (int s = 0; s < S; s++) {
        ids[s] = b->token_ids[s];
        pos[s] = b->positions[s];
        qsl[s] = s;
        lens[s] = b->seq_lens[s];
        slots[s] = b->slot_mapping[s];
        lidx[s] = s;
        p[s] = sp ? sp[s] : greedy();
        int nb = (b->seq_lens[s] + P - 1) / P;
        memcpy(bt + (size_t)s * M, b->block_tables + (size_t)s * b->max_blocks_per_seq, sizeof(int32_t) * (size_t)nb);
        bt_used = (size_t)s * M + (size_t)nb;
    }
    for (int s = S; s < Sp; s++) {
        ids[s] = 0, pos[s] = 0, qsl[s] = s, lens[s] = 0, slots[s] = -1, lidx[s] = s;
        p[s] = greedy();
    }
    qsl[Sp] = Sp;
    return L.bt + bt_used * sizeof(int32_t);
}

/* Forward + sampler of a padded decode batch of S rows over the fixed
 * buffers: what a graph records (and the warm-up before it runs). */
static cllm_status forward_sample(cllm_runner *r, int S) {
    runner_graphs *g = &r->g;
    cllm_backend *be = r->be;
    layout L = make_layout(g->smax, g->mbps);
    char *d = g->meta;
    cllm_attn_meta meta = {
        .num_seqs = S, .num_tokens = S, .max_query_len = 1, .max_seq_len = r->max_model_len,
        .block_size = r->block_size, .max_blocks_per_seq = g->mbps,
        .query_start_loc = (const int32_t *)(d + L.qsl), .seq_lens = (const int32_t *)(d + L.lens),
        .block_tables = (const int32_t *)(d + L.bt), .slot_mapping = (const int32_t *)(d + L.slots),
    };
    cllm_forward_args fa = {
        .num_tokens = S, .token_ids = (const int32_t *)(d + L.ids), .positions = (const int32_t *)(d + L.pos),
        .meta = &meta, .k_cache = r->k_cache, .v_cache = r->v_cache, .kv_cache_dtype = r->kv_cache_dtype, .inv_freq = r->inv_freq,
        .logits_indices = (const int32_t *)(d + L.lidx), .num_logits = S, .logits = g->logits, .workspace = g->ws,
        .tp = r->tp,
    };
    CLLM_TRY(r->arch->forward(be, r->model, &fa));
    return be->ops->sample(be, g->logits, S, r->cfg.vocab_size, (const cllm_sample_params *)(d + L.sp), g->sample_ws,
                           g->tokens);
}

cllm_status cllm_runner_capture_graphs(cllm_runner *r) {
    cllm_backend *be = r->be;
    if (!be->ops->graph_capture_begin || !be->ops->graph_capture_end || !be->ops->graph_launch ||
        !be->ops->graph_destroy)
        return CLLM_OK;
    /* Profiling synchronizes inside the forward pass, which a capture forbids:
     * profiled runs are eager. A pipeline stage's step is a sequence of
     * micro-batches with sends and receives between them: eager too. */
    if (cllm_prof_on) return CLLM_OK;
    if (r->pp) {
        CLLM_LOG_I("pipeline parallelism: decode runs without CUDA graphs");
        return CLLM_OK;
    }
    /* Expert parallelism exchanges counts through the host (model/layers/moe.c): not capturable. */
    if (r->shard.ep_size > 1) {
        CLLM_LOG_I("expert parallelism: decode runs without CUDA graphs");
        return CLLM_OK;
    }
    cllm_runner_graphs_reset(r);
    runner_graphs *g = &r->g;
    int sizes[CLLM_GRAPH_MAX_SIZES], n = graph_sizes(r, sizes);
    int smax = sizes[n - 1];
    CLLM_TRY(alloc_buffers(r, smax, r->max_blocks_per_seq));
    /* all rows idle: the warm-up and capture runs touch no KV and no real sequence */
    (void)pack(r, NULL, NULL, 0, smax);
    CLLM_TRY(be->ops->h2d(be, g->meta, g->staging, g->meta_bytes));
    CLLM_TRY(be->ops->sync(be));
    double t0 = cllm_now_ms();
    for (int i = n - 1; i >= 0; i--) {
        /* warm-up: one-time kernel attributes and GEMM algorithm choices happen outside the capture */
        cllm_status st = forward_sample(r, sizes[i]);
        if (st == CLLM_OK) st = be->ops->sync(be);
        cllm_comm_stats before = {0}, after = {0};
        if (r->tp) cllm_comm_get_stats(r->tp, &before);
        if (st == CLLM_OK) st = be->ops->graph_capture_begin(be);
        if (st == CLLM_OK) {
            st = forward_sample(r, sizes[i]);
            cllm_status st2 = be->ops->graph_capture_end(be, &g->graphs[i]);
            if (st == CLLM_OK) st = st2;
        }
        /* the collectives enqueued during the capture run at every replay: count them there */
        memset(&g->comm_delta[i], 0, sizeof g->comm_delta[i]);
        if (r->tp) {
            cllm_comm_get_stats(r->tp, &after);
            for (int o = 0; o < CLLM_COMM_NUM_OPS; o++) {
                g->comm_delta[i].ops[o].calls = after.ops[o].calls - before.ops[o].calls;
                g->comm_delta[i].ops[o].bytes = after.ops[o].bytes - before.ops[o].bytes;
            }
        }
        if (st != CLLM_OK) {
            cllm_runner_graphs_reset(r);
            return cllm_error_wrap(st, "capturing the CUDA graph of decode batch size %d", sizes[i]);
        }
    }
    memcpy(g->sizes, sizes, sizeof(int) * (size_t)n);
    g->num_sizes = n;
    g->capture_ms = cllm_now_ms() - t0;
    CLLM_LOG_I("captured %d CUDA graphs (decode batch sizes 1..%d, max_model_len %d) in %.0f ms", n, smax,
               r->max_model_len, g->capture_ms);
    return CLLM_OK;
}

bool cllm_runner_graph_fits(const cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a) {
    const runner_graphs *g = &r->g;
    int S = b->num_seqs, P = r->block_size;
    /* Profiling (core/profile.h) charges time to op categories at syncs
     * inside the forward pass; a graph replay has none, so while profiling
     * is on every step runs eagerly. (Graphs may have been captured before
     * profiling was turned on, e.g. `bench throughput --profile`: replaying
     * them put each decode step's whole device time into "rest".) */
    if (cllm_prof_on) return false;
    if (g->num_sizes == 0 || S > g->sizes[g->num_sizes - 1] || b->num_tokens != S || b->num_logits != S) return false;
    if (a && (a->penalties || a->no_graph)) return false;
    for (int s = 0; s < S; s++) {
        if (b->query_start_loc[s + 1] != s + 1 || b->logits_indices[s] != s) return false;
        if ((b->seq_lens[s] + P - 1) / P > g->mbps) return false;
    }
    return true;
}

cllm_status cllm_runner_graph_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                      int32_t *tokens_out, float *logits_out) {
    runner_graphs *g = &r->g;
    cllm_backend *be = r->be;
    int S = b->num_seqs, V = r->cfg.vocab_size, i = 0;
    while (g->sizes[i] < S) i++;
    size_t bytes = pack(r, b, a ? a->sp : NULL, S, g->sizes[i]);
    CLLM_TRY(be->ops->h2d(be, g->meta, g->staging, bytes));
    CLLM_TRY(be->ops->graph_launch(be, g->graphs[i]));
    g->replays++;
    if (r->tp) cllm_comm_stats_add(r->tp, &g->comm_delta[i], 1);
    if (logits_out) CLLM_TRY(be->ops->d2h(be, logits_out, g->logits, (size_t)S * V * sizeof(float)));
    if (tokens_out) CLLM_TRY(cllm_runner_finish_rows(r, S, a, g->logits, g->tokens, true, tokens_out));
    return be->ops->sync(be);
}

void cllm_runner_graph_stats(const cllm_runner *r, int *num_graphs, uint64_t *replays, double *capture_ms) {
    if (num_graphs) *num_graphs = r->g.num_sizes;
    if (replays) *replays = r->g.replays;
    if (capture_ms) *capture_ms = r->g.capture_ms;
}
