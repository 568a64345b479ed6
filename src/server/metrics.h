/* Server metrics: thread-safe counters, gauges and histograms, rendered in
 * the Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * Names are vLLM's (vllm/v1/metrics/loggers.py) with the prefix "cllm:"
 * instead of "vllm:", so vLLM dashboards work after a prefix substitution.
 * Every sample carries the label model_name="<served model name>".
 *
 *   cllm:num_requests_running           gauge     requests in the running batch
 *   cllm:num_requests_waiting           gauge     requests queued
 *   cllm:kv_cache_usage_perc            gauge     KV-cache blocks in use, fraction 0..1
 *   cllm:prefix_cache_queries_total     counter   prompt tokens looked up in the prefix cache
 *   cllm:prefix_cache_hits_total        counter   of which found cached
 *   cllm:num_preemptions_total          counter   sequences preempted
 *   cllm:prompt_tokens_total            counter   prefill tokens processed
 *   cllm:generation_tokens_total        counter   tokens generated
 *   cllm:request_success_total          counter   finished requests, label finished_reason = stop|length|abort
 *   cllm:time_to_first_token_seconds    histogram arrival -> first token
 *   cllm:time_per_output_token_seconds  histogram gap between consecutive output tokens
 *   cllm:e2e_request_latency_seconds    histogram arrival -> finish
 *   cllm:http_connections               gauge     open HTTP connections (cllm only)
 *
 * Histogram buckets are vLLM's. All functions may be called from any thread;
 * m == NULL makes every update a no-op (metrics disabled).
 */
#ifndef CLLM_SERVER_METRICS_H
#define CLLM_SERVER_METRICS_H

#include "cllm.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cllm_metrics cllm_metrics;

typedef enum cllm_metrics_finished_reason {
    CLLM_METRICS_FINISHED_STOP = 0,    /* EOS, stop string or stop token */
    CLLM_METRICS_FINISHED_LENGTH = 1,  /* max_tokens or max_model_len */
    CLLM_METRICS_FINISHED_ABORT = 2,   /* client went away / cancelled */
} cllm_metrics_finished_reason;

/* Create the metric set. model_name: the served model name, copied (label
 * value; any bytes, escaped on output). Returns CLLM_OK or CLLM_ERR_OOM. */
cllm_status cllm_metrics_create(const char *model_name, cllm_metrics **out);
/* NULL is a no-op. */
void cllm_metrics_destroy(cllm_metrics *m);

/* s as a label value of the exposition format (\\, \" and \n escaped):
 * caller-owned (free()), NULL on out of memory. */
char *cllm_metrics_escape_label(const char *s);

/* Gauges (set to the current value). */
void cllm_metrics_set_num_requests_running(cllm_metrics *m, int64_t n);
void cllm_metrics_set_http_connections(cllm_metrics *m, int64_t n);
void cllm_metrics_set_num_requests_waiting(cllm_metrics *m, int64_t n);
/* fraction in [0, 1] (clamped). */
void cllm_metrics_set_kv_cache_usage(cllm_metrics *m, double fraction);

/* Counters (add a non-negative amount; negative amounts are ignored). */
void cllm_metrics_add_prefix_cache(cllm_metrics *m, int64_t queried_tokens, int64_t hit_tokens);
void cllm_metrics_add_preemptions(cllm_metrics *m, int64_t n);
void cllm_metrics_add_prompt_tokens(cllm_metrics *m, int64_t n);
void cllm_metrics_add_generation_tokens(cllm_metrics *m, int64_t n);
void cllm_metrics_request_finished(cllm_metrics *m, cllm_metrics_finished_reason reason);

/* Histogram observations, in seconds (NaN and negative values are ignored). */
void cllm_metrics_observe_time_to_first_token(cllm_metrics *m, double seconds);
void cllm_metrics_observe_time_per_output_token(cllm_metrics *m, double seconds);
void cllm_metrics_observe_e2e_request_latency(cllm_metrics *m, double seconds);

/* Render every metric as Prometheus text: "# HELP", "# TYPE", samples;
 * histograms as cumulative _bucket{le="..."} lines ending with le="+Inf",
 * then _sum and _count. Then, from the caller's snapshot (borrowed, NULL /
 * 0: none): the distributed statistics (cllm_engine_get_distributed_stats,
 * n_dist entries) per rank, group and operation as
 * cllm:dist_collective_calls_total, cllm:dist_collective_bytes_total and
 * cllm:dist_collective_seconds_total{rank, group, transport, op}; the
 * mixture-of-experts load (cllm_engine_get_expert_stats) as
 * cllm:moe_expert_tokens_total{expert}, cllm:moe_rank_tokens_total{rank}
 * and the gauge cllm:moe_expert_load_imbalance (the busiest expert's count
 * over the mean: 1 = balanced; num_experts 0: none exported). Returns a
 * NUL-terminated caller-owned string (cllm_free), its length in *len (may
 * be NULL); NULL on out of memory. Content-Type for HTTP:
 * "text/plain; version=0.0.4; charset=utf-8". */
char *cllm_metrics_render(cllm_metrics *m, const cllm_comm_stats *dist, int n_dist, const cllm_expert_stats *moe,
                          size_t *len);

#ifdef __cplusplus
}
#endif
#endif
