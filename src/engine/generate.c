/* The single-sequence API of include/cllm.h (cllm_model_load, cllm_generate)
 * as a thin wrapper over the engine: one KV allocator (the engine's block
 * manager), the same executor (so tensor parallelism works here too), the
 * same scheduler with one running sequence. Stop rules are the engine's
 * (vLLM's): eos unless ignore_eos, the generation_config's other eos ids,
 * max_tokens; a generation that would pass max_model_len stops there with
 * finish "length" (max_tokens is capped, never an error). */
#include "engine/generate.h"
#include "core/clock.h"
#include "core/status.h"
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cllm_model {
    cllm_engine *e;
};

cllm_model_params cllm_model_default_params(void) {
    cllm_model_params p;
    memset(&p, 0, sizeof p);
    p.revision = "main";
    p.device = CLLM_DEVICE_CPU;
    p.dtype = CLLM_DTYPE_AUTO;
    p.load_format = CLLM_LOAD_AUTO;
    p.block_size = 16;
    p.max_num_seqs = 1;
    p.progress = true;
    p.tensor_parallel_size = 1;
    p.pipeline_parallel_size = 1;
    p.dist_timeout_s = 60.0;
    return p;
}

cllm_sampling_params cllm_sampling_default_params(void) {
    cllm_sampling_params s;
    memset(&s, 0, sizeof s);
    s.temperature = 1.0f;
    s.top_p = 1.0f;
    s.top_k = -1;
    s.min_p = 0.0f;
    s.max_tokens = 16;
    return s;
}

/* The KV cache holds max_num_seqs sequences of max_model_len (or
 * num_kv_blocks), not a memory fraction; a prompt prefills in one step. */
static void size_for_sequences(cllm_engine_params *ep, int max_len) {
    int P = ep->model.block_size;
    int64_t blocks = ep->model.num_kv_blocks > 0 ? ep->model.num_kv_blocks
                                                 : (int64_t)ep->max_num_seqs * ((max_len + P - 1) / P + 1);
    ep->num_gpu_blocks_override = blocks > (1 << 24) ? 1 << 24 : (int)blocks;
    ep->max_num_batched_tokens = max_len > 2048 ? max_len : 2048;
}

cllm_status cllm_model_load(const cllm_model_params *params, cllm_model **out) {
    *out = NULL;
    if (!params || !params->model || !*params->model)
        return cllm_error(CLLM_ERR_INVALID_ARG, "no model given (--model DIR or ORG/NAME)");
    cllm_engine_params ep = cllm_engine_default_params();
    ep.model = *params;
    ep.max_num_seqs = params->max_num_seqs > 0 ? params->max_num_seqs : 1;
    ep.enforce_eager = params->enforce_eager;
    ep.enable_prefix_caching = false; /* one prompt at a time: each call computes its prefill (benchmarks time it) */
    cllm_model *m = calloc(1, sizeof *m);
    if (!m) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = cllm_engine_create_sized(&ep, size_for_sequences, &m->e);
    if (st != CLLM_OK) {
        free(m);
        return st;
    }
    *out = m;
    return CLLM_OK;
}

void cllm_model_destroy(cllm_model *m) {
    if (!m) return;
    cllm_engine_destroy(m->e);
    free(m);
}

const cllm_tokenizer *cllm_model_tokenizer(const cllm_model *m) { return cllm_engine_tokenizer(m->e); }
int32_t cllm_model_vocab_size(const cllm_model *m) { return cllm_engine_model_config(m->e)->vocab_size; }
int32_t cllm_model_max_model_len(const cllm_model *m) { return cllm_engine_max_model_len(m->e); }
const cllm_model_config *cllm_model_config_of(const cllm_model *m) { return cllm_engine_model_config(m->e); }
cllm_executor *cllm_model_executor(cllm_model *m) { return cllm_engine_executor(m->e); }
cllm_runner *cllm_model_runner(cllm_model *m) { return cllm_executor_runner(cllm_engine_executor(m->e)); }
double cllm_model_load_ms(const cllm_model *m) { return cllm_engine_load_ms(m->e); }
double cllm_model_weights_ms(const cllm_model *m) { return cllm_executor_weights_ms(cllm_engine_executor(m->e)); }

