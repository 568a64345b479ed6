/* Normalizers of Hugging Face `tokenizers` (internal): Sequence, Prepend,
 * Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip; JSON null = none. */
#ifndef CLLM_TOKENIZER_NORMALIZER_H
#define CLLM_TOKENIZER_NORMALIZER_H

#include "cllm.h"
#include "tokenizer/strbuf.h"

#include <jansson.h>

typedef struct cllm_normalizer cllm_normalizer;

/* Build from the "normalizer" object of tokenizer.json. j NULL or JSON null
 * gives *out = NULL (identity). CLLM_ERR_FORMAT, CLLM_ERR_UNSUPPORTED (type). */
cllm_status cllm_normalizer_parse(const json_t *j, cllm_normalizer **out);
void cllm_normalizer_free(cllm_normalizer *n);
/* Normalize s[0..len) (valid UTF-8) into out (cleared first). n may be NULL. */
cllm_status cllm_normalizer_apply(const cllm_normalizer *n, const char *s, size_t len, cllm_strbuf *out);

#endif
