/* Post-processors of Hugging Face `tokenizers` for single sequences
 * (internal): TemplateProcessing ("single" template), BertProcessing,
 * RobertaProcessing, ByteLevel (no-op on ids), Sequence; JSON null = none.
 * Applied only when add_special_tokens is true. */
#ifndef CLLM_TOKENIZER_POSTPROCESSOR_H
#define CLLM_TOKENIZER_POSTPROCESSOR_H

#include "cllm.h"
#include "tokenizer/strbuf.h"

#include <jansson.h>

typedef struct cllm_postprocessor cllm_postprocessor;

cllm_status cllm_postprocessor_parse(const json_t *j, cllm_postprocessor **out);
void cllm_postprocessor_free(cllm_postprocessor *p);
/* Wrap ids (the encoded sequence $A) with the template's special ids into out
 * (appended). p may be NULL (copy). */
cllm_status cllm_postprocessor_apply(const cllm_postprocessor *p, const int32_t *ids, size_t n, cllm_ids *out);

#endif
