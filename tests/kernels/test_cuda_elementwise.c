/* CUDA vs CPU reference: upload (F32/BF16/F16 -> bf16), embedding, rmsnorm
 * (with and without fused residual), head_rmsnorm, rope, the fused q/k
 * norm + rope + KV write, silu_mul, gather_rows, over a sweep of shapes (odd
 * sizes, 1, large). */
#include "kt_util.h"

static cllm_backend *be;

static void t_upload(size_t n) {
    float *h = kt_rand(n, 3.f, 0.f);
    uint16_t *hb = malloc(n * 2 + 2), *hh = malloc(n * 2 + 2);
    float *ref = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        float x = kt_unif(3.f);
        h[i] = x;
        hb[i] = cllm_f32_to_bf16(x);
        hh[i] = cllm_f32_to_f16(x);
    }
    void *d = kt_dev_poison(n * 2 + 6);
    char nm[96];
    /* F32: device rounding must equal host round-to-nearest-even exactly. */
    for (size_t i = 0; i < n; i++) ref[i] = kt_bf(h[i]);
    KT_OK(be->ops->upload(be, d, 3, h, CLLM_DTYPE_F32, n));
    float *g = kt_get_bf16((uint16_t *)d + 3, n);
    snprintf(nm, sizeof nm, "upload f32 n=%zu off=3", n);
    kt_check(nm, g, ref, n, 0, 0);
    free(g);
    KT_OK(be->ops->upload(be, d, 0, hb, CLLM_DTYPE_BF16, n));
    g = kt_get_bf16(d, n);
    for (size_t i = 0; i < n; i++) ref[i] = cllm_bf16_to_f32(hb[i]);
    snprintf(nm, sizeof nm, "upload bf16 n=%zu", n);
    kt_check(nm, g, ref, n, 0, 0);
    free(g);
    KT_OK(be->ops->upload(be, d, 0, hh, CLLM_DTYPE_F16, n));
    g = kt_get_bf16(d, n);
    for (size_t i = 0; i < n; i++) ref[i] = kt_bf(cllm_f16_to_f32(hh[i]));
    snprintf(nm, sizeof nm, "upload f16 n=%zu", n);
    kt_check(nm, g, ref, n, 0, 0);
    free(g), free(h), free(hb), free(hh), free(ref);
    cudaFree(d);
}

/* vs > 0: a vocabulary shard (rows [vs, vs + V)); ids range over a larger
 * vocabulary, the others give zero rows. */
static void t_embedding(int T, int V, int E, int vs) {
    float *tab = kt_rand((size_t)V * E, 1.f, 0.f);
    int32_t *ids = malloc(T * 4);
    for (int t = 0; t < T; t++) ids[t] = vs ? kt_int(V + 2 * vs) : kt_int(V);
    float *ref = malloc((size_t)T * E * 4);
    KT_OK(cllm_cpu_embedding(ids, T, tab, vs, V, E, ref));
    void *dt = kt_dev_bf16(tab, (size_t)V * E), *di = kt_dev_copy(ids, T * 4), *dout = kt_dev_poison((size_t)T * E * 2);
    KT_OK(be->ops->embedding(be, di, T, dt, vs, V, E, dout));
    float *g = kt_get_bf16(dout, (size_t)T * E);
    char nm[96];
    snprintf(nm, sizeof nm, "embedding T=%d V=%d E=%d vocab_start=%d", T, V, E, vs);
    kt_check(nm, g, ref, (size_t)T * E, 0, 0);
    free(tab), free(ids), free(ref), free(g);
    cudaFree(dt), cudaFree(di), cudaFree(dout);
}

/* copy2d: f32 rows (the logits' vocabulary shards laid side by side) against
 * the CPU backend's copy2d. */
