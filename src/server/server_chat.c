/* Chat `messages` -> prompt text with the model's chat template
 * (tokenizer_config.json `chat_template`), as vLLM's apply_hf_chat_template:
 * variables messages, tools, add_generation_prompt, bos_token, eos_token and
 * the request's chat_template_kwargs. Rendering is done by
 * tokenizer/chat_template.h (a bounded Jinja subset). */
#include "server/server_internal.h"

#include "core/status.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include("tokenizer/chat_template.h")
#include "tokenizer/chat_template.h"
#define SRV_HAVE_CHAT_TEMPLATE 1
#endif
#endif

#ifdef SRV_HAVE_CHAT_TEMPLATE
static json_t *str_or_null(const char *s, size_t n) { return s ? json_stringn(s, n) : json_null(); }

static json_t *message_json(const cllm_openai_message *m) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "role", json_string(cllm_openai_role_name(m->role)));
    json_object_set_new(o, "content", str_or_null(m->content, m->content_len));
    if (m->name) json_object_set_new(o, "name", json_string(m->name));
    if (m->tool_call_id) json_object_set_new(o, "tool_call_id", json_string(m->tool_call_id));
    if (m->n_tool_calls) {
        json_t *calls = json_array();
        for (size_t i = 0; i < m->n_tool_calls; i++) {
            const cllm_openai_tool_call *c = &m->tool_calls[i];
            json_t *args = c->arguments ? json_loads(c->arguments, JSON_DECODE_ANY, NULL) : NULL;
            if (!args) args = c->arguments ? json_string(c->arguments) : json_object();
            json_t *fn = json_pack("{s:s, s:o}", "name", c->name ? c->name : "", "arguments", args);
            json_t *call = json_pack("{s:s, s:o}", "type", "function", "function", fn);
            if (c->id) json_object_set_new(call, "id", json_string(c->id));
            json_array_append_new(calls, call);
        }
        json_object_set_new(o, "tool_calls", calls);
    }
    return o;
}

static json_t *context_json(cllm_server *s, const cllm_openai_message *msgs, size_t n, const cllm_openai_request *req,
                            bool add_generation_prompt) {
    json_t *ctx = json_object();
    json_t *arr = json_array();
    if (!ctx || !arr) { json_decref(ctx); json_decref(arr); return NULL; }
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, message_json(&msgs[i]));
    json_object_set_new(ctx, "messages", arr);
    if (req && req->n_tools) {
        json_t *tools = json_array();
        for (size_t i = 0; i < req->n_tools; i++) {
            const cllm_openai_tool *t = &req->tools[i];
            json_t *fn = json_pack("{s:s}", "name", t->name ? t->name : "");
            if (t->description) json_object_set_new(fn, "description", json_string(t->description));
            json_t *params = t->parameters_json ? json_loads(t->parameters_json, JSON_DECODE_ANY, NULL) : NULL;
            if (params) json_object_set_new(fn, "parameters", params);
            json_array_append_new(tools, json_pack("{s:s, s:o}", "type", "function", "function", fn));
        }
        json_object_set_new(ctx, "tools", tools);
    }
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    const char *bos = cllm_tokenizer_id_to_token(s->tok, cllm_tokenizer_bos_id(s->tok));
    const char *eos = cllm_tokenizer_id_to_token(s->tok, cllm_tokenizer_eos_id(s->tok));
    json_object_set_new(ctx, "bos_token", json_string(bos ? bos : ""));
    json_object_set_new(ctx, "eos_token", json_string(eos ? eos : ""));
    if (req && req->chat_template_kwargs_json) {
        json_t *kw = json_loads(req->chat_template_kwargs_json, 0, NULL);
        if (json_is_object(kw)) json_object_update(ctx, kw);
        json_decref(kw);
    }
    return ctx;
}

cllm_status srv_render_chat(cllm_server *s, const cllm_openai_message *msgs, size_t n_msgs,
                            const cllm_openai_request *req, bool add_generation_prompt, char **out,
                            cllm_openai_error *err) {
    *out = NULL;
    const char *src = cllm_tokenizer_chat_template(s->tok);
    if (!src)
        return cllm_openai_error_set(err, 400, "invalid_request_error", "messages",
                                     "this model has no chat template (tokenizer_config.json has no chat_template); "
                                     "use /v1/completions with a prompt instead");
    /* compile once; renders of one template may run concurrently */
    pthread_mutex_lock(&s->mu);
    if (!s->chat_template_tried) {
        cllm_chat_template *t = NULL;
        if (cllm_chat_template_create(src, &t) == CLLM_OK) s->chat_template = t;
        else snprintf(s->chat_template_error, sizeof s->chat_template_error, "%s", cllm_last_error());
        s->chat_template_tried = true;
    }
    const cllm_chat_template *t = s->chat_template;
    pthread_mutex_unlock(&s->mu);
    if (!t)
        return cllm_openai_error_set(err, 400, "invalid_request_error", "messages",
                                     "the model's chat template does not compile: %s", s->chat_template_error);
    json_t *ctx = context_json(s, msgs, n_msgs, req, add_generation_prompt);
    cllm_status st = ctx ? cllm_chat_template_render(t, ctx, out) : CLLM_ERR_OOM;
    json_decref(ctx);
    if (st == CLLM_ERR_OOM) return cllm_openai_error_set(err, 500, "internal_error", NULL, "out of memory");
    if (st != CLLM_OK)
        return cllm_openai_error_set(err, 400, "invalid_request_error", "messages",
                                     "the chat template failed on these messages: %s", cllm_last_error());
    return CLLM_OK;
}

void srv_chat_free(cllm_server *s) {
    cllm_chat_template_destroy(s->chat_template);
    s->chat_template = NULL;
}
#else
void srv_chat_free(cllm_server *s) { (void)s; }

cllm_status srv_render_chat(cllm_server *s, const cllm_openai_message *msgs, size_t n_msgs,
                            const cllm_openai_request *req, bool add_generation_prompt, char **out,
                            cllm_openai_error *err) {
    (void)s; (void)msgs; (void)n_msgs; (void)req; (void)add_generation_prompt;
    *out = NULL;
    return cllm_openai_error_set(err, 400, "invalid_request_error", "messages",
                                 "chat templates are not available in this build (no tokenizer/chat_template.h)");
}
#endif
