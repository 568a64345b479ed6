/* POST /v1/completions and /v1/chat/completions: the request is prepared
 * on a libuv worker (parse and validate the body, render the chat template,
 * tokenize, check the context length), admitted on the loop thread (bounded:
 * 503 + Retry-After when full; 400 when it could never be admitted), posted
 * to the engine thread, then answered as SSE (server_stream.c) or one JSON
 * body (server_respond.c) from the events the engine thread reports. */
#include "server/server_gen.h"

#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* tools / tool_choice of a chat request, as vLLM's serving_chat checks them:
 * "auto" (also when unset with tools) parses tool calls when the server has
 * --enable-auto-tool-choice; explicit "auto" without it is a 400; "required"
 * and a named function need structured outputs (guided decoding), which
 * cllm does not implement: 400. Parsing keeps special tokens in the text
 * (vLLM's parsers' adjust_request), since markers such as [TOOL_CALLS] and
 * <|python_tag|> are special tokens. */
static cllm_status check_tools(cllm_server *s, srv_job *j, cllm_openai_error *err) {
    cllm_openai_request *r = &j->req;
    if (r->endpoint != CLLM_OPENAI_CHAT) return CLLM_OK;
    cllm_openai_tool_choice tc = r->tool_choice;
    if (tc == CLLM_OPENAI_TOOL_CHOICE_REQUIRED || tc == CLLM_OPENAI_TOOL_CHOICE_NAMED)
        return cllm_openai_error_set(err, 400, "invalid_request_error", "tool_choice",
                                     "tool_choice %s%s%s needs structured outputs (guided decoding) to force the "
                                     "call, which cllm does not implement; use tool_choice \"auto\" (with "
                                     "--enable-auto-tool-choice --tool-call-parser NAME) or \"none\"",
                                     tc == CLLM_OPENAI_TOOL_CHOICE_REQUIRED ? "\"required\"" : "naming function '",
                                     tc == CLLM_OPENAI_TOOL_CHOICE_NAMED ? r->tool_choice_name : "",
                                     tc == CLLM_OPENAI_TOOL_CHOICE_NAMED ? "'" : "");
    bool enabled = s->p.enable_auto_tool_choice && s->tool_parser;
    if (tc == CLLM_OPENAI_TOOL_CHOICE_AUTO && !enabled)
        return cllm_openai_error_set(err, 400, "invalid_request_error", "tool_choice",
                                     "\"auto\" tool choice requires --enable-auto-tool-choice and "
                                     "--tool-call-parser to be set");
    if (enabled && r->n_tools && tc != CLLM_OPENAI_TOOL_CHOICE_NONE) {
        j->tool_parser = s->tool_parser;
        r->skip_special_tokens = false;
    }
    return CLLM_OK;
}

