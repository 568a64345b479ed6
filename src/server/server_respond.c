/* Completions / chat answered as one JSON body (loop thread): events are
 * accumulated per choice until every choice finished, then formatted. Also
 * the logprob helpers the SSE path shares: per-token strings, the echoed
 * prompt's logprobs (lm-evaluation-harness scores choices from them) and
 * vLLM's prompt_logprobs. */
#include "server/server_gen.h"

#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *srv_pool_keep(srv_pool *pl, void *x) {
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

void srv_pool_free(srv_pool *pl) {
    for (size_t i = 0; i < pl->n; i++) free(pl->p[i]);
    free(pl->p);
    *pl = (srv_pool){0};
}

/* The text one token adds after token prev (special tokens kept), kept in
 * pl: decode([prev, id]) minus decode([prev]), so that SentencePiece-style
 * decoders keep the token's leading space (vLLM's per-token detokenization).
 * prev < 0: decode([id]). */
const char *srv_token_str(cllm_server *s, srv_pool *pl, int32_t prev, int32_t id, size_t *len) {
    char *t = NULL, *p = NULL;
    size_t tl = 0, pl_len = 0;
    int32_t ids[2] = {prev, id};
    bool ok = prev >= 0 && cllm_tokenizer_decode(s->tok, ids, 2, false, &t, &tl) == CLLM_OK &&
              cllm_tokenizer_decode(s->tok, ids, 1, false, &p, &pl_len) == CLLM_OK && pl_len <= tl &&
              !memcmp(t, p, pl_len);
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
    return srv_pool_keep(pl, t);
}

cllm_openai_finish_reason srv_finish_of(const char *r) {
    if (!r) return CLLM_OPENAI_FINISH_NONE;
    if (!strcmp(r, "length")) return CLLM_OPENAI_FINISH_LENGTH;
    if (!strcmp(r, "abort")) return CLLM_OPENAI_FINISH_ABORT;
    return CLLM_OPENAI_FINISH_STOP;
}

/* Top alternatives of one logprob record (strings after prev), with the
 * token itself added first when it is not among them (vLLM's dicts hold
 * the chosen token and the top-k). */
static cllm_openai_top_logprob *tops(cllm_server *s, srv_pool *pl, int32_t prev, const srv_logprob *l, size_t *n) {
    bool has_self = false;
    for (int k = 0; k < l->n_top; k++) has_self |= l->top_ids[k] == l->id;
    size_t m = (size_t)l->n_top + (has_self ? 0 : 1), at = 0;
    cllm_openai_top_logprob *top = srv_pool_keep(pl, calloc(m, sizeof *top));
    if (!top) return NULL;
    if (!has_self) {
        top[at].token = srv_token_str(s, pl, prev, l->id, &top[at].token_len);
        top[at++].logprob = l->logprob;
    }
    for (int k = 0; k < l->n_top; k++, at++) {
        top[at].token = srv_token_str(s, pl, prev, l->top_ids[k], &top[at].token_len);
        if (!top[at].token) return NULL;
        top[at].logprob = l->top_lps[k];
    }
    *n = m;
    return top;
}

cllm_openai_token_logprob *srv_event_logprobs(cllm_server *s, srv_pool *pl, const srv_event *ev, gen_choice *c) {
    cllm_openai_token_logprob *out = srv_pool_keep(pl, calloc((size_t)ev->n_tokens + 1, sizeof *out));
    if (!out) return NULL;
    for (int t = 0; t < ev->n_tokens; t++) {
        const srv_logprob *l = &ev->lps[t];
        cllm_openai_token_logprob *o = &out[t];
        o->token = srv_token_str(s, pl, c->prev, l->id, &o->token_len);
        if (!o->token) return NULL;
        o->logprob = l->logprob;
        o->text_offset = c->offset;
        c->offset += (int64_t)o->token_len;
        if (l->n_top > 0) {
            cllm_openai_top_logprob *top = srv_pool_keep(pl, calloc((size_t)l->n_top, sizeof *top));
            if (!top) return NULL;
            for (int k = 0; k < l->n_top; k++) {
                top[k].token = srv_token_str(s, pl, c->prev, l->top_ids[k], &top[k].token_len);
                if (!top[k].token) return NULL;
                top[k].logprob = l->top_lps[k];
            }
            o->top = top;
            o->n_top = (size_t)l->n_top;
        }
        c->prev = l->id;
    }
    return out;
}

