/* Per-category forward timing; see profile.h. */
#include "core/profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

bool cllm_prof_on = false;
static double g_ms[CLLM_PROF_NCAT];
static int g_cur = CLLM_PROF_NONE;
static double g_t0;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void cllm_prof_reset(void) {
    memset(g_ms, 0, sizeof g_ms);
    g_cur = CLLM_PROF_NONE;
}

void cllm_prof_enable(bool on) {
    cllm_prof_on = on;
    cllm_prof_reset();
}

bool cllm_prof_env(void) {
    const char *v = getenv("CLLM_PROFILE");
    return v && v[0] == '1';
}

void cllm_prof_switch(cllm_prof_cat cat) {
    double t = now_ms();
    if (g_cur >= 0 && g_cur < CLLM_PROF_NCAT) g_ms[g_cur] += t - g_t0;
    g_cur = cat;
    g_t0 = t;
}

void cllm_prof_get(double *ms) { memcpy(ms, g_ms, sizeof g_ms); }

const char *cllm_prof_name(cllm_prof_cat cat) {
    static const char *n[CLLM_PROF_NCAT] = {"gemm", "attention", "other", "sample", "comm", "moe_route",
                                             "moe_experts"};
    return cat >= 0 && cat < CLLM_PROF_NCAT ? n[cat] : "none";
}
