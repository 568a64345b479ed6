/* The dense Llama-family decoder: llama, mistral, qwen2 (q/k/v bias), qwen3
 * (per-head q_norm/k_norm before RoPE, head_dim independent of E/H).
 * Sources: transformers modeling_llama.py, modeling_mistral.py,
 * modeling_qwen2.py, modeling_qwen3.py; vLLM's fused QKV and gate_up
 * weights and fused residual-add RMSNorm. */
#include "model/arch/arch.h"
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
} llama_layer;

typedef struct llama_model {
    cllm_model_config cfg;
    void *embed;          /* (V, E) */
    void *norm;           /* (E) */
    cllm_weight lm_head;  /* (V, E); data == embed when tied */
    llama_layer *layers;
} llama_model;

/* ------------------------------------------------------------ loading */

typedef struct loader {
    cllm_backend *be;
    cllm_weights *w;
    cllm_arch_info *info;
} loader;

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Upload tensor `name` (shape-checked) into dst at element offset off. */
static cllm_status put(loader *L, const char *name, int ndim, const int64_t *shape, void *dst, size_t off) {
    const cllm_tensor_info *t;
    CLLM_TRY(cllm_weights_get(L->w, name, ndim, shape, &t));
    cllm_status st = L->be->ops->upload(L->be, dst, off, t->data, t->dtype, (size_t)numel(ndim, shape));
    cllm_weights_release(L->w, t);
    if (st != CLLM_OK) return cllm_error_wrap(st, "uploading %s", name);
    L->info->num_params += numel(ndim, shape);
    return CLLM_OK;
}

static cllm_status alloc_act(loader *L, size_t n, void **out) {
    size_t bytes = n * cllm_dtype_size(L->be->act);
    CLLM_TRY(L->be->ops->alloc(L->be, bytes, out));
    L->info->weight_bytes += bytes;
    return CLLM_OK;
}

/* A 1-D tensor of length n: name. */
static cllm_status load_vec(loader *L, const char *name, int64_t n, void **out) {
    CLLM_TRY(alloc_act(L, (size_t)n, out));
    return put(L, name, 1, &n, *out, 0);
}

/* Fuse parts[i] (rows[i], K) row-wise into one (sum rows, K) weight; with
 * bias_names, the (rows[i]) biases too. */
static cllm_status load_fused(loader *L, int nparts, const char *const *names, const char *const *bias_names,
                              const int64_t *rows, int64_t K, cllm_weight *out) {
    int64_t N = 0;
    for (int i = 0; i < nparts; i++) N += rows[i];
    out->n = N;
    out->k = K;
    CLLM_TRY(alloc_act(L, (size_t)(N * K), &out->data));
    if (bias_names) CLLM_TRY(alloc_act(L, (size_t)N, &out->bias));
    int64_t r0 = 0;
    for (int i = 0; i < nparts; i++) {
        int64_t shape[2] = {rows[i], K};
        CLLM_TRY(put(L, names[i], 2, shape, out->data, (size_t)(r0 * K)));
        if (bias_names) CLLM_TRY(put(L, bias_names[i], 1, &rows[i], out->bias, (size_t)r0));
        r0 += rows[i];
    }
    return CLLM_OK;
}

