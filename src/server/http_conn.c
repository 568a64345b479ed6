/* Connections on the libuv loop (loop thread only).
 *
 * States: IDLE (waiting for a request: --timeout-keep-alive without a byte
 * closes it), READ (a request is arriving: head and body must be whole
 * within --timeout-request-read, else 408), BUSY (answered now or later by a
 * srv_task; bytes of a pipelined next request are kept, up to 128 KiB, then
 * reading pauses), LINGER (answered with "Connection: close": the write side
 * is shut once the response is out, and what the client still sends is read
 * and dropped for up to 2 s, so that a client still uploading a refused body
 * reads the status instead of a reset).
 *
 * Memory per connection: ~1 KiB idle (this struct with its libuv handles and
 * llhttp state; reads go through one 64 KiB buffer per loop); while a request
 * arrives, its URL and headers (16 KiB + 8 KiB at most) and its body
 * (--max-body-bytes at most, and all connections' bodies together at most
 * cllm_server.max_body_memory, else 503); while answering, the queued
 * response bytes (streams stop producing above SRV_WRITE_HIGH).
 *
 * A client that closes its socket (EOF or error on read, which is watched in
 * every state) closes the connection at once: its task's closed() aborts the
 * request in the engine.
 */
#include "server/server_internal.h"

#include "core/status.h"
#include "server/http_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C_IDLE, C_READ, C_BUSY, C_LINGER };
#define SRV_IP_BUCKETS 4096
#define PENDING_MAX ((size_t)64 << 10)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES ((size_t)64 << 20)

struct srv_ip {
    srv_ip *next;
    unsigned char addr[16];
    int count;
};

struct srv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    cllm_server *s;
    srv_conn *prev, *next;
    srv_ip *ip;
    int refs;                 /* open handles (2) + holders */
    int state;
    bool closing, close_after, shut, read_stopped, continue_pending, in_list;
    bool http10, head_only, streaming;
    cllm_http_request req;
    char *pending;            /* bytes after the current message (pipelining) */
    size_t pending_len;
    size_t wq_bytes;          /* queued in uv_write */
    size_t lingered;          /* bytes dropped while lingering */
    size_t body_reserved;     /* counted in s->body_bytes */
    srv_task *task;
};

typedef struct wreq {
    uv_write_t w;
    srv_conn *c;
    size_t len;
    char data[];
} wreq;

static char g_read_buf[64 << 10]; /* one loop thread: reads are consumed before the next */

static void conn_close(srv_conn *c);
static void conn_process(srv_conn *c, const char *data, size_t len);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void exit_if_done(cllm_server *s);

/* ------------------------------------------------------------ per-IP counts */
static unsigned ip_hash(const unsigned char *a) {
    unsigned h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ a[i]) * 16777619u;
    return h % SRV_IP_BUCKETS;
}

static srv_ip *ip_get(cllm_server *s, const unsigned char *a) {
    if (!s->ip_table && !(s->ip_table = calloc(SRV_IP_BUCKETS, sizeof *s->ip_table))) return NULL;
    unsigned h = ip_hash(a);
    for (srv_ip *e = s->ip_table[h]; e; e = e->next)
        if (!memcmp(e->addr, a, 16)) return e;
    srv_ip *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    memcpy(e->addr, a, 16);
    e->next = s->ip_table[h];
    s->ip_table[h] = e;
    return e;
}

static void ip_put(cllm_server *s, srv_ip *e) {
    if (!e || --e->count > 0) return;
    srv_ip **p = &s->ip_table[ip_hash(e->addr)];
    while (*p && *p != e) p = &(*p)->next;
    if (*p) *p = e->next;
    free(e);
}

static void peer_key(uv_tcp_t *t, unsigned char key[16]) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(key, 0, 16);
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len)) return;
    if (ss.ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(key, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    }
}

/* ------------------------------------------------------------------ writes */
static void on_write(uv_write_t *w, int status) {
    wreq *r = (wreq *)w;
    srv_conn *c = r->c;
    c->wq_bytes -= r->len;
    free(r);
    if (status < 0) { conn_close(c); srv_conn_release(c); return; }
    if (!c->closing && c->task && c->task->ops->writable && c->wq_bytes < SRV_WRITE_HIGH / 2)
        c->task->ops->writable(c->task);
    srv_conn_release(c);
}

