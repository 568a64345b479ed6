/* cllm_model internals (shared by src/engine and src/cli, not public). */
#ifndef CLLM_MODEL_MODEL_H
#define CLLM_MODEL_MODEL_H

#include "cllm.h"
#include "engine/model_runner.h"
#include "model/config.h"

struct cllm_model {
    cllm_model_params params;   /* model string not kept; see dir */
    char *dir;                  /* resolved local directory (owned) */
    cllm_model_config cfg;
    cllm_tokenizer *tok;        /* owned */
    cllm_runner *runner;        /* owned; owns the backend */
    int max_model_len;
    int max_num_seqs;
    int32_t *free_blocks;       /* simple free list of KV block ids (stack) */
    int num_free_blocks;
    double load_ms;             /* wall time of cllm_model_load */
    double weights_ms;          /* part of it spent loading/uploading weights */
};

/* Borrowed views. */
const cllm_model_config *cllm_model_config_of(const cllm_model *m);
cllm_runner *cllm_model_runner(cllm_model *m);

/* Apply generation_config.json defaults (temperature, top_p, top_k, min_p)
 * to sp, as vLLM does before user overrides. */
void cllm_model_apply_generation_config(const cllm_model *m, cllm_sampling_params *sp);

/* Monotonic wall clock in milliseconds. */
double cllm_now_ms(void);

#endif
