/* Element-wise reductions for the TCP transport (see reduce.h). One loop per
 * (dtype, op) so the compiler vectorizes the f32/int ones. */
#include "dist/reduce.h"

#include "core/dtype.h"

#include <stdint.h>

#define RED_LOOP(T, EXPR)                                          \
    do {                                                           \
        T *d = dst;                                                \
        const T *x = a, *y = b;                                    \
        for (size_t i = 0; i < n; i++) {                           \
            T u = x[i], v = y[i];                                  \
            d[i] = (EXPR);                                         \
        }                                                          \
    } while (0)

#define RED_OPS(T, SUM)                                            \
    do {                                                           \
        if (op == CLLM_REDUCE_SUM) RED_LOOP(T, SUM);               \
        else if (op == CLLM_REDUCE_MAX) RED_LOOP(T, u > v ? u : v); \
        else RED_LOOP(T, u < v ? u : v);                           \
    } while (0)

/* 16-bit floats: widen, combine in f32, round back. fmaxf-like semantics
 * are not needed (NaN inputs give NaN or the other value, the same on every
 * rank since every rank runs the same sequence of calls). */
static inline float f32_op(float u, float v, cllm_reduce_op op) {
    return op == CLLM_REDUCE_SUM ? u + v : op == CLLM_REDUCE_MAX ? (u > v ? u : v) : (u < v ? u : v);
}

void cllm_reduce_apply(void *dst, const void *a, const void *b, size_t n, cllm_dtype dt, cllm_reduce_op op) {
    switch (dt) {
    case CLLM_DTYPE_F32: RED_OPS(float, u + v); break;
    case CLLM_DTYPE_I32: RED_OPS(int32_t, (int32_t)((uint32_t)u + (uint32_t)v)); break;
    case CLLM_DTYPE_I64: RED_OPS(int64_t, (int64_t)((uint64_t)u + (uint64_t)v)); break;
    case CLLM_DTYPE_BF16: {
        uint16_t *d = dst;
        const uint16_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = cllm_f32_to_bf16(f32_op(cllm_bf16_to_f32(x[i]), cllm_bf16_to_f32(y[i]), op));
        break;
    }
    case CLLM_DTYPE_F16: {
        uint16_t *d = dst;
        const uint16_t *x = a, *y = b;
        for (size_t i = 0; i < n; i++)
            d[i] = cllm_f32_to_f16(f32_op(cllm_f16_to_f32(x[i]), cllm_f16_to_f32(y[i]), op));
        break;
    }
    default: break;
    }
}
