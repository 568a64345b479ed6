/* Proxied requests (router.h): a request is a srv_task on its client
 * connection; each attempt is one upstream transfer (upstream.h) to the
 * replica the policy picked.
 *
 * The answer goes back as the replica sent it: a JSON body once whole
 * (status and Content-Type kept), an event stream event by event
 * (sse_relay.h) as the replica produces it, paused while the client reads
 * slowly (curl's CURL_WRITEFUNC_PAUSE until the write queue drains). Every
 * answer carries "X-Cllm-Replica: URL".
 *
 * Failures: an attempt that could not connect, broke, or got a 500/502/503/
 * 504 before any byte went to the client is retried on a replica it has not
 * tried, up to max_rpc_retries times while the request is younger than
 * rpc_timeout_s; a connection failure also takes the replica out of the
 * rotation until its health check passes. Once a stream has started, a
 * broken attempt ends it with an OpenAI error event and "data: [DONE]" (as
 * cllm serve ends a stream whose engine failed).
 *
 * Lifetime: the proxy lives until it answered and its transfer ended, or
 * its client left. A client that leaves cancels the transfer at once (the
 * replica sees the hang-up and aborts the request), except from inside one
 * of the transfer's own callbacks, where the callback aborts it instead. */
#include "router/router_internal.h"

#include "core/status.h"
#include "router/sse_relay.h"
#include "server/http_request.h"
#include "server/openai_protocol.h"
#include "server/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESPONSE_BYTES ((size_t)256 << 20)

typedef struct rt_proxy {
    srv_task base;
    cllm_router *r;
    struct rt_proxy *prev, *next; /* r->proxies */
    srv_conn *held;               /* kept alive until the proxy is freed */
    int route;
    bool post;
    char *target;                 /* path + query, owned */
    char *body;                   /* owned */
    size_t len;
    struct curl_slist *hdrs;      /* what every attempt sends (rt_request_headers) */
    bool has_key;
    uint64_t key;                 /* prefix_aware */
    double t_arrival;
    int attempts;
    /* the current attempt */
    rt_replica *rep;
    rt_xfer x;
    double t_attempt;
    long status;
    char ctype[128];
    bool head_seen, sse, began, paused;
    cllm_sse_relay relay;
    cllm_strbuf resp;             /* a JSON (non-stream) answer being received */
    /* state */
    bool gone;                    /* the client left */
    bool in_cb;                   /* inside a callback of x */
    bool keying;                  /* the prefix key is computed on the worker pool */
    uv_work_t work;
    /* the last failed attempt, for the answer when no retry is left */
    char err[400];
    int err_status;               /* an upstream 5xx kept to pass on, or 0 */
    char *err_body;
    size_t err_len;
    char err_ctype[128];
    unsigned char tried[];        /* (n_reps) */
} rt_proxy;

static void attempt(rt_proxy *p);

/* ------------------------------------------------------------ lifetime */
static void end_attempt(rt_proxy *p) {
    if (p->x.easy) {
        rt_curl_cancel(p->r->curl, &p->x);
        curl_easy_cleanup(p->x.easy);
        p->x.easy = NULL;
    }
    if (p->rep) p->rep->inflight--;
    p->rep = NULL;
    cllm_sse_relay_free(&p->relay);
    cllm_strbuf_free(&p->resp);
    p->head_seen = p->sse = p->paused = false;
    p->status = 0;
    p->ctype[0] = 0;
}

static void proxy_free(rt_proxy *p) {
    end_attempt(p);
    cllm_router *r = p->r;
    if (p->prev) p->prev->next = p->next;
    else if (r->proxies == p) r->proxies = p->next;
    if (p->next) p->next->prev = p->prev;
    if (p->base.conn) srv_conn_set_task(p->base.conn, NULL);
    srv_conn_release(p->held);
    atomic_fetch_sub(&r->inflight, 1);
    free(p->target);
    free(p->body);
    curl_slist_free_all(p->hdrs);
    free(p->err_body);
    free(p);
}

/* The client got its answer (srv_respond / srv_stream_end took the task off
 * the connection): nothing more goes to it. */
static void detach(rt_proxy *p) { p->base.conn = NULL; }

static void replica_header(rt_proxy *p, char *out, size_t size, int status) {
    snprintf(out, size, "X-Cllm-Replica: %s\r\n%s", p->rep ? p->rep->url : "", status == 503 || status == 429
                                                                                 ? "Retry-After: 1\r\n" : "");
}

/* The event stream's head to the client (once), naming the replica. */
static void begin_stream(rt_proxy *p) {
    if (p->began) return;
    char extra[400];
    replica_header(p, extra, sizeof extra, 200);
    srv_stream_begin_ex(p->base.conn, extra);
    p->began = true;
}

