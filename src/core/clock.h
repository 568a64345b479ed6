/* Monotonic wall clock (internal). */
#ifndef CLLM_CORE_CLOCK_H
#define CLLM_CORE_CLOCK_H

/* Milliseconds of CLOCK_MONOTONIC. */
double cllm_now_ms(void);
/* Seconds of CLOCK_MONOTONIC. */
double cllm_now_s(void);

#endif
