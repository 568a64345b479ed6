/* Communicator (internal): the collectives every parallel layout of cllm
 * uses (tensor, pipeline, expert, data parallelism), over two transports:
 *
 *   - TCP ("cpu", comm_tcp.c): host memory, synchronous; a full mesh of TCP
 *     connections between the ranks (loopback on one node, the network across
 *     nodes), bootstrapped through rank 0's rendezvous address with a shared
 *     secret. It carries the CPU backend's tensor parallelism (so every
 *     sharding layout runs in CI without a GPU) and, on every layout, the
 *     executor's control messages (rank 0 -> workers), as vLLM's gloo
 *     cpu_group does.
 *   - NCCL ("nccl", comm_nccl.c): device memory, asynchronous on the CUDA
 *     stream given at creation (the backend's), capturable in CUDA graphs.
 *
 * Groups (TP, later PP/EP/DP) are split from the world with cllm_comm_split,
 * as vLLM's GroupCoordinator / torch.distributed.new_group.
 *
 * Rules every caller follows (as with NCCL / MPI):
 *   - A collective is called by every rank of the communicator, in the same
 *     order, with the same count, dtype, op and root. The TCP transport checks
 *     this: each message carries (op, sequence number, bytes) and a mismatch
 *     is an error naming both sides.
 *   - One thread drives a communicator (and its split children); only
 *     cllm_comm_abort and cllm_comm_get_stats may be called from another.
 *   - count is in elements of dtype; buffers of count elements each unless
 *     stated. send and recv may be the same pointer (in place) where noted.
 *
 * Errors (every function): CLLM_ERR_INVALID_ARG (bad count/root/peer/dtype),
 * CLLM_ERR_DISTRIBUTED (a peer closed its connection or died, a timeout after
 * the communicator's timeout_s, a collective mismatch, an NCCL error, or the
 * communicator was aborted / broken by an earlier error). The message names
 * this rank, the peer rank when known, the operation and its sequence number,
 * and what to check ("the process of rank 2 exited", "--dist-timeout"). After
 * an error the communicator is broken: every later call fails at once. */
#ifndef CLLM_DIST_COMM_H
#define CLLM_DIST_COMM_H

#include "cllm.h"
#include <stddef.h>
#include <stdint.h>

typedef struct cllm_comm cllm_comm;

typedef enum cllm_reduce_op { CLLM_REDUCE_SUM = 0, CLLM_REDUCE_MAX = 1, CLLM_REDUCE_MIN = 2 } cllm_reduce_op;

/* cllm_comm_op, cllm_comm_op_stats, cllm_comm_stats and cllm_comm_op_name
 * are public (include/cllm.h: cllm_engine_get_distributed_stats). Stats:
 * bytes are this rank's buffer (nccl-tests' "size": count * dtype size; for
 * all_gather the gathered output, for reduce_scatter the input, for
 * all_to_allv what this rank sent); time_s is host wall time inside the call
 * (TCP: the whole transfer; NCCL: only the enqueue; cllm bench comm times
 * device transfers). */

/* Dtypes the collectives take: F32, BF16, F16, I32, I64, U8 (reductions on
 * U8 are not supported). Reductions of BF16/F16 on TCP accumulate in f32
 * and round once per step of the algorithm; every rank ends with the same
 * bits. */

/* ------------------------------------------------------------ queries */
int cllm_comm_rank(const cllm_comm *c);
int cllm_comm_size(const cllm_comm *c);
/* World rank of group rank r (r in [0, size)). */
int cllm_comm_world_rank_of(const cllm_comm *c, int r);
const char *cllm_comm_name(const cllm_comm *c);       /* borrowed */
const char *cllm_comm_transport(const cllm_comm *c);  /* "tcp" | "nccl" */
/* True when buffers are device memory (NCCL) rather than host memory. */
bool cllm_comm_is_device(const cllm_comm *c);

/* --------------------------------------------------------- collectives */
/* recv (count) = op over ranks of send (count). In place allowed. */
cllm_status cllm_comm_all_reduce(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                 cllm_reduce_op op);
/* recv (size * count), rank-major: recv[r * count ..] = send of rank r.
 * In place allowed when send == recv + rank * count. */
cllm_status cllm_comm_all_gather(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt);
/* send (size * count); recv (count) = op over ranks of send[rank * count ..]. */
cllm_status cllm_comm_reduce_scatter(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                     cllm_reduce_op op);
/* buf (count) of root is copied to every rank's buf. */
cllm_status cllm_comm_broadcast(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int root);
/* Point to point. A send must be matched by a recv of the same count and
 * dtype on the peer, in the same order. */
