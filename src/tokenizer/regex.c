/* PCRE2 wrapper (see regex.h). */
#include "tokenizer/regex.h"

#include "core/status.h"
#include "tokenizer/strbuf.h"
#include "tokenizer/unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

struct cllm_regex {
    pcre2_code *code;
    bool jit;
};

void cllm_spans_push(cllm_spans *s, size_t start, size_t end) {
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        size_t *v = realloc(s->v, cap * 2 * sizeof *v);
        if (!v) { s->oom = true; return; }
        s->v = v;
        s->cap = cap;
    }
    s->v[2 * s->n] = start;
    s->v[2 * s->n + 1] = end;
    s->n++;
}

void cllm_spans_free(cllm_spans *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* Oniguruma's \s is the Unicode White_Space property; PCRE2's (with UCP)
 * also matches U+180E MONGOLIAN VOWEL SEPARATOR. Spell \s out (and \S
 * outside a class) so that both agree. */
#define WS_CLASS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

static bool rewrite_spaces(const char *p, size_t n, cllm_strbuf *out) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            if (e == 's') cllm_strbuf_append(out, in_class ? WS_CLASS : "[" WS_CLASS "]", strlen(WS_CLASS) + (in_class ? 0 : 2));
            else if (e == 'S' && !in_class) cllm_strbuf_append(out, "[^" WS_CLASS "]", strlen(WS_CLASS) + 3);
            else cllm_strbuf_append(out, p + i, 2);
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            cllm_strbuf_putc(out, c);
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < n && p[i + 1] == '^') { cllm_strbuf_putc(out, '^'); i++; }
            if (i + 1 < n && p[i + 1] == ']') { cllm_strbuf_putc(out, ']'); i++; }
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        cllm_strbuf_putc(out, c);
    }
    cllm_strbuf_reserve(out, 0);
    return !out->oom;
}

cllm_status cllm_regex_compile(const char *pattern, size_t len, bool literal, cllm_regex **out) {
    *out = NULL;
    cllm_strbuf rw = {0};
    const char *orig = pattern;
    size_t orig_len = len;
    if (!literal) {
        if (!rewrite_spaces(pattern, len, &rw)) { cllm_strbuf_free(&rw); return cllm_error(CLLM_ERR_OOM, "out of memory"); }
        pattern = rw.p;
        len = rw.len;
    }
    int err = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL);
    cllm_strbuf_free(&rw);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return cllm_error(CLLM_ERR_UNSUPPORTED, "regex /%.*s/ does not compile with PCRE2 at offset %zu: %s",
                          (int)(orig_len > 200 ? 200 : orig_len), orig, (size_t)off, (const char *)msg);
    }
    cllm_regex *re = calloc(1, sizeof *re);
    if (!re) { pcre2_code_free(code); return cllm_error(CLLM_ERR_OOM, "out of memory compiling a regex"); }
    re->code = code;
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    *out = re;
    return CLLM_OK;
}

cllm_status cllm_regex_from_json(const json_t *pattern, const char *what, cllm_regex **out) {
    *out = NULL;
    const json_t *s = json_object_get(pattern, "String");
    const json_t *r = json_object_get(pattern, "Regex");
    if (json_is_string(s)) return cllm_regex_compile(json_string_value(s), json_string_length(s), true, out);
    if (json_is_string(r)) return cllm_regex_compile(json_string_value(r), json_string_length(r), false, out);
    return cllm_error(CLLM_ERR_FORMAT, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", what);
}

cllm_status cllm_regex_find_all(const cllm_regex *re, const char *s, size_t n, cllm_spans *out) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) return cllm_error(CLLM_ERR_OOM, "out of memory matching a regex");
    size_t pos = 0;
    cllm_status st = CLLM_OK;
    while (pos <= n) {
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, pos, 0, md, NULL)
                         : pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = cllm_error(CLLM_ERR_INVALID_ARG, "regex match failed: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        cllm_spans_push(out, a, b);
        if (b > a) { pos = b; continue; }
        if (a >= n) break;
        int k = cllm_utf8_len(s + a, n - a);
        pos = a + (size_t)(k > 0 ? k : 1);
    }
    pcre2_match_data_free(md);
    if (st == CLLM_OK && out->oom) st = cllm_error(CLLM_ERR_OOM, "out of memory matching a regex");
    return st;
}

void cllm_regex_free(cllm_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}
