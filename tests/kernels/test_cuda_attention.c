/* CUDA kv_write + paged attention vs the CPU reference on the same
 * bf16-rounded q/k/v and caches: decode batches (split-K path), prefill
 * chunks over a cached prefix, mixed batches, D 8/32/64/72/80/96/128/256, GQA 1/4/8,
 * block_size 16/32, partial blocks, contexts up to 8k, padding slots. */
#include "kt_util.h"

static cllm_backend *be;

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
    int B = 0;
    for (int s = 0; s < S; s++) B += (slen[s] + P - 1) / P;
    B += 3;
    /* Block tables: a random permutation of the B blocks. */
    int32_t *perm = malloc(B * 4), *bt = malloc((size_t)S * mbps * 4), *slots = malloc(T * 4);
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
    int qs = (H + 2 * Hkv) * D;
    size_t csz = (size_t)B * P * Hkv * D;
    float *qkv = kt_rand((size_t)T * qs, 1.5f, 0.f), *kc = kt_rand(csz, 1.5f, 0.f), *vc = kt_rand(csz, 1.f, 0.f);
    float *ref = malloc((size_t)T * H * D * 4);
    void *dqkv = kt_dev_bf16(qkv, (size_t)T * qs), *dkc = kt_dev_bf16(kc, csz), *dvc = kt_dev_bf16(vc, csz);
    void *dqsl = kt_dev_copy(qsl, (S + 1) * 4), *dsl = kt_dev_copy(sl, S * 4), *dbt = kt_dev_copy(bt, (size_t)S * mbps * 4);
    void *dslots = kt_dev_copy(slots, T * 4), *dout = kt_dev_poison((size_t)T * H * D * 2);
    cllm_attn_meta hm = {S, T, maxq, maxs, P, mbps, qsl, sl, bt, slots};
    cllm_attn_meta dm = {S, T, maxq, maxs, P, mbps, dqsl, dsl, dbt, dslots};
    float scale = 1.f / sqrtf((float)D);
    KT_OK(cllm_cpu_kv_write(qkv + H * D, qkv + (H + Hkv) * D, qs, qs, &hm, Hkv, D, kc, vc));
    KT_OK(cllm_cpu_attention(qkv, qs, kc, vc, &hm, H, Hkv, D, scale, ref));
    KT_OK(be->ops->kv_write(be, (uint16_t *)dqkv + H * D, (uint16_t *)dqkv + (H + Hkv) * D, qs, qs, &dm, Hkv, D, dkc,
                            dvc));
    KT_OK(be->ops->attention(be, dqkv, qs, dkc, dvc, &dm, H, Hkv, D, scale, dout));
    char nm[160];
    float *gk = kt_get_bf16(dkc, csz), *gv = kt_get_bf16(dvc, csz);
    snprintf(nm, sizeof nm, "kv_write %s T=%d Hkv=%d D=%d P=%d", tag, T, Hkv, D, P);
    int bad = 0;
    for (size_t i = 0; i < csz; i++) bad += gk[i] != kc[i] || gv[i] != vc[i];
    kt_cases++, kt_failed_cases += bad != 0;
    printf("%s %-60s %d cache elements differ\n", bad ? "FAIL" : "PASS", nm, bad);
    float *g = kt_get_bf16(dout, (size_t)T * H * D);
    snprintf(nm, sizeof nm, "attention %s S=%d T=%d maxlen=%d H=%d Hkv=%d D=%d P=%d", tag, S, T, maxs, H, Hkv, D, P);
    kt_check(nm, g, ref, (size_t)T * H * D, 1.5e-2f, 2e-2f);
    free(qsl), free(sl), free(perm), free(bt), free(slots), free(qkv), free(kc), free(vc), free(ref), free(gk), free(gv),
        free(g);
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
                                    (void *)16) == CLLM_ERR_INVALID_ARG;
        printf("%s attention D=%d rejected: %s\n", ok ? "PASS" : "FAIL", bad[i], cllm_last_error());
        kt_cases++, kt_failed_cases += !ok;
    }
    cllm_backend_destroy(be);
    return kt_finish("test_cuda_attention");
}
