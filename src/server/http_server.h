/* The OpenAI-compatible HTTP server (libmicrohttpd) on top of the
 * continuous-batching engine (include/cllm.h, section "engine").
 *
 * Routes: POST /v1/completions, POST /v1/chat/completions (JSON or SSE
 * streaming), GET /v1/models, GET /health (200 ready, 503 while loading),
 * GET /metrics (Prometheus), POST /tokenize, POST /detokenize. With an API
 * key every route except /health and /metrics needs
 * "Authorization: Bearer KEY" (401 otherwise). Errors are OpenAI error
 * bodies (server/openai_protocol.h) with the matching status.
 *
 * Threads: MHD runs one thread per connection; one engine thread owns the
 * engine. A client that disconnects aborts its request (KV blocks freed).
 * Sources followed: vLLM's entrypoints/openai/api_server.py (routes,
 * health, metrics, errors), the OpenAI API reference (bodies, SSE).
 */
#ifndef CLLM_SERVER_HTTP_SERVER_H
#define CLLM_SERVER_HTTP_SERVER_H

#include "cllm.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cllm_server_params {
    cllm_engine_params engine;     /* model, device, max_model_len, max_num_seqs, ... */
    const char *host;              /* bind address; default "127.0.0.1" */
    int port;                      /* default 8000; 0 picks a free port (logged) */
    const char *api_key;           /* NULL: no authentication */
    const char *served_model_name; /* NULL: engine.model.model */
    size_t max_body_bytes;         /* larger request bodies -> 413; default 32 MiB */
    int max_connections;           /* MHD connection limit; default 1024 */
    int max_inflight_requests;     /* generate requests admitted at once (running +
                                    * waiting); beyond -> 503 + Retry-After.
                                    * 0: max_num_seqs + engine.max_num_waiting */
    double shutdown_timeout_s;     /* grace period on SIGTERM/SIGINT; default 10 */
    bool enable_auto_tool_choice;  /* vLLM --enable-auto-tool-choice: parse tool calls out of
                                    * chat outputs (needs tool_call_parser); default false */
    const char *tool_call_parser;  /* vLLM --tool-call-parser: "hermes", "llama3_json",
                                    * "mistral" (server/tool_parser.h); NULL: none */
} cllm_server_params;

cllm_server_params cllm_server_default_params(void);

typedef struct cllm_server cllm_server;

/* Bind the socket and start serving: /health answers 503 while the engine
 * thread loads the model, 200 once ready. *out is caller-owned
 * (cllm_server_destroy). Errors: CLLM_ERR_INVALID_ARG (bad host/params),
 * CLLM_ERR_IO (cannot bind: port in use, permission), CLLM_ERR_OOM.
 * enable_auto_tool_choice without tool_call_parser, or an unknown parser
 * name, is CLLM_ERR_INVALID_ARG (the message says what to add / lists the
 * valid names). */
cllm_status cllm_server_start(const cllm_server_params *params, cllm_server **out);

/* The bound TCP port (useful with port 0). */
int cllm_server_port(const cllm_server *s);

/* Block until *stop becomes nonzero (set it from a SIGTERM/SIGINT handler)
 * or the model fails to load. Then shut down gracefully: stop accepting,
 * let in-flight requests finish for up to shutdown_timeout_s, abort the rest.
 * Returns CLLM_OK after a requested stop, or the load error. */
cllm_status cllm_server_wait(cllm_server *s, volatile sig_atomic_t *stop);

/* Stop (aborting whatever is left) and free. NULL is a no-op. */
void cllm_server_destroy(cllm_server *s);

#ifdef __cplusplus
}
#endif
#endif
