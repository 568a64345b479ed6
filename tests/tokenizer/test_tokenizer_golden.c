/* Golden test: every case of shared/golden/tokenizer_dev.json (made with
 * Hugging Face tokenizers 0.23) for llama3, llama2, mistral-v0.3, minimind:
 * ids (add_special_tokens=False), ids_with_special (True) and decoded
 * (decode(ids, skip_special_tokens=False)); plus the stories260K prompt ids of
 * shared/models/stories260K/reference_greedy.json (with BOS).
 * usage: test_tokenizer_golden SHARED_DIR */
#include "cllm.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail, g_pass, g_printed;

static void print_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s [", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, "%s%d", i ? ", " : "", v[i]);
    fprintf(stderr, "%s]\n", n > 40 ? ", ..." : "");
}

static bool same_ids(const int32_t *got, size_t n, const json_t *exp) {
    if (json_array_size(exp) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(exp, i)) != got[i]) return false;
    return true;
}

static void fail_ids(const char *name, const char *text, const char *what, const int32_t *got, size_t n, const json_t *exp) {
    g_fail++;
    if (g_printed++ >= 10) return;
    fprintf(stderr, "MISMATCH %s %s for \"%.60s\"\n", name, what, text);
    print_ids("got     ", got, n);
    char *e = json_dumps(exp, JSON_COMPACT);
    fprintf(stderr, "    expected %.300s\n", e ? e : "?");
    free(e);
}

static void check_case(const cllm_tokenizer *tok, const char *name, const json_t *c) {
    const json_t *jt = json_object_get(c, "text");
    const char *text = json_string_value(jt);
    size_t len = json_string_length(jt);
    int32_t *ids = NULL, *ids2 = NULL;
    size_t n = 0, n2 = 0;
    char *dec = NULL;
    size_t dlen = 0;
    bool ok = true;
    if (cllm_tokenizer_encode(tok, text, len, false, &ids, &n) != CLLM_OK ||
        cllm_tokenizer_encode(tok, text, len, true, &ids2, &n2) != CLLM_OK) {
        fprintf(stderr, "FAIL %s encode \"%.60s\": %s\n", name, text, cllm_last_error());
        g_fail++;
        cllm_free(ids);
        return;
    }
    if (!same_ids(ids, n, json_object_get(c, "ids"))) { ok = false; fail_ids(name, text, "ids", ids, n, json_object_get(c, "ids")); }
    if (!same_ids(ids2, n2, json_object_get(c, "ids_with_special"))) {
        ok = false;
        fail_ids(name, text, "ids_with_special", ids2, n2, json_object_get(c, "ids_with_special"));
    }
    /* decoded is decode(golden ids) keeping special tokens. */
    const json_t *gid = json_object_get(c, "ids");
    int32_t gv[4096];
    size_t gn = json_array_size(gid) < 4096 ? json_array_size(gid) : 4096;
    for (size_t i = 0; i < gn; i++) gv[i] = (int32_t)json_integer_value(json_array_get(gid, i));
    const json_t *jd = json_object_get(c, "decoded");
    if (cllm_tokenizer_decode(tok, gv, gn, false, &dec, &dlen) != CLLM_OK) {
        ok = false;
        g_fail++;
        fprintf(stderr, "FAIL %s decode \"%.60s\": %s\n", name, text, cllm_last_error());
    } else if (dlen != json_string_length(jd) || memcmp(dec, json_string_value(jd), dlen)) {
        ok = false;
        g_fail++;
        if (g_printed++ < 10)
            fprintf(stderr, "MISMATCH %s decoded for \"%.60s\"\n    got      \"%s\"\n    expected \"%s\"\n", name, text, dec,
                    json_string_value(jd));
    }
    if (ok) g_pass++;
    cllm_free(ids);
    cllm_free(ids2);
    cllm_free(dec);
}

static int check_stories(const char *shared) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K", shared);
    cllm_tokenizer *tok = NULL;
    if (cllm_tokenizer_load(path, &tok) != CLLM_OK) { fprintf(stderr, "FAIL load %s: %s\n", path, cllm_last_error()); return 1; }
    snprintf(path, sizeof path, "%s/models/stories260K/reference_greedy.json", shared);
    json_error_t err;
    json_t *ref = json_load_file(path, 0, &err);
    if (!ref) { fprintf(stderr, "FAIL cannot read %s\n", path); cllm_tokenizer_destroy(tok); return 1; }
    const json_t *cases = json_object_get(ref, "cases");
    size_t i;
    json_t *c;
    int bad = 0;
    json_array_foreach(cases, i, c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        int32_t *ids = NULL;
        size_t n = 0;
        if (cllm_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids, &n) != CLLM_OK ||
            !same_ids(ids, n, json_object_get(c, "prompt_ids"))) {
            bad++;
            fprintf(stderr, "MISMATCH stories260K prompt \"%s\"\n", prompt);
            if (ids) print_ids("got", ids, n);
        } else {
            g_pass++;
        }
        cllm_free(ids);
    }
    if (cllm_tokenizer_bos_id(tok) != 1) { bad++; fprintf(stderr, "FAIL stories260K bos_id %d != 1\n", cllm_tokenizer_bos_id(tok)); }
    json_decref(ref);
    cllm_tokenizer_destroy(tok);
    g_fail += bad;
    return bad;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s SHARED_DIR\n", argv[0]); return 2; }
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/tokenizer_dev.json", argv[1]);
    json_error_t err;
    json_t *golden = json_load_file(path, 0, &err);
    if (!golden) { fprintf(stderr, "cannot read %s: %s\n", path, err.text); return 1; }
    const char *names[] = {"llama3", "llama2", "mistral-v0.3", "minimind"};
    for (int t = 0; t < 4; t++) {
        const json_t *cases = json_object_get(golden, names[t]);
        if (!json_array_size(cases)) { fprintf(stderr, "FAIL no golden cases for %s\n", names[t]); g_fail++; continue; }
        snprintf(path, sizeof path, "%s/tokenizers/%s", argv[1], names[t]);
        cllm_tokenizer *tok = NULL;
        if (cllm_tokenizer_load(path, &tok) != CLLM_OK) {
            fprintf(stderr, "FAIL load %s: %s\n", path, cllm_last_error());
            g_fail++;
            continue;
        }
        size_t i;
        json_t *c;
        json_array_foreach(cases, i, c) check_case(tok, names[t], c);
        cllm_tokenizer_destroy(tok);
    }
    json_decref(golden);
    check_stories(argv[1]);
    printf("golden: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
