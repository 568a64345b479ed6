/* `cllm` command-line entry point: dispatches to a subcommand. */
#include "cli/bench.h"
#include "cli/cli.h"
#include "cllm.h"
#include "dist/dist_env.h"
#include "engine/worker.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "cllm %s: LLM inference engine\n\n"
            "usage: cllm <command> [options]\n\n"
            "commands:\n"
            "  generate   generate text from a prompt (streams to stdout)\n"
            "  tokenize   tokenize JSON-lines strings with a model's tokenizer\n"
            "  bench      benchmarks: bench latency, bench throughput, bench serve, bench comm\n"
            "  serve      OpenAI-compatible HTTP server\n"
            "  router     OpenAI-compatible front over several `cllm serve` replicas\n"
            "  models     list the model registry's deployments\n"
            "  worker     a rank > 0 of a distributed launch (cllm starts these itself; docs/distributed.md)\n\n"
            "Run `cllm <command> --help` for a command's options.\n",
            CLLM_VERSION);
}

int main(int argc, char **argv) {
    /* Ranks > 0 of a distributed launch (self-launched workers, mpirun, srun, torchrun-style env; see
     * src/dist/dist_env.h) decide their role before any command parsing: `bench comm` runs SPMD (every
     * rank runs it); any other command makes them engine workers, which receive the engine arguments
     * from rank 0. `cllm worker` is the explicit form (what cllm's self-launch starts). */
    if (cllm_dist_env_peek_rank() > 0) {
        if (argc >= 3 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "comm"))
            return cllm_cli_bench_comm(argc - 2, argv + 2);
        return cllm_worker_main();
    }
    if (argc >= 2 && !strcmp(argv[1], "worker")) return cllm_worker_main();
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return cllm_cli_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cllm_cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cllm_cli_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cllm_cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "models")) return cllm_cli_models(argc - 1, argv + 1);
    if (!strcmp(cmd, "router")) return cllm_cli_router(argc - 1, argv + 1);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "--version")) { printf("cllm %s\n", CLLM_VERSION); return 0; }
    fprintf(stderr, "cllm: unknown command '%s'; commands are generate, tokenize, bench, serve, router, models (cllm --help)\n", cmd);
    return 2;
}
