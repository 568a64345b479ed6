/* Strict HTTP/1.1 request reading on llhttp (see http_request.h). */
#include "server/http_request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

cllm_http_limits cllm_http_default_limits(void) {
    cllm_http_limits l = {.max_url_bytes = 8 << 10, .max_header_bytes = 16 << 10, .max_headers = 100};
    return l;
}

static int fail(cllm_http_request *r, int status, const char *msg) {
    if (!r->error_status) {
        r->error_status = status;
        snprintf(r->error, sizeof r->error, "%s", msg);
    }
    return -1; /* llhttp: callback error, parsing stops */
}

/* Append n bytes to r->buf (part: 0 url, 1 field name, 2 value); a new part
 * is NUL-separated from the previous one. */
static int append(cllm_http_request *r, int part, const char *at, size_t n) {
    bool fresh = part != r->cur_part;
    if (part == 1 && fresh) {
        if (r->n_hdrs >= r->lim.max_headers)
            return fail(r, 431, "too many header fields");
        if (r->n_hdrs == r->cap_hdrs) {
            int cap = r->cap_hdrs ? 2 * r->cap_hdrs : 16;
            cllm_http_header *h = realloc(r->hdrs, (size_t)cap * sizeof *h);
            if (!h) return fail(r, 431, "out of memory for the request headers");
            r->hdrs = h;
            r->cap_hdrs = cap;
        }
    }
    size_t need = r->buf_len + n + 2;
    size_t used = part == 0 ? r->buf_len + n : r->buf_len + n - r->url_len;
    if (part == 0 && used > r->lim.max_url_bytes) return fail(r, 414, "the request URL is too long");
    if (part > 0 && used > r->lim.max_header_bytes) return fail(r, 431, "the request header fields are too large");
    if (need > r->buf_cap) {
        size_t cap = r->buf_cap ? r->buf_cap : 512;
        while (cap < need) cap *= 2;
        char *b = realloc(r->buf, cap);
        if (!b) return fail(r, 431, "out of memory for the request headers");
        r->buf = b;
        r->buf_cap = cap;
    }
    if (fresh && part > 0) r->buf[r->buf_len++] = 0; /* end of the previous part */
    if (fresh && part == 1) {
        r->hdrs[r->n_hdrs++] = (cllm_http_header){.name_off = (uint32_t)r->buf_len};
    }
    if (fresh && part == 2 && r->n_hdrs) r->hdrs[r->n_hdrs - 1].value_off = (uint32_t)r->buf_len;
    memcpy(r->buf + r->buf_len, at, n);
    r->buf_len += n;
    r->buf[r->buf_len] = 0;
    if (part == 0) r->url_len = r->buf_len;
    else if (part == 1) r->hdrs[r->n_hdrs - 1].name_len += (uint32_t)n;
    else if (r->n_hdrs) r->hdrs[r->n_hdrs - 1].value_len += (uint32_t)n;
    r->cur_part = part;
    return 0;
}

static cllm_http_request *req_of(llhttp_t *p) { return p->data; }

static int on_message_begin(llhttp_t *p) {
    req_of(p)->started = true;
    return 0;
}
static int on_url(llhttp_t *p, const char *at, size_t n) { return append(req_of(p), 0, at, n); }
static int on_field(llhttp_t *p, const char *at, size_t n) { return append(req_of(p), 1, at, n); }
static int on_value(llhttp_t *p, const char *at, size_t n) {
    cllm_http_request *r = req_of(p);
    if (r->cur_part == 0 || !r->n_hdrs) return 0; /* value without a name cannot happen; be safe */
    return append(r, 2, at, n);
}

/* The value with surrounding optional whitespace removed. */
static void trim(const char *v, size_t n, const char **out, size_t *out_n) {
    while (n && (*v == ' ' || *v == '\t')) { v++; n--; }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    *out = v;
    *out_n = n;
}

