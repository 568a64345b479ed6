/* Registry of model architectures by config.json model_type. */
#include "model/arch/arch.h"
#include "core/status.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *model_type;
    const cllm_arch *arch;
} k_archs[] = {
    {"llama", &cllm_arch_llama_family},
    {"mistral", &cllm_arch_llama_family},
    {"qwen2", &cllm_arch_llama_family},
    {"qwen3", &cllm_arch_llama_family},
    {"qwen3_moe", &cllm_arch_llama_family}, /* the same decoder with mixture-of-experts MLPs (layers/moe.c) */
    {"mixtral", &cllm_arch_llama_family},
};

const cllm_arch *cllm_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (!strcmp(k_archs[i].model_type, model_type)) return k_archs[i].arch;
    char names[256] = "";
    size_t n = 0;
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0] && n < sizeof names - 32; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", k_archs[i].model_type);
    cllm_error(CLLM_ERR_UNSUPPORTED, "model_type '%s' is not supported; supported: %s", model_type, names);
    return NULL;
}
