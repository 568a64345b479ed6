/* OpenAI request parsing: JSON body -> cllm_openai_request (see openai_protocol.h).
 * Range checks and messages follow vLLM's SamplingParams._verify_args and
 * entrypoints/openai/protocol.py validators. */
#include "server/openai_protocol.h"
#include "server/openai_json.h"

#include "core/status.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

cllm_openai_limits cllm_openai_default_limits(void) {
    cllm_openai_limits l = {0};
    l.max_body_bytes = (size_t)32 << 20;
    l.max_n = 128;
    l.max_stop = 16;
    l.max_logprobs = 20;
    l.vocab_size = 0;
    return l;
}

const char *cllm_openai_role_name(cllm_openai_role r) {
    switch (r) {
    case CLLM_OPENAI_ROLE_SYSTEM: return "system";
    case CLLM_OPENAI_ROLE_USER: return "user";
    case CLLM_OPENAI_ROLE_ASSISTANT: return "assistant";
    case CLLM_OPENAI_ROLE_TOOL: return "tool";
    case CLLM_OPENAI_ROLE_DEVELOPER: return "developer";
    }
    return "user";
}

/* ---------------------------------------------------------------- sampling */
static cllm_status parse_stop(oj_ctx *c, json_t *root, cllm_openai_request *r) {
    json_t *v = oj_get(root, "stop");
    if (!v) return CLLM_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return oj_fail(c, "stop", "'stop' must not be an empty string");
        r->stop = cllm_calloc(1, sizeof *r->stop);
        if (!r->stop) return oj_oom(c);
        r->n_stop = 1;
        return oj_dup(c, json_string_value(v), json_string_length(v), &r->stop[0]);
    }
    if (!json_is_array(v))
        return oj_fail(c, "stop", "'stop' must be a string or a list of strings, got %s", oj_type(v));
    size_t n = json_array_size(v);
    if (n > (size_t)c->lim.max_stop)
        return oj_fail(c, "stop", "'stop' has %zu strings; at most %d are allowed", n, c->lim.max_stop);
    if (n == 0) return CLLM_OK;
    r->stop = cllm_calloc(n, sizeof *r->stop);
    if (!r->stop) return oj_oom(c);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        char p[32];
        snprintf(p, sizeof p, "stop[%zu]", i);
        if (!json_is_string(s)) return oj_fail(c, p, "'%s' must be a string, got %s", p, oj_type(s));
        if (json_string_length(s) == 0) return oj_fail(c, p, "'%s' must not be an empty string", p);
        CLLM_TRY(oj_dup(c, json_string_value(s), json_string_length(s), &r->stop[i]));
        r->n_stop = i + 1;
    }
    return CLLM_OK;
}

/* logit_bias: {"<token id>": bias, ...} (OpenAI). As vLLM's protocol:
 * keys are integers written as strings, values numbers clamped to
 * [-100, 100], token ids checked against the vocabulary. */
static cllm_status parse_logit_bias(oj_ctx *c, json_t *root, cllm_openai_request *r) {
    json_t *lb = oj_get(root, "logit_bias");
    if (!lb) return CLLM_OK;
    if (!json_is_object(lb))
        return oj_fail(c, "logit_bias", "'logit_bias' must be an object mapping token ids to biases, got %s",
                       oj_type(lb));
    size_t n = json_object_size(lb);
    if (n == 0) return CLLM_OK;
    r->logit_bias_ids = cllm_malloc(n * sizeof *r->logit_bias_ids);
    r->logit_bias_values = cllm_malloc(n * sizeof *r->logit_bias_values);
    if (!r->logit_bias_ids || !r->logit_bias_values) return oj_oom(c);
    const char *key;
    json_t *v;
    json_object_foreach(lb, key, v) {
        const char *d = key + (key[0] == '-' || key[0] == '+');
        bool digits = *d != 0 && strlen(d) <= 10;
        for (const char *q = d; digits && *q; q++) digits = *q >= '0' && *q <= '9';
        long long id = digits ? strtoll(key, NULL, 10) : 0;
        if (!digits)
            return oj_fail(c, "logit_bias", "Found token_id `%.64s` in logit_bias but token_id must be an integer "
                                            "or string representing an integer", key);
        if (id < 0 || id > INT32_MAX || (c->lim.vocab_size > 0 && id >= c->lim.vocab_size))
            return oj_fail(c, "logit_bias", "token_id %lld in logit_bias is out of the vocabulary: token ids are "
                                            "in [0, %d)", id, c->lim.vocab_size > 0 ? c->lim.vocab_size : INT32_MAX);
        if (!json_is_number(v))
            return oj_fail(c, "logit_bias", "the logit_bias of token %lld must be a number, got %s", id, oj_type(v));
        double b = json_number_value(v);
        r->logit_bias_ids[r->n_logit_bias] = (int32_t)id;
        r->logit_bias_values[r->n_logit_bias++] = (float)(b < -100 ? -100 : b > 100 ? 100 : b);
    }
    return CLLM_OK;
}

