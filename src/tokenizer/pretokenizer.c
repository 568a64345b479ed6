/* Pre-tokenizers (see pretokenizer.h), following
 * tokenizers/src/pre_tokenizers/<type>.rs and SplitDelimiterBehavior in
 * tokenizers/src/tokenizer/normalizer.rs of Hugging Face `tokenizers` 0.23. */
#include "tokenizer/pretokenizer.h"

#include "core/status.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

typedef enum { PT_SEQUENCE, PT_SPLIT, PT_BYTELEVEL, PT_METASPACE, PT_DIGITS, PT_WHITESPACE, PT_WSSPLIT } pt_kind;
typedef enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } split_behavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

/* GPT-2's pre-tokenization regex, used by ByteLevel when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct cllm_pretokenizer {
    pt_kind kind;
    cllm_regex *re;            /* Split pattern, ByteLevel GPT-2 regex, Whitespace */
    split_behavior behavior;
    bool invert;
    bool add_prefix_space;     /* ByteLevel */
    char repl[8];              /* Metaspace replacement (UTF-8) */
    size_t repl_len;
    prepend_scheme scheme;
    bool split;                /* Metaspace split */
    bool individual_digits;    /* Digits */
    cllm_pretokenizer **children;
    size_t n_children;
};

void cllm_pretokenizer_free(cllm_pretokenizer *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_children; i++) cllm_pretokenizer_free(p->children[i]);
    free(p->children);
    cllm_regex_free(p->re);
    free(p);
}

static cllm_status parse_behavior(const json_t *j, split_behavior *b) {
    const char *s = json_string_value(j);
    if (!s) return cllm_error(CLLM_ERR_FORMAT, "Split pre-tokenizer without \"behavior\"");
    if (!strcmp(s, "Removed")) *b = B_REMOVED;
    else if (!strcmp(s, "Isolated")) *b = B_ISOLATED;
    else if (!strcmp(s, "MergedWithPrevious")) *b = B_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *b = B_MERGED_NEXT;
    else if (!strcmp(s, "Contiguous")) *b = B_CONTIGUOUS;
    else return cllm_error(CLLM_ERR_UNSUPPORTED, "Split behavior \"%s\" is not supported", s);
    return CLLM_OK;
}

static cllm_status parse_metaspace(const json_t *j, cllm_pretokenizer *p) {
    const char *r = json_string_value(json_object_get(j, "replacement"));
    if (!r) r = "\xE2\x96\x81";
    p->repl_len = strlen(r);
    if (p->repl_len == 0 || p->repl_len > 4 || cllm_utf8_len(r, p->repl_len) != (int)p->repl_len)
        return cllm_error(CLLM_ERR_FORMAT, "Metaspace replacement must be one character");
    memcpy(p->repl, r, p->repl_len);
    const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
    if (!scheme) p->scheme = json_is_false(json_object_get(j, "add_prefix_space")) ? PREPEND_NEVER : PREPEND_ALWAYS;
    else if (!strcmp(scheme, "always")) p->scheme = PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first")) p->scheme = PREPEND_FIRST;
    else if (!strcmp(scheme, "never")) p->scheme = PREPEND_NEVER;
    else return cllm_error(CLLM_ERR_FORMAT, "Metaspace prepend_scheme \"%s\" is not first/always/never", scheme);
    const json_t *split = json_object_get(j, "split");
    p->split = split ? json_is_true(split) : true;
    return CLLM_OK;
}

