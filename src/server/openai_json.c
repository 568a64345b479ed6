/* Typed, validated JSON field reads for the OpenAI parsers (see openai_json.h). */
#include "server/openai_json.h"

#include "core/status.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

cllm_status cllm_openai_error_set(cllm_openai_error *err, int http_status, const char *type,
                                  const char *param, const char *fmt, ...) {
    err->http_status = http_status;
    snprintf(err->type, sizeof err->type, "%s", type ? type : "invalid_request_error");
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    err->code[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return http_status >= 400 && http_status < 500 ? CLLM_ERR_INVALID_ARG : CLLM_ERR_INTERNAL;
}

size_t cllm_openai_utf8_check(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t n;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += n + 1;
    }
    return len;
}

cllm_status oj_fail(oj_ctx *c, const char *param, const char *fmt, ...) {
    cllm_openai_error *e = c->err;
    e->http_status = 400;
    snprintf(e->type, sizeof e->type, "invalid_request_error");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->code[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return CLLM_ERR_INVALID_ARG;
}

cllm_status oj_oom(oj_ctx *c) {
    cllm_openai_error_set(c->err, 500, "internal_error", NULL,
                          "the server ran out of host memory while parsing the request; retry later");
    return CLLM_ERR_OOM;
}

cllm_status oj_load(oj_ctx *c, const char *body, size_t len, json_t **root) {
    if (len > c->lim.max_body_bytes) {
        cllm_openai_error_set(c->err, 413, "invalid_request_error", NULL,
                              "request body is %zu bytes, more than the server's limit of %zu bytes; "
                              "send a shorter request", len, c->lim.max_body_bytes);
        return CLLM_ERR_INVALID_ARG;
    }
    if (!body || len == 0) return oj_fail(c, NULL, "request body is empty: send a JSON object");
    size_t bad = cllm_openai_utf8_check(body, len);
    if (bad < len)
        return oj_fail(c, NULL, "request body is not valid UTF-8 (invalid byte 0x%02X at offset %zu): "
                                "JSON text and every string in it must be UTF-8 encoded",
                       (unsigned char)body[bad], bad);
    json_error_t je;
    json_t *v = json_loadb(body, len, 0, &je);
    if (!v) {
        if (json_error_code(&je) == json_error_out_of_memory) return oj_oom(c);
        if (strstr(je.text, "NUL"))
            return oj_fail(c, NULL, "a JSON string contains \\u0000 (NUL) at line %d, column %d; "
                                    "NUL characters are not supported, remove them", je.line, je.column);
        if (strstr(je.text, "nicode") || strstr(je.text, "UTF-8"))
            return oj_fail(c, NULL, "JSON string at line %d, column %d is not valid Unicode (%s): "
                                    "\\u escapes must not encode lone surrogates", je.line, je.column, je.text);
        return oj_fail(c, NULL, "malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
    }
    if (!json_is_object(v)) {
        const char *t = oj_type(v);
        json_decref(v);
        return oj_fail(c, NULL, "request body must be a JSON object, got %s", t);
    }
    *root = v;
    return CLLM_OK;
}

json_t *oj_get(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

const char *oj_type(json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

cllm_status oj_dup(oj_ctx *c, const char *s, size_t n, char **out) {
    char *p = malloc(n + 1);
    if (!p) return oj_oom(c);
    memcpy(p, s, n);
    p[n] = 0;
    *out = p;
    return CLLM_OK;
}

cllm_status oj_num(oj_ctx *c, json_t *obj, const char *key, double *out, bool *present) {
    json_t *v = oj_get(obj, key);
    if (present) *present = v != NULL;
    if (!v) return CLLM_OK;
    if (!json_is_number(v)) return oj_fail(c, key, "'%s' must be a number, got %s", key, oj_type(v));
    *out = json_number_value(v);
    return CLLM_OK;
}

/* An integer, or a number with an integral value (pydantic's lax mode). */
static cllm_status int_value(oj_ctx *c, json_t *v, const char *param, int64_t *out) {
    if (json_is_integer(v)) { *out = json_integer_value(v); return CLLM_OK; }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && d >= -9.2e18 && d <= 9.2e18) { *out = (int64_t)d; return CLLM_OK; }
        return oj_fail(c, param, "'%s' must be an integer, got %g", param, d);
    }
    return oj_fail(c, param, "'%s' must be an integer, got %s", param, oj_type(v));
}

cllm_status oj_int(oj_ctx *c, json_t *obj, const char *key, int64_t *out, bool *present) {
    json_t *v = oj_get(obj, key);
    if (present) *present = v != NULL;
    if (!v) return CLLM_OK;
    return int_value(c, v, key, out);
}

cllm_status oj_bool_p(oj_ctx *c, json_t *obj, const char *key, const char *param, bool *out) {
    json_t *v = oj_get(obj, key);
    if (!v) return CLLM_OK;
    if (!json_is_boolean(v)) return oj_fail(c, param, "'%s' must be true or false, got %s", param, oj_type(v));
    *out = json_is_true(v);
    return CLLM_OK;
}

cllm_status oj_bool(oj_ctx *c, json_t *obj, const char *key, bool *out) {
    return oj_bool_p(c, obj, key, key, out);
}

static cllm_status str_value(oj_ctx *c, json_t *v, const char *param, char **out, size_t *len) {
    if (!json_is_string(v)) return oj_fail(c, param, "'%s' must be a string, got %s", param, oj_type(v));
    if (len) *len = json_string_length(v);
    return oj_dup(c, json_string_value(v), json_string_length(v), out);
}

cllm_status oj_str(oj_ctx *c, json_t *obj, const char *key, char **out, size_t *len) {
    json_t *v = oj_get(obj, key);
    if (!v) return CLLM_OK;
    free(*out);
    *out = NULL;
    return str_value(c, v, key, out, len);
}

cllm_status oj_ids_value(oj_ctx *c, json_t *v, const char *param, bool non_empty, int32_t **out, size_t *n) {
    if (!json_is_array(v))
        return oj_fail(c, param, "'%s' must be a list of token ids (integers), got %s", param, oj_type(v));
    size_t m = json_array_size(v);
    if (m == 0 && non_empty) return oj_fail(c, param, "'%s' must not be an empty list of token ids", param);
    int32_t *ids = cllm_malloc(m * sizeof *ids);
    if (!ids) return oj_oom(c);
    for (size_t i = 0; i < m; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e)) {
            free(ids);
            return oj_fail(c, param, "'%s[%zu]' must be a token id (an integer), got %s", param, i, oj_type(e));
        }
        json_int_t id = json_integer_value(e);
        int64_t hi = c->lim.vocab_size > 0 ? c->lim.vocab_size : INT32_MAX + 1LL;
        if (id < 0 || id >= hi) {
            free(ids);
            if (c->lim.vocab_size > 0)
                return oj_fail(c, param, "Token id %lld in '%s[%zu]' is out of vocabulary: ids must be in "
                                         "[0, %d)", (long long)id, param, i, c->lim.vocab_size);
            return oj_fail(c, param, "Token id %lld in '%s[%zu]' is out of range: ids are non-negative "
                                     "32-bit integers", (long long)id, param, i);
        }
        ids[i] = (int32_t)id;
    }
    free(*out);
    *out = ids;
    *n = m;
    return CLLM_OK;
}

