/* CUDA-graph decode (src/engine/cuda_graph.c) against eager decode.
 *
 * Usage: test_cuda_graph MODEL_DIR cuda|cpu
 *   cuda: the fixture model is loaded twice on the GPU, once with graphs
 *     (max_num_seqs 24: graphs for 1, 2, 4, 8, 16, 24) and once with
 *     enforce_eager. For batches of 1, 3 (padded to 4) and 17 (padded to 24)
 *     sequences of different prompt lengths (some past 256 keys, so the
 *     split-K attention path runs), every sequence is prefilled, then the
 *     batch decodes 12 steps: tokens must be equal and the logits within
 *     1e-3 at every step (greedy rows, and seeded random-sampling rows whose
 *     sampler params come from the graph's fixed buffer), and the graph
 *     runner must have replayed a graph for every decode step.
 *   cpu: capture is a no-op (no graph ops): zero graphs, zero replays, and
 *     decode still runs. */
#include "runner_util.h"

#include <math.h>

#define STEPS 12

static cllm_model *load(const char *dir, cllm_device dev, bool eager) {
    cllm_model_params p = cllm_model_default_params();
    p.model = dir;
    p.device = dev;
    p.max_model_len = MAX_LEN;
    p.max_num_seqs = 24;
    p.progress = false;
    p.enforce_eager = eager;
    cllm_model *m = NULL;
    if (cllm_model_load(&p, &m) != CLLM_OK) {
        fprintf(stderr, "load %s: %s\n", dir, cllm_last_error());
        return NULL;
    }
    return m;
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static int rand_int(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

/* Prefill S sequences one by one in both runners, then decode STEPS steps
 * as one batch; compare graph (rg) against eager (re). */
static void run_batch(cllm_runner *rg, cllm_runner *re, int S, int V, bool graphs) {
    seqs q[2];
    int P = cllm_runner_block_size(rg), mbps = (MAX_LEN + P - 1) / P;
    for (int k = 0; k < 2; k++) {
        q[k].S = S, q[k].P = P, q[k].mbps = mbps;
        q[k].ids = calloc((size_t)S * MAX_LEN, sizeof(int32_t));
        q[k].len = calloc((size_t)S, sizeof(int));
        q[k].bt = calloc((size_t)S * mbps, sizeof(int32_t));
        for (int s = 0; s < S; s++)
            for (int j = 0; j < mbps; j++) q[k].bt[(size_t)s * mbps + j] = s * mbps + (mbps - 1 - j); /* scattered */
    }
    for (int s = 0; s < S; s++) {
        int n = 1 + (s * 53 + S * 17) % 300; /* 1..300: from one token to several attention splits */
        q[0].len[s] = q[1].len[s] = n;
        for (int i = 0; i < n; i++) q[0].ids[(size_t)s * MAX_LEN + i] = q[1].ids[(size_t)s * MAX_LEN + i] = rand_int(V);
    }
    cllm_sample_params *sp = calloc((size_t)S, sizeof *sp);
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)S), *te = malloc(sizeof(int32_t) * (size_t)S);
    float *lg = malloc(sizeof(float) * (size_t)S * V), *le = malloc(sizeof(float) * (size_t)S * V);
    int *n_new = malloc(sizeof(int) * (size_t)S);
    /* prefill, one sequence per step (a 1-token prompt is itself a decode step) */
    for (int s = 0; s < S; s++) {
        cllm_sample_params g = {.temperature = 0, .top_p = 1, .top_k = -1};
        for (int k = 0; k < 2; k++) {
            seqs one = q[k];
            one.S = 1, one.ids += (size_t)s * MAX_LEN, one.len += s, one.bt += (size_t)s * mbps;
            int nn = q[k].len[s];
            int32_t tk;
            cllm_status st = step(k ? re : rg, &one, &nn, &g, &tk, k ? le : lg, false);
            CHECK(st == CLLM_OK, "prefill S=%d seq %d: %s", S, s, cllm_last_error());
            (k ? te : tg)[0] = tk;
        }
        CHECK(tg[0] == te[0], "prefill S=%d seq %d: token %d vs %d", S, s, tg[0], te[0]);
        for (int k = 0; k < 2; k++) q[k].ids[(size_t)s * MAX_LEN + q[k].len[s]++] = tg[0];
    }
    uint64_t rep0 = 0, rep1 = 0, rep_e = 0;
    cllm_runner_graph_stats(rg, NULL, &rep0, NULL);
    double worst = 0;
    for (int it = 0; it < STEPS && !fails; it++) {
        for (int s = 0; s < S; s++) {
            n_new[s] = 1;
            bool rnd = s % 3 == 1; /* some rows sample with seeded temperature / top-p / top-k */
            sp[s] = (cllm_sample_params){.temperature = rnd ? 0.9f : 0.f, .top_p = rnd ? 0.9f : 1.f, .min_p = 0,
                                         .top_k = rnd ? 40 : -1, .seed = 1000u + (uint64_t)s, .step = (uint64_t)it};
        }
        CHECK(step(rg, &q[0], n_new, sp, tg, lg, false) == CLLM_OK, "graph decode S=%d: %s", S, cllm_last_error());
        CHECK(step(re, &q[1], n_new, sp, te, le, false) == CLLM_OK, "eager decode S=%d: %s", S, cllm_last_error());
        for (int s = 0; s < S; s++) {
            CHECK(tg[s] == te[s], "S=%d step %d seq %d (context %d): graph token %d, eager token %d", S, it, s,
                  q[0].len[s], tg[s], te[s]);
            double d = 0;
            for (int v = 0; v < V; v++) {
                double x = fabs((double)lg[(size_t)s * V + v] - le[(size_t)s * V + v]);
                if (!(x <= d)) d = x; /* NaN propagates */
            }
            if (!(d <= worst)) worst = d;
            CHECK(d <= 1e-3, "S=%d step %d seq %d: logits differ by %g", S, it, s, d);
        }
        for (int s = 0; s < S; s++)
            for (int k = 0; k < 2; k++) q[k].ids[(size_t)s * MAX_LEN + q[k].len[s]++] = tg[s];
    }
    cllm_runner_graph_stats(rg, NULL, &rep1, NULL);
    cllm_runner_graph_stats(re, NULL, &rep_e, NULL);
    CHECK(rep1 - rep0 == (graphs ? STEPS : 0), "S=%d: %llu graph replays for %d decode steps", S, (unsigned long long)(rep1 - rep0),
          STEPS);
    CHECK(rep_e == 0, "the enforce_eager runner replayed %llu graphs", (unsigned long long)rep_e);
    printf("batch %2d: %d decode steps (graphs: %s), max |logits graph - eager| = %.3g\n", S, STEPS, graphs ? "yes" : "no", worst);
    for (int k = 0; k < 2; k++) free(q[k].ids), free(q[k].len), free(q[k].bt);
    free(sp), free(tg), free(te), free(lg), free(le), free(n_new);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_cuda_graph MODEL_DIR cuda|cpu\n");
        return 2;
    }
    bool cuda = !strcmp(argv[2], "cuda");
    cllm_model *mg = load(argv[1], cuda ? CLLM_DEVICE_CUDA : CLLM_DEVICE_CPU, false);
    if (!mg) return 1;
    cllm_runner *rg = cllm_model_runner(mg);
    int V = cllm_model_vocab_size(mg), ng = 0;
    double cap_ms = 0;
    cllm_runner_graph_stats(rg, &ng, NULL, &cap_ms);
    if (!cuda) {
        CHECK(ng == 0, "CPU backend captured %d graphs", ng);
        cllm_model *me = load(argv[1], CLLM_DEVICE_CPU, true);
        if (me) {
            run_batch(rg, cllm_model_runner(me), 3, V, false); /* both eager: the runner path is unchanged */
            cllm_model_destroy(me);
        }
        cllm_model_destroy(mg);
        printf("%s\n", fails ? "FAILED" : "cpu: no graphs, decode ok");
        return fails ? 1 : 0;
    }
    CHECK(ng == 6, "expected graphs for 1, 2, 4, 8, 16, 24; got %d", ng);
    printf("captured %d graphs in %.1f ms\n", ng, cap_ms);
    cllm_model *me = load(argv[1], CLLM_DEVICE_CUDA, true);
    if (!me) return 1;
    cllm_runner *re = cllm_model_runner(me);
    cllm_runner_graph_stats(re, &ng, NULL, NULL);
    CHECK(ng == 0, "enforce_eager captured %d graphs", ng);
    int sizes[] = {1, 3, 17};
    for (int i = 0; i < 3 && !fails; i++) run_batch(rg, re, sizes[i], V, true);
    cllm_model_destroy(me);
    cllm_model_destroy(mg);
    printf("%s\n", fails ? "FAILED" : "graph decode == eager decode");
    return fails ? 1 : 0;
}