cllm_status cllm_pretokenizer_parse(const json_t *j, cllm_pretokenizer **out) {
    *out = NULL;
    if (!j || json_is_null(j)) return CLLM_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return cllm_error(CLLM_ERR_FORMAT, "pre_tokenizer without a \"type\"");
    cllm_pretokenizer *p = calloc(1, sizeof *p);
    if (!p) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    if (!strcmp(type, "Sequence")) {
        p->kind = PT_SEQUENCE;
        const json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr)) { st = cllm_error(CLLM_ERR_FORMAT, "Sequence pre_tokenizer without \"pretokenizers\""); goto fail; }
        p->children = calloc(json_array_size(arr) + 1, sizeof *p->children);
        if (!p->children) { st = cllm_error(CLLM_ERR_OOM, "out of memory"); goto fail; }
        for (size_t i = 0; i < json_array_size(arr); i++) {
            CLLM_TRY_GOTO(st, cllm_pretokenizer_parse(json_array_get(arr, i), &p->children[p->n_children]), fail);
            if (p->children[p->n_children]) p->n_children++;
        }
    } else if (!strcmp(type, "Split")) {
        p->kind = PT_SPLIT;
        CLLM_TRY_GOTO(st, cllm_regex_from_json(json_object_get(j, "pattern"), "Split pre_tokenizer", &p->re), fail);
        CLLM_TRY_GOTO(st, parse_behavior(json_object_get(j, "behavior"), &p->behavior), fail);
        p->invert = json_is_true(json_object_get(j, "invert"));
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = PT_BYTELEVEL;
        p->add_prefix_space = json_is_true(json_object_get(j, "add_prefix_space"));
        if (!json_is_false(json_object_get(j, "use_regex")))
            CLLM_TRY_GOTO(st, cllm_regex_compile(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, false, &p->re), fail);
    } else if (!strcmp(type, "Metaspace")) {
        p->kind = PT_METASPACE;
        CLLM_TRY_GOTO(st, parse_metaspace(j, p), fail);
    } else if (!strcmp(type, "Digits")) {
        p->kind = PT_DIGITS;
        p->individual_digits = json_is_true(json_object_get(j, "individual_digits"));
    } else if (!strcmp(type, "Whitespace")) {
        p->kind = PT_WHITESPACE;
        static const char pat[] = "\\w+|[^\\w\\s]+";
        CLLM_TRY_GOTO(st, cllm_regex_compile(pat, sizeof pat - 1, false, &p->re), fail);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = PT_WSSPLIT;
    } else {
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "pre_tokenizer type \"%s\" is not supported (supported: Sequence, Split, "
                        "ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit)", type);
        goto fail;
    }
    *out = p;
    return CLLM_OK;
fail:
    cllm_pretokenizer_free(p);
    return st;
}

/* ---- splitting by matches, with HF's SplitDelimiterBehavior ---- */

/* A cover of [0, n) by ranges flagged as match or not. */
typedef struct { size_t a, b; bool m; } range;
typedef struct { range *v; size_t n, cap; bool oom; } ranges;

static void ranges_push(ranges *r, size_t a, size_t b, bool m) {
    if (r->oom) return;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        range *v = realloc(r->v, cap * sizeof *v);
        if (!v) { r->oom = true; return; }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = (range){a, b, m};
}

/* Turn match spans into a flagged cover of [0, n) (HF Pattern::find_matches). */
static void spans_to_ranges(const cllm_spans *sp, size_t n, bool invert, ranges *out) {
    size_t prev = 0;
    for (size_t i = 0; i < sp->n; i++) {
        size_t a = sp->v[2 * i], b = sp->v[2 * i + 1];
        if (a != prev) ranges_push(out, prev, a, invert);
        ranges_push(out, a, b, !invert);
        prev = b;
    }
    if (prev != n || n == 0) ranges_push(out, prev, n, invert);
}

/* Apply the behavior in place: afterwards every range is a piece to keep. */
static void apply_behavior(ranges *r, split_behavior b) {
    size_t k = 0;
    bool prev = false;
    switch (b) {
    case B_ISOLATED: return;
    case B_REMOVED:
        for (size_t i = 0; i < r->n; i++) if (!r->v[i].m) r->v[k++] = r->v[i];
        break;
    case B_MERGED_PREV:
        for (size_t i = 0; i < r->n; i++) {
            if (r->v[i].m && !prev && k) r->v[k - 1].b = r->v[i].b;
            else r->v[k++] = r->v[i];
            prev = r->v[i].m;
        }
        break;
    case B_MERGED_NEXT: {
        /* Walk backwards: a match is glued to the start of the piece after it. */
        size_t w = r->n;
        for (size_t i = r->n; i-- > 0;) {
            range cur = r->v[i];
            if (cur.m && !prev && w < r->n) r->v[w].a = cur.a;
            else r->v[--w] = cur;
            prev = cur.m;
        }
        memmove(r->v, r->v + w, (r->n - w) * sizeof *r->v);
        k = r->n - w;
        break;
    }
    case B_CONTIGUOUS:
        for (size_t i = 0; i < r->n; i++) {
            if (r->v[i].m == prev && k) r->v[k - 1].b = r->v[i].b;
            else r->v[k++] = r->v[i];
            prev = r->v[i].m;
        }
        break;
    }
    r->n = k;
}

