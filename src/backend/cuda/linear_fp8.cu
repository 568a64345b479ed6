/* linear with FP8 weights: out (T, N) = x (T, K) bf16 @ W^T + bias, where
 * W[n][k] = fp8_e4m3(w->data[n][k]) * w->scale[n] (per output channel, f32)
 * and bias (N) is bf16; out bf16 or f32. Three paths:
 *
 *  GEMV (W8A16), T <= gemv_max_t (default 8, decode): a weight-streaming
 *    kernel, like linear.cu's bf16 one: each warp streams 2 rows of codes
 *    with 16-byte non-allocating loads (16 codes each, 4 in flight per
 *    lane), converts them in registers (cvt.rn.f16x2.e4m3x2, exact), and
 *    multiplies them by the bf16 activations in fp32; out = acc * scale[n] +
 *    bias. The activations are not quantized: decode reads half the bytes
 *    of bf16, which is the point, and keeps bf16's activation precision.
 *    It also serves, token chunk by chunk, the shapes cuBLASLt cannot take
 *    (N % 16 != 0) or refuses.
 *
 *  cuBLASLt W8A8 (T > gemv_max_t): x is quantized per token
 *    (quantize_fp8.cu: codes + f32 scales into the gemm's FP8 workspace,
 *    cllm_cuda_gemm owns it, nothing is allocated per call; chunks of
 *    tokens when T * K exceeds it), then an e4m3 x e4m3 GEMM with fp32
 *    accumulation (CUBLAS_COMPUTE_32F, no fast accumulation) in linear.cu's
 *    TN mapping: A = W (K x N, ld K, transposed), B = x codes (K x T, ld K),
 *    D = out^T (N x T, ld N), bf16 or f32. Hopper's FP8 GEMMs need exactly
 *    this TN layout, 16-byte aligned pointers and leading dimensions
 *    multiple of 16 (cuBLAS docs, cublasLtMatmul, "FP8" requirements), hence
 *    K % 16 == 0 (checked) and N % 16 == 0 (else the GEMV path).
 *    The scales: cuBLAS 12.9+ applies per-row / per-column "outer vector"
 *    scales to FP8 matmuls on Hopper (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F
 *    on A and B: D[i][j] = scaleA[i] * scaleB[j] * sum_l a[i][l] b[l][j];
 *    cuBLAS docs "Outer vector scaling for FP8 data types"; NVIDIA's cuBLAS
 *    12.9 blog: channel-/block-scaled FP8 on Hopper). So mode OUTER sets A's
 *    scale vector to w->scale (N = M of the GEMM) and B's to the per-token
 *    scales (T = N of the GEMM), with the BIAS epilogue (bf16 bias) when
 *    there is a bias: one kernel, no extra pass. Whether this cuBLASLt
 *    accepts a configuration is only known at run time (heuristic or
 *    matmul returns an error), so every configuration that fails falls
 *    back, once and remembered: OUTER without the bias epilogue (+ a bias
 *    kernel), then mode EPILOGUE: the unscaled FP8 GEMM into f32 (out itself
 *    when out is f32, else an f32 part of the workspace) and one kernel
 *    out = acc * sx[t] * sw[n] + bias; then the GEMV path.
 *    cllm_cuda_linear_fp8_last_path says which path ran (tests, bench).
 *
 * Capturable in CUDA graphs: no allocation, no synchronization, no host
 * reads of device data (algorithm lookups are host-side and cached).
 * The exact math of each path is cllm_cpu_linear_fp8 (backend/cpu/cpu_ops.h:
 * quantize_act true for the cuBLASLt paths, false for GEMV), which the GPU
 * test compares against. Sources: vLLM's W8A8 FP8 schemes (Fp8LinearOp:
 * dynamic per-token activation scales x per-channel weight scales,
 * cutlass_scaled_mm's epilogue out = acc * a_scale[t] * b_scale[n] + bias),
 * the cuBLAS documentation (cublasLtMatmul FP8, scaling modes). */
