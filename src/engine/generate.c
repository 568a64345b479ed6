/* cllm_generate: one sequence, one prefill step then decode steps, KV blocks
 * from the model's simple free list (a block manager replaces it later).
 * Stop rules follow vLLM: eos (unless ignore_eos), max_tokens, and the
 * sequence reaching max_model_len. */
#include "engine/generate.h"
#include "core/status.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Per-sequence state of the running generation. */
typedef struct seq_state {
    int32_t *block_table;   /* (max_blocks) */
    int num_blocks, max_blocks;
} seq_state;

/* Make sure seq has blocks for n tokens. */
static cllm_status ensure_blocks(cllm_model *m, seq_state *s, int n) {
    int P = cllm_runner_block_size(m->runner), need = (n + P - 1) / P;
    if (need > s->max_blocks)
        return cllm_error(CLLM_ERR_CONTEXT_LENGTH, "sequence of %d tokens exceeds max_model_len %d", n,
                          m->max_model_len);
    while (s->num_blocks < need) {
        if (m->num_free_blocks == 0)
            return cllm_error(CLLM_ERR_NO_KV_BLOCKS, "no free KV-cache blocks (%d in all); raise num_kv_blocks",
                              cllm_runner_num_kv_blocks(m->runner));
        s->block_table[s->num_blocks++] = m->free_blocks[--m->num_free_blocks];
    }
    return CLLM_OK;
}

static void free_blocks(cllm_model *m, seq_state *s) {
    while (s->num_blocks > 0) m->free_blocks[m->num_free_blocks++] = s->block_table[--s->num_blocks];
}

/* Run tokens [start, start + n) of the sequence ids (whose KV for [0, start)
 * is cached) and sample the next token. */
static cllm_status step(cllm_model *m, seq_state *s, const int32_t *ids, int start, int n,
                        const cllm_sample_params *sp, int32_t *next, int32_t *scratch) {
    int P = cllm_runner_block_size(m->runner), len = start + n;
    CLLM_TRY(ensure_blocks(m, s, len));
    int32_t *pos = scratch, *slots = scratch + n;
    for (int i = 0; i < n; i++) {
        int p = start + i;
        pos[i] = p;
        slots[i] = s->block_table[p / P] * P + p % P;
    }
    int32_t qsl[2] = {0, n}, seq_lens[1] = {len}, lidx[1] = {n - 1};
    cllm_batch_host b = {
        .num_seqs = 1, .num_tokens = n, .token_ids = (int32_t *)ids + start, .positions = pos, .query_start_loc = qsl,
        .seq_lens = seq_lens, .block_tables = s->block_table, .max_blocks_per_seq = s->max_blocks,
        .slot_mapping = slots, .logits_indices = lidx, .num_logits = 1,
    };
    return cllm_runner_execute(m->runner, &b, sp, next, NULL);
}

static uint64_t clock_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
}

static cllm_status check_sampling(const cllm_sampling_params *sp) {
    if (!(sp->temperature >= 0.0f) || !(sp->top_p > 0.0f && sp->top_p <= 1.0f) || !(sp->min_p >= 0.0f && sp->min_p <= 1.0f))
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "sampling: temperature %g must be >= 0, top_p %g in (0, 1], min_p %g in [0, 1]",
                          sp->temperature, sp->top_p, sp->min_p);
    if (sp->max_tokens < 1) return cllm_error(CLLM_ERR_INVALID_ARG, "max_tokens %d must be at least 1", sp->max_tokens);
    return CLLM_OK;
}