/* Spans of characters satisfying pred (one span per char, or per run). */
static void char_spans(const char *s, size_t n, bool (*pred)(uint32_t), bool runs, cllm_spans *out) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp = 0;
        int k = cllm_utf8_next(s + i, n - i, &cp);
        size_t step = k > 0 ? (size_t)k : 1;
        if (pred(cp)) {
            if (runs && out->n && out->v[2 * out->n - 1] == i) out->v[2 * out->n - 1] = i + step;
            else cllm_spans_push(out, i, i + step);
        }
        i += step;
    }
}

/* Split s by the pattern / predicate of p into pieces appended to out. */
static cllm_status split_one(const cllm_pretokenizer *p, const char *s, size_t n, bool first, cllm_pieces *out) {
    cllm_spans sp = {0};
    ranges r = {0};
    cllm_status st = CLLM_OK;
    split_behavior beh = B_ISOLATED;
    bool invert = false;
    switch (p->kind) {
    case PT_SPLIT: beh = p->behavior; invert = p->invert; st = cllm_regex_find_all(p->re, s, n, &sp); break;
    case PT_BYTELEVEL: st = cllm_regex_find_all(p->re, s, n, &sp); break;
    case PT_WHITESPACE: beh = B_REMOVED; invert = true; st = cllm_regex_find_all(p->re, s, n, &sp); break;
    case PT_WSSPLIT: beh = B_REMOVED; char_spans(s, n, cllm_unicode_is_whitespace, false, &sp); break;
    case PT_DIGITS:
        beh = p->individual_digits ? B_ISOLATED : B_CONTIGUOUS;
        char_spans(s, n, cllm_unicode_is_numeric, false, &sp);
        break;
    default: st = CLLM_ERR_INTERNAL; break;
    }
    if (st == CLLM_OK) {
        spans_to_ranges(&sp, n, invert, &r);
        if (!r.oom) apply_behavior(&r, beh);
        for (size_t i = 0; i < r.n; i++)
            if (r.v[i].b > r.v[i].a)
                cllm_pieces_push(out, s + r.v[i].a, r.v[i].b - r.v[i].a, (first && r.v[i].a == 0) ? CLLM_PIECE_FIRST : 0);
        if (sp.oom || r.oom) st = cllm_error(CLLM_ERR_OOM, "out of memory pre-tokenizing");
    }
    cllm_spans_free(&sp);
    free(r.v);
    return st;
}

static void bytelevel_map(const char *s, size_t n, uint8_t flags, cllm_pieces *out) {
    const cllm_bytelevel_table *t = cllm_bytelevel_table_get();
    cllm_pieces_begin(out, flags);
    cllm_strbuf_reserve(&out->buf, 2 * n);
    for (size_t i = 0; i < n; i++) cllm_pieces_extend(out, t->enc[(uint8_t)s[i]], t->enc_len[(uint8_t)s[i]]);
}

