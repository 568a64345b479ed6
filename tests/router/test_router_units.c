/* The router's pure pieces, no sockets: replica selection
 * (router/router_policy.h), the prefix key, whole-event SSE relaying
 * (router/sse_relay.h) and the GPUs of a data-parallel replica. */
#include "../server/test_util.h"
#include "router/router.h"
#include "router/router_policy.h"
#include "router/sse_relay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N 4

static void cands(cllm_router_candidate *c, int n) {
    for (int i = 0; i < n; i++) c[i] = (cllm_router_candidate){.eligible = true, .load = 0, .id = 1000u + (uint64_t)i * 7919u};
}

static void test_round_robin(void) {
    cllm_router_candidate c[N];
    cands(c, N);
    unsigned rr = 0;
    int count[N] = {0};
    for (int k = 0; k < 400; k++) count[cllm_router_pick(CLLM_ROUTER_ROUND_ROBIN, c, N, &rr, false, 0, 0)]++;
    for (int i = 0; i < N; i++) CHECK(count[i] == 100, "replica %d got %d of 400", i, count[i]);
    /* one out: the other three share evenly, the missing one never chosen */
    c[1].eligible = false;
    memset(count, 0, sizeof count);
    for (int k = 0; k < 300; k++) count[cllm_router_pick(CLLM_ROUTER_ROUND_ROBIN, c, N, &rr, false, 0, 0)]++;
    CHECK(count[1] == 0 && count[0] == 100 && count[2] == 100 && count[3] == 100, "%d %d %d %d", count[0], count[1],
          count[2], count[3]);
    for (int i = 0; i < N; i++) c[i].eligible = false;
    CHECK(cllm_router_pick(CLLM_ROUTER_ROUND_ROBIN, c, N, &rr, false, 0, 0) == -1, "none eligible must give -1");
}

static void test_least_load(void) {
    cllm_router_candidate c[N];
    cands(c, N);
    c[0].load = 5, c[1].load = 2, c[2].load = 7, c[3].load = 2;
    unsigned rr = 0;
    int count[N] = {0};
    for (int k = 0; k < 100; k++) count[cllm_router_pick(CLLM_ROUTER_LEAST_LOAD, c, N, &rr, false, 0, 0)]++;
    CHECK(count[0] == 0 && count[2] == 0, "loaded replicas chosen: %d %d", count[0], count[2]);
    CHECK(count[1] == 50 && count[3] == 50, "ties must take turns: %d %d", count[1], count[3]);
    c[1].eligible = c[3].eligible = false; /* the least loaded are out (or tried already) */
    CHECK(cllm_router_pick(CLLM_ROUTER_LEAST_LOAD, c, N, &rr, false, 0, 0) == 0, "next least loaded is 0");
}

static void test_prefix_aware(void) {
    cllm_router_candidate c[N];
    cands(c, N);
    unsigned rr = 0;
    /* the same key always lands on the same replica; many keys spread over all */
    int count[N] = {0}, first[64];
    for (int k = 0; k < 64; k++) {
        first[k] = cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, true, (uint64_t)k * 0x9e3779b97f4a7c15ULL, 32);
        count[first[k]]++;
        for (int again = 0; again < 3; again++)
            CHECK(cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, true, (uint64_t)k * 0x9e3779b97f4a7c15ULL, 32) ==
                      first[k], "key %d moved", k);
    }
    for (int i = 0; i < N; i++) CHECK(count[i] >= 6, "replica %d got only %d of 64 keys", i, count[i]);
    /* rendezvous: taking replica 2 out moves only the keys it held */
    c[2].eligible = false;
    for (int k = 0; k < 64; k++) {
        int now = cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, true, (uint64_t)k * 0x9e3779b97f4a7c15ULL, 32);
        CHECK(now != 2, "key %d went to the ineligible replica", k);
        if (first[k] != 2) CHECK(now == first[k], "key %d moved from %d to %d though its replica stayed", k, first[k], now);
    }
    c[2].eligible = true;
    /* overloaded: beyond balance_abs_threshold over the least loaded -> least load */
    uint64_t key = 12345;
    int home = cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, true, key, 32);
    c[home].load = 40;
    int other = cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, true, key, 32);
    CHECK(other != home, "an overloaded home replica (40 vs 0, threshold 32) must be skipped");
    c[home].load = 30;
    CHECK(cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, true, key, 32) == home, "within the threshold: home");
    /* no key: least load */
    c[0].load = 3, c[1].load = 3, c[2].load = 3, c[3].load = 3;
    c[3].load = 0;
    CHECK(cllm_router_pick(CLLM_ROUTER_PREFIX_AWARE, c, N, &rr, false, 0, 32) == 3, "no key: least loaded");
}

