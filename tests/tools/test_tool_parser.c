/* Tool-call parsers (server/tool_parser.h) against outside truth: model
 * outputs rendered from assistant messages with tool_calls through the real
 * chat templates (cases.json, made by gen_cases.py with jinja2); the parser
 * must recover exactly those calls, and vLLM's content. Streaming: the same
 * texts fed split at every byte boundary, byte by byte and in random chunks
 * must give the same events. Malformed inputs fall back to content. */
#include "server/tool_parser.h"

#include "../server/test_util.h"

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x1234567887654321ULL;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

typedef struct collected {
    char *content;
    size_t len, cap;
    cllm_openai_tool_call *calls; /* id, name, arguments owned */
    size_t n, cap_calls;
    int bad_index;                /* a call came with an index out of order */
} collected;

static void coll_free(collected *c) {
    free(c->content);
    cllm_tool_calls_free(c->calls, c->n);
    memset(c, 0, sizeof *c);
}

/* Feed text in chunks of the given sizes (cut[] are split offsets, n_cut of them). */
static int stream_run(cllm_tool_parser_kind k, const char *text, size_t len, const size_t *cut, size_t n_cut,
                      collected *out) {
    memset(out, 0, sizeof *out);
    cllm_tool_stream *s = NULL;
    if (cllm_tool_stream_create(k, &s) != CLLM_OK) return 0;
    size_t prev = 0;
    for (size_t i = 0; i <= n_cut; i++) {
        size_t end = i < n_cut ? cut[i] : len;
        const cllm_tool_event *ev;
        size_t n;
        if (cllm_tool_stream_feed(s, text + prev, end - prev, i == n_cut, &ev, &n) != CLLM_OK) {
            cllm_tool_stream_destroy(s);
            return 0;
        }
        for (size_t e = 0; e < n; e++) {
            if (ev[e].is_call) {
                if (ev[e].index != out->n) out->bad_index = 1;
                if (out->n == out->cap_calls) {
                    out->cap_calls = out->cap_calls ? 2 * out->cap_calls : 8;
                    out->calls = realloc(out->calls, out->cap_calls * sizeof *out->calls);
                }
                out->calls[out->n].id = strdup(ev[e].call->id);
                out->calls[out->n].name = strdup(ev[e].call->name);
                out->calls[out->n].arguments = strdup(ev[e].call->arguments);
                out->n++;
            } else {
                CHECK(ev[e].text_len > 0, "empty content event");
                if (out->len + ev[e].text_len + 1 > out->cap) { /* doubling: ASan's realloc always copies */
                    out->cap = 2 * (out->len + ev[e].text_len + 1);
                    out->content = realloc(out->content, out->cap);
                }
                memcpy(out->content + out->len, ev[e].text, ev[e].text_len);
                out->len += ev[e].text_len;
                out->content[out->len] = 0;
            }
        }
        prev = end;
    }
    const cllm_tool_event *ev;
    size_t n;
    CHECK(cllm_tool_stream_feed(s, "x", 1, false, &ev, &n) == CLLM_ERR_INVALID_ARG, "feed after final accepted");
    cllm_tool_stream_destroy(s);
    return 1;
}

static int same(const collected *a, const collected *b) {
    if (a->len != b->len || (a->len && memcmp(a->content, b->content, a->len)) || a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->calls[i].name, b->calls[i].name) || strcmp(a->calls[i].arguments, b->calls[i].arguments))
            return 0;
    return !a->bad_index && !b->bad_index;
}

static int id_ok(cllm_tool_parser_kind k, const char *id) {
    size_t n = strlen(id);
    if (k == CLLM_TOOL_PARSER_MISTRAL) {
        if (n != 9) return 0;
        for (size_t i = 0; i < n; i++) if (!isalnum((unsigned char)id[i])) return 0;
        return 1;
    }
    if (n != 14 + 32 || strncmp(id, "chatcmpl-tool-", 14)) return 0;
    for (size_t i = 14; i < n; i++) if (!isxdigit((unsigned char)id[i])) return 0;
    return 1;
}

