/* The dense Llama-family decoder: llama, mistral, qwen2 (q/k/v bias), qwen3
 * (per-head q_norm/k_norm before RoPE, head_dim independent of E/H).
 * Sources: transformers modeling_llama.py, modeling_mistral.py,
 * modeling_qwen2.py, modeling_qwen3.py; vLLM's fused QKV and gate_up
 * weights and fused residual-add RMSNorm.
 *
 * Tensor parallelism (model/shard.h, Megatron-LM / vLLM layout): each rank
 * holds its query heads, KV heads (or a replica), intermediate rows and
 * vocabulary rows; o_proj and down_proj are row parallel (their bias on rank
 * 0 only) and followed by an all-reduce of the (T, E) partial sums; the
 * embedding is a masked lookup followed by an all-reduce; the lm_head
 * computes this rank's vocabulary columns of the logits, all-gathered and
 * laid side by side. */
#include "model/arch/arch.h"
#include "model/layers/loader.h"
#include "model/layers/moe.h"
#include "core/dtype.h"
#include "core/profile.h"
#include "core/progress.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct llama_layer {
    cllm_weight qkv;      /* ((H + 2Hkv) D, E), bias for qwen2 / attention_bias */
    cllm_weight o;        /* (E, H D) */
    cllm_weight gate_up;  /* (2I, E) */
    cllm_weight down;     /* (E, I) */
    void *ln1, *ln2;      /* (E) input_layernorm, post_attention_layernorm */
    void *q_norm, *k_norm;/* (D) qwen3 */
    float k_scale, v_scale; /* fp8 KV cache scales (self_attn.k_scale / v_scale), 1 when absent */
    bool is_moe;          /* a mixture-of-experts MLP (moe) instead of gate_up / down */
    cllm_moe moe;
} llama_layer;

typedef struct llama_model {
    cllm_model_config cfg;
    cllm_shard sh;
    const cllm_backend_ops *ops; /* the backend's: its MoE experts' workspace size */
    int num_layers;       /* this stage's: layers[i] is decoder layer sh.layer_start + i */
    void *embed;          /* (V, E) */
    void *norm;           /* (E) */
    cllm_weight lm_head;  /* (V, E); data == embed when tied */
    llama_layer *layers;
} llama_model;

/* ------------------------------------------------------------ loading */

/* One per-tensor KV-cache scale (compressed-tensors kv_cache_scheme, as
 * vLLM's BaseKVCacheMethod loads it): model.layers.N.self_attn.k_scale /
 * v_scale, a scalar (shape [] or [1]) F32/BF16/F16; 1.0 when the checkpoint
 * has none (vLLM's default). Used only with --kv-cache-dtype fp8. Errors:
 * CLLM_ERR_UNSUPPORTED (per-head scales), CLLM_ERR_FORMAT (not finite > 0). */
static cllm_status load_kv_scale(cllm_weights *w, const char *name, float *out) {
    *out = 1.0f;
    if (!cllm_weights_has(w, name)) return CLLM_OK;
    const cllm_tensor_info *t;
    CLLM_TRY(cllm_weights_get(w, name, 0, NULL, &t));
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    float v = 0.0f;
    cllm_status st = n == 1 ? cllm_dtype_convert(&v, CLLM_DTYPE_F32, t->data, t->dtype, 1)
                            : cllm_error(CLLM_ERR_UNSUPPORTED, "%s in %s has %lld elements: per-head KV-cache scales "
                                         "are not supported (per-tensor only)", name, t->file, (long long)n);
    if (st == CLLM_OK && (!(v > 0.0f) || isinf(v)))
        st = cllm_error(CLLM_ERR_FORMAT, "%s in %s is %g; a KV-cache scale must be finite and > 0", name, t->file,
                        (double)v);
    cllm_weights_release(w, t);
    if (st == CLLM_OK) *out = v;
    return st;
}

