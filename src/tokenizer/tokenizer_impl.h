/* The tokenizer object, shared by tokenizer.c (loading) and encode.c
 * (encode/decode). Internal to src/tokenizer/. */
#ifndef CLLM_TOKENIZER_TOKENIZER_IMPL_H
#define CLLM_TOKENIZER_TOKENIZER_IMPL_H

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/postprocessor.h"
#include "tokenizer/pretokenizer.h"

struct cllm_tokenizer {
    cllm_normalizer *normalizer;     /* NULL: none */
    cllm_pretokenizer *pretokenizer; /* NULL: none */
    cllm_bpe *model;
    cllm_decoder *decoder;           /* NULL: join tokens with " " */
    cllm_postprocessor *post;        /* NULL: none */
    cllm_added_vocab *added;
    int32_t vocab_size;              /* max id + 1 over vocab and added tokens */
    int32_t bos_id, eos_id;
    char *chat_template, *bos_token, *eos_token, *pad_token, *unk_token;
};

#endif
