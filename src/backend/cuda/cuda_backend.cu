/* The CUDA backend: the op table of src/backend/backend.h over the entries
 * of cuda_ops.h, one stream, bf16 activations and weights.
 *
 * Owned at creation (never during ops): the stream, the cuBLASLt handle and
 * workspace, the attention split-K workspace, and two pinned + device
 * staging buffers for weight upload (chunked, double-buffered: the host
 * copies chunk i+1 into pinned memory while chunk i is converted). */
#include "backend/cuda/cuda_common.cuh"
#include <stdlib.h>
#include <string.h>

#define UPLOAD_CHUNK_BYTES (16u << 20)
#define GEMM_WS_BYTES (32u << 20)
#define ATTN_WS_BYTES (64u << 20)

typedef struct {
    int device;
    int num_sms;
    char name[256];       /* cudaDeviceProp.name, e.g. "NVIDIA H100 80GB HBM3" */
    cudaStream_t stream;
    cllm_cuda_gemm *gemm;
    void *attn_ws;
    void *pinned[2];
    void *staging[2];
    cudaEvent_t done[2];
} cuda_impl;

#define IMPL(be) ((cuda_impl *)(be)->impl)

static void cuda_destroy(cllm_backend *be) {
    if (!be) return;
    cuda_impl *c = IMPL(be);
    if (c) {
        cudaSetDevice(c->device);
        if (c->stream) cudaStreamSynchronize(c->stream);
        for (int i = 0; i < 2; i++) {
            if (c->pinned[i]) cudaFreeHost(c->pinned[i]);
            if (c->staging[i]) cudaFree(c->staging[i]);
            if (c->done[i]) cudaEventDestroy(c->done[i]);
        }
        cudaFree(c->attn_ws);
        cllm_cuda_gemm_destroy(c->gemm);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

static cllm_status cuda_alloc(cllm_backend *be, size_t bytes, void **out) {
    *out = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        *out = NULL;
        return cllm_error(CLLM_ERR_OOM, "cudaMalloc of %zu bytes failed (%s; %zu of %zu bytes free); lower "
                          "gpu_memory_utilization or max_model_len", bytes, cudaGetErrorString(e), fr, tot);
    }
    return CLLM_OK;
}

static void cuda_free(cllm_backend *be, void *p) {
    if (p) cudaFree(p);
}

static cllm_status cuda_upload(cllm_backend *be, void *dst, size_t dst_off, const void *src, cllm_dtype src_t,
                               size_t n) {
    cuda_impl *c = IMPL(be);
    CLLM_ARG(dst && (src || n == 0), "upload: NULL pointer");
    size_t es = src_t == CLLM_DTYPE_F32 ? 4 : (src_t == CLLM_DTYPE_BF16 || src_t == CLLM_DTYPE_F16) ? 2 : 0;
    if (es == 0) return cllm_error(CLLM_ERR_UNSUPPORTED, "upload: source dtype %d not supported (F32, BF16, F16)", (int)src_t);
    size_t per = UPLOAD_CHUNK_BYTES / es;
    uint16_t *d = (uint16_t *)dst + dst_off;
    for (size_t i = 0, k = 0; i < n; i += per, k++) {
        size_t m = n - i < per ? n - i : per;
        int b = (int)(k & 1);
        CLLM_CU(cudaEventSynchronize(c->done[b]));
        memcpy(c->pinned[b], (const char *)src + i * es, m * es);
        if (src_t == CLLM_DTYPE_BF16) {
            CLLM_CU(cudaMemcpyAsync(d + i, c->pinned[b], m * 2, cudaMemcpyHostToDevice, c->stream));
        } else {
            CLLM_CU(cudaMemcpyAsync(c->staging[b], c->pinned[b], m * es, cudaMemcpyHostToDevice, c->stream));
            CLLM_TRY(cllm_cuda_convert_to_bf16(d + i, c->staging[b], src_t, m, c->stream));
        }
        CLLM_CU(cudaEventRecord(c->done[b], c->stream));
    }
    CLLM_CU(cudaStreamSynchronize(c->stream));
    return CLLM_OK;
}

static cllm_status cuda_h2d(cllm_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return CLLM_OK;
    CLLM_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, IMPL(be)->stream));
    return CLLM_OK;
}

static cllm_status cuda_d2h(cllm_backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes) CLLM_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, IMPL(be)->stream));
    CLLM_CU(cudaStreamSynchronize(IMPL(be)->stream));
    return CLLM_OK;
}

static cllm_status cuda_sync(cllm_backend *be) {
    CLLM_CU(cudaStreamSynchronize(IMPL(be)->stream));
    return CLLM_OK;
}