#include "backend/cuda/gemm_lt.cuh"
#include <cuda_fp8.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_OUTER = 1, MODE_EPILOGUE = 2 };

/* Process-wide knobs (cllm_cuda_linear_fp8_tune; env CLLM_FP8_PATH = gemv | outer | epilogue at first use). */
static int g_force_path = -1; /* -1: not read yet; CLLM_CUDA_FP8_AUTO or a forced path */
static int g_gemv_max_t = 8;

static int force_path(void) {
    if (g_force_path < 0) {
        const char *e = getenv("CLLM_FP8_PATH");
        g_force_path = !e ? CLLM_CUDA_FP8_AUTO
                     : !strcmp(e, "gemv") ? CLLM_CUDA_FP8_GEMV
                     : !strcmp(e, "outer") ? CLLM_CUDA_FP8_LT_OUTER
                     : !strcmp(e, "epilogue") ? CLLM_CUDA_FP8_LT_EPILOGUE
                                               : CLLM_CUDA_FP8_AUTO;
    }
    return g_force_path;
}

extern "C" void cllm_cuda_linear_fp8_tune(int path, int gemv_max_t) {
    if (path >= 0) g_force_path = path;
    if (gemv_max_t >= 0) g_gemv_max_t = gemv_max_t;
}

extern "C" int cllm_cuda_linear_fp8_last_path(const cllm_cuda_gemm *g) { return g ? g->fp8_last_path : 0; }

/* ------------------------------------------------------------ GEMV (W8A16) */

#define FG_WARPS 4
#define FG_MAX_M 8

/* 16 e4m3 codes (one 16-byte load; code j in byte j) -> 16 floats, exact. */
static __device__ __forceinline__ void fp8x16_to_f32(uint4 v, float (&f)[16]) {
    const uint32_t wd[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(wd[i] & 0xffffu), __NV_E4M3);
        __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(wd[i] >> 16), __NV_E4M3);
        float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
        f[4 * i] = a.x, f[4 * i + 1] = a.y, f[4 * i + 2] = b.x, f[4 * i + 3] = b.y;
    }
}

/* 8 bf16 (one 16-byte load) -> floats dst[0..7]. */
static __device__ __forceinline__ void bf16x8_to_f32(uint4 v, float *dst) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        dst[2 * i] = f.x, dst[2 * i + 1] = f.y;
    }
}

/* M tokens (x rows K apart), R rows of W per warp, U 16-byte chunks per row
 * in flight per lane. K % 16 == 0; x and w 16-byte aligned. */
template <int M, int R, int U>
static __global__ void __launch_bounds__(FG_WARPS * 32)
gemv_fp8_kernel(const __nv_bfloat16 *__restrict__ x, const uint8_t *__restrict__ w, const float *__restrict__ wscale,
                const __nv_bfloat16 *__restrict__ bias, int N, int K, void *out, bool out_f32) {
    const int lane = threadIdx.x % 32;
    const int n0 = (blockIdx.x * FG_WARPS + threadIdx.x / 32) * R;
    if (n0 >= N) return;
    const int K16 = K / 16, K8 = K / 8;
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = (const uint4 *)(w + (size_t)min(n0 + r, N - 1) * K);
    const uint4 *xr = (const uint4 *)x;
    float acc[M][R];
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[m][r] = 0.f;
    for (int c0 = lane; c0 < K16; c0 += 32 * U) {
        uint4 wv[U][R];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < R; r++)
                wv[u][r] = c0 + 32 * u < K16 ? ld_stream16(wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + 32 * u;
            if (c >= K16) break;
            float wf[R][16];
#pragma unroll
            for (int r = 0; r < R; r++) fp8x16_to_f32(wv[u][r], wf[r]);
#pragma unroll
            for (int m = 0; m < M; m++) {
                float xf[16];
                bf16x8_to_f32(__ldg(xr + (size_t)m * K8 + 2 * c), xf);
                bf16x8_to_f32(__ldg(xr + (size_t)m * K8 + 2 * c + 1), xf + 8);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float a = acc[m][r];
#pragma unroll
                    for (int j = 0; j < 16; j++) a = fmaf(xf[j], wf[r][j], a);
                    acc[m][r] = a;
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], o);
    if (lane) return;
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int n = n0 + r;
        if (n >= N) break;
        const float s = wscale[n], b = bias ? __bfloat162float(bias[n]) : 0.f;
#pragma unroll
        for (int m = 0; m < M; m++) {
            const float v = fmaf(acc[m][r], s, b);
            if (out_f32) ((float *)out)[(size_t)m * N + n] = v;
            else ((__nv_bfloat16 *)out)[(size_t)m * N + n] = __float2bfloat16_rn(v);
        }
    }
}

