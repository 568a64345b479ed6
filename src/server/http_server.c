/* HTTP server: lifecycle (bind, the loop and engine threads, graceful
 * shutdown) and routing: the route table, with which the front door
 * (http_conn.c) decides route, method, API key, body size and draining on
 * the request head before any body byte is kept; whole requests are
 * dispatched to server_routes.c and server_generate.c. */
#include "server/server_internal.h"

#include "core/status.h"
#include "server/http_request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

cllm_server_params cllm_server_default_params(void) {
    cllm_server_params p = {0};
    p.engine = cllm_engine_default_params();
    p.host = "127.0.0.1";
    p.port = 8000;
    p.max_body_bytes = (size_t)32 << 20;
    p.max_connections = 10000;
    p.timeout_keep_alive_s = 5.0;
    p.timeout_request_read_s = 30.0;
    p.shutdown_timeout_s = 10.0;
    p.listen_fd = -1;
    return p;
}

int cllm_server_port(const cllm_server *s) { return s ? s->http.port : 0; }

/* ------------------------------------------------------------ routing */
enum { R_HEALTH, R_METRICS, R_MODELS, R_COMPLETIONS, R_CHAT, R_TOKENIZE, R_DETOKENIZE, R_VERSION, R_TOKENIZER_INFO,
       R_LOAD, R_DIST_STATS, R_N };
static const srv_http_route ROUTES[R_N] = {
    [R_HEALTH] = {"/health", "GET", true, false},          [R_METRICS] = {"/metrics", "GET", true, false},
    [R_MODELS] = {"/v1/models", "GET", false, false},      [R_COMPLETIONS] = {"/v1/completions", "POST", false, true},
    [R_CHAT] = {"/v1/chat/completions", "POST", false, true}, [R_TOKENIZE] = {"/tokenize", "POST", false, false},
    [R_DETOKENIZE] = {"/detokenize", "POST", false, false}, [R_VERSION] = {"/version", "GET", true, false},
    [R_TOKENIZER_INFO] = {"/tokenizer_info", "GET", false, false}, [R_LOAD] = {"/load", "GET", true, false},
    [R_DIST_STATS] = {"/v1/distributed/stats", "GET", false, false},
};

static void send_version(srv_conn *c) {
    char *b = strdup("{\"version\":\"" CLLM_VERSION "\"}");
    if (!b) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    srv_respond(c, 200, "application/json", b, strlen(b), NULL);
}

/* A whole request arrived on ROUTES[r]: answer it (now or later through a srv_task). */
static void dispatch_cb(srv_http *h, srv_conn *c, cllm_http_request *req, int r) {
    cllm_server *s = h->owner;
    if (r == R_METRICS) { srv_route_metrics(s, c); return; }
    if (r == R_VERSION) { send_version(c); return; }
    if (r == R_HEALTH) { srv_route_health(s, c); return; }
    if (r == R_LOAD) { srv_route_load(s, c); return; }
    if (r == R_DIST_STATS) { srv_route_dist_stats(s, c); return; }
    int state = atomic_load(&s->state);
    if (state != SRV_READY) {
        if (state == SRV_FAILED) srv_respond_errorf(c, 503, "service_unavailable", NULL, "%s", s->load_error);
        else srv_respond_errorf(c, 503, "service_unavailable", NULL, "the model is loading; retry later");
        return;
    }
    if (r == R_MODELS) { srv_route_models(s, c); return; }
    if (r == R_TOKENIZER_INFO) { srv_route_tokenizer_info(s, c); return; }
    /* the body moves to the handler; the request keeps no pointer to it */
    char *body = req->body;
    size_t len = req->body_len;
    if (!body && !(body = calloc(1, 1))) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    req->body = NULL;
    req->body_len = req->body_cap = 0;
    switch (r) {
    case R_TOKENIZE: srv_route_tokenize(s, c, body, len, false); return;
    case R_DETOKENIZE: srv_route_tokenize(s, c, body, len, true); return;
    case R_COMPLETIONS: srv_generate_start(s, c, CLLM_OPENAI_COMPLETION, body, len); return;
    case R_CHAT: srv_generate_start(s, c, CLLM_OPENAI_CHAT, body, len); return;
    default: free(body); srv_respond_errorf(c, 500, "internal_error", NULL, "unrouted request"); return;
    }
}

