/* HTTP server: libmicrohttpd daemon (one thread per connection), request
 * bodies (bounded: 413), routing (404/405), API-key check (401), the simple
 * routes (/health, /metrics, /v1/models, /tokenize, /detokenize, /version),
 * start-up and graceful shutdown. Generate routes: server_generate.c. */
#include "server/server_internal.h"

#include "core/status.h"
#include "server/sse.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

cllm_server_params cllm_server_default_params(void) {
    cllm_server_params p = {0};
    p.engine = cllm_engine_default_params();
    p.host = "127.0.0.1";
    p.port = 8000;
    p.max_body_bytes = (size_t)32 << 20;
    p.max_connections = 1024;
    p.shutdown_timeout_s = 10.0;
    return p;
}

int cllm_server_port(const cllm_server *s) { return s ? s->port : 0; }

/* ------------------------------------------------------------ responses */
int srv_send(struct MHD_Connection *conn, int status, const char *ctype, char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 405) MHD_add_response_header(r, "Allow", "GET, POST");
    int ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

int srv_send_error(struct MHD_Connection *conn, const cllm_openai_error *err) {
    char *body = cllm_openai_format_error(err);
    if (!body) return MHD_NO;
    return srv_send(conn, err->http_status, "application/json", body, strlen(body));
}

int srv_send_errorf(struct MHD_Connection *conn, int status, const char *type, const char *param, const char *fmt,
                    ...) {
    cllm_openai_error err;
    char msg[sizeof err.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cllm_openai_error_set(&err, status, type, param, "%s", msg);
    return srv_send_error(conn, &err);
}

static bool client_gone(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

int srv_wait(cllm_server *s, srv_job *j, struct MHD_Connection *conn) {
    if (atomic_load(&s->hard_stop)) return 2;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    int rc = pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    if (atomic_load(&s->hard_stop)) return 2;
    if (rc == ETIMEDOUT && conn && client_gone(conn)) return 1;
    return 0;
}

/* ------------------------------------------------------------ simple routes */
static int send_json(struct MHD_Connection *conn, char *body) {
    if (!body) return srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory");
    return srv_send(conn, 200, "application/json", body, strlen(body));
}

static int check_model(cllm_server *s, struct MHD_Connection *conn, const char *model) {
    if (!model || !strcmp(model, s->served_model_name)) return 0;
    return srv_send_errorf(conn, 404, "NotFoundError", "model", "The model `%s` does not exist.", model) ? 1 : -1;
}

static int route_models(cllm_server *s, struct MHD_Connection *conn) {
    cllm_openai_model_card c = {.id = s->served_model_name, .root = s->model_root, .created = s->created,
                                .max_model_len = s->max_model_len};
    return send_json(conn, cllm_openai_format_models(&c, 1));
}

static int route_metrics(cllm_server *s, struct MHD_Connection *conn) {
    size_t n = 0;
    char *t = cllm_metrics_render(s->metrics, &n);
    if (!t) return srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory");
    return srv_send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", t, n);
}

static int route_tokenize(cllm_server *s, struct MHD_Connection *conn, const char *body, size_t len) {
    cllm_openai_tokenize_request r;
    cllm_openai_error err;
    if (cllm_openai_parse_tokenize(body, len, &s->limits, &r, &err) != CLLM_OK) return srv_send_error(conn, &err);
    int ret, bad = check_model(s, conn, r.model);
    if (bad) { cllm_openai_tokenize_request_free(&r); return bad > 0 ? MHD_YES : MHD_NO; }
    int32_t *ids = NULL;
    size_t n = 0;
    cllm_status st;
    if (r.messages) {
        char *text = NULL;
        if (srv_render_chat(s, r.messages, r.n_messages, NULL, r.add_generation_prompt, &text, &err) != CLLM_OK) {
            cllm_openai_tokenize_request_free(&r);
            return srv_send_error(conn, &err);
        }
        st = cllm_tokenizer_encode(s->tok, text, strlen(text), r.add_special_tokens, &ids, &n);
        free(text);
    } else {
        st = cllm_tokenizer_encode(s->tok, r.prompt, r.prompt_len, r.add_special_tokens, &ids, &n);
    }
    if (st != CLLM_OK) {
        ret = srv_send_errorf(conn, 400, "invalid_request_error", "prompt", "could not tokenize: %s", cllm_last_error());
    } else {
        const char **strs = NULL;
        if (r.return_token_strs) {
            strs = calloc(n ? n : 1, sizeof *strs);
            for (size_t i = 0; strs && i < n; i++) strs[i] = cllm_tokenizer_id_to_token(s->tok, ids[i]);
        }
        ret = send_json(conn, (r.return_token_strs && !strs) ? NULL
                                                             : cllm_openai_format_tokenize(ids, n, s->max_model_len, strs));
        free(strs);
    }
    cllm_free(ids);
    cllm_openai_tokenize_request_free(&r);
    return ret;
}

static int route_detokenize(cllm_server *s, struct MHD_Connection *conn, const char *body, size_t len) {
    cllm_openai_detokenize_request r;
    cllm_openai_error err;
    if (cllm_openai_parse_detokenize(body, len, &s->limits, &r, &err) != CLLM_OK) return srv_send_error(conn, &err);
    int ret, bad = check_model(s, conn, r.model);
    if (bad) { cllm_openai_detokenize_request_free(&r); return bad > 0 ? MHD_YES : MHD_NO; }
    char *text = NULL;
    size_t tl = 0;
    if (cllm_tokenizer_decode(s->tok, r.tokens, r.n_tokens, false, &text, &tl) != CLLM_OK)
        ret = srv_send_errorf(conn, 400, "invalid_request_error", "tokens", "%s", cllm_last_error());
    else
        ret = send_json(conn, cllm_openai_format_detokenize(text, tl));
    cllm_free(text);
    cllm_openai_detokenize_request_free(&r);
    return ret;
}

/* ------------------------------------------------------------ dispatch */
typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_large;
    bool responded;
} conn_ctx;

enum { R_HEALTH, R_METRICS, R_MODELS, R_COMPLETIONS, R_CHAT, R_TOKENIZE, R_DETOKENIZE, R_VERSION, R_N };
static const struct {
    const char *path, *method;
    bool open; /* no API key needed */
} ROUTES[R_N] = {
    [R_HEALTH] = {"/health", "GET", true},          [R_METRICS] = {"/metrics", "GET", true},
    [R_MODELS] = {"/v1/models", "GET", false},      [R_COMPLETIONS] = {"/v1/completions", "POST", false},
    [R_CHAT] = {"/v1/chat/completions", "POST", false}, [R_TOKENIZE] = {"/tokenize", "POST", false},
    [R_DETOKENIZE] = {"/detokenize", "POST", false}, [R_VERSION] = {"/version", "GET", true},
};

static bool authorized(cllm_server *s, struct MHD_Connection *conn) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(h[i] ^ s->api_key[i]);
    return diff == 0;
}

