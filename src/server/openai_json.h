/* Internal helpers of the OpenAI request parsers (openai_protocol.c,
 * openai_messages.c): typed, validated reads of optional JSON fields that
 * fill a cllm_openai_error naming the field on failure. Not a public API. */
#ifndef CLLM_SERVER_OPENAI_JSON_H
#define CLLM_SERVER_OPENAI_JSON_H

#include "server/openai_protocol.h"

#include <jansson.h>

typedef struct oj_ctx {
    cllm_openai_error *err;
    cllm_openai_limits lim;
} oj_ctx;

/* Byte offset of the first invalid UTF-8 sequence in s[0..len) (overlong
 * forms, surrogates and code points > U+10FFFF are invalid), or len. */
size_t cllm_openai_utf8_check(const char *s, size_t len);

/* 413 / UTF-8 / JSON syntax / "must be an object" checks, then *root. */
cllm_status oj_load(oj_ctx *c, const char *body, size_t len, json_t **root);
/* 400 invalid_request_error with param; returns CLLM_ERR_INVALID_ARG. */
cllm_status oj_fail(oj_ctx *c, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 500 out of memory; returns CLLM_ERR_OOM. */
cllm_status oj_oom(oj_ctx *c);
/* Field value, or NULL when absent or JSON null. */
json_t *oj_get(json_t *obj, const char *key);
/* "a string", "an integer", ... for messages. */
const char *oj_type(json_t *v);
/* Copy n bytes + NUL into *out (owned). */
cllm_status oj_dup(oj_ctx *c, const char *s, size_t n, char **out);

/* Typed optional reads: leave *out untouched when absent/null; *present
 * (may be NULL) says whether the field was given. */
cllm_status oj_num(oj_ctx *c, json_t *obj, const char *key, double *out, bool *present);
cllm_status oj_int(oj_ctx *c, json_t *obj, const char *key, int64_t *out, bool *present);
cllm_status oj_bool(oj_ctx *c, json_t *obj, const char *key, bool *out);
cllm_status oj_bool_p(oj_ctx *c, json_t *obj, const char *key, const char *param, bool *out);
cllm_status oj_str(oj_ctx *c, json_t *obj, const char *key, char **out, size_t *len);
/* A list of token ids (each in [0, vocab_size) when lim.vocab_size > 0);
 * non_empty: [] is an error. */
cllm_status oj_ids(oj_ctx *c, json_t *obj, const char *key, bool non_empty, int32_t **out, size_t *n);
cllm_status oj_ids_value(oj_ctx *c, json_t *v, const char *param, bool non_empty, int32_t **out, size_t *n);

/* Chat `messages` (required, non-empty) and `tools` / `tool_choice`. */
cllm_status oj_messages(oj_ctx *c, json_t *root, cllm_openai_message **out, size_t *n);
void oj_messages_free(cllm_openai_message *m, size_t n);
cllm_status oj_tools(oj_ctx *c, json_t *root, cllm_openai_request *r);

#endif
