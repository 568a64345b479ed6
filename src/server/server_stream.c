/* Completions / chat streamed as server-sent events, exactly as OpenAI sends
 * them ("data: {...}\n\n" chunks, the usage chunk with
 * stream_options.include_usage, "data: [DONE]\n\n"), produced on the loop
 * thread whenever the engine thread reports new events: every event drained
 * in one wake goes out as one HTTP chunk. A chat stream's role deltas go
 * out with the first tokens (as vLLM); a completions echo chunk carries the
 * prompt and, with logprobs, the prompt's logprobs (the first null), and
 * goes out with the choice's first output. At the shutdown deadline every
 * unfinished choice gets a final chunk with finish_reason "abort". */
#include "server/server_gen.h"

#include "core/status.h"
#include "server/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, char *frame, size_t n) {
    if (!frame) { b->oom = true; return; }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q) { free(frame); b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, frame, n);
    b->len += n;
    free(frame);
}

static void add_chunk(srv_gen *g, sbuf *b, const cllm_openai_chunk *c) {
    size_t n = 0;
    char *json = g->ep == CLLM_OPENAI_CHAT ? cllm_openai_format_chat_chunk(c) : cllm_openai_format_completion_chunk(c);
    char *f = cllm_sse_frame_take(json, &n);
    sb_add(b, f, n);
}

static cllm_openai_chunk base_chunk(srv_gen *g, int index) {
    cllm_openai_chunk c = {0};
    c.id = g->id;
    c.model = g->s->served_model_name;
    c.created = g->created;
    c.index = (uint32_t)index;
    c.include_usage = g->j->req.include_usage;
    return c;
}

/* A chat event through the choice's tool-call parser: one chunk per parser
 * event (content, or one whole tool call); logprobs ride on the first chunk
 * (alone when the parser holds the text back); the finish chunk says
 * "tool_calls" when the choice called any. */
static void emit_tool_event(srv_gen *g, sbuf *b, const srv_event *ev, cllm_openai_finish_reason fin,
                            const cllm_openai_token_logprob *lps) {
    cllm_tool_stream *tp = g->ch[ev->choice].tp;
    const cllm_tool_event *te;
    size_t n = 0;
    if (cllm_tool_stream_feed(tp, ev->text, ev->text_len, ev->finished, &te, &n) != CLLM_OK) { b->oom = true; return; }
    if (fin == CLLM_OPENAI_FINISH_STOP || fin == CLLM_OPENAI_FINISH_LENGTH)
        if (cllm_tool_stream_n_calls(tp)) fin = CLLM_OPENAI_FINISH_TOOL_CALLS;
    for (size_t i = 0; i < n || (i == 0 && (lps || fin != CLLM_OPENAI_FINISH_NONE)); i++) {
        cllm_openai_chunk c = base_chunk(g, ev->choice);
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
        add_chunk(g, b, &c);
    }
}

/* The echo chunk of completions choice i: the prompt, with its logprobs. */
static void emit_echo(srv_gen *g, sbuf *b, srv_pool *pl, int i) {
    const cllm_openai_request *r = &g->j->req;
    gen_choice *gc = &g->ch[i];
    cllm_openai_chunk c = base_chunk(g, i);
    c.text = srv_echo_text(g, pl, i, &c.text_len);
    if (r->logprobs >= 0) {
        size_t n = 0;
        gc->offset = 0;
        c.logprobs = srv_prompt_logprobs(g, pl, i / r->n, gc, &n);
        if (!c.logprobs) { b->oom = true; return; }
        c.has_logprobs = true;
        c.n_logprobs = n;
    }
    gc->echoed = true;
    add_chunk(g, b, &c);
}

