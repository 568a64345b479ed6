/* The FP8 linear's reference (see cpu_ops.h, cllm_cpu_linear_fp8): the exact
 * math of the CUDA op (backend/cuda/linear_fp8.cu) in scalar C, products and
 * sums in double, so that the CUDA test's tolerance is only the GPU's own
 * fp32 accumulation and output rounding. */
#include "backend/cpu/cpu_ops.h"
#include "core/dtype.h"
#include "core/fp8_quant.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>

cllm_status cllm_cpu_linear_fp8(const float *x, int T, const uint8_t *wq, const float *w_scale, const float *bias,
                                int N, int K, bool quantize_act, float *out, float *mag) {
    if (T < 0 || N <= 0 || K <= 0 || !x || !wq || !w_scale || !out)
        return cllm_error(CLLM_ERR_INVALID_ARG, "linear_fp8 (cpu reference): bad arguments T=%d N=%d K=%d", T, N, K);
    float lut[256];
    for (int c = 0; c < 256; c++) lut[c] = cllm_fp8_e4m3_to_f32((uint8_t)c);
    float *xa = malloc((size_t)K * sizeof(float));
    uint8_t *xq = malloc((size_t)K);
    if (!xa || !xq) {
        free(xa), free(xq);
        return cllm_error(CLLM_ERR_OOM, "linear_fp8 (cpu reference): out of memory");
    }
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * K;
        float sx = 1.0f;
        if (quantize_act) {
            sx = cllm_fp8_quantize_row(xr, K, xq);
            for (int k = 0; k < K; k++) xa[k] = lut[xq[k]];
        } else {
            for (int k = 0; k < K; k++) xa[k] = xr[k];
        }
#pragma omp parallel for schedule(static) if ((size_t)N * K > (1u << 16))
        for (int n = 0; n < N; n++) {
            const uint8_t *wr = wq + (size_t)n * K;
            double acc = 0.0, m = 0.0;
            for (int k = 0; k < K; k++) {
                double p = (double)xa[k] * (double)lut[wr[k]];
                acc += p;
                m += fabs(p);
            }
            double s = (double)sx * (double)w_scale[n];
            out[(size_t)t * N + n] = (float)(acc * s + (bias ? (double)bias[n] : 0.0));
            if (mag) mag[(size_t)t * N + n] = (float)(m * s);
        }
    }
    free(xa), free(xq);
    return CLLM_OK;
}
