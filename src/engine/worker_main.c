/* A worker process (rank > 0): join the world, load the shard rank 0 asks
 * for, run its commands (see executor.c for the other side). Errors end the
 * process: the engine's state on this rank is then unknown, rank 0 notices
 * the closed connection and stops the distributed engine. */
#include "core/status.h"
#include "dist/dist_env.h"
#include "engine/executor_proto.h"
#include "engine/worker.h"
#include "model/hub.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Bootstrap: rank 0 may still be resolving or downloading the model when a
 * launcher (mpirun, srun) starts the workers. */
#define BOOTSTRAP_TIMEOUT_S 600.0

typedef struct wstate {
    cllm_dist_env env;
    cllm_comm *world;
    cllm_worker *w;
    cllm_proto_msg m;
    int32_t *bt;
    size_t bt_cap;
    char *dir;
    cllm_model_config cfg;
    double timeout_s;
    int block_size;
} wstate;

static cllm_status load(wstate *s) {
    cllm_proto_init in;
    CLLM_TRY(cllm_comm_broadcast(s->world, &in, sizeof in, CLLM_DTYPE_U8, 0));
    if (in.magic != CLLM_PROTO_MAGIC || in.layout_bytes != sizeof in)
        return cllm_error(CLLM_ERR_DISTRIBUTED, "rank 0 runs a different cllm build (init layout %u bytes, here %zu)",
                          in.layout_bytes, sizeof in);
    in.model[sizeof in.model - 1] = in.revision[sizeof in.revision - 1] = 0;
    s->timeout_s = in.dist_timeout_s;
    s->block_size = in.block_size;
    cllm_model_params mp = cllm_model_default_params();
    mp.model = in.model;
    mp.revision = in.revision;
    mp.device = (cllm_device)in.device;
    mp.dtype = (cllm_dtype)in.dtype;
    mp.load_format = (cllm_load_format)in.load_format;
    mp.block_size = in.block_size;
    mp.num_threads = in.num_threads;
    mp.seed = in.seed;
    mp.progress = false;
    mp.tensor_parallel_size = in.tensor_parallel_size;
    mp.pipeline_parallel_size = in.pipeline_parallel_size;
    in.pp_layer_partition[sizeof in.pp_layer_partition - 1] = 0;
    mp.pp_layer_partition = in.pp_layer_partition[0] ? in.pp_layer_partition : NULL;
    mp.pp_micro_batches = in.pp_micro_batches;
    mp.enable_expert_parallel = in.enable_expert_parallel != 0;
    mp.kv_cache_dtype = (cllm_dtype)in.kv_cache_dtype;
    mp.quantization = (cllm_quantization)in.quantization;
    cllm_status st = cllm_hub_resolve(in.model, in.revision, false, &s->dir);
    if (st == CLLM_OK) st = cllm_config_load(s->dir, &s->cfg);
    if (st == CLLM_OK) {
        cllm_worker_params wp = {
            .model = &mp, .model_dir = s->dir, .cfg = &s->cfg, .max_model_len = in.max_model_len,
            .max_num_seqs = in.max_num_seqs, .num_kv_blocks = in.num_kv_blocks, .rank = s->env.rank,
            .tp_size = in.tensor_parallel_size, .pp_size = in.pipeline_parallel_size,
            .pp_layer_partition = mp.pp_layer_partition, .pp_micro_batches = in.pp_micro_batches,
            .cuda_device = s->env.cuda_device, .world = s->world,
            .local_world_size = s->env.local_world_size,
            .timeout_s = CLLM_PROTO_SETUP_TIMEOUT_S,
        };
        st = cllm_worker_create(&wp, &s->w);
    }
    cllm_status all = cllm_proto_gather_status(s->world, st);
    if (st == CLLM_OK) st = all;
    if (st != CLLM_OK) return st;
    return cllm_worker_gather_peak_rss(s->world, NULL);
}

