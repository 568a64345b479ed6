/* The small routes: /health, /metrics, /v1/models, /tokenizer_info (loop
 * thread, cheap) and /tokenize, /detokenize (on a libuv worker: a long
 * prompt takes milliseconds to encode), as vLLM's api_server answers them. */
#include "server/server_internal.h"

#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void send_json(srv_conn *c, char *body) {
    if (!body) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    srv_respond(c, 200, "application/json", body, strlen(body), NULL);
}

void srv_route_health(cllm_server *s, srv_conn *c) {
    int state = atomic_load(&s->state);
    if (atomic_load(&s->http.draining) && state != SRV_FAILED) {
        srv_respond_errorf(c, 503, "service_unavailable", NULL, "the server is shutting down");
        return;
    }
    if (state == SRV_READY) {
        char *empty = calloc(1, 1);
        srv_respond(c, 200, "application/json", empty, 0, NULL);
        return;
    }
    /* failed: the load's error, or the engine's (a distributed engine that lost a rank) */
    if (state == SRV_FAILED) srv_respond_errorf(c, 503, "service_unavailable", NULL, "%s", s->load_error);
    else srv_respond_errorf(c, 503, "service_unavailable", NULL, "the model is loading");
}

void srv_route_metrics(cllm_server *s, srv_conn *c) {
    size_t n = 0;
    pthread_mutex_lock(&s->stats.mu); /* the engine's distributed and MoE snapshot (server_stats.c) */
    char *t = cllm_metrics_render(s->metrics, s->stats.dist, s->stats.n_dist, &s->stats.moe, &n);
    pthread_mutex_unlock(&s->stats.mu);
    if (!t) { srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    srv_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", t, n, NULL);
}

void srv_route_models(cllm_server *s, srv_conn *c) {
    cllm_openai_model_card card = {.id = s->served_model_name, .root = s->model_root, .created = s->created,
                                   .max_model_len = s->max_model_len};
    send_json(c, cllm_openai_format_models(&card, 1));
}

static json_t *str_or_null(const char *v) { return v ? json_string(v) : json_null(); }

/* vLLM's GET /tokenizer_info (lm-evaluation-harness's "remote" tokenizer
 * reads eos/bos/pad tokens and the chat template from it). */
void srv_route_tokenizer_info(cllm_server *s, srv_conn *c) {
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
        json_object_set_new(o, "bos_token", str_or_null(cllm_tokenizer_bos_token(s->tok)));
        json_object_set_new(o, "eos_token", str_or_null(cllm_tokenizer_eos_token(s->tok)));
        json_object_set_new(o, "pad_token", str_or_null(cllm_tokenizer_pad_token(s->tok)));
        json_object_set_new(o, "unk_token", str_or_null(cllm_tokenizer_unk_token(s->tok)));
        json_object_set_new(o, "chat_template", str_or_null(cllm_tokenizer_chat_template(s->tok)));
        json_object_set_new(o, "model_max_length", json_integer(s->max_model_len));
        json_object_set_new(o, "vocab_size", json_integer(s->vocab_size));
    }
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    send_json(c, body);
}

/* ------------------------------------------------------- /tokenize, /detokenize */
typedef struct tok_task {
    srv_task base;
    uv_work_t work;
    cllm_server *s;
    srv_conn *held;           /* kept alive until the work is back */
    bool detokenize;
    char *body;
    size_t len;
    /* result (worker) */
    int status;
    char *out;                /* JSON body (200) */
    cllm_openai_error err;
} tok_task;

static void tok_closed(srv_task *t) { (void)t; /* the worker result is dropped in tok_done */ }
static const srv_task_ops TOK_OPS = {.closed = tok_closed};

static int check_model(cllm_server *s, const char *model, cllm_openai_error *err) {
    if (!model || !strcmp(model, s->served_model_name)) return 0;
    cllm_openai_error_set(err, 404, "NotFoundError", "model", "The model `%s` does not exist.", model);
    return 404;
}

