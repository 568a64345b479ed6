/* Chat template API: compile (jinja_parser.c) and render (jinja_eval.c)
 * with a jansson context, as transformers' apply_chat_template. */
#include "tokenizer/chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/jinja_internal.h"

struct cllm_chat_template { jinja_template t; };

cllm_chat_template_limits cllm_chat_template_default_limits(void) {
    cllm_chat_template_limits l = {
        .max_output_bytes = (size_t)16 << 20,
        .max_memory_bytes = (size_t)512 << 20,
        .max_steps = 50000000,
        .max_depth = 300,
    };
    return l;
}

cllm_status cllm_chat_template_create(const char *source, cllm_chat_template **out) {
    if (!source || !out) return cllm_error(CLLM_ERR_INVALID_ARG, "chat template: NULL source or output pointer");
    *out = NULL;
    cllm_chat_template *t = calloc(1, sizeof *t);
    if (!t) return cllm_error(CLLM_ERR_OOM, "chat template: out of memory");
    t->t.arena.limit_bytes = (size_t)256 << 20;
    char err[512] = "";
    if (jinja_parse(&t->t, source, err, sizeof err) < 0) {
        cllm_chat_template_destroy(t);
        return cllm_error(CLLM_ERR_FORMAT, "chat template syntax error at %s", err[0] ? err : "unknown position");
    }
    *out = t;
    return CLLM_OK;
}

void cllm_chat_template_destroy(cllm_chat_template *t) {
    if (!t) return;
    jinja_arena_free(&t->t.arena);
    free(t);
}

static jv *from_json(jinja_ctx *cx, const json_t *j, int depth) {
    if (depth > cx->max_depth) return jinja_fail(cx, "context JSON nested deeper than %d", cx->max_depth);
    switch (json_typeof(j)) {
    case JSON_NULL: return JV_NONEV;
    case JSON_TRUE: return JV_BOOLV(1);
    case JSON_FALSE: return JV_BOOLV(0);
    case JSON_INTEGER: return jv_int(cx, (int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(cx, json_real_value(j));
    case JSON_STRING: return jv_str(cx, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jv *l = jv_list(cx, JV_LIST, json_array_size(j));
        if (!l) return NULL;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (jv_list_push(cx, l, from_json(cx, json_array_get(j, i), depth + 1)) < 0) return NULL;
        return l;
    }
    case JSON_OBJECT: {
        jv *d = jv_dict(cx, JV_DICT);
        const char *k;
        size_t klen;
        json_t *v;
        if (!d) return NULL;
        json_object_keylen_foreach((json_t *)j, k, klen, v) {
            if (jv_dict_set(cx, d, jv_str(cx, k, klen), from_json(cx, v, depth + 1)) < 0) return NULL;
        }
        return d;
    }
    }
    return jinja_fail(cx, "unknown JSON type");
}

cllm_status cllm_chat_template_render_ex(const cllm_chat_template *t, const json_t *context,
                                         const cllm_chat_template_limits *limits, char **out, int *raised) {
    if (raised) *raised = 0;
    if (!t || !out) return cllm_error(CLLM_ERR_INVALID_ARG, "chat template: NULL template or output pointer");
    *out = NULL;
    if (context && !json_is_object(context))
        return cllm_error(CLLM_ERR_INVALID_ARG, "chat template: the context must be a JSON object");
    cllm_chat_template_limits lim = limits ? *limits : cllm_chat_template_default_limits();
    jinja_ctx *cx = calloc(1, sizeof *cx);
    if (!cx) return cllm_error(CLLM_ERR_OOM, "chat template: out of memory");
    cx->arena.limit_bytes = lim.max_memory_bytes;
    cx->max_output_bytes = lim.max_output_bytes;
    cx->max_steps = lim.max_steps;
    cx->max_depth = lim.max_depth;
    cllm_status st = CLLM_OK;
    jframe *root = jinja_alloc(&cx->arena, sizeof *root), *top = jinja_alloc(&cx->arena, sizeof *top);
    if (!root || !top) { st = cllm_error(CLLM_ERR_OOM, "chat template: out of memory"); goto done; }
    root->vars = context ? from_json(cx, context, 0) : jv_dict(cx, JV_DICT);
    top->vars = jv_dict(cx, JV_DICT);
    top->parent = root;
    if (!root->vars || !top->vars) goto fail;
    static const char *const defaults[] = {"tools", "documents", "add_generation_prompt"};
    for (int i = 0; i < 3; i++)
        if (!jv_dict_gets(root->vars, defaults[i]) &&
            jv_dict_set(cx, root->vars, jv_cstr(cx, defaults[i]), i < 2 ? JV_NONEV : JV_BOOLV(0)) < 0) goto fail;
    cx->globals = root;
    jbuf buf;
    jbuf_init(&buf, cx);
    jbuf_put(&buf, "", 0);
    int r = jinja_exec(cx, top, t->t.root, &buf);
    if (r < 0 || cx->failed || buf.failed) goto fail;
    *out = malloc(buf.len + 1);
    if (!*out) { st = cllm_error(CLLM_ERR_OOM, "chat template: out of memory for %zu bytes of output", buf.len); goto done; }
    memcpy(*out, buf.p, buf.len + 1);
    goto done;
fail:
    if (cx->raised) {
        if (raised) *raised = 1;
        st = cllm_error(CLLM_ERR_INVALID_ARG, "%s", cx->err);
    } else {
        st = cllm_error(CLLM_ERR_INVALID_ARG, "chat template error: %s", cx->err[0] ? cx->err : "out of memory");
    }
done:
    jinja_arena_free(&cx->arena);
    free(cx);
    return st;
}

cllm_status cllm_chat_template_render(const cllm_chat_template *t, const json_t *context, char **out) {
    return cllm_chat_template_render_ex(t, context, NULL, out, NULL);
}
