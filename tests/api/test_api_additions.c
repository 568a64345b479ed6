/* The public functions added for the Python bindings (include/cllm.h):
 * cllm_tokenizer_chat_template, cllm_tokenizer_apply_chat_template and
 * cllm_request_params_check: results and every documented error status.
 * usage: test_api_additions SHARED_DIR STORIES_DIR */
#include "cllm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int g_fail;

#define CHECK(cond, ...)                                                                                    \
    do {                                                                                                    \
        if (!(cond)) {                                                                                      \
            g_fail++;                                                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                          \
            fprintf(stderr, __VA_ARGS__);                                                                   \
            fprintf(stderr, " (last error: %s)\n", cllm_last_error());                                      \
        }                                                                                                   \
    } while (0)

/* Render ctx with tok (template src, NULL = the tokenizer's); expect status
 * want and, on success, exactly `expect`; on failure a message containing it. */
static void render(const cllm_tokenizer *tok, const char *src, const char *ctx, cllm_status want, const char *expect) {
    char *text = (char *)0x1;
    size_t len = 12345;
    cllm_status st = cllm_tokenizer_apply_chat_template(tok, src, ctx, &text, &len);
    CHECK(st == want, "render %s: got %s, want %s", ctx, cllm_status_str(st), cllm_status_str(want));
    if (st == CLLM_OK) {
        CHECK(text && strcmp(text, expect) == 0, "render %s:\n got  [%s]\n want [%s]", ctx, text ? text : "(null)", expect);
        CHECK(text && len == strlen(text), "len %zu != strlen", len);
    } else {
        CHECK(text == NULL && len == 0, "outputs not cleared on failure");
        CHECK(strstr(cllm_last_error(), expect) != NULL, "message [%s] lacks [%s]", cllm_last_error(), expect);
    }
    cllm_free(st == CLLM_OK ? text : NULL);
}

static void chat_tests(const char *shared, const char *stories) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizers/llama3", shared);
    cllm_tokenizer *l3 = NULL, *st = NULL;
    CHECK(cllm_tokenizer_load(path, &l3) == CLLM_OK, "load %s", path);
    CHECK(cllm_tokenizer_load(stories, &st) == CLLM_OK, "load %s", stories);
    if (!l3 || !st) return;
    const char *src = cllm_tokenizer_chat_template(l3);
    CHECK(src && strstr(src, "<|start_header_id|>"), "llama3 has its chat template");
    CHECK(cllm_tokenizer_chat_template(st) == NULL, "stories260K has no chat template");

    const char *msgs = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi there \"}]";
    char ctx[512];
    /* the tokenizer's template, bos_token filled from tokenizer_config.json */
    snprintf(ctx, sizeof ctx, "%s}", msgs);
    render(l3, NULL, ctx, CLLM_OK, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>");
    snprintf(ctx, sizeof ctx, "%s, \"add_generation_prompt\": true}", msgs);
    render(l3, NULL, ctx, CLLM_OK,
           "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* a caller's bos_token wins; an explicit template replaces the tokenizer's */
    snprintf(ctx, sizeof ctx, "%s, \"bos_token\": \"<B>\"}", msgs);
    render(l3, NULL, ctx, CLLM_OK, "<B><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>");
    const char *simple = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}{{ extra }}";
    snprintf(ctx, sizeof ctx, "%s, \"add_generation_prompt\": true, \"extra\": \"!\"}", msgs);
    render(st, simple, ctx, CLLM_OK, "<s>user: Hi there \nassistant:!");
    /* errors */
    snprintf(ctx, sizeof ctx, "%s}", msgs);
    render(st, NULL, ctx, CLLM_ERR_NOT_FOUND, "no chat template");
    render(l3, NULL, "{\"messages\": [", CLLM_ERR_FORMAT, "not valid JSON");
    render(l3, NULL, "[1, 2]", CLLM_ERR_FORMAT, "\"messages\" list");
    render(l3, NULL, "{\"messages\": 3}", CLLM_ERR_FORMAT, "\"messages\" list");
    render(l3, "{% if %}", ctx, CLLM_ERR_FORMAT, "syntax error");
    render(l3, "{{ raise_exception('roles must alternate') }}", ctx, CLLM_ERR_INVALID_ARG, "roles must alternate");
    char *text = NULL;
    CHECK(cllm_tokenizer_apply_chat_template(NULL, NULL, ctx, &text, NULL) == CLLM_ERR_INVALID_ARG, "NULL tokenizer");
    CHECK(cllm_tokenizer_apply_chat_template(l3, NULL, ctx, &text, NULL) == CLLM_OK && text, "len may be NULL");
    cllm_free(text);
    cllm_tokenizer_destroy(l3);
    cllm_tokenizer_destroy(st);
}

