/* Raw log-probabilities (backend.h logprobs), one CTA of 1024 threads per
 * row, no workspace:
 *   max over the row (NaNs ignored, as the CPU op), sum of expf(x - max)
 *   accumulated in double, lse = max + (float)log(sum) (the CPU reference
 *   src/backend/cpu/cpu_sampling_ops.c sums exp in double too);
 *   token_logprob = x[t] - lse (-inf when t is outside [0, V));
 *   top-k by k rounds of a block argmax over the ids strictly after the
 *   previous pick in the order (value descending, id ascending), which gives
 *   exactly the CPU op's sorted list, ties to the lower id. NaN logits are
 *   never picked (the CPU insertion treats them inconsistently anyway).
 * Cost: (2 + k) passes over the row; the row (<= 600 KB) stays in L2. */
#include "backend/cuda/cuda_common.cuh"
#include <limits.h>
#include <math.h>

#define LP_THREADS 1024
#define LP_WARPS (LP_THREADS / 32)

static __device__ float lp_block_max(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < LP_WARPS ? red[threadIdx.x] : -INFINITY;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
        if (threadIdx.x == 0) red[32] = v;
    }
    __syncthreads();
    return red[32];
}

static __device__ double lp_block_sum(double v, double *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < LP_WARPS ? red[threadIdx.x] : 0.0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x == 0) red[32] = v;
    }
    __syncthreads();
    return red[32];
}

/* (v, i) is better than (bv, bi) when larger, or equal with a lower id. A
 * thread with no candidate holds (-inf, INT_MAX), which every real
 * candidate beats. */
static __device__ __forceinline__ void lp_better(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
}

static __device__ void lp_block_argmax(float &v, int &idx, float *redv, int *redi) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        lp_better(v, idx, ov, oi);
    }
    __syncthreads();
    if (threadIdx.x % 32 == 0) redv[threadIdx.x / 32] = v, redi[threadIdx.x / 32] = idx;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < LP_WARPS ? redv[threadIdx.x] : -INFINITY;
        idx = threadIdx.x < LP_WARPS ? redi[threadIdx.x] : INT_MAX;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, o);
            int oi = __shfl_xor_sync(0xffffffffu, idx, o);
            lp_better(v, idx, ov, oi);
        }
        if (threadIdx.x == 0) redv[32] = v, redi[32] = idx;
    }
    __syncthreads();
    v = redv[32], idx = redi[32];
}

static __global__ void __launch_bounds__(LP_THREADS) logprobs_kernel(const float *logits, int V,
                                                                      const int32_t *tokens, int k,
                                                                      float *token_logprob, int32_t *top_ids,
                                                                      float *top_logprobs) {
    __shared__ float redf[33];
    __shared__ double redd[33];
    __shared__ int redi[33];
    const int row = blockIdx.x, tid = threadIdx.x;
    const float *x = logits + (size_t)row * V;

    float m = -INFINITY;
    for (int i = tid; i < V; i += LP_THREADS) m = fmaxf(m, x[i]);
    const float mx = lp_block_max(m, redf);
    double acc = 0.0;
    for (int i = tid; i < V; i += LP_THREADS) acc += (double)expf(x[i] - mx);
    const double sum = lp_block_sum(acc, redd);
    const float lse = mx + (float)log(sum);
    if (tid == 0) {
        int t = tokens[row];
        token_logprob[row] = (t >= 0 && t < V) ? x[t] - lse : -INFINITY;
    }

    /* k is uniform over the grid: every thread runs every round, so the
     * __syncthreads inside lp_block_argmax are reached by all. */
    float pv = 0.0f;
    int pi = -1;
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int i = tid; i < V; i += LP_THREADS) {
            float v = x[i];
            bool after = j == 0 || v < pv || (v == pv && i > pi); /* false for NaN when j > 0 */
            if (after && v == v) lp_better(bv, bi, v, i);
        }
        lp_block_argmax(bv, bi, redf, redi);
        if (tid == 0) {
            bool ok = bi != INT_MAX;
            top_ids[(size_t)row * k + j] = ok ? bi : -1;
            top_logprobs[(size_t)row * k + j] = ok ? x[bi] - lse : NAN;
        }
        pv = bv, pi = bi;
    }
}

extern "C" cllm_status cllm_cuda_logprobs(const float *logits, int S, int V, const int32_t *tokens, int k,
                                          float *token_logprob, int32_t *top_ids, float *top_logprobs,
                                          cudaStream_t stream) {
    CLLM_ARG(S >= 0 && V > 0 && k >= 0 && k <= V && k <= 64,
             "logprobs: bad shape S=%d V=%d k=%d (0 <= k <= min(V, 64))", S, V, k);
    CLLM_ARG(S == 0 || (logits && tokens && token_logprob), "logprobs: NULL logits/tokens/token_logprob");
    CLLM_ARG(S == 0 || k == 0 || (top_ids && top_logprobs), "logprobs: k=%d but top_ids/top_logprobs NULL", k);
    if (S == 0) return CLLM_OK;
    logprobs_kernel<<<S, LP_THREADS, 0, stream>>>(logits, V, tokens, k, token_logprob, top_ids, top_logprobs);
    CLLM_CU_LAUNCH("logprobs");
    return CLLM_OK;
}
