/* CPU reference of the mixture-of-experts ops (backend.h): routing (softmax,
 * top-k, renormalize), the experts (permute tokens by expert, one GEMM pair
 * per expert through OpenBLAS, un-permute with the routing weights), and
 * the weighted combine of expert parallelism. fp32, readable; the oracle of
 * the CUDA kernels. Sources: transformers Qwen3MoeSparseMoeBlock and
 * MixtralSparseMoeBlock (softmax in fp32, torch.topk, optional
 * renormalization, index_add of expert_out * weight). */
#include "backend/cpu/cpu_ops.h"
#include "core/status.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

cllm_status cllm_cpu_moe_route(const float *logits, int T, int NE, int k, bool renormalize, int32_t *ids,
                               float *weights) {
    if (T < 0 || NE <= 0 || k <= 0 || k > NE)
        return cllm_error(CLLM_ERR_INVALID_ARG, "moe_route: T=%d experts=%d top_k=%d", T, NE, k);
#pragma omp parallel for if (T > 16)
    for (int t = 0; t < T; t++) {
        const float *x = logits + (size_t)t * NE;
        float mx = x[0];
        for (int e = 1; e < NE; e++) if (x[e] > mx) mx = x[e];
        double sum = 0;
        for (int e = 0; e < NE; e++) sum += exp((double)x[e] - mx);
        int32_t *id = ids + (size_t)t * k;
        float *w = weights + (size_t)t * k;
        /* k largest by selection, in descending order; ties: the lower expert id first */
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < NE; e++) {
                bool taken = false;
                for (int i = 0; i < j; i++) taken |= id[i] == e;
                if (!taken && (best < 0 || x[e] > x[best])) best = e;
            }
            id[j] = best;
            w[j] = (float)(exp((double)x[best] - mx) / sum); /* softmax probability, fp32 as HF */
        }
        if (renormalize) {
            float s = 0;
            for (int j = 0; j < k; j++) s += w[j];
            for (int j = 0; j < k; j++) w[j] /= s;
        }
    }
    return CLLM_OK;
}

size_t cllm_cpu_moe_workspace_bytes(int T, int k, int E, int IW) {
    size_t rows = (size_t)T * (size_t)k;
    /* order (rows) int32, per-expert counts and offsets are on the stack of the call; x_perm (rows, E),
     * h (rows, 2I), a (rows, IW), y (rows, E) f32 */
    return rows * sizeof(int32_t) + rows * ((size_t)E * 2 + 3 * (size_t)IW) * sizeof(float) + 64;
}

cllm_status cllm_cpu_moe_experts(const float *x, int T, int E, const int32_t *ids, const float *weights, int k,
                                 const cllm_weight *gate_up, const cllm_weight *down, int expert_start,
                                 int num_local, int IW, void *workspace, float *out) {
    if (T < 0 || E <= 0 || k <= 0 || num_local <= 0 || IW <= 0 || expert_start < 0)
        return cllm_error(CLLM_ERR_INVALID_ARG, "moe_experts: T=%d E=%d k=%d local experts %d IW=%d", T, E, k, num_local,
                          IW);
    for (int e = 0; e < num_local; e++)
        if (gate_up[e].n != 2 * (int64_t)IW || gate_up[e].k != E || down[e].n != E || down[e].k != IW)
            return cllm_error(CLLM_ERR_INVALID_ARG, "moe_experts: expert %d weights are (%lld, %lld) and (%lld, %lld), "
                              "want (%d, %d) and (%d, %d)", expert_start + e, (long long)gate_up[e].n,
                              (long long)gate_up[e].k, (long long)down[e].n, (long long)down[e].k, 2 * IW, E, E, IW);
    memset(out, 0, sizeof(float) * (size_t)T * E);
    size_t rows = (size_t)T * k;
    int32_t *order = workspace; /* assignment indices (t * k + j) of local experts, grouped by expert */
    float *xp = (float *)((char *)workspace + (rows * sizeof(int32_t) + 63) / 64 * 64);
    float *h = xp + rows * E, *act = h + rows * 2 * IW, *y = act + rows * IW;
    /* permute: a counting sort of the assignments by local expert */
    int *count = calloc((size_t)num_local + 1, sizeof(int));
    if (!count) return cllm_error(CLLM_ERR_OOM, "moe_experts: out of host memory");
    for (size_t a = 0; a < rows; a++) {
        int e = ids[a] - expert_start;
        if (e >= 0 && e < num_local) count[e + 1]++;
    }
    for (int e = 0; e < num_local; e++) count[e + 1] += count[e];
    int *fill = malloc(sizeof(int) * (size_t)num_local);
    if (!fill) { free(count); return cllm_error(CLLM_ERR_OOM, "moe_experts: out of host memory"); }
    memcpy(fill, count, sizeof(int) * (size_t)num_local);
    for (size_t a = 0; a < rows; a++) {
        int e = ids[a] - expert_start;
        if (e >= 0 && e < num_local) order[fill[e]++] = (int32_t)a;
    }
    free(fill);
    int R = count[num_local];
    for (int r = 0; r < R; r++) memcpy(xp + (size_t)r * E, x + (size_t)(order[r] / k) * E, sizeof(float) * (size_t)E);
    /* per expert: h = x W_gate_up^T, act = silu(gate) * up, y = act W_down^T */
    for (int e = 0; e < num_local; e++) {
        int r0 = count[e], n = count[e + 1] - r0;
        if (n == 0) continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * IW, E, 1.0f, xp + (size_t)r0 * E, E,
                    gate_up[e].data, E, 0.0f, h + (size_t)r0 * 2 * IW, 2 * IW);
        for (int r = r0; r < r0 + n; r++)
            for (int i = 0; i < IW; i++) {
                float g = h[(size_t)r * 2 * IW + i], u = h[(size_t)r * 2 * IW + IW + i];
                act[(size_t)r * IW + i] = g / (1.0f + expf(-g)) * u;
            }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, E, IW, 1.0f, act + (size_t)r0 * IW, IW, down[e].data, IW,
                    0.0f, y + (size_t)r0 * E, E);
    }
    /* un-permute: out[t] += w[t, j] * y, in the order of the assignments (j ascending per token) */
    int32_t *where = calloc(rows, sizeof(int32_t));
    if (!where) { free(count); return cllm_error(CLLM_ERR_OOM, "moe_experts: out of host memory"); }
    for (size_t a = 0; a < rows; a++) where[a] = -1;
    for (int r = 0; r < R; r++) where[order[r]] = r;
#pragma omp parallel for if (T > 16)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int r = where[(size_t)t * k + j];
            if (r < 0) continue;
            float w = weights[(size_t)t * k + j];
            for (int i = 0; i < E; i++) out[(size_t)t * E + i] += w * y[(size_t)r * E + i];
        }
    free(where);
    free(count);
    return CLLM_OK;
}

cllm_status cllm_cpu_moe_combine(const float *y, const int32_t *rows, const float *w, int n, int k, int E, float *out) {
    if (n < 0 || k <= 0 || E <= 0) return cllm_error(CLLM_ERR_INVALID_ARG, "moe_combine: n=%d k=%d E=%d", n, k, E);
#pragma omp parallel for if (n > 16)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * E;
        memset(o, 0, sizeof(float) * (size_t)E);
        for (int j = 0; j < k; j++) {
            int32_t r = rows[(size_t)i * k + j];
            if (r < 0) continue;
            float wt = w[(size_t)i * k + j];
            for (int e = 0; e < E; e++) o[e] += wt * y[(size_t)r * E + e];
        }
    }
    return CLLM_OK;
}
