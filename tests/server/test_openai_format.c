/* Response formatting: every body parses back as JSON with exactly the field
 * sets of the OpenAI API reference (Completions, Chat Completions, their
 * streaming chunks, error object) and vLLM's /v1/models, /tokenize,
 * /detokenize shapes; SSE framing is "data: <json>\n\n" + "data: [DONE]\n\n". */
#include "server/openai_protocol.h"
#include "server/sse.h"
#include "test_util.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

/* True if obj's keys are exactly the comma-separated list. */
static int keys_are(json_t *obj, const char *csv) {
    if (!json_is_object(obj)) return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", csv);
    size_t n = 0;
    for (char *k = strtok(buf, ","); k; k = strtok(NULL, ",")) {
        if (!json_object_get(obj, k)) { fprintf(stderr, "missing key %s\n", k); return 0; }
        n++;
    }
    if (json_object_size(obj) != n) {
        fprintf(stderr, "keys: %s, want %s\n", json_dumps(obj, JSON_COMPACT), csv);
        return 0;
    }
    return 1;
}

static json_t *load(char *s) {
    CHECK(s != NULL, "format returned NULL");
    if (!s) return json_object();
    CHECK(!strchr(s, '\n'), "JSON must be one line for SSE: %s", s);
    json_error_t e;
    json_t *v = json_loads(s, 0, &e);
    CHECK(v != NULL, "not JSON (%s): %s", e.text, s);
    free(s);
    return v ? v : json_object();
}

static const cllm_openai_top_logprob TOP[] = {{"Hello", 5, -0.25f}, {"Hi", 2, -1.5f}};
/* token 2 is a lone byte 0xE2 (a byte-fallback piece): invalid UTF-8 on its own */
static const cllm_openai_token_logprob LP[] = {
    {"Hello", 5, -0.25f, TOP, 2, 0},
    {"\xE2", 1, -INFINITY, NULL, 0, 5},
    {" x", 2, NAN, TOP, 1, 5},
};

static void completion(void) {
    cllm_openai_choice ch[2] = {
        {.index = 0, .text = "Hello", .text_len = 5, .has_logprobs = true, .logprobs = LP, .n_logprobs = 3,
         .finish_reason = CLLM_OPENAI_FINISH_LENGTH},
        {.index = 1, .text = "Bye", .text_len = 3, .finish_reason = CLLM_OPENAI_FINISH_STOP},
    };
    cllm_openai_response r = {"cmpl-abc", "m", 1700000000, ch, 2, {7, 8}};
    json_t *o = load(cllm_openai_format_completion(&r));
    CHECK(keys_are(o, "id,object,created,model,choices,usage"), "completion keys");
    CHECK(!strcmp(json_string_value(json_object_get(o, "object")), "text_completion"), "object");
    CHECK(json_integer_value(json_object_get(o, "created")) == 1700000000, "created");
    json_t *c0 = json_array_get(json_object_get(o, "choices"), 0), *c1 = json_array_get(json_object_get(o, "choices"), 1);
    CHECK(keys_are(c0, "text,index,logprobs,finish_reason") && keys_are(c1, "text,index,logprobs,finish_reason"), "choice keys");
    CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length"), "finish length");
    CHECK(json_is_null(json_object_get(c1, "logprobs")) && json_integer_value(json_object_get(c1, "index")) == 1, "c1");
    json_t *lp = json_object_get(c0, "logprobs");
    CHECK(keys_are(lp, "tokens,token_logprobs,top_logprobs,text_offset"), "logprobs keys");
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(lp, "tokens"), 1)), "\xEF\xBF\xBD"), "U+FFFD");
    CHECK(json_real_value(json_array_get(json_object_get(lp, "token_logprobs"), 1)) == -9999.0, "-inf -> -9999");
    CHECK(json_is_null(json_array_get(json_object_get(lp, "token_logprobs"), 2)), "NaN -> null");
    json_t *top0 = json_array_get(json_object_get(lp, "top_logprobs"), 0);
    CHECK(json_object_size(top0) == 2 && json_real_value(json_object_get(top0, "Hi")) == -1.5, "top dict");
    CHECK(json_is_null(json_array_get(json_object_get(lp, "top_logprobs"), 1)), "no top -> null");
    CHECK(json_integer_value(json_array_get(json_object_get(lp, "text_offset"), 2)) == 5, "text_offset");
    json_t *u = json_object_get(o, "usage");
    CHECK(keys_are(u, "prompt_tokens,completion_tokens,total_tokens"), "usage keys");
    CHECK(json_integer_value(json_object_get(u, "total_tokens")) == 15, "total");
    json_decref(o);
}

