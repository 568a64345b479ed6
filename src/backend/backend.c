/* Backend-independent pieces: destroy, the CUDA stub when built without
 * CUDA, and the Philox counter RNG shared by every sampler. */
#include "backend/backend.h"
#include "core/status.h"

void cllm_backend_destroy(cllm_backend *be) {
    if (be) be->ops->destroy(be);
}

#ifndef CLLM_HAVE_CUDA
cllm_status cllm_backend_cuda_create(int device_id, cllm_backend **out) {
    (void)device_id;
    *out = NULL;
    return cllm_error(CLLM_ERR_NO_DEVICE,
                      "this cllm was built without CUDA; rebuild with nvcc on PATH (cmake -DCLLM_CUDA=ON) or use --device cpu");
}
#endif

/* Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3", SC'11), key = seed, counter = (step, 0, 0, 0). */
float cllm_philox_uniform(uint64_t seed, uint64_t step) {
    uint32_t c0 = (uint32_t)step, c1 = (uint32_t)(step >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1; c3 = (uint32_t)p0; c0 = n0; c2 = n2;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    return (float)(c0 >> 8) * (1.0f / 16777216.0f);
}
