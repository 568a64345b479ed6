/* CUDA mixture-of-experts ops (backend.h moe_route / moe_experts /
 * moe_combine, src/backend/cuda/moe.cu) against the CPU reference ops
 * (src/backend/cpu/cpu_moe.c) on the same bf16-rounded inputs: routing
 * (tokens 1..8192, experts 8..512, top-k 1..8, renormalize on/off, ties),
 * the experts on every path (GEMV, grouped GEMM, expert-major GEMV, per-expert cuBLASLt loop)
 * over tokens 1..8192, experts 8..128, top-k 1..8, shapes that are not
 * multiples of the GEMM tiles, expert-parallel subsets (tokens with no local
 * expert: zeros), the Qwen3-30B-A3B layer shape; the combine; the errors
 * (E or I not a multiple of 8, experts not equally spaced, too many
 * experts); a CUDA graph of each capturable path replayed with new routing;
 * the loop path refused under capture. */
#include "kt_util.h"

static cllm_backend *be;

/* ------------------------------------------------------------------ route */

static void t_route(int T, int NE, int k, bool renorm, bool ties) {
    float *lg = malloc(sizeof(float) * (size_t)T * NE);
    for (size_t i = 0; i < (size_t)T * NE; i++) lg[i] = ties ? 0.5f * (float)kt_int(3) : kt_unif(4.f);
    int32_t *rid = malloc(sizeof(int32_t) * (size_t)T * k);
    float *rw = malloc(sizeof(float) * (size_t)T * k);
    KT_OK(cllm_cpu_moe_route(lg, T, NE, k, renorm, rid, rw));
    void *dl = kt_dev_copy(lg, sizeof(float) * (size_t)T * NE);
    void *di = kt_dev_poison(sizeof(int32_t) * (size_t)T * k), *dw = kt_dev_poison(sizeof(float) * (size_t)T * k);
    KT_OK(be->ops->moe_route(be, dl, T, NE, k, renorm, di, dw));
    KT_CU(cudaDeviceSynchronize());
    int32_t *gid = malloc(sizeof(int32_t) * (size_t)T * k);
    float *gw = malloc(sizeof(float) * (size_t)T * k);
    KT_CU(cudaMemcpy(gid, di, sizeof(int32_t) * (size_t)T * k, cudaMemcpyDeviceToHost));
    KT_CU(cudaMemcpy(gw, dw, sizeof(float) * (size_t)T * k, cudaMemcpyDeviceToHost));
    float *fi = malloc(sizeof(float) * (size_t)T * k), *fr = malloc(sizeof(float) * (size_t)T * k);
    for (size_t i = 0; i < (size_t)T * k; i++) fi[i] = (float)gid[i], fr[i] = (float)rid[i];
    char nm[128];
    snprintf(nm, sizeof nm, "moe_route ids T=%d experts=%d k=%d renorm=%d ties=%d", T, NE, k, renorm, ties);
    kt_check(nm, fi, fr, (size_t)T * k, 0, 0);
    snprintf(nm, sizeof nm, "moe_route weights T=%d experts=%d k=%d renorm=%d ties=%d", T, NE, k, renorm, ties);
    kt_check(nm, gw, rw, (size_t)T * k, 1e-6f, 1e-5f);
    free(lg), free(rid), free(rw), free(gid), free(gw), free(fi), free(fr);
    cudaFree(dl), cudaFree(di), cudaFree(dw);
}

/* ---------------------------------------------------------------- experts */

/* One layer's inputs: host (bf16-rounded f32) and device copies. Routing:
 * k distinct experts of [0, NE) per token, positive weights. */
typedef struct {
    int T, NE, k, E, I, start, nl;
    float *x, *gu, *dn, *w;
    int32_t *ids;
    void *dx, *dgu, *ddn, *dids, *dw;
    cllm_weight *hgu, *hdn, *cgu, *cdn; /* device views (CUDA op), host views (CPU op) */
} layer;

