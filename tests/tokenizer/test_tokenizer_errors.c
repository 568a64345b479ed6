/* Bad input: missing path, malformed tokenizer.json, unsupported types,
 * invalid UTF-8, out-of-range ids -> the right status and a message naming
 * the problem; never a crash.  usage: test_tokenizer_errors TMPDIR */
#include "cllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int g_fail;

static void expect(const char *what, cllm_status got, cllm_status want, const char *needle) {
    const char *msg = cllm_last_error();
    if (got != want || (needle && !strstr(msg, needle))) {
        g_fail++;
        fprintf(stderr, "FAIL %s: got %s \"%s\", want %s containing \"%s\"\n", what, cllm_status_str(got), msg,
                cllm_status_str(want), needle ? needle : "");
    } else {
        printf("ok   %s: %s: %s\n", what, cllm_status_str(got), msg);
    }
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
}

static cllm_status load_text(const char *dir, const char *name, const char *json) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    write_file(path, json);
    cllm_tokenizer *tok = (cllm_tokenizer *)0x1;
    cllm_status st = cllm_tokenizer_load(path, &tok);
    if (st != CLLM_OK && tok != NULL) { g_fail++; fprintf(stderr, "FAIL %s: *out not NULL on failure\n", name); }
    cllm_tokenizer_destroy(st == CLLM_OK ? tok : NULL);
    return st;
}

