/* UTF-8 and Unicode helpers for the tokenizer (internal). */
#ifndef CLLM_TOKENIZER_UNICODE_H
#define CLLM_TOKENIZER_UNICODE_H

#include "tokenizer/strbuf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode one UTF-8 character at s (n bytes available, n >= 1).
 * Returns its length (1..4) with *cp set, or -k when the bytes are invalid,
 * k >= 1 being the length of the maximal subpart to replace by one U+FFFD
 * (Unicode §3.9 "substitution of maximal subparts", as Rust's
 * String::from_utf8_lossy and Python's errors="replace"). */
int cllm_utf8_next(const char *s, size_t n, uint32_t *cp);
/* Length of the valid UTF-8 character at s (strict), or 0 if invalid. */
static inline int cllm_utf8_len(const char *s, size_t n) {
    uint32_t cp;
    int k = cllm_utf8_next(s, n, &cp);
    return k > 0 ? k : 0;
}
bool cllm_utf8_valid(const char *s, size_t n);
/* Byte offset of the first invalid sequence, or n if valid. */
size_t cllm_utf8_first_invalid(const char *s, size_t n);
/* Encode cp (<= 0x10FFFF) into out; returns 1..4. */
int cllm_utf8_encode(uint32_t cp, char out[4]);
/* Append s to b, each invalid maximal subpart replaced by U+FFFD. */
void cllm_utf8_append_lossy(cllm_strbuf *b, const char *s, size_t n);

/* Rust char::is_whitespace (Unicode White_Space property). */
bool cllm_unicode_is_whitespace(uint32_t cp);
/* regex \w: letters, marks, numbers, connector punctuation. */
bool cllm_unicode_is_word(uint32_t cp);
/* Rust char::is_numeric (general category Nd, Nl, No). */
bool cllm_unicode_is_numeric(uint32_t cp);

/* GPT-2 byte-level alphabet: byte -> UTF-8 of its printable stand-in
 * (e.g. ' ' -> "Ġ"), and the inverse (code point -> byte, -1 if none). */
typedef struct cllm_bytelevel_table {
    char enc[256][3];
    uint8_t enc_len[256];
} cllm_bytelevel_table;
const cllm_bytelevel_table *cllm_bytelevel_table_get(void);
int cllm_bytelevel_decode_cp(uint32_t cp);

#endif
