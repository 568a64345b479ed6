/* Internals shared by the HTTP server files:
 *   http_server.c   lifecycle (bind, threads, shutdown), routing on the head
 *   http_conn.c     the front door (http_conn.h, shared with cllm router):
 *                   connections on the libuv loop, reading (http_request.h),
 *                   deadlines, writing responses and SSE chunks, lingering close
 *   server_routes.c the small routes (/health, /metrics, /v1/models, /tokenize, ...)
 *   server_engine.c the engine thread and its inbox
 *   server_generate.c, server_stream.c, server_respond.c  completions and chat
 *   server_chat.c   chat templates
 *   server_stats.c  /load and /v1/distributed/stats (a snapshot the engine thread writes)
 *
 * Threads (bounded, whatever the number of connections): one loop thread runs
 * libuv (every socket, timer and response write); libuv's worker pool
 * (UV_THREADPOOL_SIZE, default 4) parses JSON bodies, renders chat templates
 * and tokenizes; one engine thread owns the cllm_engine. A generate request
 * becomes a srv_job: the engine thread appends its events (text deltas,
 * logprobs, finish) under the job's mutex, puts the job on the server's ready
 * list and wakes the loop (uv_async), which turns the events into SSE chunks
 * or, once every choice finished, into one JSON body.
 */
#ifndef CLLM_SERVER_INTERNAL_H
#define CLLM_SERVER_INTERNAL_H

#include "cllm.h"
#include "server/http_conn.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "server/tool_parser.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum { SRV_LOADING = 0, SRV_READY = 1, SRV_FAILED = 2 };
enum { SRV_CMD_DRAIN = 1, SRV_CMD_STOP = 2, SRV_CMD_EXIT = 4 };

/* Logprob record of one generated token (copied out of the engine output). */
typedef struct srv_logprob {
    int32_t id;
    float logprob;
    int n_top;
    int32_t *top_ids;   /* (n_top), owned */
    float *top_lps;     /* (n_top), owned */
} srv_logprob;

/* One engine output routed to a job: new text of one choice. */
typedef struct srv_event {
    struct srv_event *next;
    int choice;                 /* response choice index */
    char *text;                 /* owned, NUL-terminated */
    size_t text_len;
    int n_tokens;
    srv_logprob *lps;           /* (n_tokens) or NULL */
    bool finished;
    const char *finish_reason;  /* static string or NULL */
    int num_prompt_tokens, num_output_tokens;
    srv_logprob *plps;          /* (n_plps) prompt logprobs (first output of a request), entry 0 NAN */
    int n_plps;
} srv_event;

/* One HTTP generate request: n_sub engine requests (one per prompt), each
 * with req.n completions; choice index = sub * n + completion index. */
typedef struct srv_job {
    pthread_mutex_t mu;
    int refs;                   /* handler + engine thread (while it has live sub-requests) */
    /* set by the handler before submit; read-only afterwards */
    cllm_openai_request req;    /* owned */
    int n_sub;
    int32_t **prompt_ids;       /* (n_sub) owned arrays */
    size_t *n_prompt_ids;       /* (n_sub) */
    int64_t *max_tokens;        /* (n_sub) after the context-length check */
    double t_arrival;           /* monotonic seconds */
    int tool_parser;            /* chat with auto tool choice: cllm_tool_parser_kind, else 0 */
    int prompt_logprobs;        /* engine prompt_logprobs: -1 none, else top-k (echo+logprobs, prompt_logprobs) */
    bool echo_only;             /* completions echo with max_tokens 0: the prompt alone (1 token generated, dropped) */
    bool *truncated;            /* (n_sub) truncate_prompt_tokens cut the prompt (the echo decodes prompt_ids) */
    void *task;                 /* loop thread only: the srv_gen serving this job, NULL once detached */
    /* the server's ready list (under cllm_server.ready_mu) */
    struct srv_job *ready_next;
    bool ready_queued;
    /* engine-thread state */
    uint64_t *engine_ids;       /* (n_sub) */
    double *t_last;             /* (n_sub * n) time of the last token per choice */
    /* results, under mu */
    bool submitted;             /* add_request done for every sub */
    bool failed;                /* add_request failed: status/message */
    cllm_status status;
    char message[600];
    srv_event *head, *tail;
    int n_finished;             /* choices finished */
} srv_job;

typedef struct srv_msg {
    struct srv_msg *next;
    int kind;                   /* 0 submit, 1 abort */
    srv_job *job;
} srv_msg;

/* Live engine request -> job route (engine thread only). */
typedef struct srv_route {
    uint64_t id;
    srv_job *job;
    int sub;
    int n_left;                 /* completions not finished */
    bool got_first;
} srv_route;

/* The engine's statistics for /load and /v1/distributed/stats: written by the
 * engine thread, formatted on the loop thread (server_stats.c), under mu. */
typedef struct srv_stats {
    pthread_mutex_t mu;
    cllm_engine_stats engine;   /* rank 0's, every step */
    uint64_t num_steps;         /* cllm_engine_step calls */
    double step_seconds_total, step_seconds_last, step_seconds_max;
    cllm_comm_stats *dist;      /* (n_dist) every rank's groups, owned (cllm_free) */
    int n_dist;
    cllm_expert_stats moe;      /* its arrays owned (cllm_free) */
    double dist_updated_at;     /* srv_now() of the last refresh of dist; 0: never */
} srv_stats;

