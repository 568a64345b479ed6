/* Incremental detokenizer: vLLM's prefix_offset / read_offset algorithm
 * (vllm/transformers_utils/detokenizer_utils.py, detokenize_incrementally).
 * The text of ids[prefix_offset:read_offset] has already been emitted; each
 * step decodes ids[prefix_offset:] and emits what follows that text, unless
 * the new text ends in U+FFFD (an incomplete UTF-8 character), in which case
 * it waits for more ids. */
#include "core/status.h"
#include "tokenizer/strbuf.h"

#include <stdlib.h>
#include <string.h>

/* vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET. */
#define PREFIX_WINDOW 5

struct cllm_detokenizer {
    const cllm_tokenizer *tok; /* borrowed */
    bool skip_special;
    cllm_ids ids;              /* prompt + generated (special ones kept here) */
    size_t prefix_offset, read_offset;
};

cllm_status cllm_detokenizer_create(const cllm_tokenizer *tok, const int32_t *prompt_ids, size_t n_prompt,
                                    bool skip_special_tokens, cllm_detokenizer **out) {
    if (!tok || !out || (!prompt_ids && n_prompt)) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_detokenizer_create: NULL argument");
    *out = NULL;
    cllm_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return cllm_error(CLLM_ERR_OOM, "out of memory");
    d->tok = tok;
    d->skip_special = skip_special_tokens;
    for (size_t i = 0; i < n_prompt; i++) {
        if (prompt_ids[i] < 0) { /* ids past the vocabulary decode to nothing (cllm_tokenizer_decode) */
            cllm_detokenizer_destroy(d);
            return cllm_error(CLLM_ERR_INVALID_ARG, "prompt token id %d at position %zu is negative", prompt_ids[i], i);
        }
        cllm_ids_push(&d->ids, prompt_ids[i]);
    }
    if (d->ids.oom) { cllm_detokenizer_destroy(d); return cllm_error(CLLM_ERR_OOM, "out of memory"); }
    d->read_offset = n_prompt;
    d->prefix_offset = n_prompt > PREFIX_WINDOW ? n_prompt - PREFIX_WINDOW : 0;
    *out = d;
    return CLLM_OK;
}

void cllm_detokenizer_destroy(cllm_detokenizer *d) {
    if (!d) return;
    free(d->ids.v);
    free(d);
}

static bool ends_with_fffd(const char *s, size_t n) { return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3); }

/* Emit decode(ids[prefix:]) past decode(ids[prefix:read]) if final or if it
 * does not end in U+FFFD. */
static cllm_status emit(cllm_detokenizer *d, bool final, char **delta, size_t *len) {
    char *prefix = NULL, *full = NULL;
    size_t np = 0, nf = 0;
    cllm_status st = cllm_tokenizer_decode(d->tok, d->ids.v + d->prefix_offset, d->read_offset - d->prefix_offset,
                                           d->skip_special, &prefix, &np);
    if (st == CLLM_OK)
        st = cllm_tokenizer_decode(d->tok, d->ids.v + d->prefix_offset, d->ids.n - d->prefix_offset, d->skip_special, &full, &nf);
    if (st != CLLM_OK) { free(prefix); free(full); return st; }
    size_t from = 0;
    bool ready = nf > np && (final || !ends_with_fffd(full, nf));
    if (ready) {
        /* As vLLM: what follows the already-emitted text (normally a byte
         * prefix); never start inside a character. */
        from = np;
        while (from < nf && ((unsigned char)full[from] & 0xC0) == 0x80) from++;
        memmove(full, full + from, nf - from + 1);
        nf -= from;
        d->prefix_offset = d->read_offset;
        d->read_offset = d->ids.n;
    } else {
        full[0] = 0;
        nf = 0;
        if (final) d->read_offset = d->ids.n;
    }
    free(prefix);
    *delta = full;
    if (len) *len = nf;
    return CLLM_OK;
}

cllm_status cllm_detokenizer_step(cllm_detokenizer *d, int32_t id, char **delta, size_t *len) {
    if (!d || !delta) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_detokenizer_step: NULL argument");
    *delta = NULL;
    if (id < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "token id %d is negative", id);
    cllm_ids_push(&d->ids, id);
    if (d->ids.oom) return cllm_error(CLLM_ERR_OOM, "out of memory");
    return emit(d, false, delta, len);
}

cllm_status cllm_detokenizer_flush(cllm_detokenizer *d, char **delta, size_t *len) {
    if (!d || !delta) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_detokenizer_flush: NULL argument");
    *delta = NULL;
    if (d->read_offset == d->ids.n) {
        *delta = calloc(1, 1);
        if (len) *len = 0;
        return *delta ? CLLM_OK : cllm_error(CLLM_ERR_OOM, "out of memory");
    }
    return emit(d, true, delta, len);
}
