/* Internals shared by the HTTP server files (http_server.c: MHD glue and
 * routing; server_engine.c: the engine thread and its inbox; server_generate.c:
 * completions/chat handlers and streaming; server_chat.c: chat templates).
 *
 * Threads: one engine thread owns the cllm_engine (loads it, then loops:
 * drain the inbox, cllm_engine_step, route outputs to jobs). Each HTTP
 * connection runs on its own MHD thread; a generate request becomes a
 * srv_job, submitted through the inbox, whose events (text deltas, logprobs,
 * finish) the connection thread waits for (non-streaming) or turns into SSE
 * frames from MHD's content-reader callback (streaming).
 */
#ifndef CLLM_SERVER_INTERNAL_H
#define CLLM_SERVER_INTERNAL_H

#include "cllm.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "server/tool_parser.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum { SRV_LOADING = 0, SRV_READY = 1, SRV_FAILED = 2 };

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
} srv_event;

/* One HTTP generate request: n_sub engine requests (one per prompt), each
 * with req.n completions; choice index = sub * n + completion index. */
typedef struct srv_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                   /* handler + engine thread (while it has live sub-requests) */
    /* set by the handler before submit; read-only afterwards */
    cllm_openai_request req;    /* owned */
    int n_sub;
    int32_t **prompt_ids;       /* (n_sub) owned arrays */
    size_t *n_prompt_ids;       /* (n_sub) */
    int64_t *max_tokens;        /* (n_sub) after the context-length check */
    double t_arrival;           /* monotonic seconds */
    int tool_parser;            /* chat with auto tool choice: cllm_tool_parser_kind, else 0 */
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

struct cllm_server {
    cllm_server_params p;
    char *served_model_name, *model_root, *api_key, *host; /* owned copies */
    cllm_metrics *metrics;
    struct MHD_Daemon *daemon;
    int port;                   /* bound port */
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
    double dist_stats_at;       /* engine thread: last distributed-stats refresh (srv_now) */
    bool dist_stats_idle;       /* refreshed since the engine went idle */
    cllm_engine *engine;        /* engine thread only (+ read-only getters after READY) */
    const cllm_tokenizer *tok;  /* borrowed from the engine, set before READY */
    int32_t max_model_len;
    int32_t vocab_size;
    cllm_openai_limits limits;
    atomic_int inflight;        /* generate requests being served */
    int max_inflight;
    atomic_bool draining;       /* shutting down: new generate requests get 503 */
    atomic_bool hard_stop;      /* grace period over: waits give up */
    int64_t created;            /* unix seconds at start */
    /* engine-thread routing table */
    srv_route *routes;
    int n_routes, cap_routes;
    cllm_engine_stats last_stats;
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

/* Generate routes (server_generate.c). Both queue a response on conn. */
struct MHD_Connection;
int srv_handle_generate(cllm_server *s, struct MHD_Connection *conn, cllm_openai_endpoint ep,
                        const char *body, size_t len);

/* Responses (http_server.c). */
int srv_send(struct MHD_Connection *conn, int status, const char *ctype, char *body, size_t len);
int srv_send_error(struct MHD_Connection *conn, const cllm_openai_error *err);
int srv_send_errorf(struct MHD_Connection *conn, int status, const char *type, const char *param,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Wait (j->mu held) on j->cv for a change or 100 ms; on a timeout, poll
 * conn's socket. Returns 0 (go on), 1 (the client hung up) or 2 (the server
 * is past its shutdown grace period). */
int srv_wait(cllm_server *s, srv_job *j, struct MHD_Connection *conn);

#endif
