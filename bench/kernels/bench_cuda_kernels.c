/* CUDA kernel benchmarks (a program, not a test): GEMM TFLOP/s for
 * Llama-3.1-8B shapes (M = 1, 16, 128, 2048 tokens) beside 790 TFLOP/s and,
 * for M = 1, weight bandwidth beside 4.3 TB/s; paged decode attention
 * (batch 64, context 4096, H 32, Hkv 8, D 128) KV bandwidth; rmsnorm, rope,
 * silu_mul bandwidth. Median of repeated CUDA-event timings after warm-up;
 * random (never zero) data; weight copies rotated so the 50 MB L2 cannot
 * hold them. FP8 weights (linear_fp8.cu): the same Llama shapes at M = 1 ..
 * 2048 tokens on the path AUTO takes, TFLOP/s beside the card's FP8 dense
 * ceiling (spec: 1979 TFLOP/s on H100 SXM and H200; not a measured figure)
 * and, up to 16 tokens, weight bandwidth beside the copy ceiling; at M = 4,
 * 8, 16 the GEMV and cuBLASLt paths forced side by side (the AUTO threshold).
 * Usage: bench_cuda_kernels [out.json] [all|gemm|fp8|attention|elementwise|decode] */
#include <stdio.h>
#ifndef CLLM_HAVE_CUDA
int main(void) {
    printf("bench_cuda_kernels: built without CUDA; nothing to measure\n");
    return 0;
}
#else
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cuda/cuda_ops.h"
#include "core/dtype.h"
#include "core/status.h"

/* the card's ceilings (cllm_backend_ceilings' table: H100 3.03 TB/s and 801 TFLOP/s, H200 4.30 and 790),
 * set in main from the device name */
static double PEAK_TFLOPS = 790.0, PEAK_TBS = 4.3;
static char CARD[256] = "unknown";
#define CK(x)                                                                                         \
    do {                                                                                              \
        if ((x) != 0) {                                                                               \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #x, cllm_last_error());     \
            exit(1);                                                                                  \
        }                                                                                             \
    } while (0)
#define CU(x)                                                                                         \
    do {                                                                                              \
        cudaError_t ce_ = (x);                                                                          \
        if (ce_ != cudaSuccess) {                                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(ce_));        \
            exit(1);                                                                                  \
        }                                                                                             \
    } while (0)

static cudaStream_t st;
static FILE *js;
static int js_first = 1;

static void *dev_random_bf16(size_t n) {
    static uint16_t *chunk = NULL;
    const size_t C = 1 << 22;
    if (!chunk) {
        chunk = malloc(C * 2);
        uint64_t s = 12345;
        for (size_t i = 0; i < C; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            chunk[i] = cllm_f32_to_bf16(((float)(s >> 40) / 16777216.f - 0.5f) * 0.1f);
        }
    }
    void *d;
    CU(cudaMalloc(&d, n * 2 + 16));
    for (size_t i = 0; i < n; i += C) CU(cudaMemcpy((uint16_t *)d + i, chunk, (n - i < C ? n - i : C) * 2, cudaMemcpyHostToDevice));
    return d;
}

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median over `reps` timed batches of `iters` calls of fn(i); returns ms per call. */
typedef void (*bench_fn)(void *ctx, int i);
static float time_ms(bench_fn fn, void *ctx, int iters, int reps) {
    for (int i = 0; i < 3; i++) fn(ctx, i);
    cudaEvent_t a, b;
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    float t[64];
    for (int r = 0; r < reps; r++) {
        CU(cudaEventRecord(a, st));
        for (int i = 0; i < iters; i++) fn(ctx, i);
        CU(cudaEventRecord(b, st));
        CU(cudaEventSynchronize(b));
        CU(cudaEventElapsedTime(&t[r], a, b));
        t[r] /= iters;
    }
    qsort(t, reps, sizeof(float), cmpf);
    cudaEventDestroy(a), cudaEventDestroy(b);
    return t[reps / 2];
}

