/* The router's /metrics, Prometheus text format 0.0.4 (loop thread: the
 * counters are the loop's own, no lock). Every per-replica sample carries
 * the label replica="<base URL>".
 *
 *   cllm:router_requests_total               counter   attempts sent to the replica
 *   cllm:router_request_failures_total       counter   attempts that failed (no connection, broken, 5xx)
 *   cllm:router_request_retries_total        counter   attempts that retried a request failed elsewhere
 *   cllm:router_requests_in_flight           gauge     the router's requests there now
 *   cllm:router_replica_healthy              gauge     1 in the rotation, 0 out
 *   cllm:router_replica_load                 gauge     running + waiting as its /load last said
 *   cllm:router_health_check_failures_total  counter   failed /health checks
 *   cllm:router_replica_restarts_total       counter   data parallel: restarts of its process
 *   cllm:router_request_latency_seconds      histogram attempt start -> last byte (successful ones)
 *   cllm:router_time_to_first_byte_seconds   histogram attempt start -> first body byte
 *   cllm:router_requests_unrouted_total      counter   answered 503: no healthy replica
 *   cllm:router_proxied_requests_in_flight   gauge     all proxied requests now (no replica label)
 */
#include "router/router_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's end-to-end latency buckets (seconds), from 1 ms. */
static const double BOUNDS[RT_HIST_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,  0.25,  0.5,   1.0,   2.5,  5.0,
                                               10.0,  15.0,  20.0, 30.0,  60.0, 120.0, 240.0, 480.0, 960.0, 1920.0};

void rt_hist_observe(rt_hist *h, double v) {
    if (!(v >= 0) || !isfinite(v)) return;
    int b = 0;
    while (b < RT_HIST_BUCKETS && v > BOUNDS[b]) b++;
    h->counts[b]++;
    h->sum += v;
    h->count++;
}

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

__attribute__((format(printf, 2, 3))) static void out(buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = true; return; }
        if (b->p && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t cap = (b->cap ? b->cap : 4096) * 2;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
}

static void head(buf *b, const char *name, const char *type, const char *help) {
    out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define PER_REPLICA(b, r, name, type, help, fmt, expr)                                       \
    do {                                                                                   \
        head(b, name, type, help);                                                         \
        for (int i_ = 0; i_ < (r)->n_reps; i_++) {                                         \
            const rt_replica *rep = &(r)->reps[i_];                                        \
            out(b, "%s{replica=\"%s\"} " fmt "\n", name, rep->label, expr);                \
        }                                                                                  \
    } while (0)

static void hist(buf *b, const cllm_router *r, const char *name, const char *help, size_t off) {
    head(b, name, "histogram", help);
    for (int i = 0; i < r->n_reps; i++) {
        const rt_replica *rep = &r->reps[i];
        const rt_hist *h = (const rt_hist *)((const char *)rep + off);
        uint64_t cum = 0;
        for (int k = 0; k < RT_HIST_BUCKETS; k++) {
            cum += h->counts[k];
            out(b, "%s_bucket{le=\"%g\",replica=\"%s\"} %llu\n", name, BOUNDS[k], rep->label, (unsigned long long)cum);
        }
        out(b, "%s_bucket{le=\"+Inf\",replica=\"%s\"} %llu\n", name, rep->label, (unsigned long long)h->count);
        out(b, "%s_sum{replica=\"%s\"} %.9g\n", name, rep->label, h->sum);
        out(b, "%s_count{replica=\"%s\"} %llu\n", name, rep->label, (unsigned long long)h->count);
    }
}

char *rt_metrics_render(cllm_router *r, size_t *len) {
    buf b = {0};
    PER_REPLICA(&b, r, "cllm:router_requests_total", "counter", "Requests (attempts) sent to the replica.", "%llu",
                (unsigned long long)rep->requests);
    PER_REPLICA(&b, r, "cllm:router_request_failures_total", "counter",
                "Attempts that failed: no connection, broken transfer or a 5xx answer.", "%llu",
                (unsigned long long)rep->failures);
    PER_REPLICA(&b, r, "cllm:router_request_retries_total", "counter",
                "Attempts that retried a request which failed on another replica.", "%llu",
                (unsigned long long)rep->retries);
    PER_REPLICA(&b, r, "cllm:router_requests_in_flight", "gauge", "The router's requests on the replica now.", "%d",
                rep->inflight);
    PER_REPLICA(&b, r, "cllm:router_replica_healthy", "gauge", "1 while the replica is in the rotation.", "%d",
                rep->healthy ? 1 : 0);
    PER_REPLICA(&b, r, "cllm:router_replica_load", "gauge",
                "Running + waiting requests as the replica's /load last said (-1: unknown).", "%d",
                rep->load_known ? rep->running + rep->waiting : -1);
    PER_REPLICA(&b, r, "cllm:router_health_check_failures_total", "counter", "Failed /health checks.", "%llu",
                (unsigned long long)rep->health_failures);
    if (r->dp)
        PER_REPLICA(&b, r, "cllm:router_replica_restarts_total", "counter",
                    "Restarts of the replica's process (cllm serve --data-parallel-size).", "%d", rt_dp_restarts(rep));
    hist(&b, r, "cllm:router_request_latency_seconds", "Attempt start to last byte, successful attempts.",
         offsetof(rt_replica, latency));
    hist(&b, r, "cllm:router_time_to_first_byte_seconds", "Attempt start to the first body byte.",
         offsetof(rt_replica, ttfb));
    head(&b, "cllm:router_requests_unrouted_total", "counter", "Requests answered 503: no replica was healthy.");
    out(&b, "cllm:router_requests_unrouted_total %llu\n", (unsigned long long)r->unrouted);
    head(&b, "cllm:router_proxied_requests_in_flight", "gauge", "Proxied requests not yet answered.");
    out(&b, "cllm:router_proxied_requests_in_flight %d\n", atomic_load(&r->inflight));
    head(&b, "cllm:router_http_connections", "gauge", "Open client connections.");
    out(&b, "cllm:router_http_connections %d\n", r->http.n_conns);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.len;
    return b.p;
}
