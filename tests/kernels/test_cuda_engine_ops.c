/* The engine's sampling-side CUDA ops vs the CPU reference ops
 * (src/backend/cpu/cpu_sampling_ops.c) on the same random inputs:
 *   apply_penalties (S = 1, 3, 64; V = 1 .. 151936; empty / short / long
 *     histories with repeated, prompt+output overlapping and out-of-range
 *     ids; penalties off and on, repetition on negative and zero logits;
 *     logit bias on rows with and without penalties, 1 .. 300 entries, ids
 *     in the history and out of range; out of place, in place, and a
 *     reused dirty workspace);
 *   logprobs (k = 0, 1, 5, 20, 64; bf16-rounded logits for many ties, -inf
 *     entries, constant rows, out-of-range tokens);
 *   copy_blocks (16-byte and byte paths, many pairs, huge blocks);
 *   mem_info; and bad arguments giving CLLM_ERR_INVALID_ARG on both backends.
 * Outputs are poisoned (NaN / 0xFF) first. Label gpu. */
#include "kt_util.h"
#include <limits.h>

static cllm_backend *be;

static const float cfgs[6][3] = {/* repetition, presence, frequency */
                                 {1.0f, 0.0f, 0.0f}, {1.3f, 0.0f, 0.0f},  {1.0f, 0.5f, 0.25f},
                                 {1.2f, 0.7f, -0.3f}, {0.7f, -0.4f, 1.5f}, {2.0f, 0.0f, 0.1f}};

static int32_t hist_id(int V) {
    int r = kt_int(10);
    if (r == 0) {
        static const int32_t bad[] = {-1, -1000, 0, 3, INT32_MIN, INT32_MAX};
        int b = kt_int(6);
        return b == 2 ? V : b == 3 ? V + 3 : bad[b];
    }
    if (r <= 4) return kt_int(V < 8 ? V : 8); /* a small pool: repeats, prompt/output overlap */
    return kt_int(V);
}

/* Both float arrays equal where both are the same infinity; then kt_check. */
static int check_inf(const char *what, float *got, float *ref, size_t n, float atol, float rtol) {
    for (size_t i = 0; i < n; i++)
        if (isinf(ref[i]) && got[i] == ref[i]) got[i] = ref[i] = 0.0f;
    return kt_check(what, got, ref, n, atol, rtol);
}

