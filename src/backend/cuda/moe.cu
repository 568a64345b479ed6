/* Mixture of experts on CUDA (backend.h moe_route / moe_experts /
 * moe_workspace_bytes / moe_combine), bf16 activations and weights, fp32
 * accumulation. Sources: transformers Qwen3MoeSparseMoeBlock and
 * MixtralSparseMoeBlock (softmax over the router logits in fp32, torch.topk,
 * optional renormalization, sum of expert_out * weight); the permutation
 * with per-expert tiles follows vLLM's moe_align_block_size.
 *
 * moe_route: one warp per token; lane l holds the logits of experts l,
 * l + 32, ... in registers (at most 512 experts), a warp max / sum gives the
 * softmax, then k rounds of a warp arg-max (value descending, ties: the
 * lower expert id, as the CPU op) pick the top k (k <= 32). The probability
 * of the pick is exp(x - max) / sum (fp32), the renormalizing sum is
 * accumulated in the order of the picks as the CPU op does.
 *
 * moe_experts, two paths, both CUDA-graph capturable (no host sync, no
 * allocation, no copy from the host: the expert weights are addressed as
 * base + e * stride, see below):
 *  (a) GEMV, for T * k <= gemv_max_rows (default 64: decode): kernel 1, for
 *      each (token, slot) whose expert is local, h[t, j, :] = silu(gate_e x_t)
 *      * (up_e x_t), one warp per two output rows (four weight rows streamed
 *      with 16-byte non-allocating loads), rounded to bf16 once; kernel 2,
 *      one warp per output element out[t, n] = sum over the local slots j of
 *      w[t, j] * dot(down_{e_j}[n, :], h[t, j, :]), the (slot, chunk) pairs
 *      flattened so that each lane keeps several loads in flight; a token
 *      with no local slot gets zeros. No atomics.
 *  (b) grouped, above: an align kernel (one block) counts the assignments of
 *      each local expert, scans them, cuts each expert's rows into tiles of
 *      MOE_BM rows (tile -> expert, first row) and scatters the assignment
 *      indices (where[t * k + j] = permuted row or -1); a gather kernel
 *      copies the x rows into that order; then ONE launch of a tensor-core
 *      grouped GEMM (WMMA bf16 m16n16k16, 64 x 128 x 32 tiles, cp.async
 *      double buffering) over all tiles computes gate and up of a 64-wide
 *      column block together and writes silu(gate) * up (bf16) directly;
 *      ONE launch of the same kernel for down; then the combine kernel
 *      (each token gathers its k rows with their weights, fixed order j =
 *      0..k-1, no atomics). Tile counts live in device memory; the GEMM grid
 *      is the upper bound ceil(T k / 64) + min(T k, num_local) tiles and the
 *      blocks past the real count return at once.
 *  (c) expert-major GEMV (CLLM_CUDA_MOE_XGEMV; AUTO picks it from 65
 *      assignments up to 4 per local expert, see cllm_cuda_moe_path): the
 *      align kernel of (b), then kernel 1, block (local expert e, 8 rows of
 *      I), each warp two rows of gate and up, streams those four weight rows
 *      ONCE for all of e's assignments (XG_TB at a time, x rows read through
 *      src[]) and writes silu(gate) * up at the permuted rows; kernel 2,
 *      block (e, 16 output columns), each warp four rows of down_e against
 *      all of e's permuted rows, writes y (permuted, bf16); then the combine
 *      of (b). Every touched expert's weights are read once, with the GEMV
 *      kernels' 16-byte streaming loads and no tile padding; blocks of
 *      untouched experts return at once. Capturable (static grids).
 *  A fourth path, the per-expert loop (cuBLASLt through cllm_cuda_linear, one
 *  GEMM pair per expert), copies the counts to the host (stream sync): it is
 *  selectable only through cllm_cuda_moe_tune for the benchmark's
 *  comparison and refuses to run while the stream is being captured.
 *
 * Expert weights: the op receives host arrays of cllm_weight; the kernels
 * need them on the device. Instead of uploading pointer tables (a cache that
 * a capture could miss), the experts of a layer must be equally spaced in
 * memory: gate_up[e].data == gate_up[0].data + e * stride (likewise down),
 * which is how cllm_moe_load lays them out (one allocation per layer). The
 * kernels get the base and the stride as arguments; a layout that is not
 * equally spaced is CLLM_ERR_INVALID_ARG with a message.
 *
 * Limits (CLLM_ERR_INVALID_ARG beyond): route: experts <= 512, k <= 32 and
 * k <= experts; experts: E and I multiples of 8, 16-byte aligned x, out,
 * workspace and weights, k <= 32, num_local <= 1024, no bias; combine: any
 * shape (vectorized when E % 8 == 0 and the rows are 16-byte aligned). */
#include "backend/cuda/cuda_common.cuh"
#include <limits.h>
#include <mma.h>
#include <stdlib.h>

#define MOE_ROUTE_MAX_EXPERTS 512
#define MOE_MAX_K 32
#define MOE_MAX_LOCAL 1024
#define MOE_BM 64   /* grouped GEMM tile: rows (assignments) */
#define MOE_BN 128  /* columns (weight rows); SwiGLU: 64 of gate + the same 64 of up */
#define MOE_BK 32
#define MOE_LDS 40  /* shared row stride (elements): BK + 8 against bank conflicts */
#define MOE_LDC 132 /* fp32 staging row stride */
#define GV_WARPS 4
#define GV_U 4      /* GEMV kernels: 16-byte chunks per weight row in flight per lane */

typedef __nv_bfloat16 bf16;

/* Process-wide knobs (cllm_cuda_moe_tune). */
static int g_path = CLLM_CUDA_MOE_AUTO, g_stop_after = 0, g_gemv_max_rows = 64;

