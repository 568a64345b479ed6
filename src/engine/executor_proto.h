/* The executor's command channel (internal): what rank 0 broadcasts to the
 * worker processes over the world TCP group, and how it is encoded. Both
 * sides are the same cllm binary (the init message carries a layout check).
 *
 * A command is one broadcast of CLLM_PROTO_MSG_BYTES bytes: a header (magic,
 * command, up to 8 integer arguments, payload size) followed by the payload
 * when it fits; a larger payload follows in a second broadcast. A decode
 * step of up to ~100 sequences fits in the first message. */
#ifndef CLLM_ENGINE_EXECUTOR_PROTO_H
#define CLLM_ENGINE_EXECUTOR_PROTO_H

#include "cllm.h"
#include "dist/comm.h"
#include "engine/scheduler.h"

#define CLLM_PROTO_MSG_BYTES 4096
#define CLLM_PROTO_MAGIC 0x434c4d58u /* "CLMX" */
/* Loading a shard, profiling and capturing graphs run on every rank at their
 * own pace: the setup commands wait up to this long for the slowest rank. */
#define CLLM_PROTO_SETUP_TIMEOUT_S 1800.0

typedef enum cllm_proto_cmd {
    CLLM_CMD_SHUTDOWN = 1,
    CLLM_CMD_EXECUTE = 2,          /* arg: flags; payload: the batch (cllm_proto_pack_batch) */
    CLLM_CMD_COPY_BLOCKS = 3,      /* arg[0] = n; payload: n cllm_kv_copy */
    CLLM_CMD_AVAILABLE_BLOCKS = 4, /* arg: max_num_batched_tokens, max_num_seqs, gpu_memory_utilization * 1e6 */
    CLLM_CMD_RESIZE_KV = 5,        /* arg[0] = blocks */
    CLLM_CMD_RESERVE_GRAPHS = 6,
    CLLM_CMD_CAPTURE_GRAPHS = 7,
    CLLM_CMD_STATS = 8,            /* every rank all-gathers its communicator statistics */
    CLLM_CMD_EXPERT_STATS = 9,     /* every rank all-gathers its experts' counts (num_experts + 1 uint64) */
} cllm_proto_cmd;

#define CLLM_EXEC_NO_GRAPH 1       /* EXECUTE flag: run eagerly (rank 0 applies penalties) */

typedef struct cllm_proto_msg {
    uint32_t cmd;
    int64_t arg[8];
    void *payload;                 /* owned (grown as needed) */
    size_t payload_bytes, cap;
} cllm_proto_msg;

/* Rank 0: broadcast a command with its arguments (8 entries, may be NULL)
 * and payload (n bytes). */
cllm_status cllm_proto_send(cllm_comm *world, uint32_t cmd, const int64_t *arg, const void *payload, size_t n);
/* Workers: receive the next command into m. Waits without a timeout (an
 * idle server) but returns CLLM_ERR_DISTRIBUTED once rank 0 is gone. */
cllm_status cllm_proto_recv(cllm_comm *world, cllm_proto_msg *m);
void cllm_proto_msg_free(cllm_proto_msg *m);

/* The batch of an EXECUTE, compact: per sequence only the block-table
 * entries its seq_len uses. *buf grows (realloc; cllm_free or free). */
cllm_status cllm_proto_pack_batch(const cllm_batch_host *b, int block_size, void **buf, size_t *cap, size_t *n);
/* Decode into b, whose arrays point into payload (token ids, ...) and into
 * *bt (the block tables expanded to (S, max_blocks_per_seq), grown). */
cllm_status cllm_proto_unpack_batch(const void *payload, size_t n, int block_size, cllm_batch_host *b, int32_t **bt,
                                    size_t *bt_cap);

/* After a setup command every rank reports its status: all-gather of (status,
 * message); returns CLLM_OK when all succeeded, else the first failing rank's
 * status with "rank R (host): message". */
cllm_status cllm_proto_gather_status(cllm_comm *world, cllm_status st);

/* The engine arguments rank 0 sends at start (fixed layout). */
typedef struct cllm_proto_init {
    uint32_t magic, layout_bytes;   /* sizeof(cllm_proto_init): same binary on every rank */
    char model[2048], revision[256];
    int32_t device, dtype, load_format, block_size, max_model_len, max_num_seqs, num_kv_blocks, num_threads;
    int32_t tensor_parallel_size, pipeline_parallel_size, pp_micro_batches, enable_expert_parallel;
    int32_t kv_cache_dtype;       /* cllm_dtype: AUTO or F8_E4M3 (every rank's cache in the same format) */
    int32_t quantization;         /* cllm_quantization (--quantization fp8: every rank quantizes its slices) */
    char pp_layer_partition[256];
    uint64_t seed;
    double dist_timeout_s;
} cllm_proto_init;

#endif
