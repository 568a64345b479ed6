/* Helpers for the engine tests: run a set of requests to completion and
 * collect each completion's tokens, text, finish reason and logprobs. */
#ifndef CLLM_TESTS_ENGINE_UTIL_H
#define CLLM_TESTS_ENGINE_UTIL_H

#include "cllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_MAX_TOK 1024
#define T_TOPK 5

typedef struct t_completion {
    int32_t ids[T_MAX_TOK];
    float lp[T_MAX_TOK];      /* logprob of each token (when requested) */
    int32_t top[T_MAX_TOK];   /* first top id */
    int32_t topk[T_MAX_TOK][T_TOPK]; /* the first T_TOPK top ids (logprobs >= T_TOPK) */
    int ntop[T_MAX_TOK];
    size_t tok_end[T_MAX_TOK];/* text length after the step that produced token i */
    int n;
    char text[8192];
    size_t text_len;
    const char *finish_reason;
    int num_finished_outputs;
} t_completion;

typedef struct t_request {
    const int32_t *prompt_ids; /* or prompt text */
    int n_prompt;
    const char *prompt;
    cllm_request_params p;
    uint64_t id;
    t_completion *c;           /* (p.n) */
} t_request;

static int t_fails = 0;
#define T_CHECK(cond, ...)                                                              \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                               \
            fprintf(stderr, "\n");                                                      \
            t_fails++;                                                                  \
        }                                                                               \
    } while (0)

static t_request *t_find(t_request *r, int nr, uint64_t id) {
    for (int i = 0; i < nr; i++)
        if (r[i].id == id) return &r[i];
    return NULL;
}

/* Apply one step's outputs to the requests. */
static void t_collect(t_request *r, int nr, const cllm_request_output *outs, int n) {
    for (int i = 0; i < n; i++) {
        const cllm_request_output *o = &outs[i];
        t_request *q = t_find(r, nr, o->request_id);
        if (!q) { T_CHECK(0, "output for unknown request %llu", (unsigned long long)o->request_id); continue; }
        T_CHECK(o->index >= 0 && o->index < q->p.n, "output index %d", o->index);
        t_completion *c = &q->c[o->index];
        T_CHECK(c->num_finished_outputs == 0, "output after the final one (request %llu)", (unsigned long long)o->request_id);
        for (int k = 0; k < o->num_new_tokens && c->n < T_MAX_TOK; k++) {
            if (o->logprobs) {
                c->lp[c->n] = o->logprobs[k].logprob;
                c->top[c->n] = o->logprobs[k].num_top > 0 ? o->logprobs[k].top_ids[0] : -1;
                c->ntop[c->n] = o->logprobs[k].num_top < T_TOPK ? o->logprobs[k].num_top : T_TOPK;
                for (int j = 0; j < c->ntop[c->n]; j++) c->topk[c->n][j] = o->logprobs[k].top_ids[j];
            }
            c->ids[c->n++] = o->new_token_ids[k];
        }
        if (c->text_len + o->text_delta_len < sizeof c->text) {
            memcpy(c->text + c->text_len, o->text_delta, o->text_delta_len);
            c->text_len += o->text_delta_len;
            c->text[c->text_len] = 0;
        }
        if (c->n > 0) c->tok_end[c->n - 1] = c->text_len;
        if (o->finished) {
            c->finish_reason = o->finish_reason;
            c->num_finished_outputs++;
            T_CHECK(o->num_output_tokens == c->n, "num_output_tokens %d vs %d received", o->num_output_tokens, c->n);
        }
    }
}

/* Add all requests (allocating their completions) and step until done. */
static int t_run_all(cllm_engine *e, t_request *r, int nr) {
    for (int i = 0; i < nr; i++) {
        r[i].c = calloc((size_t)r[i].p.n, sizeof(t_completion));
        if (cllm_engine_add_request(e, r[i].prompt, r[i].prompt_ids, (size_t)r[i].n_prompt, &r[i].p, &r[i].id) != CLLM_OK) {
            fprintf(stderr, "FAIL: add_request %d: %s\n", i, cllm_last_error());
            return 1;
        }
    }
    int steps = 0;
    while (cllm_engine_has_unfinished(e)) {
        const cllm_request_output *outs;
        int n;
        if (cllm_engine_step(e, &outs, &n) != CLLM_OK) {
            fprintf(stderr, "FAIL: step: %s\n", cllm_last_error());
            return 1;
        }
        t_collect(r, nr, outs, n);
        if (++steps > 1000000) { fprintf(stderr, "FAIL: no progress\n"); return 1; }
    }
    return 0;
}

/* vLLM's check_logprobs_close (tests/models/utils.py): two runs of the same
 * request may diverge only where bf16 rounding flips a near-tie: at the
 * first differing token, each run's token must be among the other run's top
 * logprobs; after it the outputs are not compared. Returns 0 if close,
 * else 1 (with a message). *diverged_at: index of the first difference or -1. */
static int t_logprobs_close(const t_completion *a, const t_completion *b, const char *what, int *diverged_at) {
    *diverged_at = -1;
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++) {
        if (a->ids[i] == b->ids[i]) continue;
        *diverged_at = i;
        bool a_in_b = false, b_in_a = false;
        for (int j = 0; j < b->ntop[i]; j++) a_in_b |= b->topk[i][j] == a->ids[i];
        for (int j = 0; j < a->ntop[i]; j++) b_in_a |= a->topk[i][j] == b->ids[i];
        if (!a_in_b || !b_in_a) {
            fprintf(stderr, "FAIL: %s: token %d differs (%d vs %d) and is not in the other run's top %d\n", what, i,
                    a->ids[i], b->ids[i], T_TOPK);
            return 1;
        }
        return 0;
    }
    if (a->n != b->n) {
        fprintf(stderr, "FAIL: %s: %d vs %d tokens with no differing token\n", what, a->n, b->n);
        return 1;
    }
    return 0;
}

static void t_free(t_request *r, int nr) {
    for (int i = 0; i < nr; i++) free(r[i].c), r[i].c = NULL;
}

static cllm_engine *t_engine(const char *model, int max_num_seqs, int max_batched, int blocks, bool prefix) {
    cllm_engine_params ep = cllm_engine_default_params();
    ep.model.model = model;
    ep.model.progress = false;
    ep.model.num_threads = 1;
    ep.max_num_seqs = max_num_seqs;
    ep.max_num_batched_tokens = max_batched;
    ep.num_gpu_blocks_override = blocks;
    ep.enable_prefix_caching = prefix;
    /* CLLM_TEST_DEVICE=cuda runs the same checks on the CUDA backend (gpu label). */
    const char *dev = getenv("CLLM_TEST_DEVICE");
    if (dev && !strcmp(dev, "cuda")) {
        ep.model.device = CLLM_DEVICE_CUDA;
        ep.gpu_memory_utilization = 0.3f;
    }
    cllm_engine *e = NULL;
    if (cllm_engine_create(&ep, &e) != CLLM_OK) fprintf(stderr, "FAIL: engine_create: %s\n", cllm_last_error());
    return e;
}

#endif