extern "C" void cllm_cuda_moe_tune(int path, int stop_after, int gemv_max_rows) {
    if (path >= 0 && path <= CLLM_CUDA_MOE_XGEMV) g_path = path;
    if (stop_after >= 0) g_stop_after = stop_after;
    if (gemv_max_rows >= 0) g_gemv_max_rows = gemv_max_rows;
}

/* AUTO: the token-major GEMV path up to g_gemv_max_rows (64) assignments; the
 * expert-major GEMV path while there are at most XG_AUTO_PER_EXPERT assignments per
 * local expert on average (one or two passes of XG_TB rows over each touched
 * expert's weights); the grouped GEMM above. Measured with `cllm bench moe` on an
 * H100 80GB HBM3 (Qwen3-30B-A3B layer: 128 experts, top-8, E 2048, I 768;
 * 2026-12-06, us per layer, gemv / xgemv / grouped): 1 token 40.5 / 54.1 / 83.7,
 * 8: 184 / 190 / 350, 16: 284 / 281 / 453, 32: 447 / 372 / 603, 64: 797 / 536 /
 * 672, 128: 1590 / 961 / 688. */
#define XG_AUTO_PER_EXPERT 4
extern "C" int cllm_cuda_moe_path(int T, int k, int num_local) {
    if (g_path != CLLM_CUDA_MOE_AUTO) return g_path;
    const long long R = (long long)T * k;
    if (R <= g_gemv_max_rows) return CLLM_CUDA_MOE_GEMV;
    if (num_local > 0 && R <= (long long)XG_AUTO_PER_EXPERT * num_local) return CLLM_CUDA_MOE_XGEMV;
    return CLLM_CUDA_MOE_GROUPED;
}

static size_t al(size_t n) { return (n + 255) / 256 * 256; }

/* Upper bound of the grouped GEMM's tiles for R assignments over nl experts. */
static size_t max_tiles(size_t R, size_t nl) { return (R + MOE_BM - 1) / MOE_BM + (R < nl ? R : nl); }

extern "C" size_t cllm_cuda_moe_workspace_bytes(int T, int k, int E, int I) {
    if (T <= 0 || k <= 0 || E <= 0 || I <= 0) return 256;
    size_t R = (size_t)T * (size_t)k;
    int path = cllm_cuda_moe_path(T, k, 0); /* the expert-major GEMV path uses the grouped path's layout */
    if (path == CLLM_CUDA_MOE_GEMV) return al(R * (size_t)I * 2);
    size_t b = 2 * al(R * 4)                            /* where, src */
               + al((MOE_MAX_LOCAL + 1) * 4) + al(4)     /* offsets, number of tiles */
               + 2 * al(max_tiles(R, MOE_MAX_LOCAL) * 4) /* tile -> expert, first row */
               + al(R * (size_t)E * 2)                   /* x permuted, then the down output */
               + al(R * (size_t)I * 2);                  /* silu(gate) * up */
    if (path == CLLM_CUDA_MOE_LOOP) b += al(R * 2 * (size_t)I * 2); /* gate_up of the loop */
    return b;
}

/* ------------------------------------------------------------------ routing */

template <int VPL>
static __global__ void __launch_bounds__(128)
moe_route_kernel(const float *__restrict__ logits, int T, int NE, int k, bool renorm, int32_t *__restrict__ ids,
                 float *__restrict__ weights) {
    const int t = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (t >= T) return; /* warp-uniform */
    const float *x = logits + (size_t)t * NE;
    float v[VPL];
    unsigned taken = 0; /* bit i: v[i] is no candidate (picked, or past NE) */
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < VPL; i++) {
        const int e = lane + 32 * i;
        v[i] = e < NE ? x[e] : -INFINITY;
        if (e >= NE) taken |= 1u << i;
        else mx = fmaxf(mx, v[i]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < VPL; i++)
        if (!(taken >> i & 1)) sum += expf(v[i] - mx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    int my_id = 0;
    float my_w = 0.f, wsum = 0.f;
    for (int j = 0; j < k; j++) {
        /* this lane's best candidate (ascending ids: strict > keeps the lower id on ties) */
        float bv = -INFINITY;
        int bi = INT_MAX;
#pragma unroll
        for (int i = 0; i < VPL; i++)
            if (!(taken >> i & 1) && (bi == INT_MAX || v[i] > bv)) bv = v[i], bi = lane + 32 * i;
        /* warp arg-max: larger value, then lower id; INT_MAX = none */
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi != INT_MAX && (bi == INT_MAX || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
        }
        if (bi == INT_MAX) bi = 0; /* only with NaN logits */
        if (bi % 32 == lane) taken |= 1u << (bi / 32);
        const float p = expf(bv - mx) / sum;
        wsum += p;
        if (lane == j) my_id = bi, my_w = p;
    }
    if (lane < k) {
        ids[(size_t)t * k + lane] = my_id;
        weights[(size_t)t * k + lane] = renorm ? my_w / wsum : my_w;
    }
}

extern "C" cllm_status cllm_cuda_moe_route(const float *logits, int T, int NE, int k, bool renormalize, int32_t *ids,
                                           float *weights, cudaStream_t stream) {
    CLLM_ARG(T >= 0 && NE > 0 && k > 0 && k <= NE, "moe_route: T=%d experts=%d top_k=%d", T, NE, k);
    CLLM_ARG(NE <= MOE_ROUTE_MAX_EXPERTS && k <= MOE_MAX_K,
             "moe_route: the CUDA kernel supports at most %d experts and top_k %d (got %d, %d)", MOE_ROUTE_MAX_EXPERTS,
             MOE_MAX_K, NE, k);
    if (T == 0) return CLLM_OK;
    CLLM_ARG(logits && ids && weights, "moe_route: NULL pointer");
    const unsigned grid = (unsigned)((T + 3) / 4);
    if (NE <= 32) moe_route_kernel<1><<<grid, 128, 0, stream>>>(logits, T, NE, k, renormalize, ids, weights);
    else if (NE <= 64) moe_route_kernel<2><<<grid, 128, 0, stream>>>(logits, T, NE, k, renormalize, ids, weights);
    else if (NE <= 128) moe_route_kernel<4><<<grid, 128, 0, stream>>>(logits, T, NE, k, renormalize, ids, weights);
    else if (NE <= 256) moe_route_kernel<8><<<grid, 128, 0, stream>>>(logits, T, NE, k, renormalize, ids, weights);
    else moe_route_kernel<16><<<grid, 128, 0, stream>>>(logits, T, NE, k, renormalize, ids, weights);
    CLLM_CU_LAUNCH("moe_route");
    return CLLM_OK;
}

/* ------------------------------------------------------------------ helpers */

static __device__ __forceinline__ float silu_f(float g) { return g / (1.f + __expf(-g)); }

static __device__ __forceinline__ void to_f8(uint4 v, float (&f)[8]) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 p = __bfloat1622float2(h[i]);
        f[2 * i] = p.x, f[2 * i + 1] = p.y;
    }
}

