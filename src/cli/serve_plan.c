/* `cllm serve --dry-run`'s launch plan (see serve_plan.h). */
#include "cli/serve_plan.h"

#include <string.h>

void cllm_serve_plan_make(cllm_serve_plan *p) {
    int tp = p->tensor_parallel_size > 0 ? p->tensor_parallel_size : 1;
    int pp = p->pipeline_parallel_size > 0 ? p->pipeline_parallel_size : 1;
    int dp = p->data_parallel_size > 0 ? p->data_parallel_size : 1;
    p->tensor_parallel_size = tp;
    p->pipeline_parallel_size = pp;
    p->data_parallel_size = dp;
    p->world_size = tp * pp;
    p->nodes = pp;               /* one pipeline stage per node (1 stage: 1 node) */
    p->ranks_per_node = tp;
    p->gpus_per_node = p->cuda ? tp : 0;
    p->gpus = p->cuda ? p->world_size * dp : 0;
}

/* s as one shell word: single-quoted unless it is made of safe characters. */
static void put_word(FILE *f, const char *s) {
    bool plain = *s != 0;
    for (const char *c = s; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,%", *c)) plain = false;
    fputc(' ', f);
    if (plain) { fputs(s, f); return; }
    fputc('\'', f);
    for (const char *c = s; *c; c++) {
        if (*c == '\'') fputs("'\\''", f);
        else fputc(*c, f);
    }
    fputc('\'', f);
}

/* The user's serve arguments without --dry-run and without the argument
 * skip (NAME's pointer, or NULL); then --host 0.0.0.0 if add_host and no
 * --host was given. */
static void put_args(FILE *f, const char *skip, bool add_host, int argc, char **argv) {
    bool host = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run") || argv[i] == skip) continue;
        if (!strcmp(argv[i], "--host")) host = true;
        put_word(f, argv[i]);
    }
    if (add_host && !host) fputs(" --host 0.0.0.0", f);
}

void cllm_serve_plan_print(FILE *f, const cllm_serve_plan *p, const char *name, int argc, char **argv) {
    const int W = p->world_size, R = p->ranks_per_node, N = p->nodes;
    const char *unit = p->cuda ? "GPU" : "CPU process";
    char gpus[48] = "";
    char gpus_all[48] = ""; /* the whole world on one node */
    if (p->cuda) snprintf(gpus, sizeof gpus, " --gpus-per-node=%d", p->gpus_per_node);
    if (p->cuda) snprintf(gpus_all, sizeof gpus_all, " --gpus-per-node=%d", W);
    fprintf(f, "# plan: world_size=%d tensor_parallel_size=%d pipeline_parallel_size=%d data_parallel_size=%d "
               "nodes=%d ranks_per_node=%d gpus_per_node=%d gpus=%d device=%s\n",
            W, p->tensor_parallel_size, p->pipeline_parallel_size, p->data_parallel_size, N, R, p->gpus_per_node,
            p->gpus, p->cuda ? "cuda" : "cpu");
    if (W == 1)
        fprintf(f, "# layout: one rank, one %s; no launcher needed\n", unit);
    else if (N == 1)
        fprintf(f, "# layout: one node, %d ranks (one %s each); without a launcher cllm starts ranks 1..%d itself\n",
                W, unit, W - 1);
    else
        fprintf(f, "# layout: %d nodes x %d ranks (one %s each): tensor parallel within a node, pipeline stage k on "
                   "node k (ranks k*%d .. k*%d+%d); rank 0's node serves HTTP\n", N, R, unit, R, R, R - 1);
    if (p->data_parallel_size > 1)
        fprintf(f, "# data parallel: %d replicas of this layout (%d ranks%s in all); each line below starts one "
                   "replica: start %d, on other nodes or ports, behind a router\n",
                p->data_parallel_size, W * p->data_parallel_size, p->cuda ? ", as many GPUs" : "",
                p->data_parallel_size);
    if (name) {
        fputs("# sbatch:", f);
        if (W == 1) fprintf(f, " sbatch%s scripts/slurm/single-gpu.sbatch", p->cuda ? "" : " --gpus=0");
        else if (N == 1) fprintf(f, " sbatch%s scripts/slurm/single-node.sbatch", gpus);
        else fprintf(f, " sbatch --nodes=%d --ntasks-per-node=%d%s scripts/slurm/multi-node.sbatch", N, R, gpus);
        put_word(f, name);
        put_args(f, name, false, argc, argv); /* the script adds --host 0.0.0.0 */
        fputc('\n', f);
        if (N > 1 && W <= 8) /* nodes of up to 8 GPUs are the common size */
            fprintf(f, "# (or on one node with %d %s: sbatch%s scripts/slurm/single-node.sbatch %s ...)\n", W,
                    p->cuda ? "GPUs" : "CPU processes", p->cuda ? gpus_all : "", name);
    }
    if (W == 1) return;
    fprintf(f, "# srun:   srun --nodes=%d --ntasks-per-node=%d%s --kill-on-bad-exit=1 cllm serve", N, R, gpus);
    put_args(f, NULL, true, argc, argv);
    fprintf(f, "   # with MASTER_ADDR=<first node> MASTER_PORT=<free port> "
               "CLLM_DIST_SECRET=$(openssl rand -hex 32) exported\n");
    fprintf(f, "# mpirun: mpirun -np %d", W);
    if (N > 1) fprintf(f, " --map-by ppr:%d:node --hostfile HOSTS", R);
    fputs(" cllm serve", f);
    put_args(f, NULL, true, argc, argv);
    if (N > 1) fprintf(f, "   # HOSTS: the %d nodes, rank 0's first", N);
    fputc('\n', f);
}
