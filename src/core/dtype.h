/* Element types and scalar conversions (bf16/f16 <-> f32, fp8 e4m3 <-> f32,
 * e5m2 -> f32), host
 * side. bf16 rounding is round-to-nearest-even, as torch's .to(torch.bfloat16). */
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
/* vLLM's --kv-cache-dtype values cllm implements: "auto" (the activation
 * dtype) -> AUTO, "fp8" / "fp8_e4m3" -> F8_E4M3; returns -1 otherwise. */
#define CLLM_KV_CACHE_DTYPES "auto, fp8, fp8_e4m3"
int cllm_kv_cache_dtype_parse(const char *s, cllm_dtype *out);

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

/* FP8 codes to f32, exact (every FP8 value is an f32 value). Formats as in
 * "FP8 Formats for Deep Learning" (Micikevicius et al., 2022) and torch's
 * float8_e4m3fn / float8_e5m2:
 *   e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities,
 *           S.1111.111 is NaN (0x7f, 0xff), so the largest value is
 *           S.1111.110 = 448; exponent 0 is subnormal: m/8 * 2^-6.
 *   e5m2:   IEEE-754 binary16 cut to its high byte: bias 15, exponent 31 is
 *           infinity (mantissa 0) or NaN; exponent 0 subnormal: m/4 * 2^-14. */
static inline float cllm_fp8_e4m3_to_f32(uint8_t b) {
    uint32_t sign = (uint32_t)(b & 0x80u) << 24, e = (b >> 3) & 0xfu, m = b & 0x7u, u;
    float f;
    if (e == 0xfu && m == 0x7u) {
        u = sign | 0x7fc00000u;                      /* NaN */
    } else if (e == 0) {
        f = (float)m * 0x1p-9f;                      /* subnormal (or zero): m/8 * 2^-6 */
        return sign ? -f : f;
    } else {
        u = sign | ((e - 7u + 127u) << 23) | (m << 20);
    }
    memcpy(&f, &u, 4);
    return f;
}
/* f32 -> float8_e4m3fn code, round to nearest even (OCP 8-bit Floating
 * Point Specification (OFP8) rev 1.0, E4M3; torch's x.to(torch.float8_e4m3fn)
 * for |x| <= 448), saturating: |x| >= 448, infinities included, gives the
 * largest finite code +-448 (0x7e / 0xfe), as vLLM clamps to +-448 before its
 * fp8 KV-cache conversion (__NV_SATFINITE). NaN gives NaN (sign | 0x7f).
 * Values below the smallest subnormal's half (2^-10) give +-0. Exact inverse
 * of cllm_fp8_e4m3_to_f32 on every non-NaN code. */
static inline uint8_t cllm_f32_to_fp8_e4m3(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7fu);   /* NaN */
    float af;
    memcpy(&af, &a, 4);
    if (af >= 448.0f) return (uint8_t)(sign | 0x7eu);        /* saturate (and +-inf) */
    if (af < 0x1p-6f) {                                       /* subnormal: multiples of 2^-9 */
        float x = af * 512.0f;                                /* exact, in [0, 8) */
        uint32_t q = (uint32_t)x;
        float r = x - (float)q;                               /* exact */
        if (r > 0.5f || (r == 0.5f && (q & 1u))) q++;        /* q == 8 is 2^-6, the first normal */
        return (uint8_t)(sign | q);
    }
    uint32_t code = ((((a >> 23) - 127u + 7u) << 3) | ((a >> 20) & 0x7u));
    uint32_t rem = a & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) code++; /* carries into the exponent; < 448 stays <= 0x7e */
    return (uint8_t)(sign | code);
}
static inline float cllm_fp8_e5m2_to_f32(uint8_t b) { return cllm_f16_to_f32((uint16_t)((uint16_t)b << 8)); }

/* Convert n elements from src (type st) to dst (type dt). Supported: any of
 * F32/BF16/F16/F8_E4M3/F8_E5M2 to any of F32/BF16/F16 (FP8 codes are decoded
 * without a scale). Returns CLLM_ERR_UNSUPPORTED otherwise. */
cllm_status cllm_dtype_convert(void *dst, cllm_dtype dt, const void *src, cllm_dtype st, size_t n);

#endif