static void emit_event(srv_gen *g, sbuf *b, srv_pool *pl, const srv_event *ev) {
    const cllm_openai_request *r = &g->j->req;
    gen_choice *gc = &g->ch[ev->choice];
    cllm_openai_finish_reason fin = ev->finished ? srv_finish_of(ev->finish_reason) : CLLM_OPENAI_FINISH_NONE;
    if (ev->finished) gc->finished = true;
    if (r->endpoint == CLLM_OPENAI_COMPLETION && r->echo && !gc->echoed) emit_echo(g, b, pl, ev->choice);
    if (g->j->echo_only) { /* the one generated token is dropped: only the finish */
        if (!ev->finished) return;
        cllm_openai_chunk c = base_chunk(g, ev->choice);
        c.text = "";
        c.finish_reason = CLLM_OPENAI_FINISH_LENGTH;
        add_chunk(g, b, &c);
        return;
    }
    if (!ev->text_len && !ev->finished && !ev->lps) return; /* nothing to say yet */
    const cllm_openai_token_logprob *lps = NULL;
    if (r->logprobs >= 0 && ev->lps) {
        lps = srv_event_logprobs(g->s, pl, ev, gc);
        if (!lps) { b->oom = true; return; }
    }
    if (gc->tp) {
        emit_tool_event(g, b, ev, fin, lps);
        return;
    }
    cllm_openai_chunk c = base_chunk(g, ev->choice);
    c.text = ev->finished && !ev->text_len && r->endpoint == CLLM_OPENAI_CHAT ? NULL : ev->text;
    c.text_len = ev->text_len;
    c.finish_reason = fin;
    if (lps) {
        c.logprobs = lps;
        c.has_logprobs = true;
        c.n_logprobs = (size_t)ev->n_tokens;
    }
    add_chunk(g, b, &c);
}

static void emit_end(srv_gen *g, sbuf *b) {
    const cllm_openai_request *r = &g->j->req;
    if (r->include_usage) {
        cllm_openai_usage u = {0};
        for (int i = 0; i < g->j->n_sub; i++) u.prompt_tokens += g->sub[i].prompt_tokens;
        for (int i = 0; !g->j->echo_only && i < g->total; i++) u.completion_tokens += g->ch[i].completion_tokens;
        size_t n = 0;
        char *f = cllm_sse_frame_take(
            cllm_openai_format_usage_chunk(r->endpoint, g->id, g->s->served_model_name, g->created, u), &n);
        sb_add(b, f, n);
    }
    char *d = strdup(CLLM_SSE_DONE);
    sb_add(b, d, strlen(CLLM_SSE_DONE));
}

bool srv_gen_pump_sse(srv_gen *g) {
    srv_conn *conn = g->base.conn;
    if (!g->stopping && srv_conn_write_queue(conn) > SRV_WRITE_HIGH) return false; /* the client reads slowly */
    const cllm_openai_request *r = &g->j->req;
    bool failed = false, done = false;
    char msg[600];
    cllm_status st = CLLM_OK;
    srv_event *ev = srv_gen_take(g, &failed, &st, &done, msg, sizeof msg);
    for (srv_event *e = ev; e; e = e->next) srv_gen_note(g, e); /* prompt logprobs first: echo chunks need them */
    sbuf b = {0};
    srv_pool pl = {0};
    if (r->endpoint == CLLM_OPENAI_CHAT && !g->role_sent && !failed && (ev || done || g->stopping)) {
        /* vLLM's first iteration: one role delta per choice when the first output arrives, so a
         * client's time to first chunk is the time to the first token */
        for (int i = 0; i < g->total; i++) {
            cllm_openai_chunk c = base_chunk(g, i);
            c.first = true;
            add_chunk(g, &b, &c);
        }
        g->role_sent = true;
    }
    while (ev) {
        srv_event *n = ev->next;
        if (!b.oom) emit_event(g, &b, &pl, ev);
        srv_event_free(ev);
        ev = n;
    }
    bool end = false;
    if (failed) { /* vLLM streams an error object, then [DONE] */
        cllm_openai_error err;
        srv_gen_failure_error(g, st, msg, &err);
        size_t fl = 0;
        char *f = cllm_sse_frame_take(cllm_openai_format_error(&err), &fl);
        sb_add(&b, f, fl);
        end = true;
    } else if (done) {
        end = true;
    } else if (g->stopping) { /* the grace period is over: close every unfinished choice with "abort" */
        for (int i = 0; i < g->total; i++) {
            if (g->ch[i].finished) continue;
            if (r->endpoint == CLLM_OPENAI_COMPLETION && r->echo && !g->ch[i].echoed) emit_echo(g, &b, &pl, i);
            cllm_openai_chunk c = base_chunk(g, i);
            c.finish_reason = CLLM_OPENAI_FINISH_ABORT;
            if (r->endpoint == CLLM_OPENAI_COMPLETION) c.text = "";
            add_chunk(g, &b, &c);
        }
        end = true;
    }
    if (end) emit_end(g, &b);
    srv_pool_free(&pl);
    if (b.oom) {
        free(b.p);
        srv_stream_end(conn); /* the body ends without [DONE]: the client sees a broken stream */
        return true;
    }
    if (b.len) srv_stream_write(conn, b.p, b.len);
    else free(b.p);
    if (end) srv_stream_end(conn);
    return end;
}
