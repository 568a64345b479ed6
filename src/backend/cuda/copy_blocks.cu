/* KV block copies inside one cache tensor (backend.h copy_blocks, vLLM
 * copy_blocks) and the device memory report (backend.h mem_info).
 *
 * copy_blocks: grid (n pairs, chunks); CTA (pair, c) copies the 16-byte
 * words c, c + chunks, ... (strided by its threads) of block pairs[2i] to
 * block pairs[2i+1]; 16-byte words when the cache and block_bytes allow,
 * bytes otherwise. Pairs with a negative or equal src/dst are skipped on the
 * device (the CPU op rejects them; the device cannot report without a host
 * sync); block ids >= B cannot be checked here (B is not an argument). */
#include "backend/cuda/cuda_common.cuh"

#define CB_THREADS 256
#define CB_MAX_CHUNKS 1024

template <typename W>
static __global__ void __launch_bounds__(CB_THREADS) copy_blocks_kernel(W *cache, size_t words,
                                                                         const int32_t *pairs) {
    const int i = blockIdx.x;
    const int src = pairs[2 * i], dst = pairs[2 * i + 1];
    if (src < 0 || dst < 0 || src == dst) return;
    const W *s = cache + (size_t)src * words;
    W *d = cache + (size_t)dst * words;
    const size_t step = (size_t)gridDim.y * CB_THREADS;
    for (size_t w = (size_t)blockIdx.y * CB_THREADS + threadIdx.x; w < words; w += step) d[w] = s[w];
}

extern "C" cllm_status cllm_cuda_copy_blocks(void *cache, size_t block_bytes, const int32_t *pairs, int n,
                                             cudaStream_t stream) {
    CLLM_ARG(n >= 0, "copy_blocks: %d pairs", n);
    CLLM_ARG(n == 0 || (cache && pairs), "copy_blocks: NULL cache or pairs with %d pairs", n);
    if (n == 0 || block_bytes == 0) return CLLM_OK;
    const bool wide = cllm_aligned(cache, 16) && block_bytes % 16 == 0;
    const size_t words = wide ? block_bytes / 16 : block_bytes;
    size_t chunks = (words + (size_t)CB_THREADS * 8 - 1) / ((size_t)CB_THREADS * 8); /* ~8 words per thread */
    if (chunks < 1) chunks = 1;
    if (chunks > CB_MAX_CHUNKS) chunks = CB_MAX_CHUNKS; /* grid.y <= 65535 */
    dim3 grid((unsigned)n, (unsigned)chunks);
    if (wide)
        copy_blocks_kernel<uint4><<<grid, CB_THREADS, 0, stream>>>((uint4 *)cache, words, pairs);
    else
        copy_blocks_kernel<unsigned char><<<grid, CB_THREADS, 0, stream>>>((unsigned char *)cache, words, pairs);
    CLLM_CU_LAUNCH("copy_blocks");
    return CLLM_OK;
}

extern "C" cllm_status cllm_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    CLLM_ARG(free_bytes && total_bytes, "mem_info: NULL output");
    size_t f = 0, t = 0;
    CLLM_CU(cudaMemGetInfo(&f, &t));
    *free_bytes = f;
    *total_bytes = t;
    return CLLM_OK;
}
