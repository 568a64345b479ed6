/* Chat templates: a Jinja subset that renders Hugging Face `chat_template`
 * strings exactly as transformers' apply_chat_template does (jinja2
 * ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True,
 * the loopcontrols extension, globals raise_exception/strftime_now and the
 * tojson filter as json.dumps(ensure_ascii=False, indent=...)).
 *
 * Supported: text, {{ }}, {% %}, {# #}, '-'/'+' whitespace control, raw;
 * for (loop.*, else, inline if, break/continue), if/elif/else, set (names,
 * ns.attr, tuples, block set with filters), macro (defaults, caller), call,
 * filter blocks, generation blocks; the expression language with Python
 * semantics (slices, // % **, ~, in, chained comparisons, a if c else b),
 * jinja2's builtin tests and the filters/methods chat templates use.
 * Rendering is bounded (steps, recursion depth, memory, output size), so
 * no input can crash it or make it run forever.
 */
#ifndef CLLM_TOKENIZER_CHAT_TEMPLATE_H
#define CLLM_TOKENIZER_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cllm.h"

typedef struct cllm_chat_template cllm_chat_template;

/* Bounds applied while rendering. */
typedef struct cllm_chat_template_limits {
    size_t max_output_bytes;  /* rendered text and any string built (default 16 MiB) */
    size_t max_memory_bytes;  /* all values of one render (default 512 MiB) */
    uint64_t max_steps;       /* evaluated nodes (default 50,000,000) */
    int max_depth;            /* nested evaluation/macro recursion (default 300) */
} cllm_chat_template_limits;

cllm_chat_template_limits cllm_chat_template_default_limits(void);

/* Compile a template source (UTF-8, NUL-terminated) once; render it many times.
 * *out is caller-owned: free with cllm_chat_template_destroy.
 * Returns CLLM_OK, CLLM_ERR_INVALID_ARG (NULL argument), CLLM_ERR_FORMAT (syntax
 * error; the message gives "line L, column C" and what was expected),
 * CLLM_ERR_OOM. Source followed: jinja2 3.1 lexer/parser. */
cllm_status cllm_chat_template_create(const char *source, cllm_chat_template **out);

/* Free a template. NULL is a no-op. */
void cllm_chat_template_destroy(cllm_chat_template *t);

/* Render with a JSON object as the template's variables, like
 * apply_chat_template: `messages` (list of {role, content (string or list of
 * parts), tool_calls, ...}), `tools` (list, optional), `add_generation_prompt`
 * (bool), `bos_token`, `eos_token` and any extra kwargs. As transformers does,
 * `tools` and `documents` default to None and `add_generation_prompt` to false
 * when absent. *out is a malloc'd NUL-terminated UTF-8 string (free()).
 * The template is not modified: concurrent renders of one template are safe.
 * Returns CLLM_OK; CLLM_ERR_INVALID_ARG when the template raises — the message
 * (cllm_last_error) is then exactly raise_exception's argument, as in
 * transformers' TemplateError — or fails at run time (undefined attribute of
 * an undefined value, type errors, limits exceeded: message says which);
 * CLLM_ERR_OOM. */
cllm_status cllm_chat_template_render(const cllm_chat_template *t, const json_t *context, char **out);

/* Same with explicit limits (NULL = defaults). *raised (may be NULL) is set to
 * 1 when the failure came from raise_exception(). */
cllm_status cllm_chat_template_render_ex(const cllm_chat_template *t, const json_t *context,
                                         const cllm_chat_template_limits *limits, char **out, int *raised);

#endif