static void row(const char *name, const char *shape, float ms, double flops, double bytes) {
    double tf = flops / (ms * 1e-3) / 1e12, tb = bytes / (ms * 1e-3) / 1e12;
    printf("%-22s %-28s %9.4f ms", name, shape, ms);
    if (flops > 0) printf("  %7.1f TFLOP/s (%5.1f%% of %.0f)", tf, 100 * tf / PEAK_TFLOPS, PEAK_TFLOPS);
    else printf("  %35s", "");
    if (bytes > 0) printf("  %5.2f TB/s (%5.1f%% of %.1f)", tb, 100 * tb / PEAK_TBS, PEAK_TBS);
    printf("\n");
    fflush(stdout);
    if (js)
        fprintf(js, "%s\n  {\"name\": \"%s\", \"shape\": \"%s\", \"ms\": %.6f, \"tflops\": %.3f, \"tbs\": %.4f}",
                js_first ? "" : ",", name, shape, ms, flops > 0 ? tf : 0, bytes > 0 ? tb : 0), js_first = 0;
}

typedef struct {
    cllm_cuda_gemm *g;
    void *x, *out;
    cllm_weight w[16];
    int nw, M;
} gemm_ctx;
static void gemm_fn(void *c, int i) {
    gemm_ctx *g = c;
    CK(cllm_cuda_linear(g->g, g->x, g->M, &g->w[i % g->nw], g->out, CLLM_DTYPE_BF16, st));
}

static void bench_gemm(void) {
    const char *names[] = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"};
    int NK[][2] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}, {128256, 4096}};
    int Ms[] = {1, 16, 128, 2048};
    cllm_cuda_gemm *gg;
    CK(cllm_cuda_gemm_create(32u << 20, &gg));
    void *x = dev_random_bf16((size_t)2048 * 14336), *out;
    CU(cudaMalloc(&out, (size_t)2048 * 128256 * 2));
    for (int s = 0; s < 5; s++) {
        int N = NK[s][0], K = NK[s][1];
        size_t wb = (size_t)N * K * 2;
        int nw = (int)((400u << 20) / wb) + 1;
        if (nw > 16) nw = 16;
        gemm_ctx c = {gg, x, out, {{0}}, nw, 0};
        for (int i = 0; i < nw; i++) c.w[i] = (cllm_weight){.data = dev_random_bf16((size_t)N * K), .bias = NULL, .n = N, .k = K};
        for (int m = 0; m < 4; m++) {
            c.M = Ms[m];
            float ms = time_ms(gemm_fn, &c, 20, 15);
            char shape[64];
            snprintf(shape, sizeof shape, "M=%d N=%d K=%d", c.M, N, K);
            double bytes = (double)wb + (double)c.M * K * 2 + (double)c.M * N * 2;
            row(names[s], shape, ms, 2.0 * c.M * N * K, c.M <= 16 ? bytes : 0);
        }
        for (int i = 0; i < nw; i++) cudaFree(c.w[i].data);
    }
    cudaFree(x), cudaFree(out);
    cllm_cuda_gemm_destroy(gg);
}

/* ---- FP8 weights ---- */
static double PEAK_FP8_TFLOPS = 1979.0; /* dense FP8 spec, H100 SXM / H200 (NVIDIA datasheets) */

typedef struct {
    cllm_cuda_gemm *g;
    void *x, *out;
    cllm_weight w[16];
    int nw, M;
} fp8_ctx;
static void fp8_fn(void *c, int i) {
    fp8_ctx *f = c;
    CK(cllm_cuda_linear(f->g, f->x, f->M, &f->w[i % f->nw], f->out, CLLM_DTYPE_BF16, st));
}

