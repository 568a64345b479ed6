/* Optional per-op-category timing of the forward pass (CLLM_PROFILE=1 or
 * `cllm bench throughput --profile`). Off by default: the model code tests
 * one global flag per category switch and does nothing else.
 *
 * When on, the model code calls cllm_prof_switch(cat) after synchronizing
 * its backend (so every category's time is device time up to a sync, plus
 * the launch gaps); the time since the previous switch goes to the previous
 * category. Host clock (CLOCK_MONOTONIC). Process-global, single-threaded
 * (one engine/benchmark thread drives the backend). Syncing ~8 times per
 * layer adds overhead, so figures taken with profiling on are for the split,
 * not for throughput. */
#ifndef CLLM_CORE_PROFILE_H
#define CLLM_CORE_PROFILE_H

#include <stdbool.h>

typedef enum cllm_prof_cat {
    CLLM_PROF_NONE = -1,     /* not in a timed region */
    CLLM_PROF_GEMM = 0,      /* linear layers incl. lm_head */
    CLLM_PROF_ATTN = 1,      /* kv_write + paged attention */
    CLLM_PROF_OTHER = 2,     /* embedding, norms, RoPE, SiLU, gather */
    CLLM_PROF_SAMPLE = 3,    /* logprobs, penalties, sampler, result copy */
    CLLM_PROF_COMM = 4,      /* tensor-parallel collectives (all-reduce, logits all-gather) */
    CLLM_PROF_MOE_ROUTE = 5, /* mixture of experts: router GEMM + top-k routing */
    CLLM_PROF_MOE_EXPERTS = 6, /* mixture of experts: the experts (and the expert-parallel exchange) */
    CLLM_PROF_NCAT = 7,
} cllm_prof_cat;

extern bool cllm_prof_on; /* read in the hot path; set only through cllm_prof_enable */

/* Turn profiling on/off and zero the accumulators. */
void cllm_prof_enable(bool on);
/* True when the environment variable CLLM_PROFILE is set to 1. */
bool cllm_prof_env(void);
/* Close the running category (if any) at now and open cat (NONE: close only).
 * The caller synchronized the device first. */
void cllm_prof_switch(cllm_prof_cat cat);
/* Model code's category switch: off, one predictable branch; on, sync the
 * backend be (CLLM_TRY of core/status.h: returns its error) and charge the elapsed time to the
 * category that just ended. */
#define CLLM_PROF_SWITCH(be, cat)                                    \
    do {                                                             \
        if (cllm_prof_on) {                                          \
            CLLM_TRY((be)->ops->sync(be));                           \
            cllm_prof_switch(cat);                                   \
        }                                                            \
    } while (0)
/* Accumulated milliseconds per category (ms[CLLM_PROF_NCAT]); reset zeroes. */
void cllm_prof_get(double *ms);
void cllm_prof_reset(void);
/* Name of a category ("gemm", "attention", "other", "sample", "comm", "moe_route", "moe_experts"). */
const char *cllm_prof_name(cllm_prof_cat cat);

#endif