/* Queue head (copied) + body (copied) + tail (copied) as one write. */
static void conn_write3(srv_conn *c, const char *a, size_t na, const char *b, size_t nb, const char *t, size_t nt) {
    if (c->closing || c->shut) return;
    wreq *r = malloc(sizeof *r + na + nb + nt);
    if (!r) { conn_close(c); return; }
    if (na) memcpy(r->data, a, na);
    if (nb) memcpy(r->data + na, b, nb);
    if (nt) memcpy(r->data + na + nb, t, nt);
    r->c = c;
    r->len = na + nb + nt;
    uv_buf_t buf = uv_buf_init(r->data, (unsigned)r->len);
    c->refs++;
    c->wq_bytes += r->len;
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &buf, 1, on_write)) {
        c->wq_bytes -= r->len;
        c->refs--;
        free(r);
        conn_close(c);
    }
}

static const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ------------------------------------------------------------ lifecycle */
static void on_handle_closed(uv_handle_t *h) { srv_conn_release(h->data); }

void srv_conn_hold(srv_conn *c) { c->refs++; }

void srv_conn_release(srv_conn *c) {
    if (--c->refs > 0) return;
    cllm_http_request_free(&c->req);
    free(c->pending);
    free(c);
}

bool srv_conn_gone(const srv_conn *c) { return c->closing; }
size_t srv_conn_write_queue(const srv_conn *c) { return c->wq_bytes; }
void srv_conn_set_task(srv_conn *c, srv_task *t) {
    c->task = t;
    if (t) t->conn = c;
}

static void body_unreserve(srv_conn *c) {
    c->s->body_bytes -= c->body_reserved;
    c->body_reserved = 0;
}

static void conn_close(srv_conn *c) {
    if (c->closing) return;
    c->closing = true;
    cllm_server *s = c->s;
    srv_task *t = c->task;
    c->task = NULL;
    if (t) {
        t->conn = NULL;
        t->ops->closed(t);
    }
    if (c->streaming) atomic_fetch_sub(&s->n_streams, 1);
    c->streaming = false;
    body_unreserve(c);
    if (c->in_list) {
        if (c->prev) c->prev->next = c->next;
        else s->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->in_list = false;
        s->n_conns--;
        cllm_metrics_set_http_connections(s->metrics, s->n_conns);
    }
    ip_put(s, c->ip);
    c->ip = NULL;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    exit_if_done(s);
}

static void on_shutdown(uv_shutdown_t *r, int status) {
    srv_conn *c = r->data;
    free(r);
    (void)status;
    srv_conn_release(c);
}

static void on_timer(uv_timer_t *t);

/* The response is queued: close (lingering) or wait for the next request. */
static void request_done(srv_conn *c) {
    if (c->closing) return;
    c->task = NULL;
    if (c->streaming) atomic_fetch_sub(&c->s->n_streams, 1);
    c->streaming = false;
    body_unreserve(c);
    if (c->close_after || c->s->exiting) {
        c->state = C_LINGER;
        if (c->shut) return; /* already shutting (a second answer cannot happen; be safe) */
        uv_shutdown_t *r = malloc(sizeof *r);
        if (!r) { conn_close(c); return; }
        r->data = c;
        c->refs++;
        if (uv_shutdown(r, (uv_stream_t *)&c->tcp, on_shutdown)) { c->refs--; free(r); conn_close(c); return; }
        c->shut = true;
        if (c->read_stopped) { conn_close(c); return; }
        uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
        return;
    }
    cllm_http_request_reset(&c->req);
    c->state = C_IDLE;
    if (c->pending_len) {
        c->continue_pending = true;
        uv_timer_start(&c->timer, on_timer, 0, 0);
    } else {
        uv_timer_start(&c->timer, on_timer, (uint64_t)(c->s->p.timeout_keep_alive_s * 1000), 0);
    }
}

