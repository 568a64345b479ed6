/* cllm tokenize (placeholder until implemented). */
#include "cli/cli.h"
#include <stdio.h>

int cllm_cli_tokenize(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm: 'tokenize' is not built yet\n");
    return 1;
}
