/* CPU reference of the engine's sampling-side ops: penalties, logprobs,
 * KV block copies, memory info. Semantics: src/backend/backend.h. */
#include "backend/cpu/cpu_ops.h"
#include "core/status.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

size_t cllm_cpu_penalties_workspace_bytes(int S, int V) {
    return (S > 0 && V > 0) ? (size_t)S * (size_t)V * sizeof(int32_t) : 0;
}

/* Row s: counts[v] = 2*output count + (seen in prompt ? 1 : 0) would mix
 * units; keep two passes instead: mark prompt ids with -1 when not in the
 * output, output ids with their count. */
cllm_status cllm_cpu_apply_penalties(const float *logits, int S, int V, const cllm_penalty_params *params,
                                     const int32_t *token_ids, const cllm_logit_bias *bias, void *workspace,
                                     float *out) {
    if (S < 0 || V <= 0 || (S > 0 && (!logits || !params || !out || !workspace)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "apply_penalties: S %d, V %d, or a NULL buffer", S, V);
    for (int s = 0; s < S; s++) {
        const cllm_penalty_params *p = &params[s];
        if (p->num_prompt < 0 || p->num_output < 0 || p->token_start < 0 ||
            (p->num_prompt + p->num_output > 0 && !token_ids))
            return cllm_error(CLLM_ERR_INVALID_ARG, "apply_penalties: row %d has a bad token range", s);
        if (p->num_bias < 0 || p->bias_start < 0 || (p->num_bias > 0 && !bias))
            return cllm_error(CLLM_ERR_INVALID_ARG, "apply_penalties: row %d has a bad logit bias range", s);
        if (!(p->repetition_penalty > 0.0f))
            return cllm_error(CLLM_ERR_INVALID_ARG, "apply_penalties: row %d repetition_penalty %g <= 0", s,
                              p->repetition_penalty);
    }
#pragma omp parallel for schedule(dynamic)
    for (int s = 0; s < S; s++) {
        const cllm_penalty_params *p = &params[s];
        const float *x = logits + (size_t)s * V;
        float *y = out + (size_t)s * V;
        if (y != x) memmove(y, x, sizeof(float) * (size_t)V);
        for (int i = 0; i < p->num_bias; i++) {
            const cllm_logit_bias *b = &bias[p->bias_start + i];
            if (b->token_id >= 0 && b->token_id < V) y[b->token_id] += b->value;
        }
        if (p->repetition_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) continue;
        int32_t *cnt = (int32_t *)workspace + (size_t)s * V; /* output count; -1: prompt only */
        const int32_t *h = token_ids + p->token_start;
        int n = p->num_prompt + p->num_output;
        for (int i = 0; i < n; i++)
            if (h[i] >= 0 && h[i] < V) cnt[h[i]] = 0;
        for (int i = 0; i < p->num_prompt; i++)
            if (h[i] >= 0 && h[i] < V) cnt[h[i]] = -1;
        for (int i = p->num_prompt; i < n; i++)
            if (h[i] >= 0 && h[i] < V) cnt[h[i]] = cnt[h[i]] < 0 ? 1 : cnt[h[i]] + 1;
        for (int i = 0; i < n; i++) {
            int v = h[i];
            if (v < 0 || v >= V || cnt[v] == INT32_MIN) continue; /* done already */
            float z = y[v];
            if (p->repetition_penalty != 1.0f) z = z > 0 ? z / p->repetition_penalty : z * p->repetition_penalty;
            if (cnt[v] > 0) z -= p->frequency_penalty * (float)cnt[v] + p->presence_penalty;
            y[v] = z;
            cnt[v] = INT32_MIN;
        }
    }
    return CLLM_OK;
}

cllm_status cllm_cpu_logprobs(const float *logits, int S, int V, const int32_t *tokens, int k, float *token_logprob,
                              int32_t *top_ids, float *top_logprobs) {
    if (S < 0 || V <= 0 || k < 0 || k > V || k > 64 || (S > 0 && (!logits || !tokens || !token_logprob)) ||
        (k > 0 && S > 0 && (!top_ids || !top_logprobs)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "logprobs: S %d, V %d, k %d (0..min(V, 64)) or a NULL buffer", S, V,
                          k);
#pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++) {
        const float *x = logits + (size_t)s * V;
        float mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)x[v] - mx);
        float lse = mx + (float)log(sum);
        int t = tokens[s];
        token_logprob[s] = (t >= 0 && t < V) ? x[t] - lse : -INFINITY;
        if (k == 0) continue;
        int32_t *ti = top_ids + (size_t)s * k;
        float *tl = top_logprobs + (size_t)s * k;
        int n = 0; /* insertion into a sorted list of k: descending value, ties lower id first */
        for (int v = 0; v < V; v++) {
            float z = x[v];
            if (n == k && !(z > x[ti[n - 1]])) continue;
            int j = n < k ? n++ : k - 1;
            while (j > 0 && z > x[ti[j - 1]]) { ti[j] = ti[j - 1]; j--; }
            ti[j] = v;
        }
        for (int j = 0; j < k; j++) tl[j] = x[ti[j]] - lse;
    }
    return CLLM_OK;
}

cllm_status cllm_cpu_copy_blocks(void *cache, size_t block_bytes, const int32_t *pairs, int n) {
    if (n < 0 || (n > 0 && (!cache || !pairs)))
        return cllm_error(CLLM_ERR_INVALID_ARG, "copy_blocks: %d pairs or a NULL buffer", n);
    for (int i = 0; i < n; i++) {
        if (pairs[2 * i] < 0 || pairs[2 * i + 1] < 0 || pairs[2 * i] == pairs[2 * i + 1])
            return cllm_error(CLLM_ERR_INVALID_ARG, "copy_blocks: pair %d (%d -> %d) invalid", i, pairs[2 * i],
                              pairs[2 * i + 1]);
        memcpy((char *)cache + (size_t)pairs[2 * i + 1] * block_bytes,
               (const char *)cache + (size_t)pairs[2 * i] * block_bytes, block_bytes);
    }
    return CLLM_OK;
}

cllm_status cllm_cpu_mem_info(size_t *free_bytes, size_t *total_bytes) {
    long page = sysconf(_SC_PAGESIZE), avail = sysconf(_SC_AVPHYS_PAGES), phys = sysconf(_SC_PHYS_PAGES);
    if (page <= 0 || avail < 0 || phys <= 0)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "mem_info: sysconf cannot report the host's memory");
    *free_bytes = (size_t)avail * (size_t)page;
    *total_bytes = (size_t)phys * (size_t)page;
    return CLLM_OK;
}