/* An OpenAI error event, then [DONE], then the end of the stream. */
static void end_stream_with_error(rt_proxy *p, const char *msg) {
    srv_conn *c = p->base.conn;
    if (!c) return;
    if (!p->relay.done) {
        cllm_openai_error err;
        cllm_openai_error_set(&err, 503, "service_unavailable", NULL, "%s", msg);
        size_t n = 0;
        char *f = cllm_sse_frame_take(cllm_openai_format_error(&err), &n);
        if (f) srv_stream_write(c, f, n);
        char *d = strdup(CLLM_SSE_DONE);
        if (d) srv_stream_write(c, d, strlen(CLLM_SSE_DONE));
    }
    if (p->base.conn) srv_stream_end(p->base.conn);
    detach(p);
}

/* No (more) replica: pass on the last replica's 5xx, or say what failed. */
static void answer_failure(rt_proxy *p) {
    srv_conn *c = p->base.conn;
    if (!c) return;
    if (p->err_status) {
        srv_respond(c, p->err_status, p->err_ctype[0] ? p->err_ctype : "application/json", p->err_body, p->err_len,
                    "Retry-After: 1\r\n");
        p->err_body = NULL;
    } else if (!p->attempts) {
        p->r->unrouted++;
        srv_respond_errorf(c, 503, "service_unavailable", NULL, "no replica is healthy; retry later");
    } else {
        srv_respond_errorf(c, 502, "service_unavailable", NULL, "%s", p->err);
    }
    detach(p);
}

/* ------------------------------------------------------------ task ops */
static void on_writable(srv_task *t) {
    rt_proxy *p = (rt_proxy *)t;
    if (!p->paused || !p->base.conn || srv_conn_write_queue(p->base.conn) > SRV_WRITE_HIGH / 2) return;
    p->paused = false;
    p->in_cb = true; /* curl may call the write callback from inside curl_easy_pause */
    curl_easy_pause(p->x.easy, CURLPAUSE_CONT);
    p->in_cb = false;
    if (p->gone) proxy_free(p);
}

static void on_closed(srv_task *t) {
    rt_proxy *p = (rt_proxy *)t;
    p->base.conn = NULL;
    p->gone = true;
    if (p->in_cb || p->keying) return; /* the callback aborts the transfer / the key's done frees */
    proxy_free(p);
}

static void on_stop(srv_task *t) {
    rt_proxy *p = (rt_proxy *)t;
    if (p->in_cb || p->keying) return; /* answered when it comes back (the connections close after) */
    if (p->began) end_stream_with_error(p, "the router is shutting down");
    else if (p->base.conn) {
        srv_respond_errorf(p->base.conn, 503, "service_unavailable", NULL, "the router is shutting down");
        detach(p);
    }
    proxy_free(p);
}

static const srv_task_ops PROXY_OPS = {.writable = on_writable, .closed = on_closed, .stop = on_stop};

/* ------------------------------------------------------------ curl callbacks */
static size_t on_header(char *line, size_t size, size_t n, void *arg) {
    rt_proxy *p = arg;
    p->rep->last_rx = rt_now();
    rt_header_line(line, size * n, &p->status, p->ctype, sizeof p->ctype);
    return size * n;
}

