/* Tool-call parsers (hermes, llama3_json, mistral): see server/tool_parser.h.
 *
 * One resumable state machine per stream: text is appended to buf, pos is
 * the first byte not yet decided. Before a tool-call marker, content is
 * emitted except a tail that may be the start of the marker; inside the
 * tool-call region each call's JSON object is delimited (end tag, or a
 * bracket scanner that resumes where it stopped, so feeding byte by byte
 * stays linear), decoded with jansson and emitted whole. The non-streaming
 * parse is one final feed of the whole text, with vLLM's all-or-nothing
 * fallback when any call is malformed. */
#include "server/tool_parser.h"

#include "core/status.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HERMES_START[] = "<tool_call>";
static const char HERMES_END[] = "</tool_call>";
static const char MISTRAL_BOT[] = "[TOOL_CALLS]";
static const char LLAMA_TAG[] = "<|python_tag|>";

enum { M_SCAN, M_PASS, M_TOOLS, M_BETWEEN, M_ARRAY, M_SEP, M_DONE, M_FAILED };

typedef struct ev_rec {
    bool is_call;
    size_t off, len;   /* content: bytes of buf */
    size_t call;       /* call index */
} ev_rec;

struct cllm_tool_stream {
    cllm_tool_parser_kind kind;
    char *buf;
    size_t len, cap;
    size_t pos;            /* first undecided byte */
    int mode;
    bool ended, failed;
    size_t region;         /* where the tool-call region starts (content fallback start) */
    size_t call_start;     /* hermes: the current call's "<tool_call>" */
    bool scanning;         /* bracket scanner state */
    size_t scan_pos;
    int depth;
    bool in_str, esc;
    cllm_openai_tool_call *calls;
    size_t n_calls, cap_calls;
    ev_rec *recs;
    size_t n_recs, cap_recs;
    cllm_tool_event *events;
    size_t cap_events;
};

const char *cllm_tool_parser_names(void) { return "hermes, llama3_json, mistral"; }

const char *cllm_tool_parser_name(cllm_tool_parser_kind k) {
    switch (k) {
    case CLLM_TOOL_PARSER_HERMES: return "hermes";
    case CLLM_TOOL_PARSER_LLAMA3_JSON: return "llama3_json";
    case CLLM_TOOL_PARSER_MISTRAL: return "mistral";
    default: return "none";
    }
}

cllm_status cllm_tool_parser_from_name(const char *name, cllm_tool_parser_kind *out) {
    for (int k = CLLM_TOOL_PARSER_HERMES; k <= CLLM_TOOL_PARSER_MISTRAL; k++)
        if (name && !strcmp(name, cllm_tool_parser_name((cllm_tool_parser_kind)k))) {
            *out = (cllm_tool_parser_kind)k;
            return CLLM_OK;
        }
    return cllm_error(CLLM_ERR_INVALID_ARG, "unknown tool call parser '%s': valid parsers are %s",
                      name ? name : "(none)", cllm_tool_parser_names());
}

void cllm_tool_calls_free(cllm_openai_tool_call *calls, size_t n) {
    for (size_t i = 0; calls && i < n; i++) {
        free(calls[i].id);
        free(calls[i].name);
        free(calls[i].arguments);
    }
    free(calls);
}

/* ------------------------------------------------------------ compact JSON */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom || n > SIZE_MAX / 4) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s, size_t n) {
    sb_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        char e[8];
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        case '\b': sb_add(b, "\\b", 2); break;
        case '\f': sb_add(b, "\\f", 2); break;
        default: snprintf(e, sizeof e, "\\u%04x", c); sb_add(b, e, 6); break;
        }
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

/* Shortest %g form that reads back as v, with ".0" for integral values
 * (Python's repr, which vLLM's json.dumps uses). */
static void sb_real(sbuf *b, double v) {
    char t[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*g", p, v);
        if (strtod(t, NULL) == v) break;
    }
    if (!strpbrk(t, ".eEni")) strcat(t, ".0");
    sb_add(b, t, strlen(t));
}

static void sb_json(sbuf *b, const json_t *j) {
    char t[32];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        sb_add(b, "{", 1);
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach((json_t *)j, k, v) {
            if (!first) sb_add(b, ",", 1);
            first = false;
            sb_str(b, k, strlen(k));
            sb_add(b, ":", 1);
            sb_json(b, v);
        }
        sb_add(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        sb_add(b, "[", 1);
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i) sb_add(b, ",", 1);
            sb_json(b, json_array_get(j, i));
        }
        sb_add(b, "]", 1);
        break;
    case JSON_STRING: sb_str(b, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER:
        snprintf(t, sizeof t, "%lld", (long long)json_integer_value(j));
        sb_add(b, t, strlen(t));
        break;
    case JSON_REAL: sb_real(b, json_real_value(j)); break;
    case JSON_TRUE: sb_add(b, "true", 4); break;
    case JSON_FALSE: sb_add(b, "false", 5); break;
    default: sb_add(b, "null", 4); break;
    }
}

