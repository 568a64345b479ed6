/* The engine's statistics as JSON: GET /load (what a router balancing on
 * load polls: running + waiting requests, KV usage) and GET
 * /v1/distributed/stats (vLLM's distributed stats: per rank and group the
 * collectives' calls, bytes and time, per rank the MoE load, per pipeline
 * stage its bubble (time idle waiting for its input), the engine's step
 * count and time and rank 0's KV usage).
 *
 * The engine thread writes a snapshot (srv_stats_*: every step for the
 * engine counters; the distributed and expert statistics when update_stats
 * in server_engine.c refreshes them, at most once a second while busy and
 * once when the engine goes idle); the loop thread formats it, here and in
 * /metrics (server_routes.c). One mutex guards the snapshot. */
#include "server/server_internal.h"

#include "core/status.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void srv_stats_init(srv_stats *st) {
    memset(st, 0, sizeof *st);
    pthread_mutex_init(&st->mu, NULL);
}

void srv_stats_free(srv_stats *st) {
    cllm_free(st->dist);
    cllm_free(st->moe.tokens_per_expert);
    cllm_free(st->moe.tokens_per_rank);
    pthread_mutex_destroy(&st->mu);
}

void srv_stats_note_step(srv_stats *st, double seconds) {
    pthread_mutex_lock(&st->mu);
    st->num_steps++;
    st->step_seconds_total += seconds;
    st->step_seconds_last = seconds;
    if (seconds > st->step_seconds_max) st->step_seconds_max = seconds;
    pthread_mutex_unlock(&st->mu);
}

void srv_stats_set_engine(srv_stats *st, const cllm_engine_stats *es) {
    pthread_mutex_lock(&st->mu);
    st->engine = *es;
    pthread_mutex_unlock(&st->mu);
}

void srv_stats_set_dist(srv_stats *st, cllm_comm_stats *ds, int n, cllm_expert_stats *es, double now) {
    cllm_comm_stats *old_ds = NULL;
    cllm_expert_stats old_es = {0};
    pthread_mutex_lock(&st->mu);
    if (n >= 0) {
        old_ds = st->dist;
        st->dist = ds, st->n_dist = n;
        st->dist_updated_at = now;
    }
    if (es) {
        old_es = st->moe;
        st->moe = *es;
    }
    pthread_mutex_unlock(&st->mu);
    cllm_free(old_ds);
    cllm_free(old_es.tokens_per_expert);
    cllm_free(old_es.tokens_per_rank);
}

/* ------------------------------------------------------------------ JSON */
static void send_json(srv_conn *c, json_t *o) {
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    srv_respond(c, 200, "application/json", body, strlen(body), NULL);
}

static bool not_ready(cllm_server *s, srv_conn *c) {
    int state = atomic_load(&s->state);
    if (state == SRV_READY) return false;
    if (state == SRV_FAILED) srv_respond_errorf(c, 503, "service_unavailable", NULL, "%s", s->load_error);
    else srv_respond_errorf(c, 503, "service_unavailable", NULL, "the model is loading; retry later");
    return true;
}

void srv_route_load(cllm_server *s, srv_conn *c) {
    if (not_ready(s, c)) return;
    pthread_mutex_lock(&s->stats.mu);
    cllm_engine_stats e = s->stats.engine;
    pthread_mutex_unlock(&s->stats.mu);
    send_json(c, json_pack("{s:i, s:i, s:i, s:f}", "num_requests_running", e.num_running, "num_requests_waiting",
                           e.num_waiting, "num_requests_in_flight", atomic_load(&s->inflight), "kv_cache_usage",
                           (double)e.kv_cache_usage));
}

static json_t *ops_json(const cllm_comm_stats *g) {
    json_t *ops = json_object();
    for (int k = 0; ops && k < CLLM_COMM_NUM_OPS; k++)
        json_object_set_new(ops, cllm_comm_op_name((cllm_comm_op)k),
                            json_pack("{s:I, s:I, s:f}", "calls", (json_int_t)g->ops[k].calls, "bytes",
                                      (json_int_t)g->ops[k].bytes, "seconds", g->ops[k].time_s));
    return ops;
}

/* ranks[r] = {rank, groups: [{group, transport, group_rank, group_size, ops}], moe_tokens?} */
static json_t *ranks_json(const srv_stats *st, int world) {
    json_t *ranks = json_array();
    for (int r = 0; ranks && r < world; r++) {
        json_t *groups = json_array();
        for (int i = 0; groups && i < st->n_dist; i++) {
            const cllm_comm_stats *g = &st->dist[i];
            if (g->world_rank != r) continue;
            json_array_append_new(groups, json_pack("{s:s, s:s, s:i, s:i, s:o}", "group", g->name, "transport",
                                                    g->transport, "group_rank", g->rank, "group_size", g->size,
                                                    "ops", ops_json(g)));
        }
        json_t *o = json_pack("{s:i, s:o}", "rank", r, "groups", groups ? groups : json_array());
        if (o && st->moe.num_experts > 0 && r < st->moe.num_ranks)
            json_object_set_new(o, "moe_tokens", json_integer((json_int_t)st->moe.tokens_per_rank[r]));
        json_array_append_new(ranks, o);
    }
    return ranks;
}