/* ------------------------------------------------------------ the loop thread */
static void on_wake(uv_async_t *a) {
    cllm_server *s = a->data;
    int cmd = atomic_exchange(&s->cmd, 0);
    if (cmd & SRV_CMD_DRAIN) srv_conn_drain_all(&s->http);
    /* jobs with new events: unlinked under the lock (the engine thread may
     * queue a job again as soon as it is off the list) */
    pthread_mutex_lock(&s->ready_mu);
    int n = 0;
    for (srv_job *k = s->ready_head; k; k = k->ready_next) n++;
    if (n > s->cap_woken) {
        srv_job **w = realloc(s->woken, (size_t)n * 2 * sizeof *w);
        if (w) { s->woken = w; s->cap_woken = n * 2; }
    }
    int taken = 0;
    while (s->ready_head && taken < s->cap_woken) {
        srv_job *k = s->ready_head;
        s->ready_head = k->ready_next;
        k->ready_next = NULL;
        k->ready_queued = false;
        s->woken[taken++] = k;
    }
    if (!s->ready_head) s->ready_tail = NULL;
    bool more = s->ready_head != NULL; /* out of memory for the array: the rest next time */
    pthread_mutex_unlock(&s->ready_mu);
    for (int i = 0; i < taken; i++) {
        srv_job *j = s->woken[i];
        srv_task *t = j->task;
        if (t && t->ops->writable) t->ops->writable(t);
        srv_job_unref(j);
    }
    if (more) uv_async_send(&s->wake);
    if (cmd & SRV_CMD_STOP) srv_conn_stop_all(&s->http);
    if (cmd & SRV_CMD_EXIT) srv_conn_close_all(&s->http);
}

