/* OpenAI-compatible request parsing and response formatting (engine-independent).
 *
 * The HTTP layer hands a request body to cllm_openai_parse_completion() or
 * cllm_openai_parse_chat(); on success it gets a plain-C cllm_openai_request
 * (owned strings and arrays, no jansson types), on failure a
 * cllm_openai_error carrying the HTTP status, the OpenAI error `type`, the
 * offending `param` and a message saying what to fix. The engine fills the
 * borrowed cllm_openai_response / cllm_openai_chunk views and the format
 * functions turn them into the exact JSON bodies (and SSE frames, see
 * server/sse.h) that the OpenAI API and vLLM send.
 *
 * Sources followed: the OpenAI API reference (Completions, Chat Completions,
 * streaming, error objects) and vLLM's entrypoints/openai/protocol.py and
 * SamplingParams._verify_args (field set, defaults, ranges, error wording).
 * Unknown request fields are ignored, as OpenAI and vLLM do; JSON null for an
 * optional field means "not set".
 */
#ifndef CLLM_SERVER_OPENAI_PROTOCOL_H
#define CLLM_SERVER_OPENAI_PROTOCOL_H

#include "cllm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ limits */
typedef struct cllm_openai_limits {
    size_t max_body_bytes;   /* larger bodies -> 413; default 32 MiB */
    int max_n;               /* upper bound of `n`; default 128 */
    int max_stop;            /* most `stop` strings; default 16 (OpenAI: 4, vLLM: unbounded) */
    int max_logprobs;        /* upper bound of logprobs / top_logprobs; default 20 (vLLM --max-logprobs) */
    int32_t vocab_size;      /* token ids (prompt, stop_token_ids, detokenize) must be < this; 0: unchecked */
} cllm_openai_limits;

cllm_openai_limits cllm_openai_default_limits(void);

/* ------------------------------------------------------------ errors */
/* One OpenAI error object. Rendered by cllm_openai_format_error() as
 * {"error": {"message", "type", "param", "code"}, "object": "error"}. */
typedef struct cllm_openai_error {
    int http_status;         /* 400 bad request, 404 unknown model, 413 body too large, 500 internal */
    char type[40];           /* "invalid_request_error", "not_found_error", "internal_error" */
    char param[96];          /* offending field ("messages[1].role"); "" -> null */
    char code[40];           /* machine code ("context_length_exceeded"); "" -> null */
    char message[768];       /* what was wrong and what to do */
} cllm_openai_error;

/* Fill *err (any field may be NULL/"" except type and message). Returns
 * CLLM_ERR_INVALID_ARG for status 4xx, CLLM_ERR_INTERNAL otherwise. */
