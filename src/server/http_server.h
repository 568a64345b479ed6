/* The OpenAI-compatible HTTP server on top of the continuous-batching engine
 * (include/cllm.h, section "engine").
 *
 * Routes: POST /v1/completions, POST /v1/chat/completions (JSON or SSE
 * streaming), GET /v1/models, GET /health (200 ready, 503 while loading or
 * draining), GET /metrics (Prometheus), POST /tokenize, POST /detokenize,
 * GET /tokenizer_info, GET /version, GET /load (running and waiting
 * requests, KV usage: what cllm router's least_load polls), GET
 * /v1/distributed/stats (per rank and group the collectives, per rank the
 * MoE load, engine steps and KV usage; server_stats.c). With an API key
 * every route except /health, /metrics, /load and /version needs
 * "Authorization: Bearer KEY" (401 otherwise). Every error, the HTTP layer's own included, is an OpenAI error
 * body (server/openai_protocol.h) with the matching status.
 *
 * HTTP: event-driven (libuv + llhttp, server/http_request.h): one loop thread
 * holds every connection (--max-connections, default 10,000; the soft
 * RLIMIT_NOFILE is raised to fit), a small worker pool parses and tokenizes,
 * one engine thread owns the engine. Route, API key and size are decided on
 * the head before any body byte is kept. Idle connections close after
 * timeout_keep_alive_s; a request must arrive whole within
 * timeout_request_read_s (408). A client that disconnects aborts its request
 * (KV blocks freed) as soon as its socket reports it.
 * Sources followed: vLLM's entrypoints/openai/api_server.py (routes,
 * health, metrics, errors, tokenizer endpoints), the OpenAI API reference
 * (bodies, SSE), RFC 9110/9112 (HTTP semantics and message syntax).
 */
#ifndef CLLM_SERVER_HTTP_SERVER_H
#define CLLM_SERVER_HTTP_SERVER_H

#include "cllm.h"
#include "server/cors.h"

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
    int max_connections;           /* open connections at most (more get 503 and are closed);
                                    * default 10000; the soft fd limit is raised to fit */
    int max_connections_per_ip;    /* per client address (more get 429); 0: no limit (default) */
    double timeout_keep_alive_s;   /* vLLM --timeout-keep-alive: an idle connection closes after
                                    * this long without a new request; default 5 */
    double timeout_request_read_s; /* a request's head and body must arrive within this long
                                    * from its first byte, else 408 and close; default 30 */
    int max_inflight_requests;     /* generate requests admitted at once (running +
                                    * waiting); beyond -> 503 + Retry-After.
                                    * 0: max_num_seqs + engine.max_num_waiting */
    double shutdown_timeout_s;     /* grace period on SIGTERM/SIGINT; default 10 */
    bool enable_auto_tool_choice;  /* vLLM --enable-auto-tool-choice: parse tool calls out of
                                    * chat outputs (needs tool_call_parser); default false */
    const char *tool_call_parser;  /* vLLM --tool-call-parser: "hermes", "llama3_json",
                                    * "mistral" (server/tool_parser.h); NULL: none */
    srv_cors_params cors;          /* vLLM --allowed-origins / --allowed-methods / --allowed-headers /
                                    * --allow-credentials (server/cors.h); default: every origin, no credentials */
    int listen_fd;                 /* >= 0: serve on this inherited, listening socket instead of binding
                                    * host:port (a replica of cllm serve --data-parallel-size); default -1 */
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
 * answer /health and new requests with 503 on every connection, let
 * in-flight requests finish for up to shutdown_timeout_s; then every open
 * stream gets a final chunk per unfinished choice (finish_reason "abort"),
 * its usage chunk if asked, "data: [DONE]" and the end of its chunked body,
 * unfinished non-streaming requests their text so far (finish_reason
 * "abort"), and the connections close once their bytes are out.
 * Returns CLLM_OK after a requested stop, or the load error. */
cllm_status cllm_server_wait(cllm_server *s, volatile sig_atomic_t *stop);

/* Stop (aborting whatever is left) and free. NULL is a no-op. */
void cllm_server_destroy(cllm_server *s);

#ifdef __cplusplus
}
#endif
#endif
