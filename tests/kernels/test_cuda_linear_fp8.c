/* CUDA linear with FP8 weights (linear_fp8.cu, quantize_fp8.cu) against the
 * CPU reference of the same math (cllm_cpu_linear_fp8: W8A8 for the
 * cuBLASLt paths, W8A16 for the GEMV path), label gpu:
 *  - the per-token activation quantization kernel: codes and scales equal
 *    to cllm_fp8_quantize_row bit for bit (zero rows, tiny rows, outliers);
 *  - T in {1,2,3,4,7,8,16,33,128,512,2048} over small shapes (N, K multiples
 *    of 16, odd N for the GEMV fallback) and Llama-3.1-8B's (qkv 6144x4096,
 *    o 4096x4096, gate_up 28672x4096, down 4096x14336), bias on/off, bf16
 *    and f32 output, on the AUTO path and forced GEMV / outer-vector /
 *    epilogue paths; the path each case took is printed;
 *  - CUDA-graph capture of one call per path (first use of the shape inside
 *    the capture) replayed twice;
 *  - the backend op (ops->linear) with an FP8 weight, and bad arguments.
 * Tolerance from the math, per element: the reference sums exact products
 * in double; the GPU accumulates in fp32 (FP8 tensor cores: partial sums of
 * reduced precision, promoted to fp32), so |gpu - ref| <= 2^-11 * mag +
 * (bf16 out: 2^-8 |ref|) + 1e-5, mag = sum_k |xa_k w_k| * scales (reported
 * by the reference). Large T compares 48 sampled rows (first, last, random).
 * usage: test_cuda_linear_fp8 [--quick] */
#include "kt_util.h"
#include "core/fp8_quant.h"

static cudaStream_t st;
static cllm_cuda_gemm *gg;

static const char *path_name(int p) {
    return p == CLLM_CUDA_FP8_GEMV ? "gemv" : p == CLLM_CUDA_FP8_LT_OUTER ? "lt-outer"
           : p == CLLM_CUDA_FP8_LT_EPILOGUE ? "lt-epilogue" : "none";
}

/* One FP8 weight on host and device. */
typedef struct {
    int N, K;
    uint8_t *q;      /* (N, K) host codes */
    float *s, *b;    /* (N) host scales, bias (bf16 values) */
    cllm_weight dw;  /* device */
    void *dbias;
} fp8w;

static void fp8w_make(fp8w *w, int N, int K) {
    w->N = N, w->K = K;
    w->q = malloc((size_t)N * K);
    w->s = malloc(sizeof(float) * N);
    w->b = malloc(sizeof(float) * N);
    float *row = malloc(sizeof(float) * K);
    float a = 1.7f / sqrtf((float)K);
    for (int n = 0; n < N; n++) {
        float rs = 0.25f + (float)kt_int(8) * 0.25f; /* per-row spread: the scales differ */
        for (int k = 0; k < K; k++) row[k] = kt_unif(a * rs);
        w->s[n] = cllm_fp8_quantize_row(row, K, w->q + (size_t)n * K);
        w->b[n] = kt_bf(kt_unif(0.5f));
    }
    free(row);
    w->dw = (cllm_weight){.data = kt_dev_copy(w->q, (size_t)N * K), .n = N, .k = K, .dtype = CLLM_DTYPE_F8_E4M3,
                          .scale = kt_dev_copy(w->s, sizeof(float) * N)};
    w->dbias = kt_dev_bf16(w->b, N);
}

static void fp8w_free(fp8w *w) {
    free(w->q), free(w->s), free(w->b);
    cudaFree(w->dw.data), cudaFree(w->dw.scale), cudaFree(w->dbias);
}

/* Activations (T, K): uniform, some outliers, one all-zero row when T > 2. */
static float *make_x(int T, int K) {
    float *x = kt_rand((size_t)T * K, 1.f, 0.f);
    for (size_t i = 0; i < (size_t)T * K; i += 61) x[i] = kt_bf(x[i] * 12.f);
    if (T > 2) memset(x + (size_t)(T / 2) * K, 0, sizeof(float) * K);
    return x;
}

