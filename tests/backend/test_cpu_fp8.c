/* The FP8 linear's CPU reference (cllm_cpu_linear_fp8) and the per-row
 * quantization rule it shares with --quantization fp8 and the CUDA kernel
 * (cllm_fp8_quantize_row, core/fp8_quant.h):
 *  - quantize_row: the scale rule (amax / 448, the 1/(448*512) floor, an
 *    all-zero row), round-to-nearest-even ties between neighbouring codes,
 *    the row maximum landing exactly on 448, saturation, signs, and the
 *    error bound |fp8(q) * s - x| <= 2^-4 |x| + 2^-10 s over random rows;
 *  - linear_fp8 without activation quantization equals the fp32 linear on
 *    the dequantized weights (cblas_sgemm) up to fp32 rounding;
 *  - with activation quantization (W8A8) it stays within the bound the
 *    quantization allows: |y8 - y| <= sum_k |x_k - xq_k| |w_k| (+ rounding),
 *    and the |y8 - y| it reports is printed;
 *  - mag, bias, T = 0 and bad arguments. */
#include "backend/cpu/cpu_ops.h"
#include "core/dtype.h"
#include "core/fp8_quant.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails = 0, checks = 0;
#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        checks++;                                                                                                    \
        if (!(cond)) {                                                                                               \
            fails++;                                                                                                 \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                              \
            printf(__VA_ARGS__);                                                                                     \
            printf("\n");                                                                                            \
        }                                                                                                            \
    } while (0)

static uint64_t rs = 0x243F6A8885A308D3ull;
static float unif(float a) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return a * (2.f * (float)(rs >> 40) / 16777216.f - 1.f);
}
static float bf(float x) { return cllm_bf16_to_f32(cllm_f32_to_bf16(x)); }