/* Structured outputs (response_format json_object / json_schema, vLLM's
 * guided_* fields) need constrained decoding, which cllm does not have:
 * refused with a 400 rather than ignored (the client would get text that
 * does not follow its schema). response_format {"type": "text"} is the
 * default and accepted. */
static cllm_status reject_structured_outputs(oj_ctx *c, json_t *root) {
    json_t *rf = oj_get(root, "response_format");
    if (rf) {
        json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        if (!json_is_string(t))
            return oj_fail(c, "response_format", "'response_format' must be an object with a string 'type' "
                                                 "(\"text\", \"json_object\" or \"json_schema\")");
        if (strcmp(json_string_value(t), "text") != 0)
            return oj_fail(c, "response_format", "response_format type \"%.40s\" needs structured outputs (guided "
                           "decoding), which this server does not support; leave response_format out (or "
                           "{\"type\": \"text\"}) and ask for the format in the prompt", json_string_value(t));
    }
    static const char *const guided[] = {"guided_json", "guided_regex", "guided_choice", "guided_grammar",
                                         "structured_outputs"};
    for (size_t i = 0; i < sizeof guided / sizeof guided[0]; i++)
        if (oj_get(root, guided[i]))
            return oj_fail(c, guided[i], "'%s' needs structured outputs (guided decoding), which this server does "
                                         "not support", guided[i]);
    return CLLM_OK;
}

/* Known fields of features cllm lacks (structured outputs first): a 400
 * naming them rather than a silently different answer. Neutral values (null, false, [], "", best_of
 * 1 or n) pass. Wording as vLLM's where it has one. */
