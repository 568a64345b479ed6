/* The f32 -> float8_e4m3fn encoder (core/dtype.h cllm_f32_to_fp8_e4m3)
 * against the exact decoder, exhaustively: every code round-trips, every
 * midpoint between neighbouring codes rounds to the even code (and its f32
 * neighbours to the nearer code), values at or above 448 saturate, NaN stays
 * NaN; then 2^20 random finite floats against a brute-force nearest-code
 * search (OCP OFP8 E4M3, round to nearest even). */
#include "core/dtype.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
#define CHECK(c, ...)                                  \
    do {                                               \
        if (!(c)) {                                    \
            if (failures++ < 20) {                     \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);          \
                fprintf(stderr, "\n");                 \
            }                                          \
        }                                              \
    } while (0)

/* Brute force: the finite code nearest to x (ties: even mantissa bit), with saturation. */
static uint8_t nearest(float x) {
    if (isnan(x)) return (uint8_t)(signbit(x) ? 0xff : 0x7f);
    uint8_t sign = signbit(x) ? 0x80 : 0;
    double a = fabs((double)x);
    if (a >= 448.0) return (uint8_t)(sign | 0x7e);
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c <= 0x7e; c++) {
        double d = fabs((double)cllm_fp8_e4m3_to_f32((uint8_t)c) - a);
        if (d < bd || (d == bd && !(c & 1))) { bd = d; best = c; }
    }
    return (uint8_t)(sign | best);
}

int main(void) {
    /* 1. every code round-trips (NaN codes stay NaN) */
    for (int c = 0; c < 256; c++) {
        float f = cllm_fp8_e4m3_to_f32((uint8_t)c);
        uint8_t back = cllm_f32_to_fp8_e4m3(f);
        if ((c & 0x7f) == 0x7f) CHECK(isnan(cllm_fp8_e4m3_to_f32(back)), "NaN code 0x%02x -> 0x%02x", c, back);
        else CHECK(back == c, "code 0x%02x (%g) -> 0x%02x", c, (double)f, back);
    }
    /* 2. midpoints between neighbours (positive and negative) round to even; their neighbours to the nearer */
    for (int c = 0; c < 0x7e; c++) {
        for (int s = 0; s < 2; s++) {
            uint8_t lo = (uint8_t)(c | (s << 7)), hi = (uint8_t)((c + 1) | (s << 7));
            float a = cllm_fp8_e4m3_to_f32(lo), b = cllm_fp8_e4m3_to_f32(hi);
            float mid = (float)(((double)a + (double)b) / 2); /* exact in f32 */
            CHECK((double)mid == ((double)a + (double)b) / 2, "midpoint of 0x%02x not exact", lo);
            uint8_t even = (c & 1) ? hi : lo;
            CHECK(cllm_f32_to_fp8_e4m3(mid) == even, "midpoint %.9g of 0x%02x/0x%02x -> 0x%02x, want 0x%02x",
                  (double)mid, lo, hi, cllm_f32_to_fp8_e4m3(mid), even);
            float towards_a = nextafterf(mid, a), towards_b = nextafterf(mid, b);
            CHECK(cllm_f32_to_fp8_e4m3(towards_a) == lo, "just below midpoint of 0x%02x -> 0x%02x", lo,
                  cllm_f32_to_fp8_e4m3(towards_a));
            CHECK(cllm_f32_to_fp8_e4m3(towards_b) == hi, "just above midpoint of 0x%02x -> 0x%02x", lo,
                  cllm_f32_to_fp8_e4m3(towards_b));
        }
    }
    /* 3. saturation at and above 448, NaN */
    float big[] = {448.0f, nextafterf(448.0f, 1e9f), 464.0f, 479.0f, 480.0f, 1e4f, 3e38f, INFINITY};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECK(cllm_f32_to_fp8_e4m3(big[i]) == 0x7e, "%g -> 0x%02x, want 0x7e", (double)big[i],
              cllm_f32_to_fp8_e4m3(big[i]));
        CHECK(cllm_f32_to_fp8_e4m3(-big[i]) == 0xfe, "-%g -> 0x%02x, want 0xfe", (double)big[i],
              cllm_f32_to_fp8_e4m3(-big[i]));
    }
    CHECK(cllm_f32_to_fp8_e4m3(nextafterf(448.0f, 0)) == 0x7e, "just below 448");
    CHECK((cllm_f32_to_fp8_e4m3(NAN) & 0x7f) == 0x7f, "NaN -> 0x%02x", cllm_f32_to_fp8_e4m3(NAN));
    CHECK((cllm_f32_to_fp8_e4m3(-NAN) & 0x7f) == 0x7f, "-NaN -> 0x%02x", cllm_f32_to_fp8_e4m3(-NAN));
    CHECK(cllm_f32_to_fp8_e4m3(0x1p-10f) == 0x00, "2^-10 (half the smallest subnormal) ties to 0");
    CHECK(cllm_f32_to_fp8_e4m3(nextafterf(0x1p-10f, 1)) == 0x01, "just above 2^-10 -> smallest subnormal");
    CHECK(cllm_f32_to_fp8_e4m3(-0.0f) == 0x80, "-0 keeps its sign");
    CHECK(cllm_f32_to_fp8_e4m3(1e-30f) == 0x00 && cllm_f32_to_fp8_e4m3(0x1p-149f) == 0x00, "tiny -> 0");
    /* 4. random finite floats over the whole range vs brute force */
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < (1 << 20); i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        float x;
        if (i & 1) { /* uniform in the fp8 range, both signs */
            x = (float)((double)(st >> 11) * 0x1p-53 * 1000.0 - 500.0);
            if (i & 2) x *= 0x1p-9f; /* subnormal region too */
        } else {     /* random bit patterns with exponents near the fp8 range */
            uint32_t u = (uint32_t)(st >> 32);
            u = (u & 0x807fffffu) | ((uint32_t)(115 + (st & 31)) << 23);
            memcpy(&x, &u, 4);
        }
        uint8_t got = cllm_f32_to_fp8_e4m3(x), want = nearest(x);
        CHECK(got == want, "%.9g -> 0x%02x, brute force 0x%02x", (double)x, got, want);
    }
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("fp8 e4m3 encoder: 256 codes round-trip, 252 midpoints to even, saturation, 2^20 random values OK\n");
    return 0;
}