/* ------------------------------------------------------------ helpers */
static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* First occurrence of the NUL-terminated needle in hay[0, n), or n. */
static size_t find(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        const char *p = memchr(hay + i, needle[0], n - i);
        if (!p) return n;
        i = (size_t)(p - hay);
        if (i + m <= n && !memcmp(p, needle, m)) return i;
    }
    return n;
}

/* Length of the longest suffix of s[0, n) that is a proper prefix of needle. */
static size_t partial_suffix(const char *s, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t k = m - 1 < n ? m - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, needle, k)) return k;
    return 0;
}

static bool add_rec(cllm_tool_stream *s, ev_rec r) {
    if (!r.is_call && !r.len) return true;
    if (!r.is_call && s->n_recs && !s->recs[s->n_recs - 1].is_call &&
        s->recs[s->n_recs - 1].off + s->recs[s->n_recs - 1].len == r.off) {
        s->recs[s->n_recs - 1].len += r.len; /* adjacent content: one event */
        return true;
    }
    if (s->n_recs == s->cap_recs) {
        size_t cap = s->cap_recs ? 2 * s->cap_recs : 8;
        ev_rec *nr = realloc(s->recs, cap * sizeof *nr);
        if (!nr) return false;
        s->recs = nr;
        s->cap_recs = cap;
    }
    s->recs[s->n_recs++] = r;
    return true;
}

static bool emit_content(cllm_tool_stream *s, size_t from, size_t to) {
    return to <= from || add_rec(s, (ev_rec){.is_call = false, .off = from, .len = to - from});
}

static char *make_call_id(cllm_tool_parser_kind k) {
    char id[64];
    if (k == CLLM_TOOL_PARSER_MISTRAL) { /* 9 alphanumerics */
        cllm_openai_make_id("", id, sizeof id);
        id[9] = 0;
        return strdup(id);
    }
    return strdup(cllm_openai_make_id("chatcmpl-tool-", id, sizeof id));
}

/* Decode one call object from buf[a, b) into s->calls, pending: it is
 * emitted (emit_pending) once what follows it is well-formed (end tag, ';',
 * ',' or ']', or the end of the text). 1: call added, 0: malformed, -1: OOM. */
static int add_call(cllm_tool_stream *s, size_t a, size_t b) {
    json_error_t jerr;
    json_t *o = json_loadb(s->buf + a, b - a, 0, &jerr);
    json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
    if (!args && s->kind == CLLM_TOOL_PARSER_LLAMA3_JSON) args = json_object_get(o, "parameters");
    if (!json_is_object(o) || !json_is_string(name) || !args) { json_decref(o); return 0; }
    if (s->n_calls == s->cap_calls) {
        size_t cap = s->cap_calls ? 2 * s->cap_calls : 4;
        cllm_openai_tool_call *nc = realloc(s->calls, cap * sizeof *nc);
        if (!nc) { json_decref(o); return -1; }
        s->calls = nc;
        s->cap_calls = cap;
    }
    sbuf sb = {0};
    sb_json(&sb, args);
    cllm_openai_tool_call c = {make_call_id(s->kind), strndup(json_string_value(name), json_string_length(name)),
                               sb.p};
    json_decref(o);
    if (sb.oom || !c.id || !c.name || !c.arguments) {
        free(c.id); free(c.name); free(sb.p);
        return -1;
    }
    s->calls[s->n_calls] = c;
    s->n_calls++;
    return 1;
}

/* Emit the pending (last decoded) call. 1, or -1 on OOM. */
static int emit_pending(cllm_tool_stream *s) {
    return add_rec(s, (ev_rec){.is_call = true, .call = s->n_calls - 1}) ? 1 : -1;
}

/* Malformed call at `at`: from there on (from the region start when no call
 * was streamed yet) everything is content. */
static bool fail(cllm_tool_stream *s, size_t at) {
    if (s->mode == M_SEP) { /* drop the pending call */
        s->n_calls--;
        cllm_openai_tool_call *c = &s->calls[s->n_calls];
        free(c->id); free(c->name); free(c->arguments);
    }
    s->failed = true;
    s->mode = M_FAILED;
    size_t from = s->n_calls ? at : s->region;
    s->pos = s->len;
    return emit_content(s, from, s->len);
}

