/* Growable buffers for the tokenizer pipeline (see strbuf.h). */
#include "tokenizer/strbuf.h"

#include <stdlib.h>
#include <string.h>

void cllm_strbuf_reserve(cllm_strbuf *b, size_t extra) {
    if (b->oom) return;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return; }
    b->p = p;
    b->cap = cap;
}

void cllm_strbuf_append(cllm_strbuf *b, const char *s, size_t n) {
    cllm_strbuf_reserve(b, n);
    if (b->oom) return;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void cllm_strbuf_putc(cllm_strbuf *b, char c) { cllm_strbuf_append(b, &c, 1); }

void cllm_strbuf_free(cllm_strbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *cllm_strbuf_steal(cllm_strbuf *b) {
    cllm_strbuf_reserve(b, 0);
    if (b->oom) { cllm_strbuf_free(b); return NULL; }
    char *p = b->p;
    p[b->len] = 0;
    memset(b, 0, sizeof *b);
    return p;
}

void cllm_pieces_clear(cllm_pieces *p) {
    p->n = 0;
    p->buf.len = 0;
}

static bool pieces_grow(cllm_pieces *p) {
    if (p->oom) return false;
    if (p->n < p->cap) return true;
    size_t cap = p->cap ? p->cap * 2 : 64;
    size_t *s = realloc(p->start, cap * sizeof *s);
    if (s) p->start = s;
    size_t *l = realloc(p->len, cap * sizeof *l);
    if (l) p->len = l;
    uint8_t *f = realloc(p->flags, cap);
    if (f) p->flags = f;
    if (!s || !l || !f) { p->oom = true; return false; }
    p->cap = cap;
    return true;
}

void cllm_pieces_begin(cllm_pieces *p, uint8_t flags) {
    cllm_strbuf_reserve(&p->buf, 0); /* buf.p is never NULL once a piece exists */
    if (!pieces_grow(p)) return;
    p->start[p->n] = p->buf.len;
    p->len[p->n] = 0;
    p->flags[p->n] = flags;
    p->n++;
}

void cllm_pieces_extend(cllm_pieces *p, const char *s, size_t n) {
    if (p->oom || !p->n) return;
    cllm_strbuf_append(&p->buf, s, n);
    p->len[p->n - 1] += n;
}

void cllm_pieces_push(cllm_pieces *p, const char *s, size_t n, uint8_t flags) {
    cllm_pieces_begin(p, flags);
    cllm_pieces_extend(p, s, n);
}

void cllm_pieces_free(cllm_pieces *p) {
    cllm_strbuf_free(&p->buf);
    free(p->start);
    free(p->len);
    free(p->flags);
    memset(p, 0, sizeof *p);
}

void cllm_ids_push(cllm_ids *a, int32_t id) {
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) { a->oom = true; return; }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
}