/* ------------------------------------------------------------ responses */
static void respond_head(srv_conn *c, int status, const char *ctype, size_t len, const char *extra, bool chunked,
                         char *out, size_t size, size_t *n) {
    if (c->s->exiting || atomic_load(&c->s->draining)) c->close_after = true;
    const char *conn_hdr = c->close_after ? "Connection: close\r\n"
                           : c->http10     ? "Connection: keep-alive\r\n"
                                           : "";
    char cl[48] = "";
    if (chunked) snprintf(cl, sizeof cl, "Transfer-Encoding: chunked\r\n");
    else if (len != (size_t)-1) snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", len);
    int k = snprintf(out, size, "HTTP/1.%d %d %s\r\n%s%s%s%s%s%s\r\n", c->http10 ? 0 : 1, status, reason(status),
                     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", cl, extra ? extra : "",
                     conn_hdr);
    *n = k < 0 ? 0 : (size_t)k >= size ? size - 1 : (size_t)k;
}

void srv_respond(srv_conn *c, int status, const char *ctype, char *body, size_t len, const char *extra) {
    if (c->closing) { free(body); return; }
    char head[1024];
    size_t n;
    respond_head(c, status, ctype, len, extra, false, head, sizeof head, &n);
    conn_write3(c, head, n, c->head_only ? NULL : body, c->head_only ? 0 : len, NULL, 0);
    free(body);
    request_done(c);
}

void srv_respond_error(srv_conn *c, const cllm_openai_error *err) {
    char *body = cllm_openai_format_error(err);
    if (!body) { conn_close(c); return; }
    char extra[64] = "";
    if (err->http_status == 503 || err->http_status == 429) snprintf(extra, sizeof extra, "Retry-After: 1\r\n");
    if (err->http_status == 405) snprintf(extra, sizeof extra, "Allow: GET, POST\r\n");
    srv_respond(c, err->http_status, "application/json", body, strlen(body), extra);
}