static cllm_status metaspace_one(const cllm_pretokenizer *p, const char *s, size_t n, bool first, cllm_pieces *out) {
    cllm_strbuf b = {0};
    /* Replace ' ' first, then prepend if the result does not start with it. */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') cllm_strbuf_append(&b, p->repl, p->repl_len);
        else cllm_strbuf_putc(&b, s[i]);
    }
    cllm_strbuf_reserve(&b, 0);
    bool has = b.len >= p->repl_len && !memcmp(b.p, p->repl, p->repl_len);
    cllm_pieces tmp = {0};
    cllm_pieces_begin(&tmp, first ? CLLM_PIECE_FIRST : 0);
    if (b.len && !has && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && first)))
        cllm_pieces_extend(&tmp, p->repl, p->repl_len);
    cllm_pieces_extend(&tmp, b.p, b.len);
    cllm_strbuf_free(&b);
    const char *t = cllm_pieces_at(&tmp, 0);
    size_t tn = tmp.len[0];
    if (!p->split) {
        if (tn) cllm_pieces_push(out, t, tn, tmp.flags[0]);
    } else {
        /* Split on the replacement, MergedWithNext. */
        size_t start = 0;
        for (size_t i = 1; i + p->repl_len <= tn; i++) {
            if (memcmp(t + i, p->repl, p->repl_len)) continue;
            cllm_pieces_push(out, t + start, i - start, (first && start == 0) ? CLLM_PIECE_FIRST : 0);
            start = i;
        }
        if (tn > start) cllm_pieces_push(out, t + start, tn - start, (first && start == 0) ? CLLM_PIECE_FIRST : 0);
    }
    cllm_status st = cllm_pieces_failed(&tmp) ? cllm_error(CLLM_ERR_OOM, "out of memory pre-tokenizing") : CLLM_OK;
    cllm_pieces_free(&tmp);
    return st;
}

/* Apply a non-Sequence pre-tokenizer to one piece. */
static cllm_status apply_leaf(const cllm_pretokenizer *p, const char *s, size_t n, bool first, cllm_pieces *out) {
    switch (p->kind) {
    case PT_METASPACE: return metaspace_one(p, s, n, first, out);
    case PT_BYTELEVEL: {
        cllm_strbuf pre = {0};
        if (p->add_prefix_space && n && s[0] != ' ') {
            cllm_strbuf_putc(&pre, ' ');
            cllm_strbuf_append(&pre, s, n);
            if (pre.oom) return cllm_error(CLLM_ERR_OOM, "out of memory pre-tokenizing");
            s = pre.p;
            n = pre.len;
        }
        cllm_status st = CLLM_OK;
        if (!p->re) {
            if (n) bytelevel_map(s, n, first ? CLLM_PIECE_FIRST : 0, out);
        } else {
            cllm_pieces parts = {0};
            st = split_one(p, s, n, first, &parts);
            for (size_t i = 0; st == CLLM_OK && i < parts.n; i++)
                bytelevel_map(cllm_pieces_at(&parts, i), parts.len[i], parts.flags[i], out);
            cllm_pieces_free(&parts);
        }
        cllm_strbuf_free(&pre);
        return st;
    }
    default: return split_one(p, s, n, first, out);
    }
}

cllm_status cllm_pretokenizer_apply(const cllm_pretokenizer *p, const char *s, size_t n, bool first,
                                    cllm_pieces *out) {
    cllm_status st = CLLM_OK;
    if (!p) {
        if (n) cllm_pieces_push(out, s, n, first ? CLLM_PIECE_FIRST : 0);
    } else if (p->kind != PT_SEQUENCE) {
        st = apply_leaf(p, s, n, first, out);
    } else if (p->n_children == 0) {
        if (n) cllm_pieces_push(out, s, n, first ? CLLM_PIECE_FIRST : 0);
    } else {
        /* Ping-pong between two lists; the last stage writes into out. */
        cllm_pieces a = {0}, b = {0};
        cllm_pieces_push(&a, s, n, first ? CLLM_PIECE_FIRST : 0);
        for (size_t c = 0; st == CLLM_OK && c < p->n_children; c++) {
            cllm_pieces *dst = (c + 1 == p->n_children) ? out : &b;
            if (dst == &b) cllm_pieces_clear(&b);
            for (size_t i = 0; st == CLLM_OK && i < a.n; i++)
                if (a.len[i]) st = cllm_pretokenizer_apply(p->children[c], cllm_pieces_at(&a, i), a.len[i],
                                                          a.flags[i] & CLLM_PIECE_FIRST, dst);
            cllm_pieces t = a; a = b; b = t;
        }
        cllm_pieces_free(&a);
        cllm_pieces_free(&b);
    }
    if (st == CLLM_OK && cllm_pieces_failed(out)) st = cllm_error(CLLM_ERR_OOM, "out of memory pre-tokenizing");
    return st;
}