static cllm_status load_layer(cllm_loader *L, const cllm_model_config *c, const cllm_shard *sh, int l, llama_layer *ly) {
    int64_t E = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t H = c->num_attention_heads, Hkv = c->num_key_value_heads;
    int64_t Hl = sh->num_heads, Hkvl = sh->num_kv_heads, Il = sh->intermediate_size, r = sh->tp_rank;
    char n[6][128];
    const char *p = "model.layers";
    snprintf(n[0], 128, "%s.%d.self_attn.q_proj.weight", p, l);
    snprintf(n[1], 128, "%s.%d.self_attn.k_proj.weight", p, l);
    snprintf(n[2], 128, "%s.%d.self_attn.v_proj.weight", p, l);
    snprintf(n[3], 128, "%s.%d.self_attn.q_proj.bias", p, l);
    snprintf(n[4], 128, "%s.%d.self_attn.k_proj.bias", p, l);
    snprintf(n[5], 128, "%s.%d.self_attn.v_proj.bias", p, l);
    const char *qkv_names[3] = {n[0], n[1], n[2]}, *qkv_bias[3] = {n[3], n[4], n[5]};
    int64_t qkv_full[3] = {H * D, Hkv * D, Hkv * D}, qkv_rows[3] = {Hl * D, Hkvl * D, Hkvl * D};
    int64_t qkv_r0[3] = {r * Hl * D, sh->kv_head_start * D, sh->kv_head_start * D};
    bool qkv_has_bias = c->attention_bias || !strcmp(c->model_type, "qwen2");
    CLLM_TRY(cllm_loader_column_parallel(L, 3, qkv_names, qkv_has_bias ? qkv_bias : NULL, qkv_full, qkv_r0, qkv_rows, E, &ly->qkv));

    /* o_proj has a bias under attention_bias in Llama/Mistral/Qwen3, never in Qwen2 */
    snprintf(n[0], 128, "%s.%d.self_attn.o_proj.weight", p, l);
    snprintf(n[1], 128, "%s.%d.self_attn.o_proj.bias", p, l);
    bool o_has_bias = c->attention_bias && strcmp(c->model_type, "qwen2") != 0;
    CLLM_TRY(cllm_loader_row_parallel(L, n[0], o_has_bias ? n[1] : NULL, r == 0, E, H * D, r * Hl * D, Hl * D, &ly->o));

    if ((ly->is_moe = cllm_config_layer_is_moe(c, l))) {
        CLLM_TRY(cllm_moe_load(L, c, sh, l, &ly->moe));
    } else {
        snprintf(n[0], 128, "%s.%d.mlp.gate_proj.weight", p, l);
        snprintf(n[1], 128, "%s.%d.mlp.up_proj.weight", p, l);
        snprintf(n[2], 128, "%s.%d.mlp.down_proj.weight", p, l);
        const char *gu_names[2] = {n[0], n[1]};
        int64_t gu_full[2] = {I, I}, gu_r0[2] = {r * Il, r * Il}, gu_rows[2] = {Il, Il};
        CLLM_TRY(cllm_loader_column_parallel(L, 2, gu_names, NULL, gu_full, gu_r0, gu_rows, E, &ly->gate_up));
        CLLM_TRY(cllm_loader_row_parallel(L, n[2], NULL, false, E, I, r * Il, Il, &ly->down));
    }

    snprintf(n[0], 128, "%s.%d.self_attn.k_scale", p, l);
    snprintf(n[1], 128, "%s.%d.self_attn.v_scale", p, l);
    CLLM_TRY(load_kv_scale(L->w, n[0], &ly->k_scale));
    CLLM_TRY(load_kv_scale(L->w, n[1], &ly->v_scale));

    snprintf(n[0], 128, "%s.%d.input_layernorm.weight", p, l);
    snprintf(n[1], 128, "%s.%d.post_attention_layernorm.weight", p, l);
    CLLM_TRY(cllm_loader_vec(L, n[0], E, &ly->ln1));
    CLLM_TRY(cllm_loader_vec(L, n[1], E, &ly->ln2));
    if (c->qk_norm) {
        snprintf(n[0], 128, "%s.%d.self_attn.q_norm.weight", p, l);
        snprintf(n[1], 128, "%s.%d.self_attn.k_norm.weight", p, l);
        CLLM_TRY(cllm_loader_vec(L, n[0], D, &ly->q_norm));
        CLLM_TRY(cllm_loader_vec(L, n[1], D, &ly->k_norm));
    }
    return CLLM_OK;
}

static void weight_free(cllm_backend *be, cllm_weight *w) {
    if (w->data) be->ops->free(be, w->data);
    if (w->bias) be->ops->free(be, w->bias);
    if (w->scale) be->ops->free(be, w->scale);
}

