/* The CPU mixture-of-experts ops (backend.h: moe_route, moe_experts,
 * moe_combine) against naive formulations written here in double precision
 * from transformers' Qwen3MoeSparseMoeBlock / MixtralSparseMoeBlock: softmax,
 * sort for the top k, renormalize; each token's experts applied densely one
 * by one. Shapes: tokens 1..1000, experts 8..128, top-k 1..8, expert subsets
 * (expert parallelism), through the backend's op table. */
#include "backend/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0, g_cases = 0;
static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}
static float *randv(size_t n, double scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = (float)((urand() * 2 - 1) * scale);
    return p;
}

static void check(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) {
            if (bad < 5) fprintf(stderr, "  %s: [%zu] got %.7g want %.7g\n", what, i, got[i], ref[i]);
            bad++;
        }
    }
    g_cases++;
    if (bad) { fprintf(stderr, "FAIL %s: %d/%zu mismatches\n", what, bad, n); g_fail++; }
}

/* Routing: softmax (double), experts sorted by probability (ties: lower id), top k, renormalized. */
static void test_route(cllm_backend *be, int T, int NE, int k, bool renorm) {
    float *logits = randv((size_t)T * NE, 4.0);
    if (T > 1) logits[NE] = logits[NE + 1]; /* a tie: the lower id must come first */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * k);
    float *w = malloc(sizeof(float) * (size_t)T * k);
    double *wref = malloc(sizeof(double) * (size_t)T * k);
    int bad_ids = 0;
    if (be->ops->moe_route(be, logits, T, NE, k, renorm, ids, w) != CLLM_OK) {
        fprintf(stderr, "FAIL moe_route T=%d NE=%d k=%d: %s\n", T, NE, k, cllm_last_error());
        g_fail++;
        goto done;
    }
    double *p = malloc(sizeof(double) * NE);
    int *order = malloc(sizeof(int) * NE);
    for (int t = 0; t < T; t++) {
        const float *x = logits + (size_t)t * NE;
        double mx = x[0], s = 0;
        for (int e = 1; e < NE; e++) mx = x[e] > mx ? x[e] : mx;
        for (int e = 0; e < NE; e++) s += exp(x[e] - mx);
        for (int e = 0; e < NE; e++) p[e] = exp(x[e] - mx) / s, order[e] = e;
        for (int i = 1; i < NE; i++) /* insertion sort: descending p, ascending id on ties */
            for (int j = i; j > 0 && (x[order[j]] > x[order[j - 1]] ||
                                      (x[order[j]] == x[order[j - 1]] && order[j] < order[j - 1])); j--) {
                int tmp = order[j]; order[j] = order[j - 1]; order[j - 1] = tmp;
            }
        double sk = 0;
        for (int j = 0; j < k; j++) sk += p[order[j]];
        for (int j = 0; j < k; j++) {
            if (ids[(size_t)t * k + j] != order[j]) bad_ids++;
            wref[(size_t)t * k + j] = renorm ? p[order[j]] / sk : p[order[j]];
        }
    }
    free(p), free(order);
    char nm[96];
    snprintf(nm, sizeof nm, "moe_route T=%d NE=%d k=%d renorm=%d", T, NE, k, renorm);
    if (bad_ids) { fprintf(stderr, "FAIL %s: %d wrong expert ids\n", nm, bad_ids); g_fail++; }
    check(nm, w, wref, (size_t)T * k, 1e-6, 1e-5);
done:
    free(logits), free(ids), free(w), free(wref);
}

/* Experts: out[t] = sum_j w[t,j] * down_e(silu(gate_e x) * up_e x) over the
 * j whose expert e is in [start, start + nl); then moe_combine. */