static __device__ __forceinline__ float dot8(const float (&xf)[8], uint4 w) {
    float wf[8];
    to_f8(w, wf);
    float a = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) a = fmaf(xf[i], wf[i], a);
    return a;
}

static __device__ __forceinline__ float warp_sum(float a) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
    return a;
}

/* Stream GV_U 16-byte chunks c0, c0 + 32, ... (below n8) of each of R weight
 * rows into registers (zeros past n8): the GEMV kernels' loads in flight. */
template <int R>
static __device__ __forceinline__ void load_rows(uint4 (&wv)[GV_U][R], const uint4 *const (&wr)[R], int c0, int n8) {
#pragma unroll
    for (int u = 0; u < GV_U; u++)
#pragma unroll
        for (int r = 0; r < R; r++)
            wv[u][r] = c0 + 32 * u < n8 ? ld_stream16(wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
}

/* The four weight rows of output rows i0, i0 + 1 (the last row repeated when
 * i0 + 1 == I) of an expert's gate_up W (2I, E): gate i0, gate i1, up i0, up i1. */
static __device__ __forceinline__ void gate_up_rows(const bf16 *W, int i0, int I, int E, const uint4 *(&wr)[4]) {
    const int i1 = min(i0 + 1, I - 1);
    wr[0] = (const uint4 *)(W + (size_t)i0 * E), wr[1] = (const uint4 *)(W + (size_t)i1 * E);
    wr[2] = (const uint4 *)(W + (size_t)(I + i0) * E), wr[3] = (const uint4 *)(W + (size_t)(I + i1) * E);
}

/* acc[r][j] += dot(weight row r, row j) over n8 16-byte chunks, for the nt
 * (<= XG_TB) rows xr[0 .. nt-1]: the weight rows are streamed once (GV_U
 * chunks in flight per lane), the rows read through the cache. Per-lane
 * partial sums: the caller warp-reduces. Expert-major GEMV path (c). */
#define XG_TB 8 /* assignments per pass over the weight rows */
template <int R>
static __device__ __forceinline__ void rows_dot(float (&acc)[R][XG_TB], const uint4 *const (&wr)[R],
                                                const uint4 *const (&xr)[XG_TB], int nt, int n8, int lane) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int j = 0; j < XG_TB; j++) acc[r][j] = 0.f;
    for (int c0 = lane; c0 < n8; c0 += 32 * GV_U) {
        uint4 wv[GV_U][R];
        load_rows<R>(wv, wr, c0, n8);
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            const int c = c0 + 32 * u;
            if (c >= n8) break;
#pragma unroll
            for (int j = 0; j < XG_TB; j++) {
                if (j >= nt) break;
                float xf[8];
                to_f8(__ldg(xr[j] + c), xf);
#pragma unroll
                for (int r = 0; r < R; r++) acc[r][j] += dot8(xf, wv[u][r]);
            }
        }
    }
}

/* ------------------------------------------------------------ (a) GEMV path */

/* h (T*k, I): for assignment a = blockIdx.x (token a / k) with a local
 * expert e, rows i0, i0 + 1 of silu(gate_e x) * (up_e x); gu (2I, E) per
 * expert at gu + e * gu_stride. 4 weight rows x GV_U 16-byte chunks in
 * flight per lane. */
static __global__ void __launch_bounds__(GV_WARPS * 32)
moe_gemv_gate_up_kernel(const bf16 *__restrict__ x, int E, const int32_t *__restrict__ ids, int k, int expert_start,
                        int num_local, const bf16 *__restrict__ gu, long long gu_stride, int I, bf16 *__restrict__ h) {
    const int a = blockIdx.x, lane = threadIdx.x % 32;
    const int e = ids[a] - expert_start;
    if (e < 0 || e >= num_local) return; /* block-uniform */
    const int i0 = (blockIdx.y * GV_WARPS + threadIdx.x / 32) * 2;
    if (i0 >= I) return;
    const uint4 *wr[4];
    gate_up_rows(gu + (long long)e * gu_stride, i0, I, E, wr);
    const uint4 *xr = (const uint4 *)(x + (size_t)(a / k) * E);
    const int E8 = E / 8;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int c0 = lane; c0 < E8; c0 += 32 * GV_U) {
        uint4 wv[GV_U][4];
        load_rows<4>(wv, wr, c0, E8);
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            const int c = c0 + 32 * u;
            if (c >= E8) break;
            float xf[8];
            to_f8(__ldg(xr + c), xf);
#pragma unroll
            for (int r = 0; r < 4; r++) acc[r] += dot8(xf, wv[u][r]);
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) acc[r] = warp_sum(acc[r]);
    if (lane) return;
    h[(size_t)a * I + i0] = __float2bfloat16_rn(silu_f(acc[0]) * acc[2]);
    if (i0 + 1 < I) h[(size_t)a * I + i0 + 1] = __float2bfloat16_rn(silu_f(acc[1]) * acc[3]);
}