cllm_status cllm_comm_send(cllm_comm *c, const void *buf, size_t count, cllm_dtype dt, int peer);
cllm_status cllm_comm_recv(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int peer);
/* All-to-all with variable counts (MPI_Alltoallv; expert parallelism):
 * this rank sends send[send_displs[p] .. + send_counts[p]) to rank p and
 * receives recv_counts[p] elements from rank p into recv[recv_displs[p] ..].
 * Counts and displacements in elements, host arrays of size entries; the
 * counts must match pairwise (checked on TCP). Not in place. */
cllm_status cllm_comm_all_to_allv(cllm_comm *c, const void *send, const size_t *send_counts,
                                  const size_t *send_displs, void *recv, const size_t *recv_counts,
                                  const size_t *recv_displs, cllm_dtype dt);
cllm_status cllm_comm_barrier(cllm_comm *c);
/* Wait until every operation enqueued so far has completed (NCCL: the
 * stream; TCP: nothing to wait for). */
cllm_status cllm_comm_sync(cllm_comm *c);

/* Timeout of later operations on c and its split children (seconds; <= 0:
 * wait forever, still failing at once when a peer closes). The workers wait
 * for rank 0's next command without a timeout; setup phases (weight loading
 * on every rank) use a longer one. */
void cllm_comm_set_timeout(cllm_comm *c, double timeout_s);

/* ------------------------------------------------------------- groups */
/* Collective over c: ranks with the same color form a new communicator named
 * name, ordered by (key, rank in c). color < 0: this rank joins none (*out =
 * NULL). The child uses the same transport (TCP: the parent's connections;
 * NCCL: ncclCommSplit) and must be destroyed before its parent. */
cllm_status cllm_comm_split(cllm_comm *c, int color, int key, const char *name, cllm_comm **out);

/* ------------------------------------------------- failure and lifetime */
/* Abort from any thread: in-flight and later calls on c (and on the
 * communicators split from it) return CLLM_ERR_DISTRIBUTED with reason
 * (copied) in their message. NCCL: ncclCommAbort. Idempotent. */
void cllm_comm_abort(cllm_comm *c, const char *reason);
/* Liveness check that does not disturb the driving thread; thread-safe,
 * cheap (the watchdog calls it every 100 ms). TCP: a peer connection that
 * the other side closed (poll for POLLRDHUP without reading) or reset;
 * NCCL: ncclCommGetAsyncError. CLLM_OK while healthy, else
 * CLLM_ERR_DISTRIBUTED naming the peer or the NCCL error. */
cllm_status cllm_comm_check_health(cllm_comm *c);
/* True once an error or an abort broke c. Thread-safe. */
bool cllm_comm_is_broken(const cllm_comm *c);
/* Statistics; thread-safe (a consistent enough snapshot for monitoring). */
void cllm_comm_get_stats(const cllm_comm *c, cllm_comm_stats *out);
/* Add times * delta's calls/bytes/time to c's statistics (the name and
 * ranks of delta are ignored). The runner uses it for CUDA-graph replays,
 * whose collectives were enqueued once, at capture. */
void cllm_comm_stats_add(cllm_comm *c, const cllm_comm_stats *delta, uint64_t times);
/* NULL is a no-op. Children first. Does not synchronize with the peers. */
void cllm_comm_destroy(cllm_comm *c);

/* -------------------------------------------------------------- creation */
typedef struct cllm_dist_env cllm_dist_env; /* dist_env.h */

/* The world communicator over TCP: bootstrap through env's rendezvous
 * address (rank 0 listens, the others connect presenting env's secret),
 * then a full mesh. Collective over all world ranks. timeout_s bounds the
 * bootstrap and every later operation (--dist-timeout; an operation fails
 * when no byte moves for timeout_s). Errors:
 * CLLM_ERR_DISTRIBUTED (a rank did not join in time, naming the missing
 * ranks; wrong secret; address in use), CLLM_ERR_INVALID_ARG. */
cllm_status cllm_comm_tcp_create_world(const cllm_dist_env *env, double timeout_s, cllm_comm **out);

/* An NCCL communicator over the ranks of host (a TCP communicator whose
 * ranks each drive one CUDA device): rank 0 makes the ncclUniqueId and
 * broadcasts it over host; ncclCommInitRankConfig non-blocking, waited for
 * with ncclCommGetAsyncError up to timeout_s. Operations are enqueued on
 * cuda_stream (a cudaStream_t, borrowed) of cuda_device. name as in split.
 * Errors: CLLM_ERR_NO_DEVICE (built without CUDA/NCCL), CLLM_ERR_DISTRIBUTED. */
cllm_status cllm_comm_nccl_create(cllm_comm *host, int cuda_device, void *cuda_stream, const char *name,
                                  double timeout_s, cllm_comm **out);

#endif
