/* Prometheus metrics with vLLM's names (see metrics.h). One mutex guards
 * all values: updates are per step / per request, so contention is low. */
#include "server/metrics.h"

#include "core/status.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

/* vLLM's buckets (vllm/v1/metrics/loggers.py). */
static const double TTFT_BUCKETS[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double TPOT_BUCKETS[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                      0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double E2E_BUCKETS[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,    10.0,   15.0, 20.0,
                                     30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
#define NB(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_BUCKETS 24

typedef struct histogram {
    const char *name, *help;
    const double *bounds;
    size_t n_bounds;
    uint64_t counts[MAX_BUCKETS + 1]; /* per bucket (not cumulative); last: > every bound */
    double sum;
    uint64_t count;
} histogram;

struct cllm_metrics {
    pthread_mutex_t mu;
    char *label; /* escaped model_name */
    int64_t running, waiting, connections;
    double kv_usage;
    int64_t prefix_queries, prefix_hits, preemptions, prompt_tokens, generation_tokens;
    int64_t finished[3];
    histogram ttft, tpot, e2e;
};

static void hist_init(histogram *h, const char *name, const char *help, const double *b, size_t n) {
    memset(h, 0, sizeof *h);
    h->name = name;
    h->help = help;
    h->bounds = b;
    h->n_bounds = n;
}

char *cllm_metrics_escape_label(const char *s) {
    size_t n = strlen(s);
    char *o = cllm_malloc(2 * n + 1), *p = o;
    if (!o) return NULL;
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') { *p++ = '\\'; *p++ = *s; }
        else if (*s == '\n') { *p++ = '\\'; *p++ = 'n'; }
        else *p++ = *s;
    }
    *p = 0;
    return o;
}

cllm_status cllm_metrics_create(const char *model_name, cllm_metrics **out) {
    *out = NULL;
    cllm_metrics *m = cllm_calloc(1, sizeof *m);
    if (!m) return CLLM_ERR_OOM;
    if (!(m->label = cllm_metrics_escape_label(model_name ? model_name : ""))) { free(m); return CLLM_ERR_OOM; }
    pthread_mutex_init(&m->mu, NULL);
    hist_init(&m->ttft, "cllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              TTFT_BUCKETS, NB(TTFT_BUCKETS));
    hist_init(&m->tpot, "cllm:time_per_output_token_seconds",
              "Histogram of time per output token (inter-token latency) in seconds.", TPOT_BUCKETS,
              NB(TPOT_BUCKETS));
    hist_init(&m->e2e, "cllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
              E2E_BUCKETS, NB(E2E_BUCKETS));
    *out = m;
    return CLLM_OK;
}

void cllm_metrics_destroy(cllm_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->label);
    free(m);
}

#define LOCKED(m, stmt)                     \
    do {                                    \
        if (!(m)) return;                   \
        pthread_mutex_lock(&(m)->mu);       \
        stmt;                               \
        pthread_mutex_unlock(&(m)->mu);     \
    } while (0)

void cllm_metrics_set_num_requests_running(cllm_metrics *m, int64_t n) { LOCKED(m, m->running = n); }
void cllm_metrics_set_http_connections(cllm_metrics *m, int64_t n) { LOCKED(m, m->connections = n); }
void cllm_metrics_set_num_requests_waiting(cllm_metrics *m, int64_t n) { LOCKED(m, m->waiting = n); }
void cllm_metrics_set_kv_cache_usage(cllm_metrics *m, double f) {
    if (!(f >= 0)) f = 0;
    if (f > 1) f = 1;
    LOCKED(m, m->kv_usage = f);
}
void cllm_metrics_add_prefix_cache(cllm_metrics *m, int64_t q, int64_t h) {
    if (q < 0 || h < 0) return;
    LOCKED(m, { m->prefix_queries += q; m->prefix_hits += h; });
}
void cllm_metrics_add_preemptions(cllm_metrics *m, int64_t n) {
    if (n > 0) LOCKED(m, m->preemptions += n);
}
void cllm_metrics_add_prompt_tokens(cllm_metrics *m, int64_t n) {
    if (n > 0) LOCKED(m, m->prompt_tokens += n);
}
void cllm_metrics_add_generation_tokens(cllm_metrics *m, int64_t n) {
    if (n > 0) LOCKED(m, m->generation_tokens += n);
}
void cllm_metrics_request_finished(cllm_metrics *m, cllm_metrics_finished_reason r) {
    if ((unsigned)r > CLLM_METRICS_FINISHED_ABORT) return;
    LOCKED(m, m->finished[r]++);
}

/* Prometheus buckets are "le" (less or equal) upper bounds. */
static void hist_observe(histogram *h, double v) {
    size_t b = 0;
    while (b < h->n_bounds && v > h->bounds[b]) b++;
    h->counts[b]++;
    h->sum += v;
    h->count++;
}

void cllm_metrics_observe_time_to_first_token(cllm_metrics *m, double s) {
    if (s >= 0 && isfinite(s)) LOCKED(m, hist_observe(&m->ttft, s));
}
void cllm_metrics_observe_time_per_output_token(cllm_metrics *m, double s) {
    if (s >= 0 && isfinite(s)) LOCKED(m, hist_observe(&m->tpot, s));
}
void cllm_metrics_observe_e2e_request_latency(cllm_metrics *m, double s) {
    if (s >= 0 && isfinite(s)) LOCKED(m, hist_observe(&m->e2e, s));
}

/* ---------------------------------------------------------------- rendering */
typedef struct buf {
    char *s;
    size_t len, cap;
    int oom;
} buf;

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = b->cap * 2 + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

static void family(buf *b, const char *name, const char *type, const char *help) {
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(buf *b, const histogram *h, const char *label) {
    family(b, h->name, "histogram", h->help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        /* le as Python's prometheus_client writes it (repr of a float: "1.0", "0.005"), as vLLM emits */
        char le[32];
        snprintf(le, sizeof le, "%.15g", h->bounds[i]);
        if (!strpbrk(le, ".e")) strcat(le, ".0");
        cum += h->counts[i];
        bprintf(b, "%s_bucket{le=\"%s\",model_name=\"%s\"} %llu\n", h->name, le, label, (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    bprintf(b, "%s_bucket{le=\"+Inf\",model_name=\"%s\"} %llu\n", h->name, label, (unsigned long long)cum);
    bprintf(b, "%s_sum{model_name=\"%s\"} %.17g\n", h->name, label, h->sum);
    bprintf(b, "%s_count{model_name=\"%s\"} %llu\n", h->name, label, (unsigned long long)h->count);
}

static void counter(buf *b, const char *name, const char *help, const char *label, int64_t v) {
    family(b, name, "counter", help);
    bprintf(b, "%s{model_name=\"%s\"} %lld\n", name, label, (long long)v);
}

char *cllm_metrics_render(cllm_metrics *m, const cllm_comm_stats *dist, int n_dist, const cllm_expert_stats *moe,
                          size_t *len) {
    buf b = {.cap = 8192};
    if (!m || !(b.s = malloc(b.cap))) return NULL;
    b.s[0] = 0;
    pthread_mutex_lock(&m->mu);
    const char *l = m->label;
    family(&b, "cllm:num_requests_running", "gauge", "Number of requests in model execution batches.");
    bprintf(&b, "cllm:num_requests_running{model_name=\"%s\"} %lld\n", l, (long long)m->running);
    family(&b, "cllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
    bprintf(&b, "cllm:num_requests_waiting{model_name=\"%s\"} %lld\n", l, (long long)m->waiting);
    family(&b, "cllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.");
    bprintf(&b, "cllm:kv_cache_usage_perc{model_name=\"%s\"} %.17g\n", l, m->kv_usage);
    counter(&b, "cllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.",
            l, m->prefix_queries);
    counter(&b, "cllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", l,
            m->prefix_hits);
    counter(&b, "cllm:num_preemptions_total", "Cumulative number of preemptions from the engine.", l,
            m->preemptions);
    counter(&b, "cllm:prompt_tokens_total", "Number of prefill tokens processed.", l, m->prompt_tokens);
    counter(&b, "cllm:generation_tokens_total", "Number of generation tokens processed.", l, m->generation_tokens);
    static const char *reasons[] = {"stop", "length", "abort"};
    family(&b, "cllm:request_success_total", "counter", "Count of successfully processed requests.");
    for (int i = 0; i < 3; i++)
        bprintf(&b, "cllm:request_success_total{finished_reason=\"%s\",model_name=\"%s\"} %lld\n", reasons[i], l,
                (long long)m->finished[i]);
    render_hist(&b, &m->ttft, l);
    render_hist(&b, &m->tpot, l);
    render_hist(&b, &m->e2e, l);
    family(&b, "cllm:http_connections", "gauge", "Open HTTP connections.");
    bprintf(&b, "cllm:http_connections{model_name=\"%s\"} %lld\n", l, (long long)m->connections);
    if (moe && moe->num_experts > 0) {
        family(&b, "cllm:moe_expert_tokens_total", "counter",
               "(token, expert) assignments routed to each expert over every mixture-of-experts layer.");
        uint64_t mx = 0, sum = 0;
        for (int e = 0; e < moe->num_experts; e++) {
            bprintf(&b, "cllm:moe_expert_tokens_total{expert=\"%d\",model_name=\"%s\"} %llu\n", e, l,
                    (unsigned long long)moe->tokens_per_expert[e]);
            sum += moe->tokens_per_expert[e];
            if (moe->tokens_per_expert[e] > mx) mx = moe->tokens_per_expert[e];
        }
        family(&b, "cllm:moe_rank_tokens_total", "counter",
               "(token, expert) rows each rank's experts computed (expert parallelism: load per rank).");
        for (int r = 0; r < moe->num_ranks; r++)
            bprintf(&b, "cllm:moe_rank_tokens_total{model_name=\"%s\",rank=\"%d\"} %llu\n", l, r,
                    (unsigned long long)moe->tokens_per_rank[r]);
        family(&b, "cllm:moe_expert_load_imbalance", "gauge",
               "The busiest expert's assignments over the mean (1 = balanced; 0 before any token).");
        bprintf(&b, "cllm:moe_expert_load_imbalance{model_name=\"%s\"} %.6g\n", l,
                sum ? (double)mx * moe->num_experts / (double)sum : 0.0);
    }
    if (n_dist > 0) {
        static const struct { const char *name, *help; } fam[3] = {
            {"cllm:dist_collective_calls_total", "Collective operations per rank, group and operation."},
            {"cllm:dist_collective_bytes_total", "Payload bytes of collective operations (this rank's buffer)."},
            {"cllm:dist_collective_seconds_total", "Host seconds spent in collective operations (NCCL: enqueue only)."},
        };
        for (int f = 0; f < 3; f++) {
            family(&b, fam[f].name, "counter", fam[f].help);
            for (int i = 0; i < n_dist; i++) {
                const cllm_comm_stats *d = &dist[i];
                for (int o = 0; o < CLLM_COMM_NUM_OPS; o++) {
                    const cllm_comm_op_stats *os = &d->ops[o];
                    if (!os->calls) continue;
                    bprintf(&b, "%s{group=\"%s\",model_name=\"%s\",op=\"%s\",rank=\"%d\",transport=\"%s\"} ",
                            fam[f].name, d->name, l, cllm_comm_op_name((cllm_comm_op)o), d->world_rank, d->transport);
                    if (f == 0) bprintf(&b, "%llu\n", (unsigned long long)os->calls);
                    else if (f == 1) bprintf(&b, "%llu\n", (unsigned long long)os->bytes);
                    else bprintf(&b, "%.9g\n", os->time_s);
                }
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (b.oom) { free(b.s); return NULL; }
    if (len) *len = b.len;
    return b.s;
}
