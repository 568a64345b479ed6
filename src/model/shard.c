/* Tensor-parallel shard sizes (see shard.h). */
#include "model/shard.h"
#include "core/status.h"

#include <stdio.h>
#include <string.h>

void cllm_shard_whole(const cllm_model_config *c, cllm_shard *s) {
    (void)cllm_shard_init(c, 0, 1, s);
}

static bool fits(const cllm_model_config *c, int tp) {
    int Hkv = c->num_key_value_heads;
    return c->num_attention_heads % tp == 0 && c->intermediate_size % tp == 0 &&
           (Hkv % tp == 0 || tp % Hkv == 0);
}

cllm_status cllm_shard_init(const cllm_model_config *c, int tp_rank, int tp_size, cllm_shard *s) {
    memset(s, 0, sizeof *s);
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
    s->layer_start = 0;
    s->layer_end = c->num_hidden_layers;
    return CLLM_OK;
}
