/* Normalizers (see normalizer.h). Each follows the corresponding
 * tokenizers/src/normalizers/<type>.rs type of Hugging Face `tokenizers` 0.23. */
#include "tokenizer/normalizer.h"

#include "core/status.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef enum {
    NORM_SEQUENCE, NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD,
    NORM_LOWERCASE, NORM_STRIP,
} norm_kind;

struct cllm_normalizer {
    norm_kind kind;
    char *text;                 /* Prepend: prepend; Replace: content */
    size_t text_len;
    cllm_regex *re;             /* Replace: pattern */
    bool strip_left, strip_right;
    cllm_normalizer **children; /* Sequence */
    size_t n_children;
};

void cllm_normalizer_free(cllm_normalizer *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_children; i++) cllm_normalizer_free(n->children[i]);
    free(n->children);
    free(n->text);
    cllm_regex_free(n->re);
    free(n);
}

static cllm_status dup_string(const json_t *j, const char *what, char **out, size_t *len) {
    if (!json_is_string(j)) return cllm_error(CLLM_ERR_FORMAT, "normalizer %s: expected a string", what);
    *len = json_string_length(j);
    *out = malloc(*len + 1);
    if (!*out) return cllm_error(CLLM_ERR_OOM, "out of memory");
    memcpy(*out, json_string_value(j), *len + 1);
    return CLLM_OK;
}

cllm_status cllm_normalizer_parse(const json_t *j, cllm_normalizer **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return CLLM_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return cllm_error(CLLM_ERR_FORMAT, "normalizer without a \"type\"");
    cllm_normalizer *n = calloc(1, sizeof *n);
    if (!n) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    if (!strcmp(type, "Sequence")) {
        n->kind = NORM_SEQUENCE;
        const json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr)) { st = cllm_error(CLLM_ERR_FORMAT, "Sequence normalizer without \"normalizers\""); goto fail; }
        n->children = calloc(json_array_size(arr) + 1, sizeof *n->children);
        if (!n->children) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        for (size_t i = 0; i < json_array_size(arr); i++) {
            CLLM_TRY_GOTO(st, cllm_normalizer_parse(json_array_get(arr, i), &n->children[n->n_children]), fail);
            if (n->children[n->n_children]) n->n_children++;
        }
    } else if (!strcmp(type, "Prepend")) {
        n->kind = NORM_PREPEND;
        CLLM_TRY_GOTO(st, dup_string(json_object_get(j, "prepend"), "Prepend.prepend", &n->text, &n->text_len), fail);
    } else if (!strcmp(type, "Replace")) {
        n->kind = NORM_REPLACE;
        CLLM_TRY_GOTO(st, dup_string(json_object_get(j, "content"), "Replace.content", &n->text, &n->text_len), fail);
        CLLM_TRY_GOTO(st, cllm_regex_from_json(json_object_get(j, "pattern"), "Replace normalizer", &n->re), fail);
    } else if (!strcmp(type, "NFC")) n->kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) n->kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) n->kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) n->kind = NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) n->kind = NORM_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        n->kind = NORM_STRIP;
        n->strip_left = json_is_true(json_object_get(j, "strip_left"));
        n->strip_right = json_is_true(json_object_get(j, "strip_right"));
    } else {
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "normalizer type \"%s\" is not supported (supported: Sequence, Prepend, "
                        "Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)", type);
        goto fail;
    }
    *out = n;
    return CLLM_OK;
fail:
    cllm_normalizer_free(n);
    return st;
}

static cllm_status apply_utf8proc(const char *s, size_t len, utf8proc_option_t opts, cllm_strbuf *out) {
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &res, opts | UTF8PROC_STABLE);
    if (r < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "unicode normalization failed: %s", utf8proc_errmsg(r));
    cllm_strbuf_append(out, (const char *)res, (size_t)r);
    free(res);
    return CLLM_OK;
}

/* One normalizer step: in -> out (out cleared by the caller). */
static cllm_status apply_one(const cllm_normalizer *n, const char *s, size_t len, cllm_strbuf *out) {
    switch (n->kind) {
    case NORM_SEQUENCE: return CLLM_ERR_INTERNAL; /* handled by the caller */
    case NORM_PREPEND:
        if (len) cllm_strbuf_append(out, n->text, n->text_len);
        cllm_strbuf_append(out, s, len);
        return CLLM_OK;
    case NORM_REPLACE: {
        cllm_spans sp = {0};
        cllm_status st = cllm_regex_find_all(n->re, s, len, &sp);
        size_t last = 0;
        for (size_t i = 0; st == CLLM_OK && i < sp.n; i++) {
            cllm_strbuf_append(out, s + last, sp.v[2 * i] - last);
            cllm_strbuf_append(out, n->text, n->text_len);
            last = sp.v[2 * i + 1];
        }
        cllm_strbuf_append(out, s + last, len - last);
        cllm_spans_free(&sp);
        return st;
    }
    case NORM_NFC: return apply_utf8proc(s, len, UTF8PROC_COMPOSE, out);
    case NORM_NFD: return apply_utf8proc(s, len, UTF8PROC_DECOMPOSE, out);
    case NORM_NFKC: return apply_utf8proc(s, len, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case NORM_NFKD: return apply_utf8proc(s, len, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case NORM_LOWERCASE:
        for (size_t i = 0; i < len;) {
            uint32_t cp = 0;
            int k = cllm_utf8_next(s + i, len - i, &cp);
            if (k <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "invalid UTF-8 in normalizer input");
            char b[4];
            cllm_strbuf_append(out, b, (size_t)cllm_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), b));
            i += (size_t)k;
        }
        return CLLM_OK;
    case NORM_STRIP: {
        size_t a = 0, b = len;
        uint32_t cp;
        while (n->strip_left && a < b) {
            int k = cllm_utf8_next(s + a, b - a, &cp);
            if (k <= 0 || !cllm_unicode_is_whitespace(cp)) break;
            a += (size_t)k;
        }
        while (n->strip_right && b > a) {
            size_t p = b - 1;
            while (p > a && ((uint8_t)s[p] & 0xC0) == 0x80) p--;
            int k = cllm_utf8_next(s + p, b - p, &cp);
            if (k <= 0 || !cllm_unicode_is_whitespace(cp)) break;
            b = p;
        }
        cllm_strbuf_append(out, s + a, b - a);
        return CLLM_OK;
    }
    }
    return CLLM_ERR_INTERNAL;
}

cllm_status cllm_normalizer_apply(const cllm_normalizer *n, const char *s, size_t len, cllm_strbuf *out) {
    out->len = 0;
    if (!n) {
        cllm_strbuf_append(out, s, len);
    } else if (n->kind != NORM_SEQUENCE) {
        CLLM_TRY(apply_one(n, s, len, out));
    } else {
        cllm_strbuf tmp = {0};
        cllm_strbuf_append(out, s, len);
        for (size_t i = 0; i < n->n_children; i++) {
            cllm_status st = cllm_normalizer_apply(n->children[i], out->p, out->len, &tmp);
            if (st != CLLM_OK) { cllm_strbuf_free(&tmp); return st; }
            cllm_strbuf t = *out; *out = tmp; tmp = t;
        }
        cllm_strbuf_free(&tmp);
    }
    if (out->oom) return cllm_error(CLLM_ERR_OOM, "out of memory normalizing text");
    return CLLM_OK;
}
