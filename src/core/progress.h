/* A one-line progress bar on stderr, drawn only when stderr is a terminal
 * (so logs and pipes stay clean). Used by downloads and weight loading. */
#ifndef CLLM_CORE_PROGRESS_H
#define CLLM_CORE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cllm_progress cllm_progress;

/* Start a bar labelled label (copied) for total units (bytes if is_bytes,
 * else items; 0: unknown). enabled=false, or stderr not a TTY, gives a bar
 * that draws nothing. Returns NULL only on allocation failure; every other
 * function accepts NULL as a no-op bar. */
cllm_progress *cllm_progress_create(const char *label, uint64_t total, bool is_bytes, bool enabled);
/* Set the amount done (and the total, if it became known: 0 keeps it).
 * Redraws at most ~10 times per second. */
void cllm_progress_update(cllm_progress *p, uint64_t done, uint64_t total);
/* Draw the final state, end the line, free p. */
void cllm_progress_finish(cllm_progress *p);

#endif