cllm_status cllm_generate_ids(cllm_model *m, const int32_t *prompt, int n_prompt, const cllm_sampling_params *sp,
                              bool with_text, cllm_stream_fn cb, void *user, cllm_generate_result *result) {
    cllm_generate_result res = {.num_prompt_tokens = n_prompt, .finish_reason = "abort"};
    if (result) *result = res;
    CLLM_TRY(check_sampling(sp));
    if (n_prompt < 1)
        return cllm_error(CLLM_ERR_INVALID_ARG, "the prompt has no tokens (the tokenizer adds no BOS); give some text");
    if (n_prompt > m->max_model_len)
        return cllm_error(CLLM_ERR_CONTEXT_LENGTH,
                          "This model's maximum context length is %d tokens. However, your request has %d input "
                          "tokens. Please reduce the length of the input (or raise --max-model-len).",
                          m->max_model_len, n_prompt);
    int budget = m->max_model_len - n_prompt; /* vLLM: stop when the sequence reaches max_model_len */
    if (budget < 1) budget = 1;
    int max_new = sp->max_tokens < budget ? sp->max_tokens : budget;
    cllm_status st = CLLM_OK;
    int P = cllm_runner_block_size(m->runner);
    seq_state s = {0};
    s.max_blocks = (m->max_model_len + 1 + P - 1) / P;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n_prompt + max_new + 1));
    int32_t *scratch = malloc(sizeof(int32_t) * 2 * (size_t)n_prompt);
    s.block_table = calloc((size_t)s.max_blocks, sizeof(int32_t));
    cllm_detokenizer *dt = NULL;
    if (!ids || !scratch || !s.block_table) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto done; }
    memcpy(ids, prompt, sizeof(int32_t) * (size_t)n_prompt);
    if (with_text && cb) CLLM_TRY_GOTO(st, cllm_detokenizer_create(m->tok, prompt, (size_t)n_prompt, true, &dt), done);

    cllm_sample_params p = {.temperature = sp->temperature, .top_p = sp->top_p, .min_p = sp->min_p,
                            .top_k = sp->top_k, .seed = sp->has_seed ? sp->seed : clock_seed(), .step = 0};
    double t0 = cllm_now_ms(), t_first = t0;
    int len = n_prompt, gen = 0;
    for (;;) {
        int32_t next;
        p.step = (uint64_t)gen;
        if (gen == 0) CLLM_TRY_GOTO(st, step(m, &s, ids, 0, n_prompt, &p, &next, scratch), done);
        else CLLM_TRY_GOTO(st, step(m, &s, ids, len - 1, 1, &p, &next, scratch), done);
        if (gen == 0) t_first = cllm_now_ms();
        ids[len++] = next;
        gen++;
        bool keep_going = true;
        if (cb) {
            char *delta = NULL;
            size_t dlen = 0;
            if (dt) CLLM_TRY_GOTO(st, cllm_detokenizer_step(dt, next, &delta, &dlen), done);
            keep_going = cb(delta ? delta : "", dlen, next, user);
            cllm_free(delta);
        }
        if (!sp->ignore_eos && cllm_config_is_eos(&m->cfg, next)) { res.finish_reason = "stop"; break; }
        if (gen >= max_new) { res.finish_reason = "length"; break; }
        if (!keep_going) { res.finish_reason = "abort"; break; }
    }
    if (dt && cb) {
        char *tail = NULL;
        size_t tlen = 0;
        CLLM_TRY_GOTO(st, cllm_detokenizer_flush(dt, &tail, &tlen), done);
        if (tlen) cb(tail, tlen, -1, user);
        cllm_free(tail);
    }
    double t_end = cllm_now_ms();
    res.num_generated_tokens = gen;
    res.ttft_ms = t_first - t0;
    res.decode_tokens_per_s = gen > 1 && t_end > t_first ? (gen - 1) / ((t_end - t_first) / 1e3) : 0.0;
    if (result) *result = res;
done:
    free_blocks(m, &s);
    cllm_detokenizer_destroy(dt);
    free(s.block_table);
    free(scratch);
    free(ids);
    return st;
}

cllm_status cllm_generate(cllm_model *m, const char *prompt, const cllm_sampling_params *sp, cllm_stream_fn cb,
                          void *user, cllm_generate_result *result) {
    if (!m || !prompt || !sp) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_generate: model, prompt and params are required");
    int32_t *ids = NULL;
    size_t n = 0;
    CLLM_TRY(cllm_tokenizer_encode(m->tok, prompt, strlen(prompt), true, &ids, &n));
    cllm_status st;
    if (n > (size_t)m->max_model_len)
        st = cllm_error(CLLM_ERR_CONTEXT_LENGTH,
                        "This model's maximum context length is %d tokens. However, your request has %zu input "
                        "tokens. Please reduce the length of the input (or raise --max-model-len).",
                        m->max_model_len, n);
    else
        st = cllm_generate_ids(m, ids, (int)n, sp, true, cb, user, result);
    cllm_free(ids);
    return st;
}
