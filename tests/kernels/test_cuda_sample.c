/* Device Philox-4x32-10 vs cllm_philox_uniform bit for bit over many
 * (seed, step); CUDA sampler vs the CPU sampler (greedy, temperature,
 * top-k, top-p, min-p, combinations) on the same logits and params. */
#include "kt_util.h"

static cllm_backend *be;

static void t_philox(int n) {
    uint64_t *seeds = malloc(n * 8), *steps = malloc(n * 8);
    float *ref = malloc(n * 4), *got = malloc(n * 4);
    for (int i = 0; i < n; i++) {
        seeds[i] = i < 64 ? (uint64_t)i : kt_next();
        steps[i] = i % 3 == 0 ? (uint64_t)(i % 1000) : kt_next();
        ref[i] = cllm_philox_uniform(seeds[i], steps[i]);
    }
    void *ds = kt_dev_copy(seeds, n * 8), *dt = kt_dev_copy(steps, n * 8), *dout = kt_dev_poison(n * 4);
    KT_OK(cllm_cuda_philox_uniform(ds, dt, n, dout, 0));
    KT_CU(cudaMemcpy(got, dout, n * 4, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], 4)) {
            if (bad++ < 5) fprintf(stderr, "  philox mismatch seed=%llu step=%llu: %.9g vs %.9g\n",
                                   (unsigned long long)seeds[i], (unsigned long long)steps[i], got[i], ref[i]);
        }
    kt_cases++, kt_failed_cases += bad != 0;
    printf("%s philox bit-exact over %d (seed, step): %d mismatches\n", bad ? "FAIL" : "PASS", n, bad);
    free(seeds), free(steps), free(ref), free(got);
    cudaFree(ds), cudaFree(dt), cudaFree(dout);
}

/* quant > 0: logits rounded to multiples of quant, so that many tokens tie at
 * the top_k / top_p cut-off (the CPU reference keeps the lower ids). */
static void t_sample_q(int S, int V, float temp, int top_k, float top_p, float min_p, float scale, float quant) {
    float *logits = malloc((size_t)S * V * 4);
    for (size_t i = 0; i < (size_t)S * V; i++) {
        logits[i] = kt_unif(scale);
        if (quant > 0.f) logits[i] = floorf(logits[i] / quant) * quant;
    }
    if (V > 10) logits[kt_int(V)] = logits[kt_int(V)]; /* a possible tie */
    cllm_sample_params *p = malloc(S * sizeof *p);
    for (int s = 0; s < S; s++) {
        p[s].temperature = temp, p[s].top_k = top_k, p[s].top_p = top_p, p[s].min_p = min_p;
        p[s].seed = kt_next(), p[s].step = (uint64_t)kt_int(5000);
    }
    int32_t *ref = malloc(S * 4), *got = malloc(S * 4);
    void *ws = malloc(cllm_cpu_sample_workspace_bytes(S, V) + 1);
    KT_OK(cllm_cpu_sample(logits, S, V, p, ws, ref));
    void *dl = kt_dev_copy(logits, (size_t)S * V * 4), *dp = kt_dev_copy(p, S * sizeof *p);
    void *dws = kt_dev_poison(be->ops->sample_workspace_bytes(S, V)), *dt = kt_dev_poison(S * 4);
    KT_OK(be->ops->sample(be, dl, S, V, dp, dws, dt));
    KT_OK(be->ops->d2h(be, got, dt, S * 4));
    int bad = 0;
    for (int s = 0; s < S; s++)
        if (got[s] != ref[s] && bad++ < 5)
            fprintf(stderr, "  row %d: cuda %d cpu %d\n", s, got[s], ref[s]);
    kt_cases++, kt_failed_cases += bad != 0;
    printf("%s sample S=%d V=%d temp=%g top_k=%d top_p=%g min_p=%g quant=%g: %d of %d rows differ\n",
           bad ? "FAIL" : "PASS", S, V, temp, top_k, top_p, min_p, quant, bad, S);
    free(logits), free(p), free(ref), free(got), free(ws);
    cudaFree(dl), cudaFree(dp), cudaFree(dws), cudaFree(dt);
}

static void t_sample(int S, int V, float temp, int top_k, float top_p, float min_p, float scale) {
    t_sample_q(S, V, temp, top_k, top_p, min_p, scale, 0.f);
}

int main(void) {
    be = kt_cuda();
    t_philox(1 << 20);
    t_sample(64, 152064, 0.f, 0, 1.f, 0.f, 10.f);
    t_sample(7, 1, 0.f, 0, 1.f, 0.f, 1.f);
    t_sample(5, 3, 0.f, 0, 1.f, 0.f, 1.f);
    t_sample(64, 32000, 1.f, 0, 1.f, 0.f, 5.f);
    t_sample(64, 152064, 0.7f, 50, 1.f, 0.f, 5.f);
    t_sample(64, 128256, 1.f, 0, 0.9f, 0.f, 5.f);
    t_sample(64, 32000, 1.f, 0, 1.f, 0.05f, 5.f);
    t_sample(64, 152064, 0.8f, 40, 0.95f, 0.02f, 8.f);
    t_sample(32, 1000, 1.5f, 1, 1.f, 0.f, 3.f);
    t_sample(32, 1000, 0.3f, 1000, 0.5f, 0.f, 3.f);
    /* ties at the cut-off: few distinct logits, so the k-th / top-p boundary falls inside a tie group */
    t_sample_q(64, 1000, 1.f, 10, 1.f, 0.f, 4.f, 1.f);
    t_sample_q(64, 32000, 1.f, 50, 1.f, 0.f, 6.f, 0.5f);
    t_sample_q(64, 1000, 1.f, 0, 0.3f, 0.f, 4.f, 1.f);
    t_sample_q(64, 32000, 0.7f, 0, 0.05f, 0.f, 6.f, 0.5f);
    t_sample_q(64, 5000, 1.f, 20, 0.5f, 0.f, 4.f, 1.f);
    t_sample_q(64, 5000, 1.f, 300, 0.9f, 0.1f, 4.f, 0.25f);
    cllm_backend_destroy(be);
    return kt_finish("test_cuda_sample");
}
