/* Replica health and load (router.h): every health_check_interval_s a GET
 * /health per replica (health_check_timeout_s; a replica out of the rotation
 * every min(interval, 1 s)): 200 puts it in the rotation, anything else
 * takes it out; a check that cannot connect also fails the requests in
 * flight there (a dead process), and so does one that times out unless a
 * transfer there received bytes within the timeout (a hung process, not a
 * busy one: a slow /health must not cut the streams of a live replica).
 * With least_load / prefix_aware, every load_poll_interval_s a GET /load
 * (cllm serve's running and waiting requests); a replica without /load
 * (another server) is balanced on the router's own in-flight count. And
 * GET /v1/distributed/stats: every replica's statistics gathered into one
 * answer. */
#include "router/router_internal.h"

#include "core/status.h"
#include "server/openai_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEALTH_BODY_LIMIT ((size_t)64 << 10)
#define STATS_BODY_LIMIT ((size_t)16 << 20)

void rt_replica_set_health(cllm_router *r, rt_replica *rep, bool healthy, bool dead, const char *why) {
    if (healthy) rep->last_error[0] = 0;
    else snprintf(rep->last_error, sizeof rep->last_error, "%s", why ? why : "unhealthy");
    if (rep->healthy != healthy) {
        rep->healthy = healthy;
        rep->changed_at = rt_now();
        if (healthy) {
            cllm_log(CLLM_LOG_INFO, "router: replica %s is healthy: in the rotation", rep->url);
            rep->ever_healthy = true;
        } else {
            cllm_log(CLLM_LOG_WARN, "router: replica %s is out of the rotation: %s", rep->url, rep->last_error);
        }
    }
    if (!healthy && dead) rt_proxy_fail_replica(r, rep, rep->last_error);
}