static bool key_of(const char *body, bool chat, size_t bytes, uint64_t *k) {
    return cllm_router_prefix_key(body, strlen(body), chat, bytes, k);
}

static void test_prefix_key(void) {
    uint64_t a, b, c, d;
    /* same first 16 bytes, different tails: one key; a different start: another */
    CHECK(key_of("{\"prompt\": \"0123456789abcdefXXXX\"}", false, 16, &a), "string prompt");
    CHECK(key_of("{\"prompt\": \"0123456789abcdefYYYYYYYY\", \"max_tokens\": 3}", false, 16, &b), "string prompt 2");
    CHECK(key_of("{\"prompt\": \"1123456789abcdefXXXX\"}", false, 16, &c), "string prompt 3");
    CHECK(a == b && a != c, "prefix keys %llx %llx %llx", (unsigned long long)a, (unsigned long long)b,
          (unsigned long long)c);
    /* a batch keys on its first prompt; token ids work */
    CHECK(key_of("{\"prompt\": [\"0123456789abcdefZZ\", \"other\"]}", false, 16, &d) && d == a, "batch = first prompt");
    CHECK(key_of("{\"prompt\": [1, 2, 3, 4, 5]}", false, 8, &a) && key_of("{\"prompt\": [1, 2, 9]}", false, 8, &b) &&
              a == b, "token ids: the first 2 ids (8 bytes) decide");
    CHECK(key_of("{\"prompt\": [[1, 2, 3]]}", false, 8, &c) && c == a, "a batch of id lists");
    /* chat: messages in order, text parts concatenated */
    CHECK(key_of("{\"messages\": [{\"role\": \"system\", \"content\": \"You are a helpful bot.\"}, "
                 "{\"role\": \"user\", \"content\": \"hi\"}]}", true, 20, &a), "chat");
    CHECK(key_of("{\"messages\": [{\"role\": \"system\", \"content\": [{\"type\": \"text\", \"text\": \"You are a "
                 "helpful\"}, {\"type\": \"text\", \"text\": \" bot.\"}]}, {\"role\": \"user\", \"content\": \"bye\"}]}",
                 true, 20, &b), "chat parts");
    CHECK(a == b, "the same system prompt (text parts or string) must give one key");
    CHECK(key_of("{\"messages\": [{\"role\": \"user\", \"content\": \"You are a helpful bot.\"}]}", true, 20, &c) && c != a,
          "another role is another prefix");
    /* not such JSON: no key */
    CHECK(!key_of("not json", false, 16, &a), "garbage");
    CHECK(!key_of("[1, 2]", false, 16, &a), "not an object");
    CHECK(!key_of("{\"prompt\": 5}", false, 16, &a), "a number prompt");
    CHECK(!key_of("{\"prompt\": \"x\"}", true, 16, &a), "chat without messages");
    CHECK(!key_of("{\"prompt\": [1, \"x\"]}", false, 16, &a), "mixed ids");
}

/* Feed s in pieces of `step` bytes; return the events joined, and whether [DONE] ended them. */
static char *relay_all(const char *s, size_t step, bool *done, size_t *pending, int *n_out) {
    cllm_sse_relay r;
    cllm_sse_relay_init(&r, 0);
    size_t n = strlen(s), cap = n + 1, len = 0;
    char *acc = calloc(cap, 1);
    *n_out = 0;
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        char *ev = NULL;
        size_t el = 0;
        CHECK(cllm_sse_relay_feed(&r, s + i, k, &ev, &el) == CLLM_OK, "feed failed");
        if (el) {
            CHECK(ev[el - 1] == '\n', "an event must end with a line end");
            memcpy(acc + len, ev, el);
            len += el;
            (*n_out)++;
        }
        free(ev);
    }
    *done = r.done;
    *pending = cllm_sse_relay_pending(&r);
    cllm_sse_relay_free(&r);
    return acc;
}

