/* Executor (rank 0; vLLM's multiproc executor, nano-vllm's rank-0-drives
 * design): owns rank 0's worker and, with tensor_parallel_size > 1, the
 * world communicator to the other ranks' worker processes (self-launched, or
 * started by mpirun / srun), the watchdog, and the command channel. Each
 * method that touches the model is broadcast to every worker first (a
 * command over the TCP world group: step metadata, KV-block copies, KV
 * sizing, graph capture), then run on rank 0's worker; every rank runs the
 * same forward with its shard, collectives inside, and rank 0 alone samples
 * and returns tokens. With one rank there are no processes, no
 * communicator and no messages: the methods call the runner directly.
 *
 * Failure: a worker that dies, a collective that times out (--dist-timeout)
 * or fails, breaks the executor: the call returns CLLM_ERR_DISTRIBUTED with
 * the rank, operation and cause, and every later call fails at once with the
 * same message (cllm_executor_check_health says so from any thread). */
#ifndef CLLM_ENGINE_EXECUTOR_H
#define CLLM_ENGINE_EXECUTOR_H

#include "cllm.h"
#include "dist/comm.h"
#include "engine/model_runner.h"
#include "model/config.h"

typedef struct cllm_executor cllm_executor;

typedef struct cllm_executor_params {
    const cllm_model_params *model; /* copied: model, revision, device, dtype, load_format, block_size,
                                     * num_threads, seed, tensor_parallel_size, dist_timeout_s */
    const char *model_dir;          /* resolved directory (rank 0); workers resolve model/revision themselves */
    const cllm_model_config *cfg;
    int max_model_len, max_num_seqs;
    int num_kv_blocks;              /* initial KV cache (sized later by the engine) */
} cllm_executor_params;

/* Start the workers (self-launch when no launcher started this process: N-1
 * copies of $CLLM_WORKER_EXE or /proc/self/exe running `cllm worker`),
 * bootstrap the world, send the engine arguments, load every rank's shard
 * and wait for all of them. Errors: the first failing rank's error prefixed
 * with its rank, CLLM_ERR_DISTRIBUTED (a worker did not start or join),
 * CLLM_ERR_INVALID_ARG (a launcher's world size that is not
 * tensor_parallel_size). */
cllm_status cllm_executor_create(const cllm_executor_params *p, cllm_executor **out);
/* Tell the workers to exit, wait for them (then kill), free everything.
 * NULL is a no-op. */
void cllm_executor_destroy(cllm_executor *ex);

/* cllm_runner_execute_ex over every rank (see model_runner.h). */
cllm_status cllm_executor_execute_ex(cllm_executor *ex, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                     int32_t *tokens_out, float *logits_out);
/* cllm_runner_execute over every rank. */
cllm_status cllm_executor_execute(cllm_executor *ex, const cllm_batch_host *b, const cllm_sample_params *sp,
                                  int32_t *tokens_out, float *logits_out);
/* Rank 0 only (the logits are all-gathered there): cllm_runner_logprobs_rows. */
cllm_status cllm_executor_logprobs_rows(cllm_executor *ex, int row0, int n, const int32_t *tokens, int k,
                                        float *token_logprobs, int32_t *top_ids, float *top_logprobs);
cllm_status cllm_executor_copy_blocks(cllm_executor *ex, const cllm_kv_copy *pairs, int n);

/* KV blocks every rank can hold: each rank's cllm_worker_available_blocks,
 * the minimum over ranks. */
cllm_status cllm_executor_available_blocks(cllm_executor *ex, int max_num_batched_tokens, int max_num_seqs,
                                           float gpu_memory_utilization, int *blocks);
cllm_status cllm_executor_resize_kv(cllm_executor *ex, int num_blocks);
cllm_status cllm_executor_reserve_graph_buffers(cllm_executor *ex);
cllm_status cllm_executor_capture_graphs(cllm_executor *ex);

/* Rank 0's runner (its shard, KV cache, graph statistics). Borrowed. */
cllm_runner *cllm_executor_runner(cllm_executor *ex);
/* Weight load time of rank 0 (ms). */
double cllm_executor_weights_ms(const cllm_executor *ex);

/* CLLM_OK, or the error that broke the executor (a dead worker noticed by
 * the watchdog even while idle). Thread-safe. */
cllm_status cllm_executor_check_health(const cllm_executor *ex);

/* Mixture-of-experts counts over every rank (collective): per_expert
 * (num_experts) = (token, expert) assignments the routers sent to each
 * expert over all MoE layers (summed over the ranks that route disjoint
 * tokens: expert parallelism, pipeline stages), per_rank (world_size) = the
 * rows each rank's experts computed. Caller-owned (free); dense: both NULL
 * and *num_experts 0. */
cllm_status cllm_executor_expert_stats(cllm_executor *ex, uint64_t **per_expert, int *num_experts, uint64_t **per_rank,
                                       int *num_ranks);

/* Communicator statistics of every rank and group (collective: rank 0 asks
 * the workers). *out has *n entries (cllm_free). One entry per (rank, group). */
cllm_status cllm_executor_dist_stats(cllm_executor *ex, cllm_comm_stats **out, int *n);

#endif