/* n e4m3 codes (never NaN: 0x7f / 0xff avoided) of values +-1 .. +-15, on the device. */
static void *dev_random_fp8(size_t n) {
    static uint8_t *chunk = NULL;
    const size_t C = 1 << 22;
    if (!chunk) {
        chunk = malloc(C);
        uint64_t s = 777;
        for (size_t i = 0; i < C; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            uint8_t c = (uint8_t)(0x38 + (s >> 59)); /* exponents 7..10: 1 .. 15 */
            chunk[i] = (uint8_t)(c | ((s >> 40) & 0x80));
        }
    }
    void *d;
    CU(cudaMalloc(&d, n + 16));
    for (size_t i = 0; i < n; i += C) CU(cudaMemcpy((uint8_t *)d + i, chunk, n - i < C ? n - i : C, cudaMemcpyHostToDevice));
    return d;
}

static const char *fp8_path_name(int p) {
    return p == CLLM_CUDA_FP8_GEMV ? "gemv" : p == CLLM_CUDA_FP8_LT_OUTER ? "lt-outer"
           : p == CLLM_CUDA_FP8_LT_EPILOGUE ? "lt-epilogue" : "?";
}

static void bench_gemm_fp8(void) {
    const char *names[] = {"fp8 qkv_proj", "fp8 o_proj", "fp8 gate_up_proj", "fp8 down_proj"};
    int NK[][2] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}};
    int Ms[] = {1, 2, 4, 8, 16, 128, 2048};
    const double bf16_peak = PEAK_TFLOPS;
    PEAK_TFLOPS = PEAK_FP8_TFLOPS; /* row() prints the ratio to this */
    printf("-- FP8 weights (e4m3, per-channel scales): ceiling %.0f TFLOP/s = the FP8 dense spec of %s\n",
           PEAK_FP8_TFLOPS, CARD);
    cllm_cuda_gemm *gg;
    CK(cllm_cuda_gemm_create(32u << 20, &gg));
    void *x = dev_random_bf16((size_t)2048 * 14336), *out;
    CU(cudaMalloc(&out, (size_t)2048 * 28672 * 2));
    float *sc = malloc(sizeof(float) * 28672);
    for (int i = 0; i < 28672; i++) sc[i] = 1.f / 448.f;
    for (int s = 0; s < 4; s++) {
        int N = NK[s][0], K = NK[s][1];
        size_t wb = (size_t)N * K;
        int nw = (int)((400u << 20) / wb) + 1;
        if (nw > 16) nw = 16;
        fp8_ctx c = {gg, x, out, {{0}}, nw, 0};
        for (int i = 0; i < nw; i++) {
            void *ds;
            CU(cudaMalloc(&ds, sizeof(float) * N));
            CU(cudaMemcpy(ds, sc, sizeof(float) * N, cudaMemcpyHostToDevice));
            c.w[i] = (cllm_weight){.data = dev_random_fp8(wb), .n = N, .k = K, .dtype = CLLM_DTYPE_F8_E4M3,
                                   .scale = ds};
        }
        for (int m = 0; m < 7; m++) {
            /* AUTO, then at 4, 8 and 16 tokens the two paths forced */
            int paths[3] = {CLLM_CUDA_FP8_AUTO, CLLM_CUDA_FP8_GEMV, CLLM_CUDA_FP8_LT_OUTER};
            int np = Ms[m] >= 4 && Ms[m] <= 16 ? 3 : 1;
            for (int p = 0; p < np; p++) {
                c.M = Ms[m];
                cllm_cuda_linear_fp8_tune(paths[p], -1);
                float ms = time_ms(fp8_fn, &c, 20, 15);
                cllm_cuda_linear_fp8_tune(CLLM_CUDA_FP8_AUTO, -1);
                char shape[80];
                snprintf(shape, sizeof shape, "M=%d N=%d K=%d %s%s", c.M, N, K, p ? "forced " : "",
                         fp8_path_name(cllm_cuda_linear_fp8_last_path(gg)));
                double bytes = (double)wb + 4.0 * N + (double)c.M * K * 2 + (double)c.M * N * 2;
                row(names[s], shape, ms, 2.0 * c.M * N * K, c.M <= 16 ? bytes : 0);
            }
        }
        for (int i = 0; i < nw; i++) cudaFree(c.w[i].data), cudaFree(c.w[i].scale);
    }
    free(sc);
    cudaFree(x), cudaFree(out);
    cllm_cuda_gemm_destroy(gg);
    PEAK_TFLOPS = bf16_peak;
}