static void *loop_main(void *arg) {
    cllm_server *s = arg;
    pthread_setname_np(pthread_self(), "cllm-http"); /* top -H, /proc/PID/task/TID/comm */
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void send_cmd(cllm_server *s, int cmd) {
    atomic_fetch_or(&s->cmd, cmd);
    uv_async_send(&s->wake);
}

void srv_job_notify(cllm_server *s, srv_job *j) {
    pthread_mutex_lock(&s->ready_mu);
    if (!j->ready_queued) {
        j->ready_queued = true;
        pthread_mutex_lock(&j->mu);
        j->refs++;
        pthread_mutex_unlock(&j->mu);
        if (s->ready_tail) s->ready_tail->ready_next = j;
        else s->ready_head = j;
        s->ready_tail = j;
    }
    pthread_mutex_unlock(&s->ready_mu);
    uv_async_send(&s->wake);
}

/* ------------------------------------------------------------ lifecycle */
static void noop_work(uv_work_t *w) { (void)w; }
static void noop_done(uv_work_t *w, int status) {
    (void)status;
    free(w);
}

static void connections_cb(srv_http *h, int n) {
    cllm_server *s = h->owner;
    cllm_metrics_set_http_connections(s->metrics, n);
}
static void exited_cb(srv_http *h) {
    cllm_server *s = h->owner;
    if (!s->wake_closed) {
        uv_close((uv_handle_t *)&s->wake, NULL);
        s->wake_closed = true;
    }
}
static const srv_http_ops HTTP_OPS = {.dispatch = dispatch_cb, .connections = connections_cb, .exited = exited_cb};

static cllm_status start_loop(cllm_server *s) {
    if (uv_loop_init(&s->loop)) return cllm_error(CLLM_ERR_OOM, "cannot create the event loop");
    s->loop_init = true;
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    CLLM_TRY(srv_http_listen(&s->http, s->host, s->p.port, s->p.listen_fd));
    uv_work_t *w = malloc(sizeof *w); /* start the worker pool now: the thread count is fixed from here on */
    if (w && uv_queue_work(&s->loop, w, noop_work, noop_done)) free(w);
    return CLLM_OK;
}

cllm_status cllm_server_start(const cllm_server_params *params, cllm_server **out) {
    *out = NULL;
    if (!params || !params->engine.model.model)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_server_start: a model (--model) is required");
    if (params->port < 0 || params->port > 65535)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--port %d is out of range 0..65535", params->port);
    if (params->timeout_keep_alive_s <= 0 || params->timeout_request_read_s <= 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--timeout-keep-alive and --timeout-request-read must be > 0");
    cllm_tool_parser_kind tool_parser = CLLM_TOOL_PARSER_NONE;
    if (params->tool_call_parser && cllm_tool_parser_from_name(params->tool_call_parser, &tool_parser) != CLLM_OK)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--tool-call-parser '%s' is not known: valid parsers are %s",
                          params->tool_call_parser, cllm_tool_parser_names());
    if (params->enable_auto_tool_choice && !tool_parser)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--enable-auto-tool-choice needs a parser: add --tool-call-parser "
                                                "NAME (one of %s) matching the model's tool-call format",
                          cllm_tool_parser_names());
    cllm_server *s = calloc(1, sizeof *s);
    if (!s) return cllm_error(CLLM_ERR_OOM, "out of memory");
    s->tool_parser = (int)tool_parser;
    cllm_status st = CLLM_OK;
    s->p = *params;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->ready_mu, NULL);
    srv_stats_init(&s->stats);
    s->host = strdup(params->host ? params->host : "127.0.0.1");
    s->model_root = strdup(params->engine.model.model);
    s->served_model_name = strdup(params->served_model_name ? params->served_model_name : params->engine.model.model);
    s->api_key = params->api_key && params->api_key[0] ? strdup(params->api_key) : NULL;
    if (!s->host || !s->model_root || !s->served_model_name || (params->api_key && params->api_key[0] && !s->api_key)) {
        st = cllm_error(CLLM_ERR_OOM, "out of memory");
        goto fail;
    }
    CLLM_TRY_GOTO(st, srv_cors_init(&s->cors, &params->cors), fail);
    s->http.cors = &s->cors;
    s->p.host = s->host;
    s->p.api_key = s->api_key;
    s->p.served_model_name = s->served_model_name;
    s->p.engine.model.model = s->model_root;
    if (!s->p.max_body_bytes) s->p.max_body_bytes = (size_t)32 << 20;
    s->http.ops = &HTTP_OPS;
    s->http.owner = s;
    s->http.loop = &s->loop;
    s->http.timeout_keep_alive_s = s->p.timeout_keep_alive_s;
    s->http.timeout_request_read_s = s->p.timeout_request_read_s;
    s->http.max_connections_per_ip = s->p.max_connections_per_ip;
    s->http.routes = ROUTES;
    s->http.n_routes = R_N;
    s->http.api_key = s->api_key;
    s->http.max_body_bytes = s->p.max_body_bytes;
    s->http.who = "server";
    s->limits = cllm_openai_default_limits();
    s->limits.max_body_bytes = s->p.max_body_bytes;
    int waiting = s->p.engine.max_num_waiting > 0 ? s->p.engine.max_num_waiting : 4096;
    s->max_num_waiting = waiting;
    s->max_inflight = s->p.max_inflight_requests > 0 ? s->p.max_inflight_requests
                                                     : s->p.engine.max_num_seqs + waiting;
    s->created = (int64_t)time(NULL);
    CLLM_TRY_GOTO(st, cllm_metrics_create(s->served_model_name, &s->metrics), fail);
    srv_http_fit_fd_limit(&s->http, s->p.max_connections);
    CLLM_TRY_GOTO(st, start_loop(s), fail);
    if (pthread_create(&s->loop_thread, NULL, loop_main, s)) {
        st = cllm_error(CLLM_ERR_OOM, "cannot start the HTTP loop thread");
        goto fail;
    }
    s->loop_thread_started = true;
    if (pthread_create(&s->engine_thread, NULL, srv_engine_main, s)) {
        st = cllm_error(CLLM_ERR_OOM, "cannot start the engine thread");
        goto fail;
    }
    s->engine_thread_started = true;
    *out = s;
    return CLLM_OK;
