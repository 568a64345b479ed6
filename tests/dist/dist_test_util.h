/* Helpers shared by the multi-process communicator tests: start the world
 * (self-launch when no launcher, else the launcher's environment), checks
 * that print the rank, deterministic data per (rank, index), typed element
 * access. Header-only: each test program is one translation unit. */
#ifndef CLLM_TESTS_DIST_UTIL_H
#define CLLM_TESTS_DIST_UTIL_H

#include "core/dtype.h"
#include "core/status.h"
#include "dist/comm.h"
#include "dist/dist_env.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0;
static int g_fails = 0;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            g_fails++;                                                                \
            if (g_fails < 20) {                                                       \
                fprintf(stderr, "rank %d: FAIL %s:%d: %s: ", g_rank, __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                         \
                fputc('\n', stderr);                                                  \
            }                                                                         \
        }                                                                             \
    } while (0)

/* CHECK that a call returned CLLM_OK, printing the library's message. */
#define CHECK_OK(expr)                                                                \
    do {                                                                              \
        cllm_status _s = (expr);                                                      \
        CHECK(_s == CLLM_OK, "%s: %s", cllm_status_str(_s), cllm_last_error());       \
    } while (0)

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

/* Small integer in [-4, 4] for (rank, index, salt): sums of up to 64 ranks
 * are exact in bf16/f16/f32, whatever the order. */
static inline int gen_small(int rank, size_t i, int salt) {
    return (int)(mix64(((uint64_t)rank << 40) ^ ((uint64_t)i << 8) ^ (uint64_t)salt) % 9) - 4;
}
/* Arbitrary bits for copies (broadcast, send, all_to_allv). */
static inline uint64_t gen_bits(int rank, size_t i, int salt) {
    return mix64(((uint64_t)rank << 48) ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull) ^ (uint64_t)salt * 77);
}
/* Non-integer value for rounding-order tests, in about [-13.5, 13.5]. */
static inline float gen_real(int rank, size_t i) { return (float)((int)(gen_bits(rank, i, 5) % 2001) - 1000) / 74.0f; }

static inline void set_elem(void *b, cllm_dtype dt, size_t i, double v) {
    switch (dt) {
    case CLLM_DTYPE_F32: ((float *)b)[i] = (float)v; break;
    case CLLM_DTYPE_BF16: ((uint16_t *)b)[i] = cllm_f32_to_bf16((float)v); break;
    case CLLM_DTYPE_F16: ((uint16_t *)b)[i] = cllm_f32_to_f16((float)v); break;
    case CLLM_DTYPE_I32: ((int32_t *)b)[i] = (int32_t)v; break;
    case CLLM_DTYPE_I64: ((int64_t *)b)[i] = (int64_t)v; break;
    case CLLM_DTYPE_U8: ((uint8_t *)b)[i] = (uint8_t)(int)v; break;
    default: break;
    }
}

static inline double get_elem(const void *b, cllm_dtype dt, size_t i) {
    switch (dt) {
    case CLLM_DTYPE_F32: return ((const float *)b)[i];
    case CLLM_DTYPE_BF16: return cllm_bf16_to_f32(((const uint16_t *)b)[i]);
    case CLLM_DTYPE_F16: return cllm_f16_to_f32(((const uint16_t *)b)[i]);
    case CLLM_DTYPE_I32: return ((const int32_t *)b)[i];
    case CLLM_DTYPE_I64: return (double)((const int64_t *)b)[i];
    case CLLM_DTYPE_U8: return ((const uint8_t *)b)[i];
    default: return 0;
    }
}

/* Fill n bytes-worth of elements with gen_bits (any dtype: raw bits). */
static inline void fill_bits(void *b, size_t bytes, int rank, int salt) {
    uint8_t *p = b;
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t v = gen_bits(rank, i / 8, salt);
        memcpy(p + i, &v, bytes - i < 8 ? bytes - i : 8);
    }
}

static inline uint64_t fnv(const void *b, size_t n) {
    const uint8_t *p = b;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Start this process's part of the world: detect the launcher; with none
 * and world > 1, self-launch world - 1 copies of argv; then the TCP world
 * communicator. Exits on failure. */
static cllm_comm *start_world(cllm_dist_env *env, int world, double timeout_s, char **argv) {
    if (cllm_dist_env_detect(env) != CLLM_OK) {
        fprintf(stderr, "FAIL: detect: %s\n", cllm_last_error());
        exit(1);
    }
    if (!strcmp(env->launcher, "single") && world > 1 && cllm_dist_launch_local(env, world, NULL, argv) != CLLM_OK) {
        fprintf(stderr, "FAIL: launch: %s\n", cllm_last_error());
        exit(1);
    }
    cllm_dist_worker_bind_parent(env);
    g_rank = env->rank;
    cllm_comm *c = NULL;
    if (cllm_comm_tcp_create_world(env, timeout_s, &c) != CLLM_OK) {
        fprintf(stderr, "rank %d: FAIL: create world: %s\n", env->rank, cllm_last_error());
        exit(1);
    }
    cllm_dist_env_close(env);
    return c;
}

/* Rank 0 of a self-launch: reap the workers, count their failures. */
static inline void finish_children(cllm_dist_env *env, double timeout_s) {
    if (env->rank != 0 || !env->num_children) return;
    cllm_dist_reap_children(env, timeout_s);
    if (cllm_dist_children_result(env) != CLLM_OK) {
        fprintf(stderr, "rank 0: FAIL: %s\n", cllm_last_error());
        g_fails++;
    }
}

#endif
