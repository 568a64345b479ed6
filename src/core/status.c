/* Errors, logging and allocation helpers. */
#include "core/status.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_err[1024];
static cllm_log_level g_level = CLLM_LOG_INFO;
static int g_level_init;

const char *cllm_status_str(cllm_status s) {
    switch (s) {
    case CLLM_OK: return "CLLM_OK";
    case CLLM_ERR_INVALID_ARG: return "CLLM_ERR_INVALID_ARG";
    case CLLM_ERR_IO: return "CLLM_ERR_IO";
    case CLLM_ERR_FORMAT: return "CLLM_ERR_FORMAT";
    case CLLM_ERR_UNSUPPORTED: return "CLLM_ERR_UNSUPPORTED";
    case CLLM_ERR_OOM: return "CLLM_ERR_OOM";
    case CLLM_ERR_NOT_FOUND: return "CLLM_ERR_NOT_FOUND";
    case CLLM_ERR_NETWORK: return "CLLM_ERR_NETWORK";
    case CLLM_ERR_NO_DEVICE: return "CLLM_ERR_NO_DEVICE";
    case CLLM_ERR_CUDA: return "CLLM_ERR_CUDA";
    case CLLM_ERR_CONTEXT_LENGTH: return "CLLM_ERR_CONTEXT_LENGTH";
    case CLLM_ERR_NO_KV_BLOCKS: return "CLLM_ERR_NO_KV_BLOCKS";
    case CLLM_ERR_INTERNAL: return "CLLM_ERR_INTERNAL";
    case CLLM_ERR_DISTRIBUTED: return "CLLM_ERR_DISTRIBUTED";
    }
    return "CLLM_ERR_UNKNOWN";
}

const char *cllm_last_error(void) { return g_err; }
void cllm_error_clear(void) { g_err[0] = 0; }
void cllm_free(void *p) { free(p); }

cllm_status cllm_error(cllm_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return s;
}

cllm_status cllm_error_wrap(cllm_status s, const char *fmt, ...) {
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    /* "prefix: old", cut at the buffer's end (the outermost context first) */
    size_t n = strlen(prefix);
    memcpy(g_err, prefix, n); /* n < sizeof prefix < sizeof g_err */
    if (n + 2 < sizeof g_err) {
        g_err[n++] = ':';
        g_err[n++] = ' ';
        size_t ol = strnlen(old, sizeof g_err - 1 - n);
        memcpy(g_err + n, old, ol);
        n += ol;
    }
    g_err[n] = '\0';
    return s;
}

static void log_init(void) {
    if (g_level_init) return;
    g_level_init = 1;
    const char *e = getenv("CLLM_LOG_LEVEL");
    if (!e) return;
    if (!strcmp(e, "error")) g_level = CLLM_LOG_ERROR;
    else if (!strcmp(e, "warn")) g_level = CLLM_LOG_WARN;
    else if (!strcmp(e, "debug")) g_level = CLLM_LOG_DEBUG;
}

void cllm_log_set_level(cllm_log_level lvl) { g_level_init = 1; g_level = lvl; }

void cllm_log(cllm_log_level lvl, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    log_init();
    if (lvl > g_level) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cllm %s: ", names[lvl]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void *cllm_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) cllm_error(CLLM_ERR_OOM, "out of host memory allocating %zu bytes", bytes);
    return p;
}

void *cllm_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) cllm_error(CLLM_ERR_OOM, "out of host memory allocating %zu x %zu bytes", n, size);
    return p;
}

char *cllm_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = cllm_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
