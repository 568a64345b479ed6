/* PCRE2 wrapper for tokenizer patterns (internal).
 *
 * Hugging Face `tokenizers` compiles {"Regex": ...} patterns with Oniguruma;
 * we use PCRE2 with PCRE2_UTF | PCRE2_UCP (Unicode properties, \s/\w/\d by
 * Unicode) and JIT. {"String": ...} patterns compile with PCRE2_LITERAL.
 */
#ifndef CLLM_TOKENIZER_REGEX_H
#define CLLM_TOKENIZER_REGEX_H

#include "cllm.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct cllm_regex cllm_regex;

/* Match spans, as (start, end) byte offsets: v[2i], v[2i+1]. */
typedef struct cllm_spans {
    size_t *v;
    size_t n, cap;   /* n spans */
    bool oom;
} cllm_spans;
void cllm_spans_push(cllm_spans *s, size_t start, size_t end);
void cllm_spans_free(cllm_spans *s);

/* Compile pattern (len bytes). literal: match the bytes as-is. */
cllm_status cllm_regex_compile(const char *pattern, size_t len, bool literal, cllm_regex **out);
/* Compile an HF pattern object {"String": s} or {"Regex": r}; what names the
 * owner in error messages. */
cllm_status cllm_regex_from_json(const json_t *pattern, const char *what, cllm_regex **out);
/* All non-overlapping matches of re in s[0..n), left to right (after an
 * empty match the search resumes one character later). s must be valid
 * UTF-8. Appends to out. CLLM_ERR_OOM, CLLM_ERR_INVALID_ARG (match limit). */
cllm_status cllm_regex_find_all(const cllm_regex *re, const char *s, size_t n, cllm_spans *out);
void cllm_regex_free(cllm_regex *re);

#endif
