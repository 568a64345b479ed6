/* Decoders of Hugging Face `tokenizers` (internal): ByteLevel, Replace,
 * ByteFallback, Fuse, Strip, Metaspace, Sequence; JSON null = join with " ".
 * Follows tokenizers/src/decoders/<type>.rs (decode_chain). */
#ifndef CLLM_TOKENIZER_DECODER_H
#define CLLM_TOKENIZER_DECODER_H

#include "cllm.h"
#include "tokenizer/strbuf.h"

#include <jansson.h>

typedef struct cllm_decoder cllm_decoder;

/* Build from the "decoder" object; NULL / JSON null gives *out = NULL.
 * CLLM_ERR_FORMAT, CLLM_ERR_UNSUPPORTED (type), CLLM_ERR_OOM. */
cllm_status cllm_decoder_parse(const json_t *j, cllm_decoder **out);
void cllm_decoder_free(cllm_decoder *d);
/* Decode token strings (consumed: tokens is rewritten) into out (appended).
 * The result is valid UTF-8 (invalid bytes become U+FFFD). */
cllm_status cllm_decoder_decode(const cllm_decoder *d, cllm_pieces *tokens, cllm_strbuf *out);

#endif