cllm_status cllm_openai_error_set(cllm_openai_error *err, int http_status, const char *type,
                                  const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Context-length check as vLLM's serving layer does it.
 * prompt_tokens: tokens of the (templated) prompt. *max_tokens: requested
 * completion length, or -1 for "up to the context limit", in which case it is
 * replaced by max_model_len - prompt_tokens. Errors (400, code
 * "context_length_exceeded", param "messages" or "prompt" as `param` says):
 * "This model's maximum context length is N tokens. However, you requested M
 * tokens (P in the messages, C in the completion). Please reduce the length
 * of the messages or completion." Returns CLLM_OK or CLLM_ERR_CONTEXT_LENGTH. */
cllm_status cllm_openai_check_context_length(int64_t prompt_tokens, int64_t *max_tokens,
                                             int64_t max_model_len, const char *param,
                                             cllm_openai_error *err);

/* ------------------------------------------------------------ requests */
typedef enum cllm_openai_endpoint {
    CLLM_OPENAI_COMPLETION = 0,  /* POST /v1/completions */
    CLLM_OPENAI_CHAT = 1,        /* POST /v1/chat/completions */
} cllm_openai_endpoint;

/* One completions prompt: text, or pre-tokenized ids. */
typedef struct cllm_openai_prompt {
    bool is_tokens;
    char *text;                  /* NUL-terminated UTF-8 (is_tokens false), owned */
    size_t text_len;             /* bytes */
    int32_t *token_ids;          /* (n_tokens) ids (is_tokens true), owned */
    size_t n_tokens;
} cllm_openai_prompt;

typedef enum cllm_openai_role {
    CLLM_OPENAI_ROLE_SYSTEM = 0,
    CLLM_OPENAI_ROLE_USER = 1,
    CLLM_OPENAI_ROLE_ASSISTANT = 2,
    CLLM_OPENAI_ROLE_TOOL = 3,
    CLLM_OPENAI_ROLE_DEVELOPER = 4,
} cllm_openai_role;

/* "system", "user", ... (never NULL). */
const char *cllm_openai_role_name(cllm_openai_role r);

/* A function tool call (assistant message in a request, or in a response). */
typedef struct cllm_openai_tool_call {
    char *id;                    /* "call_..." (may be NULL in requests) */
    char *name;                  /* function name */
    char *arguments;             /* JSON text of the arguments, as sent */
} cllm_openai_tool_call;

typedef struct cllm_openai_message {
    cllm_openai_role role;
    char *content;               /* text, list-of-parts concatenated; NULL when null/absent */
    size_t content_len;          /* bytes */
    char *name;                  /* optional participant name, NULL if absent */
    char *tool_call_id;          /* role tool: the call answered; NULL if absent */
    cllm_openai_tool_call *tool_calls; /* assistant: (n_tool_calls), owned */
    size_t n_tool_calls;
} cllm_openai_message;

/* A function tool offered to the model (`tools` entry of type "function"). */
typedef struct cllm_openai_tool {
    char *name;
    char *description;           /* NULL if absent */
    char *parameters_json;       /* JSON Schema text, NULL if absent */
} cllm_openai_tool;

typedef enum cllm_openai_tool_choice {
    CLLM_OPENAI_TOOL_CHOICE_UNSET = 0,  /* vLLM: "auto" with tools, "none" without */
    CLLM_OPENAI_TOOL_CHOICE_NONE = 1,
    CLLM_OPENAI_TOOL_CHOICE_AUTO = 2,
    CLLM_OPENAI_TOOL_CHOICE_REQUIRED = 3,
    CLLM_OPENAI_TOOL_CHOICE_NAMED = 4,  /* {"type":"function","function":{"name":...}} */
} cllm_openai_tool_choice;

/* A parsed completions or chat request. All pointers are owned; release
 * with cllm_openai_request_free(). Fields not given in the request hold the
 * defaults listed (OpenAI's, or vLLM's where OpenAI has none); has_* flags say
 * whether a sampling field was given, so the engine may apply the model's
 * generation_config.json defaults otherwise (as vLLM does). */
typedef struct cllm_openai_request {
    cllm_openai_endpoint endpoint;
    char *model;                 /* NULL if absent (serve the default model) */

    cllm_openai_prompt *prompts; /* completions: (n_prompts) >= 1 */
    size_t n_prompts;
    cllm_openai_message *messages; /* chat: (n_messages) >= 1 */
    size_t n_messages;
    cllm_openai_tool *tools;     /* chat: (n_tools) */
    size_t n_tools;
    cllm_openai_tool_choice tool_choice;
    char *tool_choice_name;      /* NAMED: the function name */

    int64_t max_tokens;          /* completions default 16; chat default -1 (to the context limit) */
    double temperature;          /* [0, 2], default 1 */
    double top_p;                /* (0, 1], default 1 */
    int32_t top_k;               /* -1 (disabled) or >= 1, default -1; 0 is read as -1 */
    double min_p;                /* [0, 1], default 0 */
    double presence_penalty;     /* [-2, 2], default 0 */
    double frequency_penalty;    /* [-2, 2], default 0 */
    double repetition_penalty;   /* > 0, default 1 */
    bool has_temperature, has_top_p, has_top_k, has_min_p, has_repetition_penalty;
    int32_t n;                   /* [1, lim->max_n], default 1 */
    bool has_seed;
    int64_t seed;
    char **stop;                 /* (n_stop) non-empty strings, owned */
    size_t n_stop;
    int32_t *stop_token_ids;     /* (n_stop_token_ids) */
    size_t n_stop_token_ids;
    int32_t *logit_bias_ids;     /* logit_bias: (n_logit_bias) token ids in [0, vocab_size) (when the limits know */
    float *logit_bias_values;    /* it), values clamped to [-100, 100] as vLLM does; owned */
    size_t n_logit_bias;
    bool ignore_eos;             /* default false */
    int64_t min_tokens;          /* >= 0 and <= max_tokens, default 0 */
    bool skip_special_tokens;    /* default true */
    bool include_stop_str_in_output; /* vLLM extra, default false */
    bool add_special_tokens;     /* vLLM extra: the tokenizer's BOS etc. on a text prompt; default true for
                                  * completions, false for chat (the template has them) */
    int64_t truncate_prompt_tokens; /* vLLM extra: 0 none; >= 1 keep the last k prompt tokens; -1 keep the
                                  * last max_model_len */

    int32_t logprobs;            /* completions: -1 (none) or 0..max; chat: top_logprobs when
                                  * logprobs:true else -1. Number of top alternatives per token. */
    bool chat_logprobs;          /* chat: `logprobs` was true */
    bool echo;                   /* completions: prepend the prompt to the text */
    int32_t prompt_logprobs;     /* vLLM extra: -1 (none) or 0..max_logprobs top alternatives per
                                  * prompt token; not with stream (400, as vLLM) */
    char *user;                  /* NULL if absent */
    bool stream;
    bool include_usage;          /* stream_options.include_usage (only with stream) */
    bool add_generation_prompt;  /* chat, default true */
    bool continue_final_message; /* chat, default false (vLLM extra) */
    char *chat_template_kwargs_json; /* chat: JSON object text, NULL if absent */
} cllm_openai_request;

/* Parse a POST /v1/completions body (len bytes, need not be NUL-terminated).
 * prompt: a string, a list of strings, a list of token ids, or a list of
 * lists of token ids (each becomes one entry of out->prompts).
 * lim: NULL for cllm_openai_default_limits(). *out is zeroed first and owns
 * everything on success (release with cllm_openai_request_free); on failure
 * nothing is left allocated. Errors fill *err: 413 (body too large), 400
 * (malformed JSON, invalid UTF-8, wrong type, out of range, missing prompt),
 * 500 (out of memory). Returns CLLM_OK, CLLM_ERR_INVALID_ARG or CLLM_ERR_OOM. */
cllm_status cllm_openai_parse_completion(const char *body, size_t len, const cllm_openai_limits *lim,
                                         cllm_openai_request *out, cllm_openai_error *err);

/* Parse a POST /v1/chat/completions body; as cllm_openai_parse_completion but
 * requires a non-empty `messages` list (roles system, user, assistant, tool,
 * developer; content a string, null, or a list of {"type":"text","text"}
 * parts), and reads tools, tool_choice, logprobs (bool) + top_logprobs,
 * max_completion_tokens (preferred over the deprecated max_tokens),
 * add_generation_prompt, continue_final_message, chat_template_kwargs. */
cllm_status cllm_openai_parse_chat(const char *body, size_t len, const cllm_openai_limits *lim,
                                   cllm_openai_request *out, cllm_openai_error *err);

/* Release what a parse left in *r and zero it. NULL is a no-op. */
void cllm_openai_request_free(cllm_openai_request *r);

/* vLLM POST /tokenize: {"prompt": str, "add_special_tokens": true} or
 * {"messages": [...], "add_generation_prompt": true, "add_special_tokens": false}. */
typedef struct cllm_openai_tokenize_request {
    char *model;                 /* NULL if absent */
    char *prompt;                /* NULL when messages are given */
    size_t prompt_len;
    cllm_openai_message *messages;
    size_t n_messages;
    bool add_special_tokens;     /* default true for prompt, false for messages (vLLM) */
    bool add_generation_prompt;  /* default true */
    bool return_token_strs;      /* default false */
} cllm_openai_tokenize_request;

cllm_status cllm_openai_parse_tokenize(const char *body, size_t len, const cllm_openai_limits *lim,
                                       cllm_openai_tokenize_request *out, cllm_openai_error *err);
void cllm_openai_tokenize_request_free(cllm_openai_tokenize_request *r);

/* vLLM POST /detokenize: {"tokens": [int, ...]}. */
typedef struct cllm_openai_detokenize_request {
    char *model;                 /* NULL if absent */
    int32_t *tokens;             /* (n_tokens), owned */
    size_t n_tokens;
} cllm_openai_detokenize_request;

cllm_status cllm_openai_parse_detokenize(const char *body, size_t len, const cllm_openai_limits *lim,
                                         cllm_openai_detokenize_request *out, cllm_openai_error *err);
void cllm_openai_detokenize_request_free(cllm_openai_detokenize_request *r);

/* ------------------------------------------------------------ responses */
typedef enum cllm_openai_finish_reason {
    CLLM_OPENAI_FINISH_NONE = 0,    /* still running: null */
    CLLM_OPENAI_FINISH_STOP = 1,    /* EOS, stop string or stop token: "stop" */
    CLLM_OPENAI_FINISH_LENGTH = 2,  /* max_tokens or context limit: "length" */
    CLLM_OPENAI_FINISH_TOOL_CALLS = 3, /* "tool_calls" */
    CLLM_OPENAI_FINISH_ABORT = 4,   /* aborted (vLLM): "abort" */
} cllm_openai_finish_reason;

/* "stop", "length", ... or NULL for NONE. */
const char *cllm_openai_finish_reason_name(cllm_openai_finish_reason r);

/* One alternative at a position (top_logprobs entry). token: the token's
 * decoded bytes (token_len); need not be valid UTF-8 (a byte-fallback piece):
 * JSON strings get U+FFFD for invalid bytes, chat `bytes` get the raw bytes. */
typedef struct cllm_openai_top_logprob {
    const char *token;           /* borrowed */
    size_t token_len;
    float logprob;               /* natural log; NaN -> null, -inf -> -9999.0 (as vLLM) */
} cllm_openai_top_logprob;

/* The logprob record of one sampled (or echoed prompt) token. */
typedef struct cllm_openai_token_logprob {
    const char *token;           /* borrowed */
    size_t token_len;
    float logprob;               /* NaN -> null (first echoed prompt token) */
    const cllm_openai_top_logprob *top; /* (n_top) borrowed, most likely first */
    size_t n_top;
    int64_t text_offset;         /* completions: byte offset of the token in the choice text */
} cllm_openai_token_logprob;

/* One choice of a response (borrowed view filled by the engine). */
/* One prompt position of vLLM's `prompt_logprobs`: {"<id>": {"logprob",
 * "rank", "decoded_token"}, ...}, the prompt token first, then the top-k
 * alternatives; n == 0 renders null (the first prompt token has none). */
typedef struct cllm_openai_plp_entry {
    int32_t id;
    float logprob;
    int32_t rank;                /* 1 = most likely; 0: unknown (outside the top-k) -> null */
    const char *token;           /* borrowed */
    size_t token_len;
} cllm_openai_plp_entry;

typedef struct cllm_openai_prompt_logprob {
    const cllm_openai_plp_entry *entries; /* (n) borrowed */
    size_t n;
} cllm_openai_prompt_logprob;

typedef struct cllm_openai_choice {
    uint32_t index;
    bool has_prompt_logprobs;    /* completions: "prompt_logprobs" (vLLM extra), else no key */
    const cllm_openai_prompt_logprob *prompt_logprobs; /* (n_prompt_logprobs) borrowed */
    size_t n_prompt_logprobs;
    const char *text;            /* completion text / message content (UTF-8), NULL -> null */
    size_t text_len;
    bool has_logprobs;           /* false -> "logprobs": null */
    const cllm_openai_token_logprob *logprobs; /* (n_logprobs) */
    size_t n_logprobs;
    const cllm_openai_tool_call *tool_calls; /* chat: (n_tool_calls) borrowed */
    size_t n_tool_calls;
    cllm_openai_finish_reason finish_reason;
} cllm_openai_choice;

typedef struct cllm_openai_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;   /* total_tokens is their sum */
} cllm_openai_usage;

