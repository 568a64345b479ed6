/* cllm router: an OpenAI-compatible front over `cllm serve` replicas
 * (data parallelism), as sglang-router and vLLM's router are.
 *
 * Requests on POST /v1/completions, /v1/chat/completions, /tokenize,
 * /detokenize and GET /v1/models, /tokenizer_info, /version go to one
 * replica chosen by the policy (router_policy.h) and come back as the
 * replica sent them: JSON bodies whole, event streams event by event. The
 * router answers /health (200 while any replica is healthy, with every
 * replica's state as JSON), /metrics (Prometheus: per-replica requests,
 * failures, retries, latency histograms, health) and /v1/distributed/stats
 * (its own counters, each replica's health and each replica's
 * /v1/distributed/stats).
 *
 * Health: every health_check_interval_s each replica's /health is polled
 * (health_check_timeout_s); a failing replica leaves the rotation, a
 * passing one comes back (a replica out of the rotation is polled every
 * min(interval, 1 s)). A request that could not reach its replica, or got
 * a 5xx, before any byte went to the client, is retried on another replica,
 * up to max_rpc_retries times while it is younger than rpc_timeout_s. A
 * stream whose replica dies mid-way ends with an OpenAI error event and
 * "data: [DONE]". A replica whose health check cannot connect (a dead
 * process), or times out while none of its transfers received a byte within
 * the timeout (a hung one), has its requests failed the same way at once.
 *
 * Data parallelism on one node (cllm serve --data-parallel-size N): the
 * router starts the N replicas itself (router_dp.c: child `cllm serve`
 * processes on loopback sockets it keeps, so a restarted replica has the
 * same address; GPUs [i*per, (i+1)*per) through CUDA_VISIBLE_DEVICES), a
 * replica that exits is restarted with exponential backoff and reported,
 * and the replicas die with the router.
 *
 * Threads: one loop thread (libuv) runs the front door (server/http_conn.h,
 * shared with cllm serve), every upstream transfer (libcurl's multi
 * interface on the same loop, upstream.h), the health checks and the
 * replicas' processes; libuv's worker pool computes prefix keys.
 */
#ifndef CLLM_ROUTER_ROUTER_H
#define CLLM_ROUTER_ROUTER_H

#include "cllm.h"
#include "router/router_policy.h"
#include "server/cors.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct cllm_router_params {
    const char *const *worker_urls; /* the replicas' base URLs ("http://host:port"; "host:port" is taken
                                     * as http); num_workers of them; none in data-parallel mode */
    int num_workers;
    cllm_router_policy policy;      /* default round_robin */
    const char *host;               /* default "127.0.0.1" */
    int port;                       /* default 8000; 0: a free port */
    const char *api_key;            /* clients must send it (401 otherwise) except on /health, /metrics;
                                     * forwarded to the replicas as the client sent it */
    double health_check_interval_s; /* default 10 (replicas out of the rotation: min(this, 1 s)) */
    double health_check_timeout_s;  /* default 5 */
    double load_poll_interval_s;    /* least_load / prefix_aware: each replica's /load; default 0.5 */
    int max_rpc_retries;            /* other replicas tried after a failure; default 3 */
    double rpc_timeout_s;           /* no retry starts once a request is this old; default 60 */
    int prefix_bytes;               /* prefix_aware: the prompt bytes hashed; default 256 */
    int balance_abs_threshold;      /* prefix_aware: fall back to least load beyond this imbalance; 32 */
    size_t max_body_bytes;          /* as cllm serve: default 32 MiB */
    int max_connections;            /* default 10000 */
    int max_connections_per_ip;     /* default 0 (none) */
    double timeout_keep_alive_s;    /* default 5 */
    double timeout_request_read_s;  /* default 30 */
    double shutdown_timeout_s;      /* grace period on SIGTERM; default 10 */
    srv_cors_params cors;           /* as cllm serve (server/cors.h) */
    /* data parallelism (cllm serve --data-parallel-size): the router starts the replicas */
    int data_parallel_size;         /* 0: none (worker_urls instead) */
    const char *const *replica_args; /* the `cllm serve` arguments every replica gets (model, engine
                                     * flags; not --host/--port), replica_argc of them, borrowed */
    int replica_argc;
    const char *exe;                /* the cllm program; NULL: /proc/self/exe */
    int gpus_per_replica;           /* > 0 (CUDA): replica i gets GPUs [i*g, (i+1)*g) through
                                     * CUDA_VISIBLE_DEVICES (of the inherited list, if set) */
} cllm_router_params;

cllm_router_params cllm_router_default_params(void);

typedef struct cllm_router cllm_router;

/* Check the params, bind, start the loop thread (and the replicas in
 * data-parallel mode). The caller has initialised libcurl
 * (curl_global_init, not thread-safe: once, from main) and cleans it up
 * after cllm_router_destroy. *out caller-owned (cllm_router_destroy). Errors:
 * CLLM_ERR_INVALID_ARG (a bad URL, flag value, not enough GPUs listed in
 * CUDA_VISIBLE_DEVICES), CLLM_ERR_IO (cannot bind), CLLM_ERR_OOM. */
cllm_status cllm_router_start(const cllm_router_params *params, cllm_router **out);
int cllm_router_port(const cllm_router *r);

/* Serve until *stop becomes nonzero (SIGTERM/SIGINT), then shut down: stop
 * accepting, let requests in flight finish for shutdown_timeout_s, end the
 * rest (streams with an error event and [DONE]), stop the replicas it
 * started. Returns CLLM_OK, or the error that stopped it (a data-parallel
 * replica that failed before it was ever healthy). */
cllm_status cllm_router_wait(cllm_router *r, volatile sig_atomic_t *stop);

/* NULL is a no-op. */
void cllm_router_destroy(cllm_router *r);

/* CUDA_VISIBLE_DEVICES of replica `replica` when each takes `per` GPUs:
 * entries [replica*per, (replica+1)*per) of `visible` (the parent's
 * comma-separated list), or of 0, 1, 2, ... when visible is NULL or empty.
 * Writes a NUL-terminated list into out. CLLM_ERR_INVALID_ARG when visible
 * lists too few devices (the message says how many are needed). */
cllm_status cllm_router_replica_devices(const char *visible, int replica, int per, char *out, size_t size);

#endif