static void llama_destroy(cllm_backend *be, void *model) {
    llama_model *m = model;
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->num_layers; l++) {
            llama_layer *ly = &m->layers[l];
            weight_free(be, &ly->qkv);
            weight_free(be, &ly->o);
            weight_free(be, &ly->gate_up);
            weight_free(be, &ly->down);
            cllm_moe_free(be, &ly->moe);
            void *v[4] = {ly->ln1, ly->ln2, ly->q_norm, ly->k_norm};
            for (int i = 0; i < 4; i++)
                if (v[i]) be->ops->free(be, v[i]);
        }
        free(m->layers);
    }
    if (m->lm_head.data && m->lm_head.data != m->embed) be->ops->free(be, m->lm_head.data);
    if (m->embed) be->ops->free(be, m->embed);
    if (m->norm) be->ops->free(be, m->norm);
    free(m);
}

static cllm_status llama_load(cllm_backend *be, const cllm_model_config *c, const cllm_shard *sh, cllm_weights *w,
                              bool show, void **model, cllm_arch_info *info) {
    *model = NULL;
    memset(info, 0, sizeof *info);
    if (c->head_dim % 2)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "head_dim %d is odd; rotary embeddings need an even head_dim",
                          c->head_dim);
    cllm_status st = CLLM_OK;
    cllm_progress *bar = NULL;
    llama_model *m = calloc(1, sizeof *m);
    if (!m) return cllm_error(CLLM_ERR_OOM, "out of memory");
    m->cfg = *c;
    m->sh = *sh;
    m->ops = be->ops;
    int nl = sh->layer_end - sh->layer_start;
    m->num_layers = nl;
    m->layers = calloc((size_t)(nl > 0 ? nl : 1), sizeof *m->layers);
    if (!m->layers) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    bar = cllm_progress_create("loading weights (layers)", (uint64_t)nl, false, show);
    cllm_loader L = {be, w, info, &c->quant};
    int64_t E = c->hidden_size;
    bool first = sh->pp_rank == 0, last = sh->pp_rank == sh->pp_size - 1;
    /* stage 0: embedding and lm_head (sampling stays on rank 0); the last stage: the final norm */
    if (first) CLLM_TRY_GOTO(st, cllm_loader_vocab(&L, sh, "model.embed_tokens.weight", E, &m->embed), fail);
    for (int l = sh->layer_start; l < sh->layer_end; l++) {
        cllm_progress_update(bar, (uint64_t)(l - sh->layer_start), 0);
        CLLM_TRY_GOTO(st, load_layer(&L, c, sh, l, &m->layers[l - sh->layer_start]), fail);
    }
    if (last) CLLM_TRY_GOTO(st, cllm_loader_vec(&L, "model.norm.weight", E, &m->norm), fail);
    m->lm_head.n = sh->vocab_per_rank;
    m->lm_head.k = E;
    if (first && c->tie_word_embeddings) m->lm_head.data = m->embed;
    else if (first) CLLM_TRY_GOTO(st, cllm_loader_vocab(&L, sh, "lm_head.weight", E, &m->lm_head.data), fail);
    cllm_progress_update(bar, (uint64_t)nl, 0);
    cllm_progress_finish(bar);
    *model = m;
    return CLLM_OK;
fail:
    cllm_progress_finish(bar);
    llama_destroy(be, m);
    return st;
}

/* ------------------------------------------------------------ forward */