static void chat(void) {
    cllm_openai_tool_call tc = {"call_1", "get_weather", "{\"city\":\"Paris\"}"};
    cllm_openai_choice ch[2] = {
        {.index = 0, .text = "Hi \xF0\x9F\x98\x80", .text_len = 7, .has_logprobs = true, .logprobs = LP, .n_logprobs = 2,
         .finish_reason = CLLM_OPENAI_FINISH_STOP},
        {.index = 1, .text = NULL, .tool_calls = &tc, .n_tool_calls = 1, .finish_reason = CLLM_OPENAI_FINISH_TOOL_CALLS},
    };
    cllm_openai_response r = {"chatcmpl-1", "m", 5, ch, 2, {3, 4}};
    json_t *o = load(cllm_openai_format_chat_completion(&r));
    CHECK(keys_are(o, "id,object,created,model,choices,usage"), "chat keys");
    CHECK(!strcmp(json_string_value(json_object_get(o, "object")), "chat.completion"), "object");
    json_t *c0 = json_array_get(json_object_get(o, "choices"), 0), *c1 = json_array_get(json_object_get(o, "choices"), 1);
    CHECK(keys_are(c0, "index,message,logprobs,finish_reason"), "choice keys");
    json_t *m = json_object_get(c0, "message");
    CHECK(keys_are(m, "role,content") && !strcmp(json_string_value(json_object_get(m, "role")), "assistant"), "message");
    CHECK(!strcmp(json_string_value(json_object_get(m, "content")), "Hi \xF0\x9F\x98\x80"), "content");
    json_t *content = json_object_get(json_object_get(c0, "logprobs"), "content");
    CHECK(keys_are(json_object_get(c0, "logprobs"), "content") && json_array_size(content) == 2, "logprobs.content");
    json_t *e0 = json_array_get(content, 0), *e1 = json_array_get(content, 1);
    CHECK(keys_are(e0, "token,logprob,bytes,top_logprobs"), "entry keys");
    CHECK(json_array_size(json_object_get(e0, "bytes")) == 5 &&
          json_integer_value(json_array_get(json_object_get(e0, "bytes"), 0)) == 'H', "bytes");
    json_t *t0 = json_array_get(json_object_get(e0, "top_logprobs"), 0);
    CHECK(keys_are(t0, "token,logprob,bytes") && !strcmp(json_string_value(json_object_get(t0, "token")), "Hello"), "top");
    CHECK(json_integer_value(json_array_get(json_object_get(e1, "bytes"), 0)) == 0xE2, "raw byte kept in bytes");
    CHECK(json_array_size(json_object_get(e1, "top_logprobs")) == 0, "empty top list");
    json_t *m1 = json_object_get(c1, "message");
    CHECK(keys_are(m1, "role,content,tool_calls") && json_is_null(json_object_get(m1, "content")), "tool message");
    json_t *call = json_array_get(json_object_get(m1, "tool_calls"), 0);
    CHECK(keys_are(call, "id,type,function") && keys_are(json_object_get(call, "function"), "name,arguments"), "call keys");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(call, "function"), "arguments")), "{\"city\":\"Paris\"}"), "args");
    CHECK(!strcmp(json_string_value(json_object_get(c1, "finish_reason")), "tool_calls"), "finish tool_calls");
    json_decref(o);
}

/* A full chat stream as OpenAI sends it: role chunk, content chunks, finish
 * chunk with empty delta, usage chunk with choices [], [DONE]. */