static cllm_status cuda_embedding(cllm_backend *be, const int32_t *ids, int T, const void *table, int vocab_start,
                                  int V, int E, void *out) {
    return cllm_cuda_embedding(ids, T, table, vocab_start, V, E, out, IMPL(be)->stream);
}
static cllm_status cuda_copy2d(cllm_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                               size_t width_bytes, size_t rows) {
    CLLM_ARG(width_bytes <= dst_pitch && width_bytes <= src_pitch, "copy2d: width %zu beyond a pitch (%zu, %zu)",
             width_bytes, dst_pitch, src_pitch);
    if (rows == 0 || width_bytes == 0) return CLLM_OK;
    CLLM_CU(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width_bytes, rows, cudaMemcpyDeviceToDevice,
                              IMPL(be)->stream));
    return CLLM_OK;
}
static void *cuda_native_stream(cllm_backend *be) { return (void *)IMPL(be)->stream; }
static const char *cuda_device_name(cllm_backend *be) { return IMPL(be)->name; }
static cllm_status cuda_rmsnorm(cllm_backend *be, const void *x, void *residual, const void *w, int rows, int E,
                                float eps, void *out) {
    return cllm_cuda_rmsnorm(x, residual, w, rows, E, eps, out, IMPL(be)->stream);
}
static cllm_status cuda_head_rmsnorm(cllm_backend *be, void *x, int T, int nheads, int D, int stride, const void *w,
                                     float eps) {
    return cllm_cuda_head_rmsnorm(x, T, nheads, D, stride, w, eps, IMPL(be)->stream);
}
static cllm_status cuda_linear(cllm_backend *be, const void *x, int T, const cllm_weight *w, void *out,
                               cllm_dtype out_dtype) {
    return cllm_cuda_linear(IMPL(be)->gemm, x, T, w, out, out_dtype, IMPL(be)->stream);
}
static cllm_status cuda_rope(cllm_backend *be, void *q, void *k, const int32_t *pos, int T, int H, int Hkv, int D,
                             int q_stride, int k_stride, const float *inv_freq) {
    return cllm_cuda_rope(q, k, pos, T, H, Hkv, D, q_stride, k_stride, inv_freq, IMPL(be)->stream);
}
static cllm_status cuda_silu_mul(cllm_backend *be, const void *gate_up, int T, int I, void *out) {
    return cllm_cuda_silu_mul(gate_up, T, I, out, IMPL(be)->stream);
}
static cllm_status cuda_kv_write(cllm_backend *be, const void *k, const void *v, int k_stride, int v_stride,
                                 const cllm_attn_meta *meta, int Hkv, int D, void *k_cache, void *v_cache,
                                 const cllm_kv_quant *kvq) {
    return cllm_cuda_kv_write(k, v, k_stride, v_stride, meta, Hkv, D, k_cache, v_cache, kvq, IMPL(be)->stream);
}
static cllm_status cuda_qk_norm_rope_kv_write(cllm_backend *be, void *q, void *k, const void *v, int q_stride,
                                              int kv_stride, const int32_t *pos, int T, int H, int Hkv, int D,
                                              const void *q_norm, const void *k_norm, float eps,
                                              const float *inv_freq, const cllm_attn_meta *meta, void *k_cache,
                                              void *v_cache, const cllm_kv_quant *kvq) {
    return cllm_cuda_qk_norm_rope_kv_write(q, k, v, q_stride, kv_stride, pos, T, H, Hkv, D, q_norm, k_norm, eps,
                                           inv_freq, meta, k_cache, v_cache, kvq, IMPL(be)->stream);
}
static cllm_status cuda_attention(cllm_backend *be, const void *q, int q_stride, const void *k_cache,
                                  const void *v_cache, const cllm_attn_meta *meta, int H, int Hkv, int D, float scale,
                                  void *out, const cllm_kv_quant *kvq) {
    cuda_impl *c = IMPL(be);
    return cllm_cuda_attention(q, q_stride, k_cache, v_cache, meta, H, Hkv, D, scale, out, kvq, c->attn_ws,
                               ATTN_WS_BYTES, c->num_sms, c->stream);
}
static cllm_status cuda_gather_rows(cllm_backend *be, const void *x, const int32_t *idx, int S, int E, void *out) {
    return cllm_cuda_gather_rows(x, idx, S, E, out, IMPL(be)->stream);
}
static cllm_status cuda_sample(cllm_backend *be, const float *logits, int S, int V, const cllm_sample_params *params,
                               void *workspace, int32_t *tokens) {
    return cllm_cuda_sample(logits, S, V, params, workspace, tokens, IMPL(be)->stream);
}

