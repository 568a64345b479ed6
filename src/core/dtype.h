/* Element types and scalar conversions (bf16/f16 <-> f32), host side.
 * bf16 rounding is round-to-nearest-even, as torch's .to(torch.bfloat16). */
#ifndef CLLM_CORE_DTYPE_H
#define CLLM_CORE_DTYPE_H

#include "cllm.h"
#include <stdint.h>
#include <string.h>

/* Bytes per element; 0 for CLLM_DTYPE_AUTO. */
size_t cllm_dtype_size(cllm_dtype t);
/* "float32", "bfloat16", ... (Hugging Face torch_dtype names). */
const char *cllm_dtype_name(cllm_dtype t);
/* Parse "float32"/"bfloat16"/"float16"/"auto"; returns -1 if unknown. */
int cllm_dtype_parse(const char *s, cllm_dtype *out);

static inline float cllm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t cllm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float cllm_f16_to_f32(uint16_t h);
uint16_t cllm_f32_to_f16(float f);

/* Convert n elements from src (type st) to dst (type dt). Supported: any of
 * F32/BF16/F16 to any of F32/BF16/F16. Returns CLLM_ERR_UNSUPPORTED otherwise. */
cllm_status cllm_dtype_convert(void *dst, cllm_dtype dt, const void *src, cllm_dtype st, size_t n);

#endif