static void chat_stream(void) {
    char id[64];
    cllm_openai_make_id("chatcmpl-", id, sizeof id);
    CHECK(strlen(id) == 9 + 32 && !strncmp(id, "chatcmpl-", 9), "id %s", id);
    char id2[64];
    CHECK(strcmp(cllm_openai_make_id("chatcmpl-", id2, sizeof id2), id), "ids differ");
    cllm_openai_chunk c = {.id = id, .model = "m", .created = 9, .first = true, .include_usage = true};
    const char *texts[] = {NULL, "Hel", "lo", NULL};
    char *stream = calloc(1, 1);
    size_t slen = 0;
    for (int i = 0; i < 4; i++) {
        c.first = i == 0;
        c.text = texts[i];
        c.text_len = texts[i] ? strlen(texts[i]) : 0;
        c.finish_reason = i == 3 ? CLLM_OPENAI_FINISH_STOP : CLLM_OPENAI_FINISH_NONE;
        size_t n;
        char *f = cllm_sse_frame_take(cllm_openai_format_chat_chunk(&c), &n);
        CHECK(f && n == strlen(f), "frame");
        stream = realloc(stream, slen + n + 1);
        memcpy(stream + slen, f, n + 1);
        slen += n;
        free(f);
    }
    cllm_openai_usage u = {2, 2};
    size_t n;
    char *f = cllm_sse_frame_take(cllm_openai_format_usage_chunk(CLLM_OPENAI_CHAT, id, "m", 9, u), &n);
    stream = realloc(stream, slen + n + strlen(CLLM_SSE_DONE) + 1);
    memcpy(stream + slen, f, n + 1);
    strcat(stream, CLLM_SSE_DONE);
    free(f);
    /* split into events */
    int ev = 0;
    char *p = stream;
    json_t *events[8] = {0};
    while (*p) {
        CHECK(!strncmp(p, "data: ", 6), "event %d starts with 'data: '", ev);
        char *end = strstr(p, "\n\n");
        CHECK(end != NULL, "event %d ends with a blank line", ev);
        if (!end || !strncmp(p, "data: ", 6) == 0) break;
        *end = 0;
        if (!strcmp(p + 6, "[DONE]")) { CHECK(end[2] == 0, "[DONE] is last"); ev++; break; }
        events[ev++] = load(strdup(p + 6));
        p = end + 2;
    }
    CHECK(ev == 6, "6 events, got %d", ev);
    for (int i = 0; i < 4; i++) {
        json_t *o = events[i];
        CHECK(keys_are(o, "id,object,created,model,choices,usage") && json_is_null(json_object_get(o, "usage")), "chunk %d", i);
        CHECK(!strcmp(json_string_value(json_object_get(o, "object")), "chat.completion.chunk"), "object");
        CHECK(!strcmp(json_string_value(json_object_get(o, "id")), id), "same id");
        json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
        CHECK(keys_are(ch, "index,delta,logprobs,finish_reason"), "chunk choice keys");
        json_t *d = json_object_get(ch, "delta");
        if (i == 0) CHECK(keys_are(d, "role,content") && !strcmp(json_string_value(json_object_get(d, "content")), ""), "role delta");
        if (i == 1) CHECK(keys_are(d, "content") && !strcmp(json_string_value(json_object_get(d, "content")), "Hel"), "delta");
        if (i == 3) CHECK(json_object_size(d) == 0 && !strcmp(json_string_value(json_object_get(ch, "finish_reason")), "stop"), "final");
        if (i < 3) CHECK(json_is_null(json_object_get(ch, "finish_reason")), "null finish");
    }
    json_t *uo = events[4];
    CHECK(keys_are(uo, "id,object,created,model,choices,usage") && json_array_size(json_object_get(uo, "choices")) == 0, "usage chunk");
    CHECK(json_integer_value(json_object_get(json_object_get(uo, "usage"), "total_tokens")) == 4, "usage");
    for (int i = 0; i < 8; i++) json_decref(events[i]);
    free(stream);
}