template <int M>
static void gemv_go(const __nv_bfloat16 *x, const cllm_weight *w, int N, int K, void *out, bool out_f32,
                    cudaStream_t stream) {
    const int per_cta = FG_WARPS * 2; /* rows per CTA: 2 per warp */
    gemv_fp8_kernel<M, 2, 4><<<(unsigned)((N + per_cta - 1) / per_cta), FG_WARPS * 32, 0, stream>>>(
        x, (const uint8_t *)w->data, w->scale, (const __nv_bfloat16 *)w->bias, N, K, out, out_f32);
}

/* Every token, FG_MAX_M at a time. */
static cllm_status gemv_fp8(const void *x, int T, const cllm_weight *w, void *out, bool out_f32, cudaStream_t stream) {
    const int N = (int)w->n, K = (int)w->k;
    const size_t es = out_f32 ? 4 : 2;
    for (int t0 = 0; t0 < T; t0 += FG_MAX_M) {
        const int m = T - t0 < FG_MAX_M ? T - t0 : FG_MAX_M;
        const __nv_bfloat16 *xm = (const __nv_bfloat16 *)x + (size_t)t0 * K;
        void *om = (char *)out + (size_t)t0 * N * es;
        switch (m) {
        case 1: gemv_go<1>(xm, w, N, K, om, out_f32, stream); break;
        case 2: gemv_go<2>(xm, w, N, K, om, out_f32, stream); break;
        case 3: gemv_go<3>(xm, w, N, K, om, out_f32, stream); break;
        case 4: gemv_go<4>(xm, w, N, K, om, out_f32, stream); break;
        case 5: gemv_go<5>(xm, w, N, K, om, out_f32, stream); break;
        case 6: gemv_go<6>(xm, w, N, K, om, out_f32, stream); break;
        case 7: gemv_go<7>(xm, w, N, K, om, out_f32, stream); break;
        default: gemv_go<8>(xm, w, N, K, om, out_f32, stream); break;
        }
        CLLM_CU_LAUNCH("gemv_fp8");
    }
    return CLLM_OK;
}

/* ------------------------------------------------------------ cuBLASLt (W8A8) */

/* out (T, N) = acc (T, N) f32 * sx[t] * sw[n] + bias[n]; acc may alias out (f32). */
static __global__ void fp8_scale_epilogue_kernel(const float *acc, const float *__restrict__ sx,
                                                 const float *__restrict__ sw, const __nv_bfloat16 *__restrict__ bias,
                                                 int T, int N, void *out, bool out_f32) {
    const size_t n_all = (size_t)T * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_all; i += (size_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / N), n = (int)(i % N);
        float v = acc[i] * (sx[t] * sw[n]);
        if (bias) v += __bfloat162float(bias[n]);
        if (out_f32) ((float *)out)[i] = v;
        else ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(v);
    }
}

/* out (T, N) += bias (N), in place (OUTER mode without the bias epilogue). */
static __global__ void fp8_bias_add_kernel(void *out, const __nv_bfloat16 *__restrict__ bias, int T, int N,
                                           bool out_f32) {
    const size_t n_all = (size_t)T * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_all; i += (size_t)gridDim.x * blockDim.x) {
        const float b = __bfloat162float(bias[i % N]);
        if (out_f32) ((float *)out)[i] += b;
        else ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(__bfloat162float(((__nv_bfloat16 *)out)[i]) + b);
    }
}

