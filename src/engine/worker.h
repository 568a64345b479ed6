/* Worker (one per rank; vLLM's Worker): the rank's backend (CPU, or the CUDA
 * device of its local rank), its tensor-parallel groups (a TCP group split
 * from the world; on CUDA an NCCL communicator over it) and its model runner
 * (the weights of its shard, paged KV cache, CUDA graphs). Rank 0's worker
 * lives in the engine's process, driven by the executor (executor.c); the
 * other ranks' workers run in worker processes (worker_main.c) and execute
 * the commands rank 0 broadcasts. Model code never sees any of this: it gets
 * a shard description and a communicator. */
#ifndef CLLM_ENGINE_WORKER_H
#define CLLM_ENGINE_WORKER_H

#include "cllm.h"
#include "dist/comm.h"
#include "engine/model_runner.h"
#include "model/config.h"

typedef struct cllm_worker cllm_worker;

typedef struct cllm_worker_params {
    const cllm_model_params *model;  /* device, dtype, load_format, block_size, num_threads, seed, progress */
    const char *model_dir;           /* resolved local directory of the checkpoint */
    const cllm_model_config *cfg;
    int max_model_len, max_num_seqs, num_kv_blocks;
    int rank, tp_size, pp_size;      /* world rank = stage * tp_size + tp rank */
    const char *pp_layer_partition;  /* NULL: even */
    int pp_micro_batches;
    int cuda_device;                 /* this rank's device (its local rank) */
    int local_world_size;            /* ranks on this node: CPU ranks split its cores (num_threads 0) */
    cllm_comm *world;                /* borrowed; NULL when tp_size is 1 */
    double timeout_s;                /* NCCL initialization bound */
} cllm_worker_params;

/* Create the backend, the tensor-parallel groups (collective over world),
 * read this rank's slices of the weights (mmap'd safetensors, or dummy
 * weights) and allocate the KV cache. Errors: those of the backend, the
 * shard (tensor_parallel_size not dividing the heads: CLLM_ERR_INVALID_ARG),
 * the weights and the communicator. */
cllm_status cllm_worker_create(const cllm_worker_params *p, cllm_worker **out);
/* NULL is a no-op. Frees the runner, the groups and the backend. */
void cllm_worker_destroy(cllm_worker *w);

cllm_runner *cllm_worker_runner(cllm_worker *w);   /* borrowed */
/* The tensor-parallel group the forward runs on (NCCL on CUDA, TCP on CPU),
 * NULL when tp_size is 1; the pipeline group likewise. Borrowed. */
cllm_comm *cllm_worker_tp_group(cllm_worker *w);
cllm_comm *cllm_worker_pp_group(cllm_worker *w);
/* Wall time spent reading and uploading the weights (ms). */
double cllm_worker_weights_ms(const cllm_worker *w);
/* Peak resident host memory of this process image so far (bytes; /proc/self/status VmHWM). */
size_t cllm_worker_peak_rss_bytes(void);

/* All-gathers over the world group that rank 0 (executor.c) and the worker
 * processes (worker_main.c) enter together, each rank with its own part;
 * *all (rank-major, caller-owned: free) gets every rank's, or all NULL
 * discards them (the workers). Errors: the communicator's, CLLM_ERR_OOM. */
/* cllm_worker_peak_rss_bytes: one entry per rank. */
cllm_status cllm_worker_gather_peak_rss(cllm_comm *world, uint64_t **all);
/* Statistics of each rank's groups, CLLM_WORKER_STATS entries per rank:
 * world, tp over TCP, tp over NCCL, pp over TCP, pp over NCCL; a group a
 * rank does not have leaves its entry zeroed (empty name). */
#define CLLM_WORKER_STATS 5
cllm_status cllm_worker_gather_comm_stats(cllm_comm *world, cllm_worker *w, cllm_comm_stats **all);
/* Mixture-of-experts counts (cllm_runner_expert_stats), num_experts + 1
 * entries per rank: routed per expert, then rows computed. */
cllm_status cllm_worker_gather_expert_stats(cllm_comm *world, cllm_worker *w, int num_experts, uint64_t **all);

/* KV blocks this rank can hold (vLLM's determine_num_available_blocks).
 * CUDA: a forward pass at max_num_batched_tokens (collective: every rank of
 * the group runs it), then (total * gpu_memory_utilization - used) / bytes
 * per block. CPU: max_num_seqs * max_model_len tokens capped at a quarter of
 * the host's memory. Errors: CLLM_ERR_OOM (not even one sequence fits, with
 * what to change), backend errors. */
cllm_status cllm_worker_available_blocks(cllm_worker *w, int max_num_batched_tokens, int max_num_seqs,
                                         float gpu_memory_utilization, int *blocks);

/* The whole life of a worker process (a rank > 0; worker_main.c): detect the
 * launcher's environment, join the world, receive the engine arguments from
 * rank 0, load this rank's shard, then run rank 0's commands until it says
 * shutdown or goes away. Returns the process exit status (0 on shutdown, 1
 * with the error on stderr). `cllm worker` and every rank > 0 of an mpirun /
 * srun launch call it. */
int cllm_worker_main(void);

#endif