static int on_headers_complete(llhttp_t *p) {
    cllm_http_request *r = req_of(p);
    if (r->cur_part != 0) r->buf[r->buf_len] = 0;
    snprintf(r->method, sizeof r->method, "%s", llhttp_method_name((llhttp_method_t)p->method));
    r->version_major = p->http_major;
    r->version_minor = p->http_minor;
    if (r->version_major != 1) return fail(r, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    int n_host = 0;
    (void)cllm_http_request_header(r, "Host", &n_host);
    if (n_host > 1) return fail(r, 400, "more than one Host header field");
    if (n_host == 0 && r->version_minor >= 1) return fail(r, 400, "an HTTP/1.1 request needs a Host header field");
    int n_te = 0;
    const char *te = cllm_http_request_header(r, "Transfer-Encoding", &n_te);
    if (te) {
        const char *v;
        size_t n;
        trim(te, strlen(te), &v, &n);
        if (n_te > 1 || n != 7 || strncasecmp(v, "chunked", 7))
            return fail(r, 501, "transfer coding not implemented: only 'Transfer-Encoding: chunked' is accepted");
        if (r->version_minor < 1) return fail(r, 400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
        r->chunked = true;
    }
    r->content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    const char *ex = cllm_http_request_header(r, "Expect", NULL);
    if (ex) {
        const char *v;
        size_t n;
        trim(ex, strlen(ex), &v, &n);
        if (n != 12 || strncasecmp(v, "100-continue", 12)) return fail(r, 417, "only 'Expect: 100-continue' is supported");
        r->expect_continue = r->version_minor >= 1;
    }
    r->head_done = true;
    return HPE_PAUSED; /* the caller decides on the head before any body byte is kept */
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    cllm_http_request *r = req_of(p);
    if (!r->body_limit || r->body_len + n > r->body_limit) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", r->body_limit);
        return fail(r, 413, msg);
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + n + 1) cap *= 2;
        if (cap > r->body_limit + 1) cap = r->body_limit + 1;
        char *b = realloc(r->body, cap);
        if (!b) return fail(r, 413, "out of memory for the request body");
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    req_of(p)->complete = true;
    return HPE_PAUSED;
}

/* One callback table for every connection (llhttp keeps a pointer to it). */
static const llhttp_settings_t SETTINGS = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void cllm_http_request_init(cllm_http_request *r, const cllm_http_limits *lim) {
    memset(r, 0, sizeof *r);
    r->lim = lim ? *lim : cllm_http_default_limits();
    llhttp_init(&r->parser, HTTP_REQUEST, &SETTINGS);
    r->parser.data = r;
    r->content_length = -1;
}

void cllm_http_request_free(cllm_http_request *r) {
    free(r->buf);
    free(r->hdrs);
    free(r->body);
    r->buf = NULL;
    r->hdrs = NULL;
    r->body = NULL;
    r->buf_cap = r->body_cap = 0;
    r->cap_hdrs = 0;
}

void cllm_http_request_reset(cllm_http_request *r) {
    if (r->buf_cap > 4096) { free(r->buf); r->buf = NULL; r->buf_cap = 0; }
    if (r->body_cap > 4096) { free(r->body); r->body = NULL; r->body_cap = 0; }
    if (r->body) r->body[0] = 0;
    if (r->cap_hdrs > 64) { free(r->hdrs); r->hdrs = NULL; r->cap_hdrs = 0; }
    r->started = r->head_done = r->complete = r->chunked = r->expect_continue = false;
    r->method[0] = 0;
    r->version_major = r->version_minor = 0;
    r->buf_len = r->url_len = 0;
    r->n_hdrs = 0;
    r->cur_part = 0;
    r->content_length = -1;
    r->body_limit = r->body_len = 0;
    r->error_status = 0;
    r->error[0] = 0;
    llhttp_reset(&r->parser); /* keeps type, settings and data */
}

/* llhttp's own errors: which status they are. */
static int status_of(llhttp_errno_t e) {
    switch (e) {
    case HPE_INVALID_VERSION: return 505;
    case HPE_PAUSED_H2_UPGRADE: return 505; /* "PRI * HTTP/2.0": HTTP/2 with prior knowledge */
    case HPE_INVALID_TRANSFER_ENCODING: return 501;
    default: return 400;
    }
}

cllm_http_event cllm_http_request_feed(cllm_http_request *r, const char *data, size_t len, size_t *used) {
    *used = 0;
    if (r->error_status) return CLLM_HTTP_ERROR;
    if (r->complete) return CLLM_HTTP_MESSAGE;
    if (r->head_done && !r->body_limit) return CLLM_HTTP_HEAD; /* still to be decided */
    if (!len && !r->head_done) return CLLM_HTTP_NEED_MORE;
    llhttp_errno_t e = llhttp_execute(&r->parser, data ? data : "", len);
    if (e == HPE_OK) {
        *used = len;
        return CLLM_HTTP_NEED_MORE;
    }
    if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&r->parser);
        *used = pos && data && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        llhttp_resume(&r->parser);
        if (r->complete) return CLLM_HTTP_MESSAGE;
        return CLLM_HTTP_HEAD;
    }
    *used = len;
    if (!r->error_status && e == HPE_PAUSED_H2_UPGRADE) {
        r->error_status = 505;
        snprintf(r->error, sizeof r->error, "HTTP/2 is not supported: use HTTP/1.1");
    } else if (!r->error_status) {
        r->error_status = status_of(e);
        const char *reason = llhttp_get_error_reason(&r->parser);
        snprintf(r->error, sizeof r->error, "malformed HTTP request: %s", reason && *reason ? reason : llhttp_errno_name(e));
    }
    return CLLM_HTTP_ERROR;
}

bool cllm_http_request_accept_body(cllm_http_request *r, size_t limit) {
    r->body_limit = limit ? limit : 1;
    if (r->content_length > 0 && (uint64_t)r->content_length > (uint64_t)limit) {
        snprintf(r->error, sizeof r->error, "the request body (Content-Length %lld) is larger than the limit of %zu bytes",
                 (long long)r->content_length, limit);
        r->error_status = 413;
        return false;
    }
    return true;
}

const char *cllm_http_request_header(const cllm_http_request *r, const char *name, int *count) {
    const char *first = NULL;
    int n = 0;
    size_t nl = strlen(name);
    for (int i = 0; i < r->n_hdrs; i++) {
        const cllm_http_header *h = &r->hdrs[i];
        if (h->name_len == nl && !strncasecmp(r->buf + h->name_off, name, nl)) {
            if (!first) first = h->value_len ? r->buf + h->value_off : "";
            n++;
        }
    }
    if (count) *count = n;
    return first;
}

void cllm_http_request_path(const cllm_http_request *r, char *buf, size_t size) {
    size_t n = 0;
    while (n < r->url_len && r->buf[n] != '?' && r->buf[n] != '#') n++;
    if (n >= size) n = size - 1;
    if (n) memcpy(buf, r->buf, n);
    buf[n] = 0;
}

bool cllm_http_request_keep_alive(const cllm_http_request *r) {
    return llhttp_should_keep_alive(&r->parser) != 0;
}
