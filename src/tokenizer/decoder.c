/* Decoders (see decoder.h). */
#include "tokenizer/decoder.h"

#include "core/status.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

typedef enum { DEC_SEQUENCE, DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } dec_kind;

struct cllm_decoder {
    dec_kind kind;
    cllm_regex *re;          /* Replace pattern */
    char *content;           /* Replace content; Strip content (one char) */
    size_t content_len;
    size_t start, stop;      /* Strip */
    char repl[8];            /* Metaspace replacement */
    size_t repl_len;
    bool prepend;            /* Metaspace: prepend_scheme != never */
    cllm_decoder **children;
    size_t n_children;
};

void cllm_decoder_free(cllm_decoder *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_children; i++) cllm_decoder_free(d->children[i]);
    free(d->children);
    cllm_regex_free(d->re);
    free(d->content);
    free(d);
}

static cllm_status dup_json_string(const json_t *j, const char *what, char **out, size_t *len) {
    if (!json_is_string(j)) return cllm_error(CLLM_ERR_FORMAT, "decoder %s: expected a string", what);
    *len = json_string_length(j);
    *out = malloc(*len + 1);
    if (!*out) return cllm_error(CLLM_ERR_OOM, "out of memory");
    memcpy(*out, json_string_value(j), *len + 1);
    return CLLM_OK;
}

cllm_status cllm_decoder_parse(const json_t *j, cllm_decoder **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return CLLM_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return cllm_error(CLLM_ERR_FORMAT, "decoder without a \"type\"");
    cllm_decoder *d = calloc(1, sizeof *d);
    if (!d) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    if (!strcmp(type, "Sequence")) {
        d->kind = DEC_SEQUENCE;
        const json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr)) { st = cllm_error(CLLM_ERR_FORMAT, "Sequence decoder without \"decoders\""); goto fail; }
        d->children = calloc(json_array_size(arr) + 1, sizeof *d->children);
        if (!d->children) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        for (size_t i = 0; i < json_array_size(arr); i++) {
            CLLM_TRY_GOTO(st, cllm_decoder_parse(json_array_get(arr, i), &d->children[d->n_children]), fail);
            if (d->children[d->n_children]) d->n_children++;
        }
    } else if (!strcmp(type, "ByteLevel")) d->kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d->kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->kind = DEC_FUSE;
    else if (!strcmp(type, "Replace")) {
        d->kind = DEC_REPLACE;
        CLLM_TRY_GOTO(st, dup_json_string(json_object_get(j, "content"), "Replace.content", &d->content, &d->content_len), fail);
        CLLM_TRY_GOTO(st, cllm_regex_from_json(json_object_get(j, "pattern"), "Replace decoder", &d->re), fail);
    } else if (!strcmp(type, "Strip")) {
        d->kind = DEC_STRIP;
        CLLM_TRY_GOTO(st, dup_json_string(json_object_get(j, "content"), "Strip.content", &d->content, &d->content_len), fail);
        if (cllm_utf8_len(d->content, d->content_len) != (int)d->content_len) {
            st = cllm_error(CLLM_ERR_FORMAT, "Strip decoder: content must be one character");
            goto fail;
        }
        json_int_t a = json_integer_value(json_object_get(j, "start")), b = json_integer_value(json_object_get(j, "stop"));
        d->start = a > 0 ? (size_t)a : 0;
        d->stop = b > 0 ? (size_t)b : 0;
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = DEC_METASPACE;
        const char *r = json_string_value(json_object_get(j, "replacement"));
        if (!r) r = "\xE2\x96\x81";
        d->repl_len = strlen(r);
        if (d->repl_len == 0 || d->repl_len > 4) { st = cllm_error(CLLM_ERR_FORMAT, "Metaspace decoder: bad replacement"); goto fail; }
        memcpy(d->repl, r, d->repl_len);
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        d->prepend = scheme ? strcmp(scheme, "never") != 0 : !json_is_false(json_object_get(j, "add_prefix_space"));
    } else {
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "decoder type \"%s\" is not supported (supported: Sequence, ByteLevel, "
                        "Replace, ByteFallback, Fuse, Strip, Metaspace)", type);
        goto fail;
    }
    *out = d;
    return CLLM_OK;
fail:
    cllm_decoder_free(d);
    return st;
}