static void t_penalties(int S, int V, int cfg0, int len_scale) {
    static const int plen[] = {0, 1, 3, 50, 700, 5000}, olen[] = {0, 1, 2, 17, 300, 2000};
    size_t SV = (size_t)S * V;
    float *logits = malloc(SV * 4 + 4);
    for (size_t i = 0; i < SV; i++) logits[i] = kt_unif(6.0f);
    for (int s = 0; s < S; s++) logits[(size_t)s * V] = 0.0f; /* id 0 (in the pool) at exactly 0 */
    cllm_penalty_params *p = malloc(S * sizeof *p);
    int cap = 16;
    for (int s = 0; s < S; s++) cap += (plen[5] + olen[5]) / len_scale + 8;
    int32_t *ids = calloc((size_t)cap, 4);
    cllm_logit_bias *bias = malloc(sizeof *bias * (size_t)S * 300 + sizeof *bias);
    int used = 0, nbias = 0;
    for (int s = 0; s < S; s++) {
        int c = (s + cfg0) % 6;
        p[s].repetition_penalty = cfgs[c][0], p[s].presence_penalty = cfgs[c][1], p[s].frequency_penalty = cfgs[c][2];
        p[s].num_prompt = plen[(s * 7 + cfg0) % 6] / len_scale;
        p[s].num_output = olen[(s * 5 + cfg0 + 1) % 6] / len_scale;
        used += kt_int(4); /* gaps between the rows' histories */
        p[s].token_start = used;
        for (int i = 0; i < p[s].num_prompt + p[s].num_output; i++) ids[used++] = hist_id(V);
        /* logit bias on 3 rows of 4: a run of distinct ids from a random start (from id 0 at times: the pool),
         * every 7th out of range */
        static const int nb[] = {0, 1, 5, 300};
        p[s].bias_start = nbias;
        p[s].num_bias = nb[(s + cfg0) % 4] < V ? nb[(s + cfg0) % 4] : V;
        int start = kt_int(3) == 0 ? 0 : kt_int(V);
        for (int i = 0; i < p[s].num_bias; i++)
            bias[nbias++] = (cllm_logit_bias){i % 7 == 6 ? V + i : (start + i) % V, kt_unif(100.0f)};
    }
    float *ref = malloc(SV * 4 + 4), *got = malloc(SV * 4 + 4), *ref2 = malloc(SV * 4 + 4);
    void *ws = malloc(cllm_cpu_penalties_workspace_bytes(S, V) + 4);
    KT_OK(cllm_cpu_apply_penalties(logits, S, V, p, ids, bias, ws, ref));
    memcpy(ref2, ref, SV * 4);
    KT_OK(cllm_cpu_apply_penalties(ref2, S, V, p, ids, bias, ws, ref2)); /* applied twice, in place */

    float *dl = kt_dev_copy(logits, SV * 4), *dout = kt_dev_poison(SV * 4);
    void *dp = kt_dev_copy(p, S * sizeof *p), *dids = kt_dev_copy(ids, (size_t)(used + 1) * 4);
    void *dbias = kt_dev_copy(bias, (size_t)(nbias + 1) * sizeof *bias);
    void *dws = kt_dev_poison(be->ops->penalties_workspace_bytes(S, V));
    char what[128];
    KT_OK(be->ops->apply_penalties(be, dl, S, V, dp, dids, dbias, dws, dout));
    KT_OK(be->ops->d2h(be, got, dout, SV * 4));
    snprintf(what, sizeof what, "penalties S=%d V=%d cfg0=%d hist/%d out of place", S, V, cfg0, len_scale);
    kt_check(what, got, ref, SV, 1e-6f, 1e-6f);
    /* In place on the previous output, reusing the dirty workspace. */
    KT_OK(be->ops->apply_penalties(be, dout, S, V, dp, dids, dbias, dws, dout));
    KT_OK(be->ops->d2h(be, got, dout, SV * 4));
    snprintf(what, sizeof what, "penalties S=%d V=%d cfg0=%d hist/%d in place, dirty ws", S, V, cfg0, len_scale);
    kt_check(what, got, ref2, SV, 1e-6f, 1e-6f);
    /* Input untouched by the out-of-place call. */
    KT_OK(be->ops->d2h(be, got, dl, SV * 4));
    snprintf(what, sizeof what, "penalties S=%d V=%d input unchanged", S, V);
    kt_check(what, got, logits, SV, 0.0f, 0.0f);
    free(logits), free(p), free(ids), free(ref), free(ref2), free(got), free(ws), free(bias);
    cudaFree(dl), cudaFree(dout), cudaFree(dp), cudaFree(dids), cudaFree(dws), cudaFree(dbias);
}

