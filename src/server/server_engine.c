/* The engine thread: loads the engine, then loops draining the inbox
 * (submits, aborts), stepping the engine and routing each output to its
 * job's event queue (then the job goes on the ready list and the loop thread
 * is woken: srv_job_notify); also feeds the Prometheus metrics. Only this
 * thread touches the cllm_engine (it is not thread-safe). */
#include "server/server_internal.h"

#include "core/status.h"
#include "core/clock.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double srv_now(void) { return cllm_now_ms() * 1e-3; }

/* ------------------------------------------------------------------ jobs */
srv_job *srv_job_new(void) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 1;
    j->t_arrival = srv_now();
    return j;
}

void srv_logprobs_free(srv_logprob *l, int n) {
    for (int i = 0; l && i < n; i++) {
        free(l[i].top_ids);
        free(l[i].top_lps);
    }
    free(l);
}

void srv_event_free(srv_event *ev) {
    if (!ev) return;
    srv_logprobs_free(ev->lps, ev->n_tokens);
    srv_logprobs_free(ev->plps, ev->n_plps);
    free(ev->text);
    free(ev);
}

void srv_job_unref(srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left) return;
    while (j->head) {
        srv_event *n = j->head->next;
        srv_event_free(j->head);
        j->head = n;
    }
    for (int i = 0; i < j->n_sub; i++) free(j->prompt_ids ? j->prompt_ids[i] : NULL);
    free(j->truncated);
    free(j->prompt_ids);
    free(j->n_prompt_ids);
    free(j->max_tokens);
    free(j->engine_ids);
    free(j->t_last);
    cllm_openai_request_free(&j->req);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

bool srv_post(cllm_server *s, int kind, srv_job *j) {
    srv_msg *m = calloc(1, sizeof *m);
    if (!m) return false;
    m->kind = kind;
    m->job = j;
    pthread_mutex_lock(&j->mu);
    j->refs++; /* the message holds a reference */
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&s->mu);
    if (s->inbox_tail) s->inbox_tail->next = m;
    else s->inbox_head = m;
    s->inbox_tail = m;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void job_push(cllm_server *s, srv_job *j, srv_event *ev) {
    pthread_mutex_lock(&j->mu);
    if (j->tail) j->tail->next = ev;
    else j->head = ev;
    j->tail = ev;
    if (ev->finished) j->n_finished++;
    pthread_mutex_unlock(&j->mu);
    srv_job_notify(s, j);
}

static void job_fail(cllm_server *s, srv_job *j, cllm_status st, const char *msg) {
    pthread_mutex_lock(&j->mu);
    j->failed = true;
    j->status = st;
    snprintf(j->message, sizeof j->message, "%s", msg);
    pthread_mutex_unlock(&j->mu);
    srv_job_notify(s, j);
}

/* --------------------------------------------------------------- routing */
static int route_find(cllm_server *s, uint64_t id) {
    for (int i = 0; i < s->n_routes; i++)
        if (s->routes[i].id == id) return i;
    return -1;
}

/* Drop route i and the job reference it held. */
static void route_drop(cllm_server *s, int i) {
    srv_job *j = s->routes[i].job;
    s->routes[i] = s->routes[--s->n_routes];
    srv_job_unref(j);
}