static void route_random(layer *L) {
    for (int t = 0; t < L->T; t++)
        for (int j = 0; j < L->k; j++) {
            int e, dup;
            do {
                e = kt_int(L->NE);
                dup = 0;
                for (int i = 0; i < j; i++) dup |= L->ids[(size_t)t * L->k + i] == e;
            } while (dup);
            L->ids[(size_t)t * L->k + j] = e;
            L->w[(size_t)t * L->k + j] = 0.05f + 0.95f * (float)(kt_next() >> 40) / 16777216.f;
        }
}

static void layer_make(layer *L, int T, int NE, int k, int E, int I, int start, int nl) {
    memset(L, 0, sizeof *L);
    L->T = T, L->NE = NE, L->k = k, L->E = E, L->I = I, L->start = start, L->nl = nl;
    L->x = kt_rand((size_t)T * E, 1.f, 0.f);
    L->gu = kt_rand((size_t)nl * 2 * I * E, sqrtf(3.f / (float)E), 0.f);
    L->dn = kt_rand((size_t)nl * E * I, sqrtf(3.f / (float)I), 0.f);
    L->ids = malloc(sizeof(int32_t) * (size_t)T * k + 4);
    L->w = malloc(sizeof(float) * (size_t)T * k + 4);
    route_random(L);
    L->dx = kt_dev_bf16(L->x, (size_t)T * E);
    L->dgu = kt_dev_bf16(L->gu, (size_t)nl * 2 * I * E);
    L->ddn = kt_dev_bf16(L->dn, (size_t)nl * E * I);
    L->dids = kt_dev_copy(L->ids, sizeof(int32_t) * (size_t)T * k);
    L->dw = kt_dev_copy(L->w, sizeof(float) * (size_t)T * k);
    L->hgu = calloc((size_t)nl, sizeof(cllm_weight)), L->hdn = calloc((size_t)nl, sizeof(cllm_weight));
    L->cgu = calloc((size_t)nl, sizeof(cllm_weight)), L->cdn = calloc((size_t)nl, sizeof(cllm_weight));
    for (int e = 0; e < nl; e++) {
        L->hgu[e] = (cllm_weight){.data = (uint16_t *)L->dgu + (size_t)e * 2 * I * E, .n = 2 * I, .k = E};
        L->hdn[e] = (cllm_weight){.data = (uint16_t *)L->ddn + (size_t)e * E * I, .n = E, .k = I};
        L->cgu[e] = (cllm_weight){.data = L->gu + (size_t)e * 2 * I * E, .n = 2 * I, .k = E};
        L->cdn[e] = (cllm_weight){.data = L->dn + (size_t)e * E * I, .n = E, .k = I};
    }
}

static void layer_upload_routing(layer *L) {
    KT_CU(cudaMemcpy(L->dids, L->ids, sizeof(int32_t) * (size_t)L->T * L->k, cudaMemcpyHostToDevice));
    KT_CU(cudaMemcpy(L->dw, L->w, sizeof(float) * (size_t)L->T * L->k, cudaMemcpyHostToDevice));
}

static void layer_free(layer *L) {
    free(L->x), free(L->gu), free(L->dn), free(L->w), free(L->ids);
    free(L->hgu), free(L->hdn), free(L->cgu), free(L->cdn);
    cudaFree(L->dx), cudaFree(L->dgu), cudaFree(L->ddn), cudaFree(L->dids), cudaFree(L->dw);
}

static float *cpu_ref(const layer *L) {
    float *ref = malloc(sizeof(float) * (size_t)L->T * L->E + 4);
    void *ws = malloc(cllm_cpu_moe_workspace_bytes(L->T, L->k, L->E, L->I));
    KT_OK(cllm_cpu_moe_experts(L->x, L->T, L->E, L->ids, L->w, L->k, L->cgu, L->cdn, L->start, L->nl, L->I, ws, ref));
    free(ws);
    return ref;
}

static const char *path_name(int p) {
    return p == CLLM_CUDA_MOE_GEMV      ? "gemv"
           : p == CLLM_CUDA_MOE_GROUPED ? "grouped"
           : p == CLLM_CUDA_MOE_LOOP    ? "loop"
           : p == CLLM_CUDA_MOE_XGEMV   ? "xgemv"
                                        : "auto";
}