#define WS_ALIGN 256
static size_t align_up(size_t n) { return (n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

/* Workspace carve-up, in this order (elements of act dtype unless noted;
 * local sizes of the shard): residual (T,E), normed (T,E), tmp (T,E), qkv
 * (T,(Hl+2Hkvl)D), attn (T,Hl D), gate_up (T,2Il), act (T,Il), sel
 * (num_logits,E); with tp > 1, the lm_head's local logits (num_logits,Vp) f32
 * and their all-gather (tp,num_logits,Vp) f32. */
static size_t llama_workspace_bytes(const void *model, int T, int num_logits, cllm_dtype act) {
    const llama_model *m = model;
    const cllm_model_config *c = &m->cfg;
    const cllm_shard *sh = &m->sh;
    size_t a = cllm_dtype_size(act), E = (size_t)c->hidden_size, D = (size_t)c->head_dim;
    size_t qkv = (size_t)(sh->num_heads + 2 * sh->num_kv_heads) * D;
    size_t HD = (size_t)sh->num_heads * D, I = (size_t)sh->intermediate_size;
    size_t t = (size_t)T, nl = (size_t)num_logits;
    size_t b = align_up(t * E * a) * 3 + align_up(t * qkv * a) + align_up(t * HD * a) + align_up(t * 2 * I * a) +
               align_up(t * I * a) + align_up(nl * E * a);
    if (c->num_experts > 0) b += align_up(cllm_moe_workspace_bytes(m->ops, c, sh, act, T)); /* before the logits scratch */
    if (sh->tp_size > 1)
        b += align_up(nl * (size_t)sh->vocab_per_rank * 4) * (1 + (size_t)sh->tp_size);
    return b;
}

/* Sum the (n) partial results of a row-parallel layer over the
 * tensor-parallel group (in place). */
static cllm_status tp_all_reduce(cllm_backend *be, cllm_comm *tp, void *x, size_t n) {
    if (!tp) return CLLM_OK;
    return cllm_comm_all_reduce(tp, x, x, n, be->act, CLLM_REDUCE_SUM);
}

/* Profiling (core/profile.h): a category switch on this function's backend. */
#define PROF(cat) CLLM_PROF_SWITCH(be, cat)

/* lm_head of this rank's vocabulary rows over sel (NL, E): logits (NL, V)
 * f32; with tensor parallelism the shards' columns are all-gathered and laid
 * side by side. ws: the forward's workspace (its logits scratch part). */
static cllm_status head(cllm_backend *be, llama_model *m, const void *sel, int NL, float *logits, float *lg_local,
                        float *lg_all, cllm_comm *tp) {
    const cllm_shard *sh = &m->sh;
    const cllm_backend_ops *op = be->ops;
    int Vp = sh->vocab_per_rank;
    PROF(CLLM_PROF_GEMM);
    if (!tp) return op->linear(be, sel, NL, &m->lm_head, logits, CLLM_DTYPE_F32);
    CLLM_TRY(op->linear(be, sel, NL, &m->lm_head, lg_local, CLLM_DTYPE_F32));
    PROF(CLLM_PROF_COMM);
    CLLM_TRY(cllm_comm_all_gather(tp, lg_local, lg_all, (size_t)NL * Vp, CLLM_DTYPE_F32));
    PROF(CLLM_PROF_OTHER);
    for (int r = 0; r < sh->tp_size; r++) {
        int cols = sh->vocab_size - r * Vp < Vp ? sh->vocab_size - r * Vp : Vp;
        if (cols <= 0) break;
        CLLM_TRY(op->copy2d(be, logits + (size_t)r * Vp, (size_t)sh->vocab_size * 4, lg_all + (size_t)r * NL * Vp,
                            (size_t)Vp * 4, (size_t)cols * 4, (size_t)NL));
    }
    return CLLM_OK;
}

/* The logits scratch of the workspace (after the forward's buffers for T
 * tokens): lg_local (NL, Vp) and lg_all (tp, NL, Vp), f32. */
static void logits_scratch(const llama_model *m, void *ws, int T, int NL, cllm_dtype act, float **lg_local,
                           float **lg_all) {
    const cllm_shard *sh = &m->sh;
    size_t base = llama_workspace_bytes(m, T, NL, act);
    if (sh->tp_size > 1) base -= align_up((size_t)NL * (size_t)sh->vocab_per_rank * 4) * (1 + (size_t)sh->tp_size);
    *lg_local = (float *)((char *)ws + base);
    *lg_all = (float *)((char *)ws + base + align_up((size_t)NL * (size_t)sh->vocab_per_rank * 4));
}

static cllm_status llama_forward(cllm_backend *be, void *model, const cllm_forward_args *a) {
    llama_model *m = model;
    const cllm_model_config *c = &m->cfg;
    const cllm_shard *sh = &m->sh;
    const cllm_backend_ops *op = be->ops;
    int T = a->num_tokens, E = c->hidden_size, H = sh->num_heads, Hkv = sh->num_kv_heads;
    int D = c->head_dim, I = sh->intermediate_size, Vp = sh->vocab_per_rank, NQ = (H + 2 * Hkv) * D;
    int tps = sh->tp_size, NL = a->num_logits;
    bool first = sh->pp_rank == 0, last = sh->pp_rank == sh->pp_size - 1;
    cllm_comm *tp = tps > 1 ? a->tp : NULL;
    if (tps > 1 && !tp) return cllm_error(CLLM_ERR_INVALID_ARG, "forward: a tensor-parallel shard needs its group");
    if (sh->pp_size > 1 && (!a->hidden || (last && !a->sel_out)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "forward: a pipeline stage needs its hidden-state buffers");
    size_t as = cllm_dtype_size(be->act);
    cllm_dtype act = be->act;
    float eps = c->rms_norm_eps;
    char *p = a->workspace;
    void *residual = p; p += align_up((size_t)T * E * as);
    void *normed = p;   p += align_up((size_t)T * E * as);
    void *tmp = p;      p += align_up((size_t)T * E * as);
    char *qkv = p;      p += align_up((size_t)T * NQ * as);
    void *attn = p;     p += align_up((size_t)T * H * D * as);
    void *gu = p;       p += align_up((size_t)T * 2 * I * as);
    void *mlp = p;      p += align_up((size_t)T * I * as);
    void *sel = p;      p += align_up((size_t)NL * E * as);
    void *moe_ws = p;   /* the MoE block's workspace (cllm_moe_workspace_bytes) */
    float *lg_local = NULL, *lg_all = NULL; /* the lm_head's all-gather (tensor parallelism only) */
    if (tp) logits_scratch(m, a->workspace, T, NL, act, &lg_local, &lg_all);
    char *q = qkv, *k = qkv + (size_t)H * D * as, *v = qkv + (size_t)(H + Hkv) * D * as;
    if (a->hidden) { /* pipeline: the (residual, pending sum) state lives in the stages' exchange buffer */
        residual = a->hidden;
        tmp = (char *)a->hidden + (size_t)T * E * as;
    }

    if (first) {
        PROF(CLLM_PROF_OTHER);
        CLLM_TRY(op->embedding(be, a->token_ids, T, m->embed, sh->vocab_start, Vp, E, residual));
        if (tp) {
            PROF(CLLM_PROF_COMM);
            CLLM_TRY(tp_all_reduce(be, tp, residual, (size_t)T * E));
        }
    }
    for (int l = sh->layer_start; l < sh->layer_end; l++) {
        int li = l - sh->layer_start; /* this stage's layer index: weights and KV cache */
        llama_layer *ly = &m->layers[li];
        PROF(CLLM_PROF_OTHER);
        if (l == 0) CLLM_TRY(op->rmsnorm(be, residual, NULL, ly->ln1, T, E, eps, normed));
        else CLLM_TRY(op->rmsnorm(be, tmp, residual, ly->ln1, T, E, eps, normed));
        PROF(CLLM_PROF_GEMM);
        CLLM_TRY(op->linear(be, normed, T, &ly->qkv, qkv, act));
        PROF(CLLM_PROF_OTHER);
        cllm_kv_quant kq = {a->kv_cache_dtype, ly->k_scale, ly->v_scale};
        const cllm_kv_quant *kvq = a->kv_cache_dtype == CLLM_DTYPE_F8_E4M3 ? &kq : NULL;
        if (op->qk_norm_rope_kv_write && D <= 256) { /* one op: [q/k norm], rope, KV write */
            CLLM_TRY(op->qk_norm_rope_kv_write(be, q, k, v, NQ, NQ, a->positions, T, H, Hkv, D,
                                               c->qk_norm ? ly->q_norm : NULL, c->qk_norm ? ly->k_norm : NULL, eps,
                                               a->inv_freq, a->meta, a->k_cache[li], a->v_cache[li], kvq));
            PROF(CLLM_PROF_ATTN);
        } else {
            if (c->qk_norm) {
                CLLM_TRY(op->head_rmsnorm(be, q, T, H, D, NQ, ly->q_norm, eps));
                CLLM_TRY(op->head_rmsnorm(be, k, T, Hkv, D, NQ, ly->k_norm, eps));
            }
            CLLM_TRY(op->rope(be, q, k, a->positions, T, H, Hkv, D, NQ, NQ, a->inv_freq));
            PROF(CLLM_PROF_ATTN);
            CLLM_TRY(op->kv_write(be, k, v, NQ, NQ, a->meta, Hkv, D, a->k_cache[li], a->v_cache[li], kvq));
        }
        if (a->attn_decode && a->attn_prefill) { /* mixed batch: decode rows, then the prefill chunks */
            size_t Td = (size_t)a->attn_decode->num_tokens;
            CLLM_TRY(op->attention(be, q, NQ, a->k_cache[li], a->v_cache[li], a->attn_decode, H, Hkv, D,
                                   1.0f / sqrtf((float)D), attn, kvq));
            CLLM_TRY(op->attention(be, q + Td * NQ * as, NQ, a->k_cache[li], a->v_cache[li], a->attn_prefill, H,
                                   Hkv, D, 1.0f / sqrtf((float)D), (char *)attn + Td * H * D * as, kvq));
        } else {
            CLLM_TRY(op->attention(be, q, NQ, a->k_cache[li], a->v_cache[li], a->meta, H, Hkv, D,
                                   1.0f / sqrtf((float)D), attn, kvq));
        }
        PROF(CLLM_PROF_GEMM);
        CLLM_TRY(op->linear(be, attn, T, &ly->o, tmp, act));
        if (tp) {
            PROF(CLLM_PROF_COMM);
            CLLM_TRY(tp_all_reduce(be, tp, tmp, (size_t)T * E));
        }
        PROF(CLLM_PROF_OTHER);
        CLLM_TRY(op->rmsnorm(be, tmp, residual, ly->ln2, T, E, eps, normed));
        PROF(CLLM_PROF_GEMM); /* the MoE block switches to its own categories (moe_route, moe_experts) */
        if (ly->is_moe) {
            CLLM_TRY(cllm_moe_forward(be, &ly->moe, normed, T, E, tmp, moe_ws, tp));
            if (ly->moe.ep) continue; /* expert parallelism returns the whole sum on every rank */
        } else {
            CLLM_TRY(op->linear(be, normed, T, &ly->gate_up, gu, act));
            PROF(CLLM_PROF_OTHER);
            CLLM_TRY(op->silu_mul(be, gu, T, I, mlp));
            PROF(CLLM_PROF_GEMM);
            CLLM_TRY(op->linear(be, mlp, T, &ly->down, tmp, act));
        }
        if (tp) {
            PROF(CLLM_PROF_COMM);
            CLLM_TRY(tp_all_reduce(be, tp, tmp, (size_t)T * E));
        }
    }
    if (!last) return CLLM_OK; /* the state goes on to the next stage */
    PROF(CLLM_PROF_OTHER);
    CLLM_TRY(op->rmsnorm(be, tmp, residual, m->norm, T, E, eps, normed));
    if (sh->pp_size > 1) /* stage 0 holds the lm_head: the rows that need logits go back to it */
        return NL > 0 ? op->gather_rows(be, normed, a->logits_indices, NL, E, a->sel_out) : CLLM_OK;
    CLLM_TRY(op->gather_rows(be, normed, a->logits_indices, NL, E, sel));
    CLLM_TRY(head(be, m, sel, NL, a->logits, lg_local, lg_all, tp));
    PROF(CLLM_PROF_SAMPLE); /* the runner's sampling follows; the caller closes it */
    return CLLM_OK;
}

static void llama_expert_stats(const void *model, uint64_t *routed, uint64_t *computed) {
    const llama_model *m = model;
    for (int l = 0; l < m->num_layers; l++) {
        const cllm_moe *moe = &m->layers[l].moe;
        if (!m->layers[l].is_moe) continue;
        for (int e = 0; e < moe->num_experts; e++) routed[e] += moe->tokens_per_expert[e];
        *computed += moe->rows_computed;
    }
}

/* Stage 0 of a pipeline: the lm_head over the last stage's rows sel (NL, E). */
static cllm_status llama_head(cllm_backend *be, void *model, const void *sel, int num_logits, float *logits,
                              void *workspace, cllm_comm *tp) {
    llama_model *m = model;
    float *lg_local, *lg_all;
    logits_scratch(m, workspace, 0, num_logits, be->act, &lg_local, &lg_all);
    CLLM_TRY(head(be, m, sel, num_logits, logits, lg_local, lg_all, m->sh.tp_size > 1 ? tp : NULL));
    PROF(CLLM_PROF_SAMPLE);
    return CLLM_OK;
}

const cllm_arch cllm_arch_llama_family = {
    .model_type = "llama",
    .load = llama_load,
    .destroy = llama_destroy,
    .workspace_bytes = llama_workspace_bytes,
    .forward = llama_forward,
    .head = llama_head,
    .expert_stats = llama_expert_stats,
};