static void t_copy2d(size_t rows, size_t width, size_t src_pitch, size_t dst_pitch) {
    float *src = kt_rand(rows * src_pitch, 1.f, 0.f);
    float *ref = calloc(rows * dst_pitch, 4);
    cllm_backend *cpu = NULL;
    KT_OK(cllm_backend_cpu_create(1, &cpu));
    KT_OK(cpu->ops->copy2d(cpu, ref, dst_pitch * 4, src, src_pitch * 4, width * 4, rows));
    cllm_backend_destroy(cpu);
    float *zero = calloc(rows * dst_pitch, 4);
    void *ds = kt_dev_copy(src, rows * src_pitch * 4), *dd = kt_dev_copy(zero, rows * dst_pitch * 4);
    KT_OK(be->ops->copy2d(be, dd, dst_pitch * 4, ds, src_pitch * 4, width * 4, rows));
    KT_OK(be->ops->sync(be));
    float *g = malloc(rows * dst_pitch * 4);
    cudaMemcpy(g, dd, rows * dst_pitch * 4, cudaMemcpyDeviceToHost);
    char nm[96];
    snprintf(nm, sizeof nm, "copy2d rows=%zu width=%zu pitches %zu/%zu", rows, width, src_pitch, dst_pitch);
    kt_check(nm, g, ref, rows * dst_pitch, 0, 0);
    free(src), free(ref), free(zero), free(g);
    cudaFree(ds), cudaFree(dd);
}

static void t_rmsnorm(int rows, int E, int fused) {
    size_t n = (size_t)rows * E;
    float *x = kt_rand(n, 2.f, 0.f), *res = kt_rand(n, 2.f, 0.f), *w = kt_rand(E, 0.5f, 1.f);
    float *ref = malloc(n * 4), *res_ref = malloc(n * 4);
    memcpy(res_ref, res, n * 4);
    void *dx = kt_dev_bf16(x, n), *dr = kt_dev_bf16(res, n), *dw = kt_dev_bf16(w, E), *dout = kt_dev_poison(n * 2);
    KT_OK(cllm_cpu_rmsnorm(x, fused ? res_ref : NULL, w, rows, E, 1e-6f, ref));
    KT_OK(be->ops->rmsnorm(be, dx, fused ? dr : NULL, dw, rows, E, 1e-6f, dout));
    float *g = kt_get_bf16(dout, n);
    char nm[96];
    snprintf(nm, sizeof nm, "rmsnorm%s rows=%d E=%d", fused ? "+residual" : "", rows, E);
    kt_check(nm, g, ref, n, 2e-2f, 1.6e-2f);
    if (fused) {
        float *gr = kt_get_bf16(dr, n);
        snprintf(nm, sizeof nm, "rmsnorm residual-out rows=%d E=%d", rows, E);
        kt_check(nm, gr, res_ref, n, 1e-2f, 8e-3f);
        free(gr);
    }
    free(x), free(res), free(w), free(ref), free(res_ref), free(g);
    cudaFree(dx), cudaFree(dr), cudaFree(dw), cudaFree(dout);
}

static void t_head_rmsnorm(int T, int nh, int D, int extra) {
    int stride = nh * D + extra;
    size_t n = (size_t)T * stride;
    float *x = kt_rand(n, 2.f, 0.f), *w = kt_rand(D, 0.5f, 1.f);
    void *dx = kt_dev_bf16(x, n), *dw = kt_dev_bf16(w, D);
    KT_OK(cllm_cpu_head_rmsnorm(x, T, nh, D, stride, w, 1e-6f));
    KT_OK(be->ops->head_rmsnorm(be, dx, T, nh, D, stride, dw, 1e-6f));
    float *g = kt_get_bf16(dx, n);
    char nm[96];
    snprintf(nm, sizeof nm, "head_rmsnorm T=%d heads=%d D=%d stride=%d", T, nh, D, stride);
    kt_check(nm, g, x, n, 2e-2f, 1.6e-2f);
    free(x), free(w), free(g);
    cudaFree(dx), cudaFree(dw);
}

