/* One completions / chat request in flight (server_generate.c), its SSE
 * output (server_stream.c) and its JSON output (server_respond.c). All of it
 * runs on the loop thread, except the preparation (parse, chat template,
 * tokenize), which runs on a libuv worker before the request is admitted.
 *
 * Life of a srv_gen: PREP (worker) -> ADMIT (posted to the engine thread,
 * waiting for cllm_engine_add_request: a full queue is a plain 503 even for
 * streams) -> RUN (events drained on every wake: SSE chunks written, or
 * accumulated until every choice finished) -> freed. The connection going
 * away (closed) aborts the engine request at once; the shutdown deadline
 * (stop) ends it with finish_reason "abort".
 */
#ifndef CLLM_SERVER_GEN_H
#define CLLM_SERVER_GEN_H

#include "server/server_internal.h"

/* Strings and arrays that live as long as one response is being built. */
typedef struct srv_pool {
    void **p;
    size_t n, cap;
} srv_pool;
void *srv_pool_keep(srv_pool *pl, void *x); /* x, or NULL (x freed) on OOM */
void srv_pool_free(srv_pool *pl);

/* Per choice (index = sub * n + completion). */
typedef struct gen_choice {
    int64_t offset;             /* completions: text offset of the next token */
    int32_t prev;               /* last token (context of the next token's string) */
    int completion_tokens;
    cllm_openai_finish_reason fin;
    bool finished, echoed;
    char *text;                 /* JSON answer: the text so far */
    size_t len, cap;
    cllm_openai_token_logprob *lps; /* JSON answer: (n_lps), strings in the gen's pool */
    size_t n_lps, cap_lps;
    cllm_tool_stream *tp;       /* SSE chat with a tool parser */
} gen_choice;

/* Per prompt (sub-request). */
typedef struct gen_sub {
    srv_logprob *plps;          /* (n_plps) prompt logprobs from the engine, owned; entry 0 NAN */
    int n_plps;
    int prompt_tokens;
} gen_sub;

enum { GEN_PREP, GEN_ADMIT, GEN_RUN };

typedef struct srv_gen {
    srv_task base;
    cllm_server *s;
    srv_job *j;                 /* owned reference */
    srv_conn *held;             /* kept alive while the worker prepares */
    uv_work_t work;
    char *body;                 /* request body, owned until prepared */
    size_t len;
    cllm_openai_endpoint ep;
    cllm_status prep_status;
    cllm_openai_error err;
    int phase;
    bool inflight;              /* counted in s->inflight */
    bool stopping;              /* the shutdown deadline passed */
    int total;                  /* choices */
    gen_choice *ch;             /* (total) */
    gen_sub *sub;               /* (n_sub) */
    srv_pool pool;              /* JSON answer: token strings */
    char id[64];
    int64_t created;
    bool role_sent;             /* chat SSE: the role deltas went out */
} srv_gen;

/* Token strings and logprob records (server_respond.c). */
const char *srv_token_str(cllm_server *s, srv_pool *pl, int32_t prev, int32_t id, size_t *len);
cllm_openai_finish_reason srv_finish_of(const char *r);
/* Logprob records of an event's tokens; c->offset/prev advance. NULL on OOM. */
cllm_openai_token_logprob *srv_event_logprobs(cllm_server *s, srv_pool *pl, const srv_event *ev, gen_choice *c);
/* The echoed prompt of sub as logprob records (entry 0: null logprob and
 * top), top-k = req.logprobs; advances c->offset. NULL on OOM. */
cllm_openai_token_logprob *srv_prompt_logprobs(srv_gen *g, srv_pool *pl, int sub, gen_choice *c, size_t *n);
/* The echoed prompt text of choice i (decoded ids or the prompt string), into pl. */
const char *srv_echo_text(srv_gen *g, srv_pool *pl, int i, size_t *len);

/* Answers (server_respond.c): take the job's events; once every choice
 * finished (or failed, or stop), answer the connection. Return true when
 * the request is done (answered). */
bool srv_gen_pump_json(srv_gen *g);
/* SSE (server_stream.c): write what the events give (nothing while the
 * connection's queue is above SRV_WRITE_HIGH); true when the stream ended. */
bool srv_gen_pump_sse(srv_gen *g);
/* The OpenAI error for an engine failure st with message msg (the one mapping
 * of engine statuses to HTTP, for plain answers and stream error events):
 * CLLM_ERR_NO_KV_BLOCKS and CLLM_ERR_DISTRIBUTED (a dead worker rank) 503
 * service_unavailable, context length / invalid argument 400, else 500. */
void srv_gen_failure_error(const srv_gen *g, cllm_status st, const char *msg, cllm_openai_error *err);
/* Answer a failed submission with srv_gen_failure_error's error. */
void srv_gen_send_failure(srv_gen *g, cllm_status st, const char *msg);

/* Take the job's pending events (loop thread); failed (with its engine status), done and message as of now. */
srv_event *srv_gen_take(srv_gen *g, bool *failed, cllm_status *status, bool *done, char *msg, size_t msg_size);
/* Record an event's prompt logprobs (moved) and counts into g->sub / g->ch. */
void srv_gen_note(srv_gen *g, srv_event *ev);

#endif