static size_t write_sse(rt_proxy *p, char *data, size_t len) {
    srv_conn *c = p->base.conn;
    if (srv_conn_write_queue(c) > SRV_WRITE_HIGH) { /* the client reads slowly: hold the replica */
        p->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    char *ev = NULL;
    size_t n = 0;
    if (cllm_sse_relay_feed(&p->relay, data, len, &ev, &n) != CLLM_OK) {
        snprintf(p->err, sizeof p->err, "replica %s: %s", p->rep->url, cllm_last_error());
        free(ev);
        return 0; /* aborts the transfer: done ends the stream with the error */
    }
    if (!n) return len;
    begin_stream(p);
    srv_stream_write(c, ev, n); /* may close the connection: p->gone */
    return p->gone ? 0 : len;
}

static size_t on_write(char *data, size_t size, size_t n, void *arg) {
    rt_proxy *p = arg;
    size_t len = size * n;
    if (p->gone || !p->base.conn) return 0;
    p->rep->last_rx = rt_now(); /* the replica is alive (rt_replica_health_timed_out) */
    if (!p->head_seen) {
        p->head_seen = true;
        rt_hist_observe(&p->rep->ttfb, rt_now() - p->t_attempt);
        p->sse = p->status == 200 && !strncasecmp(p->ctype, "text/event-stream", 17);
    }
    p->in_cb = true;
    size_t ret;
    if (p->sse) {
        ret = write_sse(p, data, len);
    } else if (p->resp.len + len > MAX_RESPONSE_BYTES) {
        snprintf(p->err, sizeof p->err, "replica %s: the response exceeds %zu bytes", p->rep->url, MAX_RESPONSE_BYTES);
        ret = 0;
    } else {
        cllm_strbuf_append(&p->resp, data, len);
        ret = p->resp.oom ? 0 : len;
    }
    p->in_cb = false;
    return ret;
}

/* ------------------------------------------------------------ attempts */
static bool retryable_status(long s) { return s == 500 || s == 502 || s == 503 || s == 504; }

/* A connection-level failure: the replica process is gone or not answering. */
static bool dead_replica(CURLcode rc) {
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE || rc == CURLE_OPERATION_TIMEDOUT ||
           rc == CURLE_COULDNT_RESOLVE_HOST;
}

static void succeed(rt_proxy *p) {
    rt_replica *rep = p->rep;
    srv_conn *c = p->base.conn;
    rt_hist_observe(&rep->latency, rt_now() - p->t_attempt);
    if (p->sse) {
        begin_stream(p);
        size_t rest = cllm_sse_relay_pending(&p->relay);
        if (rest && p->base.conn) { /* the stream ended without a blank line: pass the tail on as is */
            char *t = malloc(rest);
            if (t) {
                memcpy(t, p->relay.buf, rest);
                srv_stream_write(p->base.conn, t, rest);
            }
        }
        if (p->base.conn) srv_stream_end(p->base.conn);
    } else {
        char extra[400];
        replica_header(p, extra, sizeof extra, (int)p->status);
        size_t n = p->resp.len;
        char *body = cllm_strbuf_steal(&p->resp); /* "" when the body was empty */
        srv_respond(c, (int)p->status, p->ctype[0] ? p->ctype : "application/json", body, body ? n : 0, extra);
    }
    detach(p);
}

/* The attempt failed (rc, or an upstream 5xx kept in resp): retry, or answer. */
static void fail_attempt(rt_proxy *p, CURLcode rc, const char *why) {
    cllm_router *r = p->r;
    rt_replica *rep = p->rep;
    rep->failures++;
    if (!p->err[0] || rc != CURLE_WRITE_ERROR) {
        if (rc == CURLE_OK)
            snprintf(p->err, sizeof p->err, "replica %s answered HTTP %ld", rep->url, p->status);
        else
            snprintf(p->err, sizeof p->err, "replica %s failed: %s", rep->url,
                     why ? why : p->x.errbuf[0] ? p->x.errbuf : curl_easy_strerror(rc));
    }
    if (p->began) { /* the stream had started: it cannot move, it ends here */
        if (dead_replica(rc)) rt_replica_set_health(r, rep, false, false, p->err);
        end_stream_with_error(p, p->err);
        proxy_free(p);
        return;
    }
    if (rc == CURLE_OK) { /* keep the 5xx to pass on if nothing better comes */
        free(p->err_body);
        size_t n = p->resp.len;
        p->err_body = cllm_strbuf_steal(&p->resp);
        p->err_len = p->err_body ? n : 0;
        p->err_status = (int)p->status;
        snprintf(p->err_ctype, sizeof p->err_ctype, "%s", p->ctype);
    }
    if (dead_replica(rc)) rt_replica_set_health(r, rep, false, false, p->err);
    end_attempt(p);
    bool retry = p->attempts <= r->p.max_rpc_retries && rt_now() - p->t_arrival < r->p.rpc_timeout_s;
    if (retry) {
        attempt(p); /* another replica, or the answer when none is left */
        return;
    }
    answer_failure(p);
    proxy_free(p);
}

static void on_done(rt_xfer *x, CURLcode rc) {
    rt_proxy *p = (rt_proxy *)((char *)x - offsetof(rt_proxy, x));
    if (p->gone || !p->base.conn) { proxy_free(p); return; }
    if (rc == CURLE_OK && !p->head_seen) { /* an empty body */
        p->head_seen = true;
        p->sse = false;
    }
    if (rc == CURLE_OK && !(retryable_status(p->status) && !p->began)) {
        succeed(p);
        proxy_free(p);
        return;
    }
    fail_attempt(p, rc, NULL);
}

static int pick(rt_proxy *p) {
    cllm_router *r = p->r;
    cllm_router_candidate cand[r->n_reps];
    for (int i = 0; i < r->n_reps; i++) {
        rt_replica *rep = &r->reps[i];
        int polled = rep->load_known ? rep->running + rep->waiting : 0;
        cand[i] = (cllm_router_candidate){.eligible = rep->healthy && !p->tried[i],
                                          .load = polled > rep->inflight ? polled : rep->inflight, .id = rep->id};
    }
    bool generate = p->route == RT_R_COMPLETIONS || p->route == RT_R_CHAT;
    if (!generate) /* the other routes are cheap: spread them evenly */
        return cllm_router_pick(CLLM_ROUTER_ROUND_ROBIN, cand, r->n_reps, &r->rr_any, false, 0, 0);
    return cllm_router_pick(r->p.policy, cand, r->n_reps, &r->rr, p->has_key, p->key, r->p.balance_abs_threshold);
}

static void attempt(rt_proxy *p) {
    cllm_router *r = p->r;
    int i = pick(p);
    if (i < 0) {
        answer_failure(p);
        proxy_free(p);
        return;
    }
    rt_replica *rep = &r->reps[i];
    p->tried[i] = 1;
    char *url = rt_url(rep, p->target);
    CURL *e = url ? rt_curl_easy(&p->x, url) : NULL;
    free(url);
    if (!e) {
        if (p->base.conn) srv_respond_errorf(p->base.conn, 500, "internal_error", NULL, "out of memory");
        detach(p);
        proxy_free(p);
        return;
    }
    p->rep = rep;
    rep->inflight++;
    rep->requests++;
    if (p->attempts++ > 0) rep->retries++;
    p->t_attempt = rt_now();
    p->err[0] = 0;
    cllm_sse_relay_init(&p->relay, 0);
    p->x.done = on_done;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->hdrs);
    if (p->post) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->p.health_check_timeout_s * 1000));
    if (rt_curl_start(r->curl, &p->x) != CLLM_OK) fail_attempt(p, CURLE_FAILED_INIT, cllm_last_error());
}