cllm_openai_token_logprob *srv_prompt_logprobs(srv_gen *g, srv_pool *pl, int sub, gen_choice *c, size_t *n) {
    const srv_job *j = g->j;
    const int32_t *ids = j->prompt_ids[sub];
    size_t np = j->n_prompt_ids[sub];
    const gen_sub *gs = &g->sub[sub];
    cllm_openai_token_logprob *out = srv_pool_keep(pl, calloc(np + 1, sizeof *out));
    if (!out) return NULL;
    for (size_t t = 0; t < np; t++) {
        int32_t prev = t ? ids[t - 1] : -1;
        cllm_openai_token_logprob *o = &out[t];
        o->token = srv_token_str(g->s, pl, prev, ids[t], &o->token_len);
        if (!o->token) return NULL;
        o->text_offset = c->offset;
        c->offset += (int64_t)o->token_len;
        o->logprob = NAN;
        if (t > 0 && (int)t < gs->n_plps) {
            const srv_logprob *l = &gs->plps[t];
            o->logprob = l->logprob;
            if (!(o->top = tops(g->s, pl, prev, l, &o->n_top))) return NULL;
        }
    }
    c->prev = np ? ids[np - 1] : c->prev;
    *n = np;
    return out;
}

const char *srv_echo_text(srv_gen *g, srv_pool *pl, int i, size_t *len) {
    const cllm_openai_request *r = &g->j->req;
    const int sub = i / r->n;
    const cllm_openai_prompt *p = &r->prompts[sub];
    if (!p->is_tokens && !g->j->truncated[sub]) {
        *len = p->text_len;
        return p->text;
    }
    char *t = NULL;
    size_t tl = 0; /* token prompts, and truncated ones (the tokens the model saw) */
    if (cllm_tokenizer_decode(g->s->tok, g->j->prompt_ids[sub], g->j->n_prompt_ids[sub], false, &t, &tl) != CLLM_OK) {
        *len = 0;
        return "";
    }
    *len = tl;
    return srv_pool_keep(pl, t);
}

/* vLLM's prompt_logprobs of sub: [null, {id: {logprob, rank, decoded_token}}...]. */
static cllm_openai_prompt_logprob *vllm_prompt_logprobs(srv_gen *g, int sub, size_t *n) {
    const srv_job *j = g->j;
    const gen_sub *gs = &g->sub[sub];
    size_t np = j->n_prompt_ids[sub];
    cllm_openai_prompt_logprob *out = srv_pool_keep(&g->pool, calloc(np + 1, sizeof *out));
    if (!out) return NULL;
    for (size_t t = 1; t < np && (int)t < gs->n_plps; t++) {
        const srv_logprob *l = &gs->plps[t];
        int32_t prev = j->prompt_ids[sub][t - 1];
        cllm_openai_plp_entry *e = srv_pool_keep(&g->pool, calloc((size_t)l->n_top + 1, sizeof *e));
        if (!e) return NULL;
        int above = 0, rank = 0;
        for (int k = 0; k < l->n_top; k++) {
            if (l->top_ids[k] == l->id) rank = k + 1;
            above += l->top_lps[k] > l->logprob;
        }
        if (!rank && above < l->n_top) rank = above + 1;
        e[0] = (cllm_openai_plp_entry){.id = l->id, .logprob = l->logprob, .rank = rank};
        e[0].token = srv_token_str(g->s, &g->pool, prev, l->id, &e[0].token_len);
        for (int k = 0; k < l->n_top; k++) {
            cllm_openai_plp_entry *x = &e[k + 1];
            *x = (cllm_openai_plp_entry){.id = l->top_ids[k], .logprob = l->top_lps[k], .rank = k + 1};
            x->token = srv_token_str(g->s, &g->pool, prev, x->id, &x->token_len);
        }
        out[t].entries = e;
        out[t].n = (size_t)l->n_top + 1;
    }
    *n = np;
    return out;
}

