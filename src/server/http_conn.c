/* The HTTP front door on the libuv loop (loop thread only; http_conn.h):
 * the listener and its connections, for `cllm serve` and `cllm router`.
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
 * srv_http.max_body_memory, else 503); while answering, the queued
 * response bytes (streams stop producing above SRV_WRITE_HIGH).
 *
 * A client that closes its socket (EOF or error on read, which is watched in
 * every state) closes the connection at once: its task's closed() aborts the
 * request (in the engine, or upstream).
 */
#include "server/http_conn.h"
#include "server/cors.h"

#include "core/status.h"
#include "server/http_request.h"
#include "server/openai_protocol.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

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
    srv_http *h;
    srv_conn *prev, *next;
    srv_ip *ip;
    int refs;                 /* open handles (2) + holders */
    int state;
    int route;                /* the current request's index in h->routes */
    bool closing, close_after, shut, read_stopped, continue_pending, in_list;
    bool broken;              /* a write failed under the task's call: closes on the loop's next turn */
    bool http10, head_only;
    cllm_http_request req;
    char *pending;            /* bytes after the current message (pipelining) */
    size_t pending_len;
    size_t wq_bytes;          /* queued in uv_write */
    size_t lingered;          /* bytes dropped while lingering */
    size_t body_reserved;     /* counted in h->body_bytes */
    char *cors;               /* the current request's CORS header lines (cors.h), owned; NULL: none */
    srv_task *task;
};

typedef struct wreq {
    uv_write_t w;
    srv_conn *c;
    size_t len;
    char *body;               /* owned */
    char framing[];           /* head then tail, copied */
} wreq;


static void conn_close(srv_conn *c);
static void conn_break(srv_conn *c);
static void conn_process(srv_conn *c, const char *data, size_t len);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void exit_if_done(srv_http *h);
static int route_head(srv_http *h, srv_conn *c, cllm_http_request *req);

/* ------------------------------------------------------------ per-IP counts */
static unsigned ip_hash(const unsigned char *a) {
    unsigned h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ a[i]) * 16777619u;
    return h % SRV_IP_BUCKETS;
}

static srv_ip *ip_get(srv_http *h, const unsigned char *a) {
    if (!h->ip_table && !(h->ip_table = calloc(SRV_IP_BUCKETS, sizeof *h->ip_table))) return NULL;
    unsigned b = ip_hash(a);
    for (srv_ip *e = h->ip_table[b]; e; e = e->next)
        if (!memcmp(e->addr, a, 16)) return e;
    srv_ip *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    memcpy(e->addr, a, 16);
    e->next = h->ip_table[b];
    h->ip_table[b] = e;
    return e;
}

static void ip_put(srv_http *h, srv_ip *e) {
    if (!e || --e->count > 0) return;
    srv_ip **p = &h->ip_table[ip_hash(e->addr)];
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
    free(r->body);
    free(r);
    if (status < 0) { conn_close(c); srv_conn_release(c); return; }
    if (!c->closing && c->task && c->task->ops->writable && c->wq_bytes < SRV_WRITE_HIGH / 2)
        c->task->ops->writable(c->task);
    srv_conn_release(c);
}

/* Queue head (copied) + body (owned: freed once written) + tail (copied) as
 * one write. */
static void conn_write(srv_conn *c, const char *head, size_t nh, char *body, size_t nb, const char *tail, size_t nt) {
    if (c->closing || c->shut || c->broken) { free(body); return; }
    wreq *r = malloc(sizeof *r + nh + nt);
    if (!r) { free(body); conn_break(c); return; }
    if (nh) memcpy(r->framing, head, nh);
    if (nt) memcpy(r->framing + nh, tail, nt);
    r->c = c;
    r->len = nh + nb + nt;
    r->body = body;
    uv_buf_t bufs[3];
    unsigned n = 0;
    if (nh) bufs[n++] = uv_buf_init(r->framing, (unsigned)nh);
    if (nb) bufs[n++] = uv_buf_init(body, (unsigned)nb);
    if (nt) bufs[n++] = uv_buf_init(r->framing + nh, (unsigned)nt);
    c->refs++;
    c->wq_bytes += r->len;
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, bufs, n, on_write)) {
        c->wq_bytes -= r->len;
        c->refs--;
        free(body);
        free(r);
        conn_break(c);
    }
}

