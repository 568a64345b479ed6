/* CPU sampling-side ops vs naive formulas written from the definitions:
 * logit bias then penalties (OpenAI logit_bias added first, as vLLM's
 * sampler does; HF repetition penalty over prompt+output; OpenAI presence
 * and frequency over output), logprobs (log_softmax, top-k with ties by lower
 * id), copy_blocks, and their argument errors. */
#include "backend/cpu/cpu_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails = 0;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %d: ", __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); fails++; } } while (0)

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) { rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; return (uint32_t)(rs >> 11); }
static float frand(void) { return (float)((rnd() % 20001) / 1000.0 - 10.0); }

static void test_penalties(int S, int V) {
    float *x = malloc(sizeof(float) * S * V), *y = malloc(sizeof(float) * S * V);
    int32_t *hist = malloc(sizeof(int32_t) * 4096);
    cllm_logit_bias *bias = malloc(sizeof *bias * (size_t)S * 8 + 1);
    cllm_penalty_params *pp = calloc((size_t)S, sizeof *pp);
    void *ws = malloc(cllm_cpu_penalties_workspace_bytes(S, V));
    int at = 0, bt = 0;
    for (int i = 0; i < S * V; i++) x[i] = frand();
    for (int s = 0; s < S; s++) {
        pp[s].repetition_penalty = s % 4 == 0 ? 1.0f : 0.5f + (rnd() % 200) / 100.0f;
        pp[s].presence_penalty = s % 3 == 0 ? 0.0f : ((int)(rnd() % 400) - 200) / 100.0f;
        pp[s].frequency_penalty = s % 5 == 0 ? 0.0f : ((int)(rnd() % 400) - 200) / 100.0f;
        pp[s].token_start = at;
        pp[s].num_prompt = (int)(rnd() % 20);
        pp[s].num_output = (int)(rnd() % 30);
        for (int i = 0; i < pp[s].num_prompt + pp[s].num_output; i++) hist[at++] = (int32_t)(rnd() % (V + 2)) - 1; /* some out of range */
        /* logit bias on every other row: up to 8 distinct ids (some also in the history), -100..100 */
        pp[s].bias_start = bt;
        pp[s].num_bias = s % 2 ? 0 : (int)(rnd() % 9);
        if (pp[s].num_bias > V) pp[s].num_bias = V;
        for (int i = 0; i < pp[s].num_bias; i++) {
            int32_t id;
            int dup;
            do {
                id = (int32_t)(rnd() % V);
                dup = 0;
                for (int j = 0; j < i; j++) dup |= bias[bt + j].token_id == id;
            } while (dup);
            bias[bt + i] = (cllm_logit_bias){id, ((int)(rnd() % 20001) - 10000) / 100.0f};
        }
        bt += pp[s].num_bias;
    }
    CHECK(cllm_cpu_apply_penalties(x, S, V, pp, hist, bias, ws, y) == CLLM_OK, "apply_penalties");
    for (int s = 0; s < S; s++) {
        const int32_t *h = hist + pp[s].token_start;
        for (int v = 0; v < V; v++) {
            int in_any = 0, cnt = 0;
            for (int i = 0; i < pp[s].num_prompt + pp[s].num_output; i++)
                if (h[i] == v) { in_any = 1; if (i >= pp[s].num_prompt) cnt++; }
            double z = x[s * V + v];
            for (int i = 0; i < pp[s].num_bias; i++)
                if (bias[pp[s].bias_start + i].token_id == v) z = (float)(x[s * V + v] + bias[pp[s].bias_start + i].value);
            if (in_any) z = z > 0 ? z / pp[s].repetition_penalty : z * pp[s].repetition_penalty;
            z -= pp[s].frequency_penalty * cnt + pp[s].presence_penalty * (cnt > 0);
            if (fabs(z - y[s * V + v]) > 1e-5 * (1 + fabs(z))) {
                CHECK(0, "penalties S=%d V=%d row %d id %d: %g want %g", S, V, s, v, y[s * V + v], z);
                s = S;
                break;
            }
        }
    }
    /* in place gives the same */
    memcpy(y + 0, x, 0);
    float *z = malloc(sizeof(float) * S * V);
    memcpy(z, x, sizeof(float) * S * V);
    CHECK(cllm_cpu_apply_penalties(z, S, V, pp, hist, bias, ws, z) == CLLM_OK && !memcmp(z, y, sizeof(float) * S * V),
          "in place");
    pp[0].num_bias = 1;
    CHECK(cllm_cpu_apply_penalties(x, S, V, pp, hist, NULL, ws, y) == CLLM_ERR_INVALID_ARG, "bias rows without entries");
    pp[0].num_bias = -1;
    CHECK(cllm_cpu_apply_penalties(x, S, V, pp, hist, bias, ws, y) == CLLM_ERR_INVALID_ARG, "num_bias -1 accepted");
    pp[0].num_bias = 0;
    pp[0].repetition_penalty = 0;
    CHECK(cllm_cpu_apply_penalties(x, S, V, pp, hist, bias, ws, y) == CLLM_ERR_INVALID_ARG, "repetition_penalty 0 accepted");
    free(x), free(y), free(z), free(hist), free(pp), free(ws), free(bias);
}

