/* linear: out (T, N) = x (T, K) @ W (N, K)^T + bias through cuBLASLt, bf16
 * inputs, fp32 accumulation (CUBLAS_COMPUTE_32F), bf16 or fp32 output, bias
 * by the BIAS epilogue.
 *
 * Row-major to column-major mapping: a row-major (R, C) matrix is the
 * column-major (C, R) matrix with ld = C. So out^T (N x T, ld N) =
 * op_T(W: K x N, ld K) * (x: K x T, ld K), a "TN" GEMM with m = N, n = T,
 * k = K; the bias (N) is a per-row vector of that column-major result, which
 * is what CUBLASLT_EPILOGUE_BIAS adds.
 *
 * Algorithms come from cublasLtMatmulAlgoGetHeuristic once per
 * (T, N, K, out dtype, bias, pointer alignments) and are cached; the one
 * workspace is allocated at creation (with the FP8 linear's activation
 * workspace: FP8 weights go to linear_fp8.cu). T <= CLLM_CUDA_GEMV_MAX_T (2) with K % 8 == 0
 * and 16-byte aligned x/W goes to a skinny weight-streaming kernel instead
 * (decode). Measured on an H200 (Llama-3.1-8B decode step, bench latency
 * --batch-size sweep): the skinny kernel wins at 1-2 tokens (4.70 / 5.07 ms per
 * step) but loses above (4 tokens 5.64 ms, 8 tokens 8.13 ms) to cuBLASLt,
 * whose time is flat up to 16 tokens (5.33 ms at 16). */
#include "backend/cuda/gemm_lt.cuh"
#include <stdlib.h>
#include <string.h>

#define CLLM_CUDA_GEMV_MAX_T 2

/* FP8 activation workspace (linear_fp8.cu): codes and scales of up to
 * ws / (K + 4) tokens per GEMM chunk (64 MiB: 4,681 tokens at K = 14336). */
#define FP8_WS_BYTES ((size_t)64 << 20)

extern "C" cllm_status cllm_cuda_gemm_create(size_t workspace_bytes, cllm_cuda_gemm **out) {
    *out = NULL;
    cllm_cuda_gemm *g = (cllm_cuda_gemm *)calloc(1, sizeof *g);
    if (!g) return cllm_error(CLLM_ERR_OOM, "gemm: out of host memory");
    cublasStatus_t s = cublasLtCreate(&g->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(g);
        return cllm_error(CLLM_ERR_CUDA, "%s:%d: cublasLtCreate failed: %s", __FILE__, __LINE__, cublasLtGetStatusString(s));
    }
    cudaError_t e = cudaMalloc(&g->workspace, workspace_bytes);
    if (e != cudaSuccess) {
        cublasLtDestroy(g->lt);
        free(g);
        return cllm_error(CLLM_ERR_OOM, "gemm: cannot allocate %zu bytes of cuBLASLt workspace: %s", workspace_bytes,
                          cudaGetErrorString(e));
    }
    g->workspace_bytes = workspace_bytes;
    e = cudaMalloc(&g->fp8_ws, FP8_WS_BYTES);
    if (e != cudaSuccess) {
        cudaFree(g->workspace);
        cublasLtDestroy(g->lt);
        free(g);
        return cllm_error(CLLM_ERR_OOM, "gemm: cannot allocate %zu bytes of FP8 activation workspace: %s",
                          FP8_WS_BYTES, cudaGetErrorString(e));
    }
    g->fp8_ws_bytes = FP8_WS_BYTES;
    *out = g;
    return CLLM_OK;
}

extern "C" void cllm_cuda_gemm_destroy(cllm_cuda_gemm *g) {
    if (!g) return;
    cudaFree(g->fp8_ws);
    cudaFree(g->workspace);
    cublasLtDestroy(g->lt);
    free(g);
}


