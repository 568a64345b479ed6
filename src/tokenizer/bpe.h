/* BPE model of Hugging Face `tokenizers` (internal): byte-level (GPT-2,
 * Llama-3 with ignore_merges) and SentencePiece-style (byte_fallback,
 * unk_token, fuse_unk). Follows tokenizers/src/models/bpe/{model,word}.rs. */
#ifndef CLLM_TOKENIZER_BPE_H
#define CLLM_TOKENIZER_BPE_H

#include "cllm.h"
#include "tokenizer/strbuf.h"

#include <jansson.h>

typedef struct cllm_bpe cllm_bpe;

/* Build from the "model" object of tokenizer.json (type "BPE").
 * CLLM_ERR_FORMAT (vocab/merges malformed, merge result not in vocab),
 * CLLM_ERR_UNSUPPORTED (dropout, continuing_subword_prefix, ...), CLLM_ERR_OOM. */
cllm_status cllm_bpe_parse(const json_t *model, cllm_bpe **out);
void cllm_bpe_free(cllm_bpe *m);
/* Id of a vocab token, or -1. */
int32_t cllm_bpe_token_to_id(const cllm_bpe *m, const char *tok, size_t len);
/* Token of id (NUL-terminated, borrowed), or NULL. */
const char *cllm_bpe_id_to_token(const cllm_bpe *m, int32_t id);
/* Largest vocab id + 1. */
int32_t cllm_bpe_size(const cllm_bpe *m);

/* Scratch space for cllm_bpe_encode; zero-initialize, reuse, then free. */
typedef struct cllm_bpe_ws {
    int32_t *id, *prev, *next;
    uint64_t *heap;
    size_t cap, heap_n;
} cllm_bpe_ws;
void cllm_bpe_ws_free(cllm_bpe_ws *ws);

/* Encode one pre-token w[0..n) (valid UTF-8) and append its ids to out.
 * O(n log n): merges applied lowest rank first (leftmost on ties) through a
 * binary heap over a linked list of symbols. */
cllm_status cllm_bpe_encode(const cllm_bpe *m, const char *w, size_t n, cllm_bpe_ws *ws, cllm_ids *out);

#endif