static void t_rope(int T, int H, int Hkv, int D, int maxpos) {
    int qs = (H + 2 * Hkv) * D, ks = qs; /* q and k inside a fused qkv row */
    size_t n = (size_t)T * qs;
    float *x = kt_rand(n, 2.f, 0.f);
    int32_t *pos = malloc(T * 4);
    for (int t = 0; t < T; t++) pos[t] = kt_int(maxpos);
    float *inv = malloc(D / 2 * 4);
    for (int i = 0; i < D / 2; i++) inv[i] = powf(500000.f, -2.f * i / D);
    void *dx = kt_dev_bf16(x, n), *dp = kt_dev_copy(pos, T * 4), *di = kt_dev_copy(inv, D / 2 * 4);
    KT_OK(cllm_cpu_rope(x, x + H * D, pos, T, H, Hkv, D, qs, ks, inv));
    KT_OK(be->ops->rope(be, dx, (uint16_t *)dx + H * D, dp, T, H, Hkv, D, qs, ks, di));
    float *g = kt_get_bf16(dx, n);
    char nm[96];
    snprintf(nm, sizeof nm, "rope T=%d H=%d Hkv=%d D=%d maxpos=%d", T, H, Hkv, D, maxpos);
    kt_check(nm, g, x, n, 2e-2f, 1.6e-2f);
    free(x), free(pos), free(inv), free(g);
    cudaFree(dx), cudaFree(dp), cudaFree(di);
}

/* The fused prologue (rope_kv_write.cu) against the CPU ops in their order
 * (head_rmsnorm of q and k when norm, rope, kv_write) and against the CUDA
 * ops it replaces (one bf16 rounding apart at most): q and k in place inside
 * a fused qkv row, the K and V cache slots (padding tokens: slot -1). */
