/* prompt_logprobs against a direct log_softmax of the runner's logits (CPU,
 * stories260K): each prompt token i >= 1 scored by the logits row of
 * position i-1, top-k ids (ties: lower id first) and values; token 0 has
 * none. Requests are mixed with others under a small token budget so the
 * prompts are split over several chunked-prefill steps (with and without
 * sampling rows in the same step), n = 2 completions each get it, a request
 * finishing on its first token still returns it, a repeated prompt (prefix
 * cache warm) is still scored in full, and out-of-range values are refused. */
#include "cllm.h"
#include "engine/generate.h"
#include "core/clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %d: ", __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); fails++; } } while (0)

#define NP 30
#define K 3
typedef struct got {
    int count;             /* outputs that carried prompt_logprobs */
    int n;
    float lp[NP];
    int32_t tok[NP], top[NP][K];
    float top_lp[NP][K];
    int num_top[NP];
} got;

/* Run reqs (ids given) to completion, recording prompt_logprobs per (request index, completion). */
static int run(cllm_engine *e, int nreq, const int32_t *const *ids, const int *n, const cllm_request_params *p,
               got g[][2]) {
    uint64_t rid[8];
    for (int i = 0; i < nreq; i++)
        if (cllm_engine_add_request(e, NULL, ids[i], (size_t)n[i], &p[i], &rid[i]) != CLLM_OK) {
            fprintf(stderr, "FAIL add_request %d: %s\n", i, cllm_last_error());
            return 1;
        }
    int steps = 0;
    while (cllm_engine_has_unfinished(e) && steps++ < 10000) {
        const cllm_request_output *o;
        int no;
        if (cllm_engine_step(e, &o, &no) != CLLM_OK) { fprintf(stderr, "FAIL step: %s\n", cllm_last_error()); return 1; }
        for (int j = 0; j < no; j++) {
            int i = 0;
            while (i < nreq && rid[i] != o[j].request_id) i++;
            if (i == nreq || !o[j].prompt_logprobs) continue;
            got *x = &g[i][o[j].index];
            x->count++;
            x->n = o[j].num_prompt_logprobs;
            for (int t = 0; t < x->n && t < NP; t++) {
                const cllm_logprob_entry *en = &o[j].prompt_logprobs[t];
                x->lp[t] = en->logprob, x->tok[t] = en->token_id, x->num_top[t] = en->num_top;
                for (int k = 0; k < en->num_top && k < K; k++) x->top[t][k] = en->top_ids[k], x->top_lp[t][k] = en->top_logprobs[k];
            }
        }
    }
    return 0;
}

