/* Logit bias and repetition / frequency / presence penalties (backend.h
 * apply_penalties), one CTA per row, no host synchronization, touching only
 * the row's bias and history entries after the copy:
 *   0. out row = logits row (skipped when aliased), then the row's logit
 *      bias added (its token ids are unique: one thread per entry);
 *   1. cnt[id] = 0 for every in-range history id (the workspace needs no
 *      clearing: only entries named by the history are ever read);
 *   2. prompt ids set PROMPT_BIT (atomicOr), output ids add 1 (atomicAdd);
 *   3. every history position claims its id with atomicExch(INT_MIN); the
 *      one thread that gets the counts applies the penalties to that id once.
 * Steps are separated by __syncthreads (global writes of a block are
 * visible to the block after it). Arithmetic as the CPU reference
 * (src/backend/cpu/cpu_sampling_ops.c), with explicit _rn intrinsics so no
 * FMA contraction changes the rounding. Followed: vLLM apply_penalties, HF
 * RepetitionPenaltyLogitsProcessor, OpenAI frequency/presence penalties. */
#include "backend/cuda/cuda_common.cuh"
#include <limits.h>

#define PEN_THREADS 512
#define PROMPT_BIT (1 << 30)

static __global__ void __launch_bounds__(PEN_THREADS) penalties_kernel(const float *logits, int V,
                                                                        const cllm_penalty_params *params,
                                                                        const int32_t *token_ids,
                                                                        const cllm_logit_bias *bias, int32_t *ws,
                                                                        float *out) {
    const int row = blockIdx.x, tid = threadIdx.x;
    const float *x = logits + (size_t)row * V;
    float *y = out + (size_t)row * V;
    const cllm_penalty_params p = params[row];

    if (y != x)
        for (int i = tid; i < V; i += PEN_THREADS) y[i] = x[i];

    /* Block-uniform decisions (p is the same for every thread). Rows the CPU
     * op would reject (repetition_penalty <= 0 or NaN, negative counts or
     * start, NULL token_ids with a history) are left as a plain copy: the
     * device cannot return an error without a host sync. */
    const bool active = p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
    const bool valid = p.repetition_penalty > 0.0f && p.num_prompt >= 0 && p.num_output >= 0 &&
                       p.token_start >= 0 && token_ids != NULL;
    const long long np = p.num_prompt, n = np + (long long)p.num_output;
    const bool pen = active && valid && n > 0;
    const bool biased = p.num_bias > 0 && p.bias_start >= 0 && bias != NULL;
    if (!pen && !biased) return;

    __syncthreads(); /* the copy is done before the bias (and step 3) write */
    if (biased)
        for (int i = tid; i < p.num_bias; i += PEN_THREADS) {
            const cllm_logit_bias b = bias[p.bias_start + i];
            if (b.token_id >= 0 && b.token_id < V) y[b.token_id] = __fadd_rn(y[b.token_id], b.value);
        }
    if (!pen) return;
    const int32_t *h = token_ids + p.token_start;
    int32_t *cnt = ws + (size_t)row * V;
    for (long long i = tid; i < n; i += PEN_THREADS) {
        int v = h[i];
        if (v >= 0 && v < V) cnt[v] = 0;
    }
    __syncthreads(); /* also: the bias is in y before step 3 reads it */
    for (long long i = tid; i < n; i += PEN_THREADS) {
        int v = h[i];
        if (v < 0 || v >= V) continue;
        if (i < np) atomicOr(&cnt[v], PROMPT_BIT);
        else atomicAdd(&cnt[v], 1);
    }
    __syncthreads();
    const float rp = p.repetition_penalty;
    for (long long i = tid; i < n; i += PEN_THREADS) {
        int v = h[i];
        if (v < 0 || v >= V) continue;
        int old = atomicExch(&cnt[v], INT_MIN);
        if (old == INT_MIN) continue; /* another position of the same id did it */
        int c = old & (PROMPT_BIT - 1); /* output occurrences */
        float z = y[v];
        if (rp != 1.0f) z = z > 0.0f ? __fdiv_rn(z, rp) : __fmul_rn(z, rp);
        if (c > 0) z = __fsub_rn(z, __fadd_rn(__fmul_rn(p.frequency_penalty, (float)c), p.presence_penalty));
        y[v] = z;
    }
}

/* backend.h penalties_workspace_bytes: one int32 per (row, id). */
extern "C" size_t cllm_cuda_penalties_workspace_bytes(int S, int V) {
    return (S > 0 && V > 0) ? (size_t)S * (size_t)V * sizeof(int32_t) : 0;
}

extern "C" cllm_status cllm_cuda_apply_penalties(const float *logits, int S, int V, const cllm_penalty_params *params,
                                                 const int32_t *token_ids, const cllm_logit_bias *bias,
                                                 void *workspace, float *out, cudaStream_t stream) {
    CLLM_ARG(S >= 0 && V > 0, "apply_penalties: bad shape S=%d V=%d", S, V);
    CLLM_ARG(S == 0 || (logits && params && workspace && out), "apply_penalties: NULL logits/params/workspace/out");
    CLLM_ARG(cllm_aligned(workspace, 4) && cllm_aligned(logits, 4) && cllm_aligned(out, 4),
             "apply_penalties: logits/out/workspace must be 4-byte aligned");
    if (S == 0) return CLLM_OK;
    penalties_kernel<<<S, PEN_THREADS, 0, stream>>>(logits, V, params, token_ids, bias, (int32_t *)workspace, out);
    CLLM_CU_LAUNCH("apply_penalties");
    return CLLM_OK;
}
