/* BPE model (see bpe.h). */
#include "tokenizer/bpe.h"

#include "core/status.h"
#include "tokenizer/hashmap.h"
#include "tokenizer/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cllm_bpe {
    cllm_strmap vocab;        /* token -> id */
    char **id_tok;            /* id -> token (into arena), NULL for holes */
    char *arena;
    int32_t size;             /* max id + 1 */
    cllm_u64map merges;       /* (a << 32 | b) -> (rank << 32 | merged id) */
    int32_t unk_id;           /* -1: no unk_token */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_id[256];     /* id of "<0xNN>", -1 if absent */
};

void cllm_bpe_free(cllm_bpe *m) {
    if (!m) return;
    cllm_strmap_free(&m->vocab);
    cllm_u64map_free(&m->merges);
    free(m->id_tok);
    free(m->arena);
    free(m);
}

int32_t cllm_bpe_token_to_id(const cllm_bpe *m, const char *tok, size_t len) { return cllm_strmap_get(&m->vocab, tok, len); }
const char *cllm_bpe_id_to_token(const cllm_bpe *m, int32_t id) { return (id >= 0 && id < m->size) ? m->id_tok[id] : NULL; }
int32_t cllm_bpe_size(const cllm_bpe *m) { return m->size; }

static cllm_status parse_vocab(cllm_bpe *m, const json_t *vocab) {
    if (!json_is_object(vocab)) return cllm_error(CLLM_ERR_FORMAT, "BPE model: \"vocab\" must be an object");
    size_t bytes = 0;
    const char *key;
    const json_t *val;
    int64_t max_id = -1;
    json_object_foreach((json_t *)vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > INT32_MAX - 1)
            return cllm_error(CLLM_ERR_FORMAT, "BPE model: vocab id of \"%s\" is not a non-negative integer", key);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
        bytes += strlen(key) + 1;
    }
    m->size = (int32_t)(max_id + 1);
    m->arena = malloc(bytes + 1);
    m->id_tok = calloc((size_t)m->size + 1, sizeof *m->id_tok);
    if (!m->arena || !m->id_tok) return cllm_error(CLLM_ERR_OOM, "out of memory loading the vocab");
    size_t off = 0;
    json_object_foreach((json_t *)vocab, key, val) {
        size_t len = strlen(key);
        int32_t id = (int32_t)json_integer_value(val);
        memcpy(m->arena + off, key, len + 1);
        m->id_tok[id] = m->arena + off;
        off += len + 1;
        if (!cllm_strmap_put(&m->vocab, key, len, id)) return cllm_error(CLLM_ERR_OOM, "out of memory loading the vocab");
    }
    return CLLM_OK;
}

static cllm_status parse_merges(cllm_bpe *m, const json_t *merges) {
    if (!json_is_array(merges)) return cllm_error(CLLM_ERR_FORMAT, "BPE model: \"merges\" must be an array");
    char *tmp = NULL;
    size_t tmp_cap = 0;
    cllm_status st = CLLM_OK;
    for (size_t i = 0; i < json_array_size(merges) && st == CLLM_OK; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(e)) {
            a = json_string_value(e);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) { st = cllm_error(CLLM_ERR_FORMAT, "BPE model: merge %zu \"%s\" is not \"left right\"", i, a); break; }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            la = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            lb = json_string_length(json_array_get(e, 1));
        } else {
            st = cllm_error(CLLM_ERR_FORMAT, "BPE model: merge %zu is neither \"a b\" nor [a, b]", i);
            break;
        }
        int32_t ia = cllm_strmap_get(&m->vocab, a, la), ib = cllm_strmap_get(&m->vocab, b, lb);
        if (la + lb + 1 > tmp_cap) {
            tmp_cap = 2 * (la + lb + 1);
            char *t = realloc(tmp, tmp_cap);
            if (!t) { st = cllm_error(CLLM_ERR_OOM, "out of memory loading merges"); break; }
            tmp = t;
        }
        memcpy(tmp, a, la);
        memcpy(tmp + la, b, lb);
        int32_t inew = cllm_strmap_get(&m->vocab, tmp, la + lb);
        if (ia < 0 || ib < 0 || inew < 0) {
            st = cllm_error(CLLM_ERR_FORMAT, "BPE model: merge %zu (\"%.*s\" + \"%.*s\") uses a token not in the vocab",
                            i, (int)la, a, (int)lb, b);
            break;
        }
        if (!cllm_u64map_put(&m->merges, (uint64_t)ia << 32 | (uint32_t)ib, (uint64_t)i << 32 | (uint32_t)inew))
            st = cllm_error(CLLM_ERR_OOM, "out of memory loading merges");
    }
    free(tmp);
    return st;
}