cllm_status oj_ids(oj_ctx *c, json_t *obj, const char *key, bool non_empty, int32_t **out, size_t *n) {
    json_t *v = oj_get(obj, key);
    if (!v) return CLLM_OK;
    return oj_ids_value(c, v, key, non_empty, out, n);
}

/* ---------------------------------------------------------------- tools */
static cllm_status parse_tool(oj_ctx *c, json_t *t, size_t i, cllm_openai_tool *out) {
    char p[64];
    snprintf(p, sizeof p, "tools[%zu]", i);
    if (!json_is_object(t)) return oj_fail(c, p, "'%s' must be an object, got %s", p, oj_type(t));
    json_t *type = oj_get(t, "type");
    if (type && (!json_is_string(type) || strcmp(json_string_value(type), "function")))
        return oj_fail(c, p, "'%s.type' must be \"function\" (the only tool type supported)", p);
    json_t *f = oj_get(t, "function");
    if (!f || !json_is_object(f))
        return oj_fail(c, p, "'%s.function' is required: an object with a 'name'", p);
    json_t *name = oj_get(f, "name");
    if (!name || !json_is_string(name) || json_string_length(name) == 0)
        return oj_fail(c, p, "'%s.function.name' is required and must be a non-empty string", p);
    CLLM_TRY(oj_dup(c, json_string_value(name), json_string_length(name), &out->name));
    json_t *d = oj_get(f, "description");
    if (d) {
        if (!json_is_string(d)) return oj_fail(c, p, "'%s.function.description' must be a string", p);
        CLLM_TRY(oj_dup(c, json_string_value(d), json_string_length(d), &out->description));
    }
    json_t *params = oj_get(f, "parameters");
    if (params) {
        if (!json_is_object(params))
            return oj_fail(c, p, "'%s.function.parameters' must be a JSON Schema object, got %s", p, oj_type(params));
        if (!(out->parameters_json = json_dumps(params, JSON_COMPACT))) return oj_oom(c);
    }
    return CLLM_OK;
}

