/* cllm bench (placeholder until implemented). */
#include "cli/cli.h"
#include <stdio.h>

int cllm_cli_bench(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm: 'bench' is not built yet\n");
    return 1;
}
