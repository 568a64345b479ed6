/* Tool-call parsing of generated chat text (vLLM's --tool-call-parser).
 *
 * With `cllm serve --enable-auto-tool-choice --tool-call-parser NAME`, the
 * text a model generates for a chat request that offers `tools` is split
 * into message content and function calls, as vLLM's tool parsers do:
 *
 *   hermes       (Qwen2.5/Qwen3, Hermes, ChatML): content, then one or more
 *                "<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>";
 *                the text before the first <tool_call> is the content; text
 *                between and after the calls is dropped; a final call may
 *                lack its </tool_call>.
 *   llama3_json  (Llama 3.1/3.2 JSON tool calling): the whole output (after
 *                leading whitespace, optionally after "<|python_tag|>") is one
 *                or more {"name": "f", "parameters"|"arguments": {...}}
 *                objects separated by ";"; content is none.
 *   mistral      (Mistral 7B Instruct v0.3): content, then
 *                "[TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]".
 *
 * Malformed tool-call text (bad JSON, no "name", no arguments, an object
 * that never ends) is not an error: the whole text becomes plain content
 * and no call is returned (vLLM falls back the same way). Arguments are
 * re-serialized as compact JSON (floats in their shortest round-trip form).
 * Call ids are "chatcmpl-tool-" + 32 hex digits (vLLM's make_tool_call_id);
 * mistral ids are 9 alphanumerics (Mistral's tokenizer requires them).
 *
 * Streaming: a cllm_tool_stream is fed text deltas and returns events:
 * content text (text that may still turn into a marker is held back until it
 * is decided) and whole tool calls, each as soon as it is complete. Fed the
 * same text in any chunking, the events are the same; for well-formed output
 * they equal cllm_tool_parse (content concatenated, calls in order). When a
 * call turns out malformed after earlier calls were already streamed, the
 * text from the malformed call on is streamed as content (the streamed
 * calls cannot be taken back; cllm_tool_parse returns content only).
 *
 * Sources followed: vLLM entrypoints/openai/tool_parsers/{hermes,llama,
 * mistral}_tool_parser.py (formats, fallbacks, ids), the chat templates of
 * Qwen3 (hermes), Llama 3.1 JSON (vLLM examples/tool_chat_template_llama3.1_json.jinja)
 * and Mistral-7B-Instruct-v0.3, and OpenAI's streaming `delta.tool_calls`.
 */
#ifndef CLLM_SERVER_TOOL_PARSER_H
#define CLLM_SERVER_TOOL_PARSER_H

#include "cllm.h"
#include "server/openai_protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cllm_tool_parser_kind {
    CLLM_TOOL_PARSER_NONE = 0,
    CLLM_TOOL_PARSER_HERMES = 1,
    CLLM_TOOL_PARSER_LLAMA3_JSON = 2,
    CLLM_TOOL_PARSER_MISTRAL = 3,
} cllm_tool_parser_kind;

/* "hermes, llama3_json, mistral": the valid --tool-call-parser names. */
const char *cllm_tool_parser_names(void);

/* The vLLM name of a parser ("hermes", ...), or "none". */
const char *cllm_tool_parser_name(cllm_tool_parser_kind k);

/* Look a parser up by its vLLM name. CLLM_ERR_INVALID_ARG (message lists the
 * valid names) for an unknown or NULL name. */
cllm_status cllm_tool_parser_from_name(const char *name, cllm_tool_parser_kind *out);

/* The result of parsing a whole generated text. */
typedef struct cllm_tool_parse_result {
    char *content;                 /* NUL-terminated, owned; NULL when there is none */
    size_t content_len;            /* bytes */
    cllm_openai_tool_call *calls;  /* (n_calls) owned: id, name, arguments (compact JSON text) */
    size_t n_calls;
} cllm_tool_parse_result;

/* Parse text (len bytes, need not be NUL-terminated) with parser k. *out is
 * zeroed first. Without calls, content is the whole text (NULL when len is
 * 0). Release with cllm_tool_parse_result_free. Returns CLLM_OK,
 * CLLM_ERR_INVALID_ARG (bad k or NULL pointers) or CLLM_ERR_OOM. */
cllm_status cllm_tool_parse(cllm_tool_parser_kind k, const char *text, size_t len, cllm_tool_parse_result *out);

/* Release what *r holds and zero it. NULL is a no-op. */
void cllm_tool_parse_result_free(cllm_tool_parse_result *r);

/* Release the strings of n calls and the array itself. */
void cllm_tool_calls_free(cllm_openai_tool_call *calls, size_t n);

/* A chat choice from its generated text (vLLM's serving_chat with
 * auto tool choice): parse text with k into *res (caller-owned, release
 * with cllm_tool_parse_result_free after the choice is formatted), then
 * point ch->text / tool_calls at it (borrowed). With calls, the message
 * content is the text before them (NULL -> JSON null) and finish_reason
 * "stop"/"length" becomes "tool_calls"; without, the content is the text.
 * Returns CLLM_OK or CLLM_ERR_OOM. */
cllm_status cllm_tool_parse_choice(cllm_tool_parser_kind k, const char *text, size_t len,
                                   cllm_tool_parse_result *res, cllm_openai_choice *ch);

/* ------------------------------------------------------------ streaming */
typedef struct cllm_tool_stream cllm_tool_stream;

/* One streaming event: content text, or one complete tool call. */
typedef struct cllm_tool_event {
    bool is_call;
    const char *text;              /* content (is_call false), text_len bytes; borrowed */
    size_t text_len;
    const cllm_openai_tool_call *call; /* is_call: borrowed */
    uint32_t index;                /* is_call: the call's index in this choice (0, 1, ...) */
} cllm_tool_event;

/* A parser for one choice's stream. *out is caller-owned
 * (cllm_tool_stream_destroy). CLLM_ERR_INVALID_ARG (bad k), CLLM_ERR_OOM. */
cllm_status cllm_tool_stream_create(cllm_tool_parser_kind k, cllm_tool_stream **out);

/* NULL is a no-op. */
void cllm_tool_stream_destroy(cllm_tool_stream *s);

/* Feed the next len bytes of generated text; final: this is the end of the
 * text (everything held back is decided and emitted). *events / *n_events
 * get the events this call produced, in order; they are owned by s and
 * valid until the next feed or destroy. Feeding after a final feed is an
 * error (CLLM_ERR_INVALID_ARG). Returns CLLM_OK or CLLM_ERR_OOM. */
cllm_status cllm_tool_stream_feed(cllm_tool_stream *s, const char *delta, size_t len, bool final,
                                  const cllm_tool_event **events, size_t *n_events);

/* Tool calls emitted so far. */
size_t cllm_tool_stream_n_calls(const cllm_tool_stream *s);

#ifdef __cplusplus
}
#endif
#endif
