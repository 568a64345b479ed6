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
int cllm_cli_router(int argc, char **argv);    /* cli/router.c */

#include "cllm.h"
#include "router/router.h"
#include "server/http_server.h"

#include <stdio.h>

/* The HTTP front's flags (cli/router.c), shared by `cllm serve` and `cllm
 * router`: --host, --port, --api-key, --max-body-bytes, --shutdown-timeout,
 * --max-connections, --max-connections-per-ip, --timeout-keep-alive,
 * --timeout-request-read. a: the flag, v: its value (already taken). 1 when
 * a was one (*ok set to 0 on a bad value, message printed), 0 when not. */
int cllm_cli_http_flag(cllm_server_params *p, const char *a, const char *v, int *ok);
/* Those fields of p into the router's params. */
void cllm_cli_router_front(cllm_router_params *rp, const cllm_server_params *p);

/* The router's flags (cli/router.c), shared by `cllm router` and `cllm
 * serve --data-parallel-size`: 1 when argv[*i] was one (its value taken),
 * 0 when not a router flag, -1 on a bad value (message printed). */
int cllm_cli_router_flag(cllm_router_params *p, int argc, char **argv, int *i);
void cllm_cli_router_usage(FILE *f);
/* Start the router, serve until SIGTERM/SIGINT; the exit code. what: the
 * command's name for messages ("cllm router"). */
int cllm_cli_router_run(const cllm_router_params *p, const char *what);

/* cllm generate --input prompts.jsonl (cli/generate_batch.c): one request
 * per line through the engine, one JSON result per line to output (NULL:
 * stdout). Returns 0, or 1 if a line or the engine failed. */
int cllm_cli_generate_jsonl(const cllm_engine_params *ep, const char *input, const char *output);

#endif
