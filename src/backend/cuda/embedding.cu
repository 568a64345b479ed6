/* Token embedding lookup: out (T, E) = table (V, E)[ids - vocab_start]; ids
 * outside the shard's rows give zero rows (vocabulary-parallel embedding).
 * 16-byte copies when E % 8 == 0. */
#include "backend/cuda/cuda_common.cuh"

static __global__ void embedding_kernel(const int32_t *ids, const __nv_bfloat16 *table, int vocab_start, int V,
                                        int E, __nv_bfloat16 *out, bool vec) {
    int t = blockIdx.x;
    int id = ids[t] - vocab_start;
    __nv_bfloat16 *o = out + (size_t)t * E;
    bool ok = id >= 0 && id < V;
    const __nv_bfloat16 *r = table + (size_t)(ok ? id : 0) * E;
    if (vec) {
        for (int i = threadIdx.x; i < E / 8; i += blockDim.x)
            ((uint4 *)o)[i] = ok ? ((const uint4 *)r)[i] : make_uint4(0, 0, 0, 0);
    } else {
        for (int i = threadIdx.x; i < E; i += blockDim.x) o[i] = ok ? r[i] : __float2bfloat16(0.f);
    }
}

extern "C" cllm_status cllm_cuda_embedding(const int32_t *ids, int T, const void *table, int vocab_start, int V, int E,
                                           void *out, cudaStream_t stream) {
    CLLM_ARG(T >= 0 && V > 0 && E > 0 && vocab_start >= 0, "embedding: bad shape T=%d vocab_start=%d V=%d E=%d", T,
             vocab_start, V, E);
    CLLM_ARG(ids && table && out, "embedding: NULL pointer");
    if (T == 0) return CLLM_OK;
    bool vec = E % 8 == 0 && cllm_aligned(table, 16) && cllm_aligned(out, 16);
    embedding_kernel<<<T, 128, 0, stream>>>(ids, (const __nv_bfloat16 *)table, vocab_start, V, E, (__nv_bfloat16 *)out, vec);
    CLLM_CU_LAUNCH("embedding");
    return CLLM_OK;
}