static void t_rope_kv_write(int T, int H, int Hkv, int D, int extra, int norm, int nblocks) {
    const int P = 16, qs = (H + 2 * Hkv) * D + extra;
    const size_t n = (size_t)T * qs, cn = (size_t)nblocks * P * Hkv * D;
    float *x = kt_rand(n, 2.f, 0.f), *qn = kt_rand(D, 0.5f, 1.f), *kn = kt_rand(D, 0.5f, 1.f);
    float *x0 = malloc(n * 4);
    memcpy(x0, x, n * 4); /* the input, before the CPU ops modify x in place */
    int32_t *pos = malloc(T * 4), *slots = malloc(T * 4);
    int *used = calloc((size_t)nblocks * P, sizeof(int));
    for (int t = 0; t < T; t++) {
        pos[t] = kt_int(32768);
        int sl = t % 7 == 6 ? -1 : kt_int(nblocks * P);
        while (sl >= 0 && used[sl]) sl = (sl + 1) % (nblocks * P); /* distinct slots */
        if (sl >= 0) used[sl] = 1;
        slots[t] = sl;
    }
    float *inv = malloc(D / 2 * 4);
    for (int i = 0; i < D / 2; i++) inv[i] = powf(1000000.f, -2.f * i / D);
    float *kc = calloc(cn, 4), *vc = calloc(cn, 4);
    void *dx = kt_dev_bf16(x, n), *dx2 = kt_dev_bf16(x, n), *dqn = kt_dev_bf16(qn, D), *dkn = kt_dev_bf16(kn, D);
    void *dp = kt_dev_copy(pos, T * 4), *ds = kt_dev_copy(slots, T * 4), *di = kt_dev_copy(inv, D / 2 * 4);
    void *dkc = kt_dev_poison(cn * 2), *dvc = kt_dev_poison(cn * 2), *dkc2 = kt_dev_poison(cn * 2),
         *dvc2 = kt_dev_poison(cn * 2);
    KT_CU(cudaMemset(dkc, 0, cn * 2));
    KT_CU(cudaMemset(dvc, 0, cn * 2));
    KT_CU(cudaMemset(dkc2, 0, cn * 2));
    KT_CU(cudaMemset(dvc2, 0, cn * 2));
    cllm_attn_meta hm = {.num_tokens = T, .block_size = P, .slot_mapping = slots};
    cllm_attn_meta dm = hm;
    dm.slot_mapping = ds;
    /* CPU: the separate ops */
    if (norm) {
        KT_OK(cllm_cpu_head_rmsnorm(x, T, H, D, qs, qn, 1e-6f));
        KT_OK(cllm_cpu_head_rmsnorm(x + H * D, T, Hkv, D, qs, kn, 1e-6f));
    }
    KT_OK(cllm_cpu_rope(x, x + H * D, pos, T, H, Hkv, D, qs, qs, inv));
    KT_OK(cllm_cpu_kv_write(x + H * D, x + (H + Hkv) * D, qs, qs, &hm, Hkv, D, kc, vc, NULL));
    /* CUDA: fused, and the separate ops on a copy */
    uint16_t *dq = dx, *dq2 = dx2;
    KT_OK(cllm_cuda_qk_norm_rope_kv_write(dq, dq + H * D, dq + (H + Hkv) * D, qs, qs, dp, T, H, Hkv, D,
                                          norm ? dqn : NULL, norm ? dkn : NULL, 1e-6f, di, &dm, dkc, dvc, NULL, 0));
    if (norm) {
        KT_OK(be->ops->head_rmsnorm(be, dq2, T, H, D, qs, dqn, 1e-6f));
        KT_OK(be->ops->head_rmsnorm(be, dq2 + H * D, T, Hkv, D, qs, dkn, 1e-6f));
    }
    KT_OK(be->ops->rope(be, dq2, dq2 + H * D, dp, T, H, Hkv, D, qs, qs, di));
    KT_OK(be->ops->kv_write(be, dq2 + H * D, dq2 + (H + Hkv) * D, qs, qs, &dm, Hkv, D, dkc2, dvc2, NULL));
    float *g = kt_get_bf16(dx, n), *g2 = kt_get_bf16(dx2, n);
    float *gk = kt_get_bf16(dkc, cn), *gv = kt_get_bf16(dvc, cn), *gk2 = kt_get_bf16(dkc2, cn),
          *gv2 = kt_get_bf16(dvc2, cn);
    char nm[128];
    snprintf(nm, sizeof nm, "qk_norm_rope_kv_write T=%d H=%d Hkv=%d D=%d norm=%d qkv", T, H, Hkv, D, norm);
    kt_check(nm, g, x, n, 2e-2f, 1.6e-2f);
    snprintf(nm, sizeof nm, "qk_norm_rope_kv_write T=%d H=%d Hkv=%d D=%d norm=%d k cache", T, H, Hkv, D, norm);
    kt_check(nm, gk, kc, cn, 2e-2f, 1.6e-2f);
    snprintf(nm, sizeof nm, "qk_norm_rope_kv_write T=%d H=%d Hkv=%d D=%d norm=%d v cache", T, H, Hkv, D, norm);
    kt_check(nm, gv, vc, cn, 0.f, 0.f);
    snprintf(nm, sizeof nm, "qk_norm_rope_kv_write T=%d D=%d norm=%d vs the separate CUDA ops", T, D, norm);
    kt_check(nm, g, g2, n, 1e-6f, 8e-3f);
    kt_check(nm, gk, gk2, cn, 1e-6f, 8e-3f);
    kt_check(nm, gv, gv2, cn, 0.f, 0.f);
    /* fp8 cache (--kv-cache-dtype fp8): the fused op on a fresh copy of the input writes
     * exactly the e4m3 codes of (its bf16 k / v) / scale, the bf16 values the first run
     * put in the bf16 cache; the separate kv_write op writes the same codes. */
    {
        const cllm_kv_quant f8 = {CLLM_DTYPE_F8_E4M3, 0.37f, 1.9f};
        void *dx3 = kt_dev_bf16(x0, n), *dk8 = kt_dev_poison(cn), *dv8 = kt_dev_poison(cn), *dk8b = kt_dev_poison(cn),
             *dv8b = kt_dev_poison(cn);
        KT_CU(cudaMemset(dk8, 0, cn));
        KT_CU(cudaMemset(dv8, 0, cn));
        KT_CU(cudaMemset(dk8b, 0, cn));
        KT_CU(cudaMemset(dv8b, 0, cn));
        uint16_t *dq3 = dx3;
        KT_OK(cllm_cuda_qk_norm_rope_kv_write(dq3, dq3 + H * D, dq3 + (H + Hkv) * D, qs, qs, dp, T, H, Hkv, D,
                                              norm ? dqn : NULL, norm ? dkn : NULL, 1e-6f, di, &dm, dk8, dv8, &f8, 0));
        KT_OK(be->ops->kv_write(be, dq2 + H * D, dq2 + (H + Hkv) * D, qs, qs, &dm, Hkv, D, dk8b, dv8b, &f8));
        uint8_t *k8 = malloc(cn), *v8 = malloc(cn), *k8b = malloc(cn), *v8b = malloc(cn);
        KT_CU(cudaMemcpy(k8, dk8, cn, cudaMemcpyDeviceToHost));
        KT_CU(cudaMemcpy(v8, dv8, cn, cudaMemcpyDeviceToHost));
        KT_CU(cudaMemcpy(k8b, dk8b, cn, cudaMemcpyDeviceToHost));
        KT_CU(cudaMemcpy(v8b, dv8b, cn, cudaMemcpyDeviceToHost));
        int bad = 0, bad2 = 0, first = -1;
        for (size_t i = 0; i < cn; i++) {
            int b = k8[i] != cllm_f32_to_fp8_e4m3(gk[i] / f8.k_scale) || v8[i] != cllm_f32_to_fp8_e4m3(gv[i] / f8.v_scale);
            if (b && first < 0) first = (int)i;
            bad += b;
            bad2 += k8b[i] != cllm_f32_to_fp8_e4m3(gk2[i] / f8.k_scale) || v8b[i] != cllm_f32_to_fp8_e4m3(gv2[i] / f8.v_scale);
        }
        kt_cases += 2, kt_failed_cases += (bad != 0) + (bad2 != 0);
        printf("%s qk_norm_rope_kv_write fp8 T=%d D=%d norm=%d: %d codes differ (first %d: k %02x want %02x)\n",
               bad ? "FAIL" : "PASS", T, D, norm, bad, first, first >= 0 ? k8[first] : 0,
               first >= 0 ? cllm_f32_to_fp8_e4m3(gk[first] / f8.k_scale) : 0);
        printf("%s kv_write fp8 T=%d D=%d: %d codes differ\n", bad2 ? "FAIL" : "PASS", T, D, bad2);
        free(k8), free(v8), free(k8b), free(v8b);
        cudaFree(dx3), cudaFree(dk8), cudaFree(dv8), cudaFree(dk8b), cudaFree(dv8b);
    }
    free(x), free(x0), free(qn), free(kn), free(pos), free(slots), free(used), free(inv), free(kc), free(vc);
    free(g), free(g2), free(gk), free(gv), free(gk2), free(gv2);
    cudaFree(dx), cudaFree(dx2), cudaFree(dqn), cudaFree(dkn), cudaFree(dp), cudaFree(ds), cudaFree(di);
    cudaFree(dkc), cudaFree(dvc), cudaFree(dkc2), cudaFree(dvc2);
}

