/* Progress bar on stderr (TTY only). */
#include "core/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cllm_progress {
    char label[48];
    uint64_t total, done;
    bool is_bytes, draw;
    double start_s, last_draw_s;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void human(char *buf, size_t cap, double v, bool is_bytes) {
    if (!is_bytes) { snprintf(buf, cap, "%.0f", v); return; }
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void draw(cllm_progress *p, bool final) {
    char done[32], total[32], rate[32];
    double el = now_s() - p->start_s;
    human(done, sizeof done, (double)p->done, p->is_bytes);
    human(rate, sizeof rate, el > 0 ? (double)p->done / el : 0, p->is_bytes);
    if (p->total) {
        const int W = 30;
        int fill = (int)((double)W * (double)(p->done > p->total ? p->total : p->done) / (double)p->total);
        char bar[64];
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        human(total, sizeof total, (double)p->total, p->is_bytes);
        fprintf(stderr, "\r%s [%s] %3.0f%% %s/%s %s/s ", p->label, bar,
                100.0 * (double)p->done / (double)p->total, done, total, rate);
    } else {
        fprintf(stderr, "\r%s %s %s/s ", p->label, done, rate);
    }
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

cllm_progress *cllm_progress_create(const char *label, uint64_t total, bool is_bytes, bool enabled) {
    cllm_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->is_bytes = is_bytes;
    p->draw = enabled && isatty(STDERR_FILENO);
    p->start_s = now_s();
    return p;
}

void cllm_progress_update(cllm_progress *p, uint64_t done, uint64_t total) {
    if (!p) return;
    p->done = done;
    if (total) p->total = total;
    if (!p->draw) return;
    double t = now_s();
    if (t - p->last_draw_s < 0.1) return;
    p->last_draw_s = t;
    draw(p, false);
}

void cllm_progress_finish(cllm_progress *p) {
    if (!p) return;
    if (p->draw) draw(p, true);
    free(p);
}
