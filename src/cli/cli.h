/* Subcommands of the `cllm` program. Each returns the process exit code:
 * 0 success, 1 runtime failure (message printed), 2 usage error. */
#ifndef CLLM_CLI_H
#define CLLM_CLI_H

int cllm_cli_generate(int argc, char **argv);  /* cli/generate.c */
int cllm_cli_tokenize(int argc, char **argv);  /* cli/tokenize.c */
int cllm_cli_bench(int argc, char **argv);     /* cli/bench.c */
int cllm_cli_serve(int argc, char **argv);     /* cli/serve.c */
int cllm_cli_models(int argc, char **argv);    /* cli/models.c */

#endif
