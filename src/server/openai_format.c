/* OpenAI response formatting: borrowed views -> JSON text (see openai_protocol.h).
 * Field sets follow the OpenAI API reference (Completions / Chat Completions
 * objects and their streaming chunks) and vLLM's protocol.py extras. */
#include "server/openai_json.h"

#include "core/status.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *cllm_openai_finish_reason_name(cllm_openai_finish_reason r) {
    switch (r) {
    case CLLM_OPENAI_FINISH_NONE: return NULL;
    case CLLM_OPENAI_FINISH_STOP: return "stop";
    case CLLM_OPENAI_FINISH_LENGTH: return "length";
    case CLLM_OPENAI_FINISH_TOOL_CALLS: return "tool_calls";
    case CLLM_OPENAI_FINISH_ABORT: return "abort";
    }
    return NULL;
}

char *cllm_openai_make_id(const char *prefix, char *buf, size_t size) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t state;
    pthread_mutex_lock(&mu);
    if (!state) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ 0x9E3779B97F4A7C15ULL;
    }
    uint64_t w[2];
    for (int i = 0; i < 2; i++) { /* splitmix64 */
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        w[i] = z ^ (z >> 31);
    }
    pthread_mutex_unlock(&mu);
    snprintf(buf, size, "%s%016llx%016llx", prefix, (unsigned long long)w[0], (unsigned long long)w[1]);
    return buf;
}

/* ---------------------------------------------------------------- builders */
/* A JSON string of n bytes; invalid UTF-8 bytes become U+FFFD. NULL on OOM. */
static json_t *jstr(const char *s, size_t n) {
    if (!s) return json_null();
    size_t bad = cllm_openai_utf8_check(s, n);
    if (bad == n) return json_stringn(s, n);
    char *buf = malloc(n * 3 + 1);
    if (!buf) return NULL;
    size_t at = 0, i = 0;
    while (i < n) {
        size_t ok = cllm_openai_utf8_check(s + i, n - i);
        memcpy(buf + at, s + i, ok);
        at += ok;
        i += ok;
        if (i < n) { memcpy(buf + at, "\xEF\xBF\xBD", 3); at += 3; i++; }
    }
    json_t *v = json_stringn(buf, at);
    free(buf);
    return v;
}

static json_t *jcstr(const char *s) { return s ? json_string(s) : json_null(); }

/* vLLM clamps -inf to -9999.0; NaN (no value) -> null. */
static json_t *jlogprob(float lp) {
    if (isnan(lp)) return json_null();
    if (isinf(lp)) return json_real(lp < 0 ? -9999.0 : 9999.0);
    return json_real(lp);
}

/* Set obj[key] = v; *ok becomes 0 if v is NULL (allocation failure). */
static void put(json_t *obj, const char *key, json_t *v, int *ok) {
    if (!v || json_object_set_new(obj, key, v)) *ok = 0;
}
static void append(json_t *arr, json_t *v, int *ok) {
    if (!v || json_array_append_new(arr, v)) *ok = 0;
}

static char *dump(json_t *v, int ok) {
    char *s = ok && v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return s;
}

static json_t *usage_obj(cllm_openai_usage u) {
    return json_pack("{sI sI sI}", "prompt_tokens", (json_int_t)u.prompt_tokens, "completion_tokens",
                     (json_int_t)u.completion_tokens, "total_tokens",
                     (json_int_t)(u.prompt_tokens + u.completion_tokens));
}

