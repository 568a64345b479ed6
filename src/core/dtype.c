/* Element types and conversions. */
#include "core/dtype.h"
#include "core/status.h"

size_t cllm_dtype_size(cllm_dtype t) {
    switch (t) {
    case CLLM_DTYPE_F32: case CLLM_DTYPE_I32: return 4;
    case CLLM_DTYPE_BF16: case CLLM_DTYPE_F16: return 2;
    case CLLM_DTYPE_I64: case CLLM_DTYPE_F64: return 8;
    case CLLM_DTYPE_I16: return 2;
    case CLLM_DTYPE_U8: case CLLM_DTYPE_I8: case CLLM_DTYPE_BOOL: return 1;
    case CLLM_DTYPE_F8_E4M3: case CLLM_DTYPE_F8_E5M2: return 1;
    default: return 0;
    }
}

const char *cllm_dtype_name(cllm_dtype t) {
    switch (t) {
    case CLLM_DTYPE_AUTO: return "auto";
    case CLLM_DTYPE_F32: return "float32";
    case CLLM_DTYPE_BF16: return "bfloat16";
    case CLLM_DTYPE_F16: return "float16";
    case CLLM_DTYPE_I32: return "int32";
    case CLLM_DTYPE_I64: return "int64";
    case CLLM_DTYPE_U8: return "uint8";
    case CLLM_DTYPE_F64: return "float64";
    case CLLM_DTYPE_I16: return "int16";
    case CLLM_DTYPE_I8: return "int8";
    case CLLM_DTYPE_BOOL: return "bool";
    case CLLM_DTYPE_F8_E4M3: return "float8_e4m3fn";
    case CLLM_DTYPE_F8_E5M2: return "float8_e5m2";
    }
    return "?";
}

int cllm_dtype_parse(const char *s, cllm_dtype *out) {
    if (!strcmp(s, "auto")) *out = CLLM_DTYPE_AUTO;
    else if (!strcmp(s, "float32") || !strcmp(s, "fp32") || !strcmp(s, "float")) *out = CLLM_DTYPE_F32;
    else if (!strcmp(s, "bfloat16") || !strcmp(s, "bf16")) *out = CLLM_DTYPE_BF16;
    else if (!strcmp(s, "float16") || !strcmp(s, "fp16") || !strcmp(s, "half")) *out = CLLM_DTYPE_F16;
    else return -1;
    return 0;
}

int cllm_kv_cache_dtype_parse(const char *s, cllm_dtype *out) {
    if (!strcmp(s, "auto")) *out = CLLM_DTYPE_AUTO;
    else if (!strcmp(s, "fp8") || !strcmp(s, "fp8_e4m3")) *out = CLLM_DTYPE_F8_E4M3;
    else return -1;
    return 0;
}

float cllm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400u)) { mant <<= 1; exp--; }
            mant &= 0x3ffu;
            u = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
    else u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t cllm_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = u & 0x7fffffu;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
    return (uint16_t)half;
}

static float load_f(const void *src, cllm_dtype t, size_t i) {
    switch (t) {
    case CLLM_DTYPE_F32: return ((const float *)src)[i];
    case CLLM_DTYPE_BF16: return cllm_bf16_to_f32(((const uint16_t *)src)[i]);
    case CLLM_DTYPE_F8_E4M3: return cllm_fp8_e4m3_to_f32(((const uint8_t *)src)[i]);
    case CLLM_DTYPE_F8_E5M2: return cllm_fp8_e5m2_to_f32(((const uint8_t *)src)[i]);
    default: return cllm_f16_to_f32(((const uint16_t *)src)[i]);
    }
}

cllm_status cllm_dtype_convert(void *dst, cllm_dtype dt, const void *src, cllm_dtype st, size_t n) {
    int ok_s = st == CLLM_DTYPE_F32 || st == CLLM_DTYPE_BF16 || st == CLLM_DTYPE_F16 || st == CLLM_DTYPE_F8_E4M3 ||
               st == CLLM_DTYPE_F8_E5M2;
    int ok_d = dt == CLLM_DTYPE_F32 || dt == CLLM_DTYPE_BF16 || dt == CLLM_DTYPE_F16;
    if (!ok_s || !ok_d)
        return cllm_error(CLLM_ERR_UNSUPPORTED, "cannot convert %s to %s", cllm_dtype_name(st), cllm_dtype_name(dt));
    if (st == dt) { memcpy(dst, src, n * cllm_dtype_size(st)); return CLLM_OK; }
    for (size_t i = 0; i < n; i++) {
        float f = load_f(src, st, i);
        if (dt == CLLM_DTYPE_F32) ((float *)dst)[i] = f;
        else if (dt == CLLM_DTYPE_BF16) ((uint16_t *)dst)[i] = cllm_f32_to_bf16(f);
        else ((uint16_t *)dst)[i] = cllm_f32_to_f16(f);
    }
    return CLLM_OK;
}
