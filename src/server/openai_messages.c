/* Chat `messages` parsing (OpenAI chat format, vLLM's accepted subset:
 * text content parts joined with "\n", as vLLM's chat_utils does). */
#include "server/openai_json.h"

#include "core/status.h"

#include <string.h>

/* param names are bounded buffers: truncating an absurdly long one is harmless */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static const char *ROLES[] = {"system", "user", "assistant", "tool", "developer"};

static cllm_status parse_content(oj_ctx *c, json_t *v, const char *p, cllm_openai_message *m) {
    char q[128];
    if (json_is_string(v)) {
        m->content_len = json_string_length(v);
        return oj_dup(c, json_string_value(v), m->content_len, &m->content);
    }
    if (!json_is_array(v))
        return oj_fail(c, p, "'%s' must be a string or a list of content parts, got %s", p, oj_type(v));
    size_t n = json_array_size(v), total = 0;
    for (size_t i = 0; i < n; i++) { /* validate, and size the joined text */
        json_t *part = json_array_get(v, i);
        snprintf(q, sizeof q, "%s[%zu]", p, i);
        if (!json_is_object(part))
            return oj_fail(c, q, "'%s' must be a content part object {\"type\": \"text\", \"text\": ...}, got %s",
                           q, oj_type(part));
        json_t *type = oj_get(part, "type");
        if (!type || !json_is_string(type))
            return oj_fail(c, q, "'%s.type' is required: this server accepts \"text\" parts", q);
        if (strcmp(json_string_value(type), "text"))
            return oj_fail(c, q, "content part type '%s' in '%s' is not supported: this server accepts only "
                                 "\"text\" parts", json_string_value(type), q);
        json_t *text = oj_get(part, "text");
        if (!text || !json_is_string(text))
            return oj_fail(c, q, "'%s.text' is required and must be a string", q);
        total += json_string_length(text) + (i ? 1 : 0);
    }
    char *buf = cllm_malloc(total + 1);
    if (!buf) return oj_oom(c);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *text = oj_get(json_array_get(v, i), "text");
        if (i) buf[at++] = '\n';
        memcpy(buf + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    buf[at] = 0;
    m->content = buf;
    m->content_len = at;
    return CLLM_OK;
}

static cllm_status parse_tool_calls(oj_ctx *c, json_t *v, const char *p, cllm_openai_message *m) {
    char q[128];
    if (!json_is_array(v)) return oj_fail(c, p, "'%s' must be a list of tool calls, got %s", p, oj_type(v));
    size_t n = json_array_size(v);
    if (n == 0) return CLLM_OK;
    if (!(m->tool_calls = cllm_calloc(n, sizeof *m->tool_calls))) return oj_oom(c);
    for (size_t i = 0; i < n; i++) {
        json_t *tc = json_array_get(v, i);
        cllm_openai_tool_call *t = &m->tool_calls[i];
        m->n_tool_calls = i + 1;
        snprintf(q, sizeof q, "%s[%zu]", p, i);
        if (!json_is_object(tc)) return oj_fail(c, q, "'%s' must be an object, got %s", q, oj_type(tc));
        json_t *id = oj_get(tc, "id");
        if (id) {
            if (!json_is_string(id)) return oj_fail(c, q, "'%s.id' must be a string, got %s", q, oj_type(id));
            CLLM_TRY(oj_dup(c, json_string_value(id), json_string_length(id), &t->id));
        }
        json_t *f = oj_get(tc, "function");
        json_t *name = f && json_is_object(f) ? oj_get(f, "name") : NULL;
        if (!name || !json_is_string(name))
            return oj_fail(c, q, "'%s.function.name' is required and must be a string", q);
        CLLM_TRY(oj_dup(c, json_string_value(name), json_string_length(name), &t->name));
        json_t *args = oj_get(f, "arguments");
        if (!args) {
            CLLM_TRY(oj_dup(c, "{}", 2, &t->arguments));
        } else if (json_is_string(args)) {
            CLLM_TRY(oj_dup(c, json_string_value(args), json_string_length(args), &t->arguments));
        } else if (json_is_object(args)) {
            if (!(t->arguments = json_dumps(args, JSON_COMPACT))) return oj_oom(c);
        } else {
            return oj_fail(c, q, "'%s.function.arguments' must be a JSON string, got %s", q, oj_type(args));
        }
    }
    return CLLM_OK;
}

static cllm_status parse_message(oj_ctx *c, json_t *v, size_t i, cllm_openai_message *m) {
    char p[96], q[128];
    snprintf(p, sizeof p, "messages[%zu]", i);
    if (!json_is_object(v)) return oj_fail(c, p, "'%s' must be a message object, got %s", p, oj_type(v));
    snprintf(q, sizeof q, "%s.role", p);
    json_t *role = oj_get(v, "role");
    if (!role) return oj_fail(c, q, "'%s' is required: one of system, user, assistant, tool, developer", q);
    if (!json_is_string(role)) return oj_fail(c, q, "'%s' must be a string, got %s", q, oj_type(role));
    int r = -1;
    for (int k = 0; k < 5; k++)
        if (!strcmp(json_string_value(role), ROLES[k])) r = k;
    if (r < 0)
        return oj_fail(c, q, "unknown role '%s' in '%s': expected one of system, user, assistant, tool, developer",
                       json_string_value(role), q);
    m->role = (cllm_openai_role)r;
    snprintf(q, sizeof q, "%s.content", p);
    json_t *content = oj_get(v, "content");
    if (content) {
        CLLM_TRY(parse_content(c, content, q, m));
    } else if (m->role != CLLM_OPENAI_ROLE_ASSISTANT) {
        return oj_fail(c, q, "'%s' is required for a %s message", q, ROLES[r]);
    }
    snprintf(q, sizeof q, "%s.name", p);
    json_t *name = oj_get(v, "name");
    if (name) {
        if (!json_is_string(name)) return oj_fail(c, q, "'%s' must be a string, got %s", q, oj_type(name));
        CLLM_TRY(oj_dup(c, json_string_value(name), json_string_length(name), &m->name));
    }
    snprintf(q, sizeof q, "%s.tool_call_id", p);
    json_t *tcid = oj_get(v, "tool_call_id");
    if (tcid) {
        if (!json_is_string(tcid)) return oj_fail(c, q, "'%s' must be a string, got %s", q, oj_type(tcid));
        CLLM_TRY(oj_dup(c, json_string_value(tcid), json_string_length(tcid), &m->tool_call_id));
    }
    json_t *tcs = oj_get(v, "tool_calls");
    if (tcs) {
        snprintf(q, sizeof q, "%s.tool_calls", p);
        if (m->role != CLLM_OPENAI_ROLE_ASSISTANT)
            return oj_fail(c, q, "'%s' is only allowed in assistant messages", q);
        CLLM_TRY(parse_tool_calls(c, tcs, q, m));
    }
    return CLLM_OK;
}

cllm_status oj_messages(oj_ctx *c, json_t *root, cllm_openai_message **out, size_t *n_out) {
    json_t *msgs = oj_get(root, "messages");
    if (!msgs) return oj_fail(c, "messages", "'messages' is required: a list of {\"role\", \"content\"} objects");
    if (!json_is_array(msgs)) return oj_fail(c, "messages", "'messages' must be a list, got %s", oj_type(msgs));
    size_t n = json_array_size(msgs);
    if (n == 0) return oj_fail(c, "messages", "'messages' must contain at least one message ([] is too short)");
    cllm_openai_message *m = cllm_calloc(n, sizeof *m);
    if (!m) return oj_oom(c);
    *out = m;
    for (size_t i = 0; i < n; i++) {
        *n_out = i + 1;
        CLLM_TRY(parse_message(c, json_array_get(msgs, i), i, &m[i]));
    }
    return CLLM_OK;
}

void oj_messages_free(cllm_openai_message *m, size_t n) {
    if (!m) return;
    for (size_t i = 0; i < n; i++) {
        free(m[i].content);
        free(m[i].name);
        free(m[i].tool_call_id);
        for (size_t k = 0; k < m[i].n_tool_calls; k++) {
            free(m[i].tool_calls[k].id);
            free(m[i].tool_calls[k].name);
            free(m[i].tool_calls[k].arguments);
        }
        free(m[i].tool_calls);
    }
    free(m);
}