/* Compare got (T, N) with the reference on the sampled rows; prints the first mismatches. */
static int check_rows(const char *what, const float *got, const float *x, int T, const fp8w *w, bool bias, bool a8,
                      bool f32) {
    int rows[64], nr = 0;
    if (T <= 48) {
        for (int t = 0; t < T; t++) rows[nr++] = t;
    } else {
        for (int t = 0; t < 16; t++) rows[nr++] = t, rows[nr++] = T - 1 - t;
        for (int i = 0; i < 16; i++) rows[nr++] = 16 + kt_int(T - 32);
    }
    const int N = w->N, K = w->K;
    float *ref = malloc(sizeof(float) * N), *mag = malloc(sizeof(float) * N);
    size_t bad = 0, n_all = 0;
    double maxabs = 0, maxrel = 0;
    for (int i = 0; i < nr; i++) {
        int t = rows[i];
        KT_OK(cllm_cpu_linear_fp8(x + (size_t)t * K, 1, w->q, w->s, bias ? w->b : NULL, N, K, a8, ref, mag));
        for (int n = 0; n < N; n++) {
            float g = got[(size_t)t * N + n];
            double d = fabs((double)g - ref[n]);
            double tol = 0x1p-11 * mag[n] + (f32 ? 0x1p-20 : 0x1p-8) * fabs(ref[n]) + 1e-5;
            if (!(d <= tol)) {
                if (bad < 5)
                    fprintf(stderr, "  %s: mismatch at t=%d n=%d: got %.6g ref %.6g (tol %.3g, mag %.3g)\n", what, t,
                            n, g, ref[n], tol, mag[n]);
                bad++;
            }
            if (!(d <= maxabs)) maxabs = d;
            if (fabs(ref[n]) > 1e-2 && d / fabs(ref[n]) > maxrel) maxrel = d / fabs(ref[n]);
            n_all++;
        }
    }
    free(ref), free(mag);
    kt_cases++;
    kt_failed_cases += bad != 0;
    printf("%s %-72s rows=%-3d max_abs=%.3g max_rel=%.3g\n", bad ? "FAIL" : "PASS", what, nr, maxabs, maxrel);
    if (bad) printf("     %zu of %zu elements outside the tolerance\n", bad, n_all);
    fflush(stdout);
    return bad != 0;
}

static float *get_out(const void *d, size_t n, bool f32) {
    if (!f32) return kt_get_bf16(d, n);
    KT_CU(cudaDeviceSynchronize());
    float *h = malloc(n * 4 + 4);
    KT_CU(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost));
    return h;
}

/* One call on path (a CLLM_CUDA_FP8_* or AUTO) and its check against the matching reference. */
static void run_case(const fp8w *w, int T, bool bias, bool f32, int path, const float *x, void *dx) {
    const int N = w->N;
    cllm_weight dw = w->dw;
    dw.bias = bias ? w->dbias : NULL;
    void *dout = kt_dev_poison((size_t)T * N * (f32 ? 4 : 2));
    cllm_cuda_linear_fp8_tune(path, -1);
    cllm_status s = cllm_cuda_linear(gg, dx, T, &dw, dout, f32 ? CLLM_DTYPE_F32 : CLLM_DTYPE_BF16, st);
    cllm_cuda_linear_fp8_tune(CLLM_CUDA_FP8_AUTO, -1);
    char nm[160];
    int took = cllm_cuda_linear_fp8_last_path(gg);
    snprintf(nm, sizeof nm, "fp8 T=%d N=%d K=%d bias=%d out=%s want=%s took=%s", T, N, w->K, bias, f32 ? "f32" : "bf16",
             path == CLLM_CUDA_FP8_AUTO ? "auto" : path_name(path), path_name(took));
    if (s != CLLM_OK) {
        printf("FAIL %s: %s\n", nm, cllm_last_error());
        kt_cases++, kt_failed_cases++;
    } else {
        float *g = get_out(dout, (size_t)T * N, f32);
        check_rows(nm, g, x, T, w, bias, took != CLLM_CUDA_FP8_GEMV, f32);
        free(g);
    }
    cudaFree(dout);
}

static void sweep(int N, int K, const int *Ts, int nT, bool all_paths) {
    fp8w w;
    fp8w_make(&w, N, K);
    for (int i = 0; i < nT; i++) {
        int T = Ts[i];
        float *x = make_x(T, K);
        void *dx = kt_dev_bf16(x, (size_t)T * K);
        run_case(&w, T, i % 2 == 1, false, CLLM_CUDA_FP8_AUTO, x, dx);
        if (i % 3 == 0) run_case(&w, T, true, true, CLLM_CUDA_FP8_AUTO, x, dx);
        if (all_paths) {
            run_case(&w, T, true, false, CLLM_CUDA_FP8_GEMV, x, dx);
            run_case(&w, T, true, false, CLLM_CUDA_FP8_LT_OUTER, x, dx);
            run_case(&w, T, i % 2 == 0, i % 2 == 1, CLLM_CUDA_FP8_LT_EPILOGUE, x, dx);
        }
        free(x);
        cudaFree(dx);
    }
    fp8w_free(&w);
}