static int dispatch(cllm_server *s, struct MHD_Connection *conn, const char *url, const char *method, conn_ctx *c) {
    int r = -1;
    for (int i = 0; i < R_N; i++)
        if (!strcmp(url, ROUTES[i].path)) r = i;
    if (r < 0) return srv_send_errorf(conn, 404, "NotFoundError", NULL, "no route %s %s", method, url);
    bool head = !strcmp(method, "HEAD") && !strcmp(ROUTES[r].method, "GET");
    if (strcmp(method, ROUTES[r].method) && !head)
        return srv_send_errorf(conn, 405, "invalid_request_error", NULL, "method %s is not allowed on %s (use %s)",
                               method, url, ROUTES[r].method);
    if (!ROUTES[r].open && !authorized(s, conn)) {
        cllm_openai_error err;
        cllm_openai_error_set(&err, 401, "invalid_request_error", NULL,
                              "missing or wrong API key: send the header 'Authorization: Bearer <key>'");
        snprintf(err.code, sizeof err.code, "invalid_api_key");
        return srv_send_error(conn, &err);
    }
    if (r == R_METRICS) return route_metrics(s, conn);
    if (r == R_VERSION) return send_json(conn, strdup("{\"version\":\"" CLLM_VERSION "\"}"));
    int state = atomic_load(&s->state);
    if (r == R_HEALTH)
        return state == SRV_READY ? srv_send(conn, 200, "application/json", strdup(""), 0)
                                  : srv_send_errorf(conn, 503, "service_unavailable", NULL,
                                                    state == SRV_FAILED ? s->load_error
                                                                        : "the model is loading");
    if (state != SRV_READY)
        return state == SRV_FAILED ? srv_send_errorf(conn, 503, "service_unavailable", NULL, "%s", s->load_error)
                                   : srv_send_errorf(conn, 503, "service_unavailable", NULL,
                                                     "the model is loading; retry later");
    if (c->too_large)
        return srv_send_errorf(conn, 413, "invalid_request_error", NULL,
                               "request body is larger than the limit of %zu bytes", s->p.max_body_bytes);
    const char *body = c->body ? c->body : "";
    switch (r) {
    case R_MODELS: return route_models(s, conn);
    case R_TOKENIZE: return route_tokenize(s, conn, body, c->len);
    case R_DETOKENIZE: return route_detokenize(s, conn, body, c->len);
    case R_COMPLETIONS: return srv_handle_generate(s, conn, CLLM_OPENAI_COMPLETION, body, c->len);
    case R_CHAT: return srv_handle_generate(s, conn, CLLM_OPENAI_CHAT, body, c->len);
    default: return MHD_NO;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    cllm_server *s = cls;
    (void)version;
    conn_ctx *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        *con_cls = c;
        /* an oversized body is read and dropped, then answered 413: answering before
         * reading it would make most clients see a reset instead of the status */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->responded || c->too_large) return MHD_YES;
        if (c->len + n > s->p.max_body_bytes) {
            c->too_large = true;
            free(c->body);
            c->body = NULL;
            c->len = c->cap = 0;
            return MHD_YES;
        }
        if (c->len + n + 1 > c->cap) {
            size_t cap = (c->len + n + 1) * 2;
            char *b = realloc(c->body, cap);
            if (!b) return MHD_NO;
            c->body = b;
            c->cap = cap;
        }
        memcpy(c->body + c->len, upload_data, n);
        c->len += n;
        c->body[c->len] = 0;
        return MHD_YES;
    }
    if (c->responded) return MHD_YES;
    c->responded = true;
    return (enum MHD_Result)dispatch(s, conn, url, method, c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)conn; (void)toe;
    conn_ctx *c = *con_cls;
    if (!c) return;
    free(c->body);
    free(c);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ lifecycle */
