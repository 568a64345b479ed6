/* Internal accessors of a cllm_engine for the rest of cllm (the CLI's
 * benchmarks, the server, the single-sequence API): what they need without
 * reaching into the engine's struct (engine_internal.h stays private to
 * src/engine/engine*.c). */
#ifndef CLLM_ENGINE_ENGINE_H
#define CLLM_ENGINE_ENGINE_H

#include "cllm.h"
#include "engine/executor.h"
#include "model/config.h"

/* The model's config.json (+ generation_config.json). Borrowed. */
const cllm_model_config *cllm_engine_model_config(const cllm_engine *e);
/* The executor (rank 0's worker, the other ranks); for benchmarks that build
 * their own batches (bench latency's decode sweep) and runner-level tests.
 * Borrowed. */
cllm_executor *cllm_engine_executor(cllm_engine *e);
/* cllm_engine_create, where size (may be NULL) settles p's KV blocks and
 * token budget once the model's max_model_len is known, before the weights
 * load (cllm_model_load: room for max_num_seqs whole sequences). size must
 * keep p valid for cllm_engine_create. */
cllm_status cllm_engine_create_sized(const cllm_engine_params *p,
                                     void (*size)(cllm_engine_params *p, int max_model_len), cllm_engine **out);
/* Wall time of cllm_engine_create (ms). */
double cllm_engine_load_ms(const cllm_engine *e);

#endif