/* Scan for the end of the JSON object starting at s->pos ('{'). Returns the
 * end offset (exclusive) or 0 when the object is not complete yet. */
static size_t scan_object(cllm_tool_stream *s) {
    if (!s->scanning) {
        s->scanning = true;
        s->scan_pos = s->pos;
        s->depth = 0;
        s->in_str = s->esc = false;
    }
    for (size_t i = s->scan_pos; i < s->len; i++) {
        char c = s->buf[i];
        if (s->in_str) {
            if (s->esc) s->esc = false;
            else if (c == '\\') s->esc = true;
            else if (c == '"') s->in_str = false;
        } else if (c == '"') {
            s->in_str = true;
        } else if (c == '{' || c == '[') {
            s->depth++;
        } else if ((c == '}' || c == ']') && --s->depth == 0) {
            s->scanning = false;
            return i + 1;
        }
    }
    s->scan_pos = s->len;
    return 0;
}

static void skip_ws(cllm_tool_stream *s) {
    while (s->pos < s->len && is_ws(s->buf[s->pos])) s->pos++;
}

/* Decode one bracket-delimited call at s->pos; then mode M_SEP. at: where
 * the content fallback starts if it is malformed.
 * 1: progressed, 0: wait for more text, -1: OOM. */
static int object_call(cllm_tool_stream *s, bool final, size_t at) {
    size_t end = scan_object(s);
    if (!end) {
        if (!final) return 0;
        s->scanning = false;
        return fail(s, at) ? 1 : -1;
    }
    int r = add_call(s, s->pos, end);
    if (r < 0) return -1;
    if (r == 0) return fail(s, at) ? 1 : -1;
    s->pos = end;
    s->mode = M_SEP;
    return 1;
}

/* Content before a marker: emit all but a possible marker start. 1: marker
 * found (s->pos at it), 0: need more text, -1: OOM. */
static int scan_marker(cllm_tool_stream *s, const char *marker, bool final) {
    size_t k = s->pos + find(s->buf + s->pos, s->len - s->pos, marker);
    if (k < s->len) {
        if (!emit_content(s, s->pos, k)) return -1;
        s->pos = s->region = k;
        return 1;
    }
    size_t keep = final ? 0 : partial_suffix(s->buf + s->pos, s->len - s->pos, marker);
    if (!emit_content(s, s->pos, s->len - keep)) return -1;
    s->pos = s->len - keep;
    return 0;
}

/* One step of the hermes machine. 1: progressed, 0: wait, -1: OOM. The
 * call's object is delimited by bracket matching, not by the first
 * "</tool_call>", so that the tag inside a JSON string does not cut it
 * (vLLM's regex would, and fall back to content). */
static int step_hermes(cllm_tool_stream *s, bool final) {
    const size_t sl = sizeof HERMES_START - 1, el = sizeof HERMES_END - 1;
    switch (s->mode) {
    case M_SCAN: {
        int r = scan_marker(s, HERMES_START, final);
        if (r == 1) { s->call_start = s->pos; s->pos += sl; s->mode = M_TOOLS; }
        return r;
    }
    case M_TOOLS: /* after "<tool_call>" */
        skip_ws(s);
        if (s->pos == s->len) return final ? (fail(s, s->call_start) ? 1 : -1) : 0;
        if (s->buf[s->pos] != '{') return fail(s, s->call_start) ? 1 : -1;
        return object_call(s, final, s->call_start);
    case M_SEP: { /* after the object: "</tool_call>" (or the end of the text) */
        skip_ws(s);
        size_t rest = s->len - s->pos, m = rest < el ? rest : el;
        if (memcmp(s->buf + s->pos, HERMES_END, m)) return fail(s, s->call_start) ? 1 : -1;
        if (rest < el) {
            if (!final) return 0;
            if (rest) return fail(s, s->call_start) ? 1 : -1; /* a cut-off end tag */
            s->mode = M_DONE;
        } else {
            s->pos += el;
            s->mode = M_BETWEEN;
        }
        return emit_pending(s);
    }
    default: { /* M_BETWEEN: text after a call is dropped until the next <tool_call> */
        size_t k = s->pos + find(s->buf + s->pos, s->len - s->pos, HERMES_START);
        if (k < s->len) {
            s->call_start = k;
            s->pos = k + sl;
            s->mode = M_TOOLS;
            return 1;
        }
        s->pos = s->len - (final ? 0 : partial_suffix(s->buf + s->pos, s->len - s->pos, HERMES_START));
        return 0;
    }
    }
}