/* Completions logprobs: {tokens, token_logprobs, top_logprobs, text_offset}. */
static json_t *completion_logprobs(const cllm_openai_token_logprob *lp, size_t n) {
    json_t *o = json_object(), *tokens = json_array(), *tlp = json_array(), *top = json_array(),
           *off = json_array();
    int ok = o && tokens && tlp && top && off;
    for (size_t i = 0; ok && i < n; i++) {
        append(tokens, jstr(lp[i].token, lp[i].token_len), &ok);
        append(tlp, jlogprob(lp[i].logprob), &ok);
        append(off, json_integer(lp[i].text_offset), &ok);
        if (!lp[i].top) { append(top, json_null(), &ok); continue; }
        json_t *d = json_object();
        for (size_t k = 0; d && ok && k < lp[i].n_top; k++) {
            json_t *t = jstr(lp[i].top[k].token, lp[i].top[k].token_len);
            if (!t) { ok = 0; break; }
            put(d, json_string_value(t), jlogprob(lp[i].top[k].logprob), &ok);
            json_decref(t);
        }
        append(top, d, &ok);
    }
    put(o, "tokens", tokens, &ok);
    put(o, "token_logprobs", tlp, &ok);
    put(o, "top_logprobs", top, &ok);
    put(o, "text_offset", off, &ok);
    if (!ok) { json_decref(o); return NULL; }
    return o;
}

static json_t *jbytes(const char *s, size_t n) {
    json_t *a = json_array();
    int ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++) append(a, json_integer((unsigned char)s[i]), &ok);
    if (!ok) { json_decref(a); return NULL; }
    return a;
}

/* Chat logprobs: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}. */
static json_t *chat_logprobs(const cllm_openai_token_logprob *lp, size_t n) {
    json_t *o = json_object(), *content = json_array();
    int ok = o && content;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *e = json_object(), *top = json_array();
        ok = e && top;
        put(e, "token", jstr(lp[i].token, lp[i].token_len), &ok);
        put(e, "logprob", jlogprob(lp[i].logprob), &ok);
        put(e, "bytes", jbytes(lp[i].token, lp[i].token_len), &ok);
        for (size_t k = 0; ok && k < lp[i].n_top; k++) {
            const cllm_openai_top_logprob *t = &lp[i].top[k];
            json_t *te = json_object();
            if (!te) { ok = 0; break; }
            put(te, "token", jstr(t->token, t->token_len), &ok);
            put(te, "logprob", jlogprob(t->logprob), &ok);
            put(te, "bytes", jbytes(t->token, t->token_len), &ok);
            append(top, te, &ok);
        }
        put(e, "top_logprobs", top, &ok);
        append(content, e, &ok);
    }
    put(o, "content", content, &ok);
    if (!ok) { json_decref(o); return NULL; }
    return o;
}

static json_t *finish_json(cllm_openai_finish_reason r) { return jcstr(cllm_openai_finish_reason_name(r)); }

static json_t *tool_calls_json(const cllm_openai_tool_call *tc, size_t n) {
    json_t *a = json_array();
    int ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++)
        append(a, json_pack("{s:s? s:s s:{s:s s:s}}", "id", tc[i].id, "type", "function", "function", "name",
                            tc[i].name ? tc[i].name : "", "arguments", tc[i].arguments ? tc[i].arguments : "{}"),
               &ok);
    if (!ok) { json_decref(a); return NULL; }
    return a;
}

static json_t *header(const char *id, const char *object, int64_t created, const char *model) {
    return json_pack("{s:s s:s s:I s:s}", "id", id ? id : "", "object", object, "created", (json_int_t)created,
                     "model", model ? model : "");
}

/* ---------------------------------------------------------------- responses */
char *cllm_openai_format_error(const cllm_openai_error *err) {
    json_t *e = json_object();
    int ok = e != NULL;
    put(e, "message", jstr(err->message, strlen(err->message)), &ok);
    put(e, "type", json_string(err->type[0] ? err->type : "invalid_request_error"), &ok);
    put(e, "param", err->param[0] ? jstr(err->param, strlen(err->param)) : json_null(), &ok);
    put(e, "code", err->code[0] ? json_string(err->code) : json_null(), &ok);
    json_t *o = json_object();
    if (!o) ok = 0;
    put(o, "error", e, &ok);
    if (o) put(o, "object", json_string("error"), &ok);
    return dump(o, ok);
}

