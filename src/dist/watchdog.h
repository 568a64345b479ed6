/* Watchdog (internal): a thread that turns a hang into an error. Every
 * interval (100 ms) it calls cllm_comm_check_health on the registered
 * communicators and the registered checks (e.g. cllm_dist_check_children),
 * and it times the operation in flight (begin/end around each engine step or
 * collective). A failed check, or an operation in flight longer than
 * timeout_s (--dist-timeout), records the message and aborts every
 * registered communicator (cllm_comm_abort), so the thread blocked in a
 * collective (TCP poll, NCCL stream sync) returns CLLM_ERR_DISTRIBUTED
 * instead of hanging. As PyTorch's ProcessGroupNCCL watchdog and vLLM's
 * worker monitor. */
#ifndef CLLM_DIST_WATCHDOG_H
#define CLLM_DIST_WATCHDOG_H

#include "dist/comm.h"

typedef struct cllm_watchdog cllm_watchdog;

/* A check run on the watchdog thread; non-OK (message set with cllm_error on
 * that thread) is a failure. */
typedef cllm_status (*cllm_watchdog_check_fn)(void *user);

/* Start the thread. timeout_s > 0. Errors: CLLM_ERR_OOM. */
cllm_status cllm_watchdog_create(double timeout_s, cllm_watchdog **out);
/* Register before the first begin (not thread-safe against the thread's
 * reads otherwise: call them right after create). At most 16 of each. */
void cllm_watchdog_add_comm(cllm_watchdog *w, cllm_comm *c);
void cllm_watchdog_add_check(cllm_watchdog *w, cllm_watchdog_check_fn fn, void *user);
/* An operation named what (static string, e.g. "engine step") starts / ends. */
void cllm_watchdog_begin(cllm_watchdog *w, const char *what);
void cllm_watchdog_end(cllm_watchdog *w);
/* CLLM_OK, or CLLM_ERR_DISTRIBUTED with the recorded failure as this
 * thread's message. Thread-safe. */
cllm_status cllm_watchdog_status(const cllm_watchdog *w);
/* Stop and join the thread. NULL is a no-op. Destroy the watchdog before
 * the communicators it watches. */
void cllm_watchdog_destroy(cllm_watchdog *w);

#endif
