/* CUDA kv_write + paged attention vs the CPU reference on the same
 * bf16-rounded q/k/v and caches: decode batches (split-K path), prefill
 * chunks over a cached prefix, mixed batches, D 8/32/64/72/80/96/128/256, GQA 1/4/8,
 * block_size 1/8/16/24/32, partial blocks, contexts up to 32k, padding slots, and
 * CUDA-graph style launches (max_seq_len far above the real lengths, padding
 * sequences with seq_len 0 or 1 and slot -1); the tensor-core prefill kernel's
 * tile edges and GQA ratios; the fp8 KV cache (codes equal to the CPU op's,
 * attention equal to the CPU op over the same codes) through every kernel. */
#include "kt_util.h"

static cllm_backend *be;
/* Graph-replay style launches: max_seq_len given to the kernel (0: the true max) and the
 * number of trailing padding sequences (one token, slot -1, seq_len g_pad_len; left out
 * of the CPU reference, their output rows only checked to be finite). */
static int g_maxs_override = 0, g_npad = 0, g_pad_len = 0;
/* The cache format of the next cases: NULL (bf16) or fp8 e4m3 with these scales. */
static const cllm_kv_quant *g_kvq = NULL;

/* nseq sequences with q_len[s] new tokens and seq_len[s] total context. */
static void t_attn(const char *tag, int S, const int *qlen, const int *slen, int H, int Hkv, int D, int P,
                   int pad_slot) {
    int T = 0, maxq = 0, maxs = 0, mbps = 0;
    int32_t *qsl = malloc((S + 1) * 4), *sl = malloc(S * 4);
    qsl[0] = 0;
    for (int s = 0; s < S; s++) {
        qsl[s + 1] = qsl[s] + qlen[s], sl[s] = slen[s];
        if (qlen[s] > maxq) maxq = qlen[s];
        if (slen[s] > maxs) maxs = slen[s];
        int nb = (slen[s] + P - 1) / P;
        if (nb > mbps) mbps = nb;
    }
    T = qsl[S];
    const int npad = g_npad;
    if (npad) { /* append padding sequences */
        qsl = realloc(qsl, (S + npad + 1) * 4), sl = realloc(sl, (S + npad) * 4);
        for (int i = 0; i < npad; i++) qsl[S + i + 1] = qsl[S + i] + 1, sl[S + i] = g_pad_len;
        if (mbps < 1) mbps = 1;
    }
    int B = 0;
    for (int s = 0; s < S; s++) B += (slen[s] + P - 1) / P;
    B += 3;
    /* Block tables: a random permutation of the B blocks. */
    int32_t *perm = malloc(B * 4), *bt = calloc((size_t)(S + npad) * mbps, 4), *slots = malloc((T + npad) * 4);
    for (int i = 0; i < B; i++) perm[i] = i;
    for (int i = B - 1; i > 0; i--) {
        int j = kt_int(i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int used = 0;
    for (int s = 0; s < S; s++) {
        int nb = (slen[s] + P - 1) / P;
        for (int j = 0; j < mbps; j++) bt[s * mbps + j] = j < nb ? perm[used + j] : 0;
        for (int i = 0; i < qlen[s]; i++) {
            int p = slen[s] - qlen[s] + i;
            slots[qsl[s] + i] = bt[s * mbps + p / P] * P + p % P;
        }
        used += nb;
    }
    if (pad_slot && T > 1) slots[kt_int(T)] = -1;
    for (int i = 0; i < npad; i++) {
        slots[T + i] = -1;
        if (g_pad_len > 0) bt[(S + i) * mbps] = perm[kt_int(B)];
    }
    int qs = (H + 2 * Hkv) * D;
    size_t csz = (size_t)B * P * Hkv * D;
    const int Tg = T + npad, Sg = S + npad;
    float *qkv = kt_rand((size_t)Tg * qs, 1.5f, 0.f), *kc = kt_rand(csz, 1.5f, 0.f), *vc = kt_rand(csz, 1.f, 0.f);
    float *ref = malloc((size_t)T * H * D * 4);
    void *dqkv = kt_dev_bf16(qkv, (size_t)Tg * qs), *dkc, *dvc;
    const cllm_kv_quant *kvq = g_kvq;
    uint8_t *kc8 = NULL, *vc8 = NULL; /* fp8: the caches' codes (CPU and device start equal) */
    if (kvq) {
        kc8 = malloc(csz), vc8 = malloc(csz);
        for (size_t i = 0; i < csz; i++)
            kc8[i] = cllm_f32_to_fp8_e4m3(kc[i]), vc8[i] = cllm_f32_to_fp8_e4m3(vc[i]);
        dkc = kt_dev_copy(kc8, csz), dvc = kt_dev_copy(vc8, csz);
    } else {
        dkc = kt_dev_bf16(kc, csz), dvc = kt_dev_bf16(vc, csz);
    }
    void *dqsl = kt_dev_copy(qsl, (Sg + 1) * 4), *dsl = kt_dev_copy(sl, Sg * 4),
         *dbt = kt_dev_copy(bt, (size_t)Sg * mbps * 4);
    void *dslots = kt_dev_copy(slots, Tg * 4), *dout = kt_dev_poison((size_t)Tg * H * D * 2);
    cllm_attn_meta hm = {S, T, maxq, maxs, P, mbps, qsl, sl, bt, slots};
    int dmaxs = g_maxs_override > maxs ? g_maxs_override : maxs;
    cllm_attn_meta dm = {Sg, Tg, maxq, dmaxs, P, mbps, dqsl, dsl, dbt, dslots};
    float scale = 1.f / sqrtf((float)D);
    void *hkc = kvq ? (void *)kc8 : (void *)kc, *hvc = kvq ? (void *)vc8 : (void *)vc;
    KT_OK(cllm_cpu_kv_write(qkv + H * D, qkv + (H + Hkv) * D, qs, qs, &hm, Hkv, D, hkc, hvc, kvq));
    KT_OK(cllm_cpu_attention(qkv, qs, hkc, hvc, &hm, H, Hkv, D, scale, ref, kvq));
    KT_OK(be->ops->kv_write(be, (uint16_t *)dqkv + H * D, (uint16_t *)dqkv + (H + Hkv) * D, qs, qs, &dm, Hkv, D, dkc,
                            dvc, kvq));
    KT_OK(be->ops->attention(be, dqkv, qs, dkc, dvc, &dm, H, Hkv, D, scale, dout, kvq));
    char nm[160];
    float *gk = NULL, *gv = NULL;
    int bad = 0;
    if (kvq) {
        uint8_t *g8k = malloc(csz), *g8v = malloc(csz);
        KT_CU(cudaMemcpy(g8k, dkc, csz, cudaMemcpyDeviceToHost));
        KT_CU(cudaMemcpy(g8v, dvc, csz, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < csz; i++) bad += g8k[i] != kc8[i] || g8v[i] != vc8[i];
        free(g8k), free(g8v);
    } else {
        gk = kt_get_bf16(dkc, csz), gv = kt_get_bf16(dvc, csz);
        for (size_t i = 0; i < csz; i++) bad += gk[i] != kc[i] || gv[i] != vc[i];
    }
    snprintf(nm, sizeof nm, "kv_write %s%s T=%d Hkv=%d D=%d P=%d", kvq ? "fp8 " : "", tag, T, Hkv, D, P);
    kt_cases++, kt_failed_cases += bad != 0;
    printf("%s %-60s %d cache elements differ\n", bad ? "FAIL" : "PASS", nm, bad);
    float *g = kt_get_bf16(dout, (size_t)Tg * H * D);
    snprintf(nm, sizeof nm, "attention %s%s S=%d T=%d maxlen=%d/%d H=%d Hkv=%d D=%d P=%d pad=%d", kvq ? "fp8 " : "",
             tag, S, T, maxs, dmaxs, H, Hkv, D, P, npad);
    kt_check(nm, g, ref, (size_t)T * H * D, 1.5e-2f, 2e-2f);
    if (npad) {
        int nonfinite = 0;
        for (size_t i = (size_t)T * H * D; i < (size_t)Tg * H * D; i++) nonfinite += !isfinite(g[i]);
        kt_cases++, kt_failed_cases += nonfinite != 0;
        printf("%s padding rows finite (%d not)\n", nonfinite ? "FAIL" : "PASS", nonfinite);
    }
    free(qsl), free(sl), free(perm), free(bt), free(slots), free(qkv), free(kc), free(vc), free(ref), free(gk), free(gv),
        free(g), free(kc8), free(vc8);
    cudaFree(dqkv), cudaFree(dkc), cudaFree(dvc), cudaFree(dqsl), cudaFree(dsl), cudaFree(dbt), cudaFree(dslots),
        cudaFree(dout);
}

static void decode(const char *tag, int S, int maxctx, int H, int Hkv, int D, int P) {
    int *q = malloc(S * 4), *l = malloc(S * 4);
    for (int s = 0; s < S; s++) q[s] = 1, l[s] = 1 + kt_int(maxctx);
    l[0] = maxctx;
    t_attn(tag, S, q, l, H, Hkv, D, P, 0);
    free(q), free(l);
}

int main(void) {
    be = kt_cuda();
    decode("decode", 1, 1, 8, 8, 64, 16);
    decode("decode", 64, 4096, 32, 8, 128, 16);
    decode("decode", 3, 8192, 32, 8, 128, 16);
    decode("decode", 5, 8192, 64, 8, 128, 32);
    decode("decode", 9, 3000, 16, 4, 256, 32);
    decode("decode", 16, 777, 12, 12, 64, 16);
    decode("decode", 2, 8192, 16, 2, 256, 16);
    /* every head_dim family: exact 64/128/256 and run-time D (multiple of 8) */
    int Ds[] = {8, 32, 64, 80, 96, 128, 256};
    for (int i = 0; i < 7; i++) {
        decode("decode-D", 1, 2048, 8, 2, Ds[i], 16);
        decode("decode-D", 4, 700, 4, 4, Ds[i], 16);
        int q[] = {37, 1, 64}, l[] = {100, 300, 64};
        t_attn("mixed-D", 3, q, l, 8, 2, Ds[i], 16, 1);
    }
    decode("decode-long", 1, 32768, 32, 8, 128, 16);
    /* GQA 8 and 1, block sizes that are not multiples of 16 (per-key block lookup) */
    decode("decode-G8", 7, 3000, 64, 8, 128, 16);
    decode("decode-G1", 5, 1500, 8, 8, 128, 16);
    decode("decode-G16", 3, 1000, 32, 2, 128, 16);
    decode("decode-P8", 6, 2000, 32, 8, 128, 8);
    decode("decode-P24", 4, 2500, 16, 4, 64, 24);
    decode("decode-P1", 2, 300, 8, 2, 256, 1);
    /* CUDA-graph style: max_seq_len far above the real lengths, padding sequences
     * with seq_len 0 / 1 and slot -1 after the real ones */
    g_maxs_override = 32768;
    decode("graph", 9, 1000, 32, 8, 128, 16);
    g_npad = 3, g_pad_len = 0;
    decode("graph-pad0", 5, 3000, 32, 8, 128, 16);
    g_pad_len = 1;
    decode("graph-pad1", 4, 200, 32, 8, 64, 16);
    g_maxs_override = 0;
    decode("pad1", 4, 5000, 32, 8, 128, 16);
    g_npad = 0;
    decode("decode-long", 1, 5000, 32, 8, 72, 32);
    {   /* one long prefill, no prefix */
        int q[] = {4096}, l[] = {4096};
        t_attn("prefill", 1, q, l, 4, 1, 64, 16, 0);
    }
    {   /* prefill chunks over cached prefixes + decode tokens, padding slot */
        int q[] = {37, 1, 200, 1, 1, 5}, l[] = {100, 513, 1000, 17, 1, 5};
        t_attn("mixed", 6, q, l, 8, 2, 128, 16, 1);
        t_attn("mixed", 6, q, l, 32, 8, 128, 32, 0);
        t_attn("mixed", 6, q, l, 8, 8, 64, 32, 1);
        t_attn("mixed", 6, q, l, 16, 2, 256, 16, 0);
    }
    {
        int q[] = {512, 3}, l[] = {2048, 8000};
        t_attn("chunk", 2, q, l, 8, 2, 256, 32, 0);
    }
    /* Unsupported head_dim (not a multiple of 8, or > 256) is rejected. */
    cllm_attn_meta m = {1, 1, 1, 1, 16, 1, NULL, NULL, NULL, NULL};
    int bad[] = {12, 264};
    for (int i = 0; i < 2; i++) {
        int ok = be->ops->attention(be, (void *)16, 1024, (void *)16, (void *)16, &m, 1, 1, bad[i], 1.f,
                                    (void *)16, NULL) == CLLM_ERR_INVALID_ARG;
        printf("%s attention D=%d rejected: %s\n", ok ? "PASS" : "FAIL", bad[i], cllm_last_error());
        kt_cases++, kt_failed_cases += !ok;
    }
    /* Tensor-core prefill kernel: chunk lengths around its 64-row tiles and 64/32-key
     * tiles, every GQA ratio (rows = tokens x heads of a group), long prompts (split-K
     * when the grid is small), prefixes not a multiple of the tile, block sizes 1..32. */
    {
        int q1[] = {1, 2, 15, 16, 17, 63, 64, 65, 127, 129, 300};
        for (int i = 0; i < 11; i++) {
            int q[] = {q1[i]}, l[] = {q1[i]};
            t_attn("prefill-len", 1, q, l, 8, 2, 128, 16, 0);
            int l2[] = {q1[i] + 77};
            t_attn("prefill-prefix", 1, q, l2, 32, 8, 128, 16, 0);
        }
        int G[] = {1, 2, 4, 5, 8, 16};
        for (int i = 0; i < 6; i++) {
            int q[] = {100, 33}, l[] = {100, 1000};
            t_attn("prefill-G", 2, q, l, 2 * G[i], 2, 128, 16, 0);
            t_attn("prefill-G64", 2, q, l, 2 * G[i], 2, 64, 8, 1);
            t_attn("prefill-G256", 2, q, l, 2 * G[i], 2, 256, 32, 0);
        }
        int q[] = {2048}, l[] = {2048};
        t_attn("prefill-2048", 1, q, l, 32, 8, 128, 16, 0);
        int qb[] = {1000, 1, 1, 1, 250}, lb[] = {3000, 4000, 17, 2, 250};
        t_attn("prefill-mixed", 5, qb, lb, 32, 8, 128, 16, 1);
        t_attn("prefill-mixed-P1", 5, qb, lb, 16, 4, 64, 1, 0);
        t_attn("prefill-mixed-P24", 5, qb, lb, 16, 4, 128, 24, 0);
        int qc[] = {64}, lc[] = {20000};
        t_attn("prefill-split", 1, qc, lc, 32, 8, 128, 16, 0);
        g_maxs_override = 32768; /* graph style: max_seq_len above the real lengths */
        t_attn("prefill-graph", 5, qb, lb, 32, 8, 128, 16, 0);
        g_maxs_override = 0;
    }
    /* fp8 KV cache (--kv-cache-dtype fp8): codes written as the CPU op writes them,
     * attention equal to the CPU op over the same codes, every kernel: decode (tensor
     * cores), prefill (tensor cores), the CUDA-core kernel (D 80, G > 8 decode). */
    {
        const cllm_kv_quant f8 = {CLLM_DTYPE_F8_E4M3, 0.05f, 0.03f}, f8u = {CLLM_DTYPE_F8_E4M3, 1.0f, 1.0f};
        g_kvq = &f8;
        decode("decode", 64, 4096, 32, 8, 128, 16);
        decode("decode", 3, 8192, 32, 8, 128, 16);
        decode("decode", 9, 3000, 16, 4, 256, 32);
        decode("decode", 16, 777, 12, 12, 64, 16);
        decode("decode-G16", 3, 1000, 32, 2, 128, 16);
        decode("decode-D80", 4, 700, 4, 4, 80, 16);
        int q[] = {37, 1, 200, 1, 1, 5}, l[] = {100, 513, 1000, 17, 1, 5};
        t_attn("mixed", 6, q, l, 32, 8, 128, 16, 1);
        t_attn("mixed", 6, q, l, 16, 2, 256, 16, 0);
        t_attn("mixed", 6, q, l, 8, 8, 64, 32, 1);
        t_attn("mixed-D80", 6, q, l, 8, 2, 80, 16, 1);
        int qp[] = {2048}, lp[] = {2048};
        t_attn("prefill-2048", 1, qp, lp, 32, 8, 128, 16, 0);
        g_maxs_override = 32768;
        g_npad = 3, g_pad_len = 1;
        decode("graph-pad1", 4, 200, 32, 8, 128, 16);
        g_maxs_override = 0, g_npad = 0;
        g_kvq = &f8u;
        decode("decode-unit-scale", 5, 2000, 32, 8, 128, 16);
        t_attn("mixed-unit-scale", 6, q, l, 32, 8, 128, 16, 0);
        g_kvq = NULL;
    }
    /* Adaptive decode split (cllm_cuda_attention_adaptive_split): graph-style launches sized
     * for max_seq_len 32768 over short and mixed-length sequences (rows using 1, some or all
     * of the splits), padding rows, bf16 and fp8 caches. */
    cllm_cuda_attention_adaptive_split(1);
    {
        g_maxs_override = 32768;
        decode("adaptive-graph", 9, 1000, 32, 8, 128, 16);
        decode("adaptive-graph", 3, 200, 32, 8, 64, 16);
        decode("adaptive-graph", 5, 9000, 16, 4, 256, 32);
        decode("adaptive-graph-long", 2, 32768, 32, 8, 128, 16);
        g_npad = 3, g_pad_len = 0;
        decode("adaptive-graph-pad0", 5, 3000, 32, 8, 128, 16);
        g_pad_len = 1;
        decode("adaptive-graph-pad1", 4, 600, 32, 8, 128, 16);
        g_npad = 0;
        const cllm_kv_quant f8 = {CLLM_DTYPE_F8_E4M3, 0.05f, 0.03f};
        g_kvq = &f8;
        decode("adaptive-graph", 7, 5000, 32, 8, 128, 16);
        g_kvq = NULL;
        g_maxs_override = 0;
        decode("adaptive", 64, 4096, 32, 8, 128, 16);
        decode("adaptive", 1, 128, 32, 8, 128, 16);
        int q[] = {37, 1, 200, 1, 1, 5}, l[] = {100, 513, 1000, 17, 1, 5};
        t_attn("adaptive-mixed", 6, q, l, 32, 8, 128, 16, 1);
    }
    cllm_cuda_attention_adaptive_split(0);
    /* A cache dtype the kernels do not read is refused, not computed. */
    {
        cllm_kv_quant f16 = {CLLM_DTYPE_F16, 1.0f, 1.0f};
        int ok = be->ops->kv_write(be, (void *)16, (void *)16, 8, 8, &m, 1, 8, (void *)16, (void *)16, &f16) ==
                     CLLM_ERR_INVALID_ARG &&
                 be->ops->attention(be, (void *)16, 8, (void *)16, (void *)16, &m, 1, 1, 8, 1.f, (void *)16, &f16) ==
                     CLLM_ERR_INVALID_ARG;
        printf("%s f16 KV cache refused: %s\n", ok ? "PASS" : "FAIL", cllm_last_error());
        kt_cases++, kt_failed_cases += !ok;
    }
    cllm_backend_destroy(be);
    return kt_finish("test_cuda_attention");
}