static const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 409: return "Conflict";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
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
    free(c->cors);
    free(c);
}

size_t srv_conn_write_queue(const srv_conn *c) { return c->wq_bytes; }
void srv_conn_set_task(srv_conn *c, srv_task *t) {
    c->task = t;
    if (t) t->conn = c;
}

static void body_unreserve(srv_conn *c) {
    c->h->body_bytes -= c->body_reserved;
    c->body_reserved = 0;
}

static void conn_close(srv_conn *c) {
    if (c->closing) return;
    c->closing = true;
    srv_http *h = c->h;
    srv_task *t = c->task;
    c->task = NULL;
    if (t) {
        t->conn = NULL;
        t->ops->closed(t);
    }
    body_unreserve(c);
    if (c->in_list) {
        if (c->prev) c->prev->next = c->next;
        else h->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->in_list = false;
        h->n_conns--;
        if (h->ops->connections) h->ops->connections(h, h->n_conns);
    }
    ip_put(h, c->ip);
    c->ip = NULL;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    exit_if_done(h);
}

static void on_shutdown(uv_shutdown_t *r, int status) {
    srv_conn *c = r->data;
    free(r);
    (void)status;
    srv_conn_release(c);
}

static void on_timer(uv_timer_t *t);

/* The connection cannot go on (a write could not be queued). A task still
 * attached is inside its own call to srv_respond / srv_stream_*: the close
 * (and with it the task's closed()) waits for the loop's next turn, or for
 * the task's answer to end (request_done). */