static void t_silu(int T, int I) {
    size_t n = (size_t)T * I;
    float *gu = kt_rand(2 * n, 4.f, 0.f), *ref = malloc(n * 4);
    void *dg = kt_dev_bf16(gu, 2 * n), *dout = kt_dev_poison(n * 2);
    KT_OK(cllm_cpu_silu_mul(gu, T, I, ref));
    KT_OK(be->ops->silu_mul(be, dg, T, I, dout));
    float *g = kt_get_bf16(dout, n);
    char nm[96];
    snprintf(nm, sizeof nm, "silu_mul T=%d I=%d", T, I);
    kt_check(nm, g, ref, n, 1e-2f, 1.6e-2f);
    free(gu), free(ref), free(g);
    cudaFree(dg), cudaFree(dout);
}

static void t_gather(int R, int S, int E) {
    float *x = kt_rand((size_t)R * E, 1.f, 0.f), *ref = malloc((size_t)S * E * 4);
    int32_t *idx = malloc(S * 4);
    for (int s = 0; s < S; s++) idx[s] = kt_int(R);
    void *dx = kt_dev_bf16(x, (size_t)R * E), *di = kt_dev_copy(idx, S * 4), *dout = kt_dev_poison((size_t)S * E * 2);
    KT_OK(cllm_cpu_gather_rows(x, idx, S, E, ref));
    KT_OK(be->ops->gather_rows(be, dx, di, S, E, dout));
    float *g = kt_get_bf16(dout, (size_t)S * E);
    char nm[96];
    snprintf(nm, sizeof nm, "gather_rows R=%d S=%d E=%d", R, S, E);
    kt_check(nm, g, ref, (size_t)S * E, 0, 0);
    free(x), free(ref), free(idx), free(g);
    cudaFree(dx), cudaFree(di), cudaFree(dout);
}