/* vLLM's prompt_logprobs: [null, {"<id>": {"logprob", "rank", "decoded_token"}}, ...]. */
static json_t *prompt_logprobs_json(const cllm_openai_prompt_logprob *p, size_t n) {
    json_t *a = json_array();
    int ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (!p[i].n) { append(a, json_null(), &ok); continue; }
        json_t *d = json_object();
        if (!d) { ok = 0; break; }
        for (size_t k = 0; ok && k < p[i].n; k++) {
            const cllm_openai_plp_entry *e = &p[i].entries[k];
            char key[16];
            snprintf(key, sizeof key, "%d", e->id);
            if (json_object_get(d, key)) continue;
            json_t *v = json_object();
            if (!v) { ok = 0; break; }
            put(v, "logprob", jlogprob(e->logprob), &ok);
            put(v, "rank", e->rank > 0 ? json_integer(e->rank) : json_null(), &ok);
            put(v, "decoded_token", jstr(e->token ? e->token : "", e->token ? e->token_len : 0), &ok);
            put(d, key, v, &ok);
        }
        append(a, d, &ok);
    }
    if (!ok) { json_decref(a); return NULL; }
    return a;
}

char *cllm_openai_format_completion(const cllm_openai_response *r) {
    json_t *o = header(r->id, "text_completion", r->created, r->model), *choices = json_array();
    int ok = o && choices;
    for (size_t i = 0; ok && i < r->n_choices; i++) {
        const cllm_openai_choice *c = &r->choices[i];
        json_t *ch = json_object();
        if (!ch) { ok = 0; break; }
        put(ch, "index", json_integer(c->index), &ok);
        put(ch, "text", jstr(c->text ? c->text : "", c->text ? c->text_len : 0), &ok);
        put(ch, "logprobs", c->has_logprobs ? completion_logprobs(c->logprobs, c->n_logprobs) : json_null(), &ok);
        put(ch, "finish_reason", finish_json(c->finish_reason), &ok);
        if (c->has_prompt_logprobs)
            put(ch, "prompt_logprobs", prompt_logprobs_json(c->prompt_logprobs, c->n_prompt_logprobs), &ok);
        append(choices, ch, &ok);
    }
    put(o, "choices", choices, &ok);
    put(o, "usage", usage_obj(r->usage), &ok);
    return dump(o, ok);
}

char *cllm_openai_format_chat_completion(const cllm_openai_response *r) {
    json_t *o = header(r->id, "chat.completion", r->created, r->model), *choices = json_array();
    int ok = o && choices;
    for (size_t i = 0; ok && i < r->n_choices; i++) {
        const cllm_openai_choice *c = &r->choices[i];
        json_t *ch = json_object(), *msg = json_object();
        if (!ch || !msg) { json_decref(ch); json_decref(msg); ok = 0; break; }
        put(msg, "role", json_string("assistant"), &ok);
        put(msg, "content", jstr(c->text, c->text_len), &ok);
        if (c->n_tool_calls) put(msg, "tool_calls", tool_calls_json(c->tool_calls, c->n_tool_calls), &ok);
        put(ch, "index", json_integer(c->index), &ok);
        put(ch, "message", msg, &ok);
        put(ch, "logprobs", c->has_logprobs ? chat_logprobs(c->logprobs, c->n_logprobs) : json_null(), &ok);
        put(ch, "finish_reason", finish_json(c->finish_reason), &ok);
        append(choices, ch, &ok);
    }
    put(o, "choices", choices, &ok);
    put(o, "usage", usage_obj(r->usage), &ok);
    if (r->has_prompt_logprobs)
        put(o, "prompt_logprobs", prompt_logprobs_json(r->prompt_logprobs, r->n_prompt_logprobs), &ok);
    return dump(o, ok);
}

/* ---------------------------------------------------------------- streaming */
char *cllm_openai_format_completion_chunk(const cllm_openai_chunk *c) {
    json_t *o = header(c->id, "text_completion", c->created, c->model), *choices = json_array(),
           *ch = json_object();
    int ok = o && choices && ch;
    put(ch, "index", json_integer(c->index), &ok);
    put(ch, "text", jstr(c->text ? c->text : "", c->text ? c->text_len : 0), &ok);
    put(ch, "logprobs", c->has_logprobs ? completion_logprobs(c->logprobs, c->n_logprobs) : json_null(), &ok);
    put(ch, "finish_reason", finish_json(c->finish_reason), &ok);
    append(choices, ch, &ok);
    put(o, "choices", choices, &ok);
    if (c->include_usage) put(o, "usage", json_null(), &ok);
    return dump(o, ok);
}