static unsigned grid_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 8192 ? (b ? b : 1) : 8192);
}

/* Set one attribute of a matmul descriptor unless an earlier step failed (*s keeps the first error). */
static void desc_set(cublasStatus_t *s, cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr,
                     const void *v, size_t n) {
    if (*s == CUBLAS_STATUS_SUCCESS) *s = cublasLtMatmulDescSetAttribute(op, attr, v, n);
}

/* One FP8 GEMM of T tokens: d (N x T col-major, ld N) = op(A=W) * B (codes bq, K x T).
 * mode OUTER: with the scale vectors sw (N), sx (T) and, when bias, the BIAS
 * epilogue; EPILOGUE: unscaled, d f32. Returns CLLM_ERR_UNSUPPORTED (no error
 * recorded) when cuBLASLt refuses the configuration. */
static cllm_status lt_fp8(cllm_cuda_gemm *g, int mode, int T, int N, int K, const void *wq, const void *bq,
                          const float *sw, const float *sx, const void *bias, void *d, bool d_f32,
                          cudaStream_t stream) {
    /* the alignment every pointer and leading dimension allows (>= 16: checked by the caller) */
    int align = cllm_ptr_align(wq), a;
    if ((a = cllm_ptr_align(bq)) < align) align = a;
    if ((a = cllm_ptr_align(d)) < align) align = a;
    if (bias && (a = cllm_ptr_align(bias)) < align) align = a;
    while (align > 16 && ((K % align) || (((size_t)N * (d_f32 ? 4 : 2)) % (size_t)align))) align /= 2;
    fp8_entry *hit = NULL;
    for (int i = 0; i < g->n_fp8; i++) {
        fp8_entry *e = &g->fp8_cache[i];
        if (e->T == T && e->N == N && e->K == K && e->out_f32 == (int)d_f32 && e->bias == (bias != NULL) &&
            e->mode == mode && e->align == align) {
            hit = e;
            break;
        }
    }
    if (hit && !hit->ok) return CLLM_ERR_UNSUPPORTED;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasStatus_t s = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    desc_set(&s, op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    desc_set(&s, op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (mode == MODE_OUTER) {
        const int32_t vec = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
        desc_set(&s, op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &vec, sizeof vec);
        desc_set(&s, op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &vec, sizeof vec);
        desc_set(&s, op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw, sizeof sw);
        desc_set(&s, op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx, sizeof sx);
        if (bias) {
            const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
            const cudaDataType_t bt = CUDA_R_16BF;
            desc_set(&s, op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep);
            desc_set(&s, op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
            desc_set(&s, op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
        }
    }
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, K, N, K);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, K, T, K);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&ld, d_f32 ? CUDA_R_32F : CUDA_R_16BF, N, T, N);
    cublasLtMatmulAlgo_t algo;
    if (s == CUBLAS_STATUS_SUCCESS && hit) {
        algo = hit->algo;
    } else if (s == CUBLAS_STATUS_SUCCESS) {
        s = cublasLtMatmulPreferenceCreate(&pref);
        if (s == CUBLAS_STATUS_SUCCESS)
            s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &g->workspace_bytes, sizeof g->workspace_bytes);
        const uint32_t ua = (uint32_t)align;
        const cublasLtMatmulPreferenceAttributes_t al[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
            s = cublasLtMatmulPreferenceSetAttribute(pref, al[i], &ua, sizeof ua);
        cublasLtMatmulHeuristicResult_t res[1];
        int n = 0;
        if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulAlgoGetHeuristic(g->lt, op, la, lb, ld, ld, pref, 1, res, &n);
        if (s == CUBLAS_STATUS_SUCCESS && n == 0) s = CUBLAS_STATUS_NOT_SUPPORTED;
        if (s == CUBLAS_STATUS_SUCCESS) algo = res[0].algo;
    }
    if (s == CUBLAS_STATUS_SUCCESS) {
        const float alpha = 1.f, beta = 0.f;
        s = cublasLtMatmul(g->lt, op, &alpha, wq, la, bq, lb, &beta, d, ld, d, ld, &algo, g->workspace,
                           g->workspace_bytes, stream);
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    if (!hit) {
        fp8_entry *e = &g->fp8_cache[g->n_fp8 < FP8_CACHE ? g->n_fp8++ : (g->next_fp8++ % FP8_CACHE)];
        e->T = T, e->N = N, e->K = K, e->out_f32 = d_f32, e->bias = bias != NULL, e->mode = mode, e->align = align;
        e->ok = s == CUBLAS_STATUS_SUCCESS;
        if (e->ok) e->algo = algo;
        static int told[3] = {0, 0, 0}; /* one line per mode: the first refusal */
        if (!e->ok && !told[mode]) {
            told[mode] = 1;
            CLLM_LOG_I("linear_fp8: cuBLASLt refused the FP8 GEMM T=%d N=%d K=%d out=%s bias=%d %s (status %d: %s); "
                       "falling back (logged once)", T, N, K, d_f32 ? "f32" : "bf16", bias != NULL,
                       mode == MODE_OUTER ? "with outer-vector scales" : "unscaled", (int)s, cublasLtGetStatusString(s));
        }
    }
    return s == CUBLAS_STATUS_SUCCESS ? CLLM_OK : CLLM_ERR_UNSUPPORTED;
}

/* Workspace layout of one chunk of rows tokens: codes (rows, K), scales
 * (rows) f32, and for EPILOGUE with a bf16 out the f32 partials (rows, N). */
static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }
static int chunk_rows(const cllm_cuda_gemm *g, int T, int N, int K, bool tmp) {
    const size_t per = (size_t)K + 4 + (tmp ? (size_t)N * 4 : 0);
    size_t rows = (g->fp8_ws_bytes - 1024) / per;
    if (rows > (size_t)T) rows = (size_t)T;
    return (int)rows;
}

/* The W8A8 path for every token, chunk by chunk, in mode (OUTER, or
 * EPILOGUE). CLLM_ERR_UNSUPPORTED: cuBLASLt refused a chunk's configuration
 * (remembered); the caller's next path then rewrites every output row, so
 * chunks already done are simply overwritten. */
static cllm_status lt_path(cllm_cuda_gemm *g, int mode, const void *x, int T, const cllm_weight *w, void *out,
                           bool out_f32, cudaStream_t stream) {
    const int N = (int)w->n, K = (int)w->k;
    const bool tmp = mode == MODE_EPILOGUE && !out_f32;
    const int rows = chunk_rows(g, T, N, K, tmp);
    CLLM_ARG(rows >= 1, "linear_fp8: K=%d N=%d too large for the %zu-byte FP8 workspace", K, N, g->fp8_ws_bytes);
    uint8_t *codes = (uint8_t *)g->fp8_ws;
    float *sx = (float *)((char *)g->fp8_ws + align256((size_t)rows * K));
    float *acc = (float *)((char *)sx + align256((size_t)rows * 4));
    const size_t es = out_f32 ? 4 : 2;
    for (int t0 = 0; t0 < T; t0 += rows) {
        const int m = T - t0 < rows ? T - t0 : rows;
        const __nv_bfloat16 *xm = (const __nv_bfloat16 *)x + (size_t)t0 * K;
        void *om = (char *)out + (size_t)t0 * N * es;
        CLLM_TRY(cllm_cuda_quantize_fp8_rows(xm, m, K, codes, sx, stream));
        if (mode == MODE_OUTER) {
            cllm_status st = lt_fp8(g, MODE_OUTER, m, N, K, w->data, codes, w->scale, sx, w->bias, om, out_f32, stream);
            if (st != CLLM_OK && w->bias) { /* the bias epilogue refused: scales in cuBLASLt, bias by a kernel */
                st = lt_fp8(g, MODE_OUTER, m, N, K, w->data, codes, w->scale, sx, NULL, om, out_f32, stream);
                if (st == CLLM_OK) {
                    fp8_bias_add_kernel<<<grid_for((size_t)m * N), 256, 0, stream>>>(
                        om, (const __nv_bfloat16 *)w->bias, m, N, out_f32);
                    CLLM_CU_LAUNCH("fp8_bias_add");
                }
            }
            if (st != CLLM_OK) return st;
        } else {
            float *d = out_f32 ? (float *)om : acc;
            CLLM_TRY(lt_fp8(g, MODE_EPILOGUE, m, N, K, w->data, codes, NULL, NULL, NULL, d, true, stream));
            fp8_scale_epilogue_kernel<<<grid_for((size_t)m * N), 256, 0, stream>>>(
                d, sx, w->scale, (const __nv_bfloat16 *)w->bias, m, N, om, out_f32);
            CLLM_CU_LAUNCH("fp8_scale_epilogue");
        }
    }
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_linear_fp8(cllm_cuda_gemm *g, const void *x, int T, const cllm_weight *w, void *out,
                                            cllm_dtype out_dtype, cudaStream_t stream) {
    CLLM_ARG(g && x && w && w->data && w->scale && out, "linear_fp8: NULL pointer (FP8 weights need their scales)");
    CLLM_ARG(w->dtype == CLLM_DTYPE_F8_E4M3, "linear_fp8: weight dtype %d is not float8_e4m3fn", (int)w->dtype);
    CLLM_ARG(T >= 0 && w->n > 0 && w->k > 0 && w->n < INT32_MAX && w->k < INT32_MAX,
             "linear_fp8: bad shape T=%d N=%lld K=%lld", T, (long long)w->n, (long long)w->k);
    CLLM_ARG(w->k % 16 == 0, "linear_fp8: K=%lld must be a multiple of 16 (FP8 weights are loaded only then)",
             (long long)w->k);
    CLLM_ARG(out_dtype == CLLM_DTYPE_BF16 || out_dtype == CLLM_DTYPE_F32,
             "linear_fp8: out dtype must be bfloat16 or float32, got %d", (int)out_dtype);
    CLLM_ARG(cllm_aligned(x, 16) && cllm_aligned(w->data, 16) && cllm_aligned(w->scale, 16) &&
                 cllm_aligned(out, 16) && (!w->bias || cllm_aligned(w->bias, 16)),
             "linear_fp8: x, weights, scales, bias and out must be 16-byte aligned");
    if (T == 0) return CLLM_OK;
    const int N = (int)w->n, path = force_path();
    const bool out_f32 = out_dtype == CLLM_DTYPE_F32;
    const bool lt_ok = N % 16 == 0;
    bool gemv = path == CLLM_CUDA_FP8_GEMV || !lt_ok || (path == CLLM_CUDA_FP8_AUTO && T <= g_gemv_max_t);
    if (!gemv && path != CLLM_CUDA_FP8_LT_EPILOGUE) {
        cllm_status st = lt_path(g, MODE_OUTER, x, T, w, out, out_f32, stream);
        if (st == CLLM_OK) {
            g->fp8_last_path = CLLM_CUDA_FP8_LT_OUTER;
            return CLLM_OK;
        }
        if (st != CLLM_ERR_UNSUPPORTED) return st;
    }
    if (!gemv) {
        cllm_status st = lt_path(g, MODE_EPILOGUE, x, T, w, out, out_f32, stream);
        if (st == CLLM_OK) {
            g->fp8_last_path = CLLM_CUDA_FP8_LT_EPILOGUE;
            return CLLM_OK;
        }
        if (st != CLLM_ERR_UNSUPPORTED) return st;
    }
    g->fp8_last_path = CLLM_CUDA_FP8_GEMV;
    return gemv_fp8(x, T, w, out, out_f32, stream);
}