static void completion_stream_and_misc(void) {
    cllm_openai_chunk c = {.id = "cmpl-1", .model = "m", .created = 1, .text = "ab", .text_len = 2};
    json_t *o = load(cllm_openai_format_completion_chunk(&c));
    CHECK(keys_are(o, "id,object,created,model,choices") && !strcmp(json_string_value(json_object_get(o, "object")), "text_completion"), "cmpl chunk");
    CHECK(keys_are(json_array_get(json_object_get(o, "choices"), 0), "text,index,logprobs,finish_reason"), "cmpl chunk choice");
    json_decref(o);
    o = load(cllm_openai_format_usage_chunk(CLLM_OPENAI_COMPLETION, "cmpl-1", "m", 1, (cllm_openai_usage){1, 2}));
    CHECK(!strcmp(json_string_value(json_object_get(o, "object")), "text_completion") && json_array_size(json_object_get(o, "choices")) == 0, "usage");
    json_decref(o);

    cllm_openai_error err = {0};
    cllm_openai_error_set(&err, 400, "invalid_request_error", "temperature", "temperature must be in [0, 2], got %g.", 3.0);
    o = load(cllm_openai_format_error(&err));
    CHECK(keys_are(o, "error,object") && keys_are(json_object_get(o, "error"), "message,type,param,code"), "error keys");
    json_t *e = json_object_get(o, "error");
    CHECK(!strcmp(json_string_value(json_object_get(e, "param")), "temperature") && json_is_null(json_object_get(e, "code")), "param/code");
    CHECK(!strcmp(json_string_value(json_object_get(e, "message")), "temperature must be in [0, 2], got 3."), "message");
    json_decref(o);
    memset(&err, 0, sizeof err);
    cllm_openai_error_set(&err, 413, "invalid_request_error", NULL, "too big");
    o = load(cllm_openai_format_error(&err));
    CHECK(json_is_null(json_object_get(json_object_get(o, "error"), "param")), "null param");
    json_decref(o);

    cllm_openai_model_card cards[] = {{"llama3-8b", "meta-llama/Llama-3.1-8B-Instruct", 7, 8192}, {"x", NULL, 7, 0}};
    o = load(cllm_openai_format_models(cards, 2));
    CHECK(keys_are(o, "object,data") && !strcmp(json_string_value(json_object_get(o, "object")), "list"), "models");
    json_t *m0 = json_array_get(json_object_get(o, "data"), 0);
    CHECK(keys_are(m0, "id,object,created,owned_by,root,parent,max_model_len") &&
          !strcmp(json_string_value(json_object_get(m0, "object")), "model"), "model card");
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(o, "data"), 1), "root")), "x"), "root default");
    json_decref(o);

    int32_t ids[] = {1, 15043, 3186};
    const char *strs[] = {"<s>", "\xE2\x96\x81Hello", "\xE2\x96\x81world"};
    o = load(cllm_openai_format_tokenize(ids, 3, 4096, strs));
    CHECK(keys_are(o, "count,max_model_len,tokens,token_strs") && json_integer_value(json_object_get(o, "count")) == 3, "tokenize");
    CHECK(json_integer_value(json_array_get(json_object_get(o, "tokens"), 1)) == 15043, "tokens");
    json_decref(o);
    o = load(cllm_openai_format_tokenize(ids, 0, 4096, NULL));
    CHECK(json_is_null(json_object_get(o, "token_strs")) && json_array_size(json_object_get(o, "tokens")) == 0, "empty");
    json_decref(o);
    o = load(cllm_openai_format_detokenize("Hello \xFF", 7));
    CHECK(keys_are(o, "prompt") && !strcmp(json_string_value(json_object_get(o, "prompt")), "Hello \xEF\xBF\xBD"), "detok");
    json_decref(o);

    size_t n;
    char *f = cllm_sse_frame("{\"a\":1}", 7, &n);
    CHECK(f && !strcmp(f, "data: {\"a\":1}\n\n") && n == 15, "frame");
    free(f);
    CHECK(cllm_sse_frame("{\"a\":\n1}", 8, &n) == NULL, "newline rejected");
    CHECK(cllm_sse_frame_take(NULL, &n) == NULL, "NULL");
    CHECK(!strcmp(CLLM_SSE_DONE, "data: [DONE]\n\n"), "done");
    CHECK(cllm_openai_finish_reason_name(CLLM_OPENAI_FINISH_NONE) == NULL, "none");
}

int main(void) {
    completion();
    chat();
    chat_stream();
    completion_stream_and_misc();
    TEST_DONE();
}
