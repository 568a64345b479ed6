/* The router's lifecycle (bind, the loop thread, graceful shutdown), its
 * routing on the request head and its own small routes (/health,
 * /metrics, /version); proxied routes go to router_proxy.c. */
#include "router/router_internal.h"

#include "core/status.h"
#include "server/http_request.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

cllm_router_params cllm_router_default_params(void) {
    cllm_router_params p = {0};
    p.policy = CLLM_ROUTER_ROUND_ROBIN;
    p.host = "127.0.0.1";
    p.port = 8000;
    p.health_check_interval_s = 10;
    p.health_check_timeout_s = 5;
    p.load_poll_interval_s = 0.5;
    p.max_rpc_retries = 3;
    p.rpc_timeout_s = 60;
    p.prefix_bytes = 256;
    p.balance_abs_threshold = 32;
    p.max_body_bytes = (size_t)32 << 20;
    p.max_connections = 10000;
    p.timeout_keep_alive_s = 5;
    p.timeout_request_read_s = 30;
    p.shutdown_timeout_s = 10;
    return p;
}

int cllm_router_port(const cllm_router *r) { return r ? r->http.port : 0; }

void rt_fail(cllm_router *r, const char *msg) {
    if (atomic_load(&r->failed)) return;
    snprintf(r->fail_msg, sizeof r->fail_msg, "%s", msg);
    atomic_store(&r->failed, true); /* after the message: the main thread reads it once it sees the flag */
}

char *rt_url(const rt_replica *rep, const char *path) {
    size_t a = strlen(rep->url), b = strlen(path);
    char *u = malloc(a + b + 1);
    if (!u) return NULL;
    memcpy(u, rep->url, a);
    memcpy(u + a, path, b + 1);
    return u;
}

/* ------------------------------------------------------------ routing */
static const srv_http_route ROUTES[RT_R_N] = {
    [RT_R_HEALTH] = {"/health", "GET", true, false},
    [RT_R_METRICS] = {"/metrics", "GET", true, false},
    [RT_R_DIST_STATS] = {"/v1/distributed/stats", "GET", false, false},
    [RT_R_MODELS] = {"/v1/models", "GET", false, false},
    [RT_R_COMPLETIONS] = {"/v1/completions", "POST", false, true},
    [RT_R_CHAT] = {"/v1/chat/completions", "POST", false, true},
    [RT_R_TOKENIZE] = {"/tokenize", "POST", false, false},
    [RT_R_DETOKENIZE] = {"/detokenize", "POST", false, false},
    [RT_R_VERSION] = {"/version", "GET", true, false},
    [RT_R_TOKENIZER_INFO] = {"/tokenizer_info", "GET", false, false},
};

static void send_json(srv_conn *c, int status, json_t *o) {
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    srv_respond(c, status, "application/json", body, strlen(body), status == 503 ? "Retry-After: 1\r\n" : NULL);
}

/* One replica's state, as /health and /v1/distributed/stats show it. */
json_t *rt_replica_json(const rt_replica *rep) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "url", json_string(rep->url));
    json_object_set_new(o, "healthy", json_boolean(rep->healthy));
    json_object_set_new(o, "in_flight", json_integer(rep->inflight));
    json_object_set_new(o, "running", rep->load_known ? json_integer(rep->running) : json_null());
    json_object_set_new(o, "waiting", rep->load_known ? json_integer(rep->waiting) : json_null());
    json_object_set_new(o, "requests", json_integer((json_int_t)rep->requests));
    json_object_set_new(o, "failures", json_integer((json_int_t)rep->failures));
    json_object_set_new(o, "retries", json_integer((json_int_t)rep->retries));
    json_object_set_new(o, "seconds_in_state", json_real(rt_now() - rep->changed_at));
    json_object_set_new(o, "last_error", rep->last_error[0] ? json_string(rep->last_error) : json_null());
    if (rep->child) {
        int pid = rt_dp_pid(rep);
        json_object_set_new(o, "pid", pid > 0 ? json_integer(pid) : json_null());
        json_object_set_new(o, "restarts", json_integer(rt_dp_restarts(rep)));
    }
    return o;
}

/* 200 while any replica is healthy (and the router is not shutting down),
 * else 503 with an OpenAI error beside the same listing. */
