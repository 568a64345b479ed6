/* cllm bench: shared pieces of the benchmark subcommands (bench.c latency
 * at batch 1, bench_batch.c the batched decode sweep, bench_throughput.c
 * the offline throughput benchmark). Ceilings are those of the card the run
 * is on (CONVENTIONS.md §12; cllm_backend_ceilings in backend.h), printed
 * with its name. */
#ifndef CLLM_CLI_BENCH_H
#define CLLM_CLI_BENCH_H

#include "cllm.h"

/* Median of v[0..n) (sorts v in place); 0 when n == 0. */
double cllm_bench_median(double *v, int n);

/* Decode sweep (vLLM benchmark_latency with --batch-size N, decode only):
 * for each batch size bs[i], N sequences at context input_len decode
 * output_len tokens each through the model runner (greedy sampling
 * included), num_iters measured runs after warmup; prints one row per batch
 * size: median step time = per-token latency, tokens/s = N / step, and the
 * roofline ceiling N / max((weight bytes read + KV bytes read) / bandwidth,
 * FLOPs / peak) of the card (per rank with tensor parallelism). json_path (or NULL) gets the same rows. mp->max_model_len
 * 0: input_len + output_len. Returns the process exit code (0 ok, 1 error
 * with a message on stderr). */
int cllm_bench_latency_sweep(cllm_model_params *mp, const long *bs, int nbs, long input_len, long output_len,
                             long iters, long warmup, const char *json_path);

/* `cllm bench throughput ...` (argv[0] == "throughput"); exit code. */
int cllm_cli_bench_throughput(int argc, char **argv);

/* `cllm bench comm ...` (argv[0] == "comm", cli/bench_comm.c): communicator
 * bandwidth in nccl-tests' columns; self-launches --world-size ranks or runs
 * SPMD under mpirun/srun. Exit code. */
int cllm_cli_bench_comm(int argc, char **argv);

/* `cllm bench moe ...` (argv[0] == "moe", cli/bench_moe.c): the mixture-of-experts ops on one random layer
 * (route, permutation, grouped GEMMs, the whole op per path) against the card's ceilings. Exit code. */
int cllm_cli_bench_moe(int argc, char **argv);

#endif