cllm_status oj_tools(oj_ctx *c, json_t *root, cllm_openai_request *r) {
    json_t *tools = oj_get(root, "tools");
    if (tools) {
        if (!json_is_array(tools))
            return oj_fail(c, "tools", "'tools' must be a list of tool objects, got %s", oj_type(tools));
        size_t n = json_array_size(tools);
        if (n && !(r->tools = cllm_calloc(n, sizeof *r->tools))) return oj_oom(c);
        for (size_t i = 0; i < n; i++) {
            r->n_tools = i + 1;
            CLLM_TRY(parse_tool(c, json_array_get(tools, i), i, &r->tools[i]));
        }
    }
    json_t *tc = oj_get(root, "tool_choice");
    if (!tc) return CLLM_OK;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "none")) r->tool_choice = CLLM_OPENAI_TOOL_CHOICE_NONE;
        else if (!strcmp(s, "auto")) r->tool_choice = CLLM_OPENAI_TOOL_CHOICE_AUTO;
        else if (!strcmp(s, "required")) r->tool_choice = CLLM_OPENAI_TOOL_CHOICE_REQUIRED;
        else
            return oj_fail(c, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                             "{\"type\": \"function\", \"function\": {\"name\": ...}}, got \"%s\"", s);
    } else if (json_is_object(tc)) {
        json_t *f = oj_get(tc, "function");
        json_t *name = f && json_is_object(f) ? oj_get(f, "name") : NULL;
        if (!name || !json_is_string(name))
            return oj_fail(c, "tool_choice", "'tool_choice' object must be {\"type\": \"function\", "
                                             "\"function\": {\"name\": \"<a tool name>\"}}");
        r->tool_choice = CLLM_OPENAI_TOOL_CHOICE_NAMED;
        CLLM_TRY(oj_dup(c, json_string_value(name), json_string_length(name), &r->tool_choice_name));
    } else {
        return oj_fail(c, "tool_choice", "'tool_choice' must be a string or an object, got %s", oj_type(tc));
    }
    if ((r->tool_choice == CLLM_OPENAI_TOOL_CHOICE_REQUIRED || r->tool_choice == CLLM_OPENAI_TOOL_CHOICE_NAMED) &&
        r->n_tools == 0)
        return oj_fail(c, "tool_choice", "When using `tool_choice`, `tools` must be set.");
    if (r->tool_choice == CLLM_OPENAI_TOOL_CHOICE_NAMED) {
        for (size_t i = 0; i < r->n_tools; i++)
            if (!strcmp(r->tools[i].name, r->tool_choice_name)) return CLLM_OK;
        return oj_fail(c, "tool_choice", "Tool '%s' has not been passed in `tools`.", r->tool_choice_name);
    }
    return CLLM_OK;
}
