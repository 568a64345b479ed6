/* Registry of model architectures by config.json model_type. */
#include "model/arch/arch.h"
#include "core/status.h"

#include <string.h>

static const struct {
    const char *model_type;
    const cllm_arch *arch;
} k_archs[] = {
    {"llama", &cllm_arch_llama_family},
    {"mistral", &cllm_arch_llama_family},
    {"qwen2", &cllm_arch_llama_family},
    {"qwen3", &cllm_arch_llama_family},
};

const cllm_arch *cllm_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (!strcmp(k_archs[i].model_type, model_type)) return k_archs[i].arch;
    cllm_error(CLLM_ERR_UNSUPPORTED, "model_type '%s' is not supported; supported: llama, mistral, qwen2, qwen3",
               model_type);
    return NULL;
}
