/* Loading a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json)
 * and the accessors of include/cllm.h and tokenizer/tokenizer.h. */
#include "tokenizer/tokenizer.h"

#include "core/status.h"
#include "tokenizer/tokenizer_impl.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cllm_tokenizer_destroy(cllm_tokenizer *tok) {
    if (!tok) return;
    cllm_normalizer_free(tok->normalizer);
    cllm_pretokenizer_free(tok->pretokenizer);
    cllm_bpe_free(tok->model);
    cllm_decoder_free(tok->decoder);
    cllm_postprocessor_free(tok->post);
    cllm_added_vocab_free(tok->added);
    free(tok->chat_template);
    free(tok->bos_token);
    free(tok->eos_token);
    free(tok->pad_token);
    free(tok->unk_token);
    free(tok);
}

static cllm_status load_json(const char *path, size_t flags, json_t **out) {
    json_error_t err;
    FILE *f = fopen(path, "rb");
    if (!f) return cllm_error(CLLM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    *out = json_loadf(f, flags, &err);
    fclose(f);
    if (!*out) return cllm_error(CLLM_ERR_FORMAT, "%s is not valid JSON (line %d, column %d: %s)", path, err.line, err.column, err.text);
    return CLLM_OK;
}

/* A token given as "text" or {"content": "text", ...}; NULL otherwise. */
static char *token_string(const json_t *j) {
    if (json_is_object(j)) j = json_object_get(j, "content");
    return json_is_string(j) ? strdup(json_string_value(j)) : NULL;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cllm_strbuf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cllm_strbuf_append(&b, chunk, n);
    fclose(f);
    return cllm_strbuf_steal(&b);
}

/* tokenizer_config.json (optional): chat_template and special-token names. */
static cllm_status load_config(cllm_tokenizer *tok, const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        json_t *cfg = NULL;
        /* Configs hold huge integers (model_max_length 1e30): read them as reals. */
        CLLM_TRY(load_json(path, JSON_DECODE_INT_AS_REAL, &cfg));
        tok->bos_token = token_string(json_object_get(cfg, "bos_token"));
        tok->eos_token = token_string(json_object_get(cfg, "eos_token"));
        tok->pad_token = token_string(json_object_get(cfg, "pad_token"));
        tok->unk_token = token_string(json_object_get(cfg, "unk_token"));
        const json_t *ct = json_object_get(cfg, "chat_template");
        if (json_is_string(ct)) tok->chat_template = strdup(json_string_value(ct));
        else if (json_is_array(ct)) {
            const json_t *pick = json_array_get(ct, 0);
            for (size_t i = 0; i < json_array_size(ct); i++) {
                const char *name = json_string_value(json_object_get(json_array_get(ct, i), "name"));
                if (name && !strcmp(name, "default")) pick = json_array_get(ct, i);
            }
            const char *t = json_string_value(json_object_get(pick, "template"));
            if (t) tok->chat_template = strdup(t);
        }
        json_decref(cfg);
    }
    if (!tok->chat_template) {
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        tok->chat_template = read_text_file(path);
    }
    tok->bos_id = tok->bos_token ? cllm_tokenizer_token_to_id(tok, tok->bos_token) : -1;
    tok->eos_id = tok->eos_token ? cllm_tokenizer_token_to_id(tok, tok->eos_token) : -1;
    return CLLM_OK;
}

