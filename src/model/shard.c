/* Tensor-parallel shard sizes (see shard.h). */
#include "model/shard.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool fits(const cllm_model_config *c, int tp) {
    int Hkv = c->num_key_value_heads;
    return c->num_attention_heads % tp == 0 && c->intermediate_size % tp == 0 &&
           (Hkv % tp == 0 || tp % Hkv == 0);
}

/* The tensor-parallel slice of tp_rank (heads, KV heads, intermediate and
 * vocabulary rows). */
static cllm_status tp_slice(const cllm_model_config *c, int tp_rank, int tp_size, cllm_shard *s) {
    if (tp_size < 1 || tp_rank < 0 || tp_rank >= tp_size)
        return cllm_error(CLLM_ERR_INVALID_ARG, "tensor-parallel rank %d of size %d", tp_rank, tp_size);
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads, I = c->intermediate_size;
    if (!fits(c, tp_size)) {
        char ok[128] = "";
        size_t n = 0;
        for (int t = 1; t <= H && n < sizeof ok - 8; t++)
            if (fits(c, t)) n += (size_t)snprintf(ok + n, sizeof ok - n, "%s%d", n ? ", " : "", t);
        const char *what = H % tp_size ? "num_attention_heads" : I % tp_size ? "intermediate_size" : "num_key_value_heads";
        int val = H % tp_size ? H : I % tp_size ? I : Hkv;
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "--tensor-parallel-size %d does not divide %s %d of this model (%s); use one of %s",
                          tp_size, what, val, c->model_type, ok);
    }
    s->tp_rank = tp_rank;
    s->tp_size = tp_size;
    s->num_heads = H / tp_size;
    if (Hkv % tp_size == 0) {
        s->num_kv_heads = Hkv / tp_size;
        s->kv_head_start = tp_rank * s->num_kv_heads;
    } else { /* replicated: tp_size / Hkv ranks share each KV head */
        s->num_kv_heads = 1;
        s->kv_head_start = tp_rank / (tp_size / Hkv);
    }
    s->intermediate_size = I / tp_size;
    s->vocab_size = c->vocab_size;
    s->vocab_per_rank = (c->vocab_size + tp_size - 1) / tp_size;
    s->vocab_start = tp_rank * s->vocab_per_rank;
    int rows = c->vocab_size - s->vocab_start;
    s->vocab_rows = rows < 0 ? 0 : rows < s->vocab_per_rank ? rows : s->vocab_per_rank;
    return CLLM_OK;
}

/* Layers [*start, *end) of pipeline stage pp_rank of the L layers. */
static cllm_status pp_layers(int L, int pp_rank, int pp_size, const char *partition, int *start, int *end) {
    if (pp_size < 1 || pp_rank < 0 || pp_rank >= pp_size)
        return cllm_error(CLLM_ERR_INVALID_ARG, "pipeline stage %d of %d", pp_rank, pp_size);
    if (pp_size > L)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--pipeline-parallel-size %d is larger than the model's %d layers",
                          pp_size, L);
    if (!partition || !*partition) { /* vLLM get_pp_indices: the remainder goes to the last stages */
        int base = L / pp_size, extra = L % pp_size, s = 0;
        for (int p = 0; p < pp_rank; p++) s += base + (p >= pp_size - extra ? 1 : 0);
        *start = s;
        *end = s + base + (pp_rank >= pp_size - extra ? 1 : 0);
        return CLLM_OK;
    }
    int n = 0, sum = 0, s = 0, e = 0;
    const char *p = partition;
    while (*p) {
        char *q;
        long v = strtol(p, &q, 10);
        if (q == p || v < 1 || v > L || (*q && *q != ','))
            return cllm_error(CLLM_ERR_INVALID_ARG,
                              "--pp-layer-partition '%s' must be %d positive layer counts separated by commas "
                              "(e.g. %d,%d)", partition, pp_size, L / 2, L - L / 2);
        if (n == pp_rank) s = sum, e = sum + (int)v;
        sum += (int)v;
        n++;
        p = *q ? q + 1 : q;
    }
    if (n != pp_size || sum != L)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "--pp-layer-partition '%s' has %d counts summing to %d; it needs %d counts (one per stage) "
                          "summing to the model's %d layers", partition, n, sum, pp_size, L);
    *start = s;
    *end = e;
    return CLLM_OK;
}

/* The experts of s, with or without expert parallelism over its tensor-parallel ranks. */
static cllm_status set_experts(const cllm_model_config *c, bool ep, cllm_shard *s) {
    s->ep_size = 1;
    s->ep_rank = 0;
    s->expert_start = 0;
    s->num_local_experts = c->num_experts;
    s->moe_intermediate_size = c->moe_intermediate_size;
    if (c->num_experts <= 0) {
        s->num_local_experts = s->moe_intermediate_size = 0;
        if (ep)
            return cllm_error(CLLM_ERR_INVALID_ARG, "--enable-expert-parallel needs a mixture-of-experts model; %s has no "
                              "experts", c->model_type);
        return CLLM_OK;
    }
    int tp = s->tp_size;
    if (ep) {
        if (c->num_experts % tp)
            return cllm_error(CLLM_ERR_INVALID_ARG,
                              "--enable-expert-parallel over %d ranks does not divide the model's %d experts; use a "
                              "--tensor-parallel-size that divides %d", tp, c->num_experts, c->num_experts);
        s->ep_size = tp;
        s->ep_rank = s->tp_rank;
        s->num_local_experts = c->num_experts / tp;
        s->expert_start = s->tp_rank * s->num_local_experts;
        return CLLM_OK;
    }
    if (c->moe_intermediate_size % tp)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "--tensor-parallel-size %d does not divide the experts' intermediate size %d; pass "
                          "--enable-expert-parallel (experts whole, spread over the ranks) or another size",
                          tp, c->moe_intermediate_size);
    s->moe_intermediate_size = c->moe_intermediate_size / tp;
    return CLLM_OK;
}

cllm_status cllm_shard_init(const cllm_model_config *c, int tp_rank, int tp_size, int pp_rank, int pp_size,
                            const char *partition, bool expert_parallel, cllm_shard *out) {
    memset(out, 0, sizeof *out);
    CLLM_TRY(tp_slice(c, tp_rank, tp_size, out));
    CLLM_TRY(pp_layers(c->num_hidden_layers, pp_rank, pp_size, partition, &out->layer_start, &out->layer_end));
    out->pp_rank = pp_rank;
    out->pp_size = pp_size;
    return set_experts(c, expert_parallel, out);
}

void cllm_shard_whole(const cllm_model_config *c, cllm_shard *s) {
    (void)cllm_shard_init(c, 0, 1, 0, 1, NULL, false, s);
}
