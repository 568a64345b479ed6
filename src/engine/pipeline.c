/* Pipeline-parallel execution of one batch on one stage (see model_runner.h).
 *
 * Every rank of the pipeline gets the same batch (the executor broadcasts
 * it) and cuts it the same way into M micro-batches of whole sequences
 * (cut by tokens, so the micro-batches carry similar work). Per micro-batch
 * m, stage k receives the (residual, pending sum) state (T_m, 2E) of m from
 * stage k-1 (stage 0 embeds instead), runs its layers, and sends the state
 * on; the last stage keeps the final-normed rows of m that need logits.
 * Once every micro-batch passed, the last stage sends all those rows
 * (NL, E) to stage 0 in one message (after all its receives: no stage ever
 * waits on a send while its peer waits on another send, so the exchange
 * cannot deadlock, with TCP's blocking writes or NCCL's rendezvous alike),
 * and stage 0 runs the lm_head (its vocabulary shard, all-gathered over
 * tensor parallelism) and the sampler.
 *
 * Overlap: stage k computes micro-batch m while stage k+1 computes m-1; the
 * pipeline's fill and drain leave (pp - 1) / (M + pp - 1) of a step idle on
 * each stage (GPipe; M = --pp-micro-batches, default pp). Micro-batches do
 * not cross steps (vLLM's virtual engines, which keep several scheduler
 * steps in flight, are not implemented). */
#include "engine/model_runner_internal.h"
#include "core/dtype.h"
#include "core/profile.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* Cut [0, S) into at most M contiguous runs of sequences with about T/M
 * tokens each; cut[0..n] are the sequence boundaries. Returns n >= 1. */
static int cut_batch(const cllm_batch_host *b, int M, int *cut) {
    int S = b->num_seqs, T = b->num_tokens;
    if (M > S) M = S;
    if (M < 1) M = 1;
    int n = 0;
    cut[0] = 0;
    for (int s = 1; s < S && n + 1 < M; s++) { /* close micro-batch n once it holds its share of tokens */
        int target = (int)((long long)T * (n + 1) / M);
        if (b->query_start_loc[s] >= target) cut[++n] = s;
    }
    cut[++n] = S;
    return n;
}

/* The sub-batch of sequences [s0, s1) of b (host arrays, rebased), and the
 * logits rows of b that fall into it (in row order): their local token
 * index into lidx_local, their row in b into rows. */
typedef struct sub_batch {
    int S, T, t0, NL;
    int32_t *qsl;            /* (S+1) rebased to 0 */
    int32_t *lidx;           /* (NL) local token index */
    int32_t *rows;           /* (NL) row of b */
} sub_batch;

static void make_sub(const cllm_batch_host *b, int s0, int s1, sub_batch *u) {
    u->S = s1 - s0;
    u->t0 = b->query_start_loc[s0];
    u->T = b->query_start_loc[s1] - u->t0;
    for (int s = 0; s <= u->S; s++) u->qsl[s] = b->query_start_loc[s0 + s] - u->t0;
    u->NL = 0;
    for (int i = 0; i < b->num_logits; i++) {
        int t = b->logits_indices[i];
        if (t >= u->t0 && t < u->t0 + u->T) {
            u->lidx[u->NL] = t - u->t0;
            u->rows[u->NL++] = i;
        }
    }
}

