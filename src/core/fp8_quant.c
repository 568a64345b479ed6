/* Dynamic per-row FP8 quantization (see fp8_quant.h). */
#include "core/fp8_quant.h"

#include "core/dtype.h"

#include <math.h>

float cllm_fp8_quantize_row(const float *x, int64_t K, uint8_t *q) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        if (a > amax) amax = a;
    }
    const float s = cllm_fp8_row_scale(amax);
    for (int64_t k = 0; k < K; k++) q[k] = cllm_f32_to_fp8_e4m3(x[k] / s);
    return s;
}