typedef struct cllm_openai_response {
    const char *id;              /* "cmpl-..." / "chatcmpl-..." (cllm_openai_make_id) */
    const char *model;
    int64_t created;             /* unix seconds */
    const cllm_openai_choice *choices; /* (n_choices) */
    size_t n_choices;
    cllm_openai_usage usage;
    /* chat: vLLM's top-level "prompt_logprobs" when requested (else no key) */
    bool has_prompt_logprobs;
    const cllm_openai_prompt_logprob *prompt_logprobs; /* (n_prompt_logprobs) borrowed */
    size_t n_prompt_logprobs;
} cllm_openai_response;

/* Write prefix + 32 random hex digits ("cmpl-" / "chatcmpl-") into buf
 * (size >= strlen(prefix) + 33). Thread-safe. Returns buf. */
char *cllm_openai_make_id(const char *prefix, char *buf, size_t size);

/* Each format function returns a NUL-terminated JSON text (no trailing
 * newline), caller-owned (cllm_free), or NULL on out of memory. */

/* {"error": {"message", "type", "param", "code"}, "object": "error"} */
char *cllm_openai_format_error(const cllm_openai_error *err);
/* object "text_completion": choices [{text, index, logprobs {tokens,
 * token_logprobs, top_logprobs, text_offset} | null, finish_reason}], usage. */