static void t_logprobs(int S, int V, int k, float scale, int bf16_ties) {
    size_t SV = (size_t)S * V;
    float *logits = malloc(SV * 4 + 4);
    for (size_t i = 0; i < SV; i++) logits[i] = bf16_ties ? kt_bf(kt_unif(scale)) : kt_unif(scale);
    for (int s = 0; s < S; s++) {
        float *x = logits + (size_t)s * V;
        if (s % 4 == 1) /* a constant row: every id ties */
            for (int v = 0; v < V; v++) x[v] = 0.5f;
        if (s % 4 == 2 && V > 100) /* masked ids */
            for (int j = 0; j < 20; j++) x[kt_int(V)] = -INFINITY;
        if (s % 4 == 3 && V > 3) x[V - 1] = x[kt_int(V - 1)]; /* a tie at a random value */
    }
    int32_t *tok = malloc(S * 4);
    for (int s = 0; s < S; s++) tok[s] = s % 5 == 3 ? (s % 2 ? V : -1) : kt_int(V);
    size_t nk = (size_t)S * (k > 0 ? k : 1);
    float *rtl = malloc(S * 4), *gtl = malloc(S * 4), *rtop = malloc(nk * 4), *gtop = malloc(nk * 4);
    int32_t *rid = malloc(nk * 4), *gid = malloc(nk * 4);
    KT_OK(cllm_cpu_logprobs(logits, S, V, tok, k, rtl, k ? rid : NULL, k ? rtop : NULL));
    void *dl = kt_dev_copy(logits, SV * 4), *dt = kt_dev_copy(tok, S * 4);
    void *dtl = kt_dev_poison(S * 4), *did = k ? kt_dev_poison(nk * 4) : NULL, *dtop = k ? kt_dev_poison(nk * 4) : NULL;
    KT_OK(be->ops->logprobs(be, dl, S, V, dt, k, dtl, did, dtop));
    KT_OK(be->ops->d2h(be, gtl, dtl, S * 4));
    char what[128];
    snprintf(what, sizeof what, "logprobs S=%d V=%d k=%d%s token_logprob", S, V, k, bf16_ties ? " ties" : "");
    check_inf(what, gtl, rtl, S, 1e-4f, 1e-5f);
    if (k > 0) {
        KT_OK(be->ops->d2h(be, gid, did, nk * 4));
        KT_OK(be->ops->d2h(be, gtop, dtop, nk * 4));
        int bad = 0;
        for (size_t i = 0; i < nk; i++)
            if (gid[i] != rid[i] && bad++ < 5)
                fprintf(stderr, "  top_ids row %zu rank %zu: cuda %d cpu %d\n", i / k, i % k, gid[i], rid[i]);
        kt_cases++, kt_failed_cases += bad != 0;
        printf("%s logprobs S=%d V=%d k=%d%s top_ids: %d of %zu differ\n", bad ? "FAIL" : "PASS", S, V, k,
               bf16_ties ? " ties" : "", bad, nk);
        snprintf(what, sizeof what, "logprobs S=%d V=%d k=%d%s top_logprobs", S, V, k, bf16_ties ? " ties" : "");
        check_inf(what, gtop, rtop, nk, 1e-4f, 1e-5f);
    }
    free(logits), free(tok), free(rtl), free(gtl), free(rtop), free(gtop), free(rid), free(gid);
    cudaFree(dl), cudaFree(dt), cudaFree(dtl), cudaFree(did), cudaFree(dtop);
}

/* misalign: offset the cache pointer by 1 byte (forces the byte path). */
static void t_copy_blocks(int B, size_t block_bytes, int n, int misalign) {
    size_t bytes = (size_t)B * block_bytes;
    unsigned char *h = malloc(bytes + 1), *ref = malloc(bytes + 1), *got = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++) h[i] = (unsigned char)kt_next();
    h[bytes] = 0;
    int *perm = malloc(B * sizeof(int));
    for (int i = 0; i < B; i++) perm[i] = i;
    for (int i = B - 1; i > 0; i--) {
        int j = kt_int(i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *pairs = malloc((size_t)(2 * n + 1) * 4);
    for (int i = 0; i < n; i++) pairs[2 * i] = perm[i], pairs[2 * i + 1] = perm[n + i]; /* needs 2n <= B */
    memcpy(ref, h, bytes);
    KT_OK(cllm_cpu_copy_blocks(ref, block_bytes, pairs, n));
    unsigned char *dbase = kt_dev_copy(h, bytes + 1);
    unsigned char *dc = dbase;
    if (misalign) {
        KT_CU(cudaMemcpy(dbase + 1, h, bytes, cudaMemcpyHostToDevice));
        dc = dbase + 1;
    }
    void *dpairs = kt_dev_copy(pairs, (size_t)(2 * n + 1) * 4);
    KT_OK(be->ops->copy_blocks(be, dc, block_bytes, dpairs, n));
    KT_OK(be->ops->d2h(be, got, dc, bytes));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < bytes; i++)
        if (got[i] != ref[i] && bad++ == 0) first = i;
    kt_cases++, kt_failed_cases += bad != 0;
    printf("%s copy_blocks B=%d block_bytes=%zu n=%d%s: %zu bytes differ%s", bad ? "FAIL" : "PASS", B, block_bytes,
           n, misalign ? " misaligned" : "", bad, bad ? "" : "\n");
    if (bad) printf(" (first at block %zu byte %zu)\n", first / block_bytes, first % block_bytes);
    free(h), free(ref), free(got), free(perm), free(pairs);
    cudaFree(dbase), cudaFree(dpairs);
}