/* Tokenize every prompt of j->req into j->prompt_ids and check lengths. */
static cllm_status prepare_prompts(cllm_server *s, srv_job *j, cllm_openai_error *err) {
    cllm_openai_request *r = &j->req;
    bool chat = r->endpoint == CLLM_OPENAI_CHAT;
    j->n_sub = chat ? 1 : (int)r->n_prompts;
    j->prompt_ids = calloc((size_t)j->n_sub, sizeof *j->prompt_ids);
    j->n_prompt_ids = calloc((size_t)j->n_sub, sizeof *j->n_prompt_ids);
    j->max_tokens = calloc((size_t)j->n_sub, sizeof *j->max_tokens);
    j->engine_ids = calloc((size_t)j->n_sub, sizeof *j->engine_ids);
    j->t_last = calloc((size_t)j->n_sub * (size_t)r->n, sizeof *j->t_last);
    j->truncated = calloc((size_t)j->n_sub, sizeof *j->truncated);
    if (!j->prompt_ids || !j->n_prompt_ids || !j->max_tokens || !j->engine_ids || !j->t_last || !j->truncated)
        return cllm_openai_error_set(err, 500, "internal_error", NULL, "out of memory");
    for (int i = 0; i < j->n_sub; i++) {
        cllm_status st = CLLM_OK;
        if (chat) {
            char *text = NULL;
            st = srv_render_chat(s, r->messages, r->n_messages, r, r->add_generation_prompt, &text, err);
            if (st != CLLM_OK) return st;
            st = cllm_tokenizer_encode(s->tok, text, strlen(text), r->add_special_tokens, &j->prompt_ids[i],
                                       &j->n_prompt_ids[i]);
            free(text);
        } else if (r->prompts[i].is_tokens) {
            size_t n = r->prompts[i].n_tokens;
            j->prompt_ids[i] = malloc((n ? n : 1) * sizeof(int32_t));
            if (!j->prompt_ids[i]) return cllm_openai_error_set(err, 500, "internal_error", NULL, "out of memory");
            memcpy(j->prompt_ids[i], r->prompts[i].token_ids, n * sizeof(int32_t));
            j->n_prompt_ids[i] = n;
        } else {
            st = cllm_tokenizer_encode(s->tok, r->prompts[i].text, r->prompts[i].text_len, r->add_special_tokens,
                                       &j->prompt_ids[i], &j->n_prompt_ids[i]);
        }
        if (st != CLLM_OK)
            return cllm_openai_error_set(err, 400, "invalid_request_error", chat ? "messages" : "prompt",
                                         "could not tokenize the prompt: %s", cllm_last_error());
        if (j->n_prompt_ids[i] == 0)
            return cllm_openai_error_set(err, 400, "invalid_request_error", chat ? "messages" : "prompt",
                                         "the prompt is empty after tokenization; send at least one token");
        if (r->truncate_prompt_tokens != 0) { /* vLLM: keep the last k tokens (left truncation) */
            int64_t k = r->truncate_prompt_tokens == -1 ? s->max_model_len : r->truncate_prompt_tokens;
            if (k > s->max_model_len)
                return cllm_openai_error_set(err, 400, "invalid_request_error", "truncate_prompt_tokens",
                                             "truncate_prompt_tokens value (%lld) is greater than max_model_len "
                                             "(%d). Please, select a smaller truncation size.", (long long)k,
                                             s->max_model_len);
            if ((int64_t)j->n_prompt_ids[i] > k) {
                memmove(j->prompt_ids[i], j->prompt_ids[i] + (j->n_prompt_ids[i] - (size_t)k),
                        (size_t)k * sizeof(int32_t));
                j->n_prompt_ids[i] = (size_t)k;
                j->truncated[i] = true;
            }
        }
        j->max_tokens[i] = r->max_tokens;
        st = cllm_openai_check_context_length((int64_t)j->n_prompt_ids[i], &j->max_tokens[i], s->max_model_len,
                                              chat ? "messages" : "prompt", err);
        if (st != CLLM_OK) return st;
        if (r->min_tokens > j->max_tokens[i])
            return cllm_openai_error_set(err, 400, "invalid_request_error", "min_tokens",
                                         "min_tokens (%lld) must be at most max_tokens (%lld)",
                                         (long long)r->min_tokens, (long long)j->max_tokens[i]);
    }
    return CLLM_OK;
}

/* ---------------------------------------------------------------- events */
srv_event *srv_gen_take(srv_gen *g, bool *failed, cllm_status *status, bool *done, char *msg, size_t msg_size) {
    srv_job *j = g->j;
    pthread_mutex_lock(&j->mu);
    srv_event *ev = j->head;
    j->head = j->tail = NULL;
    *failed = j->failed;
    *status = j->status;
    *done = j->n_finished >= g->total;
    snprintf(msg, msg_size, "%s", j->message);
    pthread_mutex_unlock(&j->mu);
    return ev;
}

void srv_gen_note(srv_gen *g, srv_event *ev) {
    int sub = ev->choice / g->j->req.n;
    g->sub[sub].prompt_tokens = ev->num_prompt_tokens;
    g->ch[ev->choice].completion_tokens = ev->num_output_tokens;
    if (ev->plps && !g->sub[sub].plps) { /* moved: the first output of the request carries them */
        g->sub[sub].plps = ev->plps;
        g->sub[sub].n_plps = ev->n_plps;
        ev->plps = NULL;
        ev->n_plps = 0;
    }
}