/* Every chunking of text gives the same events as one feed; with
 * match_whole, they also equal cllm_tool_parse. Returns the one-feed result. */
static void check_streaming(const char *label, cllm_tool_parser_kind k, const char *text, size_t len,
                            bool match_whole, bool every_split) {
    collected ref;
    CHECK(stream_run(k, text, len, NULL, 0, &ref), "%s: stream failed", label);
    for (size_t i = 0; i < ref.n; i++) CHECK(id_ok(k, ref.calls[i].id), "%s: bad id '%s'", label, ref.calls[i].id);
    if (match_whole) {
        cllm_tool_parse_result r;
        CHECK(cllm_tool_parse(k, text, len, &r) == CLLM_OK, "%s: parse failed", label);
        collected w = {.content = r.content, .len = r.content_len, .calls = r.calls, .n = r.n_calls};
        CHECK(same(&ref, &w), "%s: stream (%zu calls, %zu content bytes) != whole parse (%zu calls, %zu bytes)",
              label, ref.n, ref.len, w.n, w.len);
        cllm_tool_parse_result_free(&r);
    }
    size_t *cut = malloc((len + 1) * sizeof *cut);
    for (size_t i = 0; every_split && i <= len; i++) { /* two chunks, split at i */
        collected c;
        cut[0] = i;
        stream_run(k, text, len, cut, 1, &c);
        CHECK(same(&ref, &c), "%s: split at byte %zu differs", label, i);
        coll_free(&c);
    }
    for (size_t i = 0; i < len; i++) cut[i] = i + 1; /* byte by byte, then an empty final feed */
    collected c;
    stream_run(k, text, len, cut, len, &c);
    CHECK(same(&ref, &c), "%s: byte-by-byte differs", label);
    coll_free(&c);
    for (int t = 0; t < 20; t++) { /* random chunks */
        size_t n = 0, p = 0;
        while ((p += 1 + rnd() % 24) < len) cut[n++] = p;
        stream_run(k, text, len, cut, n, &c);
        CHECK(same(&ref, &c), "%s: random chunking %d differs", label, t);
        coll_free(&c);
    }
    free(cut);
    coll_free(&ref);
}

static void check_case(json_t *cs) {
    const char *pname = json_string_value(json_object_get(cs, "parser"));
    const char *name = json_string_value(json_object_get(cs, "name"));
    json_t *out = json_object_get(cs, "output"), *calls = json_object_get(cs, "calls"),
           *content = json_object_get(cs, "content");
    char label[128];
    snprintf(label, sizeof label, "%s/%s", pname, name);
    cllm_tool_parser_kind k;
    CHECK(cllm_tool_parser_from_name(pname, &k) == CLLM_OK, "%s: parser name", label);
    const char *text = json_string_value(out);
    size_t len = json_string_length(out);
    cllm_tool_parse_result r;
    CHECK(cllm_tool_parse(k, text, len, &r) == CLLM_OK, "%s: parse", label);
    if (json_is_null(content))
        CHECK(r.content == NULL, "%s: content should be null, got '%s'", label, r.content);
    else
        CHECK(r.content && r.content_len == json_string_length(content) &&
                  !memcmp(r.content, json_string_value(content), r.content_len),
              "%s: content '%s' != '%s'", label, r.content ? r.content : "(null)", json_string_value(content));
    CHECK(r.n_calls == json_array_size(calls), "%s: %zu calls, expected %zu", label, r.n_calls,
          json_array_size(calls));
    for (size_t i = 0; i < r.n_calls && i < json_array_size(calls); i++) {
        json_t *e = json_array_get(calls, i);
        CHECK(!strcmp(r.calls[i].name, json_string_value(json_object_get(e, "name"))), "%s: call %zu name '%s'",
              label, i, r.calls[i].name);
        json_t *got = json_loads(r.calls[i].arguments, JSON_DECODE_ANY, NULL);
        CHECK(got && json_equal(got, json_object_get(e, "arguments")), "%s: call %zu arguments %s", label, i,
              r.calls[i].arguments);
        CHECK(!strstr(r.calls[i].arguments, "\": "), "%s: arguments not compact: %s", label, r.calls[i].arguments);
        json_decref(got);
        CHECK(id_ok(k, r.calls[i].id), "%s: id '%s'", label, r.calls[i].id);
    }
    cllm_tool_parse_result_free(&r);
    check_streaming(label, k, text, len, true, true);
}

