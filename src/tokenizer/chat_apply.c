/* cllm_tokenizer_apply_chat_template (include/cllm.h): a tokenizer's chat
 * template rendered with a JSON context. Glue between tokenizer.c (the
 * template source, bos/eos tokens) and chat_template.c (compile, render);
 * kept apart so the chat-template fuzz target links without the tokenizer. */
#include <jansson.h>
#include <string.h>

#include "core/status.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

/* Parse the JSON context, fill bos/eos from the tokenizer, compile, render. */
cllm_status cllm_tokenizer_apply_chat_template(const cllm_tokenizer *tok, const char *chat_template,
                                               const char *context_json, char **text, size_t *len) {
    if (!tok || !context_json || !text) return cllm_error(CLLM_ERR_INVALID_ARG, "apply_chat_template: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    const char *src = chat_template ? chat_template : cllm_tokenizer_chat_template(tok);
    if (!src)
        return cllm_error(CLLM_ERR_NOT_FOUND, "this model has no chat template (tokenizer_config.json has no "
                                              "chat_template); pass one (vLLM's chat_template argument)");
    json_error_t jerr;
    json_t *ctx = json_loads(context_json, 0, &jerr);
    if (!ctx) return cllm_error(CLLM_ERR_FORMAT, "apply_chat_template: context is not valid JSON: %s (line %d, column %d)",
                                jerr.text, jerr.line, jerr.column);
    cllm_status st = CLLM_OK;
    cllm_chat_template *t = NULL;
    if (!json_is_object(ctx) || !json_is_array(json_object_get(ctx, "messages"))) {
        st = cllm_error(CLLM_ERR_FORMAT, "apply_chat_template: the context must be a JSON object with a \"messages\" list");
        goto done;
    }
    const char *bos = cllm_tokenizer_bos_token(tok), *eos = cllm_tokenizer_eos_token(tok);
    if (!json_object_get(ctx, "bos_token")) json_object_set_new(ctx, "bos_token", json_string(bos ? bos : ""));
    if (!json_object_get(ctx, "eos_token")) json_object_set_new(ctx, "eos_token", json_string(eos ? eos : ""));
    if ((st = cllm_chat_template_create(src, &t)) != CLLM_OK) goto done;
    if ((st = cllm_chat_template_render(t, ctx, text)) != CLLM_OK) goto done;
    if (len) *len = strlen(*text);
done:
    cllm_chat_template_destroy(t);
    json_decref(ctx);
    return st;
}