static cllm_status load_layer(loader *L, const cllm_model_config *c, int l, llama_layer *ly) {
    int64_t E = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t H = c->num_attention_heads, Hkv = c->num_key_value_heads;
    char n[6][128];
    const char *p = "model.layers";
    snprintf(n[0], 128, "%s.%d.self_attn.q_proj.weight", p, l);
    snprintf(n[1], 128, "%s.%d.self_attn.k_proj.weight", p, l);
    snprintf(n[2], 128, "%s.%d.self_attn.v_proj.weight", p, l);
    snprintf(n[3], 128, "%s.%d.self_attn.q_proj.bias", p, l);
    snprintf(n[4], 128, "%s.%d.self_attn.k_proj.bias", p, l);
    snprintf(n[5], 128, "%s.%d.self_attn.v_proj.bias", p, l);
    const char *qkv_names[3] = {n[0], n[1], n[2]}, *qkv_bias[3] = {n[3], n[4], n[5]};
    int64_t qkv_rows[3] = {H * D, Hkv * D, Hkv * D};
    bool qkv_has_bias = c->attention_bias || !strcmp(c->model_type, "qwen2");
    CLLM_TRY(load_fused(L, 3, qkv_names, qkv_has_bias ? qkv_bias : NULL, qkv_rows, E, &ly->qkv));

    /* o_proj has a bias under attention_bias in Llama/Mistral/Qwen3, never in Qwen2 */
    snprintf(n[0], 128, "%s.%d.self_attn.o_proj.weight", p, l);
    snprintf(n[1], 128, "%s.%d.self_attn.o_proj.bias", p, l);
    const char *o_names[1] = {n[0]}, *o_bias[1] = {n[1]};
    int64_t o_rows[1] = {E};
    bool o_has_bias = c->attention_bias && strcmp(c->model_type, "qwen2") != 0;
    CLLM_TRY(load_fused(L, 1, o_names, o_has_bias ? o_bias : NULL, o_rows, H * D, &ly->o));

    snprintf(n[0], 128, "%s.%d.mlp.gate_proj.weight", p, l);
    snprintf(n[1], 128, "%s.%d.mlp.up_proj.weight", p, l);
    snprintf(n[2], 128, "%s.%d.mlp.down_proj.weight", p, l);
    const char *gu_names[2] = {n[0], n[1]}, *down_names[1] = {n[2]};
    int64_t gu_rows[2] = {I, I}, down_rows[1] = {E};
    CLLM_TRY(load_fused(L, 2, gu_names, NULL, gu_rows, E, &ly->gate_up));
    CLLM_TRY(load_fused(L, 1, down_names, NULL, down_rows, I, &ly->down));

    snprintf(n[0], 128, "%s.%d.input_layernorm.weight", p, l);
    snprintf(n[1], 128, "%s.%d.post_attention_layernorm.weight", p, l);
    CLLM_TRY(load_vec(L, n[0], E, &ly->ln1));
    CLLM_TRY(load_vec(L, n[1], E, &ly->ln2));
    if (c->qk_norm) {
        snprintf(n[0], 128, "%s.%d.self_attn.q_norm.weight", p, l);
        snprintf(n[1], 128, "%s.%d.self_attn.k_norm.weight", p, l);
        CLLM_TRY(load_vec(L, n[0], D, &ly->q_norm));
        CLLM_TRY(load_vec(L, n[1], D, &ly->k_norm));
    }
    return CLLM_OK;
}

static void weight_free(cllm_backend *be, cllm_weight *w) {
    if (w->data) be->ops->free(be, w->data);
    if (w->bias) be->ops->free(be, w->bias);
}

