/* Server-sent events framing for OpenAI streaming responses.
 *
 * OpenAI (and vLLM) stream each chunk as one event "data: <json>\n\n" and end
 * the stream with "data: [DONE]\n\n" (WHATWG HTML "Server-sent events";
 * OpenAI API reference, "stream"). The JSON must hold no newline (the
 * cllm_openai_format_* functions emit compact JSON).
 */
#ifndef CLLM_SERVER_SSE_H
#define CLLM_SERVER_SSE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The stream terminator event. */
#define CLLM_SSE_DONE "data: [DONE]\n\n"

/* Frame a JSON text (len bytes) as "data: <json>\n\n". Returns a
 * NUL-terminated caller-owned string (cllm_free) and its length in
 * *out_len (may be NULL), or NULL on out of memory or when json holds a
 * '\n' or '\r' (which would break the event framing). */
char *cllm_sse_frame(const char *json, size_t len, size_t *out_len);

/* cllm_sse_frame(json) then free(json): convenient with the format
 * functions (cllm_sse_frame_take(cllm_openai_format_chat_chunk(&c), &n)).
 * json may be NULL (returns NULL). */
char *cllm_sse_frame_take(char *json, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
