/* Watchdog thread (see watchdog.h): every 100 ms, the health of the
 * registered communicators, the registered checks, and the age of the
 * operation in flight. The first failure is recorded and aborts every
 * registered communicator, so a thread blocked in a collective returns
 * CLLM_ERR_DISTRIBUTED with the watchdog's message. */
#include "dist/watchdog.h"

#include "core/clock.h"
#include "core/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WD_MAX 16
#define WD_INTERVAL_MS 100

struct cllm_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    double timeout_s;
    cllm_comm *comms[WD_MAX];
    int num_comms;
    cllm_watchdog_check_fn checks[WD_MAX];
    void *users[WD_MAX];
    int num_checks;
    const char *what;   /* operation in flight (static string) or NULL */
    double since;       /* its start, monotonic seconds */
    atomic_int failed;
    char msg[1024];     /* the first failure; written once before failed is set */
};

static void fail(cllm_watchdog *w, const char *msg) {
    if (atomic_load(&w->failed)) return;
    snprintf(w->msg, sizeof w->msg, "%s", msg);
    atomic_store(&w->failed, 1);
    CLLM_LOG_W("%s", msg);
    for (int i = 0; i < w->num_comms; i++) cllm_comm_abort(w->comms[i], msg);
}

/* One round of checks; called on the watchdog thread without the lock. */
static void check_once(cllm_watchdog *w, const char *what, double since) {
    int rank = w->num_comms ? cllm_comm_world_rank_of(w->comms[0], cllm_comm_rank(w->comms[0])) : 0;
    char msg[1024];
    if (what && cllm_now_s() - since > w->timeout_s) {
        snprintf(msg, sizeof msg,
                 "rank %d: watchdog: %s did not finish within %.1f s (--dist-timeout); aborted the communicators "
                 "(a rank is stalled or dead: see the other ranks' errors)",
                 rank, what, w->timeout_s);
        fail(w, msg);
        return;
    }
    for (int i = 0; i < w->num_comms; i++)
        if (cllm_comm_check_health(w->comms[i]) != CLLM_OK) {
            snprintf(msg, sizeof msg, "rank %d: watchdog: %s", rank, cllm_last_error());
            fail(w, msg);
            return;
        }
    for (int i = 0; i < w->num_checks; i++)
        if (w->checks[i](w->users[i]) != CLLM_OK) {
            snprintf(msg, sizeof msg, "rank %d: watchdog: %s", rank, cllm_last_error());
            fail(w, msg);
            return;
        }
}

static void *watchdog_main(void *arg) {
    cllm_watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += WD_INTERVAL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop || atomic_load(&w->failed)) continue;
        const char *what = w->what;
        double since = w->since;
        pthread_mutex_unlock(&w->mu);
        check_once(w, what, since);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

cllm_status cllm_watchdog_create(double timeout_s, cllm_watchdog **out) {
    if (!out || !(timeout_s > 0))
        return cllm_error(CLLM_ERR_INVALID_ARG, "watchdog: timeout must be > 0 s (--dist-timeout)");
    *out = NULL;
    cllm_watchdog *w = cllm_calloc(1, sizeof *w);
    if (!w) return CLLM_ERR_OOM;
    w->timeout_s = timeout_s;
    atomic_init(&w->failed, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return cllm_error(CLLM_ERR_OOM, "watchdog: cannot start its thread");
    }
    *out = w;
    return CLLM_OK;
}

void cllm_watchdog_add_comm(cllm_watchdog *w, cllm_comm *c) {
    pthread_mutex_lock(&w->mu);
    CLLM_ASSERT(w->num_comms < WD_MAX);
    w->comms[w->num_comms++] = c;
    pthread_mutex_unlock(&w->mu);
}

void cllm_watchdog_add_check(cllm_watchdog *w, cllm_watchdog_check_fn fn, void *user) {
    pthread_mutex_lock(&w->mu);
    CLLM_ASSERT(w->num_checks < WD_MAX);
    w->checks[w->num_checks] = fn;
    w->users[w->num_checks++] = user;
    pthread_mutex_unlock(&w->mu);
}

void cllm_watchdog_begin(cllm_watchdog *w, const char *what) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->what = what ? what : "operation";
    w->since = cllm_now_s();
    pthread_mutex_unlock(&w->mu);
}

void cllm_watchdog_end(cllm_watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->what = NULL;
    pthread_mutex_unlock(&w->mu);
}

cllm_status cllm_watchdog_status(const cllm_watchdog *w) {
    if (!w || !atomic_load(&w->failed)) return CLLM_OK;
    return cllm_error(CLLM_ERR_DISTRIBUTED, "%s", w->msg);
}

void cllm_watchdog_destroy(cllm_watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