static cllm_status build(cllm_tokenizer *tok, const json_t *root, const char *file) {
    if (!json_is_object(root)) return cllm_error(CLLM_ERR_FORMAT, "%s: top level is not a JSON object", file);
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return cllm_error(CLLM_ERR_FORMAT, "%s has no \"model\" object", file);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type && json_object_get(model, "merges")) type = "BPE";
    if (!type || strcmp(type, "BPE"))
        return cllm_error(CLLM_ERR_UNSUPPORTED, "%s: tokenizer model type \"%s\" is not supported (only BPE)", file, type ? type : "?");
    CLLM_TRY(cllm_normalizer_parse(json_object_get(root, "normalizer"), &tok->normalizer));
    CLLM_TRY(cllm_pretokenizer_parse(json_object_get(root, "pre_tokenizer"), &tok->pretokenizer));
    CLLM_TRY(cllm_bpe_parse(model, &tok->model));
    CLLM_TRY(cllm_decoder_parse(json_object_get(root, "decoder"), &tok->decoder));
    CLLM_TRY(cllm_postprocessor_parse(json_object_get(root, "post_processor"), &tok->post));
    CLLM_TRY(cllm_added_vocab_parse(json_object_get(root, "added_tokens"), tok->normalizer, &tok->added));
    tok->vocab_size = cllm_bpe_size(tok->model);
    for (size_t i = 0; i < cllm_added_vocab_count(tok->added); i++) {
        int32_t id = cllm_added_vocab_at(tok->added, i)->id;
        if (id + 1 > tok->vocab_size) tok->vocab_size = id + 1;
    }
    return CLLM_OK;
}

cllm_status cllm_tokenizer_load(const char *path, cllm_tokenizer **out) {
    if (!out) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_tokenizer_load: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0) return cllm_error(CLLM_ERR_IO, "tokenizer path %s does not exist (%s)", path, strerror(errno));
    char file[4096], dir[4096];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
        if (stat(file, &sb) != 0) return cllm_error(CLLM_ERR_IO, "no tokenizer.json in %s", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    }
    cllm_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return cllm_error(CLLM_ERR_OOM, "out of memory");
    tok->bos_id = tok->eos_id = -1;
    json_t *root = NULL;
    cllm_status st;
    CLLM_TRY_GOTO(st, load_json(file, 0, &root), fail);
    CLLM_TRY_GOTO(st, build(tok, root, file), fail);
    json_decref(root);
    root = NULL;
    CLLM_TRY_GOTO(st, load_config(tok, dir), fail);
    *out = tok;
    return CLLM_OK;
fail:
    json_decref(root);
    cllm_tokenizer_destroy(tok);
    return st;
}

int32_t cllm_tokenizer_vocab_size(const cllm_tokenizer *tok) { return tok ? tok->vocab_size : 0; }

int32_t cllm_tokenizer_token_to_id(const cllm_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    size_t n = strlen(token);
    int32_t id = cllm_added_vocab_find(tok->added, token, n);
    return id >= 0 ? id : cllm_bpe_token_to_id(tok->model, token, n);
}

const char *cllm_tokenizer_id_to_token(const cllm_tokenizer *tok, int32_t id) {
    if (!tok) return NULL;
    const cllm_added_token *t = cllm_added_vocab_by_id(tok->added, id);
    return t ? t->content : cllm_bpe_id_to_token(tok->model, id);
}

bool cllm_tokenizer_is_special(const cllm_tokenizer *tok, int32_t id) {
    const cllm_added_token *t = tok ? cllm_added_vocab_by_id(tok->added, id) : NULL;
    return t && t->special;
}

int32_t cllm_tokenizer_bos_id(const cllm_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t cllm_tokenizer_eos_id(const cllm_tokenizer *tok) { return tok ? tok->eos_id : -1; }
const char *cllm_tokenizer_chat_template(const cllm_tokenizer *tok) { return tok ? tok->chat_template : NULL; }
const char *cllm_tokenizer_bos_token(const cllm_tokenizer *tok) { return tok ? tok->bos_token : NULL; }
const char *cllm_tokenizer_eos_token(const cllm_tokenizer *tok) { return tok ? tok->eos_token : NULL; }
const char *cllm_tokenizer_pad_token(const cllm_tokenizer *tok) { return tok ? tok->pad_token : NULL; }
const char *cllm_tokenizer_unk_token(const cllm_tokenizer *tok) { return tok ? tok->unk_token : NULL; }