cllm_status cllm_server_start(const cllm_server_params *params, cllm_server **out) {
    *out = NULL;
    if (!params || !params->engine.model.model)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_server_start: a model (--model) is required");
    if (params->port < 0 || params->port > 65535)
        return cllm_error(CLLM_ERR_INVALID_ARG, "--port %d is out of range 0..65535", params->port);
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
    s->host = strdup(params->host ? params->host : "127.0.0.1");
    s->model_root = strdup(params->engine.model.model);
    s->served_model_name = strdup(params->served_model_name ? params->served_model_name : params->engine.model.model);
    s->api_key = params->api_key && params->api_key[0] ? strdup(params->api_key) : NULL;
    if (!s->host || !s->model_root || !s->served_model_name || (params->api_key && params->api_key[0] && !s->api_key)) {
        st = cllm_error(CLLM_ERR_OOM, "out of memory");
        goto fail;
    }
    s->p.host = s->host;
    s->p.api_key = s->api_key;
    s->p.served_model_name = s->served_model_name;
    s->p.engine.model.model = s->model_root;
    if (!s->p.max_body_bytes) s->p.max_body_bytes = (size_t)32 << 20;
    s->limits = cllm_openai_default_limits();
    s->limits.max_body_bytes = s->p.max_body_bytes;
    int waiting = s->p.engine.max_num_waiting > 0 ? s->p.engine.max_num_waiting : 4096;
    s->max_inflight = s->p.max_inflight_requests > 0 ? s->p.max_inflight_requests
                                                     : s->p.engine.max_num_seqs + waiting;
    s->created = (int64_t)time(NULL);
    CLLM_TRY_GOTO(st, cllm_metrics_create(s->served_model_name, &s->metrics), fail);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->p.port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai || !ai) {
        st = cllm_error(CLLM_ERR_INVALID_ARG, "--host '%s' does not resolve: %s", s->host, gai_strerror(gai));
        goto fail;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)(s->p.max_connections > 0 ? s->p.max_connections : 1024),
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_THREAD_STACK_SIZE,
                                 (size_t)512 * 1024, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        st = cllm_error(CLLM_ERR_IO, "cannot listen on %s:%d (address in use or not permitted?): pick another --port",
                        s->host, s->p.port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->p.port;
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

static void shutdown_server(cllm_server *s, double grace_s) {
    if (!s->daemon) return;
    atomic_store(&s->draining, true);
    MHD_socket ls = MHD_quiesce_daemon(s->daemon); /* no new connections */
    if (ls != MHD_INVALID_SOCKET) close(ls);
    double deadline = srv_now() + grace_s;
    while (atomic_load(&s->inflight) > 0 && srv_now() < deadline) usleep(20 * 1000);
    if (atomic_load(&s->inflight) > 0)
        cllm_log(CLLM_LOG_WARN, "shutdown: aborting %d request(s) still running after %.1f s",
                 atomic_load(&s->inflight), grace_s);
    atomic_store(&s->hard_stop, true);
    pthread_mutex_lock(&s->mu);
    s->exit_engine = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->engine_thread_started) {
        pthread_join(s->engine_thread, NULL);
        s->engine_thread_started = false;
    }
    MHD_stop_daemon(s->daemon); /* joins the connection threads */
    s->daemon = NULL;
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

void cllm_server_destroy(cllm_server *s) {
    if (!s) return;
    shutdown_server(s, 0);
    if (s->engine_thread_started) { /* start failed after the thread began */
        pthread_mutex_lock(&s->mu);
        s->exit_engine = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->engine_thread, NULL);
    }
    for (srv_msg *m = s->inbox_head; m;) { /* posted after the engine left */
        srv_msg *n = m->next;
        srv_job_unref(m->job);
        free(m);
        m = n;
    }
    srv_chat_free(s);
    cllm_engine_destroy(s->engine);
    free(s->routes);
    cllm_metrics_destroy(s->metrics);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->host);
    free(s->model_root);
    free(s->served_model_name);
    free(s->api_key);
    free(s);
}