char *cllm_openai_format_completion(const cllm_openai_response *r);
/* object "chat.completion": choices [{index, message {role:"assistant",
 * content, tool_calls?}, logprobs {content: [{token, logprob, bytes,
 * top_logprobs}]} | null, finish_reason}], usage. */
char *cllm_openai_format_chat_completion(const cllm_openai_response *r);

/* One streamed chunk (one choice). */
typedef struct cllm_openai_chunk {
    const char *id;
    const char *model;
    int64_t created;
    uint32_t index;
    bool first;                  /* chat: delta {"role":"assistant","content":""} */
    const char *text;            /* delta text; NULL: no content key (final chunk) */
    size_t text_len;
    bool has_logprobs;
    const cllm_openai_token_logprob *logprobs; /* (n_logprobs) */
    size_t n_logprobs;
    cllm_openai_finish_reason finish_reason; /* NONE -> null */
    bool include_usage;          /* stream_options.include_usage: adds "usage": null */
    /* chat: delta.tool_calls [{index, id, type:"function", function:{name,
     * arguments}}] with indices tool_call_index, +1, ... (server/tool_parser.h) */
    const cllm_openai_tool_call *tool_calls; /* (n_tool_calls) borrowed */
    size_t n_tool_calls;
    uint32_t tool_call_index;
} cllm_openai_chunk;