cllm_status cllm_bpe_parse(const json_t *model, cllm_bpe **out) {
    *out = NULL;
    cllm_bpe *m = calloc(1, sizeof *m);
    if (!m) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    const json_t *drop = json_object_get(model, "dropout");
    if (json_is_number(drop) && json_number_value(drop) > 0) {
        st = cllm_error(CLLM_ERR_UNSUPPORTED, "BPE dropout is not supported (inference tokenizers have dropout null)");
        goto fail;
    }
    const char *opt[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(model, opt[i]);
        if (json_is_string(v) && json_string_length(v)) {
            st = cllm_error(CLLM_ERR_UNSUPPORTED, "BPE %s is not supported", opt[i]);
            goto fail;
        }
    }
    CLLM_TRY_GOTO(st, parse_vocab(m, json_object_get(model, "vocab")), fail);
    CLLM_TRY_GOTO(st, parse_merges(m, json_object_get(model, "merges")), fail);
    m->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    m->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    m->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    m->unk_id = -1;
    const json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) {
        m->unk_id = cllm_strmap_get(&m->vocab, json_string_value(unk), json_string_length(unk));
        if (m->unk_id < 0) {
            st = cllm_error(CLLM_ERR_FORMAT, "BPE model: unk_token \"%s\" is not in the vocab", json_string_value(unk));
            goto fail;
        }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = cllm_strmap_get(&m->vocab, name, 6);
    }
    *out = m;
    return CLLM_OK;
fail:
    cllm_bpe_free(m);
    return st;
}

void cllm_bpe_ws_free(cllm_bpe_ws *ws) {
    free(ws->id); free(ws->prev); free(ws->next); free(ws->heap);
    memset(ws, 0, sizeof *ws);
}

static bool ws_reserve(cllm_bpe_ws *ws, size_t n) {
    if (n <= ws->cap) return true;
    size_t cap = ws->cap ? ws->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(ws->id, cap * sizeof *a);
    if (a) ws->id = a;
    int32_t *b = realloc(ws->prev, cap * sizeof *b);
    if (b) ws->prev = b;
    int32_t *c = realloc(ws->next, cap * sizeof *c);
    if (c) ws->next = c;
    uint64_t *h = realloc(ws->heap, 3 * cap * sizeof *h); /* pushes <= 3 per symbol */
    if (h) ws->heap = h;
    if (!a || !b || !c || !h) return false;
    ws->cap = cap;
    return true;
}

/* Min-heap of (rank << 32 | position). */
static void heap_push(cllm_bpe_ws *ws, uint64_t key) {
    size_t i = ws->heap_n++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (ws->heap[p] <= key) break;
        ws->heap[i] = ws->heap[p];
        i = p;
    }
    ws->heap[i] = key;
}

static uint64_t heap_pop(cllm_bpe_ws *ws) {
    uint64_t top = ws->heap[0], last = ws->heap[--ws->heap_n];
    size_t i = 0, n = ws->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ws->heap[c + 1] < ws->heap[c]) c++;
        if (ws->heap[c] >= last) break;
        ws->heap[i] = ws->heap[c];
        i = c;
    }
    if (n) ws->heap[i] = last;
    return top;
}

