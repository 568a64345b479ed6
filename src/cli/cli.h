/* Subcommands of the `cllm` program. Each returns the process exit code:
 * 0 success, 1 runtime failure (message printed), 2 usage error. */
#ifndef CLLM_CLI_H
#define CLLM_CLI_H

int cllm_cli_generate(int argc, char **argv);  /* cli/generate.c */
int cllm_cli_tokenize(int argc, char **argv);  /* cli/tokenize.c */
int cllm_cli_bench(int argc, char **argv);     /* cli/bench.c */
int cllm_cli_bench_serve(int argc, char **argv); /* cli/bench_serve.c: argv[1] is "serve" */
int cllm_cli_serve(int argc, char **argv);     /* cli/serve.c */
int cllm_cli_models(int argc, char **argv);    /* cli/models.c */

#include "cllm.h"
/* cllm generate --input prompts.jsonl (cli/generate_batch.c): one request
 * per line through the engine, one JSON result per line to output (NULL:
 * stdout). Returns 0, or 1 if a line or the engine failed. */
int cllm_cli_generate_jsonl(const cllm_engine_params *ep, const char *input, const char *output);

#endif