/* object "text_completion" chunk: choices [{text, index, logprobs, finish_reason}]. */
char *cllm_openai_format_completion_chunk(const cllm_openai_chunk *c);
/* object "chat.completion.chunk": choices [{index, delta, logprobs, finish_reason}]. */
char *cllm_openai_format_chat_chunk(const cllm_openai_chunk *c);
/* The include_usage chunk: choices [] and usage. endpoint picks the object name. */
char *cllm_openai_format_usage_chunk(cllm_openai_endpoint endpoint, const char *id, const char *model,
                                     int64_t created, cllm_openai_usage usage);

/* GET /v1/models entry (vLLM's ModelCard). */
typedef struct cllm_openai_model_card {
    const char *id;              /* served model name */
    const char *root;            /* the checkpoint (ORG/NAME or path), NULL -> id */
    int64_t created;
    int64_t max_model_len;       /* 0 -> omitted */
} cllm_openai_model_card;

/* {"object":"list","data":[{"id","object":"model","created","owned_by":"cllm","root","parent":null,"max_model_len"}]} */
char *cllm_openai_format_models(const cllm_openai_model_card *cards, size_t n);
/* {"count", "max_model_len", "tokens": [...], "token_strs": [...] | null}.
 * token_strs: (n) borrowed strings or NULL. */
char *cllm_openai_format_tokenize(const int32_t *tokens, size_t n, int64_t max_model_len,
                                  const char *const *token_strs);
/* {"prompt": "..."} (text_len bytes, invalid UTF-8 replaced by U+FFFD). */
char *cllm_openai_format_detokenize(const char *text, size_t text_len);

#ifdef __cplusplus
}
#endif
#endif