static void t_mem_info(void) {
    size_t fr = 0, tot = 0, f2 = 0, t2 = 0;
    KT_OK(be->ops->mem_info(be, &fr, &tot));
    KT_CU(cudaMemGetInfo(&f2, &t2));
    int bad = !(tot > 0 && fr <= tot && tot == t2);
    kt_cases++, kt_failed_cases += bad;
    printf("%s mem_info free=%zu total=%zu (cudaMemGetInfo total %zu)\n", bad ? "FAIL" : "PASS", fr, tot, t2);
}

static void expect_invalid(const char *what, cllm_status got, cllm_status cpu) {
    int bad = got != CLLM_ERR_INVALID_ARG || cpu != CLLM_ERR_INVALID_ARG;
    kt_cases++, kt_failed_cases += bad;
    printf("%s bad args: %s -> cuda %d, cpu %d (want %d)\n", bad ? "FAIL" : "PASS", what, (int)got, (int)cpu,
           (int)CLLM_ERR_INVALID_ARG);
}

static void t_errors(void) {
    float hx[8] = {0}, hy[8];
    int32_t ht[2] = {0, 0}, hi[8];
    cllm_penalty_params hp = {1.0f, 0.0f, 0.0f, 0, 0, 0, 0, 0};
    int32_t hws[8];
    void *dx = kt_dev_poison(64), *dy = kt_dev_poison(64), *dt = kt_dev_copy(ht, 8), *dp = kt_dev_copy(&hp, sizeof hp);
    void *dws = kt_dev_poison(64), *di = kt_dev_poison(64);
    expect_invalid("penalties V=0", be->ops->apply_penalties(be, dx, 1, 0, dp, dt, NULL, dws, dy),
                   cllm_cpu_apply_penalties(hx, 1, 0, &hp, ht, NULL, hws, hy));
    expect_invalid("penalties S=-1", be->ops->apply_penalties(be, dx, -1, 4, dp, dt, NULL, dws, dy),
                   cllm_cpu_apply_penalties(hx, -1, 4, &hp, ht, NULL, hws, hy));
    expect_invalid("penalties NULL out", be->ops->apply_penalties(be, dx, 1, 4, dp, dt, NULL, dws, NULL),
                   cllm_cpu_apply_penalties(hx, 1, 4, &hp, ht, NULL, hws, NULL));
    expect_invalid("penalties NULL workspace", be->ops->apply_penalties(be, dx, 1, 4, dp, dt, NULL, NULL, dy),
                   cllm_cpu_apply_penalties(hx, 1, 4, &hp, ht, NULL, NULL, hy));
    expect_invalid("logprobs k=65", be->ops->logprobs(be, dx, 1, 100, dt, 65, dy, di, dy),
                   cllm_cpu_logprobs(hx, 1, 100, ht, 65, hy, hi, hy));
    expect_invalid("logprobs k>V", be->ops->logprobs(be, dx, 1, 4, dt, 5, dy, di, dy),
                   cllm_cpu_logprobs(hx, 1, 4, ht, 5, hy, hi, hy));
    expect_invalid("logprobs k=-1", be->ops->logprobs(be, dx, 1, 4, dt, -1, dy, di, dy),
                   cllm_cpu_logprobs(hx, 1, 4, ht, -1, hy, hi, hy));
    expect_invalid("logprobs V=0", be->ops->logprobs(be, dx, 1, 0, dt, 0, dy, NULL, NULL),
                   cllm_cpu_logprobs(hx, 1, 0, ht, 0, hy, NULL, NULL));
    expect_invalid("logprobs NULL top_ids", be->ops->logprobs(be, dx, 1, 4, dt, 2, dy, NULL, dy),
                   cllm_cpu_logprobs(hx, 1, 4, ht, 2, hy, NULL, hy));
    expect_invalid("logprobs NULL tokens", be->ops->logprobs(be, dx, 1, 4, NULL, 0, dy, NULL, NULL),
                   cllm_cpu_logprobs(hx, 1, 4, NULL, 0, hy, NULL, NULL));
    expect_invalid("copy_blocks n=-1", be->ops->copy_blocks(be, dx, 16, dt, -1), cllm_cpu_copy_blocks(hx, 16, ht, -1));
    expect_invalid("copy_blocks NULL pairs", be->ops->copy_blocks(be, dx, 16, NULL, 1),
                   cllm_cpu_copy_blocks(hx, 16, NULL, 1));
    /* Valid empty calls succeed. */
    int ok = be->ops->copy_blocks(be, NULL, 16, NULL, 0) == CLLM_OK &&
             be->ops->logprobs(be, NULL, 0, 4, NULL, 0, NULL, NULL, NULL) == CLLM_OK &&
             be->ops->apply_penalties(be, NULL, 0, 4, NULL, NULL, NULL, NULL, NULL) == CLLM_OK && be->ops->sync(be) == CLLM_OK;
    kt_cases++, kt_failed_cases += !ok;
    printf("%s empty calls (n=0, S=0) succeed\n", ok ? "PASS" : "FAIL");
    cudaFree(dx), cudaFree(dy), cudaFree(dt), cudaFree(dp), cudaFree(dws), cudaFree(di);
}