static cllm_status reject_unsupported(oj_ctx *c, json_t *root, const cllm_openai_request *r) {
    CLLM_TRY(reject_structured_outputs(c, root));
    json_t *v;
    if ((v = oj_get(root, "suffix")) && !(json_is_string(v) && json_string_length(v) == 0))
        return oj_fail(c, "suffix", "suffix is not currently supported");
    if ((v = oj_get(root, "use_beam_search")) && !json_is_false(v))
        return oj_fail(c, "use_beam_search", "beam search is not supported by this server");
    if ((v = oj_get(root, "best_of"))) {
        if (!json_is_integer(v)) return oj_fail(c, "best_of", "'best_of' must be an integer, got %s", oj_type(v));
        if (json_integer_value(v) > 1 && json_integer_value(v) != r->n) /* 1 (OpenAI's default) or n: n samples */
            return oj_fail(c, "best_of", "best_of (%lld) different from n (%d) is not supported: best-of sampling "
                           "is not implemented", (long long)json_integer_value(v), r->n);
    }
    static const char *const lists[] = {"allowed_token_ids", "bad_words"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if ((v = oj_get(root, lists[i])) && !(json_is_array(v) && json_array_size(v) == 0))
            return oj_fail(c, lists[i], "'%s' is not supported by this server", lists[i]);
    if ((v = oj_get(root, "priority")) && !(json_is_integer(v) && json_integer_value(v) == 0))
        return oj_fail(c, "priority", "Priority scheduling is not enabled: send priority 0 or leave it out");
    if ((v = oj_get(root, "return_tokens_as_token_ids")) && !json_is_false(v))
        return oj_fail(c, "return_tokens_as_token_ids", "return_tokens_as_token_ids is not supported by this server");
    if (r->endpoint == CLLM_OPENAI_CHAT && oj_get(root, "chat_template"))
        return oj_fail(c, "chat_template", "a chat template passed with the request is refused: the model's "
                                           "(tokenizer_config.json) is used");
    return CLLM_OK;
}

static cllm_status parse_sampling(oj_ctx *c, json_t *root, cllm_openai_request *r) {
    bool has;
    CLLM_TRY(oj_num(c, root, "temperature", &r->temperature, &r->has_temperature));
    if (r->temperature < 0 || r->temperature > 2)
        return oj_fail(c, "temperature", "temperature must be in [0, 2], got %g.", r->temperature);
    CLLM_TRY(oj_num(c, root, "top_p", &r->top_p, &r->has_top_p));
    if (!(r->top_p > 0 && r->top_p <= 1))
        return oj_fail(c, "top_p", "top_p must be in (0, 1], got %g.", r->top_p);
    int64_t k = -1;
    CLLM_TRY(oj_int(c, root, "top_k", &k, &r->has_top_k));
    if (k == 0) k = -1;
    if (k < -1 || k > INT32_MAX)
        return oj_fail(c, "top_k", "top_k must be -1 or 0 (disable), or at least 1, got %lld.", (long long)k);
    r->top_k = (int32_t)k;
    CLLM_TRY(oj_num(c, root, "min_p", &r->min_p, &r->has_min_p));
    if (!(r->min_p >= 0 && r->min_p <= 1))
        return oj_fail(c, "min_p", "min_p must be in [0, 1], got %g.", r->min_p);
    CLLM_TRY(oj_num(c, root, "presence_penalty", &r->presence_penalty, &has));
    if (!(r->presence_penalty >= -2 && r->presence_penalty <= 2))
        return oj_fail(c, "presence_penalty", "presence_penalty must be in [-2, 2], got %g.", r->presence_penalty);
    CLLM_TRY(oj_num(c, root, "frequency_penalty", &r->frequency_penalty, &has));
    if (!(r->frequency_penalty >= -2 && r->frequency_penalty <= 2))
        return oj_fail(c, "frequency_penalty", "frequency_penalty must be in [-2, 2], got %g.",
                       r->frequency_penalty);
    CLLM_TRY(oj_num(c, root, "repetition_penalty", &r->repetition_penalty, &r->has_repetition_penalty));
    if (!(r->repetition_penalty > 0))
        return oj_fail(c, "repetition_penalty", "repetition_penalty must be greater than zero, got %g.",
                       r->repetition_penalty);
    int64_t n = 1;
    CLLM_TRY(oj_int(c, root, "n", &n, &has));
    if (n < 1) return oj_fail(c, "n", "n must be at least 1, got %lld.", (long long)n);
    if (n > c->lim.max_n) return oj_fail(c, "n", "n must be at most %d, got %lld.", c->lim.max_n, (long long)n);
    r->n = (int32_t)n;
    CLLM_TRY(oj_int(c, root, "seed", &r->seed, &r->has_seed));
    CLLM_TRY(parse_stop(c, root, r));
    CLLM_TRY(oj_ids(c, root, "stop_token_ids", false, &r->stop_token_ids, &r->n_stop_token_ids));
    CLLM_TRY(parse_logit_bias(c, root, r));
    CLLM_TRY(oj_bool(c, root, "ignore_eos", &r->ignore_eos));
    CLLM_TRY(oj_bool(c, root, "skip_special_tokens", &r->skip_special_tokens));
    CLLM_TRY(oj_bool(c, root, "include_stop_str_in_output", &r->include_stop_str_in_output));
    CLLM_TRY(oj_bool(c, root, "add_special_tokens", &r->add_special_tokens));
    CLLM_TRY(oj_int(c, root, "truncate_prompt_tokens", &r->truncate_prompt_tokens, &has));
    if (has && r->truncate_prompt_tokens < 1 && r->truncate_prompt_tokens != -1)
        return oj_fail(c, "truncate_prompt_tokens", "truncate_prompt_tokens must be >= 1 (keep the last k prompt "
                       "tokens) or -1 (keep the last max_model_len), got %lld.", (long long)r->truncate_prompt_tokens);
    CLLM_TRY(reject_unsupported(c, root, r));
    CLLM_TRY(oj_int(c, root, "min_tokens", &r->min_tokens, &has));
    if (r->min_tokens < 0)
        return oj_fail(c, "min_tokens", "min_tokens must be greater than or equal to 0, got %lld.",
                       (long long)r->min_tokens);
    if (r->max_tokens >= 0 && r->min_tokens > r->max_tokens)
        return oj_fail(c, "min_tokens", "min_tokens must be less than or equal to max_tokens=%lld, got %lld.",
                       (long long)r->max_tokens, (long long)r->min_tokens);
    CLLM_TRY(oj_str(c, root, "user", &r->user, NULL));
    CLLM_TRY(oj_bool(c, root, "stream", &r->stream));
    json_t *so = oj_get(root, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return oj_fail(c, "stream_options", "'stream_options' must be an object, got %s", oj_type(so));
        if (!r->stream)
            return oj_fail(c, "stream_options", "Stream options can only be defined when `stream=True`.");
        CLLM_TRY(oj_bool_p(c, so, "include_usage", "stream_options.include_usage", &r->include_usage));
    }
    int64_t plp = -1;
    CLLM_TRY(oj_int(c, root, "prompt_logprobs", &plp, &has));
    if (has) { /* vLLM's extra parameter */
        if (plp < 0 || plp > c->lim.max_logprobs)
            return oj_fail(c, "prompt_logprobs", "prompt_logprobs must be in [0, %d], got %lld.", c->lim.max_logprobs,
                           (long long)plp);
        if (r->stream)
            return oj_fail(c, "prompt_logprobs", "`prompt_logprobs` are not available when `stream=True`.");
        r->prompt_logprobs = (int32_t)plp;
    }
    return CLLM_OK;
}

static void request_defaults(cllm_openai_request *r, cllm_openai_endpoint ep) {
    memset(r, 0, sizeof *r);
    r->endpoint = ep;
    r->max_tokens = ep == CLLM_OPENAI_COMPLETION ? 16 : -1;
    r->temperature = 1.0;
    r->top_p = 1.0;
    r->top_k = -1;
    r->repetition_penalty = 1.0;
    r->n = 1;
    r->skip_special_tokens = true;
    r->logprobs = -1;
    r->prompt_logprobs = -1;
    r->add_generation_prompt = true;
    r->add_special_tokens = ep == CLLM_OPENAI_COMPLETION;
}

/* ---------------------------------------------------------------- prompts */
static cllm_status parse_prompt(oj_ctx *c, json_t *root, cllm_openai_request *r) {
    json_t *p = oj_get(root, "prompt");
    if (!p) return oj_fail(c, "prompt", "'prompt' is required: give a string, a list of strings, "
                                        "a list of token ids or a list of lists of token ids");
    if (json_is_string(p)) {
        if (!(r->prompts = cllm_calloc(1, sizeof *r->prompts))) return oj_oom(c);
        r->n_prompts = 1;
        r->prompts[0].text_len = json_string_length(p);
        return oj_dup(c, json_string_value(p), json_string_length(p), &r->prompts[0].text);
    }
    if (!json_is_array(p))
        return oj_fail(c, "prompt", "'prompt' must be a string, a list of strings, a list of token ids "
                                    "or a list of lists of token ids, got %s", oj_type(p));
    size_t n = json_array_size(p);
    if (n == 0) return oj_fail(c, "prompt", "'prompt' must not be an empty list");
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) { /* one tokenized prompt */
        if (!(r->prompts = cllm_calloc(1, sizeof *r->prompts))) return oj_oom(c);
        r->n_prompts = 1;
        r->prompts[0].is_tokens = true;
        return oj_ids(c, root, "prompt", true, &r->prompts[0].token_ids, &r->prompts[0].n_tokens);
    }
    if (!(r->prompts = cllm_calloc(n, sizeof *r->prompts))) return oj_oom(c);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(p, i);
        char name[48];
        snprintf(name, sizeof name, "prompt[%zu]", i);
        cllm_openai_prompt *pr = &r->prompts[i];
        r->n_prompts = i + 1;
        if (json_is_string(e) && json_is_string(first)) {
            pr->text_len = json_string_length(e);
            CLLM_TRY(oj_dup(c, json_string_value(e), pr->text_len, &pr->text));
        } else if (json_is_array(e) && json_is_array(first)) {
            pr->is_tokens = true;
            CLLM_TRY(oj_ids_value(c, e, name, true, &pr->token_ids, &pr->n_tokens));
        } else {
            return oj_fail(c, name, "'%s' is %s but 'prompt[0]' is %s: a prompt list must hold only "
                                    "strings, only token ids, or only lists of token ids",
                           name, oj_type(e), oj_type(first));
        }
    }
    return CLLM_OK;
}

