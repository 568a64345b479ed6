/* Added tokens of a Hugging Face tokenizer (internal): the "added_tokens"
 * array, matched in the input before the model runs, as
 * tokenizers/src/tokenizer/added_vocabulary.rs does: leftmost-longest match,
 * single_word, lstrip, rstrip; tokens with normalized=false are matched in the
 * raw text, tokens with normalized=true in the normalized text. */
#ifndef CLLM_TOKENIZER_ADDED_TOKENS_H
#define CLLM_TOKENIZER_ADDED_TOKENS_H

#include "cllm.h"
#include "tokenizer/normalizer.h"

#include <jansson.h>

typedef struct cllm_added_token {
    char *content;       /* as in tokenizer.json, NUL-terminated */
    size_t len;
    char *match;         /* what is searched: content, normalized if `normalized` */
    size_t match_len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} cllm_added_token;

typedef struct cllm_added_vocab cllm_added_vocab;

/* Build from the "added_tokens" array (NULL: none). norm (may be NULL)
 * normalizes the content of tokens with normalized=true.
 * CLLM_ERR_FORMAT, CLLM_ERR_OOM. */
cllm_status cllm_added_vocab_parse(const json_t *arr, const cllm_normalizer *norm, cllm_added_vocab **out);
void cllm_added_vocab_free(cllm_added_vocab *av);
size_t cllm_added_vocab_count(const cllm_added_vocab *av);
const cllm_added_token *cllm_added_vocab_at(const cllm_added_vocab *av, size_t i);
/* Token with this id, or NULL. */
const cllm_added_token *cllm_added_vocab_by_id(const cllm_added_vocab *av, int32_t id);
/* Id of the token whose content is s[0..len), or -1. */
int32_t cllm_added_vocab_find(const cllm_added_vocab *av, const char *s, size_t len);
bool cllm_added_vocab_has_normalized(const cllm_added_vocab *av);

/* A cover of the input by segments: id >= 0 an added token, -1 plain text. */
typedef struct cllm_segment { size_t start, end; int32_t id; } cllm_segment;
typedef struct cllm_segments { cllm_segment *v; size_t n, cap; bool oom; } cllm_segments;

/* Split s[0..n) (valid UTF-8) around the tokens of one set (normalized or
 * not), appending segments to out (not cleared). CLLM_ERR_OOM. */
cllm_status cllm_added_vocab_split(const cllm_added_vocab *av, bool normalized_set, const char *s, size_t n,
                                   cllm_segments *out);

#endif