/* ------------------------------------------------------------ one JSON body */
static bool acc_text(gen_choice *c, const char *t, size_t n) {
    if (c->len + n + 1 > c->cap) {
        size_t cap = (c->len + n + 1) * 2;
        char *b = realloc(c->text, cap);
        if (!b) return false;
        c->text = b;
        c->cap = cap;
    }
    if (n) memcpy(c->text + c->len, t, n);
    c->len += n;
    c->text[c->len] = 0;
    return true;
}

static bool acc_lps(gen_choice *c, const cllm_openai_token_logprob *l, size_t n) {
    if (c->n_lps + n > c->cap_lps) {
        size_t cap = (c->n_lps + n) * 2;
        cllm_openai_token_logprob *nl = realloc(c->lps, cap * sizeof *nl);
        if (!nl) return false;
        c->lps = nl;
        c->cap_lps = cap;
    }
    memcpy(c->lps + c->n_lps, l, n * sizeof *l);
    c->n_lps += n;
    return true;
}

static bool acc_event(srv_gen *g, const srv_event *ev) {
    gen_choice *c = &g->ch[ev->choice];
    if (ev->finished) c->fin = srv_finish_of(ev->finish_reason);
    if (g->j->echo_only) return true; /* the one generated token is dropped */
    if (!acc_text(c, ev->text, ev->text_len)) return false;
    if (ev->lps && ev->n_tokens) {
        cllm_openai_token_logprob *l = srv_event_logprobs(g->s, &g->pool, ev, c);
        if (!l || !acc_lps(c, l, (size_t)ev->n_tokens)) return false;
    }
    return true;
}

/* Build and send the body (every choice finished, or the shutdown deadline). */
static void answer(srv_gen *g, bool done) {
    const cllm_openai_request *r = &g->j->req;
    srv_conn *conn = g->base.conn;
    int total = g->total;
    bool ok = true, comp = r->endpoint == CLLM_OPENAI_COMPLETION;
    cllm_openai_choice *ch = srv_pool_keep(&g->pool, calloc((size_t)total, sizeof *ch));
    cllm_tool_parse_result *parsed = NULL;
    if (!ch) { srv_respond_errorf(conn, 500, "internal_error", NULL, "out of memory"); return; }
    cllm_openai_response resp = {0};
    resp.id = g->id;
    resp.model = g->s->served_model_name;
    resp.created = g->created;
    resp.choices = ch;
    resp.n_choices = (size_t)total;
    for (int i = 0; ok && i < total; i++) {
        gen_choice *c = &g->ch[i];
        int sub = i / r->n;
        const char *text = c->text ? c->text : "";
        size_t len = c->len;
        const cllm_openai_token_logprob *lps = c->lps;
        size_t n_lps = c->n_lps;
        if (comp && r->echo) { /* the prompt (and its logprobs) first: vLLM's echo */
            size_t el = 0;
            const char *et = srv_echo_text(g, &g->pool, i, &el);
            char *full = srv_pool_keep(&g->pool, malloc(el + len + 1));
            ok = full != NULL;
            if (ok) {
                memcpy(full, et, el);
                memcpy(full + el, text, len);
                full[el + len] = 0;
                text = full;
                len += el;
            }
            if (ok && r->logprobs >= 0) {
                gen_choice pc = {.prev = -1};
                size_t np = 0;
                cllm_openai_token_logprob *pl = srv_prompt_logprobs(g, &g->pool, sub, &pc, &np);
                cllm_openai_token_logprob *all = srv_pool_keep(&g->pool, calloc(np + n_lps + 1, sizeof *all));
                ok = pl && all;
                if (ok) {
                    memcpy(all, pl, np * sizeof *all);
                    for (size_t k = 0; k < n_lps; k++) {
                        all[np + k] = lps[k];
                        all[np + k].text_offset += pc.offset;
                    }
                    lps = all;
                    n_lps += np;
                }
            }
        }
        ch[i].index = (uint32_t)i;
        ch[i].text = text;
        ch[i].text_len = len;
        ch[i].has_logprobs = r->logprobs >= 0;
        ch[i].logprobs = lps;
        ch[i].n_logprobs = n_lps;
        ch[i].finish_reason = c->fin ? c->fin : done ? CLLM_OPENAI_FINISH_STOP : CLLM_OPENAI_FINISH_ABORT;
        if (!done && !c->finished) ch[i].finish_reason = CLLM_OPENAI_FINISH_ABORT;
        if (g->j->echo_only && done) ch[i].finish_reason = CLLM_OPENAI_FINISH_LENGTH;
        resp.usage.completion_tokens += g->j->echo_only ? 0 : c->completion_tokens;
        if (r->prompt_logprobs >= 0 && ok) {
            size_t n = 0;
            cllm_openai_prompt_logprob *p = vllm_prompt_logprobs(g, sub, &n);
            ok = p != NULL;
            if (comp) {
                ch[i].has_prompt_logprobs = true;
                ch[i].prompt_logprobs = p;
                ch[i].n_prompt_logprobs = n;
            } else if (i == 0) {
                resp.has_prompt_logprobs = true;
                resp.prompt_logprobs = p;
                resp.n_prompt_logprobs = n;
            }
        }
    }
    for (int i = 0; i < g->j->n_sub; i++) resp.usage.prompt_tokens += g->sub[i].prompt_tokens;
    if (ok && g->j->tool_parser && !(parsed = calloc((size_t)total, sizeof *parsed))) ok = false;
    for (int i = 0; ok && g->j->tool_parser && i < total; i++) /* each choice parses on its own */
        ok = cllm_tool_parse_choice((cllm_tool_parser_kind)g->j->tool_parser, g->ch[i].text ? g->ch[i].text : "",
                                    g->ch[i].len, &parsed[i], &ch[i]) == CLLM_OK;
    char *body = !ok ? NULL : comp ? cllm_openai_format_completion(&resp) : cllm_openai_format_chat_completion(&resp);
    if (body) srv_respond(conn, 200, "application/json", body, strlen(body), NULL);
    else srv_respond_errorf(conn, 500, "internal_error", NULL, "out of memory building the response");
    for (int i = 0; parsed && i < total; i++) cllm_tool_parse_result_free(&parsed[i]);
    free(parsed);
}

