/* Backend-independent pieces: destroy, the CUDA stub when built without
 * CUDA, and the Philox counter RNG shared by every sampler. */
#include "backend/backend.h"
#include "core/dtype.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

void cllm_backend_destroy(cllm_backend *be) {
    if (be) be->ops->destroy(be);
}

#ifndef CLLM_HAVE_CUDA
int cllm_backend_cuda_device_count(void) { return 0; }

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

void *cllm_backend_native_stream(cllm_backend *be) {
    return be && be->ops->native_stream ? be->ops->native_stream(be) : NULL;
}

#define UPLOAD2D_CHUNK_BYTES ((size_t)32 << 20)

cllm_status cllm_backend_upload2d(cllm_backend *be, void *dst, size_t dst_off, const void *src, cllm_dtype src_t,
                                  size_t rows, size_t cols, size_t src_ld) {
    size_t es = cllm_dtype_size(src_t);
    if (!es || src_ld < cols) return cllm_error(CLLM_ERR_INVALID_ARG, "upload2d: dtype %d, %zu cols, ld %zu", (int)src_t, cols, src_ld);
    if (rows == 0 || cols == 0) return CLLM_OK;
    if (src_ld == cols) return be->ops->upload(be, dst, dst_off, src, src_t, rows * cols);
    size_t row_bytes = cols * es, per = UPLOAD2D_CHUNK_BYTES / row_bytes;
    if (per == 0) per = 1;
    if (per > rows) per = rows;
    char *buf = malloc(per * row_bytes);
    if (!buf) return cllm_error(CLLM_ERR_OOM, "upload2d: out of host memory (%zu bytes)", per * row_bytes);
    cllm_status st = CLLM_OK;
    for (size_t r0 = 0; r0 < rows && st == CLLM_OK; r0 += per) {
        size_t n = rows - r0 < per ? rows - r0 : per;
        for (size_t r = 0; r < n; r++)
            memcpy(buf + r * row_bytes, (const char *)src + ((r0 + r) * src_ld) * es, row_bytes);
        st = be->ops->upload(be, dst, dst_off + r0 * cols, buf, src_t, n * cols);
    }
    free(buf);
    return st;
}

cllm_status cllm_backend_upload_zeros(cllm_backend *be, void *dst, size_t dst_off, size_t n) {
    size_t per = UPLOAD2D_CHUNK_BYTES / sizeof(float);
    if (per > n) per = n;
    if (n == 0) return CLLM_OK;
    float *z = calloc(per, sizeof(float));
    if (!z) return cllm_error(CLLM_ERR_OOM, "upload_zeros: out of host memory");
    cllm_status st = CLLM_OK;
    for (size_t i = 0; i < n && st == CLLM_OK; i += per)
        st = be->ops->upload(be, dst, dst_off + i, z, CLLM_DTYPE_F32, n - i < per ? n - i : per);
    free(z);
    return st;
}

void cllm_backend_ceilings(cllm_backend *be, const char **card, double *bytes_per_s, double *flops) {
    const char *name = be && be->ops->device_name ? be->ops->device_name(be) : "unknown";
    *card = name;
    *bytes_per_s = *flops = 0;
    if (strstr(name, "H100")) *bytes_per_s = 3.03e12, *flops = 801e12;
    else if (strstr(name, "H200")) *bytes_per_s = 4.30e12, *flops = 790e12;
}