void cllm_model_apply_generation_config(const cllm_model *m, cllm_sampling_params *sp) {
    cllm_config_apply_generation(cllm_model_config_of(m), sp);
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

/* Step the engine until request id finishes; streams through cb. */
static cllm_status run(cllm_model *m, uint64_t id, double t0, bool with_text, cllm_stream_fn cb, void *user,
                       cllm_generate_result *res) {
    double t_first = t0;
    int gen = 0;
    bool aborted = false;
    for (;;) {
        const cllm_request_output *outs = NULL;
        int n = 0;
        CLLM_TRY(cllm_engine_step(m->e, &outs, &n));
        for (int i = 0; i < n; i++) {
            const cllm_request_output *o = &outs[i];
            if (o->request_id != id) continue;
            for (int k = 0; k < o->num_new_tokens; k++) {
                if (gen++ == 0) t_first = cllm_now_ms();
                /* the text delta of the step goes with its last token */
                bool last = k == o->num_new_tokens - 1;
                const char *d = with_text && last ? o->text_delta : "";
                size_t dl = with_text && last ? o->text_delta_len : 0;
                if (cb && !aborted && !cb(d, dl, o->new_token_ids[k], user)) {
                    aborted = true;
                    (void)cllm_engine_abort(m->e, id);
                }
            }
            if (!o->num_new_tokens && with_text && o->text_delta_len && cb && !aborted)
                (void)cb(o->text_delta, o->text_delta_len, -1, user); /* held-back text at the end */
            if (o->finished) {
                double t_end = cllm_now_ms();
                res->num_generated_tokens = gen;
                res->finish_reason = aborted ? "abort" : o->finish_reason;
                res->ttft_ms = t_first - t0;
                res->decode_tokens_per_s = gen > 1 && t_end > t_first ? (gen - 1) / ((t_end - t_first) / 1e3) : 0.0;
                return CLLM_OK;
            }
        }
        if (!cllm_engine_has_unfinished(m->e))
            return cllm_error(CLLM_ERR_INTERNAL, "generate: the request ended without a final output");
    }
}

cllm_status cllm_generate_ids(cllm_model *m, const int32_t *prompt, int n_prompt, const cllm_sampling_params *sp,
                              bool with_text, cllm_stream_fn cb, void *user, cllm_generate_result *result) {
    cllm_generate_result res = {.num_prompt_tokens = n_prompt, .finish_reason = "abort"};
    if (result) *result = res;
    CLLM_TRY(check_sampling(sp));
    int L = cllm_model_max_model_len(m);
    if (n_prompt < 1)
        return cllm_error(CLLM_ERR_INVALID_ARG, "the prompt has no tokens (the tokenizer adds no BOS); give some text");
    if (n_prompt > L)
        return cllm_error(CLLM_ERR_CONTEXT_LENGTH,
                          "This model's maximum context length is %d tokens. However, your request has %d input "
                          "tokens. Please reduce the length of the input (or raise --max-model-len).",
                          L, n_prompt);
    int budget = L - n_prompt; /* vLLM: stop when the sequence reaches max_model_len */
    if (budget < 1) budget = 1;
    cllm_request_params rp = cllm_request_default_params();
    rp.temperature = sp->temperature;
    rp.top_p = sp->top_p;
    rp.top_k = sp->top_k;
    rp.min_p = sp->min_p;
    rp.seed = sp->has_seed ? sp->seed : clock_seed();
    rp.has_seed = true;
    rp.ignore_eos = sp->ignore_eos;
    rp.max_tokens = sp->max_tokens < budget ? sp->max_tokens : budget;
    if (n_prompt + rp.max_tokens > L) rp.max_tokens = 0; /* a full prompt: up to max_model_len */
    double t0 = cllm_now_ms();
    uint64_t id = 0;
    CLLM_TRY(cllm_engine_add_request(m->e, NULL, prompt, (size_t)n_prompt, &rp, &id));
    cllm_status st = run(m, id, t0, with_text, cb, user, &res);
    if (st != CLLM_OK) {
        (void)cllm_engine_abort(m->e, id);
        return st;
    }
    if (result) *result = res;
    return CLLM_OK;
}

cllm_status cllm_generate(cllm_model *m, const char *prompt, const cllm_sampling_params *sp, cllm_stream_fn cb,
                          void *user, cllm_generate_result *result) {
    if (!m || !prompt || !sp) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_generate: model, prompt and params are required");
    int32_t *ids = NULL;
    size_t n = 0;
    CLLM_TRY(cllm_tokenizer_encode(cllm_model_tokenizer(m), prompt, strlen(prompt), true, &ids, &n));
    cllm_status st;
    int L = cllm_model_max_model_len(m);
    if (n > (size_t)L)
        st = cllm_error(CLLM_ERR_CONTEXT_LENGTH,
                        "This model's maximum context length is %d tokens. However, your request has %zu input "
                        "tokens. Please reduce the length of the input (or raise --max-model-len).",
                        L, n);
    else
        st = cllm_generate_ids(m, ids, (int)n, sp, true, cb, user, result);
    cllm_free(ids);
    return st;
}