static void test_sse_relay(void) {
    const char *stream = "data: {\"a\":1}\n\n\ndata: {\"b\":2}\r\n\r\n: comment\nevent: x\ndata: y\n\ndata: [DONE]\n\n\r\n";
    for (size_t step = 1; step <= strlen(stream); step++) {
        bool done;
        size_t pend;
        int n_out;
        char *out = relay_all(stream, step, &done, &pend, &n_out);
        CHECK(!strcmp(out, stream), "step %zu: events changed", step);
        CHECK(done && pend == 0, "step %zu: done %d pending %zu", step, done, pend);
        free(out);
    }
    /* a stream cut mid-event keeps the unfinished event back */
    bool done;
    size_t pend;
    int n_out;
    char *out = relay_all("data: {\"a\":1}\n\ndata: {\"b\":", 3, &done, &pend, &n_out);
    CHECK(!strcmp(out, "data: {\"a\":1}\n\n") && !done && pend == 11, "cut: '%s' done %d pending %zu", out, done, pend);
    free(out);
    /* [DONE] not last: not done */
    out = relay_all("data: [DONE]\n\ndata: late\n\n", 64, &done, &pend, &n_out);
    CHECK(!done, "an event after [DONE]");
    free(out);
    out = relay_all("data:[DONE]\n\n", 64, &done, &pend, &n_out);
    CHECK(done, "data:[DONE] without the space is [DONE] too");
    free(out);
    /* an unfinished event beyond the bound is an error */
    cllm_sse_relay r;
    cllm_sse_relay_init(&r, 16);
    char *ev = NULL;
    size_t el = 0;
    CHECK(cllm_sse_relay_feed(&r, "data: 0123456789abcdef", 22, &ev, &el) == CLLM_ERR_FORMAT, "bound");
    free(ev);
    cllm_sse_relay_free(&r);
}

static void test_devices(void) {
    char out[64];
    CHECK(cllm_router_replica_devices(NULL, 1, 2, out, sizeof out) == CLLM_OK && !strcmp(out, "2,3"), "%s", out);
    CHECK(cllm_router_replica_devices("", 0, 1, out, sizeof out) == CLLM_OK && !strcmp(out, "0"), "%s", out);
    CHECK(cllm_router_replica_devices("4,5,6,7", 1, 2, out, sizeof out) == CLLM_OK && !strcmp(out, "6,7"), "%s", out);
    CHECK(cllm_router_replica_devices("GPU-a,GPU-b", 1, 1, out, sizeof out) == CLLM_OK && !strcmp(out, "GPU-b"), "%s",
          out);
    CHECK(cllm_router_replica_devices("4,5,6", 1, 2, out, sizeof out) == CLLM_ERR_INVALID_ARG, "too few listed");
    CHECK(cllm_router_replica_devices("0,1", 0, 0, out, sizeof out) == CLLM_ERR_INVALID_ARG, "zero per replica");
}

static void test_policy_names(void) {
    cllm_router_policy p;
    CHECK(cllm_router_policy_from_name("least_load", &p) == CLLM_OK && p == CLLM_ROUTER_LEAST_LOAD, "least_load");
    CHECK(cllm_router_policy_from_name("prefix_aware", &p) == CLLM_OK && p == CLLM_ROUTER_PREFIX_AWARE, "prefix");
    CHECK(cllm_router_policy_from_name("random", &p) == CLLM_ERR_INVALID_ARG, "unknown policy");
    CHECK(!strcmp(cllm_router_policy_name(CLLM_ROUTER_ROUND_ROBIN), "round_robin"), "name");
}

int main(void) {
    test_round_robin();
    test_least_load();
    test_prefix_aware();
    test_prefix_key();
    test_sse_relay();
    test_devices();
    test_policy_names();
    TEST_DONE();
}
