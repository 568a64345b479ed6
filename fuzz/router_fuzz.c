/* libFuzzer target for what `cllm router` parses from the network
 * (src/router/): a replica's event stream through the whole-event relay
 * (sse_relay.c), fed in pieces whose sizes come from the input, must come
 * out byte for byte (events + the unfinished tail = the input), event by
 * event (each piece ends with a line end), the same whatever the pieces;
 * the replica's header lines (rt_header_line in upstream.c) must give a
 * status in 0..999 and a terminated Content-Type; a client's body through
 * the prefix key (router_policy.c) must give the same key twice and never
 * crash.
 *
 * Build: cmake -S . -B build-fuzz -DCLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCLLM_CUDA=OFF
 *        cmake --build build-fuzz --target router_fuzz
 * Run:   build-fuzz/fuzz/router_fuzz -max_total_time=60 -max_len=4096 fuzz/corpus/router */
#include "router/router_policy.h"
#include "router/sse_relay.h"
#include "router/upstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENT 512

/* Relay data in steps (0: whole); out gets the events joined. false: an error (event too long). */
static bool relay(const uint8_t *data, size_t len, const uint8_t *steps, size_t n_steps, char *out, size_t *out_len,
                  bool *done) {
    cllm_sse_relay r;
    cllm_sse_relay_init(&r, MAX_EVENT);
    size_t off = 0, si = 0, n = 0;
    bool ok = true;
    while (off < len) {
        size_t step = n_steps ? (size_t)steps[si++ % n_steps] % 23 + 1 : len - off;
        if (step > len - off) step = len - off;
        char *ev = NULL;
        size_t el = 0;
        cllm_status st = cllm_sse_relay_feed(&r, (const char *)data + off, step, &ev, &el);
        if (el && (!ev || ev[el - 1] != '\n')) abort(); /* an event ends with its blank line */
        if (el) memcpy(out + n, ev, el);
        n += el;
        free(ev);
        off += step;
        if (st != CLLM_OK) { ok = false; break; }
        /* nothing lost, nothing invented: the events so far + the held tail = the bytes fed */
        if (n + r.len != off || memcmp(out, data, n) || memcmp(r.buf, data + n, r.len)) abort();
    }
    *out_len = n;
    *done = r.done;
    cllm_sse_relay_free(&r);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t nsteps = data[0] % 8;
    if ((size_t)nsteps + 1 > size) return 0;
    const uint8_t *steps = data + 1, *body = data + 1 + nsteps;
    size_t len = size - 1 - nsteps;
    char *a = malloc(len + 1), *b = malloc(len + 1);
    size_t al = 0, bl = 0;
    bool ad = false, bd = false;
    bool aok = relay(body, len, steps, nsteps, a, &al, &ad);
    bool bok = relay(body, len, NULL, 0, b, &bl, &bd);
    if (aok && bok && (al != bl || memcmp(a, b, al) || ad != bd)) abort(); /* the pieces do not matter */
    free(a);
    free(b);
    /* header lines */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && body[i] != '\n') continue;
        long status = -1;
        char ctype[16];
        memset(ctype, 'x', sizeof ctype);
        ctype[0] = 0;
        rt_header_line((const char *)body + start, i - start + (i < len), &status, ctype, sizeof ctype);
        if (status < -1 || status > 999 || !memchr(ctype, 0, sizeof ctype)) abort();
        start = i + 1;
    }
    /* prefix keys */
    for (int chat = 0; chat < 2; chat++) {
        uint64_t k1 = 0, k2 = 1;
        bool h1 = cllm_router_prefix_key((const char *)body, len, chat, 1 + (size_t)data[0] * 3, &k1);
        bool h2 = cllm_router_prefix_key((const char *)body, len, chat, 1 + (size_t)data[0] * 3, &k2);
        if (h1 != h2 || (h1 && k1 != k2)) abort();
    }
    return 0;
}
