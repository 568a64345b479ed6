/* Property test of the incremental detokenizer (vLLM's prefix/read-offset
 * algorithm) with llama3, llama2, mistral-v0.3 and minimind:
 *  - every delta is valid UTF-8 (never splits a character);
 *  - for normal text (the strings of tokenizer_dev.json with BOS, split at
 *    every prompt length) and for random id streams,
 *    concat(deltas) + flush == decode(all) - decode(prompt) whenever
 *    decode(prompt) is a prefix of decode(all) (it is not when the prompt
 *    ends inside a UTF-8 character, where decode(prompt) ends in U+FFFD).
 * usage: test_detokenizer SHARED_DIR */
#include "cllm.h"
#include "tokenizer/strbuf.h"
#include "tokenizer/unicode.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail, g_checked;

/* Stream ids[n_prompt:] through a detokenizer; compare with decode. */
static void check_stream(const cllm_tokenizer *tok, const char *name, const int32_t *ids, size_t n, size_t n_prompt,
                         bool skip, bool must_match) {
    cllm_detokenizer *d = NULL;
    if (cllm_detokenizer_create(tok, ids, n_prompt, skip, &d) != CLLM_OK) {
        g_fail++;
        fprintf(stderr, "FAIL %s create: %s\n", name, cllm_last_error());
        return;
    }
    cllm_strbuf acc = {0};
    for (size_t i = n_prompt; i <= n; i++) {
        char *delta = NULL;
        size_t len = 0;
        cllm_status st = i < n ? cllm_detokenizer_step(d, ids[i], &delta, &len) : cllm_detokenizer_flush(d, &delta, &len);
        if (st != CLLM_OK) { g_fail++; fprintf(stderr, "FAIL %s step: %s\n", name, cllm_last_error()); break; }
        if (!cllm_utf8_valid(delta, len)) { g_fail++; fprintf(stderr, "FAIL %s: delta splits a UTF-8 character\n", name); }
        cllm_strbuf_append(&acc, delta, len);
        cllm_free(delta);
    }
    cllm_detokenizer_destroy(d);
    char *all = NULL, *pre = NULL;
    size_t na = 0, np = 0;
    cllm_tokenizer_decode(tok, ids, n, skip, &all, &na);
    cllm_tokenizer_decode(tok, ids, n_prompt, skip, &pre, &np);
    bool prefix = all && pre && np <= na && !memcmp(all, pre, np);
    if (prefix || must_match) {
        g_checked++;
        if (!prefix || acc.len != na - np || memcmp(acc.p ? acc.p : "", all + np, acc.len)) {
            if (g_fail++ < 10)
                fprintf(stderr, "MISMATCH %s (prompt %zu of %zu ids, skip=%d)\n    deltas \"%s\"\n    expect \"%s\"\n", name,
                        n_prompt, n, skip, acc.p ? acc.p : "", prefix ? all + np : "(decode(prompt) not a prefix)");
        }
    }
    cllm_strbuf_free(&acc);
    cllm_free(all);
    cllm_free(pre);
}

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(void) { g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17; return (uint32_t)g_rng; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SHARED_DIR\n", argv[0]); return 2; }
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/tokenizer_dev.json", argv[1]);
    json_error_t err;
    json_t *golden = json_load_file(path, 0, &err);
    if (!golden) { fprintf(stderr, "cannot read %s\n", path); return 1; }
    const char *names[] = {"llama3", "llama2", "mistral-v0.3", "minimind"};
    int random_streams = getenv("CLLM_DETOK_STREAMS") ? atoi(getenv("CLLM_DETOK_STREAMS")) : 300;
    for (int t = 0; t < 4; t++) {
        snprintf(path, sizeof path, "%s/tokenizers/%s", argv[1], names[t]);
        cllm_tokenizer *tok = NULL;
        if (cllm_tokenizer_load(path, &tok) != CLLM_OK) { fprintf(stderr, "FAIL load: %s\n", cllm_last_error()); g_fail++; continue; }
        /* Normal text: every prompt split of every golden string, with BOS. */
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(golden, names[t]), i, c) {
            const json_t *jt = json_object_get(c, "text");
            int32_t *ids = NULL;
            size_t n = 0;
            if (cllm_tokenizer_encode(tok, json_string_value(jt), json_string_length(jt), true, &ids, &n) != CLLM_OK) { g_fail++; continue; }
            for (size_t k = 0; k <= n; k += (n > 40 ? 7 : 1)) {
                check_stream(tok, names[t], ids, n, k, false, false);
                check_stream(tok, names[t], ids, n, k, true, false);
            }
            cllm_free(ids);
        }
        /* Random id streams. */
        int32_t v = cllm_tokenizer_vocab_size(tok);
        for (int s = 0; s < random_streams; s++) {
            int32_t ids[48];
            size_t n = 1 + rnd() % 48, np = rnd() % (n + 1);
            for (size_t k = 0; k < n; k++) ids[k] = (int32_t)(rnd() % (uint32_t)v);
            check_stream(tok, names[t], ids, n, np, s & 1, false);
        }
        cllm_tokenizer_destroy(tok);
    }
    json_decref(golden);
    printf("detokenizer: %d streams compared, %d failures\n", g_checked, g_fail);
    return g_fail ? 1 : 0;
}
