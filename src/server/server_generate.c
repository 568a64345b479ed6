/* POST /v1/completions and /v1/chat/completions: parse and validate the body
 * (server/openai_protocol.h), tokenize (chat: render the model's chat
 * template first), check the context length, admit (bounded), submit to the
 * engine thread, then either wait for every choice and answer one JSON body,
 * or stream SSE chunks from MHD's content-reader callback exactly as OpenAI
 * does ("data: {...}\n\n" ... "data: [DONE]\n\n"). */
#include "server/server_internal.h"

#include "core/status.h"
#include "server/sse.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ a free-list */
typedef struct pool {
    void **p;
    size_t n, cap;
} pool;

static void *pool_keep(pool *pl, void *x) {
    if (!x) return NULL;
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 32;
        void **np = realloc(pl->p, cap * sizeof *np);
        if (!np) { free(x); return NULL; }
        pl->p = np;
        pl->cap = cap;
    }
    return pl->p[pl->n++] = x;
}

static void pool_free(pool *pl) {
    for (size_t i = 0; i < pl->n; i++) free(pl->p[i]);
    free(pl->p);
    *pl = (pool){0};
}

/* The text one token adds after token prev (special tokens kept), kept in
 * pl: decode([prev, id]) minus decode([prev]), so that SentencePiece-style
 * decoders keep the token's leading space (vLLM's per-token detokenization).
 * prev < 0: decode([id]). */
static const char *token_str(cllm_server *s, pool *pl, int32_t prev, int32_t id, size_t *len) {
    char *t = NULL, *p = NULL;
    size_t tl = 0, pl_len = 0;
    int32_t ids[2] = {prev, id};
    bool ok;
    if (prev >= 0)
        ok = cllm_tokenizer_decode(s->tok, ids, 2, false, &t, &tl) == CLLM_OK &&
             cllm_tokenizer_decode(s->tok, ids, 1, false, &p, &pl_len) == CLLM_OK && pl_len <= tl &&
             !memcmp(t, p, pl_len);
    else
        ok = false;
    if (ok) {
        memmove(t, t + pl_len, tl - pl_len + 1);
        tl -= pl_len;
    } else {
        free(t);
        t = NULL;
        tl = 0;
        if (cllm_tokenizer_decode(s->tok, &id, 1, false, &t, &tl) != CLLM_OK) {
            t = calloc(1, 1);
            tl = 0;
        }
    }
    free(p);
    *len = tl;
    return pool_keep(pl, t);
}

static cllm_openai_finish_reason finish_of(const char *r) {
    if (!r) return CLLM_OPENAI_FINISH_NONE;
    if (!strcmp(r, "length")) return CLLM_OPENAI_FINISH_LENGTH;
    if (!strcmp(r, "abort")) return CLLM_OPENAI_FINISH_ABORT;
    return CLLM_OPENAI_FINISH_STOP;
}

/* Logprob records of an event (strings and arrays kept in pl). *offset:
 * running text offset of the choice (advanced). NULL on OOM. */
static cllm_openai_token_logprob *event_logprobs(cllm_server *s, pool *pl, const srv_event *ev, int64_t *offset,
                                                 int32_t *prev) {
    cllm_openai_token_logprob *out = pool_keep(pl, calloc((size_t)ev->n_tokens + 1, sizeof *out));
    if (!out) return NULL;
    for (int t = 0; t < ev->n_tokens; t++) {
        const srv_logprob *l = &ev->lps[t];
        cllm_openai_token_logprob *o = &out[t];
        o->token = token_str(s, pl, *prev, l->id, &o->token_len);
        if (!o->token) return NULL;
        o->logprob = l->logprob;
        o->text_offset = *offset;
        *offset += (int64_t)o->token_len;
        if (l->n_top > 0) {
            cllm_openai_top_logprob *top = pool_keep(pl, calloc((size_t)l->n_top, sizeof *top));
            if (!top) return NULL;
            for (int k = 0; k < l->n_top; k++) {
                top[k].token = token_str(s, pl, *prev, l->top_ids[k], &top[k].token_len);
                if (!top[k].token) return NULL;
                top[k].logprob = l->top_lps[k];
            }
            o->top = top;
            o->n_top = (size_t)l->n_top;
        }
        *prev = l->id;
    }
    return out;
}