static void test_experts(cllm_backend *be, int T, int E, int I, int NE, int k, int start, int nl) {
    float *x = randv((size_t)T * E, 1.0), *gu = randv((size_t)nl * 2 * I * E, 0.3), *dn = randv((size_t)nl * E * I, 0.3);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * k);
    float *w = randv((size_t)T * k, 1.0), *out = malloc(sizeof(float) * (size_t)T * E);
    for (int t = 0; t < T; t++) /* distinct experts per token, as top-k gives */
        for (int j = 0; j < k; j++) {
            int e;
            bool dup;
            do {
                e = (int)(urand() * NE);
                dup = false;
                for (int i = 0; i < j; i++) dup |= ids[(size_t)t * k + i] == e;
            } while (dup);
            ids[(size_t)t * k + j] = e;
        }
    cllm_weight *wg = calloc((size_t)nl, sizeof *wg), *wd = calloc((size_t)nl, sizeof *wd);
    for (int e = 0; e < nl; e++) {
        wg[e] = (cllm_weight){.data = gu + (size_t)e * 2 * I * E, .n = 2 * I, .k = E};
        wd[e] = (cllm_weight){.data = dn + (size_t)e * E * I, .n = E, .k = I};
    }
    void *ws = malloc(be->ops->moe_workspace_bytes(T, k, E, I));
    double *ref = calloc((size_t)T * E, sizeof(double)), *h = malloc(sizeof(double) * 2 * I);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int e = ids[(size_t)t * k + j] - start;
            if (e < 0 || e >= nl) continue;
            const float *xt = x + (size_t)t * E, *G = gu + (size_t)e * 2 * I * E, *D = dn + (size_t)e * E * I;
            for (int r = 0; r < 2 * I; r++) {
                double s = 0;
                for (int c = 0; c < E; c++) s += (double)G[(size_t)r * E + c] * xt[c];
                h[r] = s;
            }
            for (int i = 0; i < I; i++) h[i] = h[i] / (1 + exp(-h[i])) * h[I + i];
            for (int r = 0; r < E; r++) {
                double s = 0;
                for (int i = 0; i < I; i++) s += (double)D[(size_t)r * I + i] * h[i];
                ref[(size_t)t * E + r] += w[(size_t)t * k + j] * s;
            }
        }
    char nm[128];
    snprintf(nm, sizeof nm, "moe_experts T=%d E=%d I=%d NE=%d k=%d experts [%d, %d)", T, E, I, NE, k, start, start + nl);
    if (be->ops->moe_experts(be, x, T, E, ids, w, k, wg, wd, start, nl, I, ws, out) != CLLM_OK) {
        fprintf(stderr, "FAIL %s: %s\n", nm, cllm_last_error());
        g_fail++;
    } else {
        check(nm, out, ref, (size_t)T * E, 1e-4, 1e-4);
    }
    /* combine: rows permuted, some -1 */
    int M = T * k;
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)M);
    float *y = randv((size_t)M * E, 1.0), *co = malloc(sizeof(float) * (size_t)T * E);
    double *cref = calloc((size_t)T * E, sizeof(double));
    for (int i = 0; i < M; i++) rows[i] = urand() < 0.1 ? -1 : (int32_t)((i * 7 + 3) % M);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int r = rows[(size_t)t * k + j];
            if (r >= 0)
                for (int c = 0; c < E; c++) cref[(size_t)t * E + c] += w[(size_t)t * k + j] * y[(size_t)r * E + c];
        }
    snprintf(nm, sizeof nm, "moe_combine n=%d k=%d E=%d", T, k, E);
    if (be->ops->moe_combine(be, y, rows, w, T, k, E, co) != CLLM_OK) {
        fprintf(stderr, "FAIL %s: %s\n", nm, cllm_last_error());
        g_fail++;
    } else {
        check(nm, co, cref, (size_t)T * E, 1e-5, 1e-5);
    }
    free(rows), free(y), free(co), free(cref);
    free(x), free(gu), free(dn), free(ids), free(w), free(out), free(wg), free(wd), free(ws), free(ref), free(h);
}

int main(void) {
    cllm_backend *be = NULL;
    if (cllm_backend_cpu_create(1, &be) != CLLM_OK) { fprintf(stderr, "FAIL cpu backend\n"); return 1; }
    const int Ts[] = {1, 3, 17, 256, 1000}, NEs[] = {8, 16, 64, 128}, ks[] = {1, 2, 4, 8};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++) test_route(be, Ts[a], NEs[b], ks[c], (a + c) % 2 == 0);
    test_route(be, 5, 8, 8, true); /* k = every expert */
    test_experts(be, 1, 8, 4, 8, 1, 0, 8);
    test_experts(be, 17, 64, 32, 8, 2, 0, 8);      /* every expert local */
    test_experts(be, 256, 64, 32, 16, 4, 4, 4);    /* an expert-parallel rank's 4 of 16 */
    test_experts(be, 100, 24, 12, 128, 8, 96, 32); /* 128 experts, top 8 */
    test_experts(be, 33, 40, 8, 8, 2, 7, 1);       /* one local expert */
    /* errors: bad shapes named */
    cllm_weight w0 = {.data = NULL, .n = 3, .k = 8};
    float x[8] = {0}, o[8], wt[1] = {1};
    int32_t id[1] = {0};
    if (be->ops->moe_experts(be, x, 1, 8, id, wt, 1, &w0, &w0, 0, 1, 4, NULL, o) != CLLM_ERR_INVALID_ARG) {
        fprintf(stderr, "FAIL moe_experts accepted mis-shaped expert weights\n");
        g_fail++;
    }
    if (be->ops->moe_route(be, x, 1, 4, 5, true, id, wt) != CLLM_ERR_INVALID_ARG) {
        fprintf(stderr, "FAIL moe_route accepted top_k > experts\n");
        g_fail++;
    }
    cllm_backend_destroy(be);
    printf("test_cpu_moe: %d cases, %d failures\n", g_cases, g_fail);
    return g_fail ? 1 : 0;
}