/* Run the CUDA op on path p (AUTO: the default choice) and compare with ref. */
static void run_path(const layer *L, const float *ref, int p, const char *tag) {
    cllm_cuda_moe_tune(p, 0, -1);
    size_t wsb = be->ops->moe_workspace_bytes(L->T, L->k, L->E, L->I);
    void *ws = kt_dev_poison(wsb), *out = kt_dev_poison((size_t)L->T * L->E * 2);
    KT_OK(be->ops->moe_experts(be, L->dx, L->T, L->E, L->dids, L->dw, L->k, L->hgu, L->hdn, L->start, L->nl, L->I, ws,
                               out));
    float *g = kt_get_bf16(out, (size_t)L->T * L->E);
    char nm[160];
    snprintf(nm, sizeof nm, "moe_experts %s T=%d experts=%d k=%d E=%d I=%d local=[%d,+%d)%s", path_name(p), L->T,
             L->NE, L->k, L->E, L->I, L->start, L->nl, tag);
    kt_check(nm, g, ref, (size_t)L->T * L->E, 1e-2f, 2e-2f);
    free(g);
    cudaFree(ws), cudaFree(out);
    cllm_cuda_moe_tune(CLLM_CUDA_MOE_AUTO, 0, -1);
}

static void t_experts(int T, int NE, int k, int E, int I, int start, int nl, bool loop) {
    layer L;
    layer_make(&L, T, NE, k, E, I, start, nl);
    float *ref = cpu_ref(&L);
    run_path(&L, ref, CLLM_CUDA_MOE_AUTO, "");
    run_path(&L, ref, CLLM_CUDA_MOE_GEMV, "");
    run_path(&L, ref, CLLM_CUDA_MOE_GROUPED, "");
    run_path(&L, ref, CLLM_CUDA_MOE_XGEMV, "");
    if (loop) run_path(&L, ref, CLLM_CUDA_MOE_LOOP, "");
    free(ref);
    layer_free(&L);
}

/* A CUDA graph of path p captured once, replayed with new routing written
 * into the same device buffers: each replay against the CPU op. The loop
 * path must refuse to run under capture. */
static void t_graph(int T, int NE, int k, int E, int I, int p) {
    layer L;
    layer_make(&L, T, NE, k, E, I, 0, NE);
    cllm_cuda_moe_tune(p, 0, -1);
    size_t wsb = be->ops->moe_workspace_bytes(T, k, E, I);
    void *ws = kt_dev_poison(wsb), *out = kt_dev_poison((size_t)T * E * 2);
    /* warm-up outside the capture, as the engine does */
    KT_OK(be->ops->moe_experts(be, L.dx, T, E, L.dids, L.dw, k, L.hgu, L.hdn, 0, NE, I, ws, out));
    KT_OK(be->ops->sync(be));
    KT_OK(be->ops->graph_capture_begin(be));
    cllm_status st = be->ops->moe_experts(be, L.dx, T, E, L.dids, L.dw, k, L.hgu, L.hdn, 0, NE, I, ws, out);
    void *graph = NULL;
    cllm_status st2 = be->ops->graph_capture_end(be, &graph);
    char nm[160];
    if (p == CLLM_CUDA_MOE_LOOP) {
        snprintf(nm, sizeof nm, "moe_experts loop refused under capture T=%d", T);
        float got = st == CLLM_ERR_INVALID_ARG ? 1.f : 0.f, want = 1.f;
        kt_check(nm, &got, &want, 1, 0, 0);
        if (st != CLLM_ERR_INVALID_ARG) fprintf(stderr, "  status %d: %s\n", (int)st, cllm_last_error());
        cllm_error_clear();
        be->ops->graph_destroy(be, graph);
        cudaGetLastError();
    } else {
        KT_OK(st);
        KT_OK(st2);
        for (int rep = 0; rep < 3; rep++) {
            route_random(&L);
            layer_upload_routing(&L);
            KT_CU(cudaMemset(out, 0xFF, (size_t)T * E * 2));
            KT_OK(be->ops->graph_launch(be, graph));
            KT_OK(be->ops->sync(be));
            float *ref = cpu_ref(&L), *g = kt_get_bf16(out, (size_t)T * E);
            snprintf(nm, sizeof nm, "moe_experts %s graph replay %d T=%d experts=%d k=%d E=%d I=%d", path_name(p),
                     rep, T, NE, k, E, I);
            kt_check(nm, g, ref, (size_t)T * E, 1e-2f, 2e-2f);
            free(ref), free(g);
        }
        be->ops->graph_destroy(be, graph);
    }
    cllm_cuda_moe_tune(CLLM_CUDA_MOE_AUTO, 0, -1);
    cudaFree(ws), cudaFree(out);
    layer_free(&L);
}

