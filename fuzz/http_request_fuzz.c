/* libFuzzer target for the HTTP request reader of `cllm serve`
 * (src/server/http_request.c over llhttp): arbitrary bytes, fed in pieces
 * whose sizes come from the input, must give the same events as when fed
 * whole (chunking invariance), never read out of bounds, keep the URL and
 * headers within their limits, and keep every body within the limit it was
 * accepted with. Several pipelined messages are read in turn, as a
 * keep-alive connection reads them.
 *
 * Build: cmake -S . -B build-fuzz -DCLLM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCLLM_CUDA=OFF
 *        cmake --build build-fuzz --target http_request_fuzz
 * Where the pieces end decides when llhttp reports a span (a limit may be
 * hit before a later bad byte is seen), so the traces must agree on every
 * message read before the first refusal of either; which status refused it,
 * or whether a truncated input was refused at all, may differ.
 *
 * Run:   build-fuzz/fuzz/http_request_fuzz -max_total_time=60 -max_len=4096 fuzz/corpus/http_request */
#include "server/http_request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BODY_LIMIT 300

/* Read messages from data fed in steps (0: whole); record a trace of events. */
static size_t run(const uint8_t *data, size_t len, const uint8_t *steps, size_t n_steps, int *trace, size_t cap) {
    cllm_http_limits lim = cllm_http_default_limits();
    lim.max_url_bytes = 256;
    lim.max_header_bytes = 512;
    lim.max_headers = 8;
    cllm_http_request r;
    cllm_http_request_init(&r, &lim);
    size_t off = 0, n = 0, si = 0;
    for (int guard = 0; guard < 100000 && n + 2 < cap; guard++) {
        size_t step = n_steps ? (size_t)steps[si++ % n_steps] % 17 + 1 : len - off;
        if (step > len - off) step = len - off;
        size_t used = 0;
        cllm_http_event ev = cllm_http_request_feed(&r, (const char *)data + off, step, &used);
        if (used > step) abort();
        off += used;
        if (ev == CLLM_HTTP_HEAD) {
            if (r.url_len > lim.max_url_bytes || r.n_hdrs > lim.max_headers) abort();
            trace[n++] = 1;
            if (!cllm_http_request_accept_body(&r, BODY_LIMIT)) { trace[n++] = -1; break; }
            continue;
        }
        if (ev == CLLM_HTTP_MESSAGE) {
            if (r.body_len > BODY_LIMIT || (r.body && r.body[r.body_len])) abort();
            char path[64];
            cllm_http_request_path(&r, path, sizeof path);
            (void)cllm_http_request_header(&r, "Host", NULL);
            trace[n++] = 2;
            trace[n++] = (int)r.body_len;
            cllm_http_request_reset(&r);
            continue;
        }
        if (ev == CLLM_HTTP_ERROR) {
            if (r.error_status < 400 || r.error_status > 505 || !r.error[0]) abort();
            trace[n++] = -1; /* refused */
            break;
        }
        if (off == len) break; /* NEED_MORE with nothing left */
    }
    cllm_http_request_free(&r);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t n_steps = data[0] % 8; /* the first bytes choose the piece sizes */
    if (size < 1 + n_steps) return 0;
    const uint8_t *steps = data + 1, *msg = data + 1 + n_steps;
    size_t len = size - 1 - n_steps;
    int a[256], b[256];
    size_t na = run(msg, len, NULL, 0, a, 256), nb = run(msg, len, steps, n_steps, b, 256);
    /* the same messages whole or in pieces, up to the first refusal */
    size_t ka = 0, kb = 0;
    while (ka < na && a[ka] != -1) ka++;
    while (kb < nb && b[kb] != -1) kb++;
    size_t k = ka < kb ? ka : kb;
    if (memcmp(a, b, k * sizeof *a)) abort();
    if (ka == na && kb == nb && na < 250 && nb < 250 && na != nb) abort(); /* neither refused: same length */
    return 0;
}