/* Run one command; *done on shutdown. */
static cllm_status run_cmd(wstate *s, bool *done) {
    cllm_proto_msg *m = &s->m;
    cllm_runner *r = cllm_worker_runner(s->w);
    switch (m->cmd) {
    case CLLM_CMD_SHUTDOWN: *done = true; return CLLM_OK;
    case CLLM_CMD_EXECUTE: {
        cllm_batch_host b;
        CLLM_TRY(cllm_proto_unpack_batch(m->payload, m->payload_bytes, s->block_size, &b, &s->bt, &s->bt_cap));
        cllm_runner_sample_args a = {.logprobs_k = -1, .no_graph = (m->arg[0] & CLLM_EXEC_NO_GRAPH) != 0};
        return cllm_runner_execute_ex(r, &b, &a, NULL, NULL);
    }
    case CLLM_CMD_COPY_BLOCKS:
        if (m->payload_bytes != (size_t)m->arg[0] * sizeof(cllm_kv_copy))
            return cllm_error(CLLM_ERR_DISTRIBUTED, "copy_blocks: %lld pairs in %zu bytes", (long long)m->arg[0],
                              m->payload_bytes);
        return cllm_runner_copy_blocks(r, m->payload, (int)m->arg[0]);
    case CLLM_CMD_AVAILABLE_BLOCKS: {
        cllm_comm_set_timeout(s->world, CLLM_PROTO_SETUP_TIMEOUT_S);
        int mine = 0;
        cllm_status st = cllm_worker_available_blocks(s->w, (int)m->arg[0], (int)m->arg[1], (float)m->arg[2] / 1e6f,
                                                      &mine);
        CLLM_TRY(cllm_proto_gather_status(s->world, st));
        int32_t v = mine, mn;
        return cllm_comm_all_reduce(s->world, &v, &mn, 1, CLLM_DTYPE_I32, CLLM_REDUCE_MIN);
    }
    case CLLM_CMD_RESIZE_KV:
    case CLLM_CMD_RESERVE_GRAPHS:
    case CLLM_CMD_CAPTURE_GRAPHS: {
        cllm_comm_set_timeout(s->world, CLLM_PROTO_SETUP_TIMEOUT_S);
        cllm_status st = m->cmd == CLLM_CMD_RESIZE_KV      ? cllm_runner_resize_kv(r, (int)m->arg[0])
                         : m->cmd == CLLM_CMD_RESERVE_GRAPHS ? cllm_runner_reserve_graph_buffers(r)
                                                             : cllm_runner_capture_graphs(r);
        return cllm_proto_gather_status(s->world, st);
    }
    case CLLM_CMD_STATS: return cllm_worker_gather_comm_stats(s->world, s->w, NULL);
    case CLLM_CMD_EXPERT_STATS: return cllm_worker_gather_expert_stats(s->world, s->w, s->cfg.num_experts, NULL);
    default: return cllm_error(CLLM_ERR_DISTRIBUTED, "unknown command %u from rank 0", m->cmd);
    }
}

int cllm_worker_main(void) {
    wstate s;
    memset(&s, 0, sizeof s);
    s.env.listen_fd = -1;
    cllm_status st = cllm_dist_env_detect(&s.env);
    if (st == CLLM_OK && s.env.rank == 0)
        st = cllm_error(CLLM_ERR_INVALID_ARG, "`cllm worker` runs ranks > 0 of a distributed launch; this process is "
                        "rank 0 of %d (launcher %s)", s.env.world_size, s.env.launcher);
    /* A job's end (scancel, a Slurm time limit, mpirun's or systemd's stop) sends SIGTERM to every rank at once;
     * rank 0 then finishes its in-flight requests and tells the workers to shut down, so a worker keeps serving
     * until then, or until rank 0's connection closes (a launcher's SIGKILL ends it otherwise). */
    if (st == CLLM_OK) signal(SIGTERM, SIG_IGN);
    if (st == CLLM_OK) {
        cllm_dist_worker_bind_parent(&s.env);
        const char *t = getenv("CLLM_DIST_TIMEOUT");
        double boot = t && atof(t) > 0 ? atof(t) : BOOTSTRAP_TIMEOUT_S;
        st = cllm_comm_tcp_create_world(&s.env, boot, &s.world);
    }
    if (st == CLLM_OK) {
        cllm_comm_set_timeout(s.world, CLLM_PROTO_SETUP_TIMEOUT_S);
        st = load(&s);
    }
    bool done = false;
    while (st == CLLM_OK && !done) {
        cllm_comm_set_timeout(s.world, 0); /* an idle server: wait for rank 0 as long as it lives */
        st = cllm_proto_recv(s.world, &s.m);
        if (st != CLLM_OK) break;
        cllm_comm_set_timeout(s.world, s.timeout_s);
        st = run_cmd(&s, &done);
    }
    int rc = 0;
    if (st != CLLM_OK) {
        fprintf(stderr, "cllm worker rank %d (%s): error: %s\n", s.env.rank, cllm_dist_hostname(), cllm_last_error());
        rc = 1;
        if (s.world) cllm_comm_abort(s.world, "a worker failed");
    }
    cllm_worker_destroy(s.w);
    cllm_comm_destroy(s.world);
    cllm_proto_msg_free(&s.m);
    free(s.bt);
    free(s.dir);
    return rc;
}