static cllm_status cuda_apply_penalties(cllm_backend *be, const float *logits, int S, int V,
                                        const cllm_penalty_params *params, const int32_t *token_ids,
                                        const cllm_logit_bias *bias, void *workspace, float *out) {
    return cllm_cuda_apply_penalties(logits, S, V, params, token_ids, bias, workspace, out, IMPL(be)->stream);
}
static cllm_status cuda_logprobs(cllm_backend *be, const float *logits, int S, int V, const int32_t *tokens, int k,
                                 float *token_logprob, int32_t *top_ids, float *top_logprobs) {
    return cllm_cuda_logprobs(logits, S, V, tokens, k, token_logprob, top_ids, top_logprobs, IMPL(be)->stream);
}
static cllm_status cuda_copy_blocks(cllm_backend *be, void *cache, size_t block_bytes, const int32_t *pairs, int n) {
    return cllm_cuda_copy_blocks(cache, block_bytes, pairs, n, IMPL(be)->stream);
}
static cllm_status cuda_mem_info(cllm_backend *be, size_t *free_bytes, size_t *total_bytes) {
    CLLM_CU(cudaSetDevice(IMPL(be)->device));
    return cllm_cuda_mem_info(free_bytes, total_bytes);
}

static cllm_status cuda_moe_route(cllm_backend *be, const float *logits, int T, int num_experts, int k,
                                  bool renormalize, int32_t *topk_ids, float *topk_weights) {
    return cllm_cuda_moe_route(logits, T, num_experts, k, renormalize, topk_ids, topk_weights, IMPL(be)->stream);
}
static cllm_status cuda_moe_experts(cllm_backend *be, const void *x, int T, int E, const int32_t *topk_ids,
                                    const float *topk_weights, int k, const cllm_weight *gate_up,
                                    const cllm_weight *down, int expert_start, int num_local, int I, void *workspace,
                                    void *out) {
    return cllm_cuda_moe_experts(IMPL(be)->gemm, x, T, E, topk_ids, topk_weights, k, gate_up, down, expert_start,
                                 num_local, I, workspace, out, IMPL(be)->stream);
}
static cllm_status cuda_moe_combine(cllm_backend *be, const void *y, const int32_t *rows, const float *w, int n, int k,
                                    int E, void *out) {
    return cllm_cuda_moe_combine(y, rows, w, n, k, E, out, IMPL(be)->stream);
}

/* CUDA graphs: capture of the backend stream (thread-local mode: other
 * threads' CUDA calls are not affected), instantiate, replay, destroy. */
static cllm_status cuda_graph_capture_begin(cllm_backend *be) {
    CLLM_CU(cudaStreamBeginCapture(IMPL(be)->stream, cudaStreamCaptureModeThreadLocal));
    return CLLM_OK;
}
static cllm_status cuda_graph_capture_end(cllm_backend *be, void **graph) {
    *graph = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(IMPL(be)->stream, &g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (g) cudaGraphDestroy(g);
        return cllm_error(CLLM_ERR_CUDA, "CUDA graph capture failed: %s (an op in the captured region is not "
                          "capturable); pass --enforce-eager", cudaGetErrorString(e));
    }
    cudaGraphExec_t x = NULL;
    e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return cllm_error(CLLM_ERR_CUDA, "cudaGraphInstantiate failed: %s; pass --enforce-eager", cudaGetErrorString(e));
    }
    *graph = (void *)x;
    return CLLM_OK;
}
static cllm_status cuda_graph_launch(cllm_backend *be, void *graph) {
    CLLM_CU(cudaGraphLaunch((cudaGraphExec_t)graph, IMPL(be)->stream));
    return CLLM_OK;
}
static void cuda_graph_destroy(cllm_backend *be, void *graph) {
    (void)be;
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}
static cllm_status cuda_host_alloc(cllm_backend *be, size_t bytes, void **out) {
    (void)be;
    *out = NULL;
    cudaError_t e = cudaMallocHost(out, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *out = NULL;
        return cllm_error(CLLM_ERR_OOM, "cudaMallocHost of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    }
    return CLLM_OK;
}
static void cuda_host_free(cllm_backend *be, void *p) {
    (void)be;
    if (p) cudaFreeHost(p);
}

static cllm_backend_ops make_cuda_ops(void) {
    cllm_backend_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.fp8_weights = true; /* linear takes F8_E4M3 weights (linear_fp8.cu) */
    o.destroy = cuda_destroy;
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.upload = cuda_upload;
    o.h2d = cuda_h2d;
    o.d2h = cuda_d2h;
    o.sync = cuda_sync;
    o.copy2d = cuda_copy2d;
    o.embedding = cuda_embedding;
    o.rmsnorm = cuda_rmsnorm;
    o.head_rmsnorm = cuda_head_rmsnorm;
    o.linear = cuda_linear;
    o.rope = cuda_rope;
    o.silu_mul = cuda_silu_mul;
    o.kv_write = cuda_kv_write;
    /* The fused attention prologue (rope_kv_write.cu; on an H100, bs1 decode: Llama-3.1-8B 172.6 -> 173.4
     * tokens/s, Qwen3-30B-A3B 237.4 -> 252.6); CLLM_FUSED_ROPE_KV_WRITE=0 runs the separate ops (A/B). */
    const char *fused = getenv("CLLM_FUSED_ROPE_KV_WRITE");
    if (!(fused && !strcmp(fused, "0"))) o.qk_norm_rope_kv_write = cuda_qk_norm_rope_kv_write;
    o.attention = cuda_attention;
    o.gather_rows = cuda_gather_rows;
    o.sample = cuda_sample;
    o.sample_workspace_bytes = cllm_cuda_sample_workspace_bytes;
    o.apply_penalties = cuda_apply_penalties;
    o.penalties_workspace_bytes = cllm_cuda_penalties_workspace_bytes;
    o.logprobs = cuda_logprobs;
    o.copy_blocks = cuda_copy_blocks;
    o.mem_info = cuda_mem_info;
    o.graph_capture_begin = cuda_graph_capture_begin;
    o.graph_capture_end = cuda_graph_capture_end;
    o.graph_launch = cuda_graph_launch;
    o.graph_destroy = cuda_graph_destroy;
    o.host_alloc = cuda_host_alloc;
    o.host_free = cuda_host_free;
    o.native_stream = cuda_native_stream;
    o.device_name = cuda_device_name;
    o.moe_route = cuda_moe_route;
    o.moe_experts = cuda_moe_experts;
    o.moe_workspace_bytes = cllm_cuda_moe_workspace_bytes;
    o.moe_combine = cuda_moe_combine;
    /* CLLM_CUDA_MOE_PATH=gemv|grouped|loop|xgemv pins the MoE expert path for every batch
     * (engine-level A/B benchmarks; default: moe.cu's AUTO choice by batch size). */
    const char *mp = getenv("CLLM_CUDA_MOE_PATH");
    if (mp) {
        const char *names[] = {"auto", "gemv", "grouped", "loop", "xgemv"};
        for (int i = 0; i < 5; i++)
            if (!strcmp(mp, names[i])) cllm_cuda_moe_tune(i, -1, -1);
    }
    return o;
}
static const cllm_backend_ops cuda_ops = make_cuda_ops(); /* C++ (nvcc): dynamic initialization */

#define CU_GOTO(call)                                                                                   \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) {                                                                        \
            st = cllm_error(CLLM_ERR_CUDA, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call,           \
                            cudaGetErrorString(e_));                                                    \
            goto fail;                                                                                  \
        }                                                                                               \
    } while (0)

