/* The HTTP/1.1 front door on a libuv loop: listening, connections,
 * deadlines, reading requests (server/http_request.h), writing responses and
 * SSE chunks, lingering close. Shared by `cllm serve` (server/http_server.c:
 * the engine behind it) and `cllm router` (router/router.c: replicas behind
 * it); each owner fills a srv_http (its routes, limits, API key) and answers
 * the requests that pass the head checks through the ops.
 *
 * Everything here runs on the loop thread, except that `draining` and
 * `drain_reason` may be set from another thread (draining last).
 *
 * Memory per connection: ~1 KiB idle; while a request arrives, its URL and
 * headers (16 KiB + 8 KiB at most) and its body (the route's limit, and all
 * connections' bodies together at most max_body_memory, else 503); while
 * answering, the queued response bytes (producers stop above SRV_WRITE_HIGH).
 */
#ifndef CLLM_SERVER_HTTP_CONN_H
#define CLLM_SERVER_HTTP_CONN_H

#include "cllm.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct cllm_http_request;
typedef struct srv_conn srv_conn;
typedef struct srv_http srv_http;
typedef struct srv_ip srv_ip; /* per-address connection count (http_conn.c) */

/* An in-progress request on a connection (a generate job, a worker task, a
 * proxied request): the connection calls these on the loop thread. */
typedef struct srv_task srv_task;
typedef struct srv_task_ops {
    void (*writable)(srv_task *t); /* the write queue drained below the low mark: produce more */
    void (*closed)(srv_task *t);   /* the client is gone: detach (abort work), t->conn is NULL after;
                                    * never called from inside the task's own srv_respond* / srv_stream_* */
    void (*stop)(srv_task *t);     /* the shutdown grace period is over: finish now */
} srv_task_ops;
struct srv_task {
    const srv_task_ops *ops;
    srv_conn *conn;             /* NULL once detached */
};

/* One route of an OpenAI front (cllm serve, cllm router). */
typedef struct srv_http_route {
    const char *path, *method;
    bool open;      /* answered without the API key (health, metrics, version) */
    bool generates; /* completions / chat: refused while the front drains */
} srv_http_route;

/* What the owner answers (loop thread). */
typedef struct srv_http_ops {
    /* A whole request arrived on routes[route] (its head passed the checks
     * of srv_http.routes): answer it (now, or later through a srv_task). */
    void (*dispatch)(srv_http *h, srv_conn *c, struct cllm_http_request *req, int route);
    /* Optional: the number of open connections changed (metrics). */
    void (*connections)(srv_http *h, int n);
    /* Optional: close_all finished (no connection left): close the owner's
     * own loop handles so that uv_run returns. */
    void (*exited)(srv_http *h);
} srv_http_ops;

struct srv_http {
    /* set by the owner before srv_http_listen */
    const srv_http_ops *ops;
    void *owner;                   /* the cllm_server, the router: the ops' context */
    uv_loop_t *loop;               /* borrowed */
    double timeout_keep_alive_s;   /* an idle connection closes after this long */
    double timeout_request_read_s; /* a started request must arrive whole within this long (else 408) */
    int max_connections;           /* more get 503 (srv_http_fit_fd_limit sets it) */
    int max_connections_per_ip;    /* more from one address get 429; 0: no limit */
    /* The head of every request is decided here before a body byte is kept:
     * 404 for a path not in routes, 405 for another method (HEAD is allowed
     * on GET routes), 401 on a route that is not open without
     * `Authorization: Bearer api_key` (constant-time compare; NULL: none
     * needed), 503 on a generating route while draining ("the WHO is
     * shutting down"), 413 past the body limit (max_body_bytes for POST,
     * 64 KiB for GET); a refused request's connection closes. */
    const srv_http_route *routes;  /* (n_routes) */
    int n_routes;
    const char *api_key;
    const struct srv_cors *cors;   /* NULL: no CORS headers; else preflights are answered before the routes
                                    * and responses to requests with an Origin carry its headers (cors.h) */
    size_t max_body_bytes;
    const char *who;               /* "server", "router" */
    size_t max_body_memory;        /* bodies of all connections together; beyond -> 503;
                                    * 0: max(1 GiB, 8 x max_body_bytes) */
    /* shutting down: new connections are refused with drain_reason (503),
     * responses say "Connection: close". Any thread. */
    atomic_bool draining;
    const char *volatile drain_reason; /* static string, set before draining; NULL: "shutting down" */
    /* state (loop thread) */
    uv_tcp_t listener;
    bool listening;
    int port;                      /* bound port */
    srv_conn *conns;               /* every open connection (list) */
    int n_conns;
    srv_ip **ip_table;             /* (SRV_IP_BUCKETS) */
    size_t body_bytes;             /* request bodies buffered now, all connections */
    bool exiting;                  /* close_all ran: close everything and leave */
    uv_timer_t exit_timer;         /* force-closes connections still flushing at exit */
    bool exit_timer_on;
    char *read_buf;                /* (SRV_READ_BUF) one per loop: reads are consumed before the next */
};
#define SRV_READ_BUF ((size_t)64 << 10)

/* Raise the soft RLIMIT_NOFILE to fit `want` connections (+ 256 for files,
 * logs, the engine); h->max_connections = want, or fewer (warned) when the
 * hard limit is too low. */
void srv_http_fit_fd_limit(srv_http *h, int want);

/* Listen on host:port (port 0: a free port; h->port gets the bound one), or,
 * with listen_fd >= 0, on that already bound and listening socket (inherited
 * from a parent: cllm serve --data-parallel-size). Errors:
 * CLLM_ERR_INVALID_ARG (host does not resolve, listen_fd is not a socket),
 * CLLM_ERR_IO (cannot bind: port in use, permission). */
cllm_status srv_http_listen(srv_http *h, const char *host, int port, int listen_fd);

/* Free what the connections left (the per-address table) once the loop has
 * ended. */
void srv_http_free(srv_http *h);

/* Loop thread: stop accepting (close the listener). */
void srv_conn_drain_all(srv_http *h);
/* Loop thread: every task's stop() (the grace period is over). */
void srv_conn_stop_all(srv_http *h);
/* Loop thread: close idle connections now, the rest after their writes (2 s
 * at most); ops->exited runs once none is left. */
void srv_conn_close_all(srv_http *h);

/* Answer the current request: status, Content-Type, body (owned, free()).
 * extra: more header lines ("Name: value\r\n"...), or NULL. */
void srv_respond(srv_conn *c, int status, const char *ctype, char *body, size_t len, const char *extra);
/* An OpenAI error body (server/openai_protocol.h) with its status. */
struct cllm_openai_error;
void srv_respond_error(srv_conn *c, const struct cllm_openai_error *err);
void srv_respond_errorf(srv_conn *c, int status, const char *type, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* SSE: 200 head (chunked; HTTP/1.0: close-delimited; extra: more header
 * lines or NULL), then chunks (data owned, free()), then the end (the
 * request is done). */
void srv_stream_begin(srv_conn *c);
void srv_stream_begin_ex(srv_conn *c, const char *extra);
void srv_stream_write(srv_conn *c, char *data, size_t len);
void srv_stream_end(srv_conn *c);
size_t srv_conn_write_queue(const srv_conn *c); /* bytes queued, not yet sent */
#define SRV_WRITE_HIGH ((size_t)1 << 20)        /* streams stop producing above this */
void srv_conn_set_task(srv_conn *c, srv_task *t);
void srv_conn_hold(srv_conn *c);                 /* keep the memory alive (worker tasks) */
void srv_conn_release(srv_conn *c);

#endif