void srv_respond_errorf(srv_conn *c, int status, const char *type, const char *param, const char *fmt, ...) {
    cllm_openai_error err;
    char msg[sizeof err.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cllm_openai_error_set(&err, status, type, param, "%s", msg);
    srv_respond_error(c, &err);
}

void srv_stream_begin(srv_conn *c) {
    char head[512];
    size_t n;
    if (c->http10) c->close_after = true; /* no chunked coding: the close ends the body */
    respond_head(c, 200, "text/event-stream; charset=utf-8", (size_t)-1, "Cache-Control: no-cache\r\n", !c->http10,
                 head, sizeof head, &n);
    conn_write3(c, head, n, NULL, 0, NULL, 0);
    if (!c->streaming) atomic_fetch_add(&c->s->n_streams, 1);
    c->streaming = true;
}

void srv_stream_write(srv_conn *c, char *data, size_t len) {
    if (len && !c->closing && !c->head_only) {
        char size[24];
        int k = c->http10 ? 0 : snprintf(size, sizeof size, "%zx\r\n", len);
        conn_write3(c, size, (size_t)k, data, len, "\r\n", c->http10 ? 0 : 2);
    }
    free(data);
}

void srv_stream_end(srv_conn *c) {
    if (c->closing) return;
    if (!c->http10 && !c->head_only) conn_write3(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
    request_done(c);
}

/* A request refused on its head or malformed: answer, then close. */
static void conn_fail(srv_conn *c, int status, const char *msg) {
    c->close_after = true;
    c->state = C_BUSY;
    uv_timer_stop(&c->timer);
    cllm_openai_error err;
    cllm_openai_error_set(&err, status, status >= 500 && status != 501 && status != 505 ? "service_unavailable"
                                                                                         : "invalid_request_error",
                          NULL, "%s", msg);
    srv_respond_error(c, &err);
}

/* ------------------------------------------------------------------ reads */
static void on_timer(uv_timer_t *t) {
    srv_conn *c = t->data;
    if (c->closing) return;
    if (c->continue_pending) {
        c->continue_pending = false;
        char *p = c->pending;
        size_t n = c->pending_len;
        c->pending = NULL;
        c->pending_len = 0;
        conn_process(c, p, n);
        free(p);
        if (!c->closing && c->read_stopped && c->state != C_LINGER && c->pending_len <= PENDING_MAX) {
            c->read_stopped = false; /* the kept pipeline is parsed: read on */
            if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) conn_close(c);
        }
        return;
    }
    switch (c->state) {
    case C_IDLE: conn_close(c); break; /* keep-alive timeout */
    case C_READ: {
        char msg[128];
        snprintf(msg, sizeof msg, "the request was not received in full within %g s (--timeout-request-read)",
                 c->s->p.timeout_request_read_s);
        conn_fail(c, 408, msg);
        break;
    }
    case C_LINGER: conn_close(c); break;
    default: break;
    }
}

static bool keep_pending(srv_conn *c, const char *data, size_t len) {
    if (!len) return true;
    char *p = realloc(c->pending, c->pending_len + len);
    if (!p) return false;
    memcpy(p + c->pending_len, data, len);
    c->pending = p;
    c->pending_len += len;
    return true;
}

static void conn_process(srv_conn *c, const char *data, size_t len) {
    cllm_server *s = c->s;
    while (!c->closing && c->state != C_BUSY && c->state != C_LINGER) {
        size_t used = 0;
        cllm_http_event ev = cllm_http_request_feed(&c->req, data, len, &used);
        data += used;
        len -= used;
        if (c->req.started && c->state == C_IDLE) {
            c->state = C_READ;
            uv_timer_start(&c->timer, on_timer, (uint64_t)(s->p.timeout_request_read_s * 1000), 0);
        }
        if (ev == CLLM_HTTP_NEED_MORE) {
            if (c->req.chunked && c->req.body_len > c->body_reserved) { /* chunked bodies count as they grow */
                size_t d = c->req.body_len - c->body_reserved;
                if (s->body_bytes + d > s->max_body_memory) {
                    conn_fail(c, 503, "the server holds too many request bodies at once; retry later");
                    return;
                }
                s->body_bytes += d;
                c->body_reserved += d;
            }
            return;
        }
        if (ev == CLLM_HTTP_ERROR) {
            conn_fail(c, c->req.error_status, c->req.error);
            return;
        }
        if (ev == CLLM_HTTP_HEAD) {
            c->http10 = c->req.version_minor == 0;
            c->head_only = !strcmp(c->req.method, "HEAD");
            c->state = C_BUSY; /* a response queued on the head closes: the body (if any) is never read */
            c->close_after = true;
            if (!srv_route_head(s, c, &c->req)) return;
            c->state = C_READ;
            c->close_after = false;
            if (c->req.error_status) { conn_fail(c, c->req.error_status, c->req.error); return; }
            if (c->req.content_length > 0) {
                size_t need = (size_t)c->req.content_length;
                if (s->body_bytes + need > s->max_body_memory) {
                    conn_fail(c, 503, "the server holds too many request bodies at once; retry later");
                    return;
                }
                s->body_bytes += need;
                c->body_reserved = need;
            }
            if (c->req.expect_continue) conn_write3(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
            continue;
        }
        /* CLLM_HTTP_MESSAGE */
        if (!keep_pending(c, data, len)) { conn_close(c); return; }
        uv_timer_stop(&c->timer);
        c->state = C_BUSY;
        c->close_after = !cllm_http_request_keep_alive(&c->req);
        srv_route_dispatch(s, c, &c->req);
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(g_read_buf, sizeof g_read_buf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    srv_conn *c = st->data;
    if (nread == 0 || c->closing) return;
    if (nread < 0) { conn_close(c); return; } /* EOF or reset: the client is gone, in any state */
    size_t n = (size_t)nread;
    switch (c->state) {
    case C_LINGER:
        c->lingered += n;
        if (c->lingered > LINGER_MAX_BYTES) conn_close(c);
        return;
    case C_BUSY:
        if (!keep_pending(c, buf->base, n)) { conn_close(c); return; }
        if (c->pending_len > PENDING_MAX) { /* a long pipeline: wait until this answer is out */
            uv_read_stop(st);
            c->read_stopped = true;
        }
        return;
    default: /* IDLE (its keep-alive timer runs until a request starts) or READ */
        conn_process(c, buf->base, n);
        return;
    }
}

/* ------------------------------------------------------------------ accept */
static void reject_now(uv_tcp_t *t, int status, const char *msg) {
    cllm_openai_error err;
    cllm_openai_error_set(&err, status, "service_unavailable", NULL, "%s", msg);
    char *body = cllm_openai_format_error(&err);
    char out[1024];
    int k = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nRetry-After: 1\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reason(status), body ? strlen(body) : 0, body ? body : "");
    free(body);
    uv_buf_t b = uv_buf_init(out, (unsigned)(k < (int)sizeof out ? k : (int)sizeof out - 1));
    (void)uv_try_write((uv_stream_t *)t, &b, 1);
}

static void free_handle(uv_handle_t *h) { free(h); }

void srv_conn_accept(cllm_server *s) {
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(&s->loop, &c->tcp);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, free_handle); /* tcp is the first member: frees c */
        return;
    }
    unsigned char key[16];
    peer_key(&c->tcp, key);
    srv_ip *ip = NULL;
    const char *why = NULL;
    int status = 503;
    char msg[160];
    if (s->exiting || atomic_load(&s->draining)) {
        why = atomic_load(&s->state) == SRV_FAILED ? "the model failed to load; the server is shutting down"
                                                   : "the server is shutting down";
    } else if (s->n_conns >= s->max_connections) {
        snprintf(msg, sizeof msg, "the server holds its maximum of %d connections (--max-connections); retry later",
                 s->max_connections);
        why = msg;
    } else if (!(ip = ip_get(s, key))) {
        why = "out of memory";
    } else if (s->p.max_connections_per_ip > 0 && ip->count >= s->p.max_connections_per_ip) {
        snprintf(msg, sizeof msg, "too many connections from your address (--max-connections-per-ip %d)",
                 s->p.max_connections_per_ip);
        why = msg;
        status = 429;
    }
    if (why) {
        reject_now(&c->tcp, status, why);
        uv_close((uv_handle_t *)&c->tcp, free_handle);
        return;
    }
    ip->count++;
    c->ip = ip;
    c->s = s;
    c->refs = 2;
    c->tcp.data = c;
    uv_timer_init(&s->loop, &c->timer);
    c->timer.data = c;
    cllm_http_limits lim = cllm_http_default_limits();
    cllm_http_request_init(&c->req, &lim);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    c->in_list = true;
    s->n_conns++;
    cllm_metrics_set_http_connections(s->metrics, s->n_conns);
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_IDLE;
    uv_timer_start(&c->timer, on_timer, (uint64_t)(s->p.timeout_keep_alive_s * 1000), 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) conn_close(c);
}

/* --------------------------------------------------------------- commands */
void srv_conn_drain_all(cllm_server *s) {
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
    }
}