static void test_quantize_row(void) {
    uint8_t q[64];
    /* all zero: the floor scale, zero codes */
    float z[16] = {0};
    float s = cllm_fp8_quantize_row(z, 16, q);
    CHECK(s == CLLM_FP8_MIN_SCALE, "zero row scale %g", (double)s);
    int allz = 1;
    for (int i = 0; i < 16; i++) allz &= q[i] == 0;
    CHECK(allz, "zero row codes");
    /* the row maximum maps exactly to +-448 (0x7e / 0xfe); scale = amax / 448 */
    float x[8] = {3.5f, -7.0f, 0.875f, 1.0f, -0.0f, 7.0f, 2.25f, -1.5f};
    s = cllm_fp8_quantize_row(x, 8, q);
    CHECK(s == 7.0f / 448.0f, "scale %g", (double)s);
    CHECK(q[1] == 0xfe && q[5] == 0x7e, "max codes %02x %02x", q[1], q[5]);
    /* x / s = 224 (exact: 0x76), 56 (0x5e), 64 (0x60), -0 (0x80) */
    CHECK(q[0] == cllm_f32_to_fp8_e4m3(224.f) && cllm_fp8_e4m3_to_f32(q[0]) == 224.f, "3.5 -> %02x", q[0]);
    CHECK(cllm_fp8_e4m3_to_f32(q[2]) == 56.f && cllm_fp8_e4m3_to_f32(q[3]) == 64.f, "0.875, 1.0");
    CHECK(q[4] == 0x80, "-0 -> %02x", q[4]);
    /* ties round to even: with amax 448 (scale 1), 17 lies between 16 and 18 (mantissa step 2 in [16, 32)):
     * 17 -> 16 (even mantissa 000), 19 -> 20 (18 is odd 001, 20 even 010), 304 between 288 and 320 -> 320 */
    float t[5] = {448.f, 17.f, 19.f, 304.f, -17.f};
    s = cllm_fp8_quantize_row(t, 5, q);
    CHECK(s == 1.0f, "scale 1: %g", (double)s);
    CHECK(cllm_fp8_e4m3_to_f32(q[1]) == 16.f, "17 -> %g", (double)cllm_fp8_e4m3_to_f32(q[1]));
    CHECK(cllm_fp8_e4m3_to_f32(q[2]) == 20.f, "19 -> %g", (double)cllm_fp8_e4m3_to_f32(q[2]));
    CHECK(cllm_fp8_e4m3_to_f32(q[3]) == 320.f, "304 -> %g", (double)cllm_fp8_e4m3_to_f32(q[3]));
    CHECK(cllm_fp8_e4m3_to_f32(q[4]) == -16.f, "-17 -> %g", (double)cllm_fp8_e4m3_to_f32(q[4]));
    /* tiny rows: below the floor the scale is the floor (values keep their size in codes) */
    float tiny[4] = {1e-6f, -2e-6f, 0.f, 5e-7f};
    s = cllm_fp8_quantize_row(tiny, 4, q);
    CHECK(s == CLLM_FP8_MIN_SCALE, "tiny scale %g", (double)s);
    CHECK(fabsf(cllm_fp8_e4m3_to_f32(q[1]) * s - tiny[1]) <= 0.0625f * 2e-6f + s * 0x1p-10f, "tiny value");
    /* random rows: the error bound of 3 mantissa bits, and amax hits 448 */
    double worst = 0;
    for (int r = 0; r < 200; r++) {
        float row[64];
        float a = powf(10.f, unif(3.f));
        for (int i = 0; i < 64; i++) row[i] = unif(a);
        s = cllm_fp8_quantize_row(row, 64, q);
        float amax = 0;
        for (int i = 0; i < 64; i++) amax = fabsf(row[i]) > amax ? fabsf(row[i]) : amax;
        for (int i = 0; i < 64; i++) {
            float v = cllm_fp8_e4m3_to_f32(q[i]) * s, err = fabsf(v - row[i]);
            float bound = 0x1p-4f * fabsf(row[i]) + s * 0x1p-10f;
            if (err / (bound > 0 ? bound : 1) > worst) worst = err / (bound > 0 ? bound : 1);
            if (fabsf(row[i]) == amax && amax / 448.f > CLLM_FP8_MIN_SCALE) CHECK(fabsf(cllm_fp8_e4m3_to_f32(q[i])) == 448.f, "amax code");
        }
    }
    CHECK(worst <= 1.0, "quantize error beyond 2^-4 |x| + 2^-10 s: %g of the bound", worst);
    printf("quantize_row: worst error %.3f of the bound 2^-4|x| + 2^-10 scale\n", worst);
}

