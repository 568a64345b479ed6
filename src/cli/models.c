/* cllm models: list the deployments of the model registry
 * (server/registry.h) that `cllm serve NAME` accepts. */
#include "cli/cli.h"
#include "cllm.h"
#include "server/registry.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: cllm models [--registry FILE]\n"
               "Lists the registry's deployments (--registry, else $CLLM_REGISTRY, else configs/models.yaml).\n");
}

int cllm_cli_models(int argc, char **argv) {
    const char *flag = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--registry") && i + 1 < argc) { flag = argv[++i]; continue; }
        fprintf(stderr, "cllm models: unexpected argument '%s' (cllm models --help)\n", argv[i]);
        return 2;
    }
    char *path = NULL;
    cllm_registry *reg = NULL;
    if (cllm_registry_resolve_path(flag, &path) != CLLM_OK || cllm_registry_load(path, &reg) != CLLM_OK) {
        fprintf(stderr, "cllm models: %s\n", cllm_last_error());
        cllm_free(path);
        return 1;
    }
    printf("%-24s %-44s %s\n", "NAME", "MODEL", "DESCRIPTION");
    for (size_t i = 0; i < cllm_registry_count(reg); i++) {
        const cllm_registry_entry *e = cllm_registry_get(reg, i);
        printf("%-24s %-44s %s\n", e->name, e->model, e->description ? e->description : "");
    }
    printf("(%zu deployments in %s; start one with `cllm serve NAME`)\n", cllm_registry_count(reg), path);
    cllm_registry_destroy(reg);
    cllm_free(path);
    return 0;
}
