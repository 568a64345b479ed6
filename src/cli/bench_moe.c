/* `cllm bench moe`: the mixture-of-experts ops of a backend on one layer of
 * random weights and random routing (router logits uniform in [-4, 4],
 * routed by moe_route), per token count: moe_route, and moe_experts on its
 * paths. CUDA (CUDA events on the backend stream, median of --num-iters
 * after --num-iters-warmup): the grouped path split into the permutation
 * (align + gather: bandwidth against the card's copy ceiling), the gate_up
 * grouped GEMM with the fused SwiGLU and the down grouped GEMM (TFLOP/s
 * against the bf16 ceiling) and the combine; the whole op on the GEMV path
 * (T * k <= 8192), the grouped path, the per-expert cuBLASLt loop, and the
 * path the backend picks by itself ("auto", with its weight-bytes bandwidth:
 * the distinct experts the routing touches, 3 E I bf16 each, against the
 * copy ceiling). CPU: route and the whole op, host clock (a smoke test for
 * CI). Defaults: Qwen3-30B-A3B (hidden 2048, moe_intermediate_size 768, 128
 * experts, top-8) on CUDA; a small layer on the CPU. */
#include "backend/backend.h"
#include "cli/bench.h"
#include "core/clock.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLLM_HAVE_CUDA
#include <cuda_runtime.h>
#include "backend/cuda/cuda_ops.h"
#endif

#define MAX_T 32

static void usage(FILE *f) {
    fprintf(f, "usage: cllm bench moe [--device cuda|cpu] [--hidden-size 2048] [--moe-intermediate-size 768]\n"
               "       [--num-experts 128] [--top-k 8] [--num-tokens 1,8,64,512,4096,8192] [--num-iters 20]\n"
               "       [--num-iters-warmup 3] [--gemv-max-rows 64] [--renormalize 0|1] [--device-id 0]\n"
               "Times the mixture-of-experts ops on one layer of random weights and random routing.\n"
               "CPU defaults: --hidden-size 256 --moe-intermediate-size 128 --num-experts 16 --top-k 4\n"
               "--num-tokens 1,16,128 --num-iters 3 --num-iters-warmup 1.\n");
}

typedef struct {
    cllm_backend *be;
    bool cuda;
    int T, NE, k, E, I;
    bool renorm;
    float *logits;   /* (T, NE) device */
    int32_t *ids;    /* (T, k) device */
    float *w;        /* (T, k) device */
    void *x, *out, *ws;
    cllm_weight *gu, *dn; /* (NE) host views */
#ifdef CLLM_HAVE_CUDA
    cudaEvent_t ev0, ev1;
#endif
} ctx;

enum { OP_ROUTE, OP_EXPERTS };

static cllm_status run_op(ctx *c, int op) {
    cllm_backend *be = c->be;
    if (op == OP_ROUTE) return be->ops->moe_route(be, c->logits, c->T, c->NE, c->k, c->renorm, c->ids, c->w);
    return be->ops->moe_experts(be, c->x, c->T, c->E, c->ids, c->w, c->k, c->gu, c->dn, 0, c->NE, c->I, c->ws, c->out);
}

/* Median milliseconds of op over iters runs after warmup runs; < 0 on error. */
static double measure(ctx *c, int op, int iters, int warmup) {
    double *v = malloc(sizeof(double) * (size_t)(iters > 0 ? iters : 1));
    if (!v) return -1;
    for (int i = 0; i < warmup; i++)
        if (run_op(c, op) != CLLM_OK) { free(v); return -1; }
    if (c->be->ops->sync(c->be) != CLLM_OK) { free(v); return -1; }
    for (int i = 0; i < iters; i++) {
#ifdef CLLM_HAVE_CUDA
        if (c->cuda) {
            cudaStream_t s = (cudaStream_t)cllm_backend_native_stream(c->be);
            cudaEventRecord(c->ev0, s);
            if (run_op(c, op) != CLLM_OK) { free(v); return -1; }
            cudaEventRecord(c->ev1, s);
            float ms = 0;
            if (cudaEventSynchronize(c->ev1) != cudaSuccess || cudaEventElapsedTime(&ms, c->ev0, c->ev1) != cudaSuccess) {
                free(v);
                cllm_error(CLLM_ERR_CUDA, "bench moe: CUDA event timing failed");
                return -1;
            }
            v[i] = ms;
            continue;
        }
#endif
        double t0 = cllm_now_ms();
        if (run_op(c, op) != CLLM_OK || c->be->ops->sync(c->be) != CLLM_OK) { free(v); return -1; }
        v[i] = cllm_now_ms() - t0;
    }
    double m = cllm_bench_median(v, iters);
    free(v);
    return m;
}