/* Build descriptors; on success the caller destroys them. */
static cllm_status make_descs(cllm_cuda_gemm *g, int T, int N, int K, bool out_f32, const void *bias,
                              cublasLtMatmulDesc_t *op, cublasLtMatrixLayout_t *la, cublasLtMatrixLayout_t *lb,
                              cublasLtMatrixLayout_t *lc) {
    CLLM_LT(cublasLtMatmulDescCreate(op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CLLM_LT(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CLLM_LT(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_16BF;
        CLLM_LT(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
        CLLM_LT(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        CLLM_LT(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    CLLM_LT(cublasLtMatrixLayoutCreate(la, CUDA_R_16BF, K, N, K));
    CLLM_LT(cublasLtMatrixLayoutCreate(lb, CUDA_R_16BF, K, T, K));
    CLLM_LT(cublasLtMatrixLayoutCreate(lc, out_f32 ? CUDA_R_32F : CUDA_R_16BF, N, T, N));
    (void)g;
    return CLLM_OK;
}

static cllm_status find_algo(cllm_cuda_gemm *g, int T, int N, int K, bool out_f32, bool has_bias, int align,
                             cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                             cublasLtMatrixLayout_t lc, cublasLtMatmulAlgo_t *algo) {
    for (int i = 0; i < g->n_cache; i++) {
        gemm_entry *e = &g->cache[i];
        if (e->T == T && e->N == N && e->K == K && e->out_f32 == (int)out_f32 && e->bias == (int)has_bias &&
            e->align == align) {
            *algo = e->algo;
            return CLLM_OK;
        }
    }
    cublasLtMatmulPreference_t pref;
    CLLM_LT(cublasLtMatmulPreferenceCreate(&pref));
    uint32_t a = (uint32_t)align;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->workspace_bytes,
                                         sizeof g->workspace_bytes);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a, sizeof a);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a, sizeof a);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a, sizeof a);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a, sizeof a);
    cublasLtMatmulHeuristicResult_t res[1];
    int n = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(g->lt, op, la, lb, lc, lc, pref, 1, res, &n);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || n == 0)
        return cllm_error(CLLM_ERR_CUDA, "%s:%d: no cuBLASLt algorithm for linear T=%d N=%d K=%d (status %s)", __FILE__,
                          __LINE__, T, N, K, cublasLtGetStatusString(s));
    gemm_entry *e = &g->cache[g->n_cache < GEMM_CACHE ? g->n_cache++ : (g->next++ % GEMM_CACHE)];
    e->T = T, e->N = N, e->K = K, e->out_f32 = out_f32, e->bias = has_bias, e->align = align;
    e->algo = res[0].algo;
    *algo = res[0].algo;
    return CLLM_OK;
}

/* Fallback for shapes/alignments cuBLASLt has no algorithm for (odd N or K):
 * one warp per output element, fp32 accumulation, bias fused. */
static __global__ void linear_fallback_kernel(const __nv_bfloat16 *x, const __nv_bfloat16 *w, const __nv_bfloat16 *bias,
                                              int N, int K, void *out, bool out_f32) {
    int n = blockIdx.x * 8 + threadIdx.x / 32, t = blockIdx.y, lane = threadIdx.x % 32;
    if (n >= N) return;
    const __nv_bfloat16 *xr = x + (size_t)t * K, *wr = w + (size_t)n * K;
    float acc = 0.f;
    for (int k = lane; k < K; k += 32) acc += __bfloat162float(xr[k]) * __bfloat162float(wr[k]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane) return;
    if (bias) acc += __bfloat162float(bias[n]);
    if (out_f32) ((float *)out)[(size_t)t * N + n] = acc;
    else ((__nv_bfloat16 *)out)[(size_t)t * N + n] = __float2bfloat16_rn(acc);
}

/* out (T, N) += bias (N), in place. */
static __global__ void bias_add_kernel(void *out, const __nv_bfloat16 *bias, int T, int N, bool out_f32) {
    size_t n = (size_t)T * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float b = __bfloat162float(bias[i % N]);
        if (out_f32) ((float *)out)[i] += b;
        else ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(__bfloat162float(((__nv_bfloat16 *)out)[i]) + b);
    }
}

/* Skinny GEMM for T <= CLLM_CUDA_GEMV_MAX_T tokens (decode): weight-bandwidth bound, so each warp
 * streams GV_R rows of W with 16-byte non-allocating loads, GV_U chunks in
 * flight per row, x (T, K) read through L1 (shared by the CTA's warps), fp32
 * accumulation, warp-shuffle reduction, bias fused. Requires K % 8 == 0 and
 * 16-byte aligned x and W. */
#define GV_WARPS 4

