/* Mixed prefill + decode batches: the runner runs attention in two parts
 * (the leading one-token sequences through the backend's decode kernel, the
 * prefill chunks as a batch of their own). The split must not change the
 * result.
 *
 * Usage: test_attn_split MODEL_DIR cpu|cuda
 *   Every sequence is first prefilled alone (its cached context), then a
 *   mixed step runs: Sd sequences with one new token, then sequences with
 *   chunks of 2..97 new tokens, some of them followed by one more one-token
 *   sequence (not leading: it stays in the prefill part). Logits of every
 *   token of the mixed step are compared with a reference runner:
 *   cpu:  the same model on the CPU with CLLM_NO_ATTN_SPLIT=1 (one
 *         attention call): bit-identical logits.
 *   cuda: the split CUDA runner against the CPU fp32 runner: relative L2
 *         error of every row's logits within the bf16 tolerance (0.02; the
 *         fixtures' golden logits are within 0.0097), equal argmax where the
 *         fp32 top-2 gap exceeds 0.05, and the unsplit CUDA runner within the
 *         same bounds. */
#include "runner_util.h"

#include <math.h>

static cllm_model *load(const char *dir, cllm_device dev, bool no_split) {
    if (no_split) setenv("CLLM_NO_ATTN_SPLIT", "1", 1);
    else unsetenv("CLLM_NO_ATTN_SPLIT");
    cllm_model_params p = cllm_model_default_params();
    p.model = dir;
    p.device = dev;
    p.max_model_len = MAX_LEN;
    p.max_num_seqs = 32;
    p.progress = false;
    p.enforce_eager = true;
    cllm_model *m = NULL;
    if (cllm_model_load(&p, &m) != CLLM_OK) fprintf(stderr, "load %s: %s\n", dir, cllm_last_error());
    unsetenv("CLLM_NO_ATTN_SPLIT");
    return m;
}

