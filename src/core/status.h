/* Errors and logging (internal).
 *
 * Two tiers (CONVENTIONS.md §3): anything a user or the environment can cause
 * returns a cllm_status with a message set through cllm_error(); broken
 * invariants use CLLM_ASSERT, which aborts with file:line.
 */
#ifndef CLLM_CORE_STATUS_H
#define CLLM_CORE_STATUS_H

#include "cllm.h"
#include <stdio.h>
#include <stdlib.h>

/* Record a printf-style message for cllm_last_error() and return s.
 * Usage: return cllm_error(CLLM_ERR_IO, "cannot open %s: %s", path, strerror(errno)); */
cllm_status cllm_error(cllm_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "context: " (keeps the status). */
cllm_status cllm_error_wrap(cllm_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cllm_error_clear(void);

/* Propagate a failing status. */
#define CLLM_TRY(expr)                          \
    do {                                        \
        cllm_status _st = (expr);               \
        if (_st != CLLM_OK) return _st;         \
    } while (0)

/* Jump to the constructor's single cleanup label on failure. */
#define CLLM_TRY_GOTO(st, expr, label)          \
    do {                                        \
        (st) = (expr);                          \
        if ((st) != CLLM_OK) goto label;        \
    } while (0)

#define CLLM_ASSERT(cond)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "cllm: internal error: %s:%d: assertion `%s` failed\n",    \
                    __FILE__, __LINE__, #cond);                                        \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* Logging to stderr. Level from CLLM_LOG_LEVEL (error|warn|info|debug),
 * default info. */
typedef enum { CLLM_LOG_ERROR = 0, CLLM_LOG_WARN = 1, CLLM_LOG_INFO = 2, CLLM_LOG_DEBUG = 3 } cllm_log_level;
void cllm_log(cllm_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cllm_log_set_level(cllm_log_level lvl);
#define CLLM_LOG_W(...) cllm_log(CLLM_LOG_WARN, __VA_ARGS__)
#define CLLM_LOG_I(...) cllm_log(CLLM_LOG_INFO, __VA_ARGS__)
#define CLLM_LOG_D(...) cllm_log(CLLM_LOG_DEBUG, __VA_ARGS__)

/* Allocation helpers that set CLLM_ERR_OOM messages. */
void *cllm_malloc(size_t bytes);   /* NULL on failure (message set) */
void *cllm_calloc(size_t n, size_t size);
char *cllm_strdup(const char *s);

#endif