/* out[t, n] (t = blockIdx.x, one warp per n) = sum over the local slots j of
 * w[t, j] * dot(down_{e_j}[n, :], h[t * k + j, :]); dn (E, I) per expert at
 * dn + e * dn_stride. Lane j < k holds slot j's local expert (-1: none) and
 * weight; the (slot, chunk) pairs are flattened, GD_U per lane in flight. */
#define GD_U 8
static __global__ void __launch_bounds__(GV_WARPS * 32)
moe_gemv_down_kernel(const bf16 *__restrict__ h, int I, const int32_t *__restrict__ ids, const float *__restrict__ w,
                     int k, int expert_start, int num_local, const bf16 *__restrict__ dn, long long dn_stride, int E,
                     bf16 *__restrict__ out) {
    const int t = blockIdx.x, lane = threadIdx.x % 32;
    const int n = blockIdx.y * GV_WARPS + threadIdx.x / 32;
    if (n >= E) return; /* warp-uniform */
    int my_e = -1;
    float my_w = 0.f;
    if (lane < k) {
        const int e = ids[(size_t)t * k + lane] - expert_start;
        if (e >= 0 && e < num_local) my_e = e, my_w = w[(size_t)t * k + lane];
    }
    const int I8 = I / 8, total = k * I8;
    float acc = 0.f;
    for (int f0 = 0; f0 < total; f0 += 32 * GD_U) {
        uint4 wv[GD_U], hv[GD_U];
        float wt[GD_U];
#pragma unroll
        for (int u = 0; u < GD_U; u++) {
            const int f = f0 + 32 * u + lane;
            const int j = min(f / I8, k - 1), c = f - j * I8;
            const int e = __shfl_sync(0xffffffffu, my_e, j);
            const float wj = __shfl_sync(0xffffffffu, my_w, j);
            const bool ok = f < total && e >= 0;
            wt[u] = ok ? wj : 0.f;
            wv[u] = ok ? ld_stream16((const uint4 *)(dn + (long long)e * dn_stride + (size_t)n * I) + c)
                       : make_uint4(0, 0, 0, 0);
            hv[u] = ok ? __ldg((const uint4 *)(h + ((size_t)t * k + j) * I) + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GD_U; u++) {
            float hf[8];
            to_f8(hv[u], hf);
            acc = fmaf(wt[u], dot8(hf, wv[u]), acc);
        }
    }
    acc = warp_sum(acc);
    if (lane == 0) out[(size_t)t * E + n] = __float2bfloat16_rn(acc);
}

/* ------------------------------------------------- (c) expert-major GEMV */

#define XD_R 4    /* down rows per warp */

/* h[p, i] = silu(gate_e x_{src[p] / k}) * (up_e x_{src[p] / k}) for the permuted
 * rows p of local expert e = blockIdx.x (offsets[e] .. offsets[e + 1]); warp
 * w of block y owns rows i0, i0 + 1 of I. */
static __global__ void __launch_bounds__(GV_WARPS * 32)
moe_xgemv_gate_up_kernel(const bf16 *__restrict__ x, int E, const int32_t *__restrict__ offsets,
                         const int32_t *__restrict__ src, int k, const bf16 *__restrict__ gu, long long gu_stride,
                         int I, bf16 *__restrict__ h) {
    const int e = blockIdx.x, lane = threadIdx.x % 32;
    const int p0 = offsets[e], p1 = offsets[e + 1];
    if (p0 >= p1) return; /* block-uniform: expert not touched */
    const int i0 = (blockIdx.y * GV_WARPS + threadIdx.x / 32) * 2;
    if (i0 >= I) return;
    const uint4 *wr[4];
    gate_up_rows(gu + (long long)e * gu_stride, i0, I, E, wr);
    const int E8 = E / 8;
    for (int pb = p0; pb < p1; pb += XG_TB) {
        const int nt = min(XG_TB, p1 - pb);
        const uint4 *xr[XG_TB];
#pragma unroll
        for (int j = 0; j < XG_TB; j++) xr[j] = (const uint4 *)(x + (size_t)(src[pb + min(j, nt - 1)] / k) * E);
        float acc[4][XG_TB];
        rows_dot<4>(acc, wr, xr, nt, E8, lane);
#pragma unroll
        for (int j = 0; j < XG_TB; j++) {
            if (j >= nt) break;
#pragma unroll
            for (int r = 0; r < 4; r++) acc[r][j] = warp_sum(acc[r][j]);
            if (lane == 0) {
                h[(size_t)(pb + j) * I + i0] = __float2bfloat16_rn(silu_f(acc[0][j]) * acc[2][j]);
                if (i0 + 1 < I) h[(size_t)(pb + j) * I + i0 + 1] = __float2bfloat16_rn(silu_f(acc[1][j]) * acc[3][j]);
            }
        }
    }
}

/* y[p, n] = dot(down_e[n, :], h[p, :]) for the permuted rows p of local expert
 * e = blockIdx.x; warp w of block y owns output columns n0 .. n0 + XD_R - 1. */
static __global__ void __launch_bounds__(GV_WARPS * 32)
moe_xgemv_down_kernel(const bf16 *__restrict__ h, int I, const int32_t *__restrict__ offsets,
                      const bf16 *__restrict__ dn, long long dn_stride, int E, bf16 *__restrict__ y) {
    const int e = blockIdx.x, lane = threadIdx.x % 32;
    const int p0 = offsets[e], p1 = offsets[e + 1];
    if (p0 >= p1) return;
    const int n0 = (blockIdx.y * GV_WARPS + threadIdx.x / 32) * XD_R;
    if (n0 >= E) return;
    const bf16 *W = dn + (long long)e * dn_stride;
    const uint4 *wr[XD_R];
#pragma unroll
    for (int r = 0; r < XD_R; r++) wr[r] = (const uint4 *)(W + (size_t)min(n0 + r, E - 1) * I);
    const int I8 = I / 8;
    for (int pb = p0; pb < p1; pb += XG_TB) {
        const int nt = min(XG_TB, p1 - pb);
        const uint4 *hr[XG_TB];
#pragma unroll
        for (int j = 0; j < XG_TB; j++) hr[j] = (const uint4 *)(h + (size_t)(pb + min(j, nt - 1)) * I);
        float acc[XD_R][XG_TB];
        rows_dot<XD_R>(acc, wr, hr, nt, I8, lane);
#pragma unroll
        for (int j = 0; j < XG_TB; j++) {
            if (j >= nt) break;
#pragma unroll
            for (int r = 0; r < XD_R; r++) {
                const float v = warp_sum(acc[r][j]);
                if (lane == r && n0 + r < E) y[(size_t)(pb + j) * E + n0 + r] = __float2bfloat16_rn(v);
            }
        }
    }
}

/* --------------------------------------------------------- (b) grouped path */

/* One block of 1024 threads: counts of the local experts, their offsets
 * (offsets[e] .. offsets[e + 1] are expert e's permuted rows), the tiles
 * (tile_e, tile_r0; *num_tiles of them) and the scatter: src[p] = the
 * assignment at permuted row p, where[a] = the permuted row of assignment a
 * (-1: not local). Order inside an expert is that of the atomics (the rows
 * are independent, the results do not depend on it). */
static __global__ void __launch_bounds__(1024)
moe_align_kernel(const int32_t *__restrict__ ids, int R, int expert_start, int NL, int32_t *__restrict__ where,
                 int32_t *__restrict__ src, int32_t *__restrict__ offsets, int32_t *__restrict__ tile_e,
                 int32_t *__restrict__ tile_r0, int32_t *__restrict__ num_tiles) {
    __shared__ int cnt[MOE_MAX_LOCAL], fill[MOE_MAX_LOCAL], toff[MOE_MAX_LOCAL];
    const int tid = threadIdx.x;
    for (int e = tid; e < NL; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    for (int a = tid; a < R; a += blockDim.x) {
        const int e = ids[a] - expert_start;
        if (e >= 0 && e < NL) atomicAdd(&cnt[e], 1);
    }
    __syncthreads();
    if (tid == 0) {
        int o = 0, nt = 0;
        for (int e = 0; e < NL; e++) {
            fill[e] = o, offsets[e] = o, toff[e] = nt;
            o += cnt[e];
            nt += (cnt[e] + MOE_BM - 1) / MOE_BM;
        }
        offsets[NL] = o;
        *num_tiles = nt;
    }
    __syncthreads();
    for (int e = tid; e < NL; e += blockDim.x)
        for (int i = 0, n = (cnt[e] + MOE_BM - 1) / MOE_BM; i < n; i++) {
            tile_e[toff[e] + i] = e;
            tile_r0[toff[e] + i] = fill[e] + i * MOE_BM;
        }
    __syncthreads(); /* fill[] is read above, advanced below */
    for (int a = tid; a < R; a += blockDim.x) {
        const int e = ids[a] - expert_start;
        if (e >= 0 && e < NL) {
            const int p = atomicAdd(&fill[e], 1);
            src[p] = a;
            where[a] = p;
        } else {
            where[a] = -1;
        }
    }
}

/* xp[p] = x[src[p] / k] for the *n_rows permuted rows; E8 = E / 8. */
static __global__ void moe_gather_kernel(const uint4 *__restrict__ x, int E8, const int32_t *__restrict__ src,
                                         const int32_t *__restrict__ n_rows, int k, uint4 *__restrict__ xp) {
    const int n = *n_rows;
    for (int r = blockIdx.x; r < n; r += gridDim.x) {
        const uint4 *s = x + (size_t)(src[r] / k) * E8;
        uint4 *d = xp + (size_t)r * E8;
        for (int c = threadIdx.x; c < E8; c += blockDim.x) d[c] = s[c];
    }
}

static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

struct gemm_smem_ab {
    bf16 a[2][MOE_BM][MOE_LDS];
    bf16 b[2][MOE_BN][MOE_LDS];
};
union __align__(128) gemm_smem {
    gemm_smem_ab ab;
    float c[MOE_BM][MOE_LDC];
};

/* Grouped GEMM over the tiles of the align kernel, one launch for all
 * experts. Block (tile, column block): expert e = tile_e[tile], rows
 * tile_r0 .. min(+MOE_BM, offsets[e + 1]) of A (rows, K) against expert e's
 * weight W_e (rows of K) at W + e * w_stride.
 * SWIGLU (gate_up, W_e (2N, K)): the block's 128 weight rows are gate rows
 * n0 .. n0 + 63 and up rows N + n0 .. N + n0 + 63; it writes
 * out[row, n0 + c] = silu(gate) * up (c < 64), out (rows, N).
 * Otherwise (down, W_e (N, K)): weight rows n0 .. n0 + 127, out (rows, N).
 * 4 warps, each a 32 x 64 quarter (2 x 4 WMMA 16x16x16 bf16 fragments,
 * fp32 accumulators); K % 8 == 0 and N % 8 == 0, 16-byte aligned rows. */
template <bool SWIGLU>
static __global__ void __launch_bounds__(128)
moe_grouped_gemm_kernel(const bf16 *__restrict__ A, const bf16 *__restrict__ W, long long w_stride, int N, int K,
                        const int32_t *__restrict__ tile_e, const int32_t *__restrict__ tile_r0,
                        const int32_t *__restrict__ num_tiles, const int32_t *__restrict__ offsets,
                        bf16 *__restrict__ out) {
    using namespace nvcuda;
    if ((int)blockIdx.x >= *num_tiles) return; /* block-uniform */
    __shared__ gemm_smem sm;
    const int tid = threadIdx.x, warp = tid / 32;
    const int e = tile_e[blockIdx.x], r0 = tile_r0[blockIdx.x], r_end = offsets[e + 1];
    const int n0 = blockIdx.y * (SWIGLU ? MOE_BN / 2 : MOE_BN);
    const bf16 *We = W + (long long)e * w_stride;

    auto load = [&](int kt, int buf) {
        const int k0 = kt * MOE_BK;
#pragma unroll
        for (int i = 0; i < MOE_BM * MOE_BK / 8 / 128; i++) { /* A: 64 rows x 4 chunks */
            const int id = tid + 128 * i, r = id / 4, c = id % 4;
            const int row = r0 + r, col = k0 + c * 8;
            const bool ok = row < r_end && col < K;
            cp_async16(&sm.ab.a[buf][r][c * 8], ok ? (const void *)(A + (size_t)row * K + col) : (const void *)A,
                       ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < MOE_BN * MOE_BK / 8 / 128; i++) { /* B: 128 weight rows x 4 chunks */
            const int id = tid + 128 * i, r = id / 4, c = id % 4;
            const int col = k0 + c * 8;
            int wrow;
            bool ok;
            if (SWIGLU) {
                const int n = n0 + (r % (MOE_BN / 2));
                ok = n < N;
                wrow = (r / (MOE_BN / 2)) * N + n;
            } else {
                wrow = n0 + r;
                ok = wrow < N;
            }
            ok = ok && col < K;
            cp_async16(&sm.ab.b[buf][r][c * 8], ok ? (const void *)(We + (size_t)wrow * K + col) : (const void *)We,
                       ok ? 16 : 0);
        }
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) wmma::fill_fragment(acc[i][j], 0.f);
    const int wm = warp / 2, wn = warp % 2;
    const int nk = (K + MOE_BK - 1) / MOE_BK;
    load(0, 0);
    cp_async_commit();
    for (int kt = 0; kt < nk; kt++) {
        if (kt + 1 < nk) load(kt + 1, (kt + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int buf = kt & 1;
#pragma unroll
        for (int kk = 0; kk < MOE_BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[4];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], &sm.ab.a[buf][wm * 32 + i * 16][kk], MOE_LDS);
#pragma unroll
            for (int j = 0; j < 4; j++) wmma::load_matrix_sync(fb[j], &sm.ab.b[buf][wn * 64 + j * 16][kk], MOE_LDS);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads(); /* the next iteration's load overwrites this buffer */
    }
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            wmma::store_matrix_sync(&sm.c[wm * 32 + i * 16][wn * 64 + j * 16], acc[i][j], MOE_LDC, wmma::mem_row_major);
    __syncthreads();
    constexpr int OUT_COLS = SWIGLU ? MOE_BN / 2 : MOE_BN, CH = OUT_COLS / 8;
    for (int id = tid; id < MOE_BM * CH; id += 128) {
        const int r = id / CH, c = (id % CH) * 8;
        const int row = r0 + r, col = n0 + c;
        if (row >= r_end || col >= N) continue;
        uint4 o;
        __nv_bfloat162 *o2 = (__nv_bfloat162 *)&o;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            float v0 = sm.c[r][c + 2 * q], v1 = sm.c[r][c + 2 * q + 1];
            if (SWIGLU) {
                v0 = silu_f(v0) * sm.c[r][MOE_BN / 2 + c + 2 * q];
                v1 = silu_f(v1) * sm.c[r][MOE_BN / 2 + c + 2 * q + 1];
            }
            o2[q] = __floats2bfloat162_rn(v0, v1);
        }
        *(uint4 *)(out + (size_t)row * N + col) = o;
    }
}

/* ------------------------------------------------------------------ combine */

/* out[i] = sum over j of w[i, j] * y[rows[i * k + j]] (rows -1: none), fp32
 * sums in the order j = 0..k-1; one block per output row. VEC: E % 8 == 0,
 * 16-byte aligned y and out. */
template <bool VEC>
static __global__ void moe_combine_kernel(const bf16 *__restrict__ y, const int32_t *__restrict__ rows,
                                          const float *__restrict__ w, int n, int k, int E, bf16 *__restrict__ out) {
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        if (VEC) {
            const int E8 = E / 8;
            for (int c = threadIdx.x; c < E8; c += blockDim.x) {
                float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
                for (int j = 0; j < k; j++) {
                    const int r = rows[(size_t)i * k + j];
                    if (r < 0) continue;
                    const float wt = w[(size_t)i * k + j];
                    float f[8];
                    to_f8(((const uint4 *)(y + (size_t)r * E))[c], f);
#pragma unroll
                    for (int q = 0; q < 8; q++) acc[q] = fmaf(wt, f[q], acc[q]);
                }
                uint4 o;
                __nv_bfloat162 *o2 = (__nv_bfloat162 *)&o;
#pragma unroll
                for (int q = 0; q < 4; q++) o2[q] = __floats2bfloat162_rn(acc[2 * q], acc[2 * q + 1]);
                ((uint4 *)(out + (size_t)i * E))[c] = o;
            }
        } else {
            for (int c = threadIdx.x; c < E; c += blockDim.x) {
                float acc = 0.f;
                for (int j = 0; j < k; j++) {
                    const int r = rows[(size_t)i * k + j];
                    if (r < 0) continue;
                    acc = fmaf(w[(size_t)i * k + j], __bfloat162float(y[(size_t)r * E + c]), acc);
                }
                out[(size_t)i * E + c] = __float2bfloat16_rn(acc);
            }
        }
    }
}

static cllm_status combine_launch(const void *y, const int32_t *rows, const float *w, int n, int k, int E, void *out,
                                  cudaStream_t stream) {
    const unsigned grid = (unsigned)(n < 65536 ? n : 65536);
    if (E % 8 == 0 && cllm_aligned(y, 16) && cllm_aligned(out, 16))
        moe_combine_kernel<true><<<grid, 128, 0, stream>>>((const bf16 *)y, rows, w, n, k, E, (bf16 *)out);
    else
        moe_combine_kernel<false><<<grid, 128, 0, stream>>>((const bf16 *)y, rows, w, n, k, E, (bf16 *)out);
    CLLM_CU_LAUNCH("moe_combine");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_moe_combine(const void *y, const int32_t *rows, const float *w, int n, int k, int E,
                                             void *out, cudaStream_t stream) {
    CLLM_ARG(n >= 0 && k > 0 && E > 0, "moe_combine: n=%d k=%d E=%d", n, k, E);
    if (n == 0) return CLLM_OK;
    CLLM_ARG(rows && w && out, "moe_combine: NULL pointer");
    return combine_launch(y, rows, w, n, k, E, out, stream);
}

/* ------------------------------------------------------------------ experts */

/* The experts' base pointers and strides (elements) when they are equally
 * spaced (see the file comment). */
static cllm_status expert_layout(const cllm_weight *gate_up, const cllm_weight *down, int nl, int E, int I,
                                 const bf16 **gu, long long *gu_stride, const bf16 **dn, long long *dn_stride) {
    for (int e = 0; e < nl; e++) {
        CLLM_ARG(gate_up[e].data && down[e].data, "moe_experts: local expert %d has no weights", e);
        CLLM_ARG(gate_up[e].n == 2 * (int64_t)I && gate_up[e].k == E && down[e].n == E && down[e].k == I,
                 "moe_experts: local expert %d weights are (%lld, %lld) and (%lld, %lld), want (%d, %d) and (%d, %d)",
                 e, (long long)gate_up[e].n, (long long)gate_up[e].k, (long long)down[e].n, (long long)down[e].k,
                 2 * I, E, E, I);
        CLLM_ARG(!gate_up[e].bias && !down[e].bias, "moe_experts: expert biases are not supported");
    }
    const char *g0 = (const char *)gate_up[0].data, *d0 = (const char *)down[0].data;
    long long gs = nl > 1 ? (long long)((const char *)gate_up[1].data - g0) : 0;
    long long ds = nl > 1 ? (long long)((const char *)down[1].data - d0) : 0;
    CLLM_ARG(cllm_aligned(g0, 16) && cllm_aligned(d0, 16) && gs % 16 == 0 && ds % 16 == 0,
             "moe_experts: the CUDA kernels need 16-byte aligned expert weights");
    for (int e = 2; e < nl; e++)
        CLLM_ARG((const char *)gate_up[e].data == g0 + (long long)e * gs &&
                     (const char *)down[e].data == d0 + (long long)e * ds,
                 "moe_experts: the CUDA kernels need the experts of a layer equally spaced in memory (one allocation "
                 "per layer, as cllm_moe_load makes it); local expert %d is not", e);
    *gu = (const bf16 *)g0, *dn = (const bf16 *)d0;
    *gu_stride = gs / 2, *dn_stride = ds / 2;
    return CLLM_OK;
}

/* The per-expert loop (benchmark comparison): counts to the host, then one
 * cllm_cuda_linear pair per expert with rows. Synchronizes the stream. */
static cllm_status experts_loop(cllm_cuda_gemm *g, const cllm_weight *gate_up, const cllm_weight *down, int nl, int E,
                                int I, const int32_t *d_offsets, const bf16 *xp, bf16 *gu_out, bf16 *act, bf16 *y,
                                int stop_after, cudaStream_t stream) {
    int32_t *off = (int32_t *)malloc(sizeof(int32_t) * ((size_t)nl + 1));
    if (!off) return cllm_error(CLLM_ERR_OOM, "moe_experts: out of host memory");
    cllm_status st = CLLM_OK;
    cudaError_t ce = cudaMemcpyAsync(off, d_offsets, sizeof(int32_t) * ((size_t)nl + 1), cudaMemcpyDeviceToHost,
                                     stream);
    if (ce == cudaSuccess) ce = cudaStreamSynchronize(stream);
    if (ce != cudaSuccess) {
        free(off);
        return cllm_error(CLLM_ERR_CUDA, "%s:%d: moe_experts: copying the expert counts failed: %s", __FILE__,
                          __LINE__, cudaGetErrorString(ce));
    }
    for (int e = 0; e < nl && st == CLLM_OK; e++) {
        const int r0 = off[e], n = off[e + 1] - off[e];
        if (n > 0) st = cllm_cuda_linear(g, xp + (size_t)r0 * E, n, &gate_up[e], gu_out + (size_t)r0 * 2 * I,
                                         CLLM_DTYPE_BF16, stream);
    }
    if (st == CLLM_OK && off[nl] > 0) st = cllm_cuda_silu_mul(gu_out, off[nl], I, act, stream);
    if (stop_after == 2) {
        free(off);
        return st;
    }
    for (int e = 0; e < nl && st == CLLM_OK; e++) {
        const int r0 = off[e], n = off[e + 1] - off[e];
        if (n > 0) st = cllm_cuda_linear(g, act + (size_t)r0 * I, n, &down[e], y + (size_t)r0 * E, CLLM_DTYPE_BF16,
                                         stream);
    }
    free(off);
    return st;
}

extern "C" cllm_status cllm_cuda_moe_experts(cllm_cuda_gemm *g, const void *x, int T, int E, const int32_t *ids,
                                             const float *weights, int k, const cllm_weight *gate_up,
                                             const cllm_weight *down, int expert_start, int num_local, int I,
                                             void *workspace, void *out, cudaStream_t stream) {
    CLLM_ARG(T >= 0 && E > 0 && k > 0 && num_local > 0 && I > 0 && expert_start >= 0,
             "moe_experts: T=%d E=%d k=%d local experts %d I=%d expert_start %d", T, E, k, num_local, I, expert_start);
    CLLM_ARG(k <= MOE_MAX_K && num_local <= MOE_MAX_LOCAL,
             "moe_experts: the CUDA kernels support top_k <= %d and <= %d local experts (got %d, %d)", MOE_MAX_K,
             MOE_MAX_LOCAL, k, num_local);
    CLLM_ARG(E % 8 == 0 && I % 8 == 0,
             "moe_experts: the CUDA kernels need hidden size and expert intermediate size multiples of 8 (got %d, %d)",
             E, I);
    CLLM_ARG((long long)T * k <= INT32_MAX / 2, "moe_experts: T=%d x k=%d assignments too many", T, k);
    if (T == 0) return CLLM_OK;
    CLLM_ARG(x && ids && weights && gate_up && down && workspace && out, "moe_experts: NULL pointer");
    CLLM_ARG(cllm_aligned(x, 16) && cllm_aligned(out, 16) && cllm_aligned(workspace, 16),
             "moe_experts: x, out and workspace must be 16-byte aligned");
    const bf16 *gu = NULL, *dn = NULL;
    long long gs = 0, ds = 0;
    CLLM_TRY(expert_layout(gate_up, down, num_local, E, I, &gu, &gs, &dn, &ds));
    const int R = T * k;
    const int path = cllm_cuda_moe_path(T, k, num_local);
    if (path == CLLM_CUDA_MOE_GEMV) {
        bf16 *h = (bf16 *)workspace;
        moe_gemv_gate_up_kernel<<<dim3((unsigned)R, (unsigned)((I + 2 * GV_WARPS - 1) / (2 * GV_WARPS))),
                                  GV_WARPS * 32, 0, stream>>>((const bf16 *)x, E, ids, k, expert_start, num_local, gu,
                                                              gs, I, h);
        CLLM_CU_LAUNCH("moe_gemv_gate_up");
        moe_gemv_down_kernel<<<dim3((unsigned)T, (unsigned)((E + GV_WARPS - 1) / GV_WARPS)), GV_WARPS * 32, 0,
                               stream>>>(h, I, ids, weights, k, expert_start, num_local, dn, ds, E, (bf16 *)out);
        CLLM_CU_LAUNCH("moe_gemv_down");
        return CLLM_OK;
    }
    if (path == CLLM_CUDA_MOE_LOOP) { /* refuse before anything is enqueued */
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        CLLM_CU(cudaStreamIsCapturing(stream, &cs));
        CLLM_ARG(cs == cudaStreamCaptureStatusNone, "moe_experts: the per-expert loop path copies counts to the host "
                 "and cannot be captured in a CUDA graph");
    }
    /* grouped / loop: carve the workspace as cllm_cuda_moe_workspace_bytes counts it */
    const size_t MT = max_tiles((size_t)R, MOE_MAX_LOCAL);
    char *p = (char *)workspace;
    int32_t *where = (int32_t *)p; p += al((size_t)R * 4);
    int32_t *src = (int32_t *)p; p += al((size_t)R * 4);
    int32_t *offsets = (int32_t *)p; p += al((MOE_MAX_LOCAL + 1) * 4);
    int32_t *ntiles = (int32_t *)p; p += al(4);
    int32_t *tile_e = (int32_t *)p; p += al(MT * 4);
    int32_t *tile_r0 = (int32_t *)p; p += al(MT * 4);
    bf16 *xp = (bf16 *)p; p += al((size_t)R * E * 2); /* x permuted; then the down output y */
    bf16 *act = (bf16 *)p; p += al((size_t)R * I * 2);
    bf16 *gu_out = (bf16 *)p; /* loop path only */
    moe_align_kernel<<<1, 1024, 0, stream>>>(ids, R, expert_start, num_local, where, src, offsets, tile_e, tile_r0,
                                             ntiles);
    CLLM_CU_LAUNCH("moe_align");
    if (path != CLLM_CUDA_MOE_XGEMV) {
        moe_gather_kernel<<<(unsigned)(R < 8192 ? R : 8192), 128, 0, stream>>>((const uint4 *)x, E / 8, src,
                                                                              offsets + num_local, k, (uint4 *)xp);
        CLLM_CU_LAUNCH("moe_gather");
    }
    if (g_stop_after == 1) return CLLM_OK;
    bf16 *y = xp; /* xp is dead once the gate_up GEMM has read it */
    if (path == CLLM_CUDA_MOE_LOOP) {
        CLLM_TRY(experts_loop(g, gate_up, down, num_local, E, I, offsets, xp, gu_out, act, y, g_stop_after, stream));
    } else if (path == CLLM_CUDA_MOE_XGEMV) { /* x rows read in place through src: no gather */
        moe_xgemv_gate_up_kernel<<<dim3((unsigned)num_local, (unsigned)((I + 2 * GV_WARPS - 1) / (2 * GV_WARPS))),
                                   GV_WARPS * 32, 0, stream>>>((const bf16 *)x, E, offsets, src, k, gu, gs, I, act);
        CLLM_CU_LAUNCH("moe_xgemv_gate_up");
        if (g_stop_after == 2) return CLLM_OK;
        moe_xgemv_down_kernel<<<dim3((unsigned)num_local, (unsigned)((E + GV_WARPS * XD_R - 1) / (GV_WARPS * XD_R))),
                                GV_WARPS * 32, 0, stream>>>(act, I, offsets, dn, ds, E, y);
        CLLM_CU_LAUNCH("moe_xgemv_down");
    } else {
        const unsigned gx = (unsigned)(R / MOE_BM + 1 + (R < num_local ? R : num_local)); /* >= the real tiles */
        moe_grouped_gemm_kernel<true><<<dim3(gx, (unsigned)((I + MOE_BN / 2 - 1) / (MOE_BN / 2))), 128, 0, stream>>>(
            xp, gu, gs, I, E, tile_e, tile_r0, ntiles, offsets, act);
        CLLM_CU_LAUNCH("moe_grouped_gemm gate_up");
        if (g_stop_after == 2) return CLLM_OK;
        moe_grouped_gemm_kernel<false><<<dim3(gx, (unsigned)((E + MOE_BN - 1) / MOE_BN)), 128, 0, stream>>>(
            act, dn, ds, E, I, tile_e, tile_r0, ntiles, offsets, y);
        CLLM_CU_LAUNCH("moe_grouped_gemm down");
    }
    if (g_stop_after == 2 || g_stop_after == 3) return CLLM_OK;
    return combine_launch(y, where, weights, T, k, E, out, stream);
}