/* Logits of every token of one step (T, V), greedy. */
static cllm_status step_all(cllm_runner *r, const seqs *q, const int *n_new, float *logits) {
    int T = 0;
    for (int s = 0; s < q->S; s++) T += n_new[s];
    cllm_sample_params *sp = calloc((size_t)T, sizeof *sp);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    for (int i = 0; i < T; i++) sp[i] = (cllm_sample_params){.temperature = 0, .top_p = 1, .top_k = -1};
    cllm_status st = step(r, q, n_new, sp, tok, logits, true);
    free(sp), free(tok);
    return st;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int rand_int(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

/* Runner k of nr: build the same sequences in each, prefill each alone,
 * then run one mixed step; logits of the mixed step into out[k] (T, V). */
typedef struct layout {
    int S, Sd;          /* sequences; leading one-token sequences */
    int ctx[32];        /* cached context before the mixed step */
    int n_new[32];      /* new tokens in the mixed step */
} layout;

static int run(cllm_runner **rs, int nr, const layout *L, int V, float **out, int *T_out) {
    int P = cllm_runner_block_size(rs[0]), mbps = (MAX_LEN + P - 1) / P;
    seqs q = {.S = L->S, .P = P, .mbps = mbps};
    q.ids = calloc((size_t)L->S * MAX_LEN, sizeof(int32_t));
    q.len = calloc((size_t)L->S, sizeof(int));
    q.bt = calloc((size_t)L->S * mbps, sizeof(int32_t));
    for (int s = 0; s < L->S; s++) {
        for (int j = 0; j < mbps; j++) q.bt[(size_t)s * mbps + j] = s * mbps + (mbps - 1 - j); /* scattered blocks */
        for (int i = 0; i < L->ctx[s] + L->n_new[s]; i++) q.ids[(size_t)s * MAX_LEN + i] = rand_int(V);
    }
    int T = 0;
    for (int s = 0; s < L->S; s++) T += L->n_new[s];
    *T_out = T;
    float *scratch = malloc(sizeof(float) * (size_t)MAX_LEN * V);
    for (int k = 0; k < nr; k++) {
        for (int s = 0; s < L->S; s++) { /* cached context: prefill alone */
            if (L->ctx[s] == 0) continue;
            seqs one = q;
            one.S = 1, one.ids += (size_t)s * MAX_LEN, one.bt += (size_t)s * mbps;
            int n = L->ctx[s];
            one.len = &n;
            CHECK(step_all(rs[k], &one, &n, scratch) == CLLM_OK, "prefill seq %d: %s", s, cllm_last_error());
        }
        for (int s = 0; s < L->S; s++) q.len[s] = L->ctx[s] + L->n_new[s];
        CHECK(step_all(rs[k], &q, L->n_new, out[k]) == CLLM_OK, "mixed step: %s", cllm_last_error());
    }
    free(scratch), free(q.ids), free(q.len), free(q.bt);
    return fails;
}

static double rel_l2(const float *a, const float *ref, int V) {
    double num = 0, den = 0;
    for (int v = 0; v < V; v++) {
        double d = (double)a[v] - ref[v];
        num += d * d, den += (double)ref[v] * ref[v];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int argmax(const float *x, int V, double *gap) {
    int b = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[b]) b = v;
    double second = -INFINITY;
    for (int v = 0; v < V; v++)
        if (v != b && x[v] > second) second = x[v];
    if (gap) *gap = x[b] - second;
    return b;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_attn_split MODEL_DIR cpu|cuda\n");
        return 2;
    }
    bool cuda = !strcmp(argv[2], "cuda");
    /* runners: [0] split under test, [1] reference (cpu: unsplit CPU; cuda: CPU fp32), [2] unsplit CUDA */
    cllm_model *m[3] = {0};
    m[0] = load(argv[1], cuda ? CLLM_DEVICE_CUDA : CLLM_DEVICE_CPU, false);
    m[1] = load(argv[1], CLLM_DEVICE_CPU, !cuda);
    if (cuda) m[2] = load(argv[1], CLLM_DEVICE_CUDA, true);
    int nr = cuda ? 3 : 2;
    for (int k = 0; k < nr; k++)
        if (!m[k]) return 1;
    cllm_runner *rs[3];
    for (int k = 0; k < nr; k++) rs[k] = cllm_model_runner(m[k]);
    int V = cllm_model_vocab_size(m[0]);
    layout cases[6];
    int nc = 0;
    /* decodes of several context lengths (one past 256 keys: the split-K paths) + fresh and prefix-cached chunks */
    cases[nc++] = (layout){.S = 4, .Sd = 2, .ctx = {17, 300, 0, 40}, .n_new = {1, 1, 33, 9}};
    cases[nc++] = (layout){.S = 3, .Sd = 1, .ctx = {1, 0, 5}, .n_new = {1, 97, 2}};
    /* many decodes, one chunk, then a one-token sequence that is not leading */
    cases[nc++] = (layout){.S = 12, .Sd = 10, .ctx = {3, 9, 27, 81, 243, 100, 64, 65, 15, 16, 0, 200},
                           .n_new = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 50, 1}};
    /* no decode rows (one attention call), and all decode rows (pure decode) */
    cases[nc++] = (layout){.S = 2, .Sd = 0, .ctx = {0, 30}, .n_new = {20, 7}};
    cases[nc++] = (layout){.S = 3, .Sd = 3, .ctx = {10, 20, 30}, .n_new = {1, 1, 1}};
    /* a one-token fresh prompt is a decode row too */
    cases[nc++] = (layout){.S = 3, .Sd = 2, .ctx = {0, 45, 0}, .n_new = {1, 1, 64}};
    double worst = 0, worst_unsplit = 0;
    for (int c = 0; c < nc && !fails; c++) {
        int T = 0;
        for (int s = 0; s < cases[c].S; s++) T += cases[c].n_new[s];
        float *out[3];
        for (int k = 0; k < nr; k++) out[k] = malloc(sizeof(float) * (size_t)T * V);
        int Tr = 0;
        uint64_t sp0 = cllm_runner_attn_split_steps(rs[0]), ref0 = cllm_runner_attn_split_steps(rs[nr - 1]);
        if (run(rs, nr, &cases[c], V, out, &Tr)) break;
        bool want_split = cases[c].Sd > 0 && cases[c].Sd < cases[c].S;
        CHECK(cllm_runner_attn_split_steps(rs[0]) - sp0 == (want_split ? 1u : 0u), "case %d: split steps %llu, want %d",
              c, (unsigned long long)(cllm_runner_attn_split_steps(rs[0]) - sp0), want_split);
        CHECK(cllm_runner_attn_split_steps(rs[nr - 1]) == ref0, "case %d: the unsplit runner split", c);
        for (int t = 0; t < T; t++) {
            const float *a = out[0] + (size_t)t * V, *ref = out[1] + (size_t)t * V;
            if (!cuda) {
                CHECK(!memcmp(a, ref, sizeof(float) * (size_t)V), "case %d token %d: split logits differ from one call",
                      c, t);
                continue;
            }
            double e = rel_l2(a, ref, V), eu = rel_l2(out[2] + (size_t)t * V, ref, V), gap;
            if (!(e <= worst)) worst = e;
            if (!(eu <= worst_unsplit)) worst_unsplit = eu;
            CHECK(e <= 0.02, "case %d token %d: split CUDA logits rel L2 %.4g vs CPU fp32", c, t, e);
            CHECK(eu <= 0.02, "case %d token %d: unsplit CUDA logits rel L2 %.4g vs CPU fp32", c, t, eu);
            int want = argmax(ref, V, &gap);
            if (gap > 0.05) CHECK(argmax(a, V, NULL) == want, "case %d token %d: argmax differs (gap %.3g)", c, t, gap);
        }
        for (int k = 0; k < nr; k++) free(out[k]);
    }
    if (cuda) printf("max rel L2 vs CPU fp32: split %.4g, unsplit %.4g\n", worst, worst_unsplit);
    for (int k = 0; k < nr; k++) cllm_model_destroy(m[k]);
    printf("%s (%d cases)\n", fails ? "FAILED" : "ok", nc);
    return fails ? 1 : 0;
}