static void conn_break(srv_conn *c) {
    if (!c->task) { conn_close(c); return; }
    c->broken = true;
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* The response is queued: close (lingering) or wait for the next request. */
static void request_done(srv_conn *c) {
    if (c->closing) return;
    c->task = NULL;
    free(c->cors);
    c->cors = NULL;
    if (c->broken) { conn_close(c); return; }
    body_unreserve(c);
    if (c->close_after || c->h->exiting) {
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
        uv_timer_start(&c->timer, on_timer, (uint64_t)(c->h->timeout_keep_alive_s * 1000), 0);
    }
}

/* ------------------------------------------------------------ responses */
/* A response head: status line, the caller's headers (a CORS preflight's up
 * to ~3 KiB), the request's CORS lines. */
#define RESPONSE_HEAD_MAX 8192

static void respond_head(srv_conn *c, int status, const char *ctype, size_t len, const char *extra, bool chunked,
                         char *out, size_t size, size_t *n) {
    if (c->h->exiting || atomic_load(&c->h->draining)) c->close_after = true;
    const char *conn_hdr = c->close_after ? "Connection: close\r\n"
                           : c->http10     ? "Connection: keep-alive\r\n"
                                           : "";
    char cl[48] = "";
    if (chunked) snprintf(cl, sizeof cl, "Transfer-Encoding: chunked\r\n");
    else if (len != (size_t)-1) snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", len);
    int k = snprintf(out, size, "HTTP/1.%d %d %s\r\n%s%s%s%s%s%s%s\r\n", c->http10 ? 0 : 1, status, reason(status),
                     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", cl, extra ? extra : "",
                     c->cors ? c->cors : "", conn_hdr);
    *n = k < 0 ? 0 : (size_t)k >= size ? size - 1 : (size_t)k;
}

void srv_respond(srv_conn *c, int status, const char *ctype, char *body, size_t len, const char *extra) {
    if (c->closing) { free(body); return; }
    char head[RESPONSE_HEAD_MAX];
    size_t n;
    respond_head(c, status, ctype, len, extra, false, head, sizeof head, &n);
    if (c->head_only) { free(body); body = NULL; len = 0; }
    conn_write(c, head, n, body, len, NULL, 0);
    request_done(c);
}

void srv_respond_error(srv_conn *c, const cllm_openai_error *err) {
    char *body = cllm_openai_format_error(err);
    if (!body) { conn_break(c); request_done(c); return; }
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

void srv_stream_begin(srv_conn *c) { srv_stream_begin_ex(c, NULL); }

void srv_stream_begin_ex(srv_conn *c, const char *extra) {
    char head[RESPONSE_HEAD_MAX], hdrs[512];
    size_t n;
    if (c->http10) c->close_after = true; /* no chunked coding: the close ends the body */
    snprintf(hdrs, sizeof hdrs, "Cache-Control: no-cache\r\n%s", extra ? extra : "");
    respond_head(c, 200, "text/event-stream; charset=utf-8", (size_t)-1, hdrs, !c->http10, head, sizeof head, &n);
    conn_write(c, head, n, NULL, 0, NULL, 0);
}

void srv_stream_write(srv_conn *c, char *data, size_t len) {
    if (!len || c->closing || c->head_only) { free(data); return; }
    char size[24];
    int k = c->http10 ? 0 : snprintf(size, sizeof size, "%zx\r\n", len);
    conn_write(c, size, (size_t)k, data, len, "\r\n", c->http10 ? 0 : 2);
}

void srv_stream_end(srv_conn *c) {
    if (c->closing) return;
    if (!c->http10 && !c->head_only) conn_write(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
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
    if (c->broken) { conn_close(c); return; }
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
                 c->h->timeout_request_read_s);
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
    srv_http *h = c->h;
    while (!c->closing && c->state != C_BUSY && c->state != C_LINGER) {
        size_t used = 0;
        cllm_http_event ev = cllm_http_request_feed(&c->req, data, len, &used);
        data += used;
        len -= used;
        if (c->req.started && c->state == C_IDLE) {
            c->state = C_READ;
            uv_timer_start(&c->timer, on_timer, (uint64_t)(h->timeout_request_read_s * 1000), 0);
        }
        if (ev == CLLM_HTTP_NEED_MORE) {
            if (c->req.chunked && c->req.body_len > c->body_reserved) { /* chunked bodies count as they grow */
                size_t d = c->req.body_len - c->body_reserved;
                if (h->body_bytes + d > h->max_body_memory) {
                    conn_fail(c, 503, "the server holds too many request bodies at once; retry later");
                    return;
                }
                h->body_bytes += d;
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
            if ((c->route = route_head(h, c, &c->req)) < 0) return;
            c->state = C_READ;
            c->close_after = false;
            if (c->req.content_length > 0) {
                size_t need = (size_t)c->req.content_length;
                if (h->body_bytes + need > h->max_body_memory) {
                    conn_fail(c, 503, "the server holds too many request bodies at once; retry later");
                    return;
                }
                h->body_bytes += need;
                c->body_reserved = need;
            }
            if (c->req.expect_continue) conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
            continue;
        }
        /* CLLM_HTTP_MESSAGE */
        if (!keep_pending(c, data, len)) { conn_close(c); return; }
        uv_timer_stop(&c->timer);
        c->state = C_BUSY;
        c->close_after = !cllm_http_request_keep_alive(&c->req);
        h->ops->dispatch(h, c, &c->req, c->route);
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    srv_conn *c = h->data;
    *buf = uv_buf_init(c->h->read_buf, SRV_READ_BUF);
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

static void conn_accept(srv_http *h) {
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(h->loop, &c->tcp);
    if (uv_accept((uv_stream_t *)&h->listener, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, free_handle); /* tcp is the first member: frees c */
        return;
    }
    unsigned char key[16];
    peer_key(&c->tcp, key);
    srv_ip *ip = NULL;
    const char *why = NULL;
    int status = 503;
    char msg[160];
    if (h->exiting || atomic_load(&h->draining)) {
        why = h->drain_reason ? h->drain_reason : "the server is shutting down";
    } else if (h->n_conns >= h->max_connections) {
        snprintf(msg, sizeof msg, "the server holds its maximum of %d connections (--max-connections); retry later",
                 h->max_connections);
        why = msg;
    } else if (!(ip = ip_get(h, key))) {
        why = "out of memory";
    } else if (h->max_connections_per_ip > 0 && ip->count >= h->max_connections_per_ip) {
        snprintf(msg, sizeof msg, "too many connections from your address (--max-connections-per-ip %d)",
                 h->max_connections_per_ip);
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
    c->h = h;
    c->refs = 2;
    c->tcp.data = c;
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    cllm_http_limits lim = cllm_http_default_limits();
    cllm_http_request_init(&c->req, &lim);
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    c->in_list = true;
    h->n_conns++;
    if (h->ops->connections) h->ops->connections(h, h->n_conns);
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_IDLE;
    uv_timer_start(&c->timer, on_timer, (uint64_t)(h->timeout_keep_alive_s * 1000), 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) conn_close(c);
}

/* --------------------------------------------------------------- commands */
void srv_conn_drain_all(srv_http *h) {
    if (h->listening) {
        uv_close((uv_handle_t *)&h->listener, NULL);
        h->listening = false;
    }
}

void srv_conn_stop_all(srv_http *h) {
    for (srv_conn *c = h->conns, *n; c; c = n) {
        n = c->next;
        if (c->task && c->task->ops->stop) c->task->ops->stop(c->task);
    }
}

/* At exit, once no connection is left: close the loop's own handles (ours
 * and, through ops->exited, the owner's), so that uv_run returns. */
static void exit_if_done(srv_http *h) {
    if (!h->exiting || h->conns) return;
    if (h->exit_timer_on) {
        uv_close((uv_handle_t *)&h->exit_timer, NULL);
        h->exit_timer_on = false;
    }
    if (h->ops->exited) h->ops->exited(h); /* the owner's handles (idempotent) */
}

static void on_exit_timer(uv_timer_t *t) {
    srv_http *h = t->data;
    while (h->conns) conn_close(h->conns); /* the last one runs exit_if_done */
    exit_if_done(h);
}

void srv_conn_close_all(srv_http *h) {
    h->exiting = true;
    srv_conn_drain_all(h);
    for (srv_conn *c = h->conns, *n; c; c = n) {
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
    if (h->conns) {
        uv_timer_init(h->loop, &h->exit_timer);
        h->exit_timer.data = h;
        h->exit_timer_on = true;
        uv_timer_start(&h->exit_timer, on_exit_timer, 2000, 0);
    }
    exit_if_done(h);
}

/* ------------------------------------------------------------ the listener */
static void on_connection(uv_stream_t *l, int status) {
    if (status < 0) return;
    conn_accept(l->data);
}

void srv_http_fit_fd_limit(srv_http *h, int want) {
    struct rlimit rl;
    h->max_connections = want > 0 ? want : 10000;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return;
    rlim_t need = (rlim_t)h->max_connections + 256;
    if (rl.rlim_cur < need) {
        rlim_t lim = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        struct rlimit nl = {.rlim_cur = lim, .rlim_max = rl.rlim_max};
        if (!setrlimit(RLIMIT_NOFILE, &nl)) rl.rlim_cur = lim;
    }
    if (rl.rlim_cur < need) {
        int fit = rl.rlim_cur > 512 ? (int)(rl.rlim_cur - 256) : (int)(rl.rlim_cur / 2);
        cllm_log(CLLM_LOG_WARN, "the open-file limit is %llu (hard %llu): serving at most %d connections instead of "
                 "%d (raise it with ulimit -n)", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                 fit, h->max_connections);
        h->max_connections = fit;
    }
}

cllm_status srv_http_listen(srv_http *h, const char *host, int port, int listen_fd) {
    if (!h->read_buf && !(h->read_buf = malloc(SRV_READ_BUF))) return cllm_error(CLLM_ERR_OOM, "out of memory");
    if (!h->max_body_memory)
        h->max_body_memory = h->max_body_bytes * 8 > ((size_t)1 << 30) ? h->max_body_bytes * 8 : (size_t)1 << 30;
    uv_tcp_init(h->loop, &h->listener);
    h->listener.data = h;
    int rc;
    if (listen_fd >= 0) {
        int type = 0;
        socklen_t tl = sizeof type;
        if (getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_STREAM)
            return cllm_error(CLLM_ERR_INVALID_ARG, "--listen-fd %d is not a stream socket", listen_fd);
        rc = uv_tcp_open(&h->listener, listen_fd);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        int gai = getaddrinfo(host, ps, &hints, &ai);
        if (gai || !ai)
            return cllm_error(CLLM_ERR_INVALID_ARG, "--host '%s' does not resolve: %s", host, gai_strerror(gai));
        rc = uv_tcp_bind(&h->listener, ai->ai_addr, 0);
        freeaddrinfo(ai);
    }
    if (!rc) rc = uv_listen((uv_stream_t *)&h->listener, SOMAXCONN > 4096 ? SOMAXCONN : 4096, on_connection);
    if (rc) {
        if (listen_fd >= 0)
            return cllm_error(CLLM_ERR_IO, "cannot listen on the inherited socket (--listen-fd %d): %s", listen_fd,
                              uv_strerror(rc));
        return cllm_error(CLLM_ERR_IO, "cannot listen on %s:%d (%s): pick another --port", host, port,
                          uv_strerror(rc));
    }
    h->listening = true;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    h->port = port;
    if (!uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len))
        h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return CLLM_OK;
}

void srv_http_free(srv_http *h) {
    if (!h) return;
    free(h->ip_table);
    h->ip_table = NULL;
    free(h->read_buf);
    h->read_buf = NULL;
}

/* ------------------------------------------------------------ routes */
#define GET_BODY_LIMIT ((size_t)64 << 10) /* a GET may carry a small body; it is ignored */

static bool authorized(const char *api_key, cllm_http_request *req) {
    if (!api_key) return true;
    const char *h = cllm_http_request_header(req, "Authorization", NULL);
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(api_key);
    while (a && (h[a - 1] == ' ' || h[a - 1] == '\t')) a--;
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(h[i] ^ api_key[i]);
    return diff == 0;
}

/* The head decisions (http_conn.h, srv_http.routes): the index of the
 * route, the body let in; or -1 after queueing the error response (the
 * connection then closes). */
/* CORS (cors.h) for a request with an Origin: a preflight is answered here
 * (true: done; the connection then closes like any answer on the head),
 * any other request gets its header lines in c->cors for its response. */
static bool cors_head(srv_http *h, srv_conn *c, cllm_http_request *req) {
    const char *origin = h->cors ? cllm_http_request_header(req, "Origin", NULL) : NULL;
    if (!origin) return false;
    const char *method = cllm_http_request_header(req, "Access-Control-Request-Method", NULL);
    if (!strcmp(req->method, "OPTIONS") && method) {
        char hdrs[SRV_CORS_MAX_REQUEST_HEADERS + 1536], body[96];
        int st = srv_cors_preflight(h->cors, origin, method,
                                    cllm_http_request_header(req, "Access-Control-Request-Headers", NULL), hdrs,
                                    sizeof hdrs, body, sizeof body);
        size_t n = strlen(body);
        char *b = malloc(n + 1);
        if (b) memcpy(b, body, n + 1);
        srv_respond(c, st, "text/plain; charset=utf-8", b, b ? n : 0, hdrs);
        return true;
    }
    char lines[SRV_CORS_MAX_ORIGIN + 256];
    if (srv_cors_response_headers(h->cors, origin, cllm_http_request_header(req, "Cookie", NULL) != NULL, lines,
                                  sizeof lines))
        c->cors = strdup(lines); /* out of memory: the answer goes without them */
    return false;
}

static int route_head(srv_http *h, srv_conn *c, cllm_http_request *req) {
    if (cors_head(h, c, req)) return -1;
    char path[256];
    cllm_http_request_path(req, path, sizeof path);
    const srv_http_route *routes = h->routes;
    int r = 0;
    while (r < h->n_routes && strcmp(path, routes[r].path)) r++;
    if (r == h->n_routes) {
        srv_respond_errorf(c, 404, "NotFoundError", NULL, "no route %s %s", req->method, path);
        return -1;
    }
    bool head = !strcmp(req->method, "HEAD") && !strcmp(routes[r].method, "GET");
    if (strcmp(req->method, routes[r].method) && !head) {
        srv_respond_errorf(c, 405, "invalid_request_error", NULL, "method %s is not allowed on %s (use %s)",
                           req->method, path, routes[r].method);
        return -1;
    }
    if (!routes[r].open && !authorized(h->api_key, req)) {
        cllm_openai_error err;
        cllm_openai_error_set(&err, 401, "invalid_request_error", NULL,
                              "missing or wrong API key: send the header 'Authorization: Bearer <key>'");
        snprintf(err.code, sizeof err.code, "invalid_api_key");
        srv_respond_error(c, &err);
        return -1;
    }
    if (routes[r].generates && atomic_load(&h->draining)) {
        srv_respond_errorf(c, 503, "service_unavailable", NULL, "the %s is shutting down", h->who);
        return -1;
    }
    size_t limit = !strcmp(routes[r].method, "POST") ? h->max_body_bytes : GET_BODY_LIMIT;
    if (!cllm_http_request_accept_body(req, limit)) {
        srv_respond_errorf(c, 413, "invalid_request_error", NULL, "%s", req->error);
        return -1;
    }
    return r;
}
