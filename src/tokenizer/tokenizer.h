/* Tokenizer internals other layers may use (chat templates, engine).
 * Strings are borrowed: valid while the tokenizer lives. */
#ifndef CLLM_TOKENIZER_TOKENIZER_H
#define CLLM_TOKENIZER_TOKENIZER_H

#include "cllm.h"

/* cllm_tokenizer_chat_template is public (include/cllm.h). */
/* bos_token / eos_token / pad_token / unk_token strings of
 * tokenizer_config.json (plain strings or {"content": ...}), or NULL. */
const char *cllm_tokenizer_bos_token(const cllm_tokenizer *tok);
const char *cllm_tokenizer_eos_token(const cllm_tokenizer *tok);
const char *cllm_tokenizer_pad_token(const cllm_tokenizer *tok);
const char *cllm_tokenizer_unk_token(const cllm_tokenizer *tok);

#endif
