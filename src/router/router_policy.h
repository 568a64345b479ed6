/* Which replica a request goes to (cllm router, cllm serve
 * --data-parallel-size): pure functions, no I/O, unit-tested on their own
 * (tests/router/test_router_policy.c).
 *
 *   round_robin   the k-th eligible replica, k = a counter modulo their number
 *   least_load    the eligible replica with the fewest requests (running +
 *                 waiting as it reported them on /load, or the router's own
 *                 requests in flight there if more: the poll may not have seen
 *                 them yet); ties rotate
 *   prefix_aware  rendezvous (highest random weight) hashing of the prompt's
 *                 first prefix_bytes bytes over the eligible replicas: requests
 *                 that share that prefix meet on one replica (its prefix cache
 *                 holds the prefix's KV blocks), and a replica that leaves
 *                 remaps only its own prefixes. Falls back to least_load when
 *                 the chosen replica holds more than balance_abs_threshold
 *                 requests beyond the least loaded one (sglang-router's
 *                 balance_abs_threshold), or when the request has no prompt.
 *
 * "Eligible": healthy and not yet tried by this request (a retry goes to
 * another replica). Sources followed: sglang-router's policies (round_robin,
 * cache_aware's load-balance fallback), vLLM's router (consistent hashing).
 */
#ifndef CLLM_ROUTER_POLICY_H
#define CLLM_ROUTER_POLICY_H

#include "cllm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum cllm_router_policy {
    CLLM_ROUTER_ROUND_ROBIN = 0,
    CLLM_ROUTER_LEAST_LOAD = 1,
    CLLM_ROUTER_PREFIX_AWARE = 2,
} cllm_router_policy;

/* "round_robin", "least_load", "prefix_aware". */
const char *cllm_router_policy_name(cllm_router_policy p);
/* CLLM_ERR_INVALID_ARG (naming the valid policies) for an unknown name. */
cllm_status cllm_router_policy_from_name(const char *name, cllm_router_policy *out);

typedef struct cllm_router_candidate {
    bool eligible;  /* healthy and not yet tried by this request */
    int load;       /* requests running + waiting there */
    uint64_t id;    /* stable identity (a hash of the replica's URL): its rendezvous weight seed */
} cllm_router_candidate;

/* The replica for one request: an index into c (n entries), or -1 when none
 * is eligible. *rr is the round-robin counter (advanced on every call that
 * picks). has_key/key: the request's prefix key (cllm_router_prefix_key). */
int cllm_router_pick(cllm_router_policy policy, const cllm_router_candidate *c, int n, unsigned *rr, bool has_key,
                     uint64_t key, int balance_abs_threshold);

/* The prefix key of an OpenAI request body (len bytes of JSON): a 64-bit
 * hash (XXH3) of the first prefix_bytes bytes of its prompt. Completions:
 * "prompt" as a string (its UTF-8 bytes), a list of token ids (4 bytes
 * each, little-endian), or a batch (its first prompt). Chat: the messages in
 * order as "role\ncontent\n" (text parts of a content list concatenated).
 * A prompt shorter than prefix_bytes is hashed whole. Returns false (no
 * key) when the body is not such JSON. Never fails otherwise; allocates only
 * inside jansson. */
bool cllm_router_prefix_key(const char *body, size_t len, bool chat, size_t prefix_bytes, uint64_t *key);

#endif