void srv_conn_stop_all(cllm_server *s) {
    for (srv_conn *c = s->conns, *n; c; c = n) {
        n = c->next;
        if (c->task && c->task->ops->stop) c->task->ops->stop(c->task);
    }
}

/* At exit, once no connection is left: close the loop's own handles, so
 * that uv_run returns. */
static void exit_if_done(cllm_server *s) {
    if (!s->exiting || s->conns) return;
    if (s->exit_timer_on) {
        uv_close((uv_handle_t *)&s->exit_timer, NULL);
        s->exit_timer_on = false;
    }
    if (!s->wake_closed) {
        uv_close((uv_handle_t *)&s->wake, NULL);
        s->wake_closed = true;
    }
}

static void on_exit_timer(uv_timer_t *t) {
    cllm_server *s = t->data;
    while (s->conns) conn_close(s->conns); /* the last one runs exit_if_done */
    exit_if_done(s);
}

void srv_conn_close_all(cllm_server *s) {
    s->exiting = true;
    srv_conn_drain_all(s);
    for (srv_conn *c = s->conns, *n; c; c = n) {
        n = c->next;
        if (c->task) { /* cannot happen after stop_all; be safe */
            srv_task *t = c->task;
            c->task = NULL;
            t->conn = NULL;
            t->ops->closed(t);
        }
        if (!c->wq_bytes || c->state == C_IDLE || c->state == C_READ) conn_close(c);
        else if (c->state != C_LINGER) request_done(c); /* shut after the queued bytes go out */
    }
    if (s->conns) {
        uv_timer_init(&s->loop, &s->exit_timer);
        s->exit_timer.data = s;
        s->exit_timer_on = true;
        uv_timer_start(&s->exit_timer, on_exit_timer, 2000, 0);
    }
    exit_if_done(s);
}
