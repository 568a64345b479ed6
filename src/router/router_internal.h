/* Internals shared by the router's files (router.h):
 *   router.c          lifecycle (bind, loop thread, shutdown), routing on the head, /health
 *   router_proxy.c    proxied requests: replica choice, upstream transfer, retries, streaming
 *   router_health.c   health checks, load polls, the /v1/distributed/stats fan-out
 *   router_metrics.c  per-replica counters and histograms, /metrics
 *   router_dp.c       data-parallel replicas started by the router (cllm serve --data-parallel-size)
 *   upstream.c        libcurl's multi interface on the loop
 * Everything below is touched by the loop thread only, except the atomics.
 */
#ifndef CLLM_ROUTER_INTERNAL_H
#define CLLM_ROUTER_INTERNAL_H

#include "core/clock.h"
#include "router/router.h"
#include "router/upstream.h"
#include "server/http_conn.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum { RT_CMD_DRAIN = 1, RT_CMD_STOP = 2, RT_CMD_EXIT = 4 };

/* The routes (router.c's table). */
enum { RT_R_HEALTH, RT_R_METRICS, RT_R_DIST_STATS, RT_R_MODELS, RT_R_COMPLETIONS, RT_R_CHAT, RT_R_TOKENIZE,
       RT_R_DETOKENIZE, RT_R_VERSION, RT_R_TOKENIZER_INFO, RT_R_N };

#define RT_HIST_BUCKETS 21
typedef struct rt_hist {
    uint64_t counts[RT_HIST_BUCKETS + 1]; /* per bucket (not cumulative); last: beyond every bound */
    double sum;
    uint64_t count;
} rt_hist;
void rt_hist_observe(rt_hist *h, double seconds);

struct rt_child;
typedef struct rt_replica {
    struct cllm_router *router; /* its router (the health and load checks' callbacks get the replica) */
    char *url;                /* base URL without a trailing '/', owned */
    char *label;              /* url escaped as a Prometheus label value, owned */
    uint64_t id;              /* hash of url: its prefix-aware weight seed */
    bool healthy;             /* in the rotation */
    bool ever_healthy;
    double changed_at;        /* rt_now() of the last health change */
    char last_error[300];     /* why it is out ("" while healthy) */
    rt_fetch *health_fetch, *load_fetch; /* in flight, or NULL */
    double checked_at;        /* rt_now() of the last health check started */
    bool load_known;
    int running, waiting;     /* its last /load */
    int inflight;             /* the router's requests there now */
    double last_rx;           /* rt_now() when a transfer there last received bytes (0: never) */
    uint64_t requests, failures, retries, health_failures;
    rt_hist latency, ttfb;    /* successful attempts: start -> last byte; start -> first byte */
    struct rt_child *child;   /* data-parallel: its process (router_dp.c), else NULL */
} rt_replica;

struct rt_proxy;
struct rt_dp;

struct cllm_router {
    cllm_router_params p;
    char *host, *api_key;          /* owned copies */
    srv_cors cors;                 /* p.cors parsed (http.cors points here) */
    uv_loop_t loop;
    bool loop_init;
    srv_http http;                 /* the front door; http.draining: shutting down */
    uv_async_t wake;               /* main thread -> loop (cmd) */
    bool wake_closed;
    atomic_int cmd;                /* RT_CMD_* */
    pthread_t loop_thread;
    bool loop_thread_started;
    rt_curl *curl;
    rt_replica *reps;              /* (n_reps) */
    int n_reps;
    unsigned rr, rr_any;           /* the policy's round-robin counter; other routes' */
    uv_timer_t health_timer, load_timer;
    bool timers_on;
    struct rt_proxy *proxies;      /* live proxied requests (list) */
    atomic_int inflight;           /* proxied requests not yet answered (any thread reads) */
    uint64_t unrouted;             /* answered 503: no healthy replica */
    struct rt_dp *dp;              /* data-parallel replicas, or NULL */
    atomic_bool failed;            /* a fatal error (dp: a replica failed to start): fail_msg */
    char fail_msg[600];
};

/* Monotonic seconds (core/clock.h). */
static inline double rt_now(void) { return cllm_now_ms() * 1e-3; }
/* A fatal error (loop thread): the first message is kept, cllm_router_wait returns it. */
void rt_fail(cllm_router *r, const char *msg);

/* Health (router_health.c). A replica enters or leaves the rotation (logged
 * on change); a dead or hung one (connection refused, timed out) also has
 * its requests in flight failed (retried or ended). */
void rt_replica_set_health(cllm_router *r, rt_replica *rep, bool healthy, bool dead, const char *why);
void rt_health_start(cllm_router *r);
void rt_health_stop(cllm_router *r);         /* timers and fetches */
void rt_health_check_now(cllm_router *r, rt_replica *rep);
/* GET /v1/distributed/stats: every replica's, gathered; auth: the client's header (borrowed). */
void rt_stats_start(cllm_router *r, srv_conn *c, const char *auth);

/* Proxying (router_proxy.c). */
void rt_proxy_start(cllm_router *r, srv_conn *c, struct cllm_http_request *req, int route);
/* The requests in flight on rep: retried elsewhere if nothing was sent to
 * their client yet, else ended with an error event. */
void rt_proxy_fail_replica(cllm_router *r, rt_replica *rep, const char *why);
void rt_proxy_cancel_all(cllm_router *r);    /* exit: cancel what is left (clients already answered) */

/* /metrics (router_metrics.c): caller-owned text (free()). */
char *rt_metrics_render(cllm_router *r, size_t *len);

/* Data parallelism (router_dp.c). */
cllm_status rt_dp_create(cllm_router *r);    /* the listening sockets: fills r->reps' URLs */
void rt_dp_spawn_all(cllm_router *r);        /* loop thread: start the replicas */
void rt_dp_stop(cllm_router *r);             /* loop thread: SIGTERM the replicas, SIGKILL after a while */
void rt_dp_destroy(cllm_router *r);          /* after the loop ended: close the sockets */
int rt_dp_pid(const rt_replica *rep);        /* 0: not running */
int rt_dp_restarts(const rt_replica *rep);

/* One replica's state as /health lists it (router.c). */
json_t *rt_replica_json(const rt_replica *rep);

/* The replica's URL + path: caller-owned (free()). */
char *rt_url(const rt_replica *rep, const char *path);

#endif