static void llama_destroy(cllm_backend *be, void *model) {
    llama_model *m = model;
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            llama_layer *ly = &m->layers[l];
            weight_free(be, &ly->qkv);
            weight_free(be, &ly->o);
            weight_free(be, &ly->gate_up);
            weight_free(be, &ly->down);
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

static cllm_status llama_load(cllm_backend *be, const cllm_model_config *c, cllm_weights *w, bool show,
                              void **model, cllm_arch_info *info) {
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
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    bar = cllm_progress_create("loading weights (layers)", (uint64_t)c->num_hidden_layers, false, show);
    loader L = {be, w, info};
    int64_t V = c->vocab_size, E = c->hidden_size;
    int64_t ve[2] = {V, E};
    CLLM_TRY_GOTO(st, alloc_act(&L, (size_t)(V * E), &m->embed), fail);
    CLLM_TRY_GOTO(st, put(&L, "model.embed_tokens.weight", 2, ve, m->embed, 0), fail);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        cllm_progress_update(bar, (uint64_t)l, 0);
        CLLM_TRY_GOTO(st, load_layer(&L, c, l, &m->layers[l]), fail);
    }
    CLLM_TRY_GOTO(st, load_vec(&L, "model.norm.weight", E, &m->norm), fail);
    m->lm_head.n = V;
    m->lm_head.k = E;
    if (c->tie_word_embeddings) {
        m->lm_head.data = m->embed;
    } else {
        CLLM_TRY_GOTO(st, alloc_act(&L, (size_t)(V * E), &m->lm_head.data), fail);
        CLLM_TRY_GOTO(st, put(&L, "lm_head.weight", 2, ve, m->lm_head.data, 0), fail);
    }
    cllm_progress_update(bar, (uint64_t)c->num_hidden_layers, 0);
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

/* Workspace carve-up, in this order (elements of act dtype):
 * residual (T,E), normed (T,E), tmp (T,E), qkv (T,(H+2Hkv)D), attn (T,HD),
 * gate_up (T,2I), act (T,I), sel (num_logits,E). */
static size_t llama_workspace_bytes(const cllm_model_config *c, int T, int num_logits, cllm_dtype act) {
    size_t a = cllm_dtype_size(act), E = (size_t)c->hidden_size, D = (size_t)c->head_dim;
    size_t qkv = (size_t)(c->num_attention_heads + 2 * c->num_key_value_heads) * D;
    size_t HD = (size_t)c->num_attention_heads * D, I = (size_t)c->intermediate_size;
    size_t t = (size_t)T;
    return align_up(t * E * a) * 3 + align_up(t * qkv * a) + align_up(t * HD * a) + align_up(t * 2 * I * a) +
           align_up(t * I * a) + align_up((size_t)num_logits * E * a);
}

/* Profiling (core/profile.h): off, one predictable branch per category
 * switch; on, sync the backend and charge the elapsed time to the category
 * that just ended. */
#define PROF(cat)                                                    \
    do {                                                             \
        if (cllm_prof_on) {                                          \
            CLLM_TRY(be->ops->sync(be));                             \
            cllm_prof_switch(cat);                                   \
        }                                                            \
    } while (0)

static cllm_status llama_forward(cllm_backend *be, void *model, const cllm_forward_args *a) {
    llama_model *m = model;
    const cllm_model_config *c = &m->cfg;
    const cllm_backend_ops *op = be->ops;
    int T = a->num_tokens, E = c->hidden_size, H = c->num_attention_heads, Hkv = c->num_key_value_heads;
    int D = c->head_dim, I = c->intermediate_size, V = c->vocab_size, NQ = (H + 2 * Hkv) * D;
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
    void *sel = p;
    char *q = qkv, *k = qkv + (size_t)H * D * as, *v = qkv + (size_t)(H + Hkv) * D * as;

    PROF(CLLM_PROF_OTHER);
    CLLM_TRY(op->embedding(be, a->token_ids, T, m->embed, V, E, residual));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        llama_layer *ly = &m->layers[l];
        PROF(CLLM_PROF_OTHER);
        if (l == 0) CLLM_TRY(op->rmsnorm(be, residual, NULL, ly->ln1, T, E, eps, normed));
        else CLLM_TRY(op->rmsnorm(be, tmp, residual, ly->ln1, T, E, eps, normed));
        PROF(CLLM_PROF_GEMM);
        CLLM_TRY(op->linear(be, normed, T, &ly->qkv, qkv, act));
        PROF(CLLM_PROF_OTHER);
        if (c->qk_norm) {
            CLLM_TRY(op->head_rmsnorm(be, q, T, H, D, NQ, ly->q_norm, eps));
            CLLM_TRY(op->head_rmsnorm(be, k, T, Hkv, D, NQ, ly->k_norm, eps));
        }
        CLLM_TRY(op->rope(be, q, k, a->positions, T, H, Hkv, D, NQ, NQ, a->inv_freq));
        PROF(CLLM_PROF_ATTN);
        CLLM_TRY(op->kv_write(be, k, v, NQ, NQ, a->meta, Hkv, D, a->k_cache[l], a->v_cache[l]));
        if (a->attn_decode && a->attn_prefill) { /* mixed batch: decode rows, then the prefill chunks */
            size_t Td = (size_t)a->attn_decode->num_tokens;
            CLLM_TRY(op->attention(be, q, NQ, a->k_cache[l], a->v_cache[l], a->attn_decode, H, Hkv, D,
                                   1.0f / sqrtf((float)D), attn));
            CLLM_TRY(op->attention(be, q + Td * NQ * as, NQ, a->k_cache[l], a->v_cache[l], a->attn_prefill, H, Hkv,
                                   D, 1.0f / sqrtf((float)D), (char *)attn + Td * H * D * as));
        } else {
            CLLM_TRY(op->attention(be, q, NQ, a->k_cache[l], a->v_cache[l], a->meta, H, Hkv, D,
                                   1.0f / sqrtf((float)D), attn));
        }
        PROF(CLLM_PROF_GEMM);
        CLLM_TRY(op->linear(be, attn, T, &ly->o, tmp, act));
        PROF(CLLM_PROF_OTHER);
        CLLM_TRY(op->rmsnorm(be, tmp, residual, ly->ln2, T, E, eps, normed));
        PROF(CLLM_PROF_GEMM);
        CLLM_TRY(op->linear(be, normed, T, &ly->gate_up, gu, act));
        PROF(CLLM_PROF_OTHER);
        CLLM_TRY(op->silu_mul(be, gu, T, I, mlp));
        PROF(CLLM_PROF_GEMM);
        CLLM_TRY(op->linear(be, mlp, T, &ly->down, tmp, act));
    }
    PROF(CLLM_PROF_OTHER);
    CLLM_TRY(op->rmsnorm(be, tmp, residual, m->norm, T, E, eps, normed));
    CLLM_TRY(op->gather_rows(be, normed, a->logits_indices, a->num_logits, E, sel));
    PROF(CLLM_PROF_GEMM);
    CLLM_TRY(op->linear(be, sel, a->num_logits, &m->lm_head, a->logits, CLLM_DTYPE_F32));
    PROF(CLLM_PROF_SAMPLE); /* the runner's sampling follows; the caller closes it */
    return CLLM_OK;
}

const cllm_arch cllm_arch_llama_family = {
    .model_type = "llama",
    .load = llama_load,
    .destroy = llama_destroy,
    .workspace_bytes = llama_workspace_bytes,
    .forward = llama_forward,
};