int main(void) {
    be = kt_cuda();
    size_t un[] = {1, 7, 1000, 8388608 + 13, 20000000};
    for (int i = 0; i < 5; i++) t_upload(un[i]);
    int es[][3] = {{1, 1, 1}, {5, 100, 7}, {64, 1000, 4096}, {3, 152064, 64}, {17, 32000, 8192}};
    for (int i = 0; i < 5; i++) t_embedding(es[i][0], es[i][1], es[i][2], 0);
    for (int i = 0; i < 5; i++) t_embedding(es[i][0], es[i][1], es[i][2], 3 + es[i][1] / 2);
    t_copy2d(1, 1, 1, 1);
    t_copy2d(7, 64128, 64128, 128256);
    t_copy2d(33, 37, 40, 97);
    int rs[][2] = {{1, 1}, {3, 7}, {1, 64}, {5, 1000}, {4096, 2048}, {7, 4096}, {33, 8192}, {2, 5120}, {1, 16384}, {3, 40000}};
    for (int i = 0; i < 10; i++) t_rmsnorm(rs[i][0], rs[i][1], 0), t_rmsnorm(rs[i][0], rs[i][1], 1);
    int hs[][4] = {{1, 1, 64, 0}, {7, 32, 128, 0}, {300, 8, 128, 2048}, {5, 4, 256, 6}, {3, 3, 50, 1}};
    for (int i = 0; i < 5; i++) t_head_rmsnorm(hs[i][0], hs[i][1], hs[i][2], hs[i][3]);
    int ro[][5] = {{1, 1, 1, 64, 10}, {9, 32, 8, 128, 8192}, {4096, 32, 8, 128, 131072}, {5, 16, 2, 256, 100}, {3, 4, 4, 66, 30}};
    for (int i = 0; i < 5; i++) t_rope(ro[i][0], ro[i][1], ro[i][2], ro[i][3], ro[i][4]);
    /* T, H, Hkv, D, row padding, q/k norm, cache blocks of 16 */
    int rk[][7] = {{1, 32, 8, 128, 0, 0, 4},  {1, 32, 4, 128, 0, 1, 4},   {7, 16, 2, 64, 0, 1, 2},
                   {300, 32, 8, 128, 8, 1, 40}, {5, 16, 2, 256, 0, 0, 2}, {3, 4, 4, 66, 2, 1, 1},
                   {64, 28, 4, 128, 0, 0, 8}};
    for (int i = 0; i < 7; i++) t_rope_kv_write(rk[i][0], rk[i][1], rk[i][2], rk[i][3], rk[i][4], rk[i][5], rk[i][6]);
    int si[][2] = {{1, 1}, {3, 7}, {1, 14336}, {4096, 14336}, {5, 1001}};
    for (int i = 0; i < 5; i++) t_silu(si[i][0], si[i][1]);
    int gs[][3] = {{1, 1, 1}, {4096, 64, 4096}, {100, 7, 33}, {10, 10, 8192}};
    for (int i = 0; i < 4; i++) t_gather(gs[i][0], gs[i][1], gs[i][2]);
    /* Bad arguments give INVALID_ARG, not a crash. */
    int bad = be->ops->rmsnorm(be, NULL, NULL, NULL, 1, 0, 1e-6f, NULL) == CLLM_ERR_INVALID_ARG;
    printf("%s rmsnorm E=0 rejected: %s\n", bad ? "PASS" : "FAIL", cllm_last_error());
    kt_cases++, kt_failed_cases += !bad;
    cllm_backend_destroy(be);
    return kt_finish("test_cuda_elementwise");
}
