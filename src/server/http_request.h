/* One HTTP/1.1 request read from a byte stream, strictly (RFC 9110/9112),
 * with bounded memory. Wraps llhttp (Node.js's parser, Debian node-llhttp)
 * and adds what a server decides on the head: exactly one Host on
 * HTTP/1.1, no transfer coding but "chunked" (501), a URL of at most
 * max_url_bytes (414), headers of at most max_header_bytes / max_headers
 * (431), Expect only "100-continue" (417), HTTP/1.x only (505). llhttp
 * itself rejects duplicate or conflicting Content-Length, Content-Length
 * with Transfer-Encoding, bad chunk framing and bare LF (request smuggling
 * vectors): those are 400, and every error closes the connection.
 *
 * No sockets here: the caller feeds bytes as they arrive and acts on the
 * events, so the whole state machine is tested byte by byte without I/O
 * (tests/server/test_http_request.c). Not thread-safe (one connection).
 *
 * Feeding stops (pauses) at two points: once the head is complete (the
 * caller decides route, auth and size on the headers alone, before any body
 * byte is buffered, then calls cllm_http_request_accept_body or rejects),
 * and once the message is complete (the body is whole). Bytes after the
 * end of a message are left unconsumed (the next, pipelined request).
 */
#ifndef CLLM_SERVER_HTTP_REQUEST_H
#define CLLM_SERVER_HTTP_REQUEST_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cllm_http_limits {
    size_t max_url_bytes;     /* request-target; beyond -> 414; default 8 KiB */
    size_t max_header_bytes;  /* all field names + values; beyond -> 431; default 16 KiB */
    int max_headers;          /* field lines; beyond -> 431; default 100 */
} cllm_http_limits;

cllm_http_limits cllm_http_default_limits(void);

typedef enum cllm_http_event {
    CLLM_HTTP_NEED_MORE = 0,  /* every byte consumed; feed more */
    CLLM_HTTP_HEAD = 1,       /* head complete: decide, then accept_body (or reject) and feed on */
    CLLM_HTTP_MESSAGE = 2,    /* message complete (body whole); bytes after it are not consumed */
    CLLM_HTTP_ERROR = 3,      /* malformed or refused: answer error_status, then close */
} cllm_http_event;

typedef struct cllm_http_header {
    uint32_t name_off, name_len, value_off, value_len; /* into the request's header buffer */
} cllm_http_header;

typedef struct cllm_http_request {
    llhttp_t parser;
    cllm_http_limits lim;
    bool started;             /* a byte of the current message arrived */
    bool head_done, complete;
    /* head, valid after CLLM_HTTP_HEAD */
    char method[16];
    int version_major, version_minor;
    char *buf;                /* URL then header names/values, NUL-separated; owned */
    size_t buf_len, buf_cap;
    size_t url_len;           /* URL at buf[0..url_len) */
    cllm_http_header *hdrs;   /* (n_hdrs) owned */
    int n_hdrs, cap_hdrs;
    int cur_part;             /* 0 url, 1 field, 2 value: the part being appended to */
    bool chunked;             /* Transfer-Encoding: chunked */
    int64_t content_length;   /* -1: none */
    bool expect_continue;     /* Expect: 100-continue */
    /* body, after accept_body */
    size_t body_limit;        /* 0: not accepted yet */
    char *body;               /* NUL-terminated, owned */
    size_t body_len, body_cap;
    /* error, after CLLM_HTTP_ERROR */
    int error_status;         /* 400, 413, 414, 417, 431, 501, 505 */
    char error[160];          /* what was wrong, for the client */
} cllm_http_request;

/* Reset r for a new connection. Allocates nothing until bytes arrive. */
void cllm_http_request_init(cllm_http_request *r, const cllm_http_limits *lim);
/* Free r's buffers (r stays initialized for reuse by reset). */
void cllm_http_request_free(cllm_http_request *r);
/* Forget the current message (keep-alive: the next request starts).
 * Keeps the buffers' memory only up to 4 KiB each. */
void cllm_http_request_reset(cllm_http_request *r);

/* Feed len bytes. *used: how many were consumed (the rest belongs to the
 * next step: after HEAD feed them again; after MESSAGE they start the next
 * request). Returns the event; after ERROR, r->error_status/error say why
 * and feeding must stop. */
cllm_http_event cllm_http_request_feed(cllm_http_request *r, const char *data, size_t len, size_t *used);

/* After HEAD: let a body of at most limit bytes in (a larger Content-Length
 * or chunked total is an ERROR 413 at once). Returns false when
 * Content-Length alone already exceeds the limit (r->error_status = 413). */
bool cllm_http_request_accept_body(cllm_http_request *r, size_t limit);

/* The value of header name (case-insensitive; the first one), or NULL.
 * *count (may be NULL) gets how many such fields there are. Borrowed. */
const char *cllm_http_request_header(const cllm_http_request *r, const char *name, int *count);
/* The path (URL without query string) into buf (NUL-terminated, size bytes). */
void cllm_http_request_path(const cllm_http_request *r, char *buf, size_t size);
/* Connection persistence after this message (llhttp_should_keep_alive:
 * HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive). */
bool cllm_http_request_keep_alive(const cllm_http_request *r);

#ifdef __cplusplus
}
#endif
#endif