static bool route_add(cllm_server *s, uint64_t id, srv_job *j, int sub) {
    if (s->n_routes == s->cap_routes) {
        int cap = s->cap_routes ? 2 * s->cap_routes : 64;
        srv_route *r = realloc(s->routes, (size_t)cap * sizeof *r);
        if (!r) return false;
        s->routes = r;
        s->cap_routes = cap;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
    s->routes[s->n_routes++] = (srv_route){.id = id, .job = j, .sub = sub, .n_left = j->req.n};
    return true;
}

static void abort_job(cllm_server *s, srv_job *j) {
    for (int i = 0; i < s->n_routes;) {
        if (s->routes[i].job != j) { i++; continue; }
        (void)cllm_engine_abort(s->engine, s->routes[i].id); /* NOT_FOUND: already finished */
        cllm_metrics_request_finished(s->metrics, CLLM_METRICS_FINISHED_ABORT);
        route_drop(s, i);
    }
}

/* Record the model's generation_config.json sampling defaults (vLLM's
 * --generation-config auto: temperature, top_p, top_k, min_p,
 * repetition_penalty), applied to requests that leave those fields unset. */
static void load_generation_defaults(cllm_server *s, const cllm_engine *e) {
    const cllm_model_config *c = cllm_engine_model_config(e);
    s->gen_temperature = s->gen_top_p = s->gen_min_p = s->gen_repetition_penalty = -1;
    s->gen_top_k = -1;
    if (!c->gen.present) return;
    s->gen_temperature = c->gen.temperature;
    s->gen_top_p = c->gen.top_p > 0 ? c->gen.top_p : -1;
    s->gen_top_k = c->gen.top_k > 0 ? c->gen.top_k : -1; /* 0: disabled, as the request's -1 */
    s->gen_min_p = c->gen.min_p;
    s->gen_repetition_penalty = c->gen.repetition_penalty > 0 ? c->gen.repetition_penalty : -1;
    if (s->gen_temperature >= 0 || s->gen_top_p >= 0 || s->gen_top_k > 0 || s->gen_min_p >= 0 ||
        s->gen_repetition_penalty >= 0)
        cllm_log(CLLM_LOG_INFO, "default sampling parameters from the model's generation_config.json (used when a "
                 "request leaves them unset): temperature %g, top_p %g, top_k %d, min_p %g, repetition_penalty %g "
                 "(-1: not set)", (double)s->gen_temperature, (double)s->gen_top_p, s->gen_top_k,
                 (double)s->gen_min_p, (double)s->gen_repetition_penalty);
}

static cllm_request_params request_params(const cllm_server *s, const srv_job *j, int sub) {
    const cllm_openai_request *r = &j->req;
    cllm_request_params rp = cllm_request_default_params();
    rp.n = r->n;
    rp.temperature = (float)r->temperature;
    rp.top_p = (float)r->top_p;
    rp.top_k = r->top_k;
    rp.min_p = (float)r->min_p;
    rp.repetition_penalty = (float)r->repetition_penalty;
    if (!r->has_temperature && s->gen_temperature >= 0) rp.temperature = s->gen_temperature;
    if (!r->has_top_p && s->gen_top_p > 0) rp.top_p = s->gen_top_p;
    if (!r->has_top_k && s->gen_top_k > 0) rp.top_k = s->gen_top_k;
    if (!r->has_min_p && s->gen_min_p >= 0) rp.min_p = s->gen_min_p;
    if (!r->has_repetition_penalty && s->gen_repetition_penalty > 0) rp.repetition_penalty = s->gen_repetition_penalty;
    rp.presence_penalty = (float)r->presence_penalty;
    rp.frequency_penalty = (float)r->frequency_penalty;
    rp.has_seed = r->has_seed;
    rp.seed = (uint64_t)r->seed;
    rp.stop = (const char *const *)r->stop;
    rp.num_stop = (int)r->n_stop;
    rp.stop_token_ids = r->stop_token_ids;
    rp.num_stop_token_ids = (int)r->n_stop_token_ids;
    rp.logit_bias_token_ids = r->logit_bias_ids;
    rp.logit_bias_values = r->logit_bias_values;
    rp.num_logit_bias = (int)r->n_logit_bias;
    rp.ignore_eos = r->ignore_eos;
    rp.max_tokens = j->echo_only ? 1 : (int)j->max_tokens[sub]; /* echo alone: vLLM generates one, dropped */
    rp.min_tokens = (int)r->min_tokens;
    rp.logprobs = r->logprobs;
    rp.prompt_logprobs = j->prompt_logprobs;
    rp.skip_special_tokens = r->skip_special_tokens;
    rp.include_stop_str_in_output = r->include_stop_str_in_output;
    return rp;
}

static void submit_job(cllm_server *s, srv_job *j) {
    for (int sub = 0; sub < j->n_sub; sub++) {
        cllm_request_params rp = request_params(s, j, sub);
        uint64_t id = 0;
        cllm_engine_stats es;
        cllm_engine_get_stats(s->engine, &es);
        cllm_status st = cllm_engine_add_request(s->engine, NULL, j->prompt_ids[sub], j->n_prompt_ids[sub], &rp, &id);
        if (st == CLLM_ERR_NO_KV_BLOCKS && es.num_waiting + rp.n <= s->max_num_waiting)
            st = CLLM_ERR_INVALID_ARG; /* the queue had room: the request can never fit the KV cache (400) */
        if (st == CLLM_OK && !route_add(s, id, j, sub)) {
            (void)cllm_engine_abort(s->engine, id);
            st = cllm_error(CLLM_ERR_OOM, "out of memory routing a request");
        }
        if (st != CLLM_OK) {
            abort_job(s, j);
            job_fail(s, j, st, cllm_last_error());
            return;
        }
        j->engine_ids[sub] = id;
    }
    pthread_mutex_lock(&j->mu);
    j->submitted = true;
    pthread_mutex_unlock(&j->mu);
    srv_job_notify(s, j);
}

/* Copy n engine logprob entries (NULL on OOM). */
static srv_logprob *copy_lps(const cllm_logprob_entry *src, int n) {
    srv_logprob *out = calloc((size_t)n, sizeof *out);
    if (!out) return NULL;
    for (int t = 0; t < n; t++) {
        const cllm_logprob_entry *e = &src[t];
        srv_logprob *l = &out[t];
        l->id = e->token_id;
        l->logprob = e->logprob;
        if (e->num_top > 0) {
            l->top_ids = malloc((size_t)e->num_top * sizeof *l->top_ids);
            l->top_lps = malloc((size_t)e->num_top * sizeof *l->top_lps);
            if (!l->top_ids || !l->top_lps) { srv_logprobs_free(out, t + 1); return NULL; }
            memcpy(l->top_ids, e->top_ids, (size_t)e->num_top * sizeof *l->top_ids);
            memcpy(l->top_lps, e->top_logprobs, (size_t)e->num_top * sizeof *l->top_lps);
            l->n_top = e->num_top;
        }
    }
    return out;
}

static srv_event *make_event(const cllm_request_output *o, int choice) {
    srv_event *ev = calloc(1, sizeof *ev);
    if (!ev) return NULL;
    ev->choice = choice;
    ev->text = malloc(o->text_delta_len + 1);
    if (!ev->text) { free(ev); return NULL; }
    if (o->text_delta_len) memcpy(ev->text, o->text_delta, o->text_delta_len);
    ev->text[o->text_delta_len] = 0;
    ev->text_len = o->text_delta_len;
    ev->n_tokens = o->num_new_tokens;
    ev->finished = o->finished;
    ev->finish_reason = o->finish_reason;
    ev->num_prompt_tokens = o->num_prompt_tokens;
    ev->num_output_tokens = o->num_output_tokens;
    if (o->logprobs && o->num_new_tokens > 0 && !(ev->lps = copy_lps(o->logprobs, o->num_new_tokens))) {
        srv_event_free(ev);
        return NULL;
    }
    if (o->prompt_logprobs && o->num_prompt_logprobs > 0) {
        if (!(ev->plps = copy_lps(o->prompt_logprobs, o->num_prompt_logprobs))) { srv_event_free(ev); return NULL; }
        ev->n_plps = o->num_prompt_logprobs;
    }
    return ev;
}

static cllm_metrics_finished_reason metrics_reason(const char *r) {
    if (r && !strcmp(r, "length")) return CLLM_METRICS_FINISHED_LENGTH;
    if (r && !strcmp(r, "abort")) return CLLM_METRICS_FINISHED_ABORT;
    return CLLM_METRICS_FINISHED_STOP;
}

static void route_output(cllm_server *s, const cllm_request_output *o, double now) {
    int ri = route_find(s, o->request_id);
    if (ri < 0) return; /* aborted by us */
    srv_route *r = &s->routes[ri];
    srv_job *j = r->job;
    int choice = r->sub * j->req.n + o->index;
    if (o->num_new_tokens > 0) {
        if (!r->got_first) {
            r->got_first = true;
            cllm_metrics_observe_time_to_first_token(s->metrics, o->first_token_time_s > 0 ? o->first_token_time_s
                                                                                            : now - j->t_arrival);
        }
        double *last = &j->t_last[choice];
        if (*last > 0) cllm_metrics_observe_time_per_output_token(s->metrics, (now - *last) / o->num_new_tokens);
        *last = now;
    }
    srv_event *ev = make_event(o, choice);
    if (!ev) { /* out of memory: fail the request rather than lose text silently */
        (void)cllm_engine_abort(s->engine, o->request_id);
        job_fail(s, j, CLLM_ERR_OOM, "out of memory while streaming the output");
        route_drop(s, ri);
        return;
    }
    bool fin = o->finished;
    job_push(s, j, ev);
    if (fin && --r->n_left <= 0) {
        cllm_metrics_observe_e2e_request_latency(s->metrics, now - j->t_arrival);
        cllm_metrics_request_finished(s->metrics, metrics_reason(o->finish_reason));
        route_drop(s, ri);
    }
}

static void update_stats(cllm_server *s) {
    cllm_engine_stats st;
    cllm_engine_get_stats(s->engine, &st);
    const cllm_engine_stats *p = &s->stats.engine; /* the previous step's (this thread is its only writer) */
    cllm_metrics_set_num_requests_running(s->metrics, st.num_running);
    cllm_metrics_set_num_requests_waiting(s->metrics, st.num_waiting);
    cllm_metrics_set_kv_cache_usage(s->metrics, st.kv_cache_usage);
    cllm_metrics_add_prefix_cache(s->metrics, (int64_t)(st.prefix_cache_queries - p->prefix_cache_queries),
                                  (int64_t)(st.prefix_cache_hits - p->prefix_cache_hits));
    cllm_metrics_add_preemptions(s->metrics, (int64_t)(st.num_preemptions - p->num_preemptions));
    cllm_metrics_add_prompt_tokens(s->metrics, (int64_t)(st.prompt_tokens_total - p->prompt_tokens_total));
    cllm_metrics_add_generation_tokens(s->metrics,
                                       (int64_t)(st.generation_tokens_total - p->generation_tokens_total));
    srv_stats_set_engine(&s->stats, &st);
    /* every rank's collective statistics: a round trip to the workers, so at most once a second while busy,
     * and once when the engine goes idle */
    double now = srv_now();
    bool idle = !cllm_engine_has_unfinished(s->engine);
    if ((now - s->dist_stats_at >= 1.0 || (idle && !s->dist_stats_idle)) &&
        cllm_engine_check_health(s->engine) == CLLM_OK) {
        cllm_comm_stats *ds = NULL;
        int n = 0;
        if (cllm_engine_get_distributed_stats(s->engine, &ds, &n) != CLLM_OK) n = -1; /* keep the last */
        cllm_expert_stats es = {0};
        bool moe = cllm_engine_get_expert_stats(s->engine, &es) == CLLM_OK;
        srv_stats_set_dist(&s->stats, ds, n, moe ? &es : NULL, now); /* /metrics and /v1/distributed/stats */
        s->dist_stats_at = now;
        s->dist_stats_idle = idle;
    } else if (!idle) {
        s->dist_stats_idle = false;
    }
}

static void drop_inbox(cllm_server *s, srv_msg *m) {
    while (m) {
        srv_msg *n = m->next;
        if (m->kind == 0) job_fail(s, m->job, CLLM_ERR_NO_KV_BLOCKS, "the server is shutting down");
        srv_job_unref(m->job);
        free(m);
        m = n;
    }
}

void srv_engine_failed(cllm_server *s, const char *msg) {
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->state) != SRV_FAILED) {
        snprintf(s->load_error, sizeof s->load_error, "the engine stopped: %.560s", msg);
        atomic_store(&s->state, SRV_FAILED);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Engine thread body: arg is the cllm_server. */
void *srv_engine_main(void *arg) {
    cllm_server *s = arg;
    pthread_setname_np(pthread_self(), "cllm-engine");
    cllm_engine *e = NULL;
    if (cllm_engine_create(&s->p.engine, &e) != CLLM_OK) {
        snprintf(s->load_error, sizeof s->load_error, "the model failed to load: %s", cllm_last_error());
        atomic_store(&s->state, SRV_FAILED);
        return NULL;
    }
    s->engine = e;
    load_generation_defaults(s, e);
    s->tok = cllm_engine_tokenizer(e);
    s->max_model_len = cllm_engine_max_model_len(e);
    s->vocab_size = cllm_tokenizer_vocab_size(s->tok);
    s->limits.vocab_size = s->vocab_size;
    cllm_engine_stats es;
    cllm_engine_get_stats(e, &es);
    srv_stats_set_engine(&s->stats, &es); /* the metrics count from here */
    update_stats(s);
    /* the log line first: a client that sees /health 200 can find it in the log */
    cllm_log(CLLM_LOG_INFO, "model ready: max_model_len %d, %d KV blocks", s->max_model_len, es.num_kv_blocks);
    atomic_store(&s->state, SRV_READY);

    bool dead = false; /* the engine stopped for good (a lost rank): new requests get 503 */
    for (;;) {
        bool busy = !dead && cllm_engine_has_unfinished(e);
        pthread_mutex_lock(&s->mu);
        while (!s->inbox_head && !busy && !s->exit_engine) pthread_cond_wait(&s->cv, &s->mu);
        srv_msg *m = s->inbox_head;
        s->inbox_head = s->inbox_tail = NULL;
        bool leave = s->exit_engine;
        pthread_mutex_unlock(&s->mu);
        if (leave) {
            drop_inbox(s, m);
            break;
        }
        while (m) {
            srv_msg *n = m->next;
            if (m->kind == 0 && dead) job_fail(s, m->job, CLLM_ERR_DISTRIBUTED, s->load_error);
            else if (m->kind == 0) submit_job(s, m->job);
            else abort_job(s, m->job);
            srv_job_unref(m->job);
            free(m);
            m = n;
        }
        if (!dead && cllm_engine_has_unfinished(e)) {
            const cllm_request_output *outs = NULL;
            int n_out = 0;
            double t0 = srv_now();
            cllm_status sst = cllm_engine_step(e, &outs, &n_out);
            srv_stats_note_step(&s->stats, srv_now() - t0);
            if (sst != CLLM_OK) {
                /* a failed step loses the batch: fail every live request */
                char msg[600];
                snprintf(msg, sizeof msg, "engine step failed: %s", cllm_last_error());
                cllm_log(CLLM_LOG_ERROR, "%s", msg);
                dead = cllm_engine_check_health(e) != CLLM_OK; /* a distributed engine that lost a rank */
                while (s->n_routes) {
                    srv_job *j = s->routes[0].job;
                    job_fail(s, j, dead ? CLLM_ERR_DISTRIBUTED : CLLM_ERR_INTERNAL, msg);
                    abort_job(s, j);
                }
                if (dead) srv_engine_failed(s, msg);
            } else {
                double now = srv_now();
                for (int i = 0; i < n_out; i++) route_output(s, &outs[i], now);
            }
        }
        update_stats(s);
    }
    while (s->n_routes) abort_job(s, s->routes[0].job);
    /* let the aborts be processed so blocks return before destroy */
    for (int i = 0; i < 4 && !dead && cllm_engine_has_unfinished(e); i++) {
        const cllm_request_output *outs;
        int n_out;
        if (cllm_engine_step(e, &outs, &n_out) != CLLM_OK) break;
    }
    update_stats(s);
    return NULL;
}
