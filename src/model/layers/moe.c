/* The mixture-of-experts block (see moe.h). */
#include "model/layers/moe.h"
#include "core/dtype.h"
#include "core/profile.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 256
static size_t al(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* The backend's memory is the host's (CPU): routing can be counted in place. */
/* Profiling (core/profile.h). */
#define PROF(cat) CLLM_PROF_SWITCH(be, cat)

static bool host_memory(cllm_backend *be) {
    return be->ops->device_name && !strcmp(be->ops->device_name(be), "cpu");
}

void cllm_moe_free(cllm_backend *be, cllm_moe *m) {
    if (!m) return;
    if (m->router.data) be->ops->free(be, m->router.data);
    if (m->gate_up_all) be->ops->free(be, m->gate_up_all);
    if (m->down_all) be->ops->free(be, m->down_all);
    free(m->gate_up);
    free(m->down);
    free(m->tokens_per_expert);
    memset(m, 0, sizeof *m);
}

cllm_status cllm_moe_load(cllm_loader *L, const cllm_model_config *c, const cllm_shard *sh, int l, cllm_moe *m) {
    memset(m, 0, sizeof *m);
    cllm_backend *be = L->be;
    if (!be->ops->moe_route || !be->ops->moe_experts || !be->ops->moe_combine || !be->ops->moe_workspace_bytes)
        return cllm_error(CLLM_ERR_UNSUPPORTED,
                          "the %s backend has no mixture-of-experts kernels (model_type %s); run it with --device "
                          "cpu", be->ops->name, c->model_type);
    /* the CUDA kernels' limits (backend/cuda/moe.cu), said at load time rather than at the first forward */
    if (!strcmp(be->ops->name, "cuda") &&
        (c->num_experts > 512 || c->num_experts_per_tok > 32 || sh->num_local_experts > 1024 ||
         c->hidden_size % 8 || sh->moe_intermediate_size % 8))
        return cllm_error(CLLM_ERR_UNSUPPORTED,
                          "the CUDA mixture-of-experts kernels support at most 512 experts, top-k 32 and 1024 experts "
                          "per rank, with hidden size and (per-rank) moe_intermediate_size multiples of 8; this model "
                          "has %d experts, top-k %d, %d per rank, hidden %d, intermediate %d: run it with --device cpu",
                          c->num_experts, c->num_experts_per_tok, sh->num_local_experts, c->hidden_size,
                          sh->moe_intermediate_size);
    bool mixtral = !strcmp(c->model_type, "mixtral");
    const char *prefix = mixtral ? "block_sparse_moe" : "mlp";
    const char *gn = mixtral ? "w1" : "gate_proj", *un = mixtral ? "w3" : "up_proj", *dn = mixtral ? "w2" : "down_proj";
    int64_t E = c->hidden_size, NE = c->num_experts, Ifull = c->moe_intermediate_size, I = sh->moe_intermediate_size;
    int nl = sh->num_local_experts;
    m->num_experts = (int)NE;
    m->top_k = c->num_experts_per_tok;
    m->num_local = nl;
    m->expert_start = sh->expert_start;
    m->I = (int)I;
    m->renormalize = c->norm_topk_prob;
    m->ep = sh->ep_size > 1;
    m->tokens_per_expert = calloc((size_t)NE, sizeof *m->tokens_per_expert);
    m->gate_up = calloc((size_t)nl, sizeof *m->gate_up);
    m->down = calloc((size_t)nl, sizeof *m->down);
    if (!m->tokens_per_expert || !m->gate_up || !m->down) return cllm_error(CLLM_ERR_OOM, "out of memory");
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s.gate.weight", l, prefix);
    int64_t rshape[2] = {NE, E};
    m->router.n = NE;
    m->router.k = E;
    CLLM_TRY(cllm_loader_alloc(L, (size_t)(NE * E), &m->router.data));
    CLLM_TRY(cllm_loader_put(L, name, 2, rshape, NULL, m->router.data, 0));
    CLLM_TRY(cllm_loader_alloc(L, (size_t)nl * 2 * I * E, &m->gate_up_all));
    CLLM_TRY(cllm_loader_alloc(L, (size_t)nl * E * I, &m->down_all));
    size_t as = cllm_dtype_size(be->act);
    int64_t r0 = m->ep ? 0 : (int64_t)sh->tp_rank * I; /* tensor parallelism slices every expert */
    for (int e = 0; e < nl; e++) {
        int g = sh->expert_start + e;
        size_t gu_off = (size_t)e * 2 * I * E, d_off = (size_t)e * E * I;
        int64_t gshape[2] = {Ifull, E}, dshape[2] = {E, Ifull};
        cllm_slice rows = {r0, I, 0, E}, cols = {0, E, r0, I};
        snprintf(name, sizeof name, "model.layers.%d.%s.experts.%d.%s.weight", l, prefix, g, gn);
        CLLM_TRY(cllm_loader_put(L, name, 2, gshape, &rows, m->gate_up_all, gu_off));
        snprintf(name, sizeof name, "model.layers.%d.%s.experts.%d.%s.weight", l, prefix, g, un);
        CLLM_TRY(cllm_loader_put(L, name, 2, gshape, &rows, m->gate_up_all, gu_off + (size_t)(I * E)));
        snprintf(name, sizeof name, "model.layers.%d.%s.experts.%d.%s.weight", l, prefix, g, dn);
        CLLM_TRY(cllm_loader_put(L, name, 2, dshape, &cols, m->down_all, d_off));
        m->gate_up[e] = (cllm_weight){.data = (char *)m->gate_up_all + gu_off * as, .n = 2 * I, .k = E};
        m->down[e] = (cllm_weight){.data = (char *)m->down_all + d_off * as, .n = E, .k = I};
    }
    return CLLM_OK;
}

/* Expert parallelism sizes for T tokens: share Ts per rank, and the most
 * (token, expert) rows any rank can receive. */
static void ep_sizes(int T, int k, int P, size_t *Ts, size_t *R) {
    *Ts = ((size_t)T + (size_t)P - 1) / (size_t)P;
    *R = *Ts * (size_t)P * (size_t)k;
}

size_t cllm_moe_workspace_bytes(const cllm_backend_ops *ops, const cllm_model_config *c, const cllm_shard *sh,
                                cllm_dtype act, int T) {
    if (c->num_experts <= 0) return 0;
    size_t a = cllm_dtype_size(act), E = (size_t)c->hidden_size, NE = (size_t)c->num_experts;
    size_t k = (size_t)c->num_experts_per_tok;
    int I = sh->moe_intermediate_size;
    if (sh->ep_size <= 1) { /* router logits, ids, weights; the experts' own workspace */
        size_t t = (size_t)T;
        return al(t * NE * 4) + 2 * al(t * k * 4) + ops->moe_workspace_bytes(T, (int)k, (int)E, I);
    }
    size_t Ts, R;
    ep_sizes(T, (int)k, sh->ep_size, &Ts, &R);
    return al(Ts * NE * 4) + 2 * al(Ts * k * 4) /* logits, ids, weights of this rank's share */
           + 2 * al(Ts * k * E * a)            /* rows sent, results back */
           + 2 * al(R * E * a)                 /* rows received, expert outputs */
           + 2 * al(R * 4) + 2 * al(Ts * k * 4) /* received ids, ones; send order, combine rows */
           + al(Ts * E * a) + al(Ts * (size_t)sh->ep_size * E * a) /* this rank's output, all ranks' */
           + ops->moe_workspace_bytes((int)R, 1, (int)E, I); /* the experts' own, over the rows received */
}

static void count_tokens(cllm_moe *m, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < m->num_experts) m->tokens_per_expert[ids[i]]++;
}