/* Compare g (k tops) with the reference log_softmax rows ref (NP, V). */
static void compare(const char *what, const got *g, int k, const int32_t *ids, const double *ref, int V) {
    CHECK(g->count == 1, "%s: prompt_logprobs on %d outputs, want exactly 1 (the first)", what, g->count);
    CHECK(g->n == NP, "%s: %d prompt_logprobs entries, want %d", what, g->n, NP);
    if (g->count != 1 || g->n != NP) return;
    CHECK(isnan(g->lp[0]) && g->num_top[0] == 0 && g->tok[0] == ids[0], "%s: entry 0 must have no logprob", what);
    for (int t = 1; t < NP; t++) {
        const double *row = ref + (size_t)(t - 1) * V;
        CHECK(g->tok[t] == ids[t], "%s: entry %d token %d want %d", what, t, g->tok[t], ids[t]);
        CHECK(fabs(g->lp[t] - row[ids[t]]) < 1e-4, "%s: entry %d logprob %g want %g", what, t, g->lp[t], row[ids[t]]);
        CHECK(g->num_top[t] == k, "%s: entry %d has %d top, want %d", what, t, g->num_top[t], k);
        int used[K] = {-1, -1, -1};
        for (int j = 0; j < k && j < g->num_top[t]; j++) {
            int best = -1;
            for (int v = 0; v < V; v++) {
                int taken = 0;
                for (int u = 0; u < j; u++) taken |= used[u] == v;
                if (!taken && (best < 0 || row[v] > row[best])) best = v;
            }
            used[j] = best;
            CHECK(g->top[t][j] == best && fabs(g->top_lp[t][j] - row[best]) < 1e-4,
                  "%s: entry %d top %d = %d (%g), want %d (%g)", what, t, j, g->top[t][j], g->top_lp[t][j], best, row[best]);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]); return 2; }
    int32_t a[NP], c[20];
    uint32_t x = 12345;
    for (int i = 0; i < NP; i++) x = x * 1664525u + 1013904223u, a[i] = 3 + (int32_t)((x >> 8) % 497);
    for (int i = 0; i < 20; i++) x = x * 1664525u + 1013904223u, c[i] = 3 + (int32_t)((x >> 8) % 497);
    /* reference: all NP logits rows of prompt a, log_softmax in double */
    cllm_model_params mp = cllm_model_default_params();
    mp.model = argv[1], mp.progress = false, mp.num_kv_blocks = 8, mp.num_threads = 1;
    cllm_model *m = NULL;
    if (cllm_model_load(&mp, &m) != CLLM_OK) { fprintf(stderr, "FAIL load: %s\n", cllm_last_error()); return 1; }
    int V = cllm_model_vocab_size(m);
    int32_t pos[NP], slots[NP], lidx[NP], bt[4] = {0, 1, 2, 3}, qsl[2] = {0, NP}, lens[1] = {NP};
    for (int t = 0; t < NP; t++) pos[t] = t, slots[t] = t, lidx[t] = t;
    cllm_batch_host bh = {.num_seqs = 1, .num_tokens = NP, .token_ids = a, .positions = pos, .query_start_loc = qsl,
                          .seq_lens = lens, .block_tables = bt, .max_blocks_per_seq = 4, .slot_mapping = slots,
                          .logits_indices = lidx, .num_logits = NP};
    float *lg = malloc(sizeof(float) * NP * (size_t)V);
    double *ref = malloc(sizeof(double) * NP * (size_t)V);
    if (cllm_runner_execute(cllm_model_runner(m), &bh, NULL, NULL, lg) != CLLM_OK) { fprintf(stderr, "FAIL runner\n"); return 1; }
    for (int t = 0; t < NP; t++) {
        const float *r = lg + (size_t)t * V;
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = r[v] > mx ? r[v] : mx;
        for (int v = 0; v < V; v++) s += exp(r[v] - mx);
        for (int v = 0; v < V; v++) ref[(size_t)t * V + v] = r[v] - mx - log(s);
    }
    cllm_model_destroy(m);

    cllm_engine_params ep = cllm_engine_default_params();
    ep.model.model = argv[1], ep.model.progress = false, ep.model.num_threads = 1;
    ep.max_num_seqs = 4, ep.max_num_batched_tokens = 7; /* prompts over 5+ steps, chunks start mid-prompt */
    cllm_engine *e = NULL;
    if (cllm_engine_create(&ep, &e) != CLLM_OK) { fprintf(stderr, "FAIL engine: %s\n", cllm_last_error()); return 1; }
    cllm_request_params p[3];
    for (int i = 0; i < 3; i++) p[i] = cllm_request_default_params(), p[i].ignore_eos = true;
    p[0].temperature = 0, p[0].max_tokens = 1, p[0].prompt_logprobs = K;           /* finishes on its first token */
    p[1].temperature = 1, p[1].seed = 5, p[1].has_seed = true, p[1].n = 2, p[1].max_tokens = 3, p[1].prompt_logprobs = 1;
    p[2].temperature = 0, p[2].max_tokens = 6;                                       /* no prompt_logprobs */
    const int32_t *ids[3] = {c, a, a};
    int n[3] = {20, NP, NP};
    /* order: c without, then a twice, so a's chunks share steps with c's decode */
    const int32_t *ids2[3] = {ids[0], ids[1], ids[2]};
    cllm_request_params p2[3] = {p[2], p[0], p[1]};
    static got g[3][2], g2[1][2];
    if (run(e, 3, ids2, n, p2, g)) return 1;
    CHECK(g[0][0].count == 0, "request without prompt_logprobs got some");
    compare("k=3, max_tokens=1", &g[1][0], K, a, ref, V);
    compare("n=2 completion 0, k=1", &g[2][0], 1, a, ref, V);
    compare("n=2 completion 1, k=1", &g[2][1], 1, a, ref, V);
    /* the same prompt again: its blocks are in the prefix cache now */
    const int32_t *ids3[1] = {a};
    int n3[1] = {NP};
    if (run(e, 1, ids3, n3, &p[0], g2)) return 1;
    compare("repeated prompt (prefix cache warm)", &g2[0][0], K, a, ref, V);
    /* out of range */
    cllm_request_params bad = p[0];
    bad.prompt_logprobs = 21;
    uint64_t id;
    CHECK(cllm_engine_add_request(e, NULL, a, NP, &bad, &id) == CLLM_ERR_INVALID_ARG &&
              strstr(cllm_last_error(), "prompt_logprobs"), "prompt_logprobs 21 accepted or message unclear: %s", cllm_last_error());
    bad.prompt_logprobs = -2;
    CHECK(cllm_engine_add_request(e, NULL, a, NP, &bad, &id) != CLLM_OK, "prompt_logprobs -2 accepted");
    cllm_engine_destroy(e);
    free(lg), free(ref);
    if (fails) { fprintf(stderr, "FAILED (%d checks)\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