static int parse_list(const char *s, long *v, int *n) {
    *n = 0;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 1 || x > 1000000 || *n >= MAX_T) return 0;
        v[(*n)++] = x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return *n > 0;
}

/* Fill n act elements at dst with uniform values in [-a, a] (host chunk, repeated). */
static cllm_status fill_random(cllm_backend *be, void *dst, size_t n, float a) {
    size_t chunk = n < ((size_t)1 << 22) ? n : ((size_t)1 << 22);
    float *h = malloc(sizeof(float) * (chunk ? chunk : 1));
    if (!h) return cllm_error(CLLM_ERR_OOM, "bench moe: out of host memory");
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < chunk; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h[i] = a * (2.f * (float)(s >> 40) / 16777216.f - 1.f);
    }
    cllm_status st = CLLM_OK;
    for (size_t o = 0; o < n && st == CLLM_OK; o += chunk)
        st = be->ops->upload(be, dst, o, h, CLLM_DTYPE_F32, n - o < chunk ? n - o : chunk);
    free(h);
    return st;
}

static void set_path(ctx *c, int path, int stop_after) {
#ifdef CLLM_HAVE_CUDA
    if (c->cuda) cllm_cuda_moe_tune(path, stop_after, -1);
#else
    (void)c, (void)path, (void)stop_after;
#endif
}

int cllm_cli_bench_moe(int argc, char **argv) {
    const char *device = NULL;
    long E = -1, I = -1, NE = -1, k = -1, iters = -1, warmup = -1, gemv_max = -1, renorm = 1, dev_id = 0;
    long Ts[MAX_T];
    int nT = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (i + 1 >= argc) { fprintf(stderr, "cllm bench moe: %s needs a value\n", a); return 2; }
        const char *v = argv[++i];
        char *end = NULL;
        long x = strtol(v, &end, 10);
        bool num = end != v && *end == 0;
        if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--num-tokens")) {
            if (!parse_list(v, Ts, &nT)) {
                fprintf(stderr, "cllm bench moe: --num-tokens '%s' must be a comma-separated list of at most %d "
                        "counts in [1, 1000000]\n", v, MAX_T);
                return 2;
            }
        } else if (!num) { fprintf(stderr, "cllm bench moe: %s '%s' is not an integer\n", a, v); return 2; }
        else if (!strcmp(a, "--hidden-size")) E = x;
        else if (!strcmp(a, "--moe-intermediate-size")) I = x;
        else if (!strcmp(a, "--num-experts")) NE = x;
        else if (!strcmp(a, "--top-k")) k = x;
        else if (!strcmp(a, "--num-iters")) iters = x;
        else if (!strcmp(a, "--num-iters-warmup")) warmup = x;
        else if (!strcmp(a, "--gemv-max-rows")) gemv_max = x;
        else if (!strcmp(a, "--renormalize")) renorm = x;
        else if (!strcmp(a, "--device-id")) dev_id = x;
        else { fprintf(stderr, "cllm bench moe: unknown argument %s (cllm bench moe --help)\n", a); return 2; }
    }
    if (!device) device = cllm_backend_cuda_device_count() > 0 ? "cuda" : "cpu";
    bool cuda = !strcmp(device, "cuda");
    if (!cuda && strcmp(device, "cpu")) { fprintf(stderr, "cllm bench moe: --device must be cuda or cpu\n"); return 2; }
    if (E < 0) E = cuda ? 2048 : 256;
    if (I < 0) I = cuda ? 768 : 128;
    if (NE < 0) NE = cuda ? 128 : 16;
    if (k < 0) k = cuda ? 8 : 4;
    if (iters < 0) iters = cuda ? 20 : 3;
    if (warmup < 0) warmup = cuda ? 3 : 1;
    if (nT == 0) {
        static const long dc[] = {1, 8, 64, 512, 4096, 8192}, dh[] = {1, 16, 128};
        nT = cuda ? 6 : 3;
        memcpy(Ts, cuda ? dc : dh, sizeof(long) * (size_t)nT);
    }
    if (E < 1 || I < 1 || NE < 1 || k < 1 || k > NE || iters < 1 || warmup < 0 || E > 65536 || I > 65536 ||
        NE > 4096) {
        fprintf(stderr, "cllm bench moe: bad shape or counts (hidden %ld, intermediate %ld, experts %ld, top-k %ld, "
                "iters %ld, warm-up %ld)\n", E, I, NE, k, iters, warmup);
        return 2;
    }
    cllm_backend *be = NULL;
    cllm_status st = cuda ? cllm_backend_cuda_create((int)dev_id, &be) : cllm_backend_cpu_create(0, &be);
    if (st != CLLM_OK) { fprintf(stderr, "cllm bench moe: %s\n", cllm_last_error()); return 1; }
    if (!be->ops->moe_route || !be->ops->moe_experts || !be->ops->moe_workspace_bytes) {
        fprintf(stderr, "cllm bench moe: the %s backend has no mixture-of-experts ops\n", be->ops->name);
        cllm_backend_destroy(be);
        return 1;
    }
    ctx c = {.be = be, .cuda = cuda, .NE = (int)NE, .k = (int)k, .E = (int)E, .I = (int)I, .renorm = renorm != 0};
    int rc = 1;
    long Tmax = 0;
    for (int i = 0; i < nT; i++) Tmax = Ts[i] > Tmax ? Ts[i] : Tmax;