cllm_status cllm_runner_pipeline_execute(cllm_runner *r, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                         int32_t *tokens_out, float *logits_out) {
    cllm_backend *be = r->be;
    const cllm_shard *sh = &r->shard;
    bool first = sh->pp_rank == 0, last = sh->pp_rank == sh->pp_size - 1;
    int S = b->num_seqs, NL = b->num_logits, V = r->cfg.vocab_size, E = r->cfg.hidden_size;
    size_t i32 = sizeof(int32_t), as = cllm_dtype_size(be->act);
    int M = r->pp_micro_batches;
    cllm_status st = CLLM_OK;
    int *cut = malloc(sizeof(int) * (size_t)(S + 2));
    int32_t *qsl = malloc(i32 * (size_t)(S + 1)), *lidx = malloc(i32 * (size_t)NL);
    int32_t *rows = malloc(i32 * (size_t)NL), *perm = malloc(i32 * (size_t)NL);
    if (!cut || !qsl || !lidx || !rows || !perm) {
        st = cllm_error(CLLM_ERR_OOM, "out of host memory for the pipeline's micro-batches");
        goto done;
    }
    int n = cut_batch(b, M, cut), Tmax = 0, done_rows = 0;
    for (int m = 0; m < n; m++) {
        int T = b->query_start_loc[cut[m + 1]] - b->query_start_loc[cut[m]];
        if (T > Tmax) Tmax = T;
    }
    CLLM_TRY_GOTO(st, cllm_runner_grow(be, &r->pp_hidden, (size_t)Tmax * 2 * E * as), done);
    CLLM_TRY_GOTO(st, cllm_runner_grow(be, &r->pp_sel, (size_t)NL * E * as), done);
    CLLM_TRY_GOTO(st, cllm_runner_grow(be, &r->ws, r->arch->workspace_bytes(r->model, Tmax, NL, be->act)), done);
    for (int m = 0; m < n; m++) {
        sub_batch u = {.qsl = qsl, .lidx = lidx, .rows = rows};
        make_sub(b, cut[m], cut[m + 1], &u);
        /* rows of b in the order the last stage produces them: perm[i] = where row i lands */
        for (int j = 0; j < u.NL; j++) perm[u.rows[j]] = done_rows + j;
        int s0 = cut[m];
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->ids, b->token_ids + u.t0, (size_t)u.T * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->pos, b->positions + u.t0, (size_t)u.T * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->qsl, u.qsl, (size_t)(u.S + 1) * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->seq_lens, b->seq_lens + s0, (size_t)u.S * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->block_tables, b->block_tables + (size_t)s0 * b->max_blocks_per_seq,
                                          (size_t)u.S * b->max_blocks_per_seq * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->slots, b->slot_mapping + u.t0, (size_t)u.T * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->lidx, u.lidx, (size_t)(u.NL > 0 ? u.NL : 1) * i32), done);
        int max_q = 0, max_len = 0;
        for (int s = 0; s < u.S; s++) {
            int q = u.qsl[s + 1] - u.qsl[s], len = b->seq_lens[s0 + s];
            if (q > max_q) max_q = q;
            if (len > max_len) max_len = len;
        }
        cllm_attn_meta meta = {
            .num_seqs = u.S, .num_tokens = u.T, .max_query_len = max_q, .max_seq_len = max_len,
            .block_size = r->block_size, .max_blocks_per_seq = b->max_blocks_per_seq,
            .query_start_loc = r->qsl.p, .seq_lens = r->seq_lens.p, .block_tables = r->block_tables.p,
            .slot_mapping = r->slots.p,
        };
        size_t state = (size_t)u.T * 2 * E; /* elements of the (residual, pending sum) state */
        if (!first) {
            if (cllm_prof_on) cllm_prof_switch(CLLM_PROF_COMM);
            CLLM_TRY_GOTO(st, cllm_comm_recv(r->pp, r->pp_hidden.p, state, be->act, sh->pp_rank - 1), done);
        }
        cllm_forward_args fa = {
            .num_tokens = u.T, .token_ids = r->ids.p, .positions = r->pos.p, .meta = &meta,
            .k_cache = r->k_cache, .v_cache = r->v_cache, .kv_cache_dtype = r->kv_cache_dtype, .inv_freq = r->inv_freq,
            .logits_indices = r->lidx.p, .num_logits = u.NL, .workspace = r->ws.p, .tp = r->tp,
            .hidden = r->pp_hidden.p, .sel_out = last ? (char *)r->pp_sel.p + (size_t)done_rows * E * as : NULL,
        };
        CLLM_TRY_GOTO(st, r->arch->forward(be, r->model, &fa), done);
        if (!last) {
            if (cllm_prof_on) {
                CLLM_TRY_GOTO(st, be->ops->sync(be), done);
                cllm_prof_switch(CLLM_PROF_COMM);
            }
            CLLM_TRY_GOTO(st, cllm_comm_send(r->pp, r->pp_hidden.p, state, be->act, sh->pp_rank + 1), done);
        }
        done_rows += u.NL;
    }
    if (done_rows != NL) {
        st = cllm_error(CLLM_ERR_INTERNAL, "pipeline: %d of %d logits rows fell into the micro-batches", done_rows, NL);
        goto done;
    }
    if (cllm_prof_on) {
        CLLM_TRY_GOTO(st, be->ops->sync(be), done);
        cllm_prof_switch(CLLM_PROF_COMM);
    }
    if (last && !first) { /* the rows that need logits go back to stage 0, in one message after every receive */
        CLLM_TRY_GOTO(st, cllm_comm_send(r->pp, r->pp_sel.p, (size_t)NL * E, be->act, 0), done);
    } else if (first && !last) {
        CLLM_TRY_GOTO(st, cllm_comm_recv(r->pp, r->pp_sel.p, (size_t)NL * E, be->act, sh->pp_size - 1), done);
    }
    if (first) { /* rows back into the batch's order, the lm_head, the sampler */
        CLLM_TRY_GOTO(st, cllm_runner_put(be, &r->pp_perm, perm, (size_t)NL * i32), done);
        CLLM_TRY_GOTO(st, cllm_runner_grow(be, &r->pp_sel_all, (size_t)NL * E * as), done);
        CLLM_TRY_GOTO(st, be->ops->gather_rows(be, r->pp_sel.p, r->pp_perm.p, NL, E, r->pp_sel_all.p), done);
        CLLM_TRY_GOTO(st, cllm_runner_grow(be, &r->logits, (size_t)NL * V * sizeof(float)), done);
        CLLM_TRY_GOTO(st, r->arch->head(be, r->model, r->pp_sel_all.p, NL, r->logits.p, r->ws.p, r->tp), done);
        if (logits_out)
            CLLM_TRY_GOTO(st, be->ops->d2h(be, logits_out, r->logits.p, (size_t)NL * V * sizeof(float)), done);
        if (tokens_out) {
            CLLM_TRY_GOTO(st, cllm_runner_grow(be, &r->tokens, (size_t)NL * i32), done);
            CLLM_TRY_GOTO(st, cllm_runner_finish_rows(r, NL, a, r->logits.p, r->tokens.p, false, tokens_out), done);
        }
    }
    st = be->ops->sync(be);
done:
    free(cut), free(qsl), free(lidx), free(rows), free(perm);
    return st;
}
