/* Dynamic per-row FP8 (float8_e4m3fn) quantization on the host: the rule
 * shared by the W8A8 reference (activations, per token), `--quantization
 * fp8` (weights, per output channel, on load) and, bit for bit, the CUDA
 * activation-quantization kernel (backend/cuda/quantize_fp8.cu).
 *
 * For a row x of K values:
 *   amax  = max_k |x[k]|                      (f32)
 *   scale = max(amax / 448, 1 / (448 * 512))  (f32, IEEE division)
 *   q[k]  = e4m3_rne_satfinite(x[k] / scale)  (IEEE division per element)
 * so x[k] ~= fp8(q[k]) * scale with |error| <= 2^-4 * |x[k]| for normal
 * codes (3 mantissa bits, round to nearest even) and <= 2^-10 * scale in
 * the subnormal range. The floor on the scale (vLLM's
 * min_scaling_factor for dynamic per-token FP8) keeps an all-zero row (and
 * denormal ones) finite: its codes are 0. 448 is the largest finite e4m3fn
 * value. Sources: vLLM csrc/quantization/fp8/common.cu
 * (dynamic_per_token_scaled_fp8_quant) and
 * model_executor/layers/quantization/fp8.py (per-channel weight scales). */
#ifndef CLLM_CORE_FP8_QUANT_H
#define CLLM_CORE_FP8_QUANT_H

#include <stdint.h>

#define CLLM_FP8_E4M3_MAX 448.0f
#define CLLM_FP8_MIN_SCALE (1.0f / (448.0f * 512.0f))

/* Quantize one row x (K f32 values) into q (K e4m3fn codes); returns its
 * scale (see above). Host only; pure. */
float cllm_fp8_quantize_row(const float *x, int64_t K, uint8_t *q);

/* The scale the rule above gives a row of absolute maximum amax. */
static inline float cllm_fp8_row_scale(float amax) {
    float s = amax / CLLM_FP8_E4M3_MAX;
    return s > CLLM_FP8_MIN_SCALE ? s : CLLM_FP8_MIN_SCALE;
}

#endif