static void expect_invalid(const char *what, cllm_status st) {
    float got = st == CLLM_ERR_INVALID_ARG ? 1.f : 0.f, want = 1.f;
    char nm[160];
    snprintf(nm, sizeof nm, "error: %s", what);
    kt_check(nm, &got, &want, 1, 0, 0);
    if (st != CLLM_ERR_INVALID_ARG) fprintf(stderr, "  status %d\n", (int)st);
    cllm_error_clear();
}

static void t_errors(void) {
    layer L;
    layer_make(&L, 4, 8, 2, 64, 32, 0, 8);
    void *ws = kt_dev_poison(1 << 20), *out = kt_dev_poison(4 * 64 * 2);
    /* E not a multiple of 8: present the weights as (2*I, 60) and (60, I) */
    cllm_weight gu[8], dn[8];
    for (int e = 0; e < 8; e++) gu[e] = L.hgu[e], dn[e] = L.hdn[e], gu[e].k = 60, dn[e].n = 60;
    expect_invalid("moe_experts E=60",
                   be->ops->moe_experts(be, L.dx, 4, 60, L.dids, L.dw, 2, gu, dn, 0, 8, 32, ws, out));
    for (int e = 0; e < 8; e++) gu[e] = L.hgu[e], dn[e] = L.hdn[e], gu[e].n = 2 * 30, dn[e].k = 30;
    expect_invalid("moe_experts I=30",
                   be->ops->moe_experts(be, L.dx, 4, 64, L.dids, L.dw, 2, gu, dn, 0, 8, 30, ws, out));
    for (int e = 0; e < 8; e++) gu[e] = L.hgu[e], dn[e] = L.hdn[e];
    gu[3] = L.hgu[4], gu[4] = L.hgu[3];
    expect_invalid("moe_experts experts not equally spaced",
                   be->ops->moe_experts(be, L.dx, 4, 64, L.dids, L.dw, 2, gu, dn, 0, 8, 32, ws, out));
    expect_invalid("moe_experts top_k 33",
                   be->ops->moe_experts(be, L.dx, 4, 64, L.dids, L.dw, 33, L.hgu, L.hdn, 0, 8, 32, ws, out));
    void *lg = kt_dev_poison(4 * 1024 * 4);
    expect_invalid("moe_route 1024 experts", be->ops->moe_route(be, lg, 4, 1024, 2, true, ws, out));
    expect_invalid("moe_route top_k 33", be->ops->moe_route(be, lg, 4, 64, 33, true, ws, out));
    expect_invalid("moe_route top_k > experts", be->ops->moe_route(be, lg, 4, 8, 9, true, ws, out));
    KT_OK(be->ops->sync(be));
    cudaFree(ws), cudaFree(out), cudaFree(lg);
    layer_free(&L);
}

/* ---------------------------------------------------------------- combine */

