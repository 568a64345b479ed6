/* Model argument -> local directory (stub: directories only; Hub download follows). */
#include "model/hub.h"

#include "core/status.h"

#include <sys/stat.h>

cllm_status cllm_hub_resolve(const char *model, const char *revision, bool progress, char **dir_out) {
    struct stat sb;
    *dir_out = NULL;
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        *dir_out = cllm_strdup(model);
        return *dir_out ? CLLM_OK : CLLM_ERR_OOM;
    }
    return cllm_error(CLLM_ERR_NOT_FOUND, "no directory %s; Hugging Face cache lookup is not implemented yet", model);
}
