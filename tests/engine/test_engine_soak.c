/* Engine soak on stories260K: COUNT requests with random prompt lengths,
 * sampling parameters (greedy/sampled, top-k/p, min-p, penalties, stop
 * strings, stop ids, n, logprobs) and random aborts, through a small KV
 * pool (preemption), at most MAX in flight. Every completion must get
 * exactly one final output ("abort" only if aborted); the engine checks the
 * block manager after every step (CLLM_ENGINE_CHECK=1); at the end every
 * block is free. usage: [CLLM_SOAK_SEED=N] test_engine_soak MODEL_DIR COUNT */
#include "cllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) { rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; return (uint32_t)(rs >> 11); }

typedef struct req {
    uint64_t id;
    int n, done, aborted;
    int max_tokens;
    int tokens[4];
    int finals[4];
} req;

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s MODEL_DIR COUNT\n", argv[0]); return 2; }
    int count = atoi(argv[2]), fails = 0;
    if (getenv("CLLM_SOAK_SEED")) rs ^= strtoull(getenv("CLLM_SOAK_SEED"), NULL, 10) * 0x9E3779B97F4A7C15ull; /* other runs */
    cllm_engine_params ep = cllm_engine_default_params();
    ep.model.model = argv[1];
    ep.model.progress = false;
    ep.model.num_threads = 1;
    ep.max_num_seqs = 24;
    ep.max_num_batched_tokens = 128;
    ep.num_gpu_blocks_override = 40;
    cllm_engine *e = NULL;
    if (cllm_engine_create(&ep, &e) != CLLM_OK) { fprintf(stderr, "FAIL: %s\n", cllm_last_error()); return 1; }
    req *rq = calloc((size_t)count, sizeof *rq);
    static const char *stops[] = {"e", "the", ".", " a", "Lily", "\n"};
    int added = 0, finished = 0, in_flight = 0, num_aborts = 0;
    int32_t prompt[80];
    while (finished < count) {
        while (added < count && in_flight < 64) {
            req *r = &rq[added];
            int n = 1 + (int)(rnd() % 80);
            prompt[0] = 1;
            for (int j = 1; j < n; j++) prompt[j] = 3 + (int)(rnd() % 509);
            cllm_request_params p = cllm_request_default_params();
            p.n = 1 + (rnd() % 8 == 0 ? (int)(rnd() % 3) : 0);
            p.temperature = rnd() % 3 == 0 ? 0.0f : 0.5f + (rnd() % 100) / 100.0f;
            if (rnd() % 3 == 0) p.top_k = 1 + (int)(rnd() % 50);
            if (rnd() % 3 == 0) p.top_p = 0.5f + (rnd() % 50) / 100.0f;
            if (rnd() % 4 == 0) p.min_p = (rnd() % 20) / 100.0f;
            if (rnd() % 4 == 0) p.repetition_penalty = 0.8f + (rnd() % 50) / 100.0f;
            if (rnd() % 4 == 0) p.presence_penalty = ((int)(rnd() % 200) - 100) / 100.0f;
            if (rnd() % 4 == 0) p.frequency_penalty = ((int)(rnd() % 200) - 100) / 100.0f;
            p.seed = rnd(), p.has_seed = true; /* every request seeded: a failure reproduces */
            const char *st[2];
            if (rnd() % 4 == 0) {
                st[0] = stops[rnd() % 6], st[1] = stops[rnd() % 6];
                p.stop = st, p.num_stop = 1 + (int)(rnd() % 2);
            }
            int32_t sid = 3 + (int)(rnd() % 509);
            if (rnd() % 5 == 0) p.stop_token_ids = &sid, p.num_stop_token_ids = 1;
            p.max_tokens = 1 + (int)(rnd() % 8);
            if (rnd() % 6 == 0) p.min_tokens = (int)(rnd() % (unsigned)p.max_tokens);
            p.ignore_eos = rnd() % 2;
            if (rnd() % 5 == 0) p.logprobs = (int)(rnd() % 6);
            r->n = p.n;
            r->max_tokens = p.max_tokens;
            if (cllm_engine_add_request(e, NULL, prompt, (size_t)n, &p, &r->id) != CLLM_OK) {
                fprintf(stderr, "FAIL: add %d: %s\n", added, cllm_last_error());
                return 1;
            }
            added++, in_flight++;
        }
        /* random aborts of requests in flight */
        if (rnd() % 4 == 0 && added > 0) {
            req *r = &rq[added - 1 - (int)(rnd() % (unsigned)(added < 64 ? added : 64))];
            if (r->done < r->n && !r->aborted) {
                if (cllm_engine_abort(e, r->id) != CLLM_OK) { fprintf(stderr, "FAIL: abort: %s\n", cllm_last_error()); fails++; }
                r->aborted = 1, num_aborts++;
            }
        }
        const cllm_request_output *o;
        int no;
        if (cllm_engine_step(e, &o, &no) != CLLM_OK) { fprintf(stderr, "FAIL: step: %s\n", cllm_last_error()); return 1; }
        for (int i = 0; i < no; i++) {
            req *r = NULL;
            for (int j = added - 1; j >= 0; j--) /* ids are assigned in order */
                if (rq[j].id == o[i].request_id) { r = &rq[j]; break; }
            if (!r || o[i].index >= r->n) { fprintf(stderr, "FAIL: output for unknown request\n"); fails++; continue; }
            r->tokens[o[i].index] += o[i].num_new_tokens;
            if (o[i].finished) {
                if (r->finals[o[i].index]++) { fprintf(stderr, "FAIL: two final outputs\n"); fails++; }
                const char *fr = o[i].finish_reason;
                if (!fr || (!strcmp(fr, "abort") && !r->aborted) || r->tokens[o[i].index] > r->max_tokens ||
                    (!strcmp(fr, "length") && r->tokens[o[i].index] != r->max_tokens)) {
                    fprintf(stderr, "FAIL: request %llu finish %s after %d tokens (max %d)\n",
                            (unsigned long long)r->id, fr ? fr : "NULL", r->tokens[o[i].index], r->max_tokens);
                    fails++;
                }
                if (++r->done == r->n) finished++, in_flight--;
            }
        }
        if (fails > 10) break;
    }
    cllm_engine_stats s;
    cllm_engine_get_stats(e, &s);
    if (cllm_engine_has_unfinished(e) || s.num_free_kv_blocks != s.num_kv_blocks || s.num_running || s.num_waiting) {
        fprintf(stderr, "FAIL: at the end %d of %d blocks free, %d running, %d waiting\n", s.num_free_kv_blocks,
                s.num_kv_blocks, s.num_running, s.num_waiting);
        fails++;
    }
    printf("soak: %d requests, %d aborts, %llu preemptions, %llu generated tokens, prefix hit rate %.3f\n", count,
           num_aborts, (unsigned long long)s.num_preemptions, (unsigned long long)s.generation_tokens_total,
           s.prefix_cache_queries ? (double)s.prefix_cache_hits / s.prefix_cache_queries : 0.0);
    cllm_engine_destroy(e);
    free(rq);
    if (fails) { fprintf(stderr, "FAILED (%d)\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
