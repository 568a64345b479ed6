/* Server-sent events passed through whole: the router forwards a
 * replica's stream event by event, so that a stream cut mid-way can end
 * with a well-formed error event and "data: [DONE]" instead of half an
 * event (WHATWG HTML, "Server-sent events": an event ends at a blank line).
 * Line ends "\n" and "\r\n" are recognised (cllm serve and vLLM send
 * "\n\n"); a bare "\r" is not a line end here.
 *
 * Input is network bytes from a replica: fuzzed (fuzz/router_fuzz.c) and
 * bounded (max_event_bytes of an unfinished event, else an error). No I/O.
 */
#ifndef CLLM_ROUTER_SSE_RELAY_H
#define CLLM_ROUTER_SSE_RELAY_H

#include "cllm.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct cllm_sse_relay {
    char *buf;              /* the unfinished event's bytes, owned */
    size_t len, cap;
    size_t scanned;         /* bytes of buf already searched for an event end */
    char before[2];         /* the last two bytes passed on (what precedes buf[0]), 0 at the start */
    size_t max_event_bytes; /* bound of buf; 0: 16 MiB */
    bool done;              /* the last whole event was "data: [DONE]" */
} cllm_sse_relay;

/* An empty relay (allocates nothing until fed). */
void cllm_sse_relay_init(cllm_sse_relay *r, size_t max_event_bytes);
void cllm_sse_relay_free(cllm_sse_relay *r);

/* Feed len bytes. *out (caller-owned, free(); NULL when *out_len is 0)
 * gets every event completed by these bytes, in order, exactly as received;
 * the bytes of an unfinished event stay inside. Errors: CLLM_ERR_OOM;
 * CLLM_ERR_FORMAT when an unfinished event exceeds max_event_bytes. */
cllm_status cllm_sse_relay_feed(cllm_sse_relay *r, const char *data, size_t len, char **out, size_t *out_len);

/* Bytes of an unfinished event held back. */
static inline size_t cllm_sse_relay_pending(const cllm_sse_relay *r) { return r->len; }

#endif