/* ------------------------------------------------------------------ the task */
static void gen_free(srv_gen *g) {
    cllm_server *s = g->s;
    srv_job *j = g->j;
    if (j) {
        pthread_mutex_lock(&j->mu);
        bool open = g->phase >= GEN_ADMIT && (j->n_finished < g->total || !j->submitted) && !j->failed;
        pthread_mutex_unlock(&j->mu);
        if (open) srv_post(s, 1, j); /* abort: frees its KV blocks now */
        j->task = NULL;
        srv_job_unref(j);
    }
    if (g->inflight) atomic_fetch_sub(&s->inflight, 1);
    for (int i = 0; g->ch && i < g->total; i++) {
        free(g->ch[i].text);
        free(g->ch[i].lps);
        cllm_tool_stream_destroy(g->ch[i].tp);
    }
    for (int i = 0; g->sub && j && i < j->n_sub; i++) srv_logprobs_free(g->sub[i].plps, g->sub[i].n_plps);
    free(g->ch);
    free(g->sub);
    srv_pool_free(&g->pool);
    free(g->body);
    free(g);
}

static void gen_pump(srv_gen *g) {
    if (!g->base.conn) return;
    srv_job *j = g->j;
    if (g->phase == GEN_ADMIT) {
        pthread_mutex_lock(&j->mu);
        bool submitted = j->submitted, failed = j->failed;
        cllm_status st = j->status;
        char msg[sizeof j->message];
        memcpy(msg, j->message, sizeof msg);
        pthread_mutex_unlock(&j->mu);
        if (failed && !submitted) {
            srv_gen_send_failure(g, st, msg);
            gen_free(g);
            return;
        }
        if (!submitted) {
            if (!g->stopping) return;
            srv_respond_errorf(g->base.conn, 503, "service_unavailable", NULL, "the server is shutting down");
            gen_free(g);
            return;
        }
        g->phase = GEN_RUN;
        if (j->req.stream) srv_stream_begin(g->base.conn);
    }
    bool end = j->req.stream ? srv_gen_pump_sse(g) : srv_gen_pump_json(g);
    if (end) gen_free(g);
}

static void gen_writable(srv_task *t) { gen_pump((srv_gen *)t); }

static void gen_closed(srv_task *t) {
    srv_gen *g = (srv_gen *)t;
    if (g->phase == GEN_PREP) return; /* prep_done frees it */
    gen_free(g);
}

static void gen_stop(srv_task *t) {
    srv_gen *g = (srv_gen *)t;
    g->stopping = true;
    if (g->phase != GEN_PREP) gen_pump(g);
}

static const srv_task_ops GEN_OPS = {.writable = gen_writable, .closed = gen_closed, .stop = gen_stop};

/* ------------------------------------------------------------- preparation */
static void prep_work(uv_work_t *w) {
    srv_gen *g = w->data;
    cllm_server *s = g->s;
    srv_job *j = g->j;
    cllm_openai_error *err = &g->err;
    cllm_status st = g->ep == CLLM_OPENAI_CHAT ? cllm_openai_parse_chat(g->body, g->len, &s->limits, &j->req, err)
                                               : cllm_openai_parse_completion(g->body, g->len, &s->limits, &j->req, err);
    free(g->body);
    g->body = NULL;
    if (st == CLLM_OK && j->req.model && strcmp(j->req.model, s->served_model_name)) {
        cllm_openai_error_set(err, 404, "NotFoundError", "model", "The model `%s` does not exist.", j->req.model);
        st = CLLM_ERR_NOT_FOUND;
    }
    if (st == CLLM_OK) st = check_tools(s, j, err);
    if (st == CLLM_OK) {
        cllm_openai_request *r = &j->req;
        bool comp = r->endpoint == CLLM_OPENAI_COMPLETION;
        j->echo_only = comp && r->echo && r->max_tokens == 0;
        if (j->echo_only) r->max_tokens = 1;
        j->prompt_logprobs = comp && r->echo && r->logprobs >= 0 ? r->logprobs : -1;
        if (r->prompt_logprobs > j->prompt_logprobs) j->prompt_logprobs = r->prompt_logprobs;
        st = prepare_prompts(s, j, err);
    }
    g->prep_status = st;
}