#define MINI_VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}"

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    mkdir(dir, 0755);
    cllm_tokenizer *tok = NULL;
    expect("missing path", cllm_tokenizer_load("/nonexistent/cllm-model", &tok), CLLM_ERR_IO, "/nonexistent/cllm-model");
    char empty[4200];
    snprintf(empty, sizeof empty, "%s/empty_dir", dir);
    mkdir(empty, 0755);
    expect("dir without tokenizer.json", cllm_tokenizer_load(empty, &tok), CLLM_ERR_IO, "tokenizer.json");
    expect("truncated JSON", load_text(dir, "trunc", "{\"model\": {\"type\": \"BPE\", "), CLLM_ERR_FORMAT, "not valid JSON");
    expect("top level not an object", load_text(dir, "arr", "[1, 2]"), CLLM_ERR_FORMAT, "object");
    expect("no model", load_text(dir, "nomodel", "{\"normalizer\": null}"), CLLM_ERR_FORMAT, "model");
    expect("Unigram model", load_text(dir, "unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}"),
           CLLM_ERR_UNSUPPORTED, "Unigram");
    expect("WordPiece model", load_text(dir, "wordpiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}"),
           CLLM_ERR_UNSUPPORTED, "WordPiece");
    expect("unknown normalizer", load_text(dir, "norm", "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": "
           "{\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"a b\"]}}"), CLLM_ERR_UNSUPPORTED, "BertNormalizer");
    expect("unknown pre_tokenizer", load_text(dir, "pretok", "{\"pre_tokenizer\": {\"type\": \"CharDelimiterSplit\"}, "
           "\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": []}}"), CLLM_ERR_UNSUPPORTED, "CharDelimiterSplit");
    expect("unknown decoder", load_text(dir, "dec", "{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": "
           "{\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": []}}"), CLLM_ERR_UNSUPPORTED, "WordPiece");
    expect("bad regex", load_text(dir, "regex", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, "
           "\"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": []}}"),
           CLLM_ERR_UNSUPPORTED, "(a");
    expect("merge out of vocab", load_text(dir, "merge", "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"a c\"]}}"),
           CLLM_ERR_FORMAT, "merge 0");
    expect("vocab not an object", load_text(dir, "vocab", "{\"model\": {\"type\": \"BPE\", \"vocab\": [1], \"merges\": []}}"),
           CLLM_ERR_FORMAT, "vocab");
    expect("bad added token", load_text(dir, "added", "{\"added_tokens\": [{\"id\": -3}], \"model\": {\"type\": \"BPE\", "
           MINI_VOCAB ", \"merges\": []}}"), CLLM_ERR_FORMAT, "added_tokens[0]");

    /* A valid tiny tokenizer: encode/decode argument errors. */
    char path[4200];
    snprintf(path, sizeof path, "%s/ok.json", dir);
    write_file(path, "{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"a b\"]}}");
    cllm_status st = cllm_tokenizer_load(path, &tok);
    expect("valid tiny tokenizer", st, CLLM_OK, NULL);
    if (st == CLLM_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        expect("encode invalid UTF-8", cllm_tokenizer_encode(tok, "ab\xC3(", 4, false, &ids, &n), CLLM_ERR_INVALID_ARG, "offset 2");
        expect("encode surrogate", cllm_tokenizer_encode(tok, "\xED\xA0\x80", 3, false, &ids, &n), CLLM_ERR_INVALID_ARG, "UTF-8");
        expect("encode ok", cllm_tokenizer_encode(tok, "abab", 4, true, &ids, &n), CLLM_OK, NULL);
        if (n != 2 || ids[0] != 2 || ids[1] != 2) { g_fail++; fprintf(stderr, "FAIL tiny BPE: \"abab\" should be [2, 2]\n"); }
        cllm_free(ids);
        /* Hugging Face decode skips ids past the vocabulary (tokenizers
         * 0.2x: decode([300, vocab + 5, 301]) == decode([300, 301])): a model's
         * embedding may be larger than its tokenizer and the sampler may pick
         * such an id. Negative ids are errors. */
        int32_t past[] = {0, 7, 0}, good[] = {0, 0};
        char *text = NULL, *text2 = NULL;
        expect("decode id past the vocabulary", cllm_tokenizer_decode(tok, past, 3, false, &text, NULL), CLLM_OK, NULL);
        expect("decode", cllm_tokenizer_decode(tok, good, 2, false, &text2, NULL), CLLM_OK, NULL);
        if (!text || !text2 || strcmp(text, text2)) {
            g_fail++;
            fprintf(stderr, "FAIL decode([0, 7, 0]) = '%s', want decode([0, 0]) = '%s'\n", text ? text : "", text2 ? text2 : "");
        }
        cllm_free(text), cllm_free(text2), text = NULL;
        int32_t neg[] = {-1};
        expect("decode negative id", cllm_tokenizer_decode(tok, neg, 1, false, &text, NULL), CLLM_ERR_INVALID_ARG, "-1");
        cllm_detokenizer *d = NULL;
        expect("detokenizer negative prompt id", cllm_detokenizer_create(tok, neg, 1, false, &d), CLLM_ERR_INVALID_ARG, "-1");
        expect("detokenizer", cllm_detokenizer_create(tok, good, 2, false, &d), CLLM_OK, NULL);
        if (d) {
            char *delta = NULL;
            size_t dl = 99;
            expect("detokenizer step past the vocabulary", cllm_detokenizer_step(d, 7, &delta, &dl), CLLM_OK, NULL);
            if (dl != 0) { g_fail++; fprintf(stderr, "FAIL an id past the vocabulary gave %zu bytes of text\n", dl); }
            cllm_free(delta);
            expect("detokenizer step negative", cllm_detokenizer_step(d, -3, &delta, &dl), CLLM_ERR_INVALID_ARG, "-3");
            cllm_detokenizer_destroy(d);
            d = NULL;
        }
        if (cllm_tokenizer_token_to_id(tok, "zzz") != -1 || cllm_tokenizer_id_to_token(tok, 99) != NULL) {
            g_fail++;
            fprintf(stderr, "FAIL unknown token lookups should give -1 / NULL\n");
        }
        cllm_tokenizer_destroy(tok);
    }
    cllm_tokenizer_destroy(NULL);
    printf("errors: %d failures\n", g_fail);
    return g_fail ? 1 : 0;
}
