/* libcurl multi on the libuv loop (upstream.h). */
#include "router/upstream.h"

#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rt_curl {
    CURLM *multi;
    uv_loop_t *loop;
    uv_timer_t timer;
    bool closing;
};

/* A socket curl asked us to watch. */
typedef struct rt_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    rt_curl *u;
} rt_sock;

static void check_done(rt_curl *u) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(u->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        rt_xfer *x = NULL;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(u->multi, m->easy_handle);
        if (!x) continue;
        x->active = false;
        x->done(x, rc); /* may start new transfers (a retry) */
    }
}

static void on_poll(uv_poll_t *p, int status, int events) {
    rt_sock *s = p->data;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    rt_curl *u = s->u; /* s may be freed inside */
    curl_multi_socket_action(u->multi, s->fd, flags, &running);
    check_done(u);
}

static void on_timer(uv_timer_t *t) {
    rt_curl *u = t->data;
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(u);
}

static void free_sock(uv_handle_t *h) { free(h->data); }

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    (void)easy;
    rt_curl *u = userp;
    rt_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, free_sock);
            if (!u->closing) curl_multi_assign(u->multi, fd, NULL);
        }
        return 0;
    }
    if (u->closing) return 0;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        s->fd = fd;
        s->u = u;
        if (uv_poll_init_socket(u->loop, &s->poll, fd)) { free(s); return -1; }
        s->poll.data = s;
        curl_multi_assign(u->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    rt_curl *u = userp;
    if (u->closing) return 0;
    if (timeout_ms < 0) uv_timer_stop(&u->timer);
    else uv_timer_start(&u->timer, on_timer, (uint64_t)timeout_ms, 0); /* 0: on the next loop turn */
    return 0;
}

cllm_status rt_curl_create(uv_loop_t *loop, rt_curl **out) {
    *out = NULL;
    rt_curl *u = calloc(1, sizeof *u);
    if (!u || !(u->multi = curl_multi_init())) {
        free(u);
        return cllm_error(CLLM_ERR_OOM, "cannot create the HTTP client (libcurl)");
    }
    u->loop = loop;
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L); /* keep-alive connections cached, all replicas */
    *out = u;
    return CLLM_OK;
}

static void free_curl(uv_handle_t *h) {
    rt_curl *u = h->data;
    free(u);
}

void rt_curl_destroy(rt_curl *u) {
    if (!u) return;
    u->closing = true;
    curl_multi_cleanup(u->multi); /* closes the cached connections: socket_cb closes their polls */
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, free_curl);
}

cllm_status rt_curl_start(rt_curl *u, rt_xfer *x) {
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    CURLMcode mc = curl_multi_add_handle(u->multi, x->easy);
    if (mc != CURLM_OK) return cllm_error(CLLM_ERR_IO, "cannot start a transfer: %s", curl_multi_strerror(mc));
    x->active = true;
    return CLLM_OK;
}

void rt_curl_cancel(rt_curl *u, rt_xfer *x) {
    if (!x->active) return;
    curl_multi_remove_handle(u->multi, x->easy);
    x->active = false;
}

CURL *rt_curl_easy(rt_xfer *x, const char *url) {
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    x->errbuf[0] = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* replicas are reached directly, whatever http_proxy says */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    x->easy = e;
    return e;
}

struct curl_slist *rt_request_headers(bool json, const char *auth) {
    struct curl_slist *h = curl_slist_append(NULL, "Expect:"), *t = h;
    if (t && json) t = curl_slist_append(h, "Content-Type: application/json");
    if (t && auth) {
        size_t n = strlen(auth) + 16;
        char *a = malloc(n);
        if (a) snprintf(a, n, "Authorization: %s", auth);
        t = a ? curl_slist_append(h, a) : NULL;
        free(a);
    }
    if (!t) {
        curl_slist_free_all(h);
        return NULL;
    }
    return h;
}

/* ------------------------------------------------------------ fetches */
static size_t fetch_write(char *data, size_t size, size_t n, void *arg) {
    rt_fetch *f = arg;
    size_t len = size * n;
    if (f->body.len + len > f->limit) return 0; /* too long: CURLE_WRITE_ERROR */
    cllm_strbuf_append(&f->body, data, len);
    return f->body.oom ? 0 : len;
}

static void fetch_free(rt_fetch *f) {
    if (f->x.easy) curl_easy_cleanup(f->x.easy);
    curl_slist_free_all(f->hdrs);
    cllm_strbuf_free(&f->body);
    free(f);
}

static void fetch_done(rt_xfer *x, CURLcode rc) {
    rt_fetch *f = (rt_fetch *)x;
    f->rc = rc;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &f->status);
    cllm_strbuf_reserve(&f->body, 0); /* "" when there was no body */
    f->cb(f, f->arg);
    fetch_free(f);
}

rt_fetch *rt_fetch_get(rt_curl *u, const char *url, double timeout_s, size_t limit, const char *auth, rt_fetch_cb cb,
                       void *arg) {
    rt_fetch *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->limit = limit;
    f->cb = cb;
    f->arg = arg;
    f->u = u;
    f->x.done = fetch_done;
    CURL *e = rt_curl_easy(&f->x, url);
    if (!e) { free(f); return NULL; }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    long ms = (long)(timeout_s * 1000);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    if (auth) {
        if (!(f->hdrs = rt_request_headers(false, auth))) { fetch_free(f); return NULL; }
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdrs);
    }
    if (rt_curl_start(u, &f->x) != CLLM_OK) { fetch_free(f); return NULL; }
    return f;
}

void rt_fetch_cancel(rt_fetch *f) {
    if (!f) return;
    rt_curl_cancel(f->u, &f->x);
    fetch_free(f);
}

void rt_header_line(const char *line, size_t len, long *status, char *ctype, size_t ctype_size) {
    if (len >= 5 && !memcmp(line, "HTTP/", 5)) { /* a status line: a new header block */
        ctype[0] = 0;
        *status = 0;
        size_t i = 5;
        while (i < len && line[i] != ' ') i++;
        while (i < len && line[i] == ' ') i++;
        long code = 0;
        int digits = 0;
        for (; i < len && digits < 3 && line[i] >= '0' && line[i] <= '9'; i++, digits++) code = code * 10 + (line[i] - '0');
        if (digits == 3) *status = code;
    } else if (len > 13 && !strncasecmp(line, "content-type:", 13)) {
        size_t a = 13, b = len;
        while (a < b && (line[a] == ' ' || line[a] == '\t')) a++;
        while (b > a && (line[b - 1] == '\r' || line[b - 1] == '\n' || line[b - 1] == ' ' || line[b - 1] == '\t')) b--;
        if (b - a >= ctype_size) b = a + ctype_size - 1;
        memcpy(ctype, line + a, b - a);
        ctype[b - a] = 0;
    }
}