char *cllm_openai_format_chat_chunk(const cllm_openai_chunk *c) {
    json_t *o = header(c->id, "chat.completion.chunk", c->created, c->model), *choices = json_array(),
           *ch = json_object(), *delta = json_object();
    int ok = o && choices && ch && delta;
    if (c->first) put(delta, "role", json_string("assistant"), &ok);
    if (c->text || c->first) put(delta, "content", jstr(c->text ? c->text : "", c->text ? c->text_len : 0), &ok);
    if (c->n_tool_calls) {
        json_t *tc = tool_calls_json(c->tool_calls, c->n_tool_calls);
        for (size_t i = 0; tc && i < c->n_tool_calls; i++)
            put(json_array_get(tc, i), "index", json_integer((json_int_t)c->tool_call_index + (json_int_t)i), &ok);
        put(delta, "tool_calls", tc, &ok);
    }
    put(ch, "index", json_integer(c->index), &ok);
    put(ch, "delta", delta, &ok);
    put(ch, "logprobs", c->has_logprobs ? chat_logprobs(c->logprobs, c->n_logprobs) : json_null(), &ok);
    put(ch, "finish_reason", finish_json(c->finish_reason), &ok);
    append(choices, ch, &ok);
    put(o, "choices", choices, &ok);
    if (c->include_usage) put(o, "usage", json_null(), &ok);
    return dump(o, ok);
}

char *cllm_openai_format_usage_chunk(cllm_openai_endpoint endpoint, const char *id, const char *model,
                                     int64_t created, cllm_openai_usage usage) {
    json_t *o = header(id, endpoint == CLLM_OPENAI_CHAT ? "chat.completion.chunk" : "text_completion", created,
                       model);
    int ok = o != NULL;
    put(o, "choices", json_array(), &ok);
    put(o, "usage", usage_obj(usage), &ok);
    return dump(o, ok);
}

/* ---------------------------------------------------------------- misc endpoints */
char *cllm_openai_format_models(const cllm_openai_model_card *cards, size_t n) {
    json_t *o = json_object(), *data = json_array();
    int ok = o && data;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_pack("{s:s s:s s:I s:s s:s s:n}", "id", cards[i].id ? cards[i].id : "", "object", "model",
                              "created", (json_int_t)cards[i].created, "owned_by", "cllm", "root",
                              cards[i].root ? cards[i].root : (cards[i].id ? cards[i].id : ""), "parent");
        if (m && cards[i].max_model_len > 0) put(m, "max_model_len", json_integer(cards[i].max_model_len), &ok);
        append(data, m, &ok);
    }
    put(o, "object", json_string("list"), &ok);
    put(o, "data", data, &ok);
    return dump(o, ok);
}

char *cllm_openai_format_tokenize(const int32_t *tokens, size_t n, int64_t max_model_len,
                                  const char *const *token_strs) {
    json_t *o = json_object(), *a = json_array(), *s = token_strs ? json_array() : json_null();
    int ok = o && a && s;
    for (size_t i = 0; ok && i < n; i++) {
        append(a, json_integer(tokens[i]), &ok);
        if (token_strs) append(s, token_strs[i] ? jstr(token_strs[i], strlen(token_strs[i])) : json_null(), &ok);
    }
    put(o, "count", json_integer((json_int_t)n), &ok);
    put(o, "max_model_len", json_integer(max_model_len), &ok);
    put(o, "tokens", a, &ok);
    put(o, "token_strs", s, &ok);
    return dump(o, ok);
}

char *cllm_openai_format_detokenize(const char *text, size_t text_len) {
    json_t *o = json_object();
    int ok = o != NULL;
    put(o, "prompt", jstr(text ? text : "", text ? text_len : 0), &ok);
    return dump(o, ok);
}