/* ---------------------------------------------------------------- endpoints */
typedef cllm_status (*body_fn)(oj_ctx *c, json_t *root, void *out);

/* Size check, UTF-8 check, JSON load, object check, then fn. */
static cllm_status parse_body(const char *body, size_t len, const cllm_openai_limits *lim,
                              cllm_openai_error *err, body_fn fn, void *out) {
    oj_ctx c = {.err = err, .lim = lim ? *lim : cllm_openai_default_limits()};
    memset(err, 0, sizeof *err);
    json_t *root = NULL;
    cllm_status st = oj_load(&c, body, len, &root);
    if (st != CLLM_OK) return st;
    st = fn(&c, root, out);
    json_decref(root);
    return st;
}

static cllm_status completion_body(oj_ctx *c, json_t *root, void *out) {
    cllm_openai_request *r = out;
    bool has;
    CLLM_TRY(oj_str(c, root, "model", &r->model, NULL));
    CLLM_TRY(parse_prompt(c, root, r));
    CLLM_TRY(oj_int(c, root, "max_tokens", &r->max_tokens, &has));
    if (r->max_tokens < 0)
        return oj_fail(c, "max_tokens", "max_tokens must be at least 0, got %lld.", (long long)r->max_tokens);
    CLLM_TRY(parse_sampling(c, root, r));
    CLLM_TRY(oj_bool(c, root, "echo", &r->echo));
    if (r->max_tokens == 0 && !r->echo)
        return oj_fail(c, "max_tokens", "max_tokens must be at least 1, got 0 (0 is only allowed with echo, "
                                        "which returns the prompt alone).");
    json_t *lp = oj_get(root, "logprobs");
    if (lp) {
        int64_t v;
        CLLM_TRY(oj_int(c, root, "logprobs", &v, &has));
        if (v < 0) return oj_fail(c, "logprobs", "logprobs must be non-negative, got %lld.", (long long)v);
        if (v > c->lim.max_logprobs)
            return oj_fail(c, "logprobs", "Requested sample logprobs of %lld, which is greater than max allowed: %d",
                           (long long)v, c->lim.max_logprobs);
        r->logprobs = (int32_t)v;
    }
    return CLLM_OK;
}

