/* The launch plan of a deployment, printed by `cllm serve [NAME] --dry-run`
 * after the resolved command: how many ranks, nodes and GPUs it needs and
 * the sbatch (scripts/slurm/), srun and mpirun lines that start it.
 *
 * Layout (vLLM's multi-node recipe): a world of tensor_parallel_size x
 * pipeline_parallel_size ranks, rank = stage * tp + tp rank. With one stage
 * it fits one node (tp GPUs); with several, stage k runs on node k (tensor
 * parallelism inside a node over NVLink, pipeline stages across nodes), so
 * nodes = pipeline_parallel_size and ranks per node = tensor_parallel_size.
 * data_parallel_size replicas multiply the GPUs; each replica is its own
 * world and its own `cllm serve`.
 *
 * The first line is machine-readable (the scripts in scripts/slurm/ parse it):
 *   # plan: world_size=8 tensor_parallel_size=4 pipeline_parallel_size=2 data_parallel_size=1 nodes=2
 *           ranks_per_node=4 gpus_per_node=4 gpus=8 device=cuda
 * (one line), then lines starting with "# layout:", "# sbatch:", "# srun:",
 * "# mpirun:" (and "# data parallel:" when data_parallel_size > 1). */
#ifndef CLLM_CLI_SERVE_PLAN_H
#define CLLM_CLI_SERVE_PLAN_H

#include <stdbool.h>
#include <stdio.h>

typedef struct cllm_serve_plan {
    int tensor_parallel_size;    /* <= 0 means 1 */
    int pipeline_parallel_size;  /* <= 0 means 1 */
    int data_parallel_size;      /* <= 0 means 1 */
    bool cuda;                   /* GPUs (one per rank) or CPU processes */
    /* derived by cllm_serve_plan_make */
    int world_size;              /* ranks of one replica: tp x pp */
    int nodes;                   /* of one replica */
    int ranks_per_node;
    int gpus_per_node;           /* 0 on the CPU */
    int gpus;                    /* all replicas */
} cllm_serve_plan;

/* Fill the derived fields of plan from its sizes (see the layout above). */
void cllm_serve_plan_make(cllm_serve_plan *plan);

/* Print the plan to f. name: the registry deployment (NULL when the command
 * gave --model only; then no sbatch line, the scripts take a NAME). argc,
 * argv: `cllm serve`'s arguments (argv[0] is "serve"), repeated in the srun /
 * mpirun lines without --dry-run and with --host 0.0.0.0 unless --host is
 * given (other machines must reach the server). */
void cllm_serve_plan_print(FILE *f, const cllm_serve_plan *plan, const char *name, int argc, char **argv);

#endif
