/* Added-token matching (see added_tokens.h). */
#include "tokenizer/added_tokens.h"

#include "core/status.h"
#include "tokenizer/hashmap.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

/* Candidates grouped by first byte, longest first: at each position the
 * first full match is the longest one starting there. */
typedef struct matcher {
    uint32_t *order;
    uint32_t begin[257];
    size_t n;
} matcher;

struct cllm_added_vocab {
    cllm_added_token *tok;
    size_t n;
    cllm_strmap by_content;   /* content -> index */
    cllm_u64map by_id;        /* id -> index */
    matcher raw, norm;
};

static void matcher_free(matcher *m) { free(m->order); }

static int cmp_match(const void *a, const void *b, void *ctx) {
    const cllm_added_token *tok = ctx;
    const cllm_added_token *x = &tok[*(const uint32_t *)a], *y = &tok[*(const uint32_t *)b];
    uint8_t fx = (uint8_t)x->match[0], fy = (uint8_t)y->match[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->match_len != y->match_len) return x->match_len > y->match_len ? -1 : 1;
    return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

static cllm_status matcher_build(cllm_added_vocab *av, bool normalized_set, matcher *m) {
    m->order = malloc((av->n + 1) * sizeof *m->order);
    if (!m->order) return cllm_error(CLLM_ERR_OOM, "out of memory");
    for (size_t i = 0; i < av->n; i++)
        if (av->tok[i].normalized == normalized_set && av->tok[i].match_len) m->order[m->n++] = (uint32_t)i;
    qsort_r(m->order, m->n, sizeof *m->order, cmp_match, av->tok);
    size_t j = 0;
    for (int b = 0; b < 256; b++) {
        m->begin[b] = (uint32_t)j;
        while (j < m->n && (uint8_t)av->tok[m->order[j]].match[0] == b) j++;
    }
    m->begin[256] = (uint32_t)j;
    return CLLM_OK;
}

void cllm_added_vocab_free(cllm_added_vocab *av) {
    if (!av) return;
    for (size_t i = 0; i < av->n; i++) {
        if (av->tok[i].match != av->tok[i].content) free(av->tok[i].match);
        free(av->tok[i].content);
    }
    free(av->tok);
    cllm_strmap_free(&av->by_content);
    cllm_u64map_free(&av->by_id);
    matcher_free(&av->raw);
    matcher_free(&av->norm);
    free(av);
}

cllm_status cllm_added_vocab_parse(const json_t *arr, const cllm_normalizer *norm, cllm_added_vocab **out) {
    *out = NULL;
    cllm_added_vocab *av = calloc(1, sizeof *av);
    if (!av) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (arr && !json_is_null(arr) && !json_is_array(arr)) { st = cllm_error(CLLM_ERR_FORMAT, "\"added_tokens\" must be an array"); goto fail; }
    av->tok = calloc(n + 1, sizeof *av->tok);
    if (!av->tok) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        const json_t *c = json_object_get(e, "content"), *id = json_object_get(e, "id");
        if (!json_is_string(c) || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX - 1) {
            st = cllm_error(CLLM_ERR_FORMAT, "added_tokens[%zu] needs a string \"content\" and a non-negative \"id\"", i);
            goto fail;
        }
        cllm_added_token *t = &av->tok[av->n++];
        t->len = json_string_length(c);
        t->content = malloc(t->len + 1);
        if (!t->content) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        memcpy(t->content, json_string_value(c), t->len + 1);
        t->match = t->content;
        t->match_len = t->len;
        t->id = (int32_t)json_integer_value(id);
        t->single_word = json_is_true(json_object_get(e, "single_word"));
        t->lstrip = json_is_true(json_object_get(e, "lstrip"));
        t->rstrip = json_is_true(json_object_get(e, "rstrip"));
        t->normalized = json_is_true(json_object_get(e, "normalized"));
        t->special = json_is_true(json_object_get(e, "special"));
        if (t->normalized && norm) {
            cllm_strbuf b = {0};
            st = cllm_normalizer_apply(norm, t->content, t->len, &b);
            if (st != CLLM_OK) { cllm_strbuf_free(&b); goto fail; }
            t->match_len = b.len;
            t->match = cllm_strbuf_steal(&b);
            if (!t->match) { t->match = t->content; st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        }
        if (!cllm_strmap_put(&av->by_content, t->content, t->len, (int32_t)i) ||
            !cllm_u64map_put(&av->by_id, (uint64_t)t->id, i)) {
            st = cllm_error(CLLM_ERR_OOM, "out of memory");
            goto fail;
        }
    }
    CLLM_TRY_GOTO(st, matcher_build(av, false, &av->raw), fail);
    CLLM_TRY_GOTO(st, matcher_build(av, true, &av->norm), fail);
    *out = av;
    return CLLM_OK;
fail:
    cllm_added_vocab_free(av);
    return st;
}

size_t cllm_added_vocab_count(const cllm_added_vocab *av) { return av->n; }
const cllm_added_token *cllm_added_vocab_at(const cllm_added_vocab *av, size_t i) { return i < av->n ? &av->tok[i] : NULL; }
bool cllm_added_vocab_has_normalized(const cllm_added_vocab *av) { return av->norm.n > 0; }

const cllm_added_token *cllm_added_vocab_by_id(const cllm_added_vocab *av, int32_t id) {
    uint64_t i;
    if (id < 0 || !cllm_u64map_get(&av->by_id, (uint64_t)id, &i)) return NULL;
    return &av->tok[i];
}

int32_t cllm_added_vocab_find(const cllm_added_vocab *av, const char *s, size_t len) {
    int32_t i = cllm_strmap_get(&av->by_content, s, len);
    return i < 0 ? -1 : av->tok[i].id;
}

static void segments_push(cllm_segments *o, size_t a, size_t b, int32_t id) {
    if (o->oom) return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        cllm_segment *v = realloc(o->v, cap * sizeof *v);
        if (!v) { o->oom = true; return; }
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = (cllm_segment){a, b, id};
}

/* Code point ending at s[end) / starting at s[start), or 0 at the edges. */
static uint32_t cp_before(const char *s, size_t end) {
    if (!end) return 0;
    size_t p = end - 1;
    while (p > 0 && ((uint8_t)s[p] & 0xC0) == 0x80) p--;
    uint32_t cp = 0;
    cllm_utf8_next(s + p, end - p, &cp);
    return cp;
}
static uint32_t cp_at(const char *s, size_t n, size_t start) {
    uint32_t cp = 0;
    if (start < n) cllm_utf8_next(s + start, n - start, &cp);
    return cp;
}

cllm_status cllm_added_vocab_split(const cllm_added_vocab *av, bool normalized_set, const char *s, size_t n,
                                   cllm_segments *out) {
    const matcher *m = normalized_set ? &av->norm : &av->raw;
    size_t seg_start = 0, pos = 0;
    while (m->n && pos < n) {
        /* Leftmost-longest match at or after pos. */
        const cllm_added_token *hit = NULL;
        size_t at = pos;
        for (; at < n && !hit; at++) {
            uint8_t b = (uint8_t)s[at];
            for (uint32_t j = m->begin[b]; j < m->begin[b + 1]; j++) {
                const cllm_added_token *t = &av->tok[m->order[j]];
                if (t->match_len <= n - at && !memcmp(s + at, t->match, t->match_len)) { hit = t; break; }
            }
        }
        if (!hit) break;
        size_t start = at - 1, stop = start + hit->match_len;
        pos = stop;
        if (hit->single_word) {
            uint32_t before = cp_before(s, start), after = cp_at(s, n, stop);
            if ((start > 0 && cllm_unicode_is_word(before)) || (stop < n && cllm_unicode_is_word(after))) continue;
        }
        if (hit->lstrip) {
            size_t ns = start;
            while (ns > seg_start) {
                uint32_t cp = cp_before(s, ns);
                if (!cllm_unicode_is_whitespace(cp)) break;
                ns--;
                while (ns > seg_start && ((uint8_t)s[ns] & 0xC0) == 0x80) ns--;
            }
            start = ns;
        }
        if (hit->rstrip) {
            while (stop < n) {
                uint32_t cp = 0;
                int k = cllm_utf8_next(s + stop, n - stop, &cp);
                if (k <= 0 || !cllm_unicode_is_whitespace(cp)) break;
                stop += (size_t)k;
            }
            pos = stop;
        }
        if (start != seg_start) segments_push(out, seg_start, start, -1);
        segments_push(out, start, stop, hit->id);
        seg_start = stop;
    }
    if (seg_start != n || n == 0) segments_push(out, seg_start, n, -1);
    if (out->oom) return cllm_error(CLLM_ERR_OOM, "out of memory splitting added tokens");
    return CLLM_OK;
}