/* One bad field -> CLLM_ERR_INVALID_ARG naming it; good values -> CLLM_OK. */
static void params_tests(void) {
    cllm_request_params d = cllm_request_default_params();
    CHECK(cllm_request_params_check(&d) == CLLM_OK, "defaults are valid");
    CHECK(cllm_request_params_check(NULL) == CLLM_ERR_INVALID_ARG, "NULL");
    struct { const char *needle; cllm_request_params p; } bad[16];
    int nb = 0;
#define BAD(field, value, what)                                                                           \
    do { bad[nb].p = d; bad[nb].p.field = value; bad[nb].needle = what; nb++; } while (0)
    BAD(n, 0, "n must be");
    BAD(n, 257, "n must be");
    BAD(temperature, -0.5f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(top_p, 0.0f, "top_p");
    BAD(top_p, 1.5f, "top_p");
    BAD(min_p, 2.0f, "min_p");
    BAD(repetition_penalty, 0.0f, "repetition_penalty");
    BAD(presence_penalty, 3.0f, "presence_penalty");
    BAD(frequency_penalty, -2.5f, "frequency_penalty");
    BAD(min_tokens, -1, "min_tokens");
    BAD(logprobs, 21, "logprobs");
    BAD(logprobs, -2, "logprobs");
    BAD(prompt_logprobs, 21, "prompt_logprobs");
    for (int i = 0; i < nb; i++) {
        cllm_status s = cllm_request_params_check(&bad[i].p);
        CHECK(s == CLLM_ERR_INVALID_ARG && strstr(cllm_last_error(), bad[i].needle), "bad case %d (%s): %s", i,
              bad[i].needle, cllm_status_str(s));
    }
    cllm_request_params p = d;
    p.max_tokens = 4;
    p.min_tokens = 5;
    CHECK(cllm_request_params_check(&p) == CLLM_ERR_INVALID_ARG && strstr(cllm_last_error(), "min_tokens"),
          "min_tokens > max_tokens");
    p.max_tokens = 0; /* no limit: min_tokens is then free */
    CHECK(cllm_request_params_check(&p) == CLLM_OK, "max_tokens 0 = no limit");
    const char *empty[] = {"ok", ""};
    p = d;
    p.stop = empty;
    p.num_stop = 2;
    CHECK(cllm_request_params_check(&p) == CLLM_ERR_INVALID_ARG && strstr(cllm_last_error(), "stop[1]"), "empty stop");
    p.num_stop = 1;
    p.logprobs = 20;
    p.prompt_logprobs = 0;
    p.n = 256;
    CHECK(cllm_request_params_check(&p) == CLLM_OK, "edge values valid");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SHARED_DIR STORIES_DIR\n", argv[0]);
        return 2;
    }
    chat_tests(argv[1], argv[2]);
    params_tests();
    if (g_fail) {
        fprintf(stderr, "%d failure(s)\n", g_fail);
        return 1;
    }
    printf("all API-addition checks passed\n");
    return 0;
}
