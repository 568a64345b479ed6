/* Tokenizer throughput: encode ~10 MB of text with each tokenizer and print
 * MB/s (median of several runs after one warm-up), as a table and as JSON.
 *
 * usage: bench_tokenizer [--text FILE] [--mb N] [--runs R] TOKENIZER_DIR...
 * The text is FILE (default: a built-in mixed English/code/unicode corpus)
 * repeated up to N MB (default 10). Ceiling for comparison: memcpy bandwidth
 * of the same buffer (printed), which no tokenizer approaches. */
#include "cllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char CORPUS[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. "
    "One day, she saw a big, red ball in the park.\n\"Can I play with it?\" she asked her mom.\n"
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"
    "for (int i = 0; i < 1024; ++i) { sum += a[i] * b[i]; }  // dot product\n"
    "naïve café résumé façade — Straße über; 日本語のテキストと漢字、中文分词测试：你好，世界！\n"
    "Привет, как дела? مرحبا بالعالم 한국어 문장입니다 😀🚀🔥 👩‍💻 3.14159 1234567 0x1F\n"
    "The quick brown fox jumps over the lazy dog. I'm sure you'll see they're right; we've done it.\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
    fclose(f);
    if (p) { p[n] = 0; *len = (size_t)n; }
    return p;
}

int main(int argc, char **argv) {
    const char *text_path = NULL;
    double mb = 10;
    int runs = 5, first_tok = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (argv[i][0] == '-') { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
        else { first_tok = i; break; }
    }
    if (first_tok >= argc || runs < 1 || runs > 100 || mb <= 0) {
        fprintf(stderr, "usage: %s [--text FILE] [--mb N] [--runs R] TOKENIZER_DIR...\n", argv[0]);
        return 2;
    }
    size_t seed_len = sizeof CORPUS - 1;
    char *seed = (char *)CORPUS;
    if (text_path && !(seed = read_file(text_path, &seed_len))) { fprintf(stderr, "cannot read %s\n", text_path); return 1; }
    if (seed_len == 0) { fprintf(stderr, "empty text\n"); return 1; }
    size_t target = (size_t)(mb * 1e6), len = 0;
    char *text = malloc(target + seed_len + 1);
    if (!text) { fprintf(stderr, "out of memory\n"); return 1; }
    while (len < target) { memcpy(text + len, seed, seed_len); len += seed_len; }
    text[len] = 0;
    if (seed != CORPUS) free(seed);

    char *copy = malloc(len);
    double t0 = now_s();
    for (int r = 0; r < 5; r++) { memcpy(copy, text, len); __asm__ volatile("" ::"r"(copy) : "memory"); }
    double memcpy_mbs = 5 * len / 1e6 / (now_s() - t0);
    free(copy);

    printf("text: %.1f MB, %d runs (median after 1 warm-up); memcpy ceiling %.0f MB/s\n", len / 1e6, runs, memcpy_mbs);
    printf("%-40s %12s %12s %14s\n", "tokenizer", "tokens", "MB/s", "Mtokens/s");
    FILE *js = fopen("bench_tokenizer.json", "w");
    if (js) fprintf(js, "{\"text_bytes\": %zu, \"memcpy_mb_per_s\": %.1f, \"results\": [", len, memcpy_mbs);
    for (int t = first_tok; t < argc; t++) {
        cllm_tokenizer *tok = NULL;
        if (cllm_tokenizer_load(argv[t], &tok) != CLLM_OK) { fprintf(stderr, "%s\n", cllm_last_error()); continue; }
        double times[100];
        size_t n_ids = 0;
        int ok = 1;
        for (int r = -1; r < runs && ok; r++) {
            int32_t *ids = NULL;
            double a = now_s();
            if (cllm_tokenizer_encode(tok, text, len, false, &ids, &n_ids) != CLLM_OK) { fprintf(stderr, "%s\n", cllm_last_error()); ok = 0; }
            double b = now_s();
            if (r >= 0) times[r] = b - a;
            cllm_free(ids);
        }
        cllm_tokenizer_destroy(tok);
        if (!ok) continue;
        qsort(times, (size_t)runs, sizeof *times, cmp_double);
        double med = times[runs / 2];
        printf("%-40s %12zu %12.2f %14.2f\n", argv[t], n_ids, len / 1e6 / med, n_ids / 1e6 / med);
        if (js) fprintf(js, "%s{\"tokenizer\": \"%s\", \"tokens\": %zu, \"mb_per_s\": %.3f}", t > first_tok ? ", " : "", argv[t], n_ids, len / 1e6 / med);
    }
    if (js) { fprintf(js, "]}\n"); fclose(js); }
    free(text);
    return 0;
}