static __device__ __forceinline__ float dot8(const float (&xf)[8], uint4 w) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&w;
    float a = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        a = fmaf(xf[2 * i], f.x, a);
        a = fmaf(xf[2 * i + 1], f.y, a);
    }
    return a;
}

template <int M, int GV_R, int GV_U>
static __global__ void __launch_bounds__(GV_WARPS * 32)
gemv_kernel(const __nv_bfloat16 *__restrict__ x, const __nv_bfloat16 *__restrict__ w,
            const __nv_bfloat16 *__restrict__ bias, int N, int K, void *out, bool out_f32) {
    const int lane = threadIdx.x % 32;
    const int n0 = (blockIdx.x * GV_WARPS + threadIdx.x / 32) * GV_R;
    if (n0 >= N) return;
    const int K8 = K / 8;
    const uint4 *wr[GV_R];
#pragma unroll
    for (int r = 0; r < GV_R; r++) wr[r] = (const uint4 *)(w + (size_t)min(n0 + r, N - 1) * K);
    const uint4 *xr = (const uint4 *)x;
    float acc[M][GV_R];
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < GV_R; r++) acc[m][r] = 0.f;
    for (int c0 = lane; c0 < K8; c0 += 32 * GV_U) {
        uint4 wv[GV_U][GV_R];
#pragma unroll
        for (int u = 0; u < GV_U; u++)
#pragma unroll
            for (int r = 0; r < GV_R; r++)
                wv[u][r] = c0 + 32 * u < K8 ? ld_stream16(wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            const int c = c0 + 32 * u;
            if (c >= K8) break;
#pragma unroll
            for (int m = 0; m < M; m++) {
                uint4 xv = __ldg(xr + (size_t)m * K8 + c);
                const __nv_bfloat162 *xh = (const __nv_bfloat162 *)&xv;
                float xf[8];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float2 f = __bfloat1622float2(xh[i]);
                    xf[2 * i] = f.x, xf[2 * i + 1] = f.y;
                }
#pragma unroll
                for (int r = 0; r < GV_R; r++) acc[m][r] += dot8(xf, wv[u][r]);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < GV_R; r++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], o);
    if (lane) return;
#pragma unroll
    for (int r = 0; r < GV_R; r++) {
        const int n = n0 + r;
        if (n >= N) break;
        const float b = bias ? __bfloat162float(bias[n]) : 0.f;
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (out_f32) ((float *)out)[(size_t)m * N + n] = acc[m][r] + b;
            else ((__nv_bfloat16 *)out)[(size_t)m * N + n] = __float2bfloat16_rn(acc[m][r] + b);
        }
    }
}

/* Two rows per warp (sharing each x chunk), 4 chunks per row in flight per
 * lane. Measured on the H200 (bench/kernels/NOTES.md): this beats one row per
 * warp with 8 chunks in flight at T = 1 (qkv 78 vs 64 %, down 87 vs 77 %). */
template <int M, int R, int U>
static void gemv_go(const __nv_bfloat16 *x, const __nv_bfloat16 *w, const __nv_bfloat16 *b, int N, int K, void *out,
                    bool out_f32, cudaStream_t stream) {
    const int per_cta = GV_WARPS * R;
    gemv_kernel<M, R, U><<<(unsigned)((N + per_cta - 1) / per_cta), GV_WARPS * 32, 0, stream>>>(x, w, b, N, K, out,
                                                                                               out_f32);
}

static cllm_status gemv_launch(const void *x, int T, int N, int K, const void *wd, const void *bias, void *out,
                               bool out_f32, cudaStream_t stream) {
    const __nv_bfloat16 *xb = (const __nv_bfloat16 *)x, *wb = (const __nv_bfloat16 *)wd,
                        *bb = (const __nv_bfloat16 *)bias;
    switch (T) {
    case 1: gemv_go<1, 2, 4>(xb, wb, bb, N, K, out, out_f32, stream); break;
    default: gemv_go<2, 2, 4>(xb, wb, bb, N, K, out, out_f32, stream); break;
    }
    CLLM_CU_LAUNCH("gemv");
    return CLLM_OK;
}