static void route_health(cllm_router *r, srv_conn *c) {
    json_t *list = json_array();
    int healthy = 0;
    for (int i = 0; i < r->n_reps; i++) {
        healthy += r->reps[i].healthy;
        json_array_append_new(list, rt_replica_json(&r->reps[i]));
    }
    bool draining = atomic_load(&r->http.draining);
    bool ok = healthy > 0 && !draining;
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:o}", "status", ok ? "healthy" : "unhealthy", "policy",
                          cllm_router_policy_name(r->p.policy), "healthy_replicas", healthy, "replicas", r->n_reps,
                          "replica_states", list ? list : json_array());
    if (o && !ok) {
        cllm_openai_error err;
        cllm_openai_error_set(&err, 503, "service_unavailable", NULL, "%s",
                              draining ? "the router is shutting down" : "no replica is healthy");
        char *e = cllm_openai_format_error(&err);
        json_t *ej = e ? json_loads(e, 0, NULL) : NULL;
        free(e);
        if (ej) json_object_set(o, "error", json_object_get(ej, "error"));
        json_decref(ej);
    }
    send_json(c, ok ? 200 : 503, o);
}

static void dispatch(srv_http *h, srv_conn *c, cllm_http_request *req, int rt) {
    cllm_router *r = h->owner;
    switch (rt) {
    case RT_R_HEALTH: route_health(r, c); return;
    case RT_R_METRICS: {
        size_t n = 0;
        char *t = rt_metrics_render(r, &n);
        if (!t) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
        srv_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", t, n, NULL);
        return;
    }
    case RT_R_DIST_STATS: rt_stats_start(r, c, cllm_http_request_header(req, "Authorization", NULL)); return;
    default: rt_proxy_start(r, c, req, rt); return;
    }
}

static void exited(srv_http *h) {
    cllm_router *r = h->owner;
    if (!r->wake_closed) {
        uv_close((uv_handle_t *)&r->wake, NULL);
        r->wake_closed = true;
    }
}

static const srv_http_ops HTTP_OPS = {.dispatch = dispatch, .exited = exited};

/* ------------------------------------------------------------ the loop thread */
static void on_wake(uv_async_t *a) {
    cllm_router *r = a->data;
    int cmd = atomic_exchange(&r->cmd, 0);
    if (cmd & RT_CMD_DRAIN) srv_conn_drain_all(&r->http);
    if (cmd & RT_CMD_STOP) srv_conn_stop_all(&r->http);
    if (cmd & RT_CMD_EXIT) { /* every user of the transfers first, then the client itself */
        rt_health_stop(r);
        srv_conn_close_all(&r->http); /* tasks still attached are closed (their transfers cancelled); the wake
                                       * handle closes once no connection is left (exited) */
        rt_proxy_cancel_all(r);
        if (r->dp) rt_dp_stop(r); /* the replicas' handles close once they exited */
        rt_curl_destroy(r->curl);
        r->curl = NULL;
    }
}

