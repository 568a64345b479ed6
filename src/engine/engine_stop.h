/* Stop-string matching on incrementally detokenized text (engine
 * internals, exposed for tests). Byte-wise on UTF-8, after vLLM's
 * StopChecker (vllm/v1/engine/detokenizer.py check_stop_strings), except
 * that only text that could still start a stop string is held back (vLLM
 * holds back max stop length - 1 bytes unconditionally). */
#ifndef CLLM_ENGINE_ENGINE_STOP_H
#define CLLM_ENGINE_ENGINE_STOP_H

#include <stdbool.h>
#include <stddef.h>

/* Search text[0, len) for the stop strings (num_stop non-empty,
 * NUL-terminated) in the region that new text text[new_from, len) could have
 * completed: matches ending after new_from. On a match (the earliest start
 * wins; equal starts: the longer string), returns true and sets *stop_at to
 * the length the text is truncated to (the match start, or its end when
 * include_stop is set). Otherwise returns false and sets *safe_len to the
 * length that can be reported now: len minus the longest suffix that is a
 * proper prefix of some stop string, moved back to a UTF-8 character
 * boundary (never below 0). */
bool cllm_engine_stop_scan(const char *text, size_t len, size_t new_from, const char *const *stops, int num_stop,
                           bool include_stop, size_t *stop_at, size_t *safe_len);

#endif