/* Create the CUDA backend on device_id (see backend.h). Allocates ~150 MB of
 * device workspaces and 32 MB of pinned host memory. Errors:
 * CLLM_ERR_NO_DEVICE (no GPU / bad id), CLLM_ERR_CUDA, CLLM_ERR_OOM. */
extern "C" int cllm_backend_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" cllm_status cllm_backend_cuda_create(int device_id, cllm_backend **out) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return cllm_error(CLLM_ERR_NO_DEVICE, "no CUDA device found (cudaGetDeviceCount: %s); use --device cpu",
                          e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device_id < 0 || device_id >= n)
        return cllm_error(CLLM_ERR_NO_DEVICE, "CUDA device %d does not exist (%d device(s) found)", device_id, n);
    cllm_status st = CLLM_OK;
    cllm_backend *be = (cllm_backend *)calloc(1, sizeof *be);
    cuda_impl *c = (cuda_impl *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return cllm_error(CLLM_ERR_OOM, "out of host memory creating the CUDA backend");
    }
    be->ops = &cuda_ops;
    be->act = CLLM_DTYPE_BF16;
    be->impl = c;
    c->device = device_id;
    CU_GOTO(cudaSetDevice(device_id));
    CU_GOTO(cudaDeviceGetAttribute(&c->num_sms, cudaDevAttrMultiProcessorCount, device_id));
    {
        cudaDeviceProp prop;
        CU_GOTO(cudaGetDeviceProperties(&prop, device_id));
        snprintf(c->name, sizeof c->name, "%s", prop.name);
    }
    CU_GOTO(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CLLM_TRY_GOTO(st, cllm_cuda_gemm_create(GEMM_WS_BYTES, &c->gemm), fail);
    CU_GOTO(cudaMalloc(&c->attn_ws, ATTN_WS_BYTES));
    for (int i = 0; i < 2; i++) {
        CU_GOTO(cudaMallocHost(&c->pinned[i], UPLOAD_CHUNK_BYTES));
        CU_GOTO(cudaMalloc(&c->staging[i], UPLOAD_CHUNK_BYTES));
        CU_GOTO(cudaEventCreateWithFlags(&c->done[i], cudaEventDisableTiming));
        CU_GOTO(cudaEventRecord(c->done[i], c->stream));
    }
    *out = be;
    return CLLM_OK;
fail:
    cuda_destroy(be);
    return st;
}