fail:
    cllm_server_destroy(s);
    return st;
}

static void stop_engine(cllm_server *s) {
    pthread_mutex_lock(&s->mu);
    s->exit_engine = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->engine_thread_started) {
        pthread_join(s->engine_thread, NULL);
        s->engine_thread_started = false;
    }
}

static void shutdown_server(cllm_server *s, double grace_s) {
    if (!s->loop_thread_started) {
        stop_engine(s);
        return;
    }
    if (atomic_load(&s->state) == SRV_FAILED)
        s->http.drain_reason = "the model failed to load; the server is shutting down";
    atomic_store(&s->http.draining, true);
    send_cmd(s, SRV_CMD_DRAIN); /* no new connections; /health and new requests: 503 */
    double deadline = srv_now() + grace_s;
    while (atomic_load(&s->inflight) > 0 && srv_now() < deadline) usleep(20 * 1000);
    int left = atomic_load(&s->inflight);
    if (left > 0)
        cllm_log(CLLM_LOG_WARN, "shutdown: aborting %d request(s) still running after %.1f s", left, grace_s);
    send_cmd(s, SRV_CMD_STOP); /* streams end with "abort" + [DONE]; other requests answer what they have */
    for (int i = 0; i < 100 && atomic_load(&s->inflight) > 0; i++) usleep(10 * 1000);
    stop_engine(s);
    send_cmd(s, SRV_CMD_EXIT); /* close the connections once their bytes are out; the loop ends */
    pthread_join(s->loop_thread, NULL);
    s->loop_thread_started = false;
}

cllm_status cllm_server_wait(cllm_server *s, volatile sig_atomic_t *stop) {
    while (!*stop && atomic_load(&s->state) != SRV_FAILED) {
        usleep(50 * 1000);
        /* a dead worker rank is noticed by the engine's watchdog even while no request runs */
        if (atomic_load(&s->state) == SRV_READY && cllm_engine_check_health(s->engine) != CLLM_OK) {
            cllm_log(CLLM_LOG_ERROR, "%s", cllm_last_error());
            srv_engine_failed(s, cllm_last_error());
        }
    }
    cllm_status st = CLLM_OK;
    if (atomic_load(&s->state) == SRV_FAILED) {
        st = cllm_error(CLLM_ERR_IO, "%s", s->load_error);
        shutdown_server(s, 0);
        return st;
    }
    cllm_log(CLLM_LOG_INFO, "shutting down (grace period %.1f s)", s->p.shutdown_timeout_s);
    shutdown_server(s, s->p.shutdown_timeout_s);
    return st;
}

static void close_handle(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void cllm_server_destroy(cllm_server *s) {
    if (!s) return;
    shutdown_server(s, 0);
    if (s->loop_init) { /* the loop thread has ended: close what is left and free the loop */
        uv_walk(&s->loop, close_handle, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
    }
    for (srv_msg *m = s->inbox_head; m;) { /* posted after the engine left */
        srv_msg *n = m->next;
        srv_job_unref(m->job);
        free(m);
        m = n;
    }
    for (srv_job *j = s->ready_head; j;) {
        srv_job *n = j->ready_next;
        srv_job_unref(j);
        j = n;
    }
    srv_chat_free(s);
    cllm_engine_destroy(s->engine);
    free(s->routes);
    srv_http_free(&s->http);
    free(s->woken);
    cllm_metrics_destroy(s->metrics);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->ready_mu);
    srv_stats_free(&s->stats);
    free(s->host);
    free(s->model_root);
    free(s->served_model_name);
    free(s->api_key);
    srv_cors_free(&s->cors);
    free(s);
}
