/* Strict HTTP/1.1 request reading (server/http_request.h), without sockets:
 * every case is fed whole and one byte at a time, and must give the same
 * events, statuses, head and body. Covers the smuggling vectors (duplicate
 * or conflicting Content-Length, Content-Length with chunked, unknown
 * transfer codings), missing/duplicate Host, limits (414, 431, 413 decided
 * on Content-Length before any body byte), Expect, pipelining. */
#include "server/http_request.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct outcome {
    int status;             /* 0: MESSAGE reached; else the error status */
    int heads, messages;
    char path[64];
    char method[16];
    size_t body_len;
    char body[256];
    size_t rest;            /* bytes left after the (first) message */
    bool keep_alive, expect;
} outcome;

/* Feed msg in pieces of `step` bytes (0: whole); accept bodies up to limit. */
static outcome run(const char *msg, size_t len, size_t step, size_t limit) {
    outcome o = {0};
    cllm_http_request r;
    cllm_http_request_init(&r, NULL);
    size_t off = 0;
    while (off <= len) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        size_t used = 0;
        cllm_http_event ev = cllm_http_request_feed(&r, msg + off, n, &used);
        off += used;
        if (ev == CLLM_HTTP_HEAD) {
            o.heads++;
            cllm_http_request_path(&r, o.path, sizeof o.path);
            snprintf(o.method, sizeof o.method, "%s", r.method);
            o.expect = r.expect_continue;
            if (!cllm_http_request_accept_body(&r, limit)) { o.status = r.error_status; break; }
            continue;
        }
        if (ev == CLLM_HTTP_MESSAGE) {
            o.messages++;
            o.body_len = r.body_len;
            if (r.body_len && r.body_len < sizeof o.body) memcpy(o.body, r.body, r.body_len);
            o.rest = len - off;
            o.keep_alive = cllm_http_request_keep_alive(&r);
            break;
        }
        if (ev == CLLM_HTTP_ERROR) { o.status = r.error_status; break; }
        if (off == len) { o.status = -1; break; } /* incomplete */
    }
    cllm_http_request_free(&r);
    return o;
}

static void expect_status(const char *name, const char *msg, int status) {
    size_t len = strlen(msg);
    outcome a = run(msg, len, 0, 1 << 20), b = run(msg, len, 1, 1 << 20);
    CHECK(a.status == status, "%s: whole: status %d, want %d", name, a.status, status);
    CHECK(b.status == status, "%s: byte by byte: status %d, want %d", name, b.status, status);
}

int main(void) {
    /* a plain request, then the same pipelined with a second one */
    const char *get = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    outcome o = run(get, strlen(get), 0, 100);
    CHECK(o.status == 0 && o.heads == 1 && o.messages == 1, "plain GET: status %d", o.status);
    CHECK(!strcmp(o.path, "/health") && !strcmp(o.method, "GET") && o.keep_alive, "plain GET head %s %s", o.method, o.path);
    char two[256];
    snprintf(two, sizeof two, "%s%s", get, get);
    for (size_t step = 0; step <= 1; step++) {
        o = run(two, strlen(two), step, 100);
        CHECK(o.status == 0 && o.rest == strlen(get), "pipelined (step %zu): rest %zu, want %zu", step, o.rest, strlen(get));
    }
    /* bodies: Content-Length and chunked, whole and byte by byte */
    const char *post = "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}";
    const char *chunked = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n7\r\n:\"bcd\"}\r\n0\r\n\r\n";
    for (size_t step = 0; step <= 1; step++) {
        o = run(post, strlen(post), step, 100);
        CHECK(o.status == 0 && o.body_len == 11 && !strcmp(o.body, "{\"a\":\"bcd\"}"), "CL body step %zu: %d %s", step,
              o.status, o.body);
        o = run(chunked, strlen(chunked), step, 100);
        CHECK(o.status == 0 && o.body_len == 11 && !strcmp(o.body, "{\"a\":\"bcd\"}"), "chunked body step %zu: %d %s",
              step, o.status, o.body);
    }
    /* 413 on the head alone (no body byte sent yet), and on a chunked body growing past the limit */
    const char *big = "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999\r\n\r\n";
    o = run(big, strlen(big), 0, 1000);
    CHECK(o.status == 413 && o.heads == 1, "Content-Length over the limit: %d", o.status);
    o = run(chunked, strlen(chunked), 1, 8);
    CHECK(o.status == 413, "chunked over the limit: %d", o.status);
    /* Expect */
    const char *ex = "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi";
    o = run(ex, strlen(ex), 0, 100);
    CHECK(o.status == 0 && o.expect, "Expect: 100-continue");
    expect_status("Expect other", "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n", 417);
    /* smuggling vectors and strictness */
    expect_status("two different Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello", 400);
    expect_status("two equal Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400);
    expect_status("Content-Length with chunked",
                  "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    expect_status("unknown transfer coding", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501);
    expect_status("gzip, chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_status("two Transfer-Encoding", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    expect_status("no Host on 1.1", "GET /health HTTP/1.1\r\n\r\n", 400);
    expect_status("two Host", "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_status("bad Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400);
    expect_status("negative Content-Length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    expect_status("bad chunk size", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
    expect_status("garbage", "HELLO\r\n\r\n", 400);
    expect_status("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
    expect_status("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505);
    expect_status("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    expect_status("bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n", 400);
    /* HTTP/1.0 needs no Host, and closes by default */
    o = run("GET /health HTTP/1.0\r\n\r\n", 24, 0, 100);
    CHECK(o.status == 0 && !o.keep_alive, "HTTP/1.0: status %d keep_alive %d", o.status, o.keep_alive);
    /* limits: URL and headers */
    size_t n = 20000;
    char *m = malloc(n + 64);
    int k = snprintf(m, n + 64, "GET /");
    memset(m + k, 'a', 9000);
    snprintf(m + k + 9000, 64, " HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_status("URL too long", m, 414);
    k = snprintf(m, n + 64, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(m + k, 'b', 17000);
    snprintf(m + k + 17000, 64, "\r\n\r\n");
    expect_status("header too large", m, 431);
    k = snprintf(m, n + 64, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 120; i++) k += snprintf(m + k, n + 64 - (size_t)k, "X%d: y\r\n", i);
    snprintf(m + k, n + 64 - (size_t)k, "\r\n");
    expect_status("too many headers", m, 431);
    free(m);
    /* reset: the next request on the same connection parses cleanly */
    cllm_http_request r;
    cllm_http_request_init(&r, NULL);
    for (int round = 0; round < 3; round++) {
        size_t used = 0, len = strlen(post);
        cllm_http_event ev = cllm_http_request_feed(&r, post, len, &used);
        CHECK(ev == CLLM_HTTP_HEAD, "round %d head", round);
        cllm_http_request_accept_body(&r, 100);
        size_t used2 = 0;
        ev = cllm_http_request_feed(&r, post + used, len - used, &used2);
        CHECK(ev == CLLM_HTTP_MESSAGE && used + used2 == len && r.body_len == 11, "round %d message", round);
        cllm_http_request_reset(&r);
    }
    cllm_http_request_free(&r);
    TEST_DONE();
}