static void test_quantize(void) {
    int Ks[] = {8, 16, 4096, 14336, 1040};
    for (int ki = 0; ki < 5; ki++) {
        int K = Ks[ki], T = 37;
        float *x = make_x(T, K);
        for (int k = 0; k < K; k++) x[(size_t)3 * K + k] = kt_bf(kt_unif(1e-4f)); /* a tiny row: the floor */
        x[(size_t)5 * K] = kt_bf(-3000.f);                                          /* a large outlier */
        void *dx = kt_dev_bf16(x, (size_t)T * K);
        uint8_t *dq, *q = malloc((size_t)T * K), *qr = malloc((size_t)K);
        float *ds, *s = malloc(sizeof(float) * T);
        KT_CU(cudaMalloc((void **)&dq, (size_t)T * K + 16));
        KT_CU(cudaMalloc((void **)&ds, sizeof(float) * T));
        KT_OK(cllm_cuda_quantize_fp8_rows(dx, T, K, dq, ds, st));
        KT_CU(cudaStreamSynchronize(st));
        KT_CU(cudaMemcpy(q, dq, (size_t)T * K, cudaMemcpyDeviceToHost));
        KT_CU(cudaMemcpy(s, ds, sizeof(float) * T, cudaMemcpyDeviceToHost));
        size_t bad_q = 0, bad_s = 0;
        for (int t = 0; t < T; t++) {
            float sr = cllm_fp8_quantize_row(x + (size_t)t * K, K, qr);
            if (memcmp(&sr, &s[t], 4)) {
                if (bad_s < 3) fprintf(stderr, "  quantize K=%d row %d: scale %.9g, reference %.9g\n", K, t, s[t], sr);
                bad_s++;
            }
            for (int k = 0; k < K; k++)
                if (q[(size_t)t * K + k] != qr[k]) {
                    if (bad_q < 5)
                        fprintf(stderr, "  quantize K=%d row %d col %d: x %.6g code %02x, reference %02x\n", K, t, k,
                                x[(size_t)t * K + k], q[(size_t)t * K + k], qr[k]);
                    bad_q++;
                }
        }
        kt_cases++;
        kt_failed_cases += bad_q || bad_s;
        printf("%s quantize_fp8_rows T=%d K=%d: %zu code and %zu scale mismatches (bit for bit)\n",
               bad_q || bad_s ? "FAIL" : "PASS", T, K, bad_q, bad_s);
        free(x), free(q), free(qr), free(s);
        cudaFree(dx), cudaFree(dq), cudaFree(ds);
    }
}

