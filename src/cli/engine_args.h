/* The engine arguments every model-running command shares (vLLM's
 * EngineArgs): parsed once here for generate, bench latency / throughput
 * and serve, with vLLM's flag names. */
#ifndef CLLM_CLI_ENGINE_ARGS_H
#define CLLM_CLI_ENGINE_ARGS_H

#include "cllm.h"
#include <stdbool.h>
#include <stdio.h>

typedef struct cllm_engine_args {
    cllm_engine_params p;         /* cllm_engine_default_params(), then the flags */
    bool max_num_seqs_set;        /* given on the command line */
    bool max_num_batched_tokens_set;
} cllm_engine_args;

void cllm_engine_args_init(cllm_engine_args *a);

/* If argv[*i] is an engine flag, consume it (and its value, advancing *i)
 * into a and return 1; return 0 if it is not one; -1 after printing a
 * message naming the flag when its value is missing or out of range. */
int cllm_engine_args_parse(cllm_engine_args *a, int argc, char **argv, int *i);

/* The engine flags, for the commands' --help. */
void cllm_engine_args_usage(FILE *f);

#endif
