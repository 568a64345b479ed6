/* libFuzzer target for the chat template engine.
 * Input layout: byte 0 picks the context (low 2 bits: one of three fixed
 * chat contexts, or 3 = the part after the first NUL byte is parsed as a JSON
 * context); the rest (up to the NUL) is the template source. Every input must
 * compile or fail cleanly, and render or fail cleanly within small limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

static const char *const CONTEXTS[] = {
    "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"add_generation_prompt\":true,"
    "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}",
    "{\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":\"h\\u00e9 \\ud83c\\udf0d\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call12345\",\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":[1,2.5,null,true]}}}]},{\"role\":\"tool\",\"tool_call_id\":"
    "\"call12345\",\"content\":\"42\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
    "\"add_generation_prompt\":false,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}",
    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"part\"},{\"type\":\"image\"}]},"
    "{\"role\":\"assistant\",\"content\":\"<think>\\nx\\n</think>\\n\\ny\"}],\"xs\":[3,1,2],\"n\":-7,\"f\":1e300}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    int mode = data[0] & 3;
    const char *body = (const char *)data + 1;
    size_t blen = size - 1;
    const char *nul = memchr(body, 0, blen);
    size_t tlen = nul ? (size_t)(nul - body) : blen;
    char *src = malloc(tlen + 1);
    if (!src) return 0;
    memcpy(src, body, tlen);
    src[tlen] = 0;
    json_t *ctx;
    if (mode == 3) {
        ctx = nul ? json_loadb(nul + 1, blen - tlen - 1, JSON_DECODE_ANY, NULL) : NULL;
        if (!ctx) ctx = json_object();
    } else ctx = json_loads(CONTEXTS[mode], 0, NULL);
    cllm_chat_template *t = NULL;
    if (cllm_chat_template_create(src, &t) == 0) {
        cllm_chat_template_limits lim = cllm_chat_template_default_limits();
        lim.max_output_bytes = 1 << 20;
        lim.max_memory_bytes = 64u << 20;
        lim.max_steps = 200000;
        char *out = NULL;
        int raised;
        if (cllm_chat_template_render_ex(t, ctx, &lim, &out, &raised) == 0) free(out);
        cllm_chat_template_destroy(t);
    }
    json_decref(ctx);
    free(src);
    return 0;
}
