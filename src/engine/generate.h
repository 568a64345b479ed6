/* Generation on token ids (internal; cllm_generate in include/cllm.h is the
 * text entry point built on it). */
#ifndef CLLM_ENGINE_GENERATE_H
#define CLLM_ENGINE_GENERATE_H

#include "cllm.h"

/* Generate from prompt ids (n_prompt >= 1) on one sequence: one prefill
 * step, then decode steps, sampling with sp, stopping on eos (unless
 * ignore_eos), max_tokens or max_model_len. cb (may be NULL) gets each token
 * with its text delta when with_text (else delta ""). Errors:
 * CLLM_ERR_CONTEXT_LENGTH, CLLM_ERR_INVALID_ARG, CLLM_ERR_NO_KV_BLOCKS,
 * backend errors. */
cllm_status cllm_generate_ids(cllm_model *m, const int32_t *prompt, int n_prompt, const cllm_sampling_params *sp,
                              bool with_text, cllm_stream_fn cb, void *user, cllm_generate_result *result);

#endif