int main(void) {
    (void)kt_rand, (void)kt_dev_bf16, (void)kt_get_bf16; /* kt_util.h helpers this test does not need */
    be = kt_cuda();
    if (!be->ops->apply_penalties || !be->ops->logprobs || !be->ops->copy_blocks || !be->ops->mem_info ||
        !be->ops->penalties_workspace_bytes) {
        fprintf(stderr, "the CUDA backend leaves an engine op NULL\n");
        return 1;
    }
    t_errors();
    t_mem_info();

    static const int Vs[] = {1, 7, 32000, 128256, 151936};
    for (int vi = 0; vi < 5; vi++) {
        int V = Vs[vi];
        for (int c = 0; c < 6; c++) t_penalties(1, V, c, c % 2 ? 1 : 10);
        t_penalties(3, V, 2, 1);
        t_penalties(64, V, 0, 1);
        t_penalties(64, V, 3, 10);
    }

    static const int ks[] = {0, 1, 5, 20, 64};
    for (int vi = 0; vi < 5; vi++)
        for (int ki = 0; ki < 5; ki++) {
            int V = Vs[vi], k = ks[ki];
            if (k > V) continue;
            t_logprobs(1, V, k, 10.0f, ki % 2);
            t_logprobs(3, V, k, 3.0f, 1);
            t_logprobs(64, V, k, 20.0f, ki % 2 == 0);
        }
    t_logprobs(5, 64, 64, 1.0f, 1); /* k == V */

    t_copy_blocks(64, 32768, 5, 0);
    t_copy_blocks(2048, 16 * 8 * 128 * 2, 900, 0);
    t_copy_blocks(16, 36, 7, 0);
    t_copy_blocks(10, 7, 3, 0);
    t_copy_blocks(12, 4096, 6, 1);
    t_copy_blocks(2, 64, 1, 0);
    t_copy_blocks(3, (size_t)40 << 20, 1, 0);   /* chunks capped at 1024 */
    t_copy_blocks(3, ((size_t)33 << 20) + 5, 1, 0); /* byte path, capped chunks */

    cllm_backend_destroy(be);
    return kt_finish("test_cuda_engine_ops");
}
