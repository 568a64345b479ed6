/* Encode and decode: the Hugging Face `tokenizers` pipeline
 * (tokenizers/src/tokenizer/mod.rs, TokenizerImpl::encode / decode):
 * added tokens split out of the raw text -> normalizer -> added tokens with
 * normalized=true -> pre-tokenizer -> BPE per pre-token -> post-processor. */
#include "core/status.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

typedef struct encode_ctx {
    const cllm_tokenizer *tok;
    cllm_strbuf norm;
    cllm_segments sub;
    cllm_pieces pieces;
    cllm_bpe_ws ws;
    cllm_ids ids;
} encode_ctx;

/* Pre-tokenize and run the model on normalized text s[0..n). */
static cllm_status encode_plain(encode_ctx *c, const char *s, size_t n, bool first) {
    cllm_pieces_clear(&c->pieces);
    CLLM_TRY(cllm_pretokenizer_apply(c->tok->pretokenizer, s, n, first, &c->pieces));
    for (size_t i = 0; i < c->pieces.n; i++)
        CLLM_TRY(cllm_bpe_encode(c->tok->model, cllm_pieces_at(&c->pieces, i), c->pieces.len[i], &c->ws, &c->ids));
    return CLLM_OK;
}

static cllm_status encode_segment(encode_ctx *c, const char *s, size_t n, bool first) {
    CLLM_TRY(cllm_normalizer_apply(c->tok->normalizer, s, n, &c->norm));
    if (!cllm_added_vocab_has_normalized(c->tok->added)) return encode_plain(c, c->norm.p, c->norm.len, first);
    c->sub.n = 0;
    CLLM_TRY(cllm_added_vocab_split(c->tok->added, true, c->norm.p, c->norm.len, &c->sub));
    for (size_t i = 0; i < c->sub.n; i++) {
        cllm_segment g = c->sub.v[i];
        if (g.id >= 0) cllm_ids_push(&c->ids, g.id);
        else CLLM_TRY(encode_plain(c, c->norm.p + g.start, g.end - g.start, first && g.start == 0));
    }
    return CLLM_OK;
}

cllm_status cllm_tokenizer_encode(const cllm_tokenizer *tok, const char *text, size_t len,
                                  bool add_special_tokens, int32_t **ids, size_t *n_ids) {
    if (!tok || !ids || !n_ids || (!text && len)) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (!text) text = "";
    size_t bad = cllm_utf8_first_invalid(text, len);
    if (bad != len) return cllm_error(CLLM_ERR_INVALID_ARG, "text is not valid UTF-8 (invalid byte 0x%02X at offset %zu)", (uint8_t)text[bad], bad);
    encode_ctx c = {.tok = tok};
    cllm_segments segs = {0};
    cllm_ids out = {0};
    cllm_status st = cllm_added_vocab_split(tok->added, false, text, len, &segs);
    for (size_t i = 0; st == CLLM_OK && i < segs.n; i++) {
        cllm_segment g = segs.v[i];
        if (g.id >= 0) cllm_ids_push(&c.ids, g.id);
        else st = encode_segment(&c, text + g.start, g.end - g.start, g.start == 0);
    }
    if (st == CLLM_OK && c.ids.oom) st = cllm_error(CLLM_ERR_OOM, "out of memory encoding");
    if (st == CLLM_OK) {
        if (add_special_tokens) st = cllm_postprocessor_apply(tok->post, c.ids.v, c.ids.n, &out);
        else { out = c.ids; c.ids = (cllm_ids){0}; }
    }
    if (st == CLLM_OK && !out.v) {
        out.v = malloc(sizeof *out.v);
        if (!out.v) st = cllm_error(CLLM_ERR_OOM, "out of memory encoding");
    }
    if (st == CLLM_OK) { *ids = out.v; *n_ids = out.n; }
    else free(out.v);
    free(segs.v);
    free(c.sub.v);
    free(c.ids.v);
    cllm_strbuf_free(&c.norm);
    cllm_pieces_free(&c.pieces);
    cllm_bpe_ws_free(&c.ws);
    return st;
}

cllm_status cllm_tokenizer_decode(const cllm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                  bool skip_special_tokens, char **text, size_t *len) {
    if (!tok || !text || (!ids && n_ids)) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_tokenizer_decode: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    cllm_pieces toks = {0};
    cllm_strbuf out = {0};
    cllm_status st = CLLM_OK;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0) {
            st = cllm_error(CLLM_ERR_INVALID_ARG, "token id %d at position %zu is negative", id, i);
            break;
        }
        /* Ids past the tokenizer's vocabulary decode to nothing, as Hugging Face
         * tokenizers' decode skips ids it has no token for: a model's embedding
         * is often padded past its tokenizer (Qwen2.5: 152064 rows, 151665 tokens)
         * and a sampler may pick such an id. */
        if (id >= tok->vocab_size) continue;
        const cllm_added_token *t = cllm_added_vocab_by_id(tok->added, id);
        if (t && t->special && skip_special_tokens) continue;
        const char *s = t ? t->content : cllm_bpe_id_to_token(tok->model, id);
        if (!s) continue; /* a hole in the vocab: HF skips it too */
        cllm_pieces_push(&toks, s, t ? t->len : strlen(s), 0);
    }
    if (st == CLLM_OK && cllm_pieces_failed(&toks)) st = cllm_error(CLLM_ERR_OOM, "out of memory decoding");
    if (st == CLLM_OK) st = cllm_decoder_decode(tok->decoder, &toks, &out);
    cllm_pieces_free(&toks);
    if (st != CLLM_OK) { cllm_strbuf_free(&out); return st; }
    size_t n = out.len;
    *text = cllm_strbuf_steal(&out);
    if (!*text) return cllm_error(CLLM_ERR_OOM, "out of memory decoding");
    if (len) *len = n;
    return CLLM_OK;
}
