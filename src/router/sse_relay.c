/* Whole-event SSE pass-through (sse_relay.h). */
#include "router/sse_relay.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_EVENT ((size_t)16 << 20)

void cllm_sse_relay_init(cllm_sse_relay *r, size_t max_event_bytes) {
    memset(r, 0, sizeof *r);
    r->max_event_bytes = max_event_bytes ? max_event_bytes : DEFAULT_MAX_EVENT;
}

void cllm_sse_relay_free(cllm_sse_relay *r) {
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->scanned = 0;
}

/* The end (one past the blank line) of the last whole event in b[0..n), 0
 * if none. A blank line: "\n" directly after a line end ("\n\n" or
 * "\n\r\n"); the bytes before b[0] are before[0..1]. from: where the search
 * may start (bytes before were searched). */
static size_t last_event_end(const char *b, size_t n, size_t from, const char before[2]) {
    size_t end = 0;
    for (size_t i = from; i < n; i++) {
        if (b[i] != '\n') continue;
        char p1 = i >= 1 ? b[i - 1] : before[1], p2 = i >= 2 ? b[i - 2] : i == 1 ? before[1] : before[0];
        if (p1 == '\n' || (p1 == '\r' && p2 == '\n')) end = i + 1;
    }
    return end;
}

/* Is the last event of ev[0..n) (ending with blank lines) "data: [DONE]"?
 * 1 yes, 0 no, -1 when ev holds blank lines only (no event: unchanged). */
static int ends_with_done(const char *ev, size_t n) {
    while (n && (ev[n - 1] == '\n' || ev[n - 1] == '\r')) n--; /* the blank lines and the line end */
    if (!n) return -1;
    size_t start = n;
    while (start && ev[start - 1] != '\n') start--;
    const char *line = ev + start;
    size_t ll = n - start;
    return (ll == 12 && !memcmp(line, "data: [DONE]", 12)) || (ll == 11 && !memcmp(line, "data:[DONE]", 11));
}

cllm_status cllm_sse_relay_feed(cllm_sse_relay *r, const char *data, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!len) return CLLM_OK;
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len) cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (!nb) return cllm_error(CLLM_ERR_OOM, "out of memory relaying an event stream");
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    /* only the new bytes can end an event (the look-back reads the bytes before them) */
    size_t end = last_event_end(r->buf, r->len, r->scanned, r->before);
    r->scanned = r->len;
    if (!end) {
        if (r->len > r->max_event_bytes)
            return cllm_error(CLLM_ERR_FORMAT, "an event of the replica's stream exceeds %zu bytes", r->max_event_bytes);
        return CLLM_OK;
    }
    char *ev = malloc(end);
    if (!ev) return cllm_error(CLLM_ERR_OOM, "out of memory relaying an event stream");
    memcpy(ev, r->buf, end);
    r->before[0] = end >= 2 ? ev[end - 2] : r->before[1];
    r->before[1] = ev[end - 1];
    memmove(r->buf, r->buf + end, r->len - end);
    r->len -= end;
    r->scanned = r->len;
    int d = ends_with_done(ev, end);
    if (d >= 0) r->done = d;
    *out = ev;
    *out_len = end;
    if (r->len > r->max_event_bytes)
        return cllm_error(CLLM_ERR_FORMAT, "an event of the replica's stream exceeds %zu bytes", r->max_event_bytes);
    return CLLM_OK;
}