typedef struct {
    void *q, *kc, *vc, *out, *ws;
    cllm_attn_meta m;
    int H, Hkv, D, sms;
    const cllm_kv_quant *kvq;
} attn_ctx;
static void attn_fn(void *c, int i) {
    attn_ctx *a = c;
    CK(cllm_cuda_attention(a->q, a->H * a->D, a->kc, a->vc, &a->m, a->H, a->Hkv, a->D, 0.0883883f, a->out, a->kvq,
                           a->ws, 64u << 20, a->sms, st));
}

/* Decode rows (qlen 1) or prefill chunks (qlen new tokens of each sequence's ctx,
 * causal; decode_attention / prefill_attention rows, FLOPs 4 H D per (query, key)
 * pair attended). maxlen: max_seq_len given to the kernel (0: ctx), as a CUDA graph
 * captured at max_model_len would pass it. kv8: the cache in fp8 e4m3 (one byte
 * per element; --kv-cache-dtype fp8). */
static void bench_attention_q(int S, int qlen, int ctx, int H, int Hkv, int D, int P, int maxlen, int kv8,
                              const char *tag) {
    int mbps = ctx / P, B = S * mbps;
    int32_t *qsl = malloc((S + 1) * 4), *sl = malloc(S * 4), *bt = malloc((size_t)S * mbps * 4);
    for (int s = 0; s <= S; s++) qsl[s] = s * qlen;
    for (int s = 0; s < S; s++) sl[s] = ctx;
    for (int i = 0; i < S * mbps; i++) bt[i] = (int32_t)(((int64_t)i * 7919) % B); /* scattered blocks */
    attn_ctx a;
    a.H = H, a.Hkv = Hkv, a.D = D;
    CU(cudaDeviceGetAttribute(&a.sms, cudaDevAttrMultiProcessorCount, 0));
    static const cllm_kv_quant f8 = {CLLM_DTYPE_F8_E4M3, 0.05f, 0.05f};
    a.kvq = kv8 ? &f8 : NULL;
    a.q = dev_random_bf16((size_t)S * qlen * H * D);
    a.kc = dev_random_bf16((size_t)B * P * Hkv * D);
    a.vc = dev_random_bf16((size_t)B * P * Hkv * D);
    CU(cudaMalloc(&a.out, (size_t)S * qlen * H * D * 2));
    CU(cudaMalloc(&a.ws, 64u << 20));
    void *d1, *d2, *d3;
    CU(cudaMalloc(&d1, (S + 1) * 4));
    CU(cudaMalloc(&d2, S * 4));
    CU(cudaMalloc(&d3, (size_t)S * mbps * 4));
    CU(cudaMemcpy(d1, qsl, (S + 1) * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d2, sl, S * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(d3, bt, (size_t)S * mbps * 4, cudaMemcpyHostToDevice));
    a.m = (cllm_attn_meta){S, S * qlen, qlen, maxlen > ctx ? maxlen : ctx, P, mbps, d1, d2, d3, NULL};
    float ms = time_ms(attn_fn, &a, 10, 15);
    char shape[96];
    const char *f8tag = kv8 ? " fp8" : "";
    if (qlen > 1)
        snprintf(shape, sizeof shape, "S=%d q=%d ctx=%d%s%s", S, qlen, ctx, f8tag, tag);
    else if (maxlen > ctx)
        snprintf(shape, sizeof shape, "S=%d ctx=%d max=%d%s%s", S, ctx, maxlen, f8tag, tag);
    else
        snprintf(shape, sizeof shape, "S=%d ctx=%d H=%d Hkv=%d D=%d%s%s", S, ctx, H, Hkv, D, f8tag, tag);
    double bytes = 2.0 * S * ctx * Hkv * D * (kv8 ? 1 : 2);
    double pairs = (double)S * qlen * (ctx - qlen) + (double)S * qlen * (qlen + 1) / 2;
    row(qlen > 1 ? "prefill_attention" : "decode_attention", shape, ms, 4.0 * pairs * H * D, qlen > 1 ? 0 : bytes);
    cudaFree(a.q), cudaFree(a.kc), cudaFree(a.vc), cudaFree(a.out), cudaFree(a.ws), cudaFree(d1), cudaFree(d2), cudaFree(d3);
    free(qsl), free(sl), free(bt);
}
static void bench_attention(int S, int ctx, int H, int Hkv, int D, int P, int maxlen, const char *tag) {
    bench_attention_q(S, 1, ctx, H, Hkv, D, P, maxlen, 0, tag);
}

typedef struct {
    void *a, *b, *c, *w;
    int rows, E;
    int32_t *pos;
    float *inv;
} ew_ctx;
static void rms_fn(void *c, int i) {
    ew_ctx *e = c;
    CK(cllm_cuda_rmsnorm(e->a, e->b, e->w, e->rows, e->E, 1e-5f, e->c, st));
}
static void silu_fn(void *c, int i) {
    ew_ctx *e = c;
    CK(cllm_cuda_silu_mul(e->a, e->rows, e->E, e->c, st));
}
static void rope_fn(void *c, int i) {
    ew_ctx *e = c;
    CK(cllm_cuda_rope(e->a, (uint16_t *)e->a + 32 * 128, e->pos, e->rows, 32, 8, 128, 48 * 128, 48 * 128, e->inv, st));
}

static void bench_elementwise(void) {
    ew_ctx e = {0};
    int T = 16384, E = 4096, I = 14336;
    e.a = dev_random_bf16((size_t)T * 2 * I);
    e.b = dev_random_bf16((size_t)T * E);
    CU(cudaMalloc(&e.c, (size_t)T * I * 2));
    e.w = dev_random_bf16(I);
    e.rows = T, e.E = E;
    char shape[64];
    snprintf(shape, sizeof shape, "rows=%d E=%d +residual", T, E);
    row("rmsnorm", shape, time_ms(rms_fn, &e, 20, 15), 0, 4.0 * T * E * 2);
    e.E = I;
    snprintf(shape, sizeof shape, "T=%d I=%d", T, I);
    row("silu_mul", shape, time_ms(silu_fn, &e, 20, 15), 0, 3.0 * T * I * 2);
    int32_t *pos = malloc(T * 4);
    float inv[64];
    for (int t = 0; t < T; t++) pos[t] = t;
    for (int i = 0; i < 64; i++) inv[i] = 1.f / powf(500000.f, i / 64.f);
    CU(cudaMalloc((void **)&e.pos, T * 4));
    CU(cudaMalloc((void **)&e.inv, 64 * 4));
    CU(cudaMemcpy(e.pos, pos, T * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(e.inv, inv, 256, cudaMemcpyHostToDevice));
    snprintf(shape, sizeof shape, "T=%d H=32 Hkv=8 D=128", T);
    row("rope", shape, time_ms(rope_fn, &e, 20, 15), 0, 2.0 * T * 40 * 128 * 2);
    cudaFree(e.a), cudaFree(e.b), cudaFree(e.c), cudaFree(e.w), cudaFree(e.pos), cudaFree(e.inv);
    free(pos);
}



/* One Llama-3.1-8B decoder layer at T = 1 (batch 1, context `ctx`), the op
 * sequence of src/model/arch/llama.c, over NL layers of distinct weights (so
 * weights stream from HBM): launched one by one on the stream, and captured
 * once into a CUDA graph and replayed; beside the 4 linears alone. The
 * differences bound what launch overhead and the small kernels cost per step. */
typedef struct {
    cllm_cuda_gemm *g;
    cllm_weight qkv[32], o[32], gu[32], dn[32];
    void *ln1, *ln2, *x, *res, *h, *qkvb, *att, *gub, *act, *kc, *vc, *ws;
    float *inv;
    int32_t *pos;
    cllm_attn_meta m;
    int sms, nl, linears_only;
} layer_ctx;
static void layer_step(void *c, int it) {
    layer_ctx *L = c;
    (void)it;
    for (int l = 0; l < L->nl; l++) {
        if (!L->linears_only) CK(cllm_cuda_rmsnorm(L->x, L->res, L->ln1, 1, 4096, 1e-5f, L->h, st));
        CK(cllm_cuda_linear(L->g, L->h, 1, &L->qkv[l], L->qkvb, CLLM_DTYPE_BF16, st));
        if (!L->linears_only) {
            uint16_t *q = L->qkvb, *k = q + 4096, *v = q + 5120;
            CK(cllm_cuda_rope(q, k, L->pos, 1, 32, 8, 128, 6144, 6144, L->inv, st));
            CK(cllm_cuda_kv_write(k, v, 6144, 6144, &L->m, 8, 128, L->kc, L->vc, NULL, st));
            CK(cllm_cuda_attention(q, 6144, L->kc, L->vc, &L->m, 32, 8, 128, 0.0883883f, L->att, NULL, L->ws, 64u << 20,
                                   L->sms, st));
        }
        CK(cllm_cuda_linear(L->g, L->att, 1, &L->o[l], L->x, CLLM_DTYPE_BF16, st));
        if (!L->linears_only) CK(cllm_cuda_rmsnorm(L->x, L->res, L->ln2, 1, 4096, 1e-5f, L->h, st));
        CK(cllm_cuda_linear(L->g, L->h, 1, &L->gu[l], L->gub, CLLM_DTYPE_BF16, st));
        if (!L->linears_only) CK(cllm_cuda_silu_mul(L->gub, 1, 14336, L->act, st));
        CK(cllm_cuda_linear(L->g, L->act, 1, &L->dn[l], L->x, CLLM_DTYPE_BF16, st));
    }
}
static cudaGraphExec_t layer_graph;
static void layer_graph_fn(void *c, int i) {
    (void)c, (void)i;
    CU(cudaGraphLaunch(layer_graph, st));
}

static void bench_decode_layers(int ctx) {
    layer_ctx L;
    memset(&L, 0, sizeof L);
    L.nl = 32;
    CK(cllm_cuda_gemm_create(32u << 20, &L.g));
    CU(cudaDeviceGetAttribute(&L.sms, cudaDevAttrMultiProcessorCount, 0));
    for (int l = 0; l < L.nl; l++) {
        L.qkv[l] = (cllm_weight){.data = dev_random_bf16((size_t)6144 * 4096), .bias = NULL, .n = 6144, .k = 4096};
        L.o[l] = (cllm_weight){.data = dev_random_bf16((size_t)4096 * 4096), .bias = NULL, .n = 4096, .k = 4096};
        L.gu[l] = (cllm_weight){.data = dev_random_bf16((size_t)28672 * 4096), .bias = NULL, .n = 28672, .k = 4096};
        L.dn[l] = (cllm_weight){.data = dev_random_bf16((size_t)4096 * 14336), .bias = NULL, .n = 4096, .k = 14336};
    }
    L.ln1 = dev_random_bf16(4096), L.ln2 = dev_random_bf16(4096);
    L.x = dev_random_bf16(4096), L.res = dev_random_bf16(4096), L.h = dev_random_bf16(4096);
    L.qkvb = dev_random_bf16(6144), L.att = dev_random_bf16(4096), L.gub = dev_random_bf16(28672);
    L.act = dev_random_bf16(14336);
    int P = 16, nb = (ctx + P - 1) / P + 1;
    L.kc = dev_random_bf16((size_t)nb * P * 8 * 128), L.vc = dev_random_bf16((size_t)nb * P * 8 * 128);
    CU(cudaMalloc(&L.ws, 64u << 20));
    int32_t h_qsl[2] = {0, 1}, h_sl[1] = {ctx}, h_slot[1] = {ctx - 1}, h_pos[1] = {ctx - 1};
    int32_t *h_bt = malloc(nb * 4);
    for (int i = 0; i < nb; i++) h_bt[i] = (i * 7) % nb;
    float inv[64];
    for (int i = 0; i < 64; i++) inv[i] = 1.f / powf(500000.f, i / 64.f);
    void *dq, *dsl, *dbt, *dslot;
    CU(cudaMalloc(&dq, 8));
    CU(cudaMalloc(&dsl, 4));
    CU(cudaMalloc(&dbt, nb * 4));
    CU(cudaMalloc(&dslot, 4));
    CU(cudaMalloc((void **)&L.pos, 4));
    CU(cudaMalloc((void **)&L.inv, 256));
    CU(cudaMemcpy(dq, h_qsl, 8, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dsl, h_sl, 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dbt, h_bt, nb * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dslot, h_slot, 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(L.pos, h_pos, 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(L.inv, inv, 256, cudaMemcpyHostToDevice));
    L.m = (cllm_attn_meta){1, 1, 1, ctx, P, nb, dq, dsl, dbt, dslot};
    double wbytes = 32.0 * 2 * ((double)6144 * 4096 + 4096.0 * 4096 + 28672.0 * 4096 + 4096.0 * 14336);
    char shape[64];
    snprintf(shape, sizeof shape, "32 layers T=1 ctx=%d", ctx);
    L.linears_only = 1;
    row("decode_linears_only", shape, time_ms(layer_step, &L, 3, 9), 0, wbytes);
    L.linears_only = 0;
    row("decode_layers_stream", shape, time_ms(layer_step, &L, 3, 9), 0, wbytes);
    cudaGraph_t gr;
    CU(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    layer_step(&L, 0);
    CU(cudaStreamEndCapture(st, &gr));
    CU(cudaGraphInstantiate(&layer_graph, gr, 0));
    row("decode_layers_graph", shape, time_ms(layer_graph_fn, &L, 3, 9), 0, wbytes);
    cudaGraphExecDestroy(layer_graph), cudaGraphDestroy(gr);
    for (int l = 0; l < L.nl; l++) cudaFree(L.qkv[l].data), cudaFree(L.o[l].data), cudaFree(L.gu[l].data), cudaFree(L.dn[l].data);
    void *fr[] = {L.ln1, L.ln2, L.x, L.res, L.h, L.qkvb, L.att, L.gub, L.act, L.kc, L.vc, L.ws, L.pos, L.inv, dq, dsl, dbt, dslot};
    for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) cudaFree(fr[i]);
    free(h_bt);
    cllm_cuda_gemm_destroy(L.g);
}

int main(int argc, char **argv) {
    CU(cudaSetDevice(0));
    CU(cudaStreamCreate(&st));
    {
        struct cudaDeviceProp prop;
        CU(cudaGetDeviceProperties(&prop, 0));
        snprintf(CARD, sizeof CARD, "%s", prop.name);
        if (strstr(CARD, "H100")) PEAK_TFLOPS = 801.0, PEAK_TBS = 3.03;
        else if (strstr(CARD, "H200")) PEAK_TFLOPS = 790.0, PEAK_TBS = 4.30;
        else fprintf(stderr, "warning: no measured ceilings for %s; the ratios use the H200's\n", CARD);
    }
    js = fopen(argc > 1 ? argv[1] : "bench_cuda_kernels.json", "w");
    const char *only = argc > 2 ? argv[2] : "all";
#define RUN(sec) (!strcmp(only, "all") || !strcmp(only, sec))
    if (js) fprintf(js, "[");
    printf("card: %s\n", CARD);
    char cc[64], bc[64];
    snprintf(cc, sizeof cc, "compute (ceiling %.0f TFLOP/s)", PEAK_TFLOPS);
    snprintf(bc, sizeof bc, "bandwidth (ceiling %.2f TB/s)", PEAK_TBS);
    printf("%-22s %-28s %12s  %35s  %s\n", "kernel", "shape", "time", cc, bc);
    if (RUN("gemm")) bench_gemm();
    if (RUN("fp8")) bench_gemm_fp8();
    if (RUN("attention")) {
        bench_attention(64, 4096, 32, 8, 128, 16, 0, "");
        bench_attention(8, 8192, 32, 8, 128, 16, 0, "");
        bench_attention(1, 32768, 32, 8, 128, 16, 0, "");
        bench_attention(1, 2048, 32, 8, 128, 16, 0, "");
        bench_attention(64, 4096, 32, 8, 128, 16, 32768, "");
        bench_attention(8, 2048, 32, 8, 128, 16, 32768, "");
        bench_attention(256, 1024, 32, 8, 128, 16, 0, "");
        bench_attention(64, 4096, 64, 8, 128, 16, 0, " G8");
        /* adaptive decode split: graph-style launches (max 32768 / 131072) over short contexts */
        for (int on = 0; on < 2; on++) {
            cllm_cuda_attention_adaptive_split(on);
            const char *tg = on ? " adaptive" : " fixed";
            bench_attention(1, 128, 32, 8, 128, 16, 32768, tg);
            bench_attention(1, 128, 32, 8, 128, 16, 131072, tg);
            bench_attention(1, 2048, 32, 8, 128, 16, 131072, tg);
            bench_attention(8, 2048, 32, 8, 128, 16, 32768, tg);
            bench_attention(64, 1024, 32, 8, 128, 16, 32768, tg);
        }
        cllm_cuda_attention_adaptive_split(0);
        /* fp8 KV cache, decode */
        bench_attention_q(64, 1, 4096, 32, 8, 128, 16, 0, 1, "");
        bench_attention_q(1, 1, 32768, 32, 8, 128, 16, 0, 1, "");
        bench_attention_q(1, 1, 128, 32, 8, 128, 16, 32768, 1, "");
        bench_attention_q(1, 1, 128, 32, 8, 128, 16, 32768, 0, "");
        /* prefill / chunked prefill (tensor-core kernel; CLLM_CUDA_ATTN_PREFILL=fma: the CUDA-core one) */
        bench_attention_q(1, 2048, 2048, 32, 8, 128, 16, 0, 0, "");
        bench_attention_q(1, 8192, 8192, 32, 8, 128, 16, 0, 0, "");
        bench_attention_q(4, 512, 4096, 32, 8, 128, 16, 0, 0, "");
        bench_attention_q(1, 2048, 2048, 32, 8, 128, 16, 0, 1, "");
        bench_attention_q(4, 512, 4096, 32, 8, 128, 16, 0, 1, "");
        /* decode split sweep: (CTAs per SM, min split keys) */
        {
            int tune[][2] = {{8, 512}, {16, 256}, {16, 1024}, {4, 128}, {8, 1024}};
            for (int i = 0; i < 5; i++) {
                char tag[32];
                snprintf(tag, sizeof tag, " t%d/%d", tune[i][0], tune[i][1]);
                cllm_cuda_attention_tune(tune[i][0], tune[i][1]);
                bench_attention(64, 4096, 32, 8, 128, 16, 0, tag);
                bench_attention(8, 8192, 32, 8, 128, 16, 0, tag);
                bench_attention(1, 32768, 32, 8, 128, 16, 0, tag);
            }
            cllm_cuda_attention_tune(16, 512);
        }
    }
    if (RUN("elementwise")) bench_elementwise();
    if (RUN("decode")) {
        bench_decode_layers(128);
        bench_decode_layers(2048);
    }
    if (js) fprintf(js, "\n]\n"), fclose(js);
    cudaStreamDestroy(st);
    return 0;
}
#endif