/* Admit a prepared request (loop thread): bounded (400 when it could never
 * be admitted, 503 while draining or full), then its choices' state, and
 * post it to the engine thread, which answers through the ready list
 * (gen_pump). Otherwise g->err says why. */
static cllm_status admit(srv_gen *g) {
    cllm_server *s = g->s;
    srv_job *j = g->j;
    int64_t seqs = (int64_t)j->n_sub * j->req.n;
    if (seqs > s->max_num_waiting) /* a retry cannot help */
        return cllm_openai_error_set(&g->err, 400, "invalid_request_error",
                                     j->req.endpoint == CLLM_OPENAI_CHAT ? "n" : "prompt",
                                     "the request needs %lld sequences (%d prompts x n=%d) but the server queues at "
                                     "most %d (--max-num-waiting): send fewer prompts or a smaller n",
                                     (long long)seqs, j->n_sub, j->req.n, s->max_num_waiting);
    if (atomic_load(&s->http.draining))
        return cllm_openai_error_set(&g->err, 503, "service_unavailable", NULL, "the server is shutting down");
    if (atomic_fetch_add(&s->inflight, 1) >= s->max_inflight) {
        atomic_fetch_sub(&s->inflight, 1);
        return cllm_openai_error_set(&g->err, 503, "service_unavailable", NULL,
                                     "the server is overloaded: %d requests in flight (the limit); retry later",
                                     s->max_inflight);
    }
    g->inflight = true;
    g->total = j->n_sub * j->req.n;
    g->ch = calloc((size_t)g->total, sizeof *g->ch);
    g->sub = calloc((size_t)j->n_sub, sizeof *g->sub);
    bool ok = g->ch && g->sub;
    for (int i = 0; ok && i < g->total; i++) {
        int sub = i / j->req.n;
        g->ch[i].prev = j->prompt_ids[sub][j->n_prompt_ids[sub] - 1];
        if (j->tool_parser && j->req.stream)
            ok = cllm_tool_stream_create((cllm_tool_parser_kind)j->tool_parser, &g->ch[i].tp) == CLLM_OK;
    }
    g->created = (int64_t)time(NULL);
    cllm_openai_make_id(j->req.endpoint == CLLM_OPENAI_CHAT ? "chatcmpl-" : "cmpl-", g->id, sizeof g->id);
    j->task = g;
    if (!ok || !srv_post(s, 0, j)) return cllm_openai_error_set(&g->err, 500, "internal_error", NULL, "out of memory");
    return CLLM_OK;
}

static void prep_done(uv_work_t *w, int status) {
    srv_gen *g = w->data;
    srv_conn *c = g->base.conn;
    (void)status;
    srv_conn_release(g->held);
    if (!c) { /* the client left while it was prepared */
        gen_free(g);
        return;
    }
    if ((g->prep_status == CLLM_OK ? admit(g) : g->prep_status) != CLLM_OK) {
        srv_respond_error(c, &g->err);
        gen_free(g); /* still GEN_PREP: nothing to abort */
        return;
    }
    g->phase = GEN_ADMIT; /* from here on, closed() frees */
}

void srv_generate_start(cllm_server *s, srv_conn *c, cllm_openai_endpoint ep, char *body, size_t len) {
    srv_gen *g = calloc(1, sizeof *g);
    srv_job *j = g ? srv_job_new() : NULL;
    if (!j) {
        free(g);
        free(body);
        srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory");
        return;
    }
    g->base.ops = &GEN_OPS;
    g->s = s;
    g->j = j;
    g->body = body;
    g->len = len;
    g->ep = ep;
    g->phase = GEN_PREP;
    g->work.data = g;
    g->held = c;
    j->prompt_logprobs = -1;
    srv_conn_hold(c);
    srv_conn_set_task(c, &g->base);
    if (uv_queue_work(&s->loop, &g->work, prep_work, prep_done)) {
        srv_conn_set_task(c, NULL);
        srv_conn_release(c);
        gen_free(g);
        srv_respond_errorf(c, 500, "internal_error", NULL, "cannot queue the request");
    }
}
