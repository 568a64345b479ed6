/* Sequences: request parameters, token list, status. See sequence.h. */
#include "engine/sequence.h"

#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cllm_request_params cllm_request_default_params(void) {
    cllm_request_params p;
    memset(&p, 0, sizeof p);
    p.n = 1;
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.top_k = -1;
    p.repetition_penalty = 1.0f;
    p.max_tokens = 16;
    p.logprobs = -1;
    p.prompt_logprobs = -1;
    p.skip_special_tokens = true;
    return p;
}

cllm_status cllm_request_params_validate(const cllm_request_params *p) {
    if (p->n < 1) return cllm_error(CLLM_ERR_INVALID_ARG, "n must be at least 1, got %d", p->n);
    if (!(p->temperature >= 0.0f)) return cllm_error(CLLM_ERR_INVALID_ARG, "temperature must be >= 0, got %g", p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG, "top_p must be in (0, 1], got %g", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG, "min_p must be in [0, 1], got %g", p->min_p);
    if (!(p->repetition_penalty > 0.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG, "repetition_penalty must be > 0, got %g", p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG, "presence_penalty must be in [-2, 2], got %g", p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG, "frequency_penalty must be in [-2, 2], got %g", p->frequency_penalty);
    if (p->max_tokens == 0) return cllm_error(CLLM_ERR_INVALID_ARG, "max_tokens must be at least 1 (or < 0 for no limit)");
    if (p->min_tokens < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "min_tokens must be >= 0, got %d", p->min_tokens);
    if (p->max_tokens > 0 && p->min_tokens > p->max_tokens)
        return cllm_error(CLLM_ERR_INVALID_ARG, "min_tokens (%d) must be <= max_tokens (%d)", p->min_tokens, p->max_tokens);
    if (p->num_stop < 0 || (p->num_stop > 0 && !p->stop))
        return cllm_error(CLLM_ERR_INVALID_ARG, "stop: %d strings but no array", p->num_stop);
    for (int i = 0; i < p->num_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return cllm_error(CLLM_ERR_INVALID_ARG, "stop[%d] is empty", i);
    if (p->num_stop_token_ids < 0 || (p->num_stop_token_ids > 0 && !p->stop_token_ids))
        return cllm_error(CLLM_ERR_INVALID_ARG, "stop_token_ids: %d ids but no array", p->num_stop_token_ids);
    if (p->num_logit_bias < 0 || (p->num_logit_bias > 0 && (!p->logit_bias_token_ids || !p->logit_bias_values)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "logit_bias: %d entries but no token id or value array",
                          p->num_logit_bias);
    for (int i = 0; i < p->num_logit_bias; i++)
        if (!isfinite(p->logit_bias_values[i]))
            return cllm_error(CLLM_ERR_INVALID_ARG, "logit_bias value for token %d must be finite, got %g",
                              p->logit_bias_token_ids[i], p->logit_bias_values[i]);
    return CLLM_OK;
}

/* A logit_bias entry with its position in the request: sorted by token id,
 * then by position, so that the last value of a repeated id is known. */
typedef struct {
    int32_t token_id, pos;
    float value;
} bias_at;

static int bias_cmp(const void *a, const void *b) {
    const bias_at *x = a, *y = b;
    if (x->token_id != y->token_id) return x->token_id < y->token_id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void seq_free_owned(cllm_seq *s) {
    if (s->stop_owned)
        for (int i = 0; i < s->params.num_stop; i++) free(s->stop_owned[i]);
    free(s->stop_owned);
    free(s->stop_ids_owned);
    free(s->logit_bias);
    free(s->token_ids);
}

cllm_status cllm_seq_create(int64_t id, const int32_t *prompt, int n_prompt, const cllm_request_params *params,
                            int32_t eos_token_id, cllm_seq **out) {
    *out = NULL;
    if (!prompt || n_prompt < 1)
        return cllm_error(CLLM_ERR_INVALID_ARG, "request %lld: the prompt must hold at least one token", (long long)id);
    cllm_request_params p = params ? *params : cllm_request_default_params();
    CLLM_TRY(cllm_request_params_validate(&p));
    cllm_seq *s = cllm_calloc(1, sizeof *s);
    if (!s) return CLLM_ERR_OOM;
    s->id = id;
    s->params = p;
    s->eos_token_id = eos_token_id;
    s->stop_reason = -1;
    s->status = CLLM_SEQ_WAITING;
    s->cap_tokens = n_prompt + 16;
    s->token_ids = cllm_malloc((size_t)s->cap_tokens * sizeof(int32_t));
    if (!s->token_ids) goto fail;
    memcpy(s->token_ids, prompt, (size_t)n_prompt * sizeof(int32_t));
    s->num_tokens = s->num_prompt_tokens = n_prompt;
    s->params.stop = NULL;
    s->params.stop_token_ids = NULL;
    if (p.num_stop > 0) {
        s->stop_owned = cllm_calloc((size_t)p.num_stop, sizeof(char *));
        if (!s->stop_owned) goto fail;
        for (int i = 0; i < p.num_stop; i++)
            if (!(s->stop_owned[i] = cllm_strdup(p.stop[i]))) goto fail;
        s->params.stop = (const char *const *)s->stop_owned;
    }
    if (p.num_stop_token_ids > 0) {
        s->stop_ids_owned = cllm_malloc((size_t)p.num_stop_token_ids * sizeof(int32_t));
        if (!s->stop_ids_owned) goto fail;
        memcpy(s->stop_ids_owned, p.stop_token_ids, (size_t)p.num_stop_token_ids * sizeof(int32_t));
        s->params.stop_token_ids = s->stop_ids_owned;
    }
    s->params.logit_bias_token_ids = NULL;
    s->params.logit_bias_values = NULL;
    s->params.num_logit_bias = 0;
    if (p.num_logit_bias > 0) {
        bias_at *t = cllm_malloc((size_t)p.num_logit_bias * sizeof *t);
        s->logit_bias = cllm_malloc((size_t)p.num_logit_bias * sizeof *s->logit_bias);
        if (!t || !s->logit_bias) {
            free(t);
            goto fail;
        }
        for (int i = 0; i < p.num_logit_bias; i++) t[i] = (bias_at){p.logit_bias_token_ids[i], i, p.logit_bias_values[i]};
        qsort(t, (size_t)p.num_logit_bias, sizeof *t, bias_cmp);
        int n = 0;
        for (int i = 0; i < p.num_logit_bias; i++) { /* the last value of a repeated id wins */
            if (n > 0 && s->logit_bias[n - 1].token_id == t[i].token_id) n--;
            s->logit_bias[n++] = (cllm_logit_bias){t[i].token_id, t[i].value};
        }
        free(t);
        s->num_logit_bias = n;
    }
    s->kv.tokens = s->token_ids;
    s->kv.num_tokens = s->num_tokens;
    *out = s;
    return CLLM_OK;
fail:
    seq_free_owned(s);
    free(s);
    return CLLM_ERR_OOM;
}

void cllm_seq_destroy(cllm_seq *s) {
    if (!s) return;
    CLLM_ASSERT(s->kv.num_blocks == 0);
    free(s->kv.blocks);
    free(s->kv.block_hashes);
    seq_free_owned(s);
    free(s);
}

cllm_status cllm_seq_append_token(cllm_seq *s, int32_t token) {
    if (s->num_tokens == s->cap_tokens) {
        int cap = s->cap_tokens * 2;
        int32_t *t = realloc(s->token_ids, (size_t)cap * sizeof *t);
        if (!t) return cllm_error(CLLM_ERR_OOM, "out of host memory growing request %lld to %d tokens", (long long)s->id, cap);
        s->token_ids = t;
        s->cap_tokens = cap;
    }
    s->token_ids[s->num_tokens++] = token;
    s->kv.tokens = s->token_ids;
    s->kv.num_tokens = s->num_tokens;
    return CLLM_OK;
}

const char *cllm_seq_finish_reason(const cllm_seq *s) {
    switch (s->status) {
    case CLLM_SEQ_FINISHED_STOPPED: return "stop";
    case CLLM_SEQ_FINISHED_LENGTH: return "length";
    case CLLM_SEQ_FINISHED_ABORTED: return "abort";
    default: return NULL;
    }
}