static cllm_status chat_body(oj_ctx *c, json_t *root, void *out) {
    cllm_openai_request *r = out;
    bool has;
    CLLM_TRY(oj_str(c, root, "model", &r->model, NULL));
    CLLM_TRY(oj_messages(c, root, &r->messages, &r->n_messages));
    CLLM_TRY(oj_tools(c, root, r));
    CLLM_TRY(oj_int(c, root, "max_tokens", &r->max_tokens, &has));
    const char *mt = "max_tokens";
    if (oj_get(root, "max_completion_tokens")) {
        mt = "max_completion_tokens";
        CLLM_TRY(oj_int(c, root, mt, &r->max_tokens, &has));
    }
    if (has && r->max_tokens < 1)
        return oj_fail(c, mt, "%s must be at least 1, got %lld.", mt, (long long)r->max_tokens);
    CLLM_TRY(parse_sampling(c, root, r));
    CLLM_TRY(oj_bool(c, root, "logprobs", &r->chat_logprobs));
    int64_t top = -1;
    CLLM_TRY(oj_int(c, root, "top_logprobs", &top, &has));
    if (has) {
        if (top < 0) return oj_fail(c, "top_logprobs", "`top_logprobs` must be a positive value, got %lld.",
                                    (long long)top);
        if (top > c->lim.max_logprobs)
            return oj_fail(c, "top_logprobs", "`top_logprobs` must be at most %d, got %lld.",
                           c->lim.max_logprobs, (long long)top);
        if (top > 0 && !r->chat_logprobs)
            return oj_fail(c, "top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true.");
    }
    if (r->chat_logprobs) r->logprobs = has ? (int32_t)top : 0;
    CLLM_TRY(oj_bool(c, root, "add_generation_prompt", &r->add_generation_prompt));
    CLLM_TRY(oj_bool(c, root, "continue_final_message", &r->continue_final_message));
    if (r->continue_final_message && r->add_generation_prompt && oj_get(root, "add_generation_prompt"))
        return oj_fail(c, "continue_final_message", "Cannot set both `continue_final_message` and "
                                                    "`add_generation_prompt` to True.");
    if (r->continue_final_message) r->add_generation_prompt = false;
    json_t *kw = oj_get(root, "chat_template_kwargs");
    if (kw) {
        if (!json_is_object(kw))
            return oj_fail(c, "chat_template_kwargs", "'chat_template_kwargs' must be an object, got %s", oj_type(kw));
        if (!(r->chat_template_kwargs_json = json_dumps(kw, JSON_COMPACT))) return oj_oom(c);
    }
    return CLLM_OK;
}

