/* Server-sent events framing (see sse.h). */
#include "server/sse.h"

#include <stdlib.h>
#include <string.h>

char *cllm_sse_frame(const char *json, size_t len, size_t *out_len) {
    if (!json || memchr(json, '\n', len) || memchr(json, '\r', len)) return NULL;
    size_t n = 6 + len + 2;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, "data: ", 6);
    memcpy(s + 6, json, len);
    memcpy(s + 6 + len, "\n\n", 3);
    if (out_len) *out_len = n;
    return s;
}

char *cllm_sse_frame_take(char *json, size_t *out_len) {
    if (!json) return NULL;
    char *s = cllm_sse_frame(json, strlen(json), out_len);
    free(json);
    return s;
}