static void t_combine(int n, int k, int M, int E) {
    float *y = kt_rand((size_t)M * E, 1.f, 0.f), *w = kt_rand((size_t)n * k, 1.f, 0.f);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)n * k);
    for (size_t i = 0; i < (size_t)n * k; i++) rows[i] = kt_int(5) == 0 ? -1 : kt_int(M);
    float *ref = malloc(sizeof(float) * (size_t)n * E + 4);
    KT_OK(cllm_cpu_moe_combine(y, rows, w, n, k, E, ref));
    void *dy = kt_dev_bf16(y, (size_t)M * E), *dr = kt_dev_copy(rows, sizeof(int32_t) * (size_t)n * k);
    void *dw = kt_dev_copy(w, sizeof(float) * (size_t)n * k), *dout = kt_dev_poison((size_t)n * E * 2);
    KT_OK(be->ops->moe_combine(be, dy, dr, dw, n, k, E, dout));
    float *g = kt_get_bf16(dout, (size_t)n * E);
    char nm[128];
    snprintf(nm, sizeof nm, "moe_combine n=%d k=%d M=%d E=%d", n, k, M, E);
    kt_check(nm, g, ref, (size_t)n * E, 1e-2f, 1e-2f);
    free(y), free(w), free(rows), free(ref), free(g);
    cudaFree(dy), cudaFree(dr), cudaFree(dw), cudaFree(dout);
}

int main(void) {
    be = kt_cuda();
    const int Ts[] = {1, 2, 7, 64, 257, 1024, 8192};
    const int NEs[] = {8, 64, 128};
    const int ks[] = {1, 2, 8};
    /* routing */
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++) {
                if (ks[c] > NEs[b]) continue;
                t_route(Ts[a], NEs[b], ks[c], c != 1, false);
                t_route(Ts[a], NEs[b], ks[c], c == 1, true);
            }
    t_route(33, 256, 8, true, false);
    t_route(33, 512, 8, false, true);
    t_route(5, 3, 3, true, false);
    t_route(5, 40, 32, true, true);
    /* experts: every path over tokens x experts x top-k, a small layer */
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++) {
                if (ks[c] > NEs[b]) continue;
                t_experts(Ts[a], NEs[b], ks[c], 64, 32, 0, NEs[b], Ts[a] <= 1024);
            }
    /* shapes off the GEMM tiles (E, I multiples of 8 only), K tails */
    t_experts(7, 8, 2, 136, 200, 0, 8, true);
    t_experts(300, 16, 4, 72, 24, 0, 16, true);
    t_experts(65, 8, 2, 1000, 136, 0, 8, true);
    /* expert parallelism: local subsets (many tokens with no local expert) */
    t_experts(1, 64, 8, 128, 64, 16, 16, true);
    t_experts(7, 64, 8, 128, 64, 48, 16, true);
    t_experts(257, 128, 8, 128, 64, 32, 32, true);
    t_experts(1024, 8, 2, 128, 64, 4, 4, true);
    t_experts(64, 128, 1, 128, 64, 127, 1, true);
    /* Qwen3-30B-A3B layer shape (hidden 2048, 128 experts, top-8, 768) and Mixtral-like top-2 of 8 */
    t_experts(1, 128, 8, 2048, 768, 0, 128, true);
    t_experts(8, 128, 8, 2048, 768, 0, 128, true);
    t_experts(257, 128, 8, 2048, 768, 0, 128, false);
    t_experts(33, 8, 2, 1024, 1792, 0, 8, true);
    /* CUDA graphs */
    t_graph(4, 128, 8, 256, 128, CLLM_CUDA_MOE_GEMV);
    t_graph(64, 128, 8, 256, 128, CLLM_CUDA_MOE_GROUPED);
    t_graph(32, 128, 8, 256, 128, CLLM_CUDA_MOE_XGEMV);
    t_graph(512, 8, 2, 256, 128, CLLM_CUDA_MOE_AUTO);
    t_graph(16, 8, 2, 256, 128, CLLM_CUDA_MOE_LOOP);
    /* combine (expert parallelism) */
    t_combine(1, 1, 4, 64);
    t_combine(7, 2, 30, 136);
    t_combine(257, 8, 1000, 2048);
    t_combine(33, 3, 50, 45); /* E not a multiple of 8: the scalar kernel */
    t_errors();
    cllm_backend_destroy(be);
    return kt_finish("test_cuda_moe");
}