/* ------------------------------------------------------------ the prefix key */
static void key_work(uv_work_t *w) {
    rt_proxy *p = w->data;
    p->has_key = cllm_router_prefix_key(p->body, p->len, p->route == RT_R_CHAT, (size_t)p->r->p.prefix_bytes, &p->key);
}

static void key_done(uv_work_t *w, int status) {
    rt_proxy *p = w->data;
    (void)status;
    p->keying = false;
    if (p->gone || !p->base.conn) { proxy_free(p); return; }
    attempt(p);
}

/* ------------------------------------------------------------ entry points */
void rt_proxy_start(cllm_router *r, srv_conn *c, cllm_http_request *req, int route) {
    rt_proxy *p = calloc(1, sizeof *p + (size_t)r->n_reps);
    bool post = !strcmp(req->method, "POST");
    if (p) p->target = malloc(req->url_len + 1);
    if (p) p->hdrs = rt_request_headers(post, cllm_http_request_header(req, "Authorization", NULL));
    if (!p || !p->target || !p->hdrs) {
        if (p) free(p->target), curl_slist_free_all(p->hdrs);
        free(p);
        srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory");
        return;
    }
    memcpy(p->target, req->buf, req->url_len); /* path and query, as the client sent them */
    p->target[req->url_len] = 0;
    p->r = r;
    p->route = route;
    p->post = post;
    p->body = req->body; /* the body moves to the proxy */
    p->len = req->body_len;
    req->body = NULL;
    req->body_len = req->body_cap = 0;
    p->t_arrival = rt_now();
    p->base.ops = &PROXY_OPS;
    p->held = c;
    srv_conn_hold(c);
    srv_conn_set_task(c, &p->base);
    atomic_fetch_add(&r->inflight, 1);
    p->next = r->proxies;
    if (r->proxies) r->proxies->prev = p;
    r->proxies = p;
    bool keyed = r->p.policy == CLLM_ROUTER_PREFIX_AWARE && (route == RT_R_COMPLETIONS || route == RT_R_CHAT) && p->body;
    if (keyed) {
        p->work.data = p;
        p->keying = true;
        if (!uv_queue_work(&r->loop, &p->work, key_work, key_done)) return;
        p->keying = false; /* cannot queue: no key, least load */
    }
    attempt(p);
}

void rt_proxy_fail_replica(cllm_router *r, rt_replica *rep, const char *why) {
    rt_proxy *p = r->proxies;
    while (p) {
        rt_proxy *next = p->next;
        if (p->rep == rep && p->x.active && !p->in_cb && !p->gone) {
            rt_curl_cancel(r->curl, &p->x);
            fail_attempt(p, CURLE_RECV_ERROR, why); /* may free p, never another proxy */
        }
        p = next;
    }
}

void rt_proxy_cancel_all(cllm_router *r) {
    while (r->proxies) {
        rt_proxy *p = r->proxies;
        if (p->keying) { /* its work comes back later: it frees itself then (the client is answered here) */
            r->proxies = p->next;
            if (p->next) p->next->prev = NULL;
            p->next = p->prev = NULL;
            if (p->base.conn) srv_respond_errorf(p->base.conn, 503, "service_unavailable", NULL, "the router is shutting down");
            detach(p);
            p->gone = true;
            continue;
        }
        on_stop(&p->base);
    }
}