void srv_stats_init(srv_stats *st);
void srv_stats_free(srv_stats *st);
void srv_stats_note_step(srv_stats *st, double seconds);
void srv_stats_set_engine(srv_stats *st, const cllm_engine_stats *es);
/* Replace the collective statistics with ds (n entries) and the MoE load
 * with *es, taken (cllm_free'd later); n < 0 or es NULL keeps the previous
 * one (its refresh failed). */
void srv_stats_set_dist(srv_stats *st, cllm_comm_stats *ds, int n, cllm_expert_stats *es, double now);

struct cllm_server {
    cllm_server_params p;
    char *served_model_name, *model_root, *api_key, *host; /* owned copies */
    srv_cors cors;              /* p.cors parsed (http.cors points here) */
    cllm_metrics *metrics;
    /* the loop thread and what only it touches */
    uv_loop_t loop;
    bool loop_init;
    srv_http http;              /* the listener and connections (http_conn.h); http.draining: shutting
                                 * down, new generate requests get 503 */
    uv_async_t wake;            /* engine / main thread -> loop */
    pthread_t loop_thread;
    bool loop_thread_started;
    bool wake_closed;
    atomic_int cmd;             /* SRV_CMD_* bits for the loop (wake) */
    /* jobs with new events for the loop (engine thread -> loop) */
    pthread_mutex_t ready_mu;
    srv_job *ready_head, *ready_tail;
    srv_job **woken;            /* loop: the jobs taken off the ready list in one wake */
    int cap_woken;
    pthread_t engine_thread;
    bool engine_thread_started;
    /* inbox */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_msg *inbox_head, *inbox_tail;
    bool exit_engine;           /* under mu: abort everything and leave */
    /* state */
    atomic_int state;           /* SRV_LOADING, SRV_READY, SRV_FAILED */
    char load_error[600];
    double dist_stats_at;       /* engine thread: last distributed-stats refresh attempt (srv_now) */
    bool dist_stats_idle;       /* refreshed since the engine went idle */
    cllm_engine *engine;        /* engine thread only (+ read-only getters after READY) */
    const cllm_tokenizer *tok;  /* borrowed from the engine, set before READY */
    int32_t max_model_len;
    int32_t vocab_size;
    cllm_openai_limits limits;
    atomic_int inflight;        /* generate requests admitted and not yet answered */
    int max_inflight;
    int max_num_waiting;        /* the engine's waiting-queue bound (sequences) */
    int64_t created;            /* unix seconds at start */
    /* engine-thread routing table */
    srv_route *routes;
    int n_routes, cap_routes;
    srv_stats stats;            /* /load, /v1/distributed/stats */
    /* generation_config.json defaults for requests that leave the field
     * unset (vLLM --generation-config auto); < 0: the model gives none */
    float gen_temperature, gen_top_p, gen_min_p, gen_repetition_penalty;
    int gen_top_k;
    int tool_parser;            /* cllm_tool_parser_kind of --tool-call-parser, 0: none */
    void *chat_template;        /* compiled chat template (server_chat.c), under mu */
    bool chat_template_tried;
    char chat_template_error[600];
};

/* Free the compiled chat template (server_chat.c). */
void srv_chat_free(cllm_server *s);

double srv_now(void);

/* Jobs (server_engine.c). */
srv_job *srv_job_new(void);
void srv_job_unref(srv_job *j);
void srv_event_free(srv_event *ev);
void srv_logprobs_free(srv_logprob *l, int n); /* l (n entries) and their arrays; NULL ok */
/* Queue a submit / abort message for the engine thread. Returns false on OOM. */
bool srv_post(cllm_server *s, int kind, srv_job *j);
void *srv_engine_main(void *arg);
/* The engine stopped for good (a distributed engine lost a rank): /health
 * and every request answer 503 with msg, cllm_server_wait returns the error
 * (the process exits non-zero). Thread-safe. */
void srv_engine_failed(cllm_server *s, const char *msg);

/* Chat template rendering (server_chat.c): the rendered prompt text
 * (caller-owned, free()) or an OpenAI error (400 when the template raises or
 * the model has none). */
cllm_status srv_render_chat(cllm_server *s, const cllm_openai_message *msgs, size_t n_msgs,
                            const cllm_openai_request *req, bool add_generation_prompt, char **out,
                            cllm_openai_error *err);

/* Put j on the ready list and wake the loop (any thread, j->mu not held). */
void srv_job_notify(cllm_server *s, srv_job *j);

/* Small routes (server_routes.c): each queues its response. body/len: the
 * request body (borrowed until return). */
void srv_route_health(cllm_server *s, srv_conn *c);
void srv_route_metrics(cllm_server *s, srv_conn *c);
void srv_route_models(cllm_server *s, srv_conn *c);
void srv_route_tokenizer_info(cllm_server *s, srv_conn *c);
void srv_route_load(cllm_server *s, srv_conn *c);        /* server_stats.c */
void srv_route_dist_stats(cllm_server *s, srv_conn *c);  /* server_stats.c */
/* /tokenize and /detokenize run on a worker thread (tokenization can be long). */
void srv_route_tokenize(cllm_server *s, srv_conn *c, char *body, size_t len, bool detokenize);

/* Generate routes (server_generate.c): takes body (owned, free()). */
void srv_generate_start(cllm_server *s, srv_conn *c, cllm_openai_endpoint ep, char *body, size_t len);

#endif