static int step_mistral(cllm_tool_stream *s, bool final) {
    switch (s->mode) {
    case M_SCAN: {
        int r = scan_marker(s, MISTRAL_BOT, final);
        if (r == 1) { s->pos += sizeof MISTRAL_BOT - 1; s->mode = M_ARRAY; }
        return r;
    }
    case M_ARRAY:
        skip_ws(s);
        if (s->pos == s->len) return final ? (fail(s, s->pos) ? 1 : -1) : 0;
        if (s->buf[s->pos] != '[') return fail(s, s->pos) ? 1 : -1;
        s->pos++;
        s->mode = M_TOOLS;
        return 1;
    case M_TOOLS:
        skip_ws(s);
        if (s->pos == s->len) return final ? (fail(s, s->pos) ? 1 : -1) : 0;
        if (s->buf[s->pos] != '{') return fail(s, s->pos) ? 1 : -1; /* "]" with no call is malformed too */
        return object_call(s, final, s->pos);
    default: /* M_SEP */
        skip_ws(s);
        if (s->pos == s->len) return final ? (fail(s, s->pos) ? 1 : -1) : 0;
        if (s->buf[s->pos] == ',') { s->pos++; s->mode = M_TOOLS; return emit_pending(s); }
        if (s->buf[s->pos] == ']') { s->mode = M_DONE; s->pos = s->len; return emit_pending(s); }
        return fail(s, s->pos) ? 1 : -1;
    }
}

static int step_llama(cllm_tool_stream *s, bool final) {
    const size_t tl = sizeof LLAMA_TAG - 1;
    switch (s->mode) {
    case M_SCAN: { /* decide from the first non-space bytes */
        size_t q = 0;
        while (q < s->len && is_ws(s->buf[q])) q++;
        size_t rest = s->len - q;
        if (rest && s->buf[q] == '{') { s->pos = q; s->mode = M_TOOLS; return 1; }
        if (rest >= tl && !memcmp(s->buf + q, LLAMA_TAG, tl)) { s->pos = q + tl; s->mode = M_TOOLS; return 1; }
        if (!final && (rest == 0 || (rest < tl && !memcmp(s->buf + q, LLAMA_TAG, rest)))) return 0;
        s->mode = M_PASS;
        s->pos = 0;
        return 1;
    }
    case M_TOOLS:
        skip_ws(s);
        if (s->pos == s->len) {
            if (!final) return 0;
            if (!s->n_calls) return fail(s, s->pos) ? 1 : -1;
            s->mode = M_DONE;
            return 0;
        }
        if (s->buf[s->pos] != '{') return fail(s, s->pos) ? 1 : -1;
        return object_call(s, final, s->pos);
    default: /* M_SEP */
        skip_ws(s);
        if (s->pos == s->len) {
            if (!final) return 0;
            s->mode = M_DONE;
            return emit_pending(s);
        }
        if (s->buf[s->pos] == ';') { s->pos++; s->mode = M_TOOLS; return emit_pending(s); }
        return fail(s, s->pos) ? 1 : -1;
    }
}

/* ------------------------------------------------------------ streaming API */
cllm_status cllm_tool_stream_create(cllm_tool_parser_kind k, cllm_tool_stream **out) {
    if (!out) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_tool_stream_create: out is NULL");
    *out = NULL;
    if (k < CLLM_TOOL_PARSER_HERMES || k > CLLM_TOOL_PARSER_MISTRAL)
        return cllm_error(CLLM_ERR_INVALID_ARG, "unknown tool call parser %d: valid parsers are %s", (int)k,
                          cllm_tool_parser_names());
    cllm_tool_stream *s = calloc(1, sizeof *s);
    if (!s) return cllm_error(CLLM_ERR_OOM, "out of memory creating a tool call parser");
    s->cap = 64;
    if (!(s->buf = malloc(s->cap))) { free(s); return cllm_error(CLLM_ERR_OOM, "out of memory creating a tool call parser"); }
    s->buf[0] = 0;
    s->kind = k;
    s->mode = M_SCAN;
    *out = s;
    return CLLM_OK;
}

void cllm_tool_stream_destroy(cllm_tool_stream *s) {
    if (!s) return;
    cllm_tool_calls_free(s->calls, s->n_calls);
    free(s->buf);
    free(s->recs);
    free(s->events);
    free(s);
}

size_t cllm_tool_stream_n_calls(const cllm_tool_stream *s) { return s ? s->n_calls : 0; }

