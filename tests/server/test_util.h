/* Tiny assertion helpers for the server tests. */
#ifndef CLLM_TEST_SERVER_UTIL_H
#define CLLM_TEST_SERVER_UTIL_H
#include <stdio.h>
#include <string.h>

static int g_fail;
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            g_fail++;                                                          \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)
#define TEST_DONE()                                                            \
    do {                                                                       \
        if (g_fail) { fprintf(stderr, "%d check(s) failed\n", g_fail); return 1; } \
        printf("all checks passed\n");                                         \
        return 0;                                                              \
    } while (0)
#endif