static void test_linear(int T, int N, int K, int with_bias) {
    float *x = malloc(sizeof(float) * (size_t)T * K), *w = malloc(sizeof(float) * (size_t)N * K);
    float *wd = malloc(sizeof(float) * (size_t)N * K), *sw = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    uint8_t *wq = malloc((size_t)N * K), *xq = malloc((size_t)K);
    float *ref = malloc(sizeof(float) * (size_t)T * N), *y16 = malloc(sizeof(float) * (size_t)T * N);
    float *y8 = malloc(sizeof(float) * (size_t)T * N), *mag = malloc(sizeof(float) * (size_t)T * N);
    for (size_t i = 0; i < (size_t)T * K; i++) x[i] = bf(unif(1.f) * (i % 97 == 0 ? 8.f : 1.f)); /* some outliers */
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = unif(0.05f);
    for (int n = 0; n < N; n++) {
        sw[n] = cllm_fp8_quantize_row(w + (size_t)n * K, K, wq + (size_t)n * K);
        for (int k = 0; k < K; k++) wd[(size_t)n * K + k] = cllm_fp8_e4m3_to_f32(wq[(size_t)n * K + k]) * sw[n];
        b[n] = bf(unif(0.5f));
    }
    cllm_weight hw = {.data = wd, .bias = with_bias ? b : NULL, .n = N, .k = K};
    CHECK(cllm_cpu_linear(x, T, &hw, ref) == CLLM_OK, "cpu linear");
    /* W8A16: the same math as the fp32 GEMM on the dequantized weights */
    CHECK(cllm_cpu_linear_fp8(x, T, wq, sw, with_bias ? b : NULL, N, K, false, y16, mag) == CLLM_OK, "fp8 ref");
    double e16 = 0;
    int bad16 = 0;
    for (size_t i = 0; i < (size_t)T * N; i++) {
        double d = fabs((double)y16[i] - ref[i]);
        if (d > e16) e16 = d;
        if (!(d <= K * 0x1p-24 * mag[i] + 1e-6)) bad16++; /* fp32 GEMM rounding */
    }
    CHECK(bad16 == 0, "W8A16 T=%d N=%d K=%d: %d outside K 2^-24 * mag (max diff %g)", T, N, K, bad16, e16);
    /* W8A8: within what the activation quantization allows */
    CHECK(cllm_cpu_linear_fp8(x, T, wq, sw, with_bias ? b : NULL, N, K, true, y8, NULL) == CLLM_OK, "fp8 ref a8");
    double e8 = 0, rel = 0, ymax = 0;
    int bad8 = 0;
    for (int t = 0; t < T; t++) {
        float sx = cllm_fp8_quantize_row(x + (size_t)t * K, K, xq);
        for (int n = 0; n < N; n++) {
            double bound = 0;
            for (int k = 0; k < K; k++)
                bound += fabs((double)x[(size_t)t * K + k] - (double)cllm_fp8_e4m3_to_f32(xq[k]) * sx) *
                         fabs((double)wd[(size_t)n * K + k]);
            size_t i = (size_t)t * N + n;
            double d = fabs((double)y8[i] - y16[i]);
            if (!(d <= bound * 1.0001 + 1e-6)) bad8++;
            if (d > e8) e8 = d;
            if (fabs(y16[i]) > ymax) ymax = fabs(y16[i]);
        }
    }
    rel = ymax > 0 ? e8 / ymax : e8;
    CHECK(bad8 == 0, "W8A8 T=%d N=%d K=%d: %d outside the activation-quantization bound", T, N, K, bad8);
    CHECK(rel < 0.08, "W8A8 T=%d N=%d K=%d: max |y8 - y16| / max |y16| = %g", T, N, K, rel);
    printf("linear_fp8 T=%d N=%d K=%d bias=%d: W8A16 vs fp32 GEMM max diff %.3g; W8A8 vs W8A16 max diff %.3g "
           "(%.3g of max |y|)\n", T, N, K, with_bias, e16, e8, rel);
    free(x), free(w), free(wd), free(sw), free(b), free(wq), free(xq), free(ref), free(y16), free(y8), free(mag);
}

int main(void) {
    test_quantize_row();
    test_linear(1, 16, 16, 0);
    test_linear(3, 48, 64, 1);
    test_linear(7, 33, 160, 1);
    test_linear(17, 64, 256, 0);
    /* T = 0 is a no-op; bad arguments are rejected */
    float o = 7.f;
    uint8_t c = 0;
    float s = 1.f;
    CHECK(cllm_cpu_linear_fp8(&o, 0, &c, &s, NULL, 1, 1, true, &o, NULL) == CLLM_OK && o == 7.f, "T = 0");
    CHECK(cllm_cpu_linear_fp8(&o, 1, &c, &s, NULL, 0, 1, true, &o, NULL) == CLLM_ERR_INVALID_ARG, "N = 0");
    CHECK(cllm_cpu_linear_fp8(&o, 1, NULL, &s, NULL, 1, 1, true, &o, NULL) == CLLM_ERR_INVALID_ARG, "NULL weights");
    printf("test_cpu_fp8: %d checks, %d failed\n", checks, fails);
    return fails ? 1 : 0;
}