static json_t *moe_json(const cllm_expert_stats *m) {
    if (m->num_experts <= 0) return json_null();
    json_t *pe = json_array(), *pr = json_array();
    uint64_t total = 0, busiest = 0;
    for (int i = 0; i < m->num_experts; i++) {
        json_array_append_new(pe, json_integer((json_int_t)m->tokens_per_expert[i]));
        total += m->tokens_per_expert[i];
        if (m->tokens_per_expert[i] > busiest) busiest = m->tokens_per_expert[i];
    }
    for (int r = 0; r < m->num_ranks; r++) json_array_append_new(pr, json_integer((json_int_t)m->tokens_per_rank[r]));
    double mean = (double)total / m->num_experts;
    return json_pack("{s:i, s:o, s:o, s:f}", "num_experts", m->num_experts, "tokens_per_expert", pe, "tokens_per_rank",
                     pr, "load_imbalance", mean > 0 ? (double)busiest / mean : 1.0);
}

/* The pipeline's bubbles: per stage, the seconds its ranks sat in recv on
 * the "pp" group (a stage > 0 waiting for the previous stage's hidden
 * states; stage 0 waiting for the last stage's rows while the pipeline
 * drains), the most over the stage's tensor-parallel ranks, and that over
 * the engine's step time (rank 0's; the ranks step in lockstep). With NCCL
 * a recv's time is its host-side enqueue only, so bubble_fraction is null
 * there (use nsys or the PP bench instead). NULL when pp == 1. */
static json_t *pipeline_json(const srv_stats *st, int pp) {
    if (pp <= 1) return json_null();
    json_t *stages = json_array();
    for (int k = 0; stages && k < pp; k++) {
        double wait = 0.0;
        bool host_only = false, seen = false;
        json_t *ranks = json_array();
        for (int i = 0; ranks && i < st->n_dist; i++) {
            const cllm_comm_stats *g = &st->dist[i];
            if (strcmp(g->name, "pp") != 0 || g->rank != k) continue;
            json_array_append_new(ranks, json_integer(g->world_rank));
            double t = g->ops[CLLM_COMM_RECV].time_s;
            if (t > wait) wait = t;
            if (strcmp(g->transport, "nccl") == 0) host_only = true;
            seen = true;
        }
        json_t *frac = json_null();
        if (seen && !host_only && st->step_seconds_total > 0) {
            double f = wait / st->step_seconds_total;
            frac = json_real(f > 1.0 ? 1.0 : f);
        }
        json_array_append_new(stages, json_pack("{s:i, s:o, s:o, s:o}", "stage", k, "ranks",
                                                ranks ? ranks : json_array(), "idle_seconds",
                                                seen ? json_real(wait) : json_null(), "bubble_fraction", frac));
    }
    return json_pack("{s:o}", "stages", stages ? stages : json_array());
}

void srv_route_dist_stats(cllm_server *s, srv_conn *c) {
    if (not_ready(s, c)) return;
    const cllm_model_params *mp = &s->p.engine.model;
    int tp = mp->tensor_parallel_size > 1 ? mp->tensor_parallel_size : 1;
    int pp = mp->pipeline_parallel_size > 1 ? mp->pipeline_parallel_size : 1;
    double now = srv_now();
    pthread_mutex_lock(&s->stats.mu);
    const srv_stats *st = &s->stats;
    const cllm_engine_stats *e = &st->engine;
    json_t *eng = json_object();
    if (eng) {
        json_object_set_new(eng, "num_steps", json_integer((json_int_t)st->num_steps));
        json_object_set_new(eng, "step_seconds_total", json_real(st->step_seconds_total));
        json_object_set_new(eng, "step_ms_last", json_real(st->step_seconds_last * 1e3));
        json_object_set_new(eng, "step_ms_max", json_real(st->step_seconds_max * 1e3));
        json_object_set_new(eng, "step_ms_mean",
                            json_real(st->num_steps ? st->step_seconds_total * 1e3 / (double)st->num_steps : 0.0));
        json_object_set_new(eng, "num_requests_running", json_integer(e->num_running));
        json_object_set_new(eng, "num_requests_waiting", json_integer(e->num_waiting));
        json_object_set_new(eng, "num_kv_blocks", json_integer(e->num_kv_blocks));
        json_object_set_new(eng, "num_free_kv_blocks", json_integer(e->num_free_kv_blocks));
        json_object_set_new(eng, "kv_cache_usage", json_real(e->kv_cache_usage));
        json_object_set_new(eng, "prefix_cache_queries", json_integer((json_int_t)e->prefix_cache_queries));
        json_object_set_new(eng, "prefix_cache_hits", json_integer((json_int_t)e->prefix_cache_hits));
        json_object_set_new(eng, "num_preemptions", json_integer((json_int_t)e->num_preemptions));
        json_object_set_new(eng, "prompt_tokens_total", json_integer((json_int_t)e->prompt_tokens_total));
        json_object_set_new(eng, "generation_tokens_total", json_integer((json_int_t)e->generation_tokens_total));
    }
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "object", json_string("distributed_stats"));
        json_object_set_new(o, "model", json_string(s->served_model_name));
        json_object_set_new(o, "world_size", json_integer(tp * pp));
        json_object_set_new(o, "tensor_parallel_size", json_integer(tp));
        json_object_set_new(o, "pipeline_parallel_size", json_integer(pp));
        json_object_set_new(o, "expert_parallel", json_boolean(mp->enable_expert_parallel));
        json_object_set_new(o, "collectives_age_seconds",
                            st->dist_updated_at > 0 ? json_real(now - st->dist_updated_at) : json_null());
        json_object_set_new(o, "engine", eng ? eng : json_null());
        json_object_set_new(o, "ranks", ranks_json(st, tp * pp));
        json_object_set_new(o, "pipeline", pipeline_json(st, pp));
        json_object_set_new(o, "moe", moe_json(&st->moe));
    } else {
        json_decref(eng);
    }
    pthread_mutex_unlock(&s->stats.mu);
    send_json(c, o);
}
