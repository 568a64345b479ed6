/* cllm generate (placeholder until implemented). */
#include "cli/cli.h"
#include <stdio.h>

int cllm_cli_generate(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm: 'generate' is not built yet\n");
    return 1;
}