/* Malformed tool-call text: no calls, the whole text is content (whole and streamed). */
static void check_fallback(cllm_tool_parser_kind k, const char *text) {
    char label[96];
    snprintf(label, sizeof label, "%s fallback '%.60s'", cllm_tool_parser_name(k), text);
    cllm_tool_parse_result r;
    CHECK(cllm_tool_parse(k, text, strlen(text), &r) == CLLM_OK, "%s: parse", label);
    CHECK(r.n_calls == 0, "%s: %zu calls", label, r.n_calls);
    CHECK(r.content && r.content_len == strlen(text) && !memcmp(r.content, text, r.content_len), "%s: content",
          label);
    cllm_tool_parse_result_free(&r);
    check_streaming(label, k, text, strlen(text), true, true);
}

static void check_one_call(cllm_tool_parser_kind k, const char *text, const char *name, const char *args,
                           const char *content) {
    cllm_tool_parse_result r;
    CHECK(cllm_tool_parse(k, text, strlen(text), &r) == CLLM_OK, "parse");
    CHECK(r.n_calls == 1 && !strcmp(r.calls[0].name, name) && !strcmp(r.calls[0].arguments, args),
          "'%s': expected %s(%s), got %zu calls (%s)", text, name, args, r.n_calls,
          r.n_calls ? r.calls[0].arguments : "");
    CHECK(content ? r.content && !strcmp(r.content, content) : !r.content, "'%s': content '%s'", text,
          r.content ? r.content : "(null)");
    cllm_tool_parse_result_free(&r);
    check_streaming(text, k, text, strlen(text), true, true);
}