#ifdef CLLM_HAVE_CUDA
    if (cuda) {
        if (gemv_max >= 0) cllm_cuda_moe_tune(-1, -1, (int)gemv_max);
        cudaEventCreate(&c.ev0);
        cudaEventCreate(&c.ev1);
    }
#else
    (void)gemv_max;
#endif
    /* the workspace of the largest need over the token counts and the paths measured */
    size_t wsb = 0;
    for (int i = 0; i < nT; i++)
        for (int p = 0; p <= 3; p++) {
            if (p && !cuda) break;
            set_path(&c, p, 0);
            size_t b = be->ops->moe_workspace_bytes((int)Ts[i], (int)k, (int)E, (int)I);
            wsb = b > wsb ? b : wsb;
        }
    set_path(&c, 0, 0);
    size_t as = be->act == CLLM_DTYPE_F32 ? 4 : 2;
    size_t per_expert = (size_t)3 * E * I; /* elements: gate, up, down */
    int32_t *h_ids = malloc(sizeof(int32_t) * (size_t)Tmax * k);
    float *h_lg = malloc(sizeof(float) * (size_t)Tmax * NE);
    char *seen = calloc((size_t)NE, 1);
    c.gu = calloc((size_t)NE, sizeof(cllm_weight)), c.dn = calloc((size_t)NE, sizeof(cllm_weight));
    void *gu_all = NULL, *dn_all = NULL;
    if (!h_ids || !h_lg || !seen || !c.gu || !c.dn) { fprintf(stderr, "cllm bench moe: out of host memory\n"); goto done; }