static void tokenize(tok_task *t) {
    cllm_server *s = t->s;
    cllm_openai_tokenize_request r;
    if (cllm_openai_parse_tokenize(t->body, t->len, &s->limits, &r, &t->err) != CLLM_OK) {
        t->status = t->err.http_status;
        return;
    }
    if ((t->status = check_model(s, r.model, &t->err))) { cllm_openai_tokenize_request_free(&r); return; }
    int32_t *ids = NULL;
    size_t n = 0;
    cllm_status st;
    if (r.messages) {
        char *text = NULL;
        if (srv_render_chat(s, r.messages, r.n_messages, NULL, r.add_generation_prompt, &text, &t->err) != CLLM_OK) {
            t->status = t->err.http_status;
            cllm_openai_tokenize_request_free(&r);
            return;
        }
        st = cllm_tokenizer_encode(s->tok, text, strlen(text), r.add_special_tokens, &ids, &n);
        free(text);
    } else {
        st = cllm_tokenizer_encode(s->tok, r.prompt, r.prompt_len, r.add_special_tokens, &ids, &n);
    }
    if (st != CLLM_OK) {
        cllm_openai_error_set(&t->err, 400, "invalid_request_error", "prompt", "could not tokenize: %s",
                              cllm_last_error());
        t->status = 400;
    } else {
        const char **strs = NULL;
        if (r.return_token_strs) {
            strs = calloc(n ? n : 1, sizeof *strs);
            for (size_t i = 0; strs && i < n; i++) strs[i] = cllm_tokenizer_id_to_token(s->tok, ids[i]);
        }
        t->out = (r.return_token_strs && !strs) ? NULL : cllm_openai_format_tokenize(ids, n, s->max_model_len, strs);
        t->status = 200;
        free(strs);
    }
    cllm_free(ids);
    cllm_openai_tokenize_request_free(&r);
}

static void detokenize(tok_task *t) {
    cllm_server *s = t->s;
    cllm_openai_detokenize_request r;
    if (cllm_openai_parse_detokenize(t->body, t->len, &s->limits, &r, &t->err) != CLLM_OK) {
        t->status = t->err.http_status;
        return;
    }
    if ((t->status = check_model(s, r.model, &t->err))) { cllm_openai_detokenize_request_free(&r); return; }
    char *text = NULL;
    size_t tl = 0;
    if (cllm_tokenizer_decode(s->tok, r.tokens, r.n_tokens, false, &text, &tl) != CLLM_OK) {
        cllm_openai_error_set(&t->err, 400, "invalid_request_error", "tokens", "%s", cllm_last_error());
        t->status = 400;
    } else {
        t->out = cllm_openai_format_detokenize(text, tl);
        t->status = 200;
    }
    cllm_free(text);
    cllm_openai_detokenize_request_free(&r);
}

static void tok_work(uv_work_t *w) {
    tok_task *t = w->data;
    if (t->detokenize) detokenize(t);
    else tokenize(t);
}

static void tok_done(uv_work_t *w, int status) {
    tok_task *t = w->data;
    srv_conn *c = t->base.conn;
    (void)status;
    if (c) {
        srv_conn_set_task(c, NULL);
        if (t->status == 200) send_json(c, t->out);
        else srv_respond_error(c, &t->err);
        t->out = NULL;
    }
    srv_conn_release(t->held);
    free(t->out);
    free(t->body);
    free(t);
}

void srv_route_tokenize(cllm_server *s, srv_conn *c, char *body, size_t len, bool detokenize) {
    tok_task *t = calloc(1, sizeof *t);
    if (!t) { free(body); srv_respond_errorf(c, 500, "internal_error", NULL, "out of memory"); return; }
    t->base.ops = &TOK_OPS;
    t->s = s;
    t->body = body;
    t->len = len;
    t->detokenize = detokenize;
    t->work.data = t;
    t->held = c;
    srv_conn_hold(c);
    srv_conn_set_task(c, &t->base);
    if (uv_queue_work(&s->loop, &t->work, tok_work, tok_done)) {
        srv_conn_set_task(c, NULL);
        srv_conn_release(c);
        free(body);
        free(t);
        srv_respond_errorf(c, 500, "internal_error", NULL, "cannot queue the request");
    }
}