static void check_malformed(void) {
    const cllm_tool_parser_kind H = CLLM_TOOL_PARSER_HERMES, L = CLLM_TOOL_PARSER_LLAMA3_JSON,
                                M = CLLM_TOOL_PARSER_MISTRAL;
    const char *hermes_bad[] = {
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>", /* truncated JSON */
        "<tool_call>{\"arguments\": {}}</tool_call>",                           /* no name */
        "<tool_call>{\"name\": 3, \"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"f\"}</tool_call>",                             /* no arguments */
        "pre <tool_call>",                                                      /* unterminated, empty */
        "pre <tool_call>{\"name\": \"f\", \"argu",                              /* cut off mid-call */
        "<tool_call>{\"name\": \"f\", \"arguments\": {}} junk</tool_call>",
        "<tool_call>not json</tool_call>",
        "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_ca",               /* cut end tag */
        "<tool_call>[1,2]</tool_call>",
        "<tool_call>{\"name\":\"f\",\"arguments\":{}}}</tool_call>",
        "<tool_call>{\"name\":\"f\xff\",\"arguments\":{}}</tool_call>",         /* invalid UTF-8 */
        "<tool_call>{\"name\":\"f\\u0000\",\"arguments\":{}}</tool_call>",      /* NUL in a string */
        "<tool_call>{\"name\":\"f\",\"arguments\":{\"a\":1,\"a\":}}</tool_call>",
    };
    for (size_t i = 0; i < sizeof hermes_bad / sizeof *hermes_bad; i++) check_fallback(H, hermes_bad[i]);
    const char *llama_bad[] = {
        "{\"name\": \"f\"}", "{\"name\":\"f\",\"parameters\":{}} trailing", "   {", "<|python_tag|>", "<|python_tag",
        "{\"name\":\"f\",\"parameters\":{}}; {\"name\": 1, \"parameters\": {}}", "{}", " \n\t ", "",
    };
    for (size_t i = 0; i < sizeof llama_bad / sizeof *llama_bad; i++) {
        if (i == 5) { /* a later call malformed: whole parse falls back; the stream already sent call 0 */
            cllm_tool_parse_result r;
            cllm_tool_parse(L, llama_bad[i], strlen(llama_bad[i]), &r);
            CHECK(r.n_calls == 0 && r.content && !strcmp(r.content, llama_bad[i]), "llama later-malformed");
            cllm_tool_parse_result_free(&r);
            check_streaming("llama later-malformed", L, llama_bad[i], strlen(llama_bad[i]), false, true);
        } else if (!*llama_bad[i]) { /* empty text: no content at all */
            cllm_tool_parse_result r;
            CHECK(cllm_tool_parse(L, "", 0, &r) == CLLM_OK && !r.content && !r.n_calls, "empty text");
        } else {
            check_fallback(L, llama_bad[i]);
        }
    }
    const char *mistral_bad[] = {
        "[TOOL_CALLS]", "[TOOL_CALLS] {\"name\": \"f\", \"arguments\": {}}",
        "[TOOL_CALLS] [{\"name\":\"f\",\"arguments\":{}}", "[TOOL_CALLS] []", "text [TOOL_CALL",
        "[TOOL_CALLS] [{\"name\":\"f\"}]", "[TOOL_CALLS] [{\"name\":\"f\",\"arguments\":{}} x]",
    };
    for (size_t i = 0; i < sizeof mistral_bad / sizeof *mistral_bad; i++) {
        check_fallback(M, mistral_bad[i]);
    }
    /* well-formed edge cases (vLLM accepts them too) */
    check_one_call(H, "<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1.5}}", "f", "{\"x\":1.5}", NULL);
    check_one_call(H, "a<tool_call> {\"name\":\"f\",\"arguments\":[]} </tool_call> dropped", "f", "[]", "a");
    check_one_call(L, " {\"name\":\"f\",\"parameters\":{\"v\":-0.0,\"w\":1e300}};", "f", "{\"v\":-0.0,\"w\":1e+300}", NULL);
    check_fallback(L, "{\"name\":\"f\",\"parameters\":{\"v\":1e400}}"); /* overflow: jansson rejects it */
    check_one_call(L, "{\"name\":\"f\",\"arguments\":{\"v\":0.1}}", "f", "{\"v\":0.1}", NULL);
    check_one_call(M, "pre[TOOL_CALLS][{\"name\":\"g\",\"arguments\":{\"s\":\"\\u00e9\"}}]", "g", "{\"s\":\"\xc3\xa9\"}",
                   "pre");
    /* hermes: a later malformed call after a good one */
    const char *later = "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>\n<tool_call>bad</tool_call>";
    cllm_tool_parse_result r;
    cllm_tool_parse(H, later, strlen(later), &r);
    CHECK(r.n_calls == 0 && r.content && !strcmp(r.content, later), "hermes later-malformed whole");
    cllm_tool_parse_result_free(&r);
    collected c;
    stream_run(H, later, strlen(later), NULL, 0, &c);
    CHECK(c.n == 1 && c.content && !strcmp(c.content, "<tool_call>bad</tool_call>"), "hermes later-malformed stream");
    coll_free(&c);
    check_streaming("hermes later-malformed", H, later, strlen(later), false, true);
}

