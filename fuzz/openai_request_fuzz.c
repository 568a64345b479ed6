/* libFuzzer target for the untrusted-input parsers of `cllm serve`: the
 * OpenAI request parsers (completions, chat, tokenize, detokenize) and the
 * YAML registry loader. The first byte picks the parser; the rest is the body.
 * Successful parses are also formatted back (error body, detokenize) and
 * freed, so leaks and bad frees surface under ASan.
 *
 * Build: cmake -S . -B build-fuzz -DCLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCLLM_CUDA=OFF
 *        cmake --build build-fuzz --target openai_request_fuzz
 * Run:   build-fuzz/fuzz/openai_request_fuzz -max_total_time=120 -max_len=4096 fuzz/corpus */
#include "server/openai_protocol.h"
#include "server/registry.h"
#include "server/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_request(const cllm_openai_request *r) {
    /* touch everything the parser promised, so ASan sees bad pointers/lengths */
    for (size_t i = 0; i < r->n_prompts; i++) {
        const cllm_openai_prompt *p = &r->prompts[i];
        if (p->is_tokens) { for (size_t k = 0; k < p->n_tokens; k++) if (p->token_ids[k] < 0) abort(); }
        else if (strlen(p->text) > p->text_len) abort();
    }
    for (size_t i = 0; i < r->n_messages; i++) {
        const cllm_openai_message *m = &r->messages[i];
        if (m->content && strlen(m->content) > m->content_len) abort();
        for (size_t k = 0; k < m->n_tool_calls; k++) if (!m->tool_calls[k].name || !m->tool_calls[k].arguments) abort();
    }
    if (r->n < 1 || r->temperature < 0 || r->temperature > 2 || !(r->top_p > 0)) abort();
    if (r->n_prompts) {
        char *s = cllm_openai_format_detokenize(r->prompts[0].text ? r->prompts[0].text : "", r->prompts[0].text_len);
        free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    cllm_openai_limits lim = cllm_openai_default_limits();
    lim.vocab_size = (data[0] & 0x80) ? 1000 : 0;
    lim.max_body_bytes = 1 << 16;
    cllm_openai_error err;
    cllm_status st = CLLM_OK;
    switch (data[0] % 5) {
    case 0:
    case 1: {
        cllm_openai_request r;
        st = data[0] % 5 == 0 ? cllm_openai_parse_completion(body, len, &lim, &r, &err)
                              : cllm_openai_parse_chat(body, len, &lim, &r, &err);
        if (st == CLLM_OK) check_request(&r);
        cllm_openai_request_free(&r);
        break;
    }
    case 2: {
        cllm_openai_tokenize_request r;
        st = cllm_openai_parse_tokenize(body, len, &lim, &r, &err);
        cllm_openai_tokenize_request_free(&r);
        break;
    }
    case 3: {
        cllm_openai_detokenize_request r;
        st = cllm_openai_parse_detokenize(body, len, &lim, &r, &err);
        if (st == CLLM_OK) {
            char *s = cllm_openai_format_tokenize(r.tokens, r.n_tokens, 4096, NULL);
            if (!s) abort();
            free(s);
        }
        cllm_openai_detokenize_request_free(&r);
        break;
    }
    case 4: {
        cllm_registry *reg;
        if (cllm_registry_load_string(body, len, "fuzz.yaml", &reg) == CLLM_OK) {
            for (size_t i = 0; i < cllm_registry_count(reg); i++) {
                char *cmd;
                if (cllm_registry_command_line(cllm_registry_get(reg, i), &cmd) == CLLM_OK) free(cmd);
            }
            const cllm_registry_entry *e;
            cllm_registry_lookup(reg, "x", &e);
            cllm_registry_destroy(reg);
        }
        return 0;
    }
    }
    if (st != CLLM_OK) {
        if (err.http_status != 400 && err.http_status != 413 && err.http_status != 500) abort();
        if (!err.message[0]) abort();
        char *s = cllm_sse_frame_take(cllm_openai_format_error(&err), NULL);
        if (!s) abort(); /* an error body must always render and frame (one line) */
        free(s);
    }
    return 0;
}
