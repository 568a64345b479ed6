/* libFuzzer target for the tool-call parsers (server/tool_parser.h): the
 * first byte picks the parser and a chunk size, the rest is model output.
 * The whole-text parse must not crash or leak; the stream fed in chunks must
 * give the same calls and content as the stream fed in one piece (abort
 * otherwise); every call has a name and compact JSON arguments.
 *
 * Build: cmake -S . -B build-fuzz -DCLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCLLM_CUDA=OFF
 *        cmake --build build-fuzz --target tool_parser_fuzz
 * Run:   build-fuzz/fuzz/tool_parser_fuzz -max_total_time=120 -max_len=4096 fuzz/corpus/tool_parser */
#include "server/tool_parser.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
    char *text;
    size_t len;
    char *calls; /* "name\targs\n"... */
    size_t clen;
} out;

static void add(char **p, size_t *n, const char *s, size_t k) {
    *p = realloc(*p, *n + k + 1);
    if (!*p) abort();
    memcpy(*p + *n, s, k);
    *n += k;
    (*p)[*n] = 0;
}

static void run(cllm_tool_parser_kind k, const uint8_t *d, size_t n, size_t chunk, out *o) {
    memset(o, 0, sizeof *o);
    cllm_tool_stream *s = NULL;
    if (cllm_tool_stream_create(k, &s) != CLLM_OK) abort();
    size_t at = 0;
    do {
        size_t m = n - at < chunk ? n - at : chunk;
        const cllm_tool_event *ev;
        size_t ne;
        if (cllm_tool_stream_feed(s, (const char *)d + at, m, at + m == n, &ev, &ne) != CLLM_OK) abort();
        for (size_t i = 0; i < ne; i++) {
            if (!ev[i].is_call) { add(&o->text, &o->len, ev[i].text, ev[i].text_len); continue; }
            const cllm_openai_tool_call *c = ev[i].call;
            json_t *a = json_loads(c->arguments, JSON_DECODE_ANY, NULL);
            if (!a || !c->name || !c->id) abort();
            json_decref(a);
            add(&o->calls, &o->clen, c->name, strlen(c->name));
            add(&o->calls, &o->clen, "\t", 1);
            add(&o->calls, &o->clen, c->arguments, strlen(c->arguments));
            add(&o->calls, &o->clen, "\n", 1);
        }
        at += m;
    } while (at < n);
    cllm_tool_stream_destroy(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    cllm_tool_parser_kind k = (cllm_tool_parser_kind)(1 + data[0] % 3);
    size_t chunk = 1 + (data[0] >> 2) % 17;
    data++, size--;
    cllm_tool_parse_result r;
    if (cllm_tool_parse(k, (const char *)data, size, &r) != CLLM_OK) abort();
    if (!r.n_calls && (r.content_len != size || (size && memcmp(r.content, data, size)))) abort();
    cllm_tool_parse_result_free(&r);
    out a, b;
    run(k, data, size, size ? size : 1, &a);
    run(k, data, size, chunk, &b);
    if (a.len != b.len || a.clen != b.clen || (a.len && memcmp(a.text, b.text, a.len)) ||
        (a.clen && memcmp(a.calls, b.calls, a.clen)))
        abort();
    free(a.text); free(a.calls); free(b.text); free(b.calls);
    return 0;
}
