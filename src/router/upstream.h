/* HTTP client transfers to the replicas, driven by the router's libuv loop:
 * libcurl's multi interface in its event-driven form
 * (curl_multi_socket_action: curl says which sockets to watch and when to
 * time out; uv_poll and a uv_timer tell it back), the pattern of curl's own
 * multi-uv example. One loop thread runs every transfer: no thread per
 * request, keep-alive connections to each replica reused from curl's
 * connection cache, chunked decoding and response parsing done by libcurl.
 *
 * Loop thread only. A transfer's callbacks (CURLOPT_WRITEFUNCTION, ...) run
 * inside curl; they must not remove or free their own transfer: do that in
 * done, which runs after curl returned.
 */
#ifndef CLLM_ROUTER_UPSTREAM_H
#define CLLM_ROUTER_UPSTREAM_H

#include "cllm.h"
#include "tokenizer/strbuf.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct rt_curl rt_curl;

/* One transfer: the owner sets up easy (URL, callbacks) and done. */
typedef struct rt_xfer {
    CURL *easy;                                   /* owned by whoever created it */
    void (*done)(struct rt_xfer *x, CURLcode rc); /* finished (rc: CURLE_OK or why not); x is removed */
    bool active;                                  /* added to the multi handle */
    char errbuf[CURL_ERROR_SIZE];                 /* curl's message (CURLOPT_ERRORBUFFER) */
} rt_xfer;

/* Create the client on loop. CLLM_ERR_OOM. */
cllm_status rt_curl_create(uv_loop_t *loop, rt_curl **out);
/* Cancel every transfer left (done is not called), close the handles; the
 * loop must run on until they are closed. NULL is a no-op. */
void rt_curl_destroy(rt_curl *u);

/* Start x (x->easy set up; done set). CLLM_ERR_IO if curl refuses it. */
cllm_status rt_curl_start(rt_curl *u, rt_xfer *x);
/* Stop x without calling done (not from inside x's own callbacks). */
void rt_curl_cancel(rt_curl *u, rt_xfer *x);

/* A new easy handle with the router's defaults: no proxy from the
 * environment, no signals, HTTP/1.1, the error buffer of x. NULL on out of
 * memory. */
CURL *rt_curl_easy(rt_xfer *x, const char *url);

/* The header list a request to a replica sends (CURLOPT_HTTPHEADER): no
 * "Expect: 100-continue", "Content-Type: application/json" when json, and
 * "Authorization: auth" unless auth is NULL. Caller-owned
 * (curl_slist_free_all); NULL on out of memory. */
struct curl_slist *rt_request_headers(bool json, const char *auth);

/* One response header line as curl hands it to CURLOPT_HEADERFUNCTION
 * (len bytes, not NUL-terminated, network input: fuzzed in
 * fuzz/router_fuzz.c): a status line "HTTP/x y ..." sets *status (0 when it
 * does not parse) and clears ctype; "Content-Type: v" copies v (trimmed,
 * cut to ctype_size - 1 bytes) into ctype. Other lines change nothing. */
void rt_header_line(const char *line, size_t len, long *status, char *ctype, size_t ctype_size);

/* A GET whose body is kept (up to limit bytes; more is an error): the
 * health checks, the load polls, the statistics fan-out. */
typedef struct rt_fetch rt_fetch;
typedef void (*rt_fetch_cb)(rt_fetch *f, void *arg);
struct rt_fetch {
    rt_xfer x;
    cllm_strbuf body;    /* body.p (NUL-terminated), body.len bytes */
    size_t limit;
    long status;         /* HTTP status; 0 when none arrived */
    CURLcode rc;
    struct curl_slist *hdrs;
    rt_fetch_cb cb;      /* called once, then the fetch is freed */
    void *arg;
    rt_curl *u;
};
/* Start GET url with a whole-transfer timeout; auth: an Authorization
 * header value or NULL. cb runs once (on the loop) with f->status, f->rc,
 * f->body; f is freed after cb returns. NULL on failure to start (cb is
 * not called). */
rt_fetch *rt_fetch_get(rt_curl *u, const char *url, double timeout_s, size_t limit, const char *auth, rt_fetch_cb cb,
                       void *arg);
/* Stop f without calling its cb, and free it. NULL is a no-op. */
void rt_fetch_cancel(rt_fetch *f);

#endif