static bool merge_of(const cllm_bpe *m, int32_t a, int32_t b, uint64_t *rank_new) {
    return cllm_u64map_get(&m->merges, (uint64_t)a << 32 | (uint32_t)b, rank_new);
}

/* Initial symbols of w (HF BPE::merge_word): one per character, byte tokens
 * when the character is not in the vocab (byte_fallback), else unk (fused). */
static size_t initial_symbols(const cllm_bpe *m, const char *w, size_t n, cllm_bpe_ws *ws) {
    size_t ns = 0;
    int32_t pending_unk = -1;
    for (size_t i = 0; i < n;) {
        int k = cllm_utf8_len(w + i, n - i);
        size_t cl = k > 0 ? (size_t)k : 1;
        int32_t id = cllm_strmap_get(&m->vocab, w + i, cl);
        if (id >= 0) {
            if (pending_unk >= 0) { ws->id[ns++] = pending_unk; pending_unk = -1; }
            ws->id[ns++] = id;
        } else {
            bool done = false;
            if (m->byte_fallback) {
                done = true;
                for (size_t j = 0; j < cl; j++) done = done && m->byte_id[(uint8_t)w[i + j]] >= 0;
                /* HF pushes the byte tokens without flushing a pending unk. */
                for (size_t j = 0; done && j < cl; j++) ws->id[ns++] = m->byte_id[(uint8_t)w[i + j]];
            }
            if (!done && m->unk_id >= 0) {
                if (pending_unk >= 0 && !m->fuse_unk) ws->id[ns++] = pending_unk;
                pending_unk = m->unk_id;
            }
        }
        i += cl;
    }
    if (pending_unk >= 0) ws->id[ns++] = pending_unk;
    return ns;
}

cllm_status cllm_bpe_encode(const cllm_bpe *m, const char *w, size_t n, cllm_bpe_ws *ws, cllm_ids *out) {
    if (!n) return CLLM_OK;
    if (m->ignore_merges) {
        int32_t id = cllm_strmap_get(&m->vocab, w, n);
        if (id >= 0) { cllm_ids_push(out, id); goto done; }
    }
    if (!ws_reserve(ws, n + 1)) return cllm_error(CLLM_ERR_OOM, "out of memory in BPE");
    size_t ns = initial_symbols(m, w, n, ws);
    ws->heap_n = 0;
    for (size_t i = 0; i < ns; i++) {
        ws->prev[i] = (int32_t)i - 1;
        ws->next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
        uint64_t rn;
        if (i + 1 < ns && merge_of(m, ws->id[i], ws->id[i + 1], &rn)) heap_push(ws, (rn & ~0xffffffffull) | i);
    }
    while (ws->heap_n) {
        uint64_t top = heap_pop(ws);
        int32_t pos = (int32_t)(top & 0xffffffffu);
        uint64_t rank = top >> 32, rn;
        if (ws->id[pos] < 0) continue;                       /* merged away */
        int32_t nx = ws->next[pos];
        if (nx < 0) continue;
        if (!merge_of(m, ws->id[pos], ws->id[nx], &rn) || (rn >> 32) != rank) continue; /* stale */
        ws->id[pos] = (int32_t)(rn & 0xffffffffu);
        ws->id[nx] = -1;
        int32_t nn = ws->next[nx];
        ws->next[pos] = nn;
        if (nn >= 0) ws->prev[nn] = pos;
        int32_t pv = ws->prev[pos];
        if (pv >= 0 && merge_of(m, ws->id[pv], ws->id[pos], &rn)) heap_push(ws, (rn & ~0xffffffffull) | (uint32_t)pv);
        if (nn >= 0 && merge_of(m, ws->id[pos], ws->id[nn], &rn)) heap_push(ws, (rn & ~0xffffffffull) | (uint32_t)pos);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = ws->next[i]) cllm_ids_push(out, ws->id[i]);
done:
    if (out->oom) return cllm_error(CLLM_ERR_OOM, "out of memory in BPE");
    return CLLM_OK;
}