#define TRY(call)                                                                       \
    do {                                                                                \
        if ((st = (call)) != CLLM_OK) {                                                 \
            fprintf(stderr, "cllm bench moe: %s\n", cllm_last_error());                 \
            goto done;                                                                  \
        }                                                                               \
    } while (0)
    TRY(be->ops->alloc(be, (size_t)NE * 2 * I * E * as, &gu_all));
    TRY(be->ops->alloc(be, (size_t)NE * E * I * as, &dn_all));
    TRY(be->ops->alloc(be, (size_t)Tmax * E * as, &c.x));
    TRY(be->ops->alloc(be, (size_t)Tmax * E * as, &c.out));
    TRY(be->ops->alloc(be, (size_t)Tmax * NE * 4, (void **)&c.logits));
    TRY(be->ops->alloc(be, (size_t)Tmax * k * 4, (void **)&c.ids));
    TRY(be->ops->alloc(be, (size_t)Tmax * k * 4, (void **)&c.w));
    TRY(be->ops->alloc(be, wsb, &c.ws));
    TRY(fill_random(be, gu_all, (size_t)NE * 2 * I * E, sqrtf(3.f / (float)E)));
    TRY(fill_random(be, dn_all, (size_t)NE * E * I, sqrtf(3.f / (float)I)));
    TRY(fill_random(be, c.x, (size_t)Tmax * E, 1.f));
    for (int e = 0; e < NE; e++) {
        c.gu[e] = (cllm_weight){.data = (char *)gu_all + (size_t)e * 2 * I * E * as, .n = 2 * I, .k = E};
        c.dn[e] = (cllm_weight){.data = (char *)dn_all + (size_t)e * E * I * as, .n = E, .k = I};
    }
    {
        uint64_t s = 0x2545F4914F6CDD1Dull;
        for (size_t i = 0; i < (size_t)Tmax * NE; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            h_lg[i] = 4.f * (2.f * (float)(s >> 40) / 16777216.f - 1.f);
        }
        TRY(be->ops->h2d(be, c.logits, h_lg, sizeof(float) * (size_t)Tmax * NE));
    }
    const char *card = NULL;
    double bw = 0, peak = 0;
    cllm_backend_ceilings(be, &card, &bw, &peak);
    printf("cllm bench moe: %s (%s), hidden %ld, moe_intermediate %ld, %ld experts, top-%ld, %ld iterations "
           "(median)\n", be->ops->name, card ? card : "unknown", E, I, NE, k, iters);
    if (bw > 0) printf("ceilings: %.0f GB/s copy, %.0f TFLOP/s bf16\n", bw / 1e9, peak / 1e12);
    printf("%7s %6s %9s %9s %9s %9s %9s %9s | %9s %9s %9s %9s %9s %7s %7s %6s\n", "tokens", "path", "route_us",
           "perm_us", "gu_us", "down_us", "comb_us", "grp_us", "gemv_us", "xgemv_us", "loop_us", "auto_us", "TFLOP/s",
           "TF%", "wGB/s", "bw%");
    for (int ti = 0; ti < nT; ti++) {
        int T = (int)Ts[ti];
        c.T = T;
        set_path(&c, 0, 0);
        double t_route = measure(&c, OP_ROUTE, (int)iters, (int)warmup);
        if (t_route < 0) { fprintf(stderr, "cllm bench moe: moe_route: %s\n", cllm_last_error()); goto done; }
        TRY(be->ops->d2h(be, h_ids, c.ids, sizeof(int32_t) * (size_t)T * k));
        memset(seen, 0, (size_t)NE);
        int active = 0;
        for (size_t i = 0; i < (size_t)T * k; i++)
            if (h_ids[i] >= 0 && h_ids[i] < NE && !seen[h_ids[i]]) seen[h_ids[i]] = 1, active++;
        double rows = (double)T * (double)k;
        double flops = rows * 6.0 * (double)E * (double)I;
        double wbytes = (double)active * (double)per_expert * (double)as;
        double t_auto = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
        if (t_auto < 0) { fprintf(stderr, "cllm bench moe: moe_experts: %s\n", cllm_last_error()); goto done; }
        double t_perm = -1, t_gu = -1, t_down = -1, t_grp = -1, t_gemv = -1, t_xgemv = -1, t_loop = -1;
        const char *auto_path = "cpu";
#ifdef CLLM_HAVE_CUDA
        if (cuda) {
            const int ap = cllm_cuda_moe_path(T, (int)k, (int)NE);
            auto_path = ap == CLLM_CUDA_MOE_GEMV ? "gemv" : ap == CLLM_CUDA_MOE_XGEMV ? "xgemv" : "grouped";
            double s1, s2, s3;
            set_path(&c, CLLM_CUDA_MOE_GROUPED, 1);
            s1 = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
            set_path(&c, CLLM_CUDA_MOE_GROUPED, 2);
            s2 = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
            set_path(&c, CLLM_CUDA_MOE_GROUPED, 3);
            s3 = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
            set_path(&c, CLLM_CUDA_MOE_GROUPED, 0);
            t_grp = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
            if (s1 < 0 || s2 < 0 || s3 < 0 || t_grp < 0) {
                fprintf(stderr, "cllm bench moe: grouped path: %s\n", cllm_last_error());
                goto done;
            }
            t_perm = s1, t_gu = s2 - s1, t_down = s3 - s2;
            if (rows <= 8192) {
                set_path(&c, CLLM_CUDA_MOE_GEMV, 0);
                t_gemv = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
                if (t_gemv < 0) { fprintf(stderr, "cllm bench moe: gemv path: %s\n", cllm_last_error()); goto done; }
            }
            if (rows <= 8192) { /* above, each expert's rows are re-streamed once per 8 of its assignments */
                set_path(&c, CLLM_CUDA_MOE_XGEMV, 0);
                t_xgemv = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
                if (t_xgemv < 0) { fprintf(stderr, "cllm bench moe: xgemv path: %s\n", cllm_last_error()); goto done; }
            }
            set_path(&c, CLLM_CUDA_MOE_LOOP, 0);
            t_loop = measure(&c, OP_EXPERTS, (int)iters, (int)warmup);
            if (t_loop < 0) { fprintf(stderr, "cllm bench moe: loop path: %s\n", cllm_last_error()); goto done; }
            set_path(&c, 0, 0);
        }
#endif
        double comb = t_grp >= 0 && t_down >= 0 ? t_grp - (t_perm + t_gu + t_down) : -1;
        char b[9][16];
        double vals[9] = {t_route, t_perm, t_gu, t_down, comb, t_grp, t_gemv, t_xgemv, t_loop};
        for (int q = 0; q < 9; q++) {
            if (vals[q] < 0 && q != 4) snprintf(b[q], sizeof b[q], "-");
            else if (q == 4 && t_grp < 0) snprintf(b[q], sizeof b[q], "-");
            else snprintf(b[q], sizeof b[q], "%.1f", vals[q] * 1e3);
        }
        double tf = flops / (t_auto * 1e-3) / 1e12, gbs = wbytes / (t_auto * 1e-3) / 1e9;
        char tfp[16] = "-", bwp[16] = "-";
        if (peak > 0) snprintf(tfp, sizeof tfp, "%.1f", 100.0 * tf * 1e12 / peak);
        if (bw > 0) snprintf(bwp, sizeof bwp, "%.1f", 100.0 * gbs * 1e9 / bw);
        printf("%7d %6s %9s %9s %9s %9s %9s %9s | %9s %9s %9s %9.1f %9.2f %7s %7.0f %6s\n", T, auto_path, b[0], b[1],
               b[2], b[3], b[4], b[5], b[6], b[7], b[8], t_auto * 1e3, tf, tfp, gbs, bwp);
        if (cuda && t_perm > 0 && t_gu > 0 && t_down > 0) {
            double pb = 2.0 * rows * (double)E * (double)as; /* gather: rows read + written */
            printf("        grouped split: permute %.0f GB/s%s, gate_up %.1f TFLOP/s, down %.1f TFLOP/s", pb / (t_perm * 1e-3) / 1e9,
                   "", rows * 4.0 * E * I / (t_gu * 1e-3) / 1e12, rows * 2.0 * E * I / (t_down * 1e-3) / 1e12);
            if (bw > 0 && peak > 0)
                printf(" (%.1f %% of copy, %.1f %% / %.1f %% of bf16)", 100.0 * pb / (t_perm * 1e-3) / bw,
                       100.0 * rows * 4.0 * E * I / (t_gu * 1e-3) / peak, 100.0 * rows * 2.0 * E * I / (t_down * 1e-3) / peak);
            printf("\n");
        }
        fflush(stdout);
    }
    printf("columns: route_us moe_route; grouped path: perm_us align + gather, gu_us gate_up GEMM + SwiGLU, down_us "
           "down GEMM, comb_us the weighted combine, grp_us the whole op; gemv_us / xgemv_us / loop_us the whole op on "
           "the GEMV path, the expert-major GEMV path and the per-expert cuBLASLt loop; auto_us the path the backend picks (path column), TFLOP/s = 6 T k "
           "E I / time, wGB/s = the distinct experts' weight bytes / time\n");
    rc = 0;
done:
    set_path(&c, 0, 0);
#ifdef CLLM_HAVE_CUDA
    if (cuda) cudaEventDestroy(c.ev0), cudaEventDestroy(c.ev1);
#endif
    if (gu_all) be->ops->free(be, gu_all);
    if (dn_all) be->ops->free(be, dn_all);
    if (c.x) be->ops->free(be, c.x);
    if (c.out) be->ops->free(be, c.out);
    if (c.logits) be->ops->free(be, c.logits);
    if (c.ids) be->ops->free(be, c.ids);
    if (c.w) be->ops->free(be, c.w);
    if (c.ws) be->ops->free(be, c.ws);
    free(h_ids), free(h_lg), free(seen), free(c.gu), free(c.dn);
    cllm_backend_destroy(be);
    return rc;
}