/* "HTTP 503: <the error message of the body>" */
static void describe_status(const rt_fetch *f, char *out, size_t size) {
    json_t *o = f->body.len ? json_loadb(f->body.p, f->body.len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    snprintf(out, size, "/health answered HTTP %ld%s%.240s", f->status, msg ? ": " : "", msg ? msg : "");
    json_decref(o);
}

static void on_health(rt_fetch *f, void *arg) {
    rt_replica *rep = arg;
    rep->health_fetch = NULL;
    if (f->rc == CURLE_OK && f->status == 200) {
        rt_replica_set_health(rep->router, rep, true, false, NULL);
        return;
    }
    rep->health_failures++;
    char why[300];
    bool dead = f->rc != CURLE_OK; /* no answer at all: dead or hung, unlike a 503 (loading, draining, failed) */
    if (dead) snprintf(why, sizeof why, "/health failed: %s", f->x.errbuf[0] ? f->x.errbuf : curl_easy_strerror(f->rc));
    else describe_status(f, why, sizeof why);
    /* A check that timed out on a replica still sending bytes on its other transfers: the process is busy, not
     * hung. It leaves the rotation, but the requests running there go on (a stream cut here would be lost). */
    const cllm_router *r = rep->router;
    if (f->rc == CURLE_OPERATION_TIMEDOUT && rep->last_rx > 0 && rt_now() - rep->last_rx < r->p.health_check_timeout_s) {
        dead = false;
        if (rep->healthy)
            cllm_log(CLLM_LOG_WARN, "router: replica %s: %s, but its requests in flight are still receiving: they "
                     "go on", rep->url, why);
    }
    rt_replica_set_health(rep->router, rep, false, dead, why);
}

/* GET path on rep into *slot (its one fetch of that kind); cb gets rep. */
static void poll_replica(cllm_router *r, rt_replica *rep, const char *path, rt_fetch_cb cb, rt_fetch **slot) {
    char *url = rt_url(rep, path);
    if (url) *slot = rt_fetch_get(r->curl, url, r->p.health_check_timeout_s, HEALTH_BODY_LIMIT, NULL, cb, rep);
    free(url);
}

void rt_health_check_now(cllm_router *r, rt_replica *rep) {
    if (rep->health_fetch || !r->curl) return;
    poll_replica(r, rep, "/health", on_health, &rep->health_fetch);
}

static void on_load(rt_fetch *f, void *arg) {
    rt_replica *rep = arg;
    rep->load_fetch = NULL;
    json_t *o = f->rc == CURLE_OK && f->status == 200 ? json_loadb(f->body.p, f->body.len, 0, NULL) : NULL;
    json_t *run = json_object_get(o, "num_requests_running"), *wait = json_object_get(o, "num_requests_waiting");
    if (json_is_integer(run) && json_is_integer(wait)) {
        json_int_t a = json_integer_value(run), b = json_integer_value(wait);
        rep->running = a < 0 ? 0 : a > 1 << 24 ? 1 << 24 : (int)a;
        rep->waiting = b < 0 ? 0 : b > 1 << 24 ? 1 << 24 : (int)b;
        rep->load_known = true;
    } else {
        rep->load_known = false; /* no /load (not cllm serve), or it failed: the router's own count decides */
    }
    json_decref(o);
}

/* A healthy replica is checked every health_check_interval_s; one out of
 * the rotation every min(interval, 1 s), so that a replica started after
 * the router, or restarted, is back within a second. */
static double down_interval(const cllm_router *r) {
    return r->p.health_check_interval_s < 1.0 ? r->p.health_check_interval_s : 1.0;
}

static void on_health_timer(uv_timer_t *t) {
    cllm_router *r = t->data;
    double now = rt_now();
    for (int i = 0; i < r->n_reps; i++) {
        rt_replica *rep = &r->reps[i];
        double every = rep->healthy ? r->p.health_check_interval_s : down_interval(r);
        if (now + 1e-3 < rep->checked_at + every) continue;
        rep->checked_at = now;
        rt_health_check_now(r, rep);
    }
}

static void on_load_timer(uv_timer_t *t) {
    cllm_router *r = t->data;
    for (int i = 0; i < r->n_reps && r->curl; i++) {
        rt_replica *rep = &r->reps[i];
        if (!rep->load_fetch && rep->healthy) poll_replica(r, rep, "/load", on_load, &rep->load_fetch);
    }
}

void rt_health_start(cllm_router *r) {
    uv_timer_init(&r->loop, &r->health_timer);
    uv_timer_init(&r->loop, &r->load_timer);
    r->health_timer.data = r->load_timer.data = r;
    r->timers_on = true;
    uint64_t tick = (uint64_t)(down_interval(r) * 1000 / 4); /* the replicas' next checks fall due on ticks */
    uv_timer_start(&r->health_timer, on_health_timer, 0, tick > 0 ? tick : 1);
    if (r->p.policy != CLLM_ROUTER_ROUND_ROBIN) {
        uint64_t lp = (uint64_t)(r->p.load_poll_interval_s * 1000);
        uv_timer_start(&r->load_timer, on_load_timer, lp > 0 ? lp : 1, lp > 0 ? lp : 1);
    }
}

void rt_health_stop(cllm_router *r) {
    if (r->timers_on) {
        uv_close((uv_handle_t *)&r->health_timer, NULL);
        uv_close((uv_handle_t *)&r->load_timer, NULL);
        r->timers_on = false;
    }
    for (int i = 0; i < r->n_reps; i++) {
        rt_replica *rep = &r->reps[i];
        rt_fetch_cancel(rep->health_fetch);
        rt_fetch_cancel(rep->load_fetch);
        rep->health_fetch = rep->load_fetch = NULL;
    }
}

/* ------------------------------------------------ /v1/distributed/stats */
typedef struct stats_gather {
    srv_task base;
    cllm_router *r;
    srv_conn *held;
    int left;                 /* fetches outstanding */
    json_t **got;             /* (n_reps) each replica's answer, or NULL */
    char (*err)[300];         /* (n_reps) why not */
    rt_fetch **fetches;       /* (n_reps) outstanding ones */
} stats_gather;

static void gather_free(stats_gather *g) {
    for (int i = 0; i < g->r->n_reps; i++) {
        rt_fetch_cancel(g->fetches[i]);
        json_decref(g->got[i]);
    }
    if (g->base.conn) srv_conn_set_task(g->base.conn, NULL);
    srv_conn_release(g->held);
    free(g->got);
    free(g->err);
    free(g->fetches);
    free(g);
}

static void gather_answer(stats_gather *g) {
    cllm_router *r = g->r;
    json_t *reps = json_array();
    uint64_t req = 0, fail = 0, retry = 0;
    int healthy = 0;
    for (int i = 0; i < r->n_reps; i++) {
        rt_replica *rep = &r->reps[i];
        req += rep->requests, fail += rep->failures, retry += rep->retries;
        healthy += rep->healthy;
        json_t *o = rt_replica_json(rep);
        if (o) {
            json_object_set(o, "stats", g->got[i] ? g->got[i] : json_null());
            json_object_set_new(o, "stats_error", g->got[i] ? json_null() : json_string(g->err[i]));
        }
        json_array_append_new(reps, o);
    }
    json_t *router = json_pack("{s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:i}", "policy",
                               cllm_router_policy_name(r->p.policy), "replicas", r->n_reps, "healthy_replicas",
                               healthy, "requests_total", (json_int_t)req, "failures_total", (json_int_t)fail,
                               "retries_total", (json_int_t)retry, "unrouted_total", (json_int_t)r->unrouted,
                               "in_flight", atomic_load(&r->inflight));
    json_t *o = json_pack("{s:s, s:o, s:o}", "object", "router_distributed_stats", "router",
                          router ? router : json_null(), "replicas", reps ? reps : json_array());
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    srv_conn *c = g->base.conn;
    if (!body) srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory");
    else srv_respond(c, 200, "application/json", body, strlen(body), NULL);
    g->base.conn = NULL;
    gather_free(g);
}

static void on_stats(rt_fetch *f, void *arg) {
    stats_gather *g = arg;
    int i = 0;
    while (g->fetches[i] != f) i++; /* the replica it asked */
    g->fetches[i] = NULL;
    json_t *o = f->rc == CURLE_OK && f->status == 200 ? json_loadb(f->body.p, f->body.len, 0, NULL) : NULL;
    if (json_is_object(o)) {
        g->got[i] = o;
    } else {
        json_decref(o);
        if (f->rc != CURLE_OK)
            snprintf(g->err[i], sizeof g->err[i], "%s", f->x.errbuf[0] ? f->x.errbuf : curl_easy_strerror(f->rc));
        else
            snprintf(g->err[i], sizeof g->err[i], "the replica answered HTTP %ld%s", f->status,
                     f->status == 200 ? " with a body that is not a JSON object" : "");
    }
    if (--g->left == 0) gather_answer(g);
}

static void gather_closed(srv_task *t) {
    stats_gather *g = (stats_gather *)t;
    g->base.conn = NULL;
    gather_free(g);
}

static void gather_stop(srv_task *t) {
    stats_gather *g = (stats_gather *)t;
    srv_respond_errorf(g->base.conn, 503, "service_unavailable", NULL, "the router is shutting down");
    g->base.conn = NULL;
    gather_free(g);
}

static const srv_task_ops GATHER_OPS = {.closed = gather_closed, .stop = gather_stop};

void rt_stats_start(cllm_router *r, srv_conn *c, const char *auth) {
    stats_gather *g = calloc(1, sizeof *g);
    if (g) {
        g->got = calloc((size_t)r->n_reps, sizeof *g->got);
        g->err = calloc((size_t)r->n_reps, sizeof *g->err);
        g->fetches = calloc((size_t)r->n_reps, sizeof *g->fetches);
    }
    if (!g || !g->got || !g->err || !g->fetches) {
        if (g) free(g->got), free(g->err), free(g->fetches);
        free(g);
        srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory");
        return;
    }
    g->r = r;
    g->base.ops = &GATHER_OPS;
    g->held = c;
    srv_conn_hold(c);
    srv_conn_set_task(c, &g->base);
    for (int i = 0; i < r->n_reps; i++) {
        char *url = rt_url(&r->reps[i], "/v1/distributed/stats");
        if (url && r->curl)
            g->fetches[i] = rt_fetch_get(r->curl, url, r->p.health_check_timeout_s, STATS_BODY_LIMIT, auth, on_stats, g);
        free(url);
        if (g->fetches[i]) g->left++;
        else snprintf(g->err[i], sizeof g->err[i], "could not start the request");
    }
    if (!g->left) gather_answer(g);
}
