/* Growable byte buffer, piece list and id vector used by the tokenizer
 * pipeline (internal).
 *
 * Allocation failures are sticky: after a failed append `oom` is set and
 * further appends are no-ops; callers check `oom` once at a stage boundary and
 * return CLLM_ERR_OOM (CONVENTIONS.md §3) instead of testing every append.
 */
#ifndef CLLM_TOKENIZER_STRBUF_H
#define CLLM_TOKENIZER_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cllm_strbuf {
    char *p;      /* NUL-terminated when non-NULL */
    size_t len;   /* bytes */
    size_t cap;
    bool oom;
} cllm_strbuf;

void cllm_strbuf_reserve(cllm_strbuf *b, size_t extra);
void cllm_strbuf_append(cllm_strbuf *b, const char *s, size_t n);
void cllm_strbuf_putc(cllm_strbuf *b, char c);
void cllm_strbuf_free(cllm_strbuf *b);
/* Hand the bytes to the caller (NUL-terminated, malloc'd; "" if empty). NULL on OOM. */
char *cllm_strbuf_steal(cllm_strbuf *b);

/* A list of byte strings stored back to back in one buffer.
 * flag bit 0 (CLLM_PIECE_FIRST): the piece starts at original offset 0
 * (Metaspace prepend_scheme "first" needs it). */
#define CLLM_PIECE_FIRST 1u
typedef struct cllm_pieces {
    cllm_strbuf buf;
    size_t *start, *len;
    uint8_t *flags;
    size_t n, cap;
    bool oom;
} cllm_pieces;

void cllm_pieces_clear(cllm_pieces *p);
void cllm_pieces_push(cllm_pieces *p, const char *s, size_t n, uint8_t flags);
/* Start a piece whose bytes are then appended with cllm_pieces_extend. */
void cllm_pieces_begin(cllm_pieces *p, uint8_t flags);
void cllm_pieces_extend(cllm_pieces *p, const char *s, size_t n);
static inline const char *cllm_pieces_at(const cllm_pieces *p, size_t i) { return p->buf.p + p->start[i]; }
static inline bool cllm_pieces_failed(const cllm_pieces *p) { return p->oom || p->buf.oom; }
void cllm_pieces_free(cllm_pieces *p);

typedef struct cllm_ids {
    int32_t *v;
    size_t n, cap;
    bool oom;
} cllm_ids;

void cllm_ids_push(cllm_ids *a, int32_t id);

#endif
