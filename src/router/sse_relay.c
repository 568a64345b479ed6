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
 * "\n\r\n"). from: where the search may start (bytes before were searched). */
static size_t last_event_end(const char *b, size_t n, size_t from) {
    size_t end = 0;
    for (size_t i = from > 0 ? from : 1; i < n; i++) {
        if (b[i] != '\n') continue;
        if (b[i - 1] == '\n' || (b[i - 1] == '\r' && i >= 2 && b[i - 2] == '\n')) end = i + 1;
    }
    return end;
}

/* Is the last event of ev[0..n) (ending with a blank line) "data: [DONE]"? */
static bool ends_with_done(const char *ev, size_t n) {
    while (n && (ev[n - 1] == '\n' || ev[n - 1] == '\r')) n--; /* the blank line and the line end */
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
    /* an event end may straddle the old and new bytes: look back two bytes */
    size_t end = last_event_end(r->buf, r->len, r->scanned > 2 ? r->scanned - 2 : 0);
    r->scanned = r->len;
    if (!end) {
        if (r->len > r->max_event_bytes)
            return cllm_error(CLLM_ERR_FORMAT, "an event of the replica's stream exceeds %zu bytes", r->max_event_bytes);
        return CLLM_OK;
    }
    char *ev = malloc(end);
    if (!ev) return cllm_error(CLLM_ERR_OOM, "out of memory relaying an event stream");
    memcpy(ev, r->buf, end);
    memmove(r->buf, r->buf + end, r->len - end);
    r->len -= end;
    r->scanned = r->len;
    r->done = ends_with_done(ev, end);
    *out = ev;
    *out_len = end;
    if (r->len > r->max_event_bytes)
        return cllm_error(CLLM_ERR_FORMAT, "an event of the replica's stream exceeds %zu bytes", r->max_event_bytes);
    return CLLM_OK;
}
