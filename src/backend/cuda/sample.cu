/* Token sampling, one CTA of 1024 threads per row, no host synchronization.
 * temperature 0: argmax (lowest id on ties). Otherwise, exactly as documented
 * on cllm_sample_params: p = softmax(logits / temperature) (kept unnormalized
 * in the workspace, max = 1), top_k and top_p as probability thresholds found
 * by binary search over the float bit patterns (positive floats order like
 * their bits), min_p as p >= min_p * max_p, then u = Philox-4x32-10(seed,
 * step) (same bits as cllm_philox_uniform) drawn by inverse CDF over the kept
 * tokens in id order. Ties at a top_k/top_p threshold are broken by lower id,
 * as in the CPU reference (sort by probability desc, then id asc). */
#include "backend/cuda/cuda_common.cuh"
#include <math.h>

#define SMP_THREADS 1024

static __device__ __forceinline__ float philox_uniform_dev(uint64_t seed, uint64_t step) {
    uint32_t c0 = (uint32_t)step, c1 = (uint32_t)(step >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c1 = lo1; c3 = lo0; c0 = n0; c2 = n2;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    return (float)(c0 >> 8) * (1.0f / 16777216.0f);
}

static __global__ void philox_kernel(const uint64_t *seeds, const uint64_t *steps, int n, float *out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = philox_uniform_dev(seeds[i], steps[i]);
}

extern "C" cllm_status cllm_cuda_philox_uniform(const uint64_t *seeds, const uint64_t *steps, int n, float *out,
                                                cudaStream_t stream) {
    CLLM_ARG(n >= 0 && seeds && steps && out, "philox_uniform: bad arguments");
    if (n == 0) return CLLM_OK;
    philox_kernel<<<(n + 255) / 256, 256, 0, stream>>>(seeds, steps, n, out);
    CLLM_CU_LAUNCH("philox");
    return CLLM_OK;
}

static __device__ float block_sum_f(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x < 32 ? red[threadIdx.x] : 0.f;
    if (threadIdx.x < 32) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x == 0) red[32] = v;
    }
    __syncthreads();
    return red[32];
}

/* Max value with lowest index on ties. */
static __device__ void block_argmax(float &v, int &idx, float *redv, int *redi) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
    }
    __syncthreads();
    if (threadIdx.x % 32 == 0) redv[threadIdx.x / 32] = v, redi[threadIdx.x / 32] = idx;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = redv[threadIdx.x], idx = redi[threadIdx.x];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, o);
            int oi = __shfl_xor_sync(0xffffffffu, idx, o);
            if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
        }
        if (threadIdx.x == 0) redv[32] = v, redi[32] = idx;
    }
    __syncthreads();
    v = redv[32], idx = redi[32];
}