static cllm_status lt_matmul(cllm_cuda_gemm *g, const void *x, int T, int N, int K, const void *wdata,
                             const void *bias, void *out, bool out_f32, int align, cudaStream_t stream) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cllm_status st = make_descs(g, T, N, K, out_f32, bias, &op, &la, &lb, &lc);
    cublasLtMatmulAlgo_t algo;
    if (st == CLLM_OK) st = find_algo(g, T, N, K, out_f32, bias != NULL, align, op, la, lb, lc, &algo);
    if (st == CLLM_OK) {
        float alpha = 1.f, beta = 0.f;
        cublasStatus_t s = cublasLtMatmul(g->lt, op, &alpha, wdata, la, x, lb, &beta, out, lc, out, lc, &algo,
                                          g->workspace, g->workspace_bytes, stream);
        if (s != CUBLAS_STATUS_SUCCESS)
            st = cllm_error(CLLM_ERR_CUDA, "%s:%d: cublasLtMatmul (linear T=%d N=%d K=%d) failed: %s", __FILE__,
                            __LINE__, T, N, K, cublasLtGetStatusString(s));
    }
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}

extern "C" cllm_status cllm_cuda_linear(cllm_cuda_gemm *g, const void *x, int T, const cllm_weight *w, void *out,
                                        cllm_dtype out_dtype, cudaStream_t stream) {
    CLLM_ARG(g && x && w && w->data && out, "linear: NULL pointer");
    CLLM_ARG(T >= 0 && w->n > 0 && w->k > 0 && w->n < INT32_MAX && w->k < INT32_MAX,
             "linear: bad shape T=%d N=%lld K=%lld", T, (long long)w->n, (long long)w->k);
    CLLM_ARG(out_dtype == CLLM_DTYPE_BF16 || out_dtype == CLLM_DTYPE_F32,
             "linear: out dtype must be bfloat16 or float32, got %d", (int)out_dtype);
    if (w->dtype == CLLM_DTYPE_F8_E4M3) return cllm_cuda_linear_fp8(g, x, T, w, out, out_dtype, stream);
    CLLM_ARG(w->dtype == CLLM_DTYPE_AUTO || w->dtype == CLLM_DTYPE_BF16,
             "linear: weight dtype %d: bfloat16 or float8_e4m3fn (with scales) only", (int)w->dtype);
    if (T == 0) return CLLM_OK;
    int N = (int)w->n, K = (int)w->k;
    bool out_f32 = out_dtype == CLLM_DTYPE_F32;
    /* Decode-sized batches: the bandwidth-bound skinny kernel (cuBLASLt stays for T > 8). */
    if (T <= CLLM_CUDA_GEMV_MAX_T && K % 8 == 0 && cllm_aligned(x, 16) && cllm_aligned(w->data, 16))
        return gemv_launch(x, T, N, K, w->data, w->bias, out, out_f32, stream);
    int align = cllm_ptr_align(x);
    int aw = cllm_ptr_align(w->data), ao = cllm_ptr_align(out);
    if (aw < align) align = aw;
    if (ao < align) align = ao;
    /* Leading dimensions also bound the alignment of every column. */
    while (align > 2 && ((K * 2) % align || (N * (out_f32 ? 4 : 2)) % align)) align /= 2;
    if (w->bias && cllm_ptr_align(w->bias) < align) align = cllm_ptr_align(w->bias);
    /* cuBLASLt with the bias epilogue; else cuBLASLt + a bias kernel; else the fallback kernel. */
    if (lt_matmul(g, x, T, N, K, w->data, w->bias, out, out_f32, align, stream) == CLLM_OK) return CLLM_OK;
    if (w->bias && lt_matmul(g, x, T, N, K, w->data, NULL, out, out_f32, align, stream) == CLLM_OK) {
        cllm_error_clear();
        size_t n = (size_t)T * N, blocks = (n + 255) / 256;
        bias_add_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(out, (const __nv_bfloat16 *)w->bias, T, N, out_f32);
        CLLM_CU_LAUNCH("bias_add");
        return CLLM_OK;
    }
    cllm_error_clear();
    CLLM_ARG(T <= 65535, "linear: T=%d too large for the fallback path (N=%d K=%d unsupported by cuBLASLt)", T, N, K);
    linear_fallback_kernel<<<dim3((unsigned)((N + 7) / 8), (unsigned)T), 256, 0, stream>>>(
        (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w->data, (const __nv_bfloat16 *)w->bias, N, K, out, out_f32);
    CLLM_CU_LAUNCH("linear_fallback");
    return CLLM_OK;
}