static cllm_status finish(cllm_status st, cllm_openai_request *out) {
    if (st != CLLM_OK) cllm_openai_request_free(out);
    return st;
}

cllm_status cllm_openai_parse_completion(const char *body, size_t len, const cllm_openai_limits *lim,
                                         cllm_openai_request *out, cllm_openai_error *err) {
    request_defaults(out, CLLM_OPENAI_COMPLETION);
    return finish(parse_body(body, len, lim, err, completion_body, out), out);
}

cllm_status cllm_openai_parse_chat(const char *body, size_t len, const cllm_openai_limits *lim,
                                   cllm_openai_request *out, cllm_openai_error *err) {
    request_defaults(out, CLLM_OPENAI_CHAT);
    return finish(parse_body(body, len, lim, err, chat_body, out), out);
}

void cllm_openai_request_free(cllm_openai_request *r) {
    if (!r) return;
    free(r->model);
    for (size_t i = 0; i < r->n_prompts; i++) { free(r->prompts[i].text); free(r->prompts[i].token_ids); }
    free(r->prompts);
    oj_messages_free(r->messages, r->n_messages);
    for (size_t i = 0; i < r->n_tools; i++) {
        free(r->tools[i].name); free(r->tools[i].description); free(r->tools[i].parameters_json);
    }
    free(r->tools);
    free(r->tool_choice_name);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->stop_token_ids);
    free(r->logit_bias_ids);
    free(r->logit_bias_values);
    free(r->user);
    free(r->chat_template_kwargs_json);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- tokenize */
