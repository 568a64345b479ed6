/* Resolve a model argument to a local directory, as transformers and vLLM do.
 *  - an existing directory is used as is;
 *  - ORG/NAME is looked up in the Hugging Face cache: $HF_HUB_CACHE, else
 *    $HF_HOME/hub, else ~/.cache/huggingface/hub, at
 *    models--ORG--NAME/snapshots/<rev>/ where <rev> is refs/<revision>'s
 *    commit (or a snapshot named revision);
 *  - if absent and HF_HUB_OFFLINE is not 1, files are downloaded from the Hub
 *    ($HF_ENDPOINT, default https://huggingface.co) with libcurl into that
 *    layout: GET /api/models/ORG/NAME/revision/REV for the file list and
 *    commit sha, then /ORG/NAME/resolve/SHA/FILE for each needed file
 *    (config.json, generation_config.json, tokenizer*.json,
 *    special_tokens_map.json, *.safetensors, model.safetensors.index.json),
 *    with Authorization: Bearer $HF_TOKEN, resumed from FILE.incomplete, and
 *    a progress bar on a TTY. */
#ifndef CLLM_MODEL_HUB_H
#define CLLM_MODEL_HUB_H

#include "cllm.h"

/* *dir_out is caller-owned (cllm_free). revision NULL = "main".
 * Errors: CLLM_ERR_NOT_FOUND ("no directory X and not in the Hugging Face
 * cache at ...; download it or check the name"), CLLM_ERR_NETWORK. */
cllm_status cllm_hub_resolve(const char *model, const char *revision, bool progress, char **dir_out);

#endif
