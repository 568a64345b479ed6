/* Helpers for the CUDA-vs-CPU kernel tests: random bf16-rounded inputs,
 * device copies, output poisoning, |a-b| <= atol + rtol*|ref| comparison
 * printing the first mismatches. Header-only (static), tests only. */
#ifndef CLLM_KT_UTIL_H
#define CLLM_KT_UTIL_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cuda_ops.h"
#include "core/dtype.h"
#include "core/status.h"

static uint64_t kt_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t kt_next(void) {
    uint64_t z = (kt_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline float kt_unif(float a) { return a * (2.f * (float)(kt_next() >> 40) / 16777216.f - 1.f); }
static inline int kt_int(int n) { return (int)(kt_next() % (uint64_t)n); }
static inline float kt_bf(float x) { return cllm_bf16_to_f32(cllm_f32_to_bf16(x)); }

/* Host array of n values uniform in [-a, a] (plus offset), rounded to bf16. */
static inline float *kt_rand(size_t n, float a, float off) {
    float *h = (float *)malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) h[i] = kt_bf(off + kt_unif(a));
    return h;
}

#define KT_CU(call)                                                                                  \
    do {                                                                                             \
        cudaError_t e_ = (call);                                                                     \
        if (e_ != cudaSuccess) {                                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));   \
            exit(2);                                                                                 \
        }                                                                                            \
    } while (0)
#define KT_OK(call)                                                                                  \
    do {                                                                                             \
        cllm_status s_ = (call);                                                                     \
        if (s_ != CLLM_OK) {                                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cllm_last_error());        \
            exit(2);                                                                                 \
        }                                                                                            \
    } while (0)

static inline void *kt_dev_bf16(const float *h, size_t n) {
    uint16_t *b = (uint16_t *)malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) b[i] = cllm_f32_to_bf16(h[i]);
    void *d;
    KT_CU(cudaMalloc(&d, n * 2 + 16));
    KT_CU(cudaMemcpy(d, b, n * 2, cudaMemcpyHostToDevice));
    free(b);
    return d;
}
static inline void *kt_dev_copy(const void *h, size_t bytes) {
    void *d;
    KT_CU(cudaMalloc(&d, bytes + 16));
    KT_CU(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}
/* Allocate and poison (0xFF bytes: bf16/f32 NaN) so unwritten outputs fail. */
static inline void *kt_dev_poison(size_t bytes) {
    void *d;
    KT_CU(cudaMalloc(&d, bytes + 16));
    KT_CU(cudaMemset(d, 0xFF, bytes + 16));
    return d;
}
static inline float *kt_get_bf16(const void *d, size_t n) {
    KT_CU(cudaDeviceSynchronize());
    uint16_t *b = (uint16_t *)malloc(n * 2 + 2);
    float *f = (float *)malloc(n * 4 + 4);
    KT_CU(cudaMemcpy(b, d, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) f[i] = cllm_bf16_to_f32(b[i]);
    free(b);
    return f;
}

static int kt_failed_cases = 0, kt_cases = 0;

/* Compare got vs ref; print a PASS/FAIL line with the max abs/rel errors. */
static inline int kt_check(const char *what, const float *got, const float *ref, size_t n, float atol, float rtol) {
    size_t bad = 0;
    double maxabs = 0, maxrel = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) {
            if (bad < 5) fprintf(stderr, "  %s: mismatch at %zu: got %g ref %g\n", what, i, got[i], ref[i]);
            bad++;
        }
        if (d > maxabs || d != d) maxabs = d != d ? INFINITY : d;
        if (fabs(ref[i]) > 1e-3 && d / fabs(ref[i]) > maxrel) maxrel = d / fabs(ref[i]);
    }
    kt_cases++;
    if (bad) kt_failed_cases++;
    printf("%s %-60s n=%-10zu max_abs=%.3g max_rel=%.3g%s\n", bad ? "FAIL" : "PASS", what, n, maxabs, maxrel,
           bad ? "" : "");
    if (bad) printf("     %zu of %zu elements outside atol=%g rtol=%g\n", bad, n, atol, rtol);
    fflush(stdout);
    return bad ? 1 : 0;
}

static inline int kt_finish(const char *prog) {
    printf("%s: %d cases, %d failed\n", prog, kt_cases, kt_failed_cases);
    return kt_failed_cases ? 1 : 0;
}

static inline cllm_backend *kt_cuda(void) {
    cllm_backend *be = NULL;
    if (cllm_backend_cuda_create(0, &be) != CLLM_OK) {
        fprintf(stderr, "cannot create the CUDA backend: %s\n", cllm_last_error());
        exit(2);
    }
    return be;
}
#endif