cllm_status cllm_tool_stream_feed(cllm_tool_stream *s, const char *delta, size_t len, bool final,
                                  const cllm_tool_event **events, size_t *n_events) {
    *events = NULL;
    *n_events = 0;
    if (s->ended) return cllm_error(CLLM_ERR_INVALID_ARG, "tool call parser: text fed after the final feed");
    s->n_recs = 0;
    if (len) {
        if (s->len + len + 1 > s->cap) {
            size_t cap = (s->len + len + 1) * 2;
            char *nb = realloc(s->buf, cap);
            if (!nb) return cllm_error(CLLM_ERR_OOM, "out of memory buffering generated text");
            s->buf = nb;
            s->cap = cap;
        }
        memcpy(s->buf + s->len, delta, len);
        s->len += len;
        s->buf[s->len] = 0;
    }
    s->ended = final;
    for (int r = 1; r == 1;) {
        switch (s->mode) {
        case M_PASS:
        case M_FAILED:
            r = emit_content(s, s->pos, s->len) ? 0 : -1;
            s->pos = s->len;
            break;
        case M_DONE: s->pos = s->len; r = 0; break;
        default:
            r = s->kind == CLLM_TOOL_PARSER_HERMES ? step_hermes(s, final)
              : s->kind == CLLM_TOOL_PARSER_MISTRAL ? step_mistral(s, final)
                                                    : step_llama(s, final);
        }
        if (r < 0) return cllm_error(CLLM_ERR_OOM, "out of memory parsing tool calls");
    }
    if (s->n_recs > s->cap_events) {
        cllm_tool_event *ne = realloc(s->events, s->n_recs * sizeof *ne);
        if (!ne) return cllm_error(CLLM_ERR_OOM, "out of memory parsing tool calls");
        s->events = ne;
        s->cap_events = s->n_recs;
    }
    for (size_t i = 0; i < s->n_recs; i++) {
        const ev_rec *r = &s->recs[i];
        s->events[i] = r->is_call ? (cllm_tool_event){.is_call = true, .call = &s->calls[r->call],
                                                      .index = (uint32_t)r->call}
                                  : (cllm_tool_event){.text = s->buf + r->off, .text_len = r->len};
    }
    *events = s->events;
    *n_events = s->n_recs;
    return CLLM_OK;
}

/* ------------------------------------------------------------ whole text */
void cllm_tool_parse_result_free(cllm_tool_parse_result *r) {
    if (!r) return;
    free(r->content);
    cllm_tool_calls_free(r->calls, r->n_calls);
    memset(r, 0, sizeof *r);
}

cllm_status cllm_tool_parse(cllm_tool_parser_kind k, const char *text, size_t len, cllm_tool_parse_result *out) {
    if (!out || (!text && len)) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_tool_parse: NULL argument");
    memset(out, 0, sizeof *out);
    cllm_tool_stream *s = NULL;
    CLLM_TRY(cllm_tool_stream_create(k, &s));
    const cllm_tool_event *ev;
    size_t n;
    cllm_status st = cllm_tool_stream_feed(s, text, len, true, &ev, &n);
    if (st != CLLM_OK) goto out;
    sbuf content = {0};
    if (s->failed || !s->n_calls) { /* vLLM: any malformed call -> all of it is content */
        sb_add(&content, text, len);
    } else {
        for (size_t i = 0; i < n; i++)
            if (!ev[i].is_call) sb_add(&content, ev[i].text, ev[i].text_len);
        out->calls = s->calls;
        out->n_calls = s->n_calls;
        s->calls = NULL;
        s->n_calls = 0;
    }
    if (content.oom) {
        free(content.p);
        cllm_tool_parse_result_free(out);
        st = cllm_error(CLLM_ERR_OOM, "out of memory parsing tool calls");
        goto out;
    }
    if (!content.n) { free(content.p); content.p = NULL; }
    out->content = content.p;
    out->content_len = content.n;
out:
    cllm_tool_stream_destroy(s);
    return st;
}

cllm_status cllm_tool_parse_choice(cllm_tool_parser_kind k, const char *text, size_t len,
                                   cllm_tool_parse_result *res, cllm_openai_choice *ch) {
    CLLM_TRY(cllm_tool_parse(k, text ? text : "", text ? len : 0, res));
    if (!res->n_calls) { /* plain content: the text as generated ("" rather than null) */
        ch->text = res->content ? res->content : "";
        ch->text_len = res->content_len;
        return CLLM_OK;
    }
    ch->text = res->content;
    ch->text_len = res->content_len;
    ch->tool_calls = res->calls;
    ch->n_tool_calls = res->n_calls;
    if (ch->finish_reason == CLLM_OPENAI_FINISH_STOP || ch->finish_reason == CLLM_OPENAI_FINISH_LENGTH)
        ch->finish_reason = CLLM_OPENAI_FINISH_TOOL_CALLS;
    return CLLM_OK;
}