void srv_gen_failure_error(const srv_gen *g, cllm_status st, const char *msg, cllm_openai_error *err) {
    const char *param = g->ep == CLLM_OPENAI_CHAT ? "messages" : "prompt";
    if (st == CLLM_ERR_NO_KV_BLOCKS) /* overloaded, could clear: the engine's message says so once */
        cllm_openai_error_set(err, 503, "service_unavailable", NULL, "the server is overloaded: %s", msg);
    else if (st == CLLM_ERR_DISTRIBUTED) /* a worker rank died: this engine is stopping, another replica may serve */
        cllm_openai_error_set(err, 503, "service_unavailable", NULL, "%s", msg);
    else if (st == CLLM_ERR_CONTEXT_LENGTH || st == CLLM_ERR_INVALID_ARG) /* never admissible */
        cllm_openai_error_set(err, 400, "invalid_request_error", param, "%s", msg);
    else
        cllm_openai_error_set(err, 500, "internal_error", NULL, "%s", msg);
    if (st == CLLM_ERR_CONTEXT_LENGTH) snprintf(err->code, sizeof err->code, "context_length_exceeded");
}

void srv_gen_send_failure(srv_gen *g, cllm_status st, const char *msg) {
    cllm_openai_error err;
    srv_gen_failure_error(g, st, msg, &err);
    srv_respond_error(g->base.conn, &err);
}

bool srv_gen_pump_json(srv_gen *g) {
    bool failed = false, done = false, ok = true;
    char msg[600];
    cllm_status st = CLLM_OK;
    srv_event *ev = srv_gen_take(g, &failed, &st, &done, msg, sizeof msg);
    while (ev) {
        srv_event *n = ev->next;
        srv_gen_note(g, ev);
        if (ok) ok = acc_event(g, ev);
        srv_event_free(ev);
        ev = n;
    }
    if (!ok) {
        srv_respond_errorf(g->base.conn, 500, "internal_error", NULL, "out of memory building the response");
        return true;
    }
    if (failed) {
        srv_gen_send_failure(g, st, msg);
        return true;
    }
    if (!done && !g->stopping) return false;
    answer(g, done);
    return true;
}