static __global__ void __launch_bounds__(SMP_THREADS) sample_kernel(const float *logits, int V,
                                                                     const cllm_sample_params *params, float *ws,
                                                                     int32_t *tokens) {
    __shared__ float redv[33];
    __shared__ int redi[33];
    __shared__ float scan[SMP_THREADS];
    const int row = blockIdx.x, tid = threadIdx.x;
    const float *x = logits + (size_t)row * V;
    float *p = ws + (size_t)row * V;
    const cllm_sample_params prm = params[row];

    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = tid; i < V; i += SMP_THREADS) {
        float v = x[i];
        if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
    }
    block_argmax(bv, bi, redv, redi);
    if (!(prm.temperature > 0.f) || bi == INT_MAX) {
        if (tid == 0) tokens[row] = bi == INT_MAX ? 0 : bi;
        return;
    }
    const float mx = bv, inv_t = 1.f / prm.temperature;
    for (int i = tid; i < V; i += SMP_THREADS) p[i] = expf((x[i] - mx) * inv_t);
    __syncthreads();

    /* The kept set is the CPU reference's: the first `keep` tokens in (p desc, id asc)
     * order. It is found as a threshold value thr (that of the keep-th token) plus a
     * quota of tokens tied at thr, taken in id order. */
    float thr = 0.f;
    int quota = INT_MAX; /* tokens with p == thr that stay (lowest ids first) */
    const bool use_k = prm.top_k > 0 && prm.top_k < V;
    float kmass_gt = 0.f; /* mass of p > thr */
    if (use_k) {
        /* top_k: the k-th largest value, the largest bit pattern b with count(p >= b) >= k. */
        uint32_t lo = 0, hi = 0x3f800000u;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo + 1) / 2;
            float t = __uint_as_float(mid), c = 0.f;
            for (int i = tid; i < V; i += SMP_THREADS) c += p[i] >= t ? 1.f : 0.f;
            if (block_sum_f(c, redv) >= (float)prm.top_k) lo = mid; else hi = mid - 1;
        }
        thr = __uint_as_float(lo);
        float c = 0.f, z = 0.f;
        for (int i = tid; i < V; i += SMP_THREADS)
            if (p[i] > thr) c += 1.f, z += p[i];
        c = block_sum_f(c, redv);
        kmass_gt = block_sum_f(z, redv);
        quota = prm.top_k - (int)c;
    }
    if (prm.top_p < 1.f) {
        /* top_p over the top_k-kept tokens: mass of the kept set, then the largest
         * value t with mass(p >= t) >= top_p * mass, then the ties needed at t. */
        float kmass;
        if (use_k) {
            kmass = kmass_gt + (float)quota * thr;
        } else {
            float z = 0.f;
            for (int i = tid; i < V; i += SMP_THREADS) z += p[i];
            kmass = block_sum_f(z, redv);
        }
        const float target = prm.top_p * kmass;
        uint32_t lo = __float_as_uint(thr), hi = 0x3f800000u;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo + 1) / 2;
            float t = __uint_as_float(mid), c = 0.f;
            for (int i = tid; i < V; i += SMP_THREADS) c += p[i] >= t ? p[i] : 0.f;
            if (block_sum_f(c, redv) >= target) lo = mid; else hi = mid - 1;
        }
        const float tp = __uint_as_float(lo);
        if (tp > 0.f) {
            float z = 0.f, c = 0.f;
            for (int i = tid; i < V; i += SMP_THREADS) {
                if (p[i] > tp) z += p[i];
                else if (p[i] == tp) c += 1.f;
            }
            const float mg = block_sum_f(z, redv), avail = block_sum_f(c, redv);
            int cap = tp == thr && use_k ? quota : (int)avail;
            int need = 1;
            while (need < cap && mg + (float)need * tp < target) need++;
            thr = tp;
            quota = need;
        }
    }
    const float minp = prm.min_p > 0.f ? prm.min_p : 0.f;

    /* Zero the dropped tokens (p[] is this row's scratch), each thread over a
     * contiguous id chunk; ties at thr ranked in id order by a block scan. */
    const int chunk = (V + SMP_THREADS - 1) / SMP_THREADS;
    const int b = tid * chunk, e = min(V, b + chunk);
    {
        int nt = 0;
        for (int i = b; i < e; i++) nt += p[i] == thr;
        scan[tid] = (float)nt;
        __syncthreads();
        for (int o = 1; o < SMP_THREADS; o <<= 1) {
            float add = tid >= o ? scan[tid - o] : 0.f;
            __syncthreads();
            scan[tid] += add;
            __syncthreads();
        }
        int rank = (int)(scan[tid] - (float)nt);
        __syncthreads();
        for (int i = b; i < e; i++) {
            float v = p[i];
            bool keep = v > thr || (v == thr && rank++ < quota);
            if (!keep || v < minp) p[i] = 0.f;
        }
    }

    /* Inverse CDF in id order over kept tokens: chunk sums, block scan, serial search. */
    float cs = 0.f;
    int lastk = -1;
    for (int i = b; i < e; i++)
        if (p[i] > 0.f) cs += p[i], lastk = i;
    scan[tid] = cs;
    __syncthreads();
    for (int o = 1; o < SMP_THREADS; o <<= 1) {
        float add = tid >= o ? scan[tid - o] : 0.f;
        __syncthreads();
        scan[tid] += add;
        __syncthreads();
    }
    const float total = scan[SMP_THREADS - 1];
    const float target = philox_uniform_dev(prm.seed, prm.step) * total;
    const float before = scan[tid] - cs;
    int pick = -1;
    if (cs > 0.f && before <= target && target < scan[tid]) {
        float acc = before;
        for (int i = b; i < e; i++) {
            if (p[i] > 0.f) {
                acc += p[i];
                if (acc > target) { pick = i; break; }
            }
        }
        if (pick < 0) pick = lastk;
    }
    /* Fallback for rounding at the very end: the last kept token. */
    float pv = (float)max(pick, -1);
    int pi = pick >= 0 ? pick : INT_MAX;
    (void)pv;
    float key = pick >= 0 ? 1.f : 0.f;
    block_argmax(key, pi, redv, redi);
    if (key > 0.f) {
        if (tid == 0) tokens[row] = pi;
        return;
    }
    float lk = (float)lastk;
    int li = 0;
    block_argmax(lk, li, redv, redi);
    if (tid == 0) tokens[row] = lk >= 0.f ? (int)lk : bi;
}

extern "C" size_t cllm_cuda_sample_workspace_bytes(int S, int V) {
    return (size_t)(S > 0 ? S : 0) * (size_t)(V > 0 ? V : 0) * sizeof(float);
}

extern "C" cllm_status cllm_cuda_sample(const float *logits, int S, int V, const cllm_sample_params *params,
                                        void *workspace, int32_t *tokens, cudaStream_t stream) {
    CLLM_ARG(S >= 0 && V > 0, "sample: bad shape S=%d V=%d", S, V);
    CLLM_ARG(logits && params && tokens && (workspace || S == 0), "sample: NULL pointer");
    if (S == 0) return CLLM_OK;
    sample_kernel<<<S, SMP_THREADS, 0, stream>>>(logits, V, params, (float *)workspace, tokens);
    CLLM_CU_LAUNCH("sample");
    return CLLM_OK;
}