/* Byte value of a "<0xNN>" token, or -1. */
static int byte_token(const char *t, size_t n) {
    if (n != 6 || memcmp(t, "<0x", 3) || t[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* One decoder step: in -> out (out cleared). */
static cllm_status step(const cllm_decoder *d, const cllm_pieces *in, cllm_pieces *out) {
    cllm_pieces_clear(out);
    cllm_status st = CLLM_OK;
    switch (d->kind) {
    case DEC_SEQUENCE: return CLLM_ERR_INTERNAL;
    case DEC_BYTELEVEL: {
        /* Every char maps back to its byte; a token with a char outside the
         * alphabet is kept as its raw bytes. Then lossy UTF-8 over the whole. */
        cllm_strbuf raw = {0};
        for (size_t i = 0; i < in->n; i++) {
            const char *t = cllm_pieces_at(in, i);
            size_t n = in->len[i], start = raw.len;
            bool ok = true;
            for (size_t k = 0; k < n && ok;) {
                uint32_t cp = 0;
                int l = cllm_utf8_next(t + k, n - k, &cp);
                int b = l > 0 ? cllm_bytelevel_decode_cp(cp) : -1;
                if (b < 0) { ok = false; break; }
                cllm_strbuf_putc(&raw, (char)b);
                k += (size_t)l;
            }
            if (!ok) { raw.len = start; cllm_strbuf_append(&raw, t, n); }
        }
        cllm_pieces_begin(out, 0);
        cllm_strbuf tmp = {0};
        cllm_utf8_append_lossy(&tmp, raw.p ? raw.p : "", raw.len);
        cllm_pieces_extend(out, tmp.p ? tmp.p : "", tmp.len);
        if (raw.oom || tmp.oom) st = cllm_error(CLLM_ERR_OOM, "out of memory decoding");
        cllm_strbuf_free(&raw);
        cllm_strbuf_free(&tmp);
        break;
    }
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n && st == CLLM_OK; i++) {
            const char *t = cllm_pieces_at(in, i);
            cllm_spans sp = {0};
            st = cllm_regex_find_all(d->re, t, in->len[i], &sp);
            cllm_pieces_begin(out, 0);
            size_t last = 0;
            for (size_t k = 0; k < sp.n; k++) {
                cllm_pieces_extend(out, t + last, sp.v[2 * k] - last);
                cllm_pieces_extend(out, d->content, d->content_len);
                last = sp.v[2 * k + 1];
            }
            cllm_pieces_extend(out, t + last, in->len[i] - last);
            cllm_spans_free(&sp);
        }
        break;
    case DEC_BYTEFALLBACK: {
        /* Runs of <0xNN> become their UTF-8 text, or one U+FFFD per byte if invalid. */
        cllm_strbuf bytes = {0};
        size_t nbytes = 0;
        for (size_t i = 0; i <= in->n; i++) {
            int b = i < in->n ? byte_token(cllm_pieces_at(in, i), in->len[i]) : -1;
            if (b >= 0) { cllm_strbuf_putc(&bytes, (char)b); nbytes++; continue; }
            if (nbytes) {
                if (cllm_utf8_valid(bytes.p, bytes.len)) cllm_pieces_push(out, bytes.p, bytes.len, 0);
                else for (size_t k = 0; k < nbytes; k++) cllm_pieces_push(out, "\xEF\xBF\xBD", 3, 0);
                bytes.len = 0;
                nbytes = 0;
            }
            if (i < in->n) cllm_pieces_push(out, cllm_pieces_at(in, i), in->len[i], 0);
        }
        if (bytes.oom) st = cllm_error(CLLM_ERR_OOM, "out of memory decoding");
        cllm_strbuf_free(&bytes);
        break;
    }
    case DEC_FUSE:
        cllm_pieces_begin(out, 0);
        for (size_t i = 0; i < in->n; i++) cllm_pieces_extend(out, cllm_pieces_at(in, i), in->len[i]);
        break;
    case DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *t = cllm_pieces_at(in, i);
            size_t a = 0, b = in->len[i], c = d->content_len;
            for (size_t k = 0; k < d->start && b - a >= c && !memcmp(t + a, d->content, c); k++) a += c;
            for (size_t k = 0; k < d->stop && b - a >= c && !memcmp(t + b - c, d->content, c); k++) b -= c;
            cllm_pieces_push(out, t + a, b - a, 0);
        }
        break;
    case DEC_METASPACE:
        /* replacement -> ' '; in the first token it is dropped unless prepend_scheme is never. */
        for (size_t i = 0; i < in->n; i++) {
            const char *t = cllm_pieces_at(in, i);
            size_t n = in->len[i], last = 0;
            cllm_pieces_begin(out, 0);
            for (size_t k = 0; k + d->repl_len <= n;) {
                if (memcmp(t + k, d->repl, d->repl_len)) { k++; continue; }
                cllm_pieces_extend(out, t + last, k - last);
                if (!(i == 0 && d->prepend)) cllm_pieces_extend(out, " ", 1);
                k += d->repl_len;
                last = k;
            }
            cllm_pieces_extend(out, t + last, n - last);
        }
        break;
    }
    if (st == CLLM_OK && cllm_pieces_failed(out)) st = cllm_error(CLLM_ERR_OOM, "out of memory decoding");
    return st;
}

static cllm_status chain(const cllm_decoder *d, cllm_pieces *tokens) {
    cllm_pieces tmp = {0};
    cllm_status st = CLLM_OK;
    if (d->kind == DEC_SEQUENCE) {
        for (size_t i = 0; i < d->n_children && st == CLLM_OK; i++) st = chain(d->children[i], tokens);
    } else {
        st = step(d, tokens, &tmp);
        cllm_pieces t = *tokens; *tokens = tmp; tmp = t;
    }
    cllm_pieces_free(&tmp);
    return st;
}

cllm_status cllm_decoder_decode(const cllm_decoder *d, cllm_pieces *tokens, cllm_strbuf *out) {
    if (d) CLLM_TRY(chain(d, tokens));
    for (size_t i = 0; i < tokens->n; i++) {
        if (!d && i) cllm_strbuf_putc(out, ' ');
        cllm_strbuf_append(out, cllm_pieces_at(tokens, i), tokens->len[i]);
    }
    cllm_strbuf_reserve(out, 0);
    if (out->oom) return cllm_error(CLLM_ERR_OOM, "out of memory decoding");
    return CLLM_OK;
}