/* Big inputs: linear-time streaming, fallbacks, no crash. */
static void check_huge(void) {
    size_t n = 1 << 20;
    char *t = malloc(n + 64);
    /* deep nesting inside a call: jansson's depth limit -> content */
    strcpy(t, "<tool_call>{\"name\":\"f\",\"arguments\":");
    size_t p = strlen(t);
    while (p < n / 2) t[p++] = '[';
    t[p] = 0;
    check_streaming("huge deep", CLLM_TOOL_PARSER_HERMES, t, p, true, false);
    while (p < n) t[p++] = ']';
    memcpy(t + p, "}</tool_call>", 14);
    p += 13;
    cllm_tool_parse_result r;
    CHECK(cllm_tool_parse(CLLM_TOOL_PARSER_HERMES, t, p, &r) == CLLM_OK && r.n_calls == 0 && r.content_len == p,
          "huge deep closed");
    cllm_tool_parse_result_free(&r);
    /* plain content full of marker starts */
    for (p = 0; p < n; p++) t[p] = "<tool_[TOOL<|py{ \n"[rnd() % 18];
    check_streaming("huge content hermes", CLLM_TOOL_PARSER_HERMES, t, n, true, false);
    check_streaming("huge content mistral", CLLM_TOOL_PARSER_MISTRAL, t, n, true, false);
    /* many calls */
    p = 0;
    for (int i = 0; i < 3000; i++)
        p += (size_t)sprintf(t + p, "<tool_call>\n{\"name\": \"f%d\", \"arguments\": {\"i\": %d}}\n</tool_call>\n", i, i);
    CHECK(cllm_tool_parse(CLLM_TOOL_PARSER_HERMES, t, p, &r) == CLLM_OK && r.n_calls == 3000 && !r.content,
          "3000 calls: %zu", r.n_calls);
    CHECK(r.n_calls == 3000 && !strcmp(r.calls[2999].name, "f2999") && !strcmp(r.calls[2999].arguments, "{\"i\":2999}"),
          "call 2999");
    cllm_tool_parse_result_free(&r);
    check_streaming("3000 calls", CLLM_TOOL_PARSER_HERMES, t, p, true, false);
    free(t);
}

/* Random texts built from marker pieces: any chunking gives the same events. */
static void check_random(void) {
    static const char *piece[] = {"<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "{", "}", "[",
                                  "]", "\"", "\\", "\"name\": \"f\"", "\"arguments\": {}", "\"parameters\": [1]", ",",
                                  ";", " ", "\n", "x", "<tool", "[TOOL", "\xc3\xa9"};
    char t[512];
    for (int it = 0; it < 300; it++) {
        size_t p = 0;
        int n = 1 + (int)(rnd() % 24);
        for (int i = 0; i < n; i++) {
            const char *s = piece[rnd() % (sizeof piece / sizeof *piece)];
            memcpy(t + p, s, strlen(s));
            p += strlen(s);
        }
        for (int k = 1; k <= 3; k++) check_streaming("random", (cllm_tool_parser_kind)k, t, p, false, true);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: test_tool_parser cases.json\n"); return 2; }
    json_error_t e;
    json_t *cases = json_load_file(argv[1], 0, &e);
    if (!json_is_array(cases)) { fprintf(stderr, "cannot read %s: %s\n", argv[1], e.text); return 1; }
    CHECK(json_array_size(cases) >= 15, "too few cases");
    for (size_t i = 0; i < json_array_size(cases); i++) check_case(json_array_get(cases, i));
    json_decref(cases);
    cllm_tool_parser_kind k;
    CHECK(cllm_tool_parser_from_name("pythonic", &k) == CLLM_ERR_INVALID_ARG, "unknown parser accepted");
    CHECK(cllm_tool_parser_from_name(NULL, &k) == CLLM_ERR_INVALID_ARG, "NULL parser accepted");
    cllm_tool_stream *s = NULL;
    CHECK(cllm_tool_stream_create(CLLM_TOOL_PARSER_NONE, &s) == CLLM_ERR_INVALID_ARG && !s, "NONE stream");
    check_malformed();
    check_huge();
    check_random();
    TEST_DONE();
}