static cllm_status tokenize_body(oj_ctx *c, json_t *root, void *out) {
    cllm_openai_tokenize_request *r = out;
    CLLM_TRY(oj_str(c, root, "model", &r->model, NULL));
    if (oj_get(root, "messages")) {
        CLLM_TRY(oj_messages(c, root, &r->messages, &r->n_messages));
        r->add_special_tokens = false;
    } else {
        if (!oj_get(root, "prompt"))
            return oj_fail(c, "prompt", "'prompt' (a string) or 'messages' (a list of chat messages) is required");
        CLLM_TRY(oj_str(c, root, "prompt", &r->prompt, &r->prompt_len));
        r->add_special_tokens = true;
    }
    CLLM_TRY(oj_bool(c, root, "add_special_tokens", &r->add_special_tokens));
    CLLM_TRY(oj_bool(c, root, "add_generation_prompt", &r->add_generation_prompt));
    return oj_bool(c, root, "return_token_strs", &r->return_token_strs);
}

cllm_status cllm_openai_parse_tokenize(const char *body, size_t len, const cllm_openai_limits *lim,
                                       cllm_openai_tokenize_request *out, cllm_openai_error *err) {
    memset(out, 0, sizeof *out);
    out->add_generation_prompt = true;
    cllm_status st = parse_body(body, len, lim, err, tokenize_body, out);
    if (st != CLLM_OK) cllm_openai_tokenize_request_free(out);
    return st;
}

void cllm_openai_tokenize_request_free(cllm_openai_tokenize_request *r) {
    if (!r) return;
    free(r->model);
    free(r->prompt);
    oj_messages_free(r->messages, r->n_messages);
    memset(r, 0, sizeof *r);
}

static cllm_status detokenize_body(oj_ctx *c, json_t *root, void *out) {
    cllm_openai_detokenize_request *r = out;
    CLLM_TRY(oj_str(c, root, "model", &r->model, NULL));
    if (!oj_get(root, "tokens")) return oj_fail(c, "tokens", "'tokens' (a list of token ids) is required");
    return oj_ids(c, root, "tokens", false, &r->tokens, &r->n_tokens);
}

cllm_status cllm_openai_parse_detokenize(const char *body, size_t len, const cllm_openai_limits *lim,
                                         cllm_openai_detokenize_request *out, cllm_openai_error *err) {
    memset(out, 0, sizeof *out);
    cllm_status st = parse_body(body, len, lim, err, detokenize_body, out);
    if (st != CLLM_OK) cllm_openai_detokenize_request_free(out);
    return st;
}

void cllm_openai_detokenize_request_free(cllm_openai_detokenize_request *r) {
    if (!r) return;
    free(r->model);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- context length */
cllm_status cllm_openai_check_context_length(int64_t prompt_tokens, int64_t *max_tokens,
                                             int64_t max_model_len, const char *param,
                                             cllm_openai_error *err) {
    memset(err, 0, sizeof *err);
    if (prompt_tokens >= max_model_len && *max_tokens < 0) {
        cllm_openai_error_set(err, 400, "invalid_request_error", param,
                              "This model's maximum context length is %lld tokens. However, you requested "
                              "%lld tokens in the messages, Please reduce the length of the messages.",
                              (long long)max_model_len, (long long)prompt_tokens);
        snprintf(err->code, sizeof err->code, "context_length_exceeded");
        return CLLM_ERR_CONTEXT_LENGTH;
    }
    if (*max_tokens < 0) { *max_tokens = max_model_len - prompt_tokens; return CLLM_OK; }
    if (prompt_tokens + *max_tokens > max_model_len) {
        cllm_openai_error_set(err, 400, "invalid_request_error", param,
                              "This model's maximum context length is %lld tokens. However, you requested "
                              "%lld tokens (%lld in the messages, %lld in the completion). Please reduce "
                              "the length of the messages or completion.",
                              (long long)max_model_len, (long long)(prompt_tokens + *max_tokens),
                              (long long)prompt_tokens, (long long)*max_tokens);
        snprintf(err->code, sizeof err->code, "context_length_exceeded");
        return CLLM_ERR_CONTEXT_LENGTH;
    }
    return CLLM_OK;
}