static void test_logprobs(int S, int V, int k) {
    float *x = malloc(sizeof(float) * S * V), *lp = malloc(sizeof(float) * S), *tl = malloc(sizeof(float) * S * (k + 1));
    int32_t *tok = calloc((size_t)S, sizeof(int32_t)), *ti = malloc(sizeof(int32_t) * S * (k + 1));
    for (int i = 0; i < S * V; i++) x[i] = (float)(rnd() % 50) / 7.0f; /* many ties */
    for (int s = 0; s < S; s++) tok[s] = (int32_t)(rnd() % V);
    CHECK(cllm_cpu_logprobs(x, S, V, tok, k, lp, ti, tl) == CLLM_OK, "logprobs");
    for (int s = 0; s < S; s++) {
        const float *r = x + (size_t)s * V;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)r[v]);
        double want = r[tok[s]] - log(sum);
        CHECK(fabs(want - lp[s]) < 1e-4, "logprob row %d: %g want %g", s, lp[s], want);
        /* top-k: selection by repeated max with lowest id on ties */
        char *used = calloc(V, 1);
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int v = 0; v < V; v++)
                if (!used[v] && (best < 0 || r[v] > r[best])) best = v;
            used[best] = 1;
            CHECK(ti[s * k + j] == best && fabs(tl[s * k + j] - (r[best] - log(sum))) < 1e-4,
                  "top %d of row %d: id %d (%g) want %d", j, s, ti[s * k + j], tl[s * k + j], best);
        }
        free(used);
    }
    CHECK(cllm_cpu_logprobs(x, S, V, tok, V + 1, lp, ti, tl) == CLLM_ERR_INVALID_ARG, "k > V accepted");
    free(x), free(lp), free(tl), free(tok), free(ti);
}

static void test_copy_blocks(void) {
    float cache[6 * 4];
    for (int i = 0; i < 24; i++) cache[i] = (float)i;
    int32_t pairs[4] = {0, 5, 2, 3};
    CHECK(cllm_cpu_copy_blocks(cache, 4 * sizeof(float), pairs, 2) == CLLM_OK, "copy_blocks");
    for (int i = 0; i < 4; i++) CHECK(cache[20 + i] == (float)i && cache[12 + i] == (float)(8 + i), "copy_blocks content");
    int32_t bad[2] = {1, 1};
    CHECK(cllm_cpu_copy_blocks(cache, 16, bad, 1) == CLLM_ERR_INVALID_ARG, "self copy accepted");
}

int main(void) {
    int shapes[][2] = {{1, 1}, {1, 7}, {3, 512}, {17, 1000}, {64, 33}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        test_penalties(shapes[i][0], shapes[i][1]);
        for (int k = 0; k <= 5 && k <= shapes[i][1]; k += 2) test_logprobs(shapes[i][0], shapes[i][1], k);
    }
    test_logprobs(4, 100, 20);
    test_copy_blocks();
    size_t fr = 0, tot = 0;
    CHECK(cllm_cpu_mem_info(&fr, &tot) == CLLM_OK && tot > 0 && fr <= tot, "mem_info");
    if (fails) { fprintf(stderr, "FAILED %d\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
