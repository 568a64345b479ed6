/* The single-sequence API (internal side): include/cllm.h's cllm_model /
 * cllm_generate are a thin wrapper over the engine (generate.c); these are
 * the pieces the CLI, benchmarks and tests use. */
#ifndef CLLM_ENGINE_GENERATE_H
#define CLLM_ENGINE_GENERATE_H

#include "cllm.h"
#include "engine/executor.h"
#include "engine/model_runner.h"
#include "model/config.h"

/* Generate from prompt ids (n_prompt >= 1) on one sequence through the
 * engine, sampling with sp, stopping on eos (unless ignore_eos), max_tokens
 * or max_model_len. cb (may be NULL) gets each token with its text delta
 * when with_text (else delta ""). Errors: CLLM_ERR_CONTEXT_LENGTH,
 * CLLM_ERR_INVALID_ARG, CLLM_ERR_NO_KV_BLOCKS, backend and distributed errors. */
cllm_status cllm_generate_ids(cllm_model *m, const int32_t *prompt, int n_prompt, const cllm_sampling_params *sp,
                              bool with_text, cllm_stream_fn cb, void *user, cllm_generate_result *result);

/* Borrowed views of a loaded model. */
const cllm_model_config *cllm_model_config_of(const cllm_model *m);
cllm_executor *cllm_model_executor(cllm_model *m);
/* Rank 0's runner (runner-level tests and benchmarks). */
cllm_runner *cllm_model_runner(cllm_model *m);
/* Wall time of the load and of its weight reading/upload (rank 0), ms. */
double cllm_model_load_ms(const cllm_model *m);
double cllm_model_weights_ms(const cllm_model *m);

/* generation_config.json's sampling defaults onto sp (vLLM's order: then
 * the user's flags). */
void cllm_model_apply_generation_config(const cllm_model *m, cllm_sampling_params *sp);

#endif