static cllm_status forward_tp(cllm_backend *be, cllm_moe *m, const void *x, int T, int E, void *out, char *ws) {
    const cllm_backend_ops *op = be->ops;
    size_t k = (size_t)m->top_k;
    float *logits = (float *)ws; ws += al((size_t)T * m->num_experts * 4);
    int32_t *ids = (int32_t *)ws; ws += al((size_t)T * k * 4);
    float *w = (float *)ws; ws += al((size_t)T * k * 4);
    PROF(CLLM_PROF_MOE_ROUTE);
    CLLM_TRY(op->linear(be, x, T, &m->router, logits, CLLM_DTYPE_F32));
    CLLM_TRY(op->moe_route(be, logits, T, m->num_experts, m->top_k, m->renormalize, ids, w));
    if (host_memory(be)) count_tokens(m, ids, (size_t)T * k);
    m->rows_computed += (uint64_t)T * k; /* a slice of every assignment's expert */
    PROF(CLLM_PROF_MOE_EXPERTS);
    return op->moe_experts(be, x, T, E, ids, w, m->top_k, m->gate_up, m->down, m->expert_start, m->num_local, m->I,
                           ws, out);
}

/* Expert parallelism (see moe.h): dispatch, experts, combine, all-gather. */
static cllm_status forward_ep(cllm_backend *be, cllm_moe *m, const void *x, int T, int E, void *out, char *ws,
                              cllm_comm *tp) {
    const cllm_backend_ops *op = be->ops;
    int P = cllm_comm_size(tp), r = cllm_comm_rank(tp), k = m->top_k, NL = m->num_local;
    size_t as = cllm_dtype_size(be->act), Ts, Rmax;
    ep_sizes(T, k, P, &Ts, &Rmax);
    int t0 = (int)((size_t)r * Ts), n = T - t0 < (int)Ts ? T - t0 : (int)Ts;
    if (n < 0) n = 0;
    size_t A = (size_t)n * (size_t)k; /* this rank's (token, expert) assignments */
    float *logits = (float *)ws; ws += al(Ts * m->num_experts * 4);
    int32_t *ids = (int32_t *)ws; ws += al(Ts * k * 4);
    float *w = (float *)ws; ws += al(Ts * k * 4);
    char *xs = ws; ws += al(Ts * k * E * as);
    char *ys = ws; ws += al(Ts * k * E * as);
    char *xr = ws; ws += al(Rmax * E * as);
    char *yr = ws; ws += al(Rmax * E * as);
    int32_t *rids = (int32_t *)ws; ws += al(Rmax * 4);
    float *ones = (float *)ws; ws += al(Rmax * 4);
    int32_t *sidx = (int32_t *)ws; ws += al(Ts * k * 4);
    int32_t *rows_of = (int32_t *)ws; ws += al(Ts * k * 4);
    char *mine = ws; ws += al(Ts * E * as);
    char *all = ws; ws += al(Ts * (size_t)P * E * as);
    cllm_status st = CLLM_OK;
    int32_t *h_ids = malloc(sizeof(int32_t) * (A + 1)), *h_sidx = malloc(sizeof(int32_t) * (A + 1));
    int32_t *h_sids = malloc(sizeof(int32_t) * (A + 1)), *h_rows = malloc(sizeof(int32_t) * (A + 1));
    int64_t *cnt = calloc((size_t)P * (P + 1), sizeof(int64_t));
    size_t *sc = calloc((size_t)P * 4, sizeof(size_t)), *sd = sc + P, *rc = sc + 2 * P, *rd = sc + 3 * P;
    size_t *scE = calloc((size_t)P * 4, sizeof(size_t)), *sdE = scE + P, *rcE = scE + 2 * P, *rdE = scE + 3 * P;
    float *h_ones = NULL;
    if (!h_ids || !h_sidx || !h_sids || !h_rows || !cnt || !sc || !scE) {
        st = cllm_error(CLLM_ERR_OOM, "moe: out of host memory for the expert-parallel dispatch");
        goto done;
    }
    /* 1. route this rank's share of the tokens */
    if (cllm_prof_on) {
        CLLM_TRY_GOTO(st, be->ops->sync(be), done);
        cllm_prof_switch(CLLM_PROF_MOE_ROUTE);
    }
    if (n > 0) {
        CLLM_TRY_GOTO(st, op->linear(be, (const char *)x + (size_t)t0 * E * as, n, &m->router, logits, CLLM_DTYPE_F32),
                      done);
        CLLM_TRY_GOTO(st, op->moe_route(be, logits, n, m->num_experts, k, m->renormalize, ids, w), done);
        CLLM_TRY_GOTO(st, op->d2h(be, h_ids, ids, A * sizeof(int32_t)), done);
    }
    count_tokens(m, h_ids, A);
    if (cllm_prof_on) {
        CLLM_TRY_GOTO(st, be->ops->sync(be), done);
        cllm_prof_switch(CLLM_PROF_MOE_EXPERTS);
    }
    /* 2. the (token, expert) rows in the order of their destination ranks (stable) */
    int64_t *mycnt = cnt + (size_t)P * P; /* rows this rank sends to each rank */
    for (size_t a = 0; a < A; a++) mycnt[h_ids[a] / NL]++;
    size_t pos[64];
    for (int p = 0, o = 0; p < P; p++) pos[p] = (size_t)o, o += (int)mycnt[p];
    for (size_t a = 0; a < A; a++) {
        size_t at = pos[h_ids[a] / NL]++;
        h_sidx[at] = t0 + (int32_t)(a / (size_t)k); /* the token's row of x */
        h_sids[at] = h_ids[a];
        h_rows[a] = (int32_t)at;                    /* where assignment a's result comes back */
    }
    /* 3. counts first: every rank learns what it receives */
    CLLM_TRY_GOTO(st, cllm_comm_all_gather(tp, mycnt, cnt, (size_t)P, CLLM_DTYPE_I64), done);
    size_t R = 0;
    for (int p = 0, so = 0; p < P; p++) {
        sc[p] = (size_t)cnt[(size_t)r * P + p];
        sd[p] = (size_t)so, so += (int)sc[p];
        rc[p] = (size_t)cnt[(size_t)p * P + r];
        rd[p] = R, R += rc[p];
        scE[p] = sc[p] * E, sdE[p] = sd[p] * E, rcE[p] = rc[p] * E, rdE[p] = rd[p] * E;
    }
    /* 4. dispatch the rows and their expert ids */
    if (A) {
        CLLM_TRY_GOTO(st, op->h2d(be, sidx, h_sidx, A * sizeof(int32_t)), done);
        CLLM_TRY_GOTO(st, op->gather_rows(be, x, sidx, (int)A, E, xs), done);
        CLLM_TRY_GOTO(st, op->h2d(be, rows_of, h_sids, A * sizeof(int32_t)), done); /* staging for the ids */
    }
    CLLM_TRY_GOTO(st, cllm_comm_all_to_allv(tp, xs, scE, sdE, xr, rcE, rdE, be->act), done);
    CLLM_TRY_GOTO(st, cllm_comm_all_to_allv(tp, rows_of, sc, sd, rids, rc, rd, CLLM_DTYPE_I32), done);
    /* 5. this rank's experts over what it received (each row one expert, weight 1) */
    m->rows_computed += R;
    if (R) {
        if (!(h_ones = malloc(sizeof(float) * R))) { st = cllm_error(CLLM_ERR_OOM, "moe: out of host memory"); goto done; }
        for (size_t i = 0; i < R; i++) h_ones[i] = 1.0f;
        CLLM_TRY_GOTO(st, op->h2d(be, ones, h_ones, R * sizeof(float)), done);
        CLLM_TRY_GOTO(st, op->moe_experts(be, xr, (int)R, E, rids, ones, 1, m->gate_up, m->down, m->expert_start, NL,
                                          m->I, ws, yr), done);
    }
    /* 6. results back, then each token's weighted sum of its k experts */
    CLLM_TRY_GOTO(st, cllm_comm_all_to_allv(tp, yr, rcE, rdE, ys, scE, sdE, be->act), done);
    if (n > 0) {
        CLLM_TRY_GOTO(st, op->h2d(be, rows_of, h_rows, A * sizeof(int32_t)), done);
        CLLM_TRY_GOTO(st, op->moe_combine(be, ys, rows_of, w, n, k, E, mine), done);
    }
    /* 7. every rank gets every token (the next attention is tensor parallel) */
    CLLM_TRY_GOTO(st, cllm_comm_all_gather(tp, mine, all, Ts * E, be->act), done);
    CLLM_TRY_GOTO(st, op->copy2d(be, out, (size_t)E * as, all, (size_t)E * as, (size_t)E * as, (size_t)T), done);
done:
    free(h_ids), free(h_sidx), free(h_sids), free(h_rows), free(cnt), free(sc), free(scE), free(h_ones);
    return st;
}

cllm_status cllm_moe_forward(cllm_backend *be, cllm_moe *m, const void *x, int T, int E, void *out, void *workspace,
                             cllm_comm *tp) {
    if (T <= 0) return CLLM_OK;
    if (m->ep && tp && cllm_comm_size(tp) > 1) {
        if (cllm_comm_size(tp) > 64)
            return cllm_error(CLLM_ERR_INVALID_ARG, "moe: expert parallelism over %d ranks (at most 64)",
                              cllm_comm_size(tp));
        return forward_ep(be, m, x, T, E, out, workspace, tp);
    }
    return forward_tp(be, m, x, T, E, out, workspace);
}