/* Capture one call of a shape never run before, replay it twice. */
static void test_graph(int T, int N, int K, int path) {
    fp8w w;
    fp8w_make(&w, N, K);
    float *x = make_x(T, K);
    void *dx = kt_dev_bf16(x, (size_t)T * K), *dout = kt_dev_poison((size_t)T * N * 2);
    cllm_weight dw = w.dw;
    dw.bias = w.dbias;
    cllm_cuda_linear_fp8_tune(path, -1);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    KT_CU(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    cllm_status s = cllm_cuda_linear(gg, dx, T, &dw, dout, CLLM_DTYPE_BF16, st);
    cudaError_t e = cudaStreamEndCapture(st, &graph);
    cllm_cuda_linear_fp8_tune(CLLM_CUDA_FP8_AUTO, -1);
    int took = cllm_cuda_linear_fp8_last_path(gg);
    char nm[128];
    snprintf(nm, sizeof nm, "graph T=%d N=%d K=%d took=%s", T, N, K, path_name(took));
    if (s != CLLM_OK || e != cudaSuccess || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
        printf("FAIL %s: capture failed: %s / %s\n", nm, s != CLLM_OK ? cllm_last_error() : "op ok",
               cudaGetErrorString(e != cudaSuccess ? e : cudaGetLastError()));
        kt_cases++, kt_failed_cases++;
    } else {
        KT_CU(cudaGraphLaunch(exec, st));
        KT_CU(cudaMemsetAsync(dout, 0xFF, (size_t)T * N * 2, st)); /* the replay must rewrite it all */
        KT_CU(cudaGraphLaunch(exec, st));
        float *g = get_out(dout, (size_t)T * N, false);
        check_rows(nm, g, x, T, &w, true, took != CLLM_CUDA_FP8_GEMV, false);
        free(g);
    }
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    free(x);
    cudaFree(dx), cudaFree(dout);
    fp8w_free(&w);
}

/* The backend's op table with an FP8 weight, and the argument checks. */
static void test_backend_and_errors(void) {
    cllm_backend *be = kt_cuda();
    CLLM_ASSERT(be->ops->fp8_weights);
    fp8w w;
    fp8w_make(&w, 64, 128);
    int T = 24;
    float *x = make_x(T, 128);
    void *dx = kt_dev_bf16(x, (size_t)T * 128), *dout = kt_dev_poison((size_t)T * 64 * 2);
    KT_OK(be->ops->linear(be, dx, T, &w.dw, dout, CLLM_DTYPE_BF16));
    KT_OK(be->ops->sync(be));
    float *g = get_out(dout, (size_t)T * 64, false);
    /* the backend's own gemm: its path is AUTO, T = 24 > 8: W8A8 */
    check_rows("backend ops->linear fp8 T=24 N=64 K=128 (W8A8)", g, x, T, &w, false, true, false);
    free(g);
    cllm_weight bad = w.dw;
    bad.k = 120; /* K % 16 != 0 */
    int ok = be->ops->linear(be, dx, 2, &bad, dout, CLLM_DTYPE_BF16) == CLLM_ERR_INVALID_ARG;
    printf("%s fp8 K=120 rejected: %s\n", ok ? "PASS" : "FAIL", cllm_last_error());
    kt_cases++, kt_failed_cases += !ok;
    bad = w.dw;
    bad.scale = NULL;
    ok = be->ops->linear(be, dx, 2, &bad, dout, CLLM_DTYPE_BF16) == CLLM_ERR_INVALID_ARG;
    printf("%s fp8 without scales rejected: %s\n", ok ? "PASS" : "FAIL", cllm_last_error());
    kt_cases++, kt_failed_cases += !ok;
    ok = be->ops->linear(be, (char *)dx + 2, 2, &w.dw, dout, CLLM_DTYPE_BF16) == CLLM_ERR_INVALID_ARG;
    printf("%s fp8 misaligned x rejected: %s\n", ok ? "PASS" : "FAIL", cllm_last_error());
    kt_cases++, kt_failed_cases += !ok;
    ok = be->ops->linear(be, dx, 2, &w.dw, dout, CLLM_DTYPE_F16) == CLLM_ERR_INVALID_ARG;
    printf("%s fp8 out=f16 rejected: %s\n", ok ? "PASS" : "FAIL", cllm_last_error());
    kt_cases++, kt_failed_cases += !ok;
    free(x);
    cudaFree(dx), cudaFree(dout);
    fp8w_free(&w);
    cllm_backend_destroy(be);
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    KT_CU(cudaSetDevice(0));
    KT_CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    KT_OK(cllm_cuda_gemm_create(32u << 20, &gg));
    test_quantize();
    const int Tall[] = {1, 2, 3, 4, 7, 8, 16, 33, 128, 512, 2048};
    const int nall = (int)(sizeof Tall / sizeof Tall[0]);
    /* small shapes: every T, every path */
    sweep(16, 16, Tall, nall, true);
    sweep(48, 32, Tall, nall, true);
    sweep(272, 80, Tall, nall, true);
    sweep(1008, 208, Tall, quick ? 6 : nall, true);
    /* N % 16 != 0: the GEMV for every T (cuBLASLt's FP8 GEMM needs ld multiples of 16) */
    sweep(33, 64, Tall, nall, false);
    sweep(344, 64, Tall, nall, false);
    /* Llama-3.1-8B: qkv, o, gate_up, down */
    const int T8[] = {1, 2, 4, 8, 16, 128, 2048};
    const int n8 = quick ? 4 : (int)(sizeof T8 / sizeof T8[0]);
    sweep(6144, 4096, T8, n8, false);
    sweep(4096, 4096, T8, n8, !quick);
    sweep(28672, 4096, T8, n8, false);
    sweep(4096, 14336, T8, n8, !quick);
    test_graph(24, 4096, 4096, CLLM_CUDA_FP8_AUTO);
    test_graph(40, 1024, 512, CLLM_CUDA_FP8_LT_EPILOGUE);
    test_graph(2, 4096, 4096, CLLM_CUDA_FP8_AUTO);
    test_graph(5, 2048, 1024, CLLM_CUDA_FP8_GEMV);
    test_backend_and_errors();
    cllm_cuda_gemm_destroy(gg);
    cudaStreamDestroy(st);
    return kt_finish("test_cuda_linear_fp8");
}