/* ------------------------------------------------------------ admission */
static int send_submit_error(struct MHD_Connection *conn, cllm_status st, const char *msg, const char *param) {
    cllm_openai_error err;
    if (st == CLLM_ERR_NO_KV_BLOCKS)
        cllm_openai_error_set(&err, 503, "service_unavailable", NULL, "the server is overloaded: %s; retry later",
                              msg);
    else if (st == CLLM_ERR_DISTRIBUTED) /* a worker rank died: the engine is stopping, another replica may serve */
        cllm_openai_error_set(&err, 503, "service_unavailable", NULL, "%s", msg);
    else if (st == CLLM_ERR_CONTEXT_LENGTH || st == CLLM_ERR_INVALID_ARG)
        cllm_openai_error_set(&err, 400, "invalid_request_error", param, "%s", msg);
    else
        cllm_openai_error_set(&err, 500, "internal_error", NULL, "%s", msg);
    if (st == CLLM_ERR_CONTEXT_LENGTH) snprintf(err.code, sizeof err.code, "context_length_exceeded");
    return srv_send_error(conn, &err);
}

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
    if (!j->prompt_ids || !j->n_prompt_ids || !j->max_tokens || !j->engine_ids || !j->t_last)
        return cllm_openai_error_set(err, 500, "internal_error", NULL, "out of memory");
    for (int i = 0; i < j->n_sub; i++) {
        cllm_status st = CLLM_OK;
        if (chat) {
            char *text = NULL;
            st = srv_render_chat(s, r->messages, r->n_messages, r, r->add_generation_prompt, &text, err);
            if (st != CLLM_OK) return st;
            st = cllm_tokenizer_encode(s->tok, text, strlen(text), false, &j->prompt_ids[i], &j->n_prompt_ids[i]);
            free(text);
        } else if (r->prompts[i].is_tokens) {
            size_t n = r->prompts[i].n_tokens;
            j->prompt_ids[i] = malloc((n ? n : 1) * sizeof(int32_t));
            if (!j->prompt_ids[i]) return cllm_openai_error_set(err, 500, "internal_error", NULL, "out of memory");
            memcpy(j->prompt_ids[i], r->prompts[i].token_ids, n * sizeof(int32_t));
            j->n_prompt_ids[i] = n;
        } else {
            st = cllm_tokenizer_encode(s->tok, r->prompts[i].text, r->prompts[i].text_len, true, &j->prompt_ids[i],
                                       &j->n_prompt_ids[i]);
        }
        if (st != CLLM_OK)
            return cllm_openai_error_set(err, 400, "invalid_request_error", chat ? "messages" : "prompt",
                                         "could not tokenize the prompt: %s", cllm_last_error());
        if (j->n_prompt_ids[i] == 0)
            return cllm_openai_error_set(err, 400, "invalid_request_error", chat ? "messages" : "prompt",
                                         "the prompt is empty after tokenization; send at least one token");
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

/* --------------------------------------------------------------- streaming */
typedef struct stream_st {
    cllm_server *s;
    srv_job *j;
    struct MHD_Connection *conn;
    char id[64];
    int64_t created;
    int total;                  /* choices */
    int phase;                  /* 0 preamble, 1 events, 2 usage + [DONE], 3 end */
    char *buf;
    size_t len, off, cap;
    int64_t *offsets;           /* (total) text offsets for completions logprobs */
    int32_t *prev;              /* (total) last token of each choice */
    int *completion_tokens;     /* (total) */
    int *prompt_tokens;         /* (n_sub) */
    bool complete;              /* every choice finished (no abort needed) */
    bool role_sent;             /* chat: the role deltas went out (with the first tokens, as vLLM) */
    cllm_tool_stream **tp;      /* (total) tool-call parsers, or NULL */
} stream_st;

static bool buf_add(stream_st *st, char *frame, size_t n) {
    if (!frame) return false;
    if (st->len + n + 1 > st->cap) {
        size_t cap = (st->len + n + 1) * 2;
        char *b = realloc(st->buf, cap);
        if (!b) { free(frame); return false; }
        st->buf = b;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, frame, n);
    st->len += n;
    free(frame);
    return true;
}

static bool add_chunk(stream_st *st, const cllm_openai_chunk *c) {
    size_t n = 0;
    char *json = st->j->req.endpoint == CLLM_OPENAI_CHAT ? cllm_openai_format_chat_chunk(c)
                                                         : cllm_openai_format_completion_chunk(c);
    char *f = cllm_sse_frame_take(json, &n);
    return buf_add(st, f, n);
}

static cllm_openai_chunk base_chunk(stream_st *st, int index) {
    cllm_openai_chunk c = {0};
    c.id = st->id;
    c.model = st->s->served_model_name;
    c.created = st->created;
    c.index = (uint32_t)index;
    c.include_usage = st->j->req.include_usage;
    return c;
}

/* A chat event through the choice's tool-call parser: one chunk per parser
 * event (content, or one whole tool call); logprobs ride on the first chunk
 * (alone when the parser holds the text back); the finish chunk says
 * "tool_calls" when the choice called any. false on OOM. */
static bool emit_tool_event(stream_st *st, const srv_event *ev, cllm_openai_finish_reason fin,
                            const cllm_openai_token_logprob *lps) {
    cllm_tool_stream *tp = st->tp[ev->choice];
    const cllm_tool_event *te;
    size_t n = 0;
    if (cllm_tool_stream_feed(tp, ev->text, ev->text_len, ev->finished, &te, &n) != CLLM_OK) return false;
    if (fin == CLLM_OPENAI_FINISH_STOP || fin == CLLM_OPENAI_FINISH_LENGTH)
        if (cllm_tool_stream_n_calls(tp)) fin = CLLM_OPENAI_FINISH_TOOL_CALLS;
    for (size_t i = 0; i < n || (i == 0 && (lps || fin != CLLM_OPENAI_FINISH_NONE)); i++) {
        cllm_openai_chunk c = base_chunk(st, ev->choice);
        if (i < n && te[i].is_call) {
            c.tool_calls = te[i].call;
            c.n_tool_calls = 1;
            c.tool_call_index = te[i].index;
        } else if (i < n) {
            c.text = te[i].text;
            c.text_len = te[i].text_len;
        }
        if (i == 0 && lps) {
            c.logprobs = lps;
            c.has_logprobs = true;
            c.n_logprobs = (size_t)ev->n_tokens;
        }
        if (i + 1 >= n) c.finish_reason = fin;
        if (!add_chunk(st, &c)) return false;
    }
    return true;
}

static bool emit_event(stream_st *st, const srv_event *ev) {
    const cllm_openai_request *r = &st->j->req;
    int sub = ev->choice / r->n;
    st->prompt_tokens[sub] = ev->num_prompt_tokens;
    st->completion_tokens[ev->choice] = ev->num_output_tokens;
    cllm_openai_finish_reason fin = ev->finished ? finish_of(ev->finish_reason) : CLLM_OPENAI_FINISH_NONE;
    if (!ev->text_len && !ev->finished && !ev->lps) return true; /* nothing to say yet */
    pool pl = {0};
    if (st->tp) {
        const cllm_openai_token_logprob *lps = NULL;
        if (r->logprobs >= 0 && ev->lps) {
            lps = event_logprobs(st->s, &pl, ev, &st->offsets[ev->choice], &st->prev[ev->choice]);
            if (!lps) { pool_free(&pl); return false; }
        }
        bool ok = emit_tool_event(st, ev, fin, lps);
        pool_free(&pl);
        return ok;
    }
    cllm_openai_chunk c = base_chunk(st, ev->choice);
    c.text = ev->finished && !ev->text_len && r->endpoint == CLLM_OPENAI_CHAT ? NULL : ev->text;
    c.text_len = ev->text_len;
    c.finish_reason = fin;
    if (r->logprobs >= 0 && ev->lps) {
        c.logprobs = event_logprobs(st->s, &pl, ev, &st->offsets[ev->choice], &st->prev[ev->choice]);
        if (!c.logprobs) { pool_free(&pl); return false; }
        c.has_logprobs = true;
        c.n_logprobs = (size_t)ev->n_tokens;
    }
    bool ok = add_chunk(st, &c);
    pool_free(&pl);
    return ok;
}

/* Produce the next frames into st->buf. false: end the stream with an error. */
static bool stream_fill(stream_st *st) {
    srv_job *j = st->j;
    const cllm_openai_request *r = &j->req;
    if (st->phase == 0) {
        for (int i = 0; i < st->total; i++) {
            cllm_openai_chunk c = base_chunk(st, i);
            if (r->endpoint == CLLM_OPENAI_CHAT) {
                break; /* role deltas go out with the first tokens (phase 1), as vLLM sends them */
            } else if (r->echo) {
                const cllm_openai_prompt *p = &r->prompts[i / r->n];
                char *t = NULL;
                size_t tl = 0;
                if (p->is_tokens) {
                    if (cllm_tokenizer_decode(st->s->tok, p->token_ids, p->n_tokens, false, &t, &tl) != CLLM_OK) t = NULL;
                    c.text = t ? t : "";
                    c.text_len = t ? tl : 0;
                } else {
                    c.text = p->text;
                    c.text_len = p->text_len;
                }
                st->offsets[i] = (int64_t)c.text_len;
                bool ok = add_chunk(st, &c);
                free(t);
                if (!ok) return false;
                continue;
            } else {
                continue;
            }
            if (!add_chunk(st, &c)) return false;
        }
        st->phase = 1;
        return true;
    }
    if (st->phase == 1) {
        pthread_mutex_lock(&j->mu);
        bool stopped = false;
        while (!j->head && j->n_finished < st->total && !j->failed) {
            int w = srv_wait(st->s, j, st->conn);
            if (w == 1) { pthread_mutex_unlock(&j->mu); return false; } /* client gone */
            if (w == 2) { stopped = true; break; }
        }
        srv_event *ev = j->head;
        j->head = j->tail = NULL;
        bool failed = j->failed, done = j->n_finished >= st->total;
        char msg[sizeof j->message];
        memcpy(msg, j->message, sizeof msg);
        pthread_mutex_unlock(&j->mu);
        bool ok = true;
        if (r->endpoint == CLLM_OPENAI_CHAT && !st->role_sent && !failed && (ev || done || stopped)) {
            /* vLLM's first iteration: one role delta per choice when the first output arrives, so a
             * client's time to first chunk is the time to the first token */
            for (int i = 0; ok && i < st->total; i++) {
                cllm_openai_chunk c = base_chunk(st, i);
                c.first = true;
                ok = add_chunk(st, &c);
            }
            st->role_sent = true;
        }
        while (ev) {
            srv_event *n = ev->next;
            if (ok) ok = emit_event(st, ev);
            srv_event_free(ev);
            ev = n;
        }
        if (!ok) return false;
        if (failed) { /* vLLM streams an error object, then [DONE] */
            cllm_openai_error err;
            cllm_openai_error_set(&err, 500, "internal_error", NULL, "%s", msg);
            size_t fl = 0;
            char *f = cllm_sse_frame_take(cllm_openai_format_error(&err), &fl);
            if (!buf_add(st, f, fl)) return false;
            st->phase = 2;
        } else if (done) {
            st->complete = true;
            st->phase = 2;
        } else if (stopped) { /* grace period over: close every choice with "abort" */
            for (int i = 0; i < st->total; i++) {
                cllm_openai_chunk c = base_chunk(st, i);
                c.finish_reason = CLLM_OPENAI_FINISH_ABORT;
                if (r->endpoint == CLLM_OPENAI_COMPLETION) { c.text = ""; c.text_len = 0; }
                if (!add_chunk(st, &c)) return false;
            }
            st->phase = 2;
        }
        return true;
    }
    if (st->phase == 2) {
        if (r->include_usage) {
            cllm_openai_usage u = {0};
            for (int i = 0; i < j->n_sub; i++) u.prompt_tokens += st->prompt_tokens[i];
            for (int i = 0; i < st->total; i++) u.completion_tokens += st->completion_tokens[i];
            size_t n = 0;
            char *f = cllm_sse_frame_take(
                cllm_openai_format_usage_chunk(r->endpoint, st->id, st->s->served_model_name, st->created, u), &n);
            if (!buf_add(st, f, n)) return false;
        }
        char *d = strdup(CLLM_SSE_DONE);
        if (!buf_add(st, d, strlen(CLLM_SSE_DONE))) return false;
        st->phase = 3;
    }
    return true;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max) {
    stream_st *st = cls;
    (void)pos;
    while (st->off == st->len) {
        st->off = st->len = 0;
        if (st->phase == 3) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_fill(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->len - st->off;
    if (n > max) n = max;
    memcpy(out, st->buf + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

/* Response freed: the connection is done (finished, or the client left). */
static void stream_free(void *cls) {
    stream_st *st = cls;
    if (!st->complete) srv_post(st->s, 1, st->j); /* abort: frees its KV blocks now */
    atomic_fetch_sub(&st->s->inflight, 1);
    srv_job_unref(st->j);
    free(st->buf);
    free(st->offsets);
    free(st->prev);
    free(st->completion_tokens);
    free(st->prompt_tokens);
    for (int i = 0; st->tp && i < st->total; i++) cllm_tool_stream_destroy(st->tp[i]);
    free(st->tp);
    free(st);
}

static int start_stream(cllm_server *s, struct MHD_Connection *conn, srv_job *j) {
    stream_st *st = calloc(1, sizeof *st);
    int total = j->n_sub * j->req.n;
    if (st) {
        st->offsets = calloc((size_t)total, sizeof *st->offsets);
        st->prev = calloc((size_t)total, sizeof *st->prev);
        for (int i = 0; st->prev && i < total; i++) {
            int sub = i / j->req.n;
            st->prev[i] = j->prompt_ids[sub][j->n_prompt_ids[sub] - 1];
        }
        st->completion_tokens = calloc((size_t)total, sizeof *st->completion_tokens);
        st->prompt_tokens = calloc((size_t)j->n_sub, sizeof *st->prompt_tokens);
        bool tp_ok = true;
        if (j->tool_parser && (st->tp = calloc((size_t)total, sizeof *st->tp)))
            for (int i = 0; i < total; i++)
                tp_ok = tp_ok && cllm_tool_stream_create((cllm_tool_parser_kind)j->tool_parser, &st->tp[i]) == CLLM_OK;
        if (j->tool_parser && (!st->tp || !tp_ok)) { /* OOM: give up below */
            free(st->prompt_tokens);
            st->prompt_tokens = NULL;
        }
    }
    struct MHD_Response *resp = NULL;
    if (st && st->offsets && st->prev && st->completion_tokens && st->prompt_tokens) {
        st->s = s;
        st->j = j;
        st->conn = conn;
        st->total = total;
        st->created = (int64_t)time(NULL);
        cllm_openai_make_id(j->req.endpoint == CLLM_OPENAI_CHAT ? "chatcmpl-" : "cmpl-", st->id, sizeof st->id);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, st, stream_free);
    }
    if (!resp) { /* the caller still owns j and the inflight slot */
        if (st) {
            free(st->offsets); free(st->prev); free(st->completion_tokens); free(st->prompt_tokens);
            for (int i = 0; st->tp && i < total; i++) cllm_tool_stream_destroy(st->tp[i]);
            free(st->tp);
            free(st);
        }
        return -1;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    int ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp); /* stream_free runs when the connection drops it */
    return ret;
}

/* ----------------------------------------------------------- non-streaming */
typedef struct acc_choice {
    char *text;
    size_t len, cap;
    cllm_openai_token_logprob *lps;
    size_t n_lps, cap_lps;
    int64_t offset;
    int32_t prev;               /* last token (context of the next token string) */
    cllm_openai_finish_reason fin;
    int completion_tokens;
} acc_choice;

static bool acc_text(acc_choice *c, const char *t, size_t n) {
    if (c->len + n + 1 > c->cap) {
        size_t cap = (c->len + n + 1) * 2;
        char *b = realloc(c->text, cap);
        if (!b) return false;
        c->text = b;
        c->cap = cap;
    }
    memcpy(c->text + c->len, t, n);
    c->len += n;
    c->text[c->len] = 0;
    return true;
}

static bool acc_event(cllm_server *s, pool *pl, acc_choice *c, const srv_event *ev) {
    if (!acc_text(c, ev->text, ev->text_len)) return false;
    c->completion_tokens = ev->num_output_tokens;
    if (ev->finished) c->fin = finish_of(ev->finish_reason);
    if (ev->lps && ev->n_tokens) {
        cllm_openai_token_logprob *l = event_logprobs(s, pl, ev, &c->offset, &c->prev);
        if (!l) return false;
        if (c->n_lps + (size_t)ev->n_tokens > c->cap_lps) {
            size_t cap = (c->n_lps + (size_t)ev->n_tokens) * 2;
            cllm_openai_token_logprob *nl = realloc(c->lps, cap * sizeof *nl);
            if (!nl) return false;
            c->lps = nl;
            c->cap_lps = cap;
        }
        memcpy(c->lps + c->n_lps, l, (size_t)ev->n_tokens * sizeof *l);
        c->n_lps += (size_t)ev->n_tokens;
    }
    return true;
}

static int finish_blocking(cllm_server *s, struct MHD_Connection *conn, srv_job *j) {
    const cllm_openai_request *r = &j->req;
    int total = j->n_sub * r->n;
    acc_choice *acc = calloc((size_t)total, sizeof *acc);
    cllm_tool_parse_result *parsed = NULL; /* (total) with a tool parser */
    int *prompt_tokens = calloc((size_t)j->n_sub, sizeof *prompt_tokens);
    pool pl = {0};
    int ret = MHD_NO;
    bool ok = acc && prompt_tokens;
    for (int i = 0; ok && r->echo && i < total; i++) { /* completions echo: prompt first */
        const cllm_openai_prompt *p = &r->prompts[i / r->n];
        if (p->is_tokens) {
            char *t = NULL;
            size_t tl = 0;
            if (cllm_tokenizer_decode(s->tok, p->token_ids, p->n_tokens, false, &t, &tl) == CLLM_OK)
                ok = acc_text(&acc[i], t, tl);
            free(t);
        } else {
            ok = acc_text(&acc[i], p->text, p->text_len);
        }
        if (ok) acc[i].offset = (int64_t)acc[i].len;
    }
    for (int i = 0; ok && i < total; i++) acc[i].prev = j->prompt_ids[i / r->n][j->n_prompt_ids[i / r->n] - 1];
    int hung = 0;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        srv_event *ev = j->head;
        j->head = j->tail = NULL;
        bool fin = j->n_finished >= total || j->failed;
        pthread_mutex_unlock(&j->mu);
        for (; ev; ) {
            srv_event *n = ev->next;
            prompt_tokens[ev->choice / r->n] = ev->num_prompt_tokens;
            if (ok) ok = acc_event(s, &pl, &acc[ev->choice], ev);
            srv_event_free(ev);
            ev = n;
        }
        pthread_mutex_lock(&j->mu);
        if (fin || hung) break;
        if (!j->head && j->n_finished < total && !j->failed) hung = srv_wait(s, j, conn);
    }
    bool failed = j->failed, done = j->n_finished >= total;
    pthread_mutex_unlock(&j->mu);
    if (!done || hung == 1) srv_post(s, 1, j);
    if (hung == 1) { ret = MHD_NO; goto out; } /* client gone: close the connection */
    if (failed) { ret = send_submit_error(conn, j->status, j->message, NULL); goto out; }
    if (!ok) {
        ret = srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory building the response");
        goto out;
    }
    cllm_openai_choice *ch = pool_keep(&pl, calloc((size_t)total, sizeof *ch));
    if (!ch) { ret = srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory"); goto out; }
    cllm_openai_response resp = {0};
    char id[64];
    resp.id = cllm_openai_make_id(r->endpoint == CLLM_OPENAI_CHAT ? "chatcmpl-" : "cmpl-", id, sizeof id);
    resp.model = s->served_model_name;
    resp.created = (int64_t)time(NULL);
    resp.choices = ch;
    resp.n_choices = (size_t)total;
    for (int i = 0; i < total; i++) {
        ch[i].index = (uint32_t)i;
        ch[i].text = acc[i].text ? acc[i].text : "";
        ch[i].text_len = acc[i].len;
        ch[i].has_logprobs = r->logprobs >= 0;
        ch[i].logprobs = acc[i].lps;
        ch[i].n_logprobs = acc[i].n_lps;
        ch[i].finish_reason = done ? acc[i].fin : CLLM_OPENAI_FINISH_ABORT;
        resp.usage.completion_tokens += acc[i].completion_tokens;
    }
    for (int i = 0; i < j->n_sub; i++) resp.usage.prompt_tokens += prompt_tokens[i];
    if (j->tool_parser && !(parsed = calloc((size_t)total, sizeof *parsed))) ok = false;
    for (int i = 0; ok && j->tool_parser && i < total; i++) /* each choice parses on its own */
        ok = cllm_tool_parse_choice((cllm_tool_parser_kind)j->tool_parser, acc[i].text, acc[i].len, &parsed[i],
                                    &ch[i]) == CLLM_OK;
    if (!ok) {
        ret = srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory parsing tool calls");
        goto out;
    }
    char *body = r->endpoint == CLLM_OPENAI_CHAT ? cllm_openai_format_chat_completion(&resp)
                                                 : cllm_openai_format_completion(&resp);
    ret = body ? srv_send(conn, 200, "application/json", body, strlen(body))
               : srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory formatting the response");
out:
    for (int i = 0; acc && i < total; i++) {
        free(acc[i].text);
        free(acc[i].lps);
    }
    free(acc);
    free(prompt_tokens);
    for (int i = 0; parsed && i < total; i++) cllm_tool_parse_result_free(&parsed[i]);
    free(parsed);
    pool_free(&pl);
    return ret;
}

/* --------------------------------------------------------------- handler */
int srv_handle_generate(cllm_server *s, struct MHD_Connection *conn, cllm_openai_endpoint ep, const char *body,
                        size_t len) {
    cllm_openai_error err;
    if (atomic_load(&s->draining))
        return srv_send_errorf(conn, 503, "service_unavailable", NULL, "the server is shutting down");
    srv_job *j = srv_job_new();
    if (!j) return srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory");
    cllm_status st = ep == CLLM_OPENAI_CHAT ? cllm_openai_parse_chat(body, len, &s->limits, &j->req, &err)
                                            : cllm_openai_parse_completion(body, len, &s->limits, &j->req, &err);
    if (st == CLLM_OK && j->req.model && strcmp(j->req.model, s->served_model_name)) {
        cllm_openai_error_set(&err, 404, "NotFoundError", "model", "The model `%s` does not exist.", j->req.model);
        st = CLLM_ERR_NOT_FOUND;
    }
    if (st == CLLM_OK) st = check_tools(s, j, &err);
    if (st == CLLM_OK) st = prepare_prompts(s, j, &err);
    if (st != CLLM_OK) {
        srv_job_unref(j);
        return srv_send_error(conn, &err);
    }
    if (atomic_fetch_add(&s->inflight, 1) >= s->max_inflight) {
        atomic_fetch_sub(&s->inflight, 1);
        srv_job_unref(j);
        return srv_send_errorf(conn, 503, "service_unavailable", NULL,
                               "the server is overloaded: %d requests in flight (the limit); retry later",
                               s->max_inflight);
    }
    int ret;
    if (!srv_post(s, 0, j)) {
        ret = srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory");
        goto done;
    }
    /* wait for admission so that a full queue is a plain 503, even when streaming */
    pthread_mutex_lock(&j->mu);
    int w = 0;
    while (!j->submitted && !j->failed && !w) w = srv_wait(s, j, conn);
    bool failed = j->failed;
    pthread_mutex_unlock(&j->mu);
    if (w) {
        srv_post(s, 1, j);
        ret = w == 1 ? MHD_NO : srv_send_errorf(conn, 503, "service_unavailable", NULL, "the server is shutting down");
        goto done;
    }
    if (failed) {
        ret = send_submit_error(conn, j->status, j->message, ep == CLLM_OPENAI_CHAT ? "messages" : "prompt");
        goto done;
    }
    if (j->req.stream) {
        ret = start_stream(s, conn, j);
        if (ret >= 0) return ret; /* the stream owns j and the inflight slot now */
        srv_post(s, 1, j);
        ret = srv_send_errorf(conn, 500, "internal_error", NULL, "out of memory starting the stream");
        goto done;
    }
    ret = finish_blocking(s, conn, j);
done:
    atomic_fetch_sub(&s->inflight, 1);
    srv_job_unref(j);
    return ret;
}
