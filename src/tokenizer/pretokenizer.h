/* Pre-tokenizers of Hugging Face `tokenizers` (internal): Split, ByteLevel,
 * Metaspace, Digits, Whitespace, WhitespaceSplit, Sequence; JSON null = none. */
#ifndef CLLM_TOKENIZER_PRETOKENIZER_H
#define CLLM_TOKENIZER_PRETOKENIZER_H

#include "cllm.h"
#include "tokenizer/strbuf.h"

#include <jansson.h>

typedef struct cllm_pretokenizer cllm_pretokenizer;

/* Build from the "pre_tokenizer" object; NULL / JSON null gives *out = NULL.
 * CLLM_ERR_FORMAT, CLLM_ERR_UNSUPPORTED (type, behavior), CLLM_ERR_OOM. */
cllm_status cllm_pretokenizer_parse(const json_t *j, cllm_pretokenizer **out);
void cllm_pretokenizer_free(cllm_pretokenizer *p);
/* Split the normalized text s[0..n) into pre-tokens appended to out (not
 * cleared). first: s starts at offset 0 of the original input (Metaspace
 * prepend_scheme "first"). Empty pre-tokens are dropped, as HF does. */
cllm_status cllm_pretokenizer_apply(const cllm_pretokenizer *p, const char *s, size_t n, bool first,
                                    cllm_pieces *out);

#endif