static void *loop_main(void *arg) {
    cllm_router *r = arg;
    pthread_setname_np(pthread_self(), "cllm-router");
    if (r->dp) rt_dp_spawn_all(r);
    rt_health_start(r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void send_cmd(cllm_router *r, int cmd) {
    atomic_fetch_or(&r->cmd, cmd);
    uv_async_send(&r->wake);
}

/* ------------------------------------------------------------ lifecycle */
/* "host:port" -> "http://host:port"; no trailing '/'; checked by curl's URL parser. */
static cllm_status normalize_url(const char *in, char **out) {
    size_t n = strlen(in);
    while (n && in[n - 1] == '/') n--;
    bool scheme = strstr(in, "://") != NULL;
    char *u = malloc(n + 8);
    if (!u) return cllm_error(CLLM_ERR_OOM, "out of memory");
    snprintf(u, n + 8, "%s%.*s", scheme ? "" : "http://", (int)n, in);
    CURLU *h = curl_url();
    CURLUcode uc = h ? curl_url_set(h, CURLUPART_URL, u, 0) : CURLUE_OUT_OF_MEMORY;
    char *sch = NULL, *path = NULL;
    if (uc == CURLUE_OK) uc = curl_url_get(h, CURLUPART_SCHEME, &sch, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(h, CURLUPART_PATH, &path, 0);
    bool ok = uc == CURLUE_OK && (!strcmp(sch, "http") || !strcmp(sch, "https")) && (!strcmp(path, "/") || !path[0]);
    curl_free(sch);
    curl_free(path);
    curl_url_cleanup(h);
    if (!ok) {
        free(u);
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "--worker-urls: '%s' is not a replica's base URL (http://HOST:PORT, no path)", in);
    }
    *out = u;
    return CLLM_OK;
}

static cllm_status check_params(const cllm_router_params *p) {
    if (p->port < 0 || p->port > 65535) return cllm_error(CLLM_ERR_INVALID_ARG, "--port %d is out of range 0..65535", p->port);
    if (p->data_parallel_size <= 0 && p->num_workers <= 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "no replicas: give --worker-urls URL [URL...]");
    if (p->data_parallel_size > 0 && p->num_workers > 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--worker-urls and --data-parallel-size exclude each other");
    if (p->num_workers > 1024 || p->data_parallel_size > 1024)
        return cllm_error(CLLM_ERR_INVALID_ARG, "at most 1024 replicas");
    if (!(p->health_check_interval_s > 0) || !(p->health_check_timeout_s > 0) || !(p->load_poll_interval_s > 0))
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "--health-check-interval, --health-check-timeout and --load-poll-interval must be > 0");
    if (p->max_rpc_retries < 0 || !(p->rpc_timeout_s >= 0))
        return cllm_error(CLLM_ERR_INVALID_ARG, "--max-rpc-retries and --rpc-timeout must be >= 0");
    if (p->prefix_bytes < 1 || p->balance_abs_threshold < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--prefix-bytes must be >= 1 and --balance-abs-threshold >= 0");
    if (!(p->timeout_keep_alive_s > 0) || !(p->timeout_request_read_s > 0))
        return cllm_error(CLLM_ERR_INVALID_ARG, "--timeout-keep-alive and --timeout-request-read must be > 0");
    return CLLM_OK;
}

static cllm_status init_replicas(cllm_router *r) {
    int n = r->p.data_parallel_size > 0 ? r->p.data_parallel_size : r->p.num_workers;
    r->reps = calloc((size_t)n, sizeof *r->reps);
    if (!r->reps) return cllm_error(CLLM_ERR_OOM, "out of memory");
    r->n_reps = n;
    double now = rt_now();
    for (int i = 0; i < n; i++) {
        r->reps[i].router = r;
        r->reps[i].changed_at = now;
        snprintf(r->reps[i].last_error, sizeof r->reps[i].last_error, "not checked yet");
    }
    if (r->p.data_parallel_size > 0) CLLM_TRY(rt_dp_create(r)); /* the URLs of the sockets it binds */
    else
        for (int i = 0; i < n; i++) CLLM_TRY(normalize_url(r->p.worker_urls[i], &r->reps[i].url));
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(r->reps[i].url, r->reps[j].url))
                return cllm_error(CLLM_ERR_INVALID_ARG, "--worker-urls lists %s twice", r->reps[i].url);
        if (!(r->reps[i].label = cllm_metrics_escape_label(r->reps[i].url)))
            return cllm_error(CLLM_ERR_OOM, "out of memory");
        r->reps[i].id = XXH3_64bits(r->reps[i].url, strlen(r->reps[i].url));
    }
    return CLLM_OK;
}

cllm_status cllm_router_start(const cllm_router_params *params, cllm_router **out) {
    *out = NULL;
    if (!params) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_router_start: NULL params");
    CLLM_TRY(check_params(params));
    cllm_router *r = calloc(1, sizeof *r);
    if (!r) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = CLLM_OK;
    r->p = *params;
    r->host = strdup(params->host ? params->host : "127.0.0.1");
    r->api_key = params->api_key && params->api_key[0] ? strdup(params->api_key) : NULL;
    if (!r->host || (params->api_key && params->api_key[0] && !r->api_key)) {
        st = cllm_error(CLLM_ERR_OOM, "out of memory");
        goto fail;
    }
    CLLM_TRY_GOTO(st, srv_cors_init(&r->cors, &params->cors), fail);
    r->http.cors = &r->cors;
    r->p.host = r->host;
    r->p.api_key = r->api_key;
    if (!r->p.max_body_bytes) r->p.max_body_bytes = (size_t)32 << 20;
    CLLM_TRY_GOTO(st, init_replicas(r), fail);
    if (uv_loop_init(&r->loop)) {
        st = cllm_error(CLLM_ERR_OOM, "cannot create the event loop");
        goto fail;
    }
    r->loop_init = true;
    uv_async_init(&r->loop, &r->wake, on_wake);
    r->wake.data = r;
    CLLM_TRY_GOTO(st, rt_curl_create(&r->loop, &r->curl), fail);
    r->http.ops = &HTTP_OPS;
    r->http.owner = r;
    r->http.loop = &r->loop;
    r->http.timeout_keep_alive_s = r->p.timeout_keep_alive_s;
    r->http.timeout_request_read_s = r->p.timeout_request_read_s;
    r->http.max_connections_per_ip = r->p.max_connections_per_ip;
    r->http.routes = ROUTES; /* route, method, API key, draining, body size: decided on the head (http_conn.h) */
    r->http.n_routes = RT_R_N;
    r->http.api_key = r->api_key;
    r->http.max_body_bytes = r->p.max_body_bytes;
    r->http.who = "router";
    srv_http_fit_fd_limit(&r->http, r->p.max_connections);
    CLLM_TRY_GOTO(st, srv_http_listen(&r->http, r->host, r->p.port, -1), fail);
    if (pthread_create(&r->loop_thread, NULL, loop_main, r)) {
        st = cllm_error(CLLM_ERR_OOM, "cannot start the router's loop thread");
        goto fail;
    }
    r->loop_thread_started = true;
    *out = r;
    return CLLM_OK;
fail:
    cllm_router_destroy(r);
    return st;
}

static void shutdown_router(cllm_router *r, double grace_s) {
    if (!r->loop_thread_started) return;
    atomic_store(&r->http.draining, true);
    send_cmd(r, RT_CMD_DRAIN); /* no new connections; /health and new requests: 503 */
    double deadline = rt_now() + grace_s;
    while (atomic_load(&r->inflight) > 0 && rt_now() < deadline) usleep(20 * 1000);
    int left = atomic_load(&r->inflight);
    if (left > 0) cllm_log(CLLM_LOG_WARN, "router shutdown: ending %d request(s) still running after %.1f s", left, grace_s);
    send_cmd(r, RT_CMD_STOP);
    for (int i = 0; i < 100 && atomic_load(&r->inflight) > 0; i++) usleep(10 * 1000);
    send_cmd(r, RT_CMD_EXIT); /* health checks, transfers, replicas, connections: the loop ends */
    pthread_join(r->loop_thread, NULL);
    r->loop_thread_started = false;
}

cllm_status cllm_router_wait(cllm_router *r, volatile sig_atomic_t *stop) {
    while (!*stop && !atomic_load(&r->failed)) usleep(50 * 1000);
    if (atomic_load(&r->failed)) {
        cllm_status st = cllm_error(CLLM_ERR_IO, "%s", r->fail_msg);
        shutdown_router(r, 0);
        return st;
    }
    cllm_log(CLLM_LOG_INFO, "router shutting down (grace period %.1f s)", r->p.shutdown_timeout_s);
    shutdown_router(r, r->p.shutdown_timeout_s);
    return CLLM_OK;
}

static void close_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void cllm_router_destroy(cllm_router *r) {
    if (!r) return;
    shutdown_router(r, 0);
    if (r->loop_init) {
        if (r->curl) { /* the loop thread never ran */
            rt_curl_destroy(r->curl);
            r->curl = NULL;
        }
        uv_walk(&r->loop, close_handle, NULL);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
    }
    if (r->dp) rt_dp_destroy(r);
    srv_http_free(&r->http);
    for (int i = 0; r->reps && i < r->n_reps; i++) {
        free(r->reps[i].url);
        free(r->reps[i].label);
    }
    free(r->reps);
    free(r->host);
    free(r->api_key);
    srv_cors_free(&r->cors);
    free(r);
}
