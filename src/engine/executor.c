/* Executor: rank 0's worker plus the command channel to the other ranks'
 * worker processes (see executor.h; the workers' side is worker_main.c). */
#include "engine/executor.h"
#include "core/status.h"
#include "dist/dist_env.h"
#include "dist/watchdog.h"
#include "engine/executor_proto.h"
#include "engine/worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DIST_TIMEOUT_S 60.0

struct cllm_executor {
    int world_size, block_size;
    int tp_size, pp_size;
    int num_experts;           /* of the model (0: dense) */
    cllm_dist_env env;
    cllm_comm *world;          /* TCP, every rank; NULL with one rank */
    cllm_watchdog *wd;
    cllm_worker *w;            /* rank 0's */
    cllm_runner *r;            /* borrowed from w */
    bool device_group;         /* the forward's group is NCCL: time steps with the watchdog */
    double timeout_s;
    void *msg;                 /* packed batch */
    size_t msg_cap;
    pthread_mutex_t mu;
    bool broken;
    cllm_status broken_st;
    char broken_msg[1024];
};

/* ------------------------------------------------------------ failure */

static cllm_status fail_broken(const cllm_executor *ex) {
    return cllm_error(ex->broken_st, "the distributed engine failed earlier and cannot run: %s", ex->broken_msg);
}

/* A failure after the workers were told to run: the ranks may have diverged,
 * so the executor stops for good (the communicators are aborted, the workers
 * see it and exit). Returns st with its message kept. */
static cllm_status break_executor(cllm_executor *ex, cllm_status st) {
    pthread_mutex_lock(&ex->mu);
    if (!ex->broken) {
        ex->broken = true;
        ex->broken_st = st == CLLM_ERR_DISTRIBUTED ? st : CLLM_ERR_DISTRIBUTED;
        snprintf(ex->broken_msg, sizeof ex->broken_msg, "%s", cllm_last_error());
    }
    pthread_mutex_unlock(&ex->mu);
    if (ex->world) cllm_comm_abort(ex->world, ex->broken_msg);
    cllm_comm *tp = ex->w ? cllm_worker_tp_group(ex->w) : NULL;
    if (tp && tp != ex->world) cllm_comm_abort(tp, ex->broken_msg);
    cllm_comm *pp = ex->w ? cllm_worker_pp_group(ex->w) : NULL;
    if (pp && pp != ex->world) cllm_comm_abort(pp, ex->broken_msg);
    CLLM_LOG_W("distributed engine stopped: %s", ex->broken_msg);
    return cllm_error(ex->broken_st, "%s", ex->broken_msg);
}

cllm_status cllm_executor_check_health(const cllm_executor *ex) {
    cllm_executor *m = (cllm_executor *)ex;
    pthread_mutex_lock(&m->mu);
    bool broken = m->broken;
    pthread_mutex_unlock(&m->mu);
    if (broken) return fail_broken(ex);
    if (ex->wd) return cllm_watchdog_status(ex->wd);
    return CLLM_OK;
}

/* Before a command: a failure recorded by the watchdog breaks the executor. */
static cllm_status ready(cllm_executor *ex) {
    if (ex->broken) return fail_broken(ex);
    if (ex->wd && cllm_watchdog_status(ex->wd) != CLLM_OK) return break_executor(ex, CLLM_ERR_DISTRIBUTED);
    return CLLM_OK;
}

static cllm_status check_children(void *user) { return cllm_dist_check_children((cllm_dist_env *)user); }

/* ------------------------------------------------------------ create */

static cllm_status start_world(cllm_executor *ex, const cllm_executor_params *p) {
    const cllm_model_params *mp = p->model;
    int tp = ex->world_size; /* all the ranks: tensor_parallel_size x pipeline_parallel_size */
    CLLM_TRY(cllm_dist_env_detect(&ex->env));
    if (ex->env.world_size == 1 && mp->device == CLLM_DEVICE_CUDA) { /* one GPU per rank on this node */
        int n = cllm_backend_cuda_device_count();
        if (n < tp)
            return cllm_error(CLLM_ERR_INVALID_ARG,
                              "%d ranks (--tensor-parallel-size %d x --pipeline-parallel-size %d) need %d CUDA devices "
                              "on this node (one per rank), %d visible; use fewer ranks or launch across nodes "
                              "(docs/distributed.md)",
                              tp, ex->tp_size, ex->pp_size, tp, n);
    }
    if (ex->env.world_size == 1) { /* no launcher: start the workers ourselves */
        char *argv[] = {"cllm", "worker", NULL};
        CLLM_TRY(cllm_dist_launch_local(&ex->env, tp, NULL, argv));
        CLLM_LOG_I("started %d worker processes (tensor_parallel_size %d x pipeline_parallel_size %d)", tp - 1,
                   ex->tp_size, ex->pp_size);
    } else if (ex->env.world_size != tp) {
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "launched as %d ranks (%s) but --tensor-parallel-size x --pipeline-parallel-size is %d; they "
                          "must be equal (data parallelism runs one engine per replica behind a router)",
                          ex->env.world_size, ex->env.launcher, tp);
    } else if (ex->env.rank != 0) {
        return cllm_error(CLLM_ERR_INTERNAL, "rank %d tried to drive the engine (only rank 0 does)", ex->env.rank);
    }
    CLLM_TRY(cllm_comm_tcp_create_world(&ex->env, ex->timeout_s > 0 ? ex->timeout_s : DEFAULT_DIST_TIMEOUT_S,
                                        &ex->world));
    cllm_comm_set_timeout(ex->world, CLLM_PROTO_SETUP_TIMEOUT_S);
    cllm_proto_init in;
    memset(&in, 0, sizeof in);
    in.magic = CLLM_PROTO_MAGIC;
    in.layout_bytes = (uint32_t)sizeof in;
    snprintf(in.model, sizeof in.model, "%s", mp->model);
    snprintf(in.revision, sizeof in.revision, "%s", mp->revision ? mp->revision : "main");
    in.device = mp->device, in.dtype = mp->dtype, in.load_format = mp->load_format;
    in.block_size = mp->block_size, in.num_threads = mp->num_threads, in.seed = mp->seed;
    in.tensor_parallel_size = ex->tp_size, in.dist_timeout_s = ex->timeout_s;
    in.pipeline_parallel_size = ex->pp_size, in.pp_micro_batches = mp->pp_micro_batches;
    in.enable_expert_parallel = mp->enable_expert_parallel;
    in.kv_cache_dtype = mp->kv_cache_dtype;
    in.quantization = mp->quantization;
    snprintf(in.pp_layer_partition, sizeof in.pp_layer_partition, "%s",
             mp->pp_layer_partition ? mp->pp_layer_partition : "");
    in.max_model_len = p->max_model_len, in.max_num_seqs = p->max_num_seqs, in.num_kv_blocks = p->num_kv_blocks;
    return cllm_comm_broadcast(ex->world, &in, sizeof in, CLLM_DTYPE_U8, 0);
}

cllm_status cllm_executor_create(const cllm_executor_params *p, cllm_executor **out) {
    *out = NULL;
    const cllm_model_params *mp = p->model;
    int tps = mp->tensor_parallel_size > 0 ? mp->tensor_parallel_size : 1;
    int pps = mp->pipeline_parallel_size > 0 ? mp->pipeline_parallel_size : 1;
    int tp = tps * pps; /* the world */
    if (tp > CLLM_DIST_MAX_LOCAL)
        return cllm_error(CLLM_ERR_INVALID_ARG, "tensor_parallel_size x pipeline_parallel_size = %d is larger than %d",
                          tp, CLLM_DIST_MAX_LOCAL);
    cllm_executor *ex = calloc(1, sizeof *ex);
    if (!ex) return cllm_error(CLLM_ERR_OOM, "out of memory");
    pthread_mutex_init(&ex->mu, NULL);
    ex->world_size = tp;
    ex->num_experts = p->cfg->num_experts;
    ex->tp_size = tps;
    ex->pp_size = pps;
    ex->block_size = mp->block_size;
    ex->timeout_s = mp->dist_timeout_s > 0 ? mp->dist_timeout_s : DEFAULT_DIST_TIMEOUT_S;
    ex->env.listen_fd = -1;
    cllm_status st = CLLM_OK;
    if (tp == 1) { /* a launcher's ranks with no parallel layout to fill: say so instead of leaving them waiting */
        CLLM_TRY_GOTO(st, cllm_dist_env_detect(&ex->env), fail);
        if (ex->env.world_size > 1) {
            st = cllm_error(CLLM_ERR_INVALID_ARG,
                            "launched as %d ranks (%s) but --tensor-parallel-size and --pipeline-parallel-size are 1; "
                            "pass sizes whose product is %d (e.g. --tensor-parallel-size %d)",
                            ex->env.world_size, ex->env.launcher, ex->env.world_size, ex->env.world_size);
            goto fail;
        }
    }
    if (tp > 1) {
        /* only the shards differ between ranks; a malformed config fails here, before any process starts */
        cllm_shard probe;
        CLLM_TRY_GOTO(st, cllm_shard_init(p->cfg, 0, tps, 0, pps, mp->pp_layer_partition, mp->enable_expert_parallel,
                                          &probe), fail);
        CLLM_TRY_GOTO(st, start_world(ex, p), fail);
    }
    cllm_worker_params wp = {
        .model = mp, .model_dir = p->model_dir, .cfg = p->cfg, .max_model_len = p->max_model_len,
        .max_num_seqs = p->max_num_seqs, .num_kv_blocks = p->num_kv_blocks, .rank = 0, .tp_size = tps,
        .pp_size = pps, .pp_layer_partition = mp->pp_layer_partition, .pp_micro_batches = mp->pp_micro_batches,
        .cuda_device = tp > 1 ? ex->env.cuda_device : mp->device_id, .world = ex->world,
        .timeout_s = CLLM_PROTO_SETUP_TIMEOUT_S, .local_world_size = tp > 1 ? ex->env.local_world_size : 1,
    };
    st = cllm_worker_create(&wp, &ex->w);
    if (tp > 1) {
        /* every rank reports its load; the first failure (rank 0's or a worker's) is the error */
        cllm_status all = cllm_proto_gather_status(ex->world, st);
        if (st == CLLM_OK) st = all;
        if (st != CLLM_OK) goto fail;
    } else {
        if (st != CLLM_OK) goto fail;
        CLLM_LOG_D("peak host RSS after loading the model (MiB): %.0f", cllm_worker_peak_rss_bytes() / 1048576.0);
    }
    ex->r = cllm_worker_runner(ex->w);
    if (tp > 1) {
        uint64_t *peak_rss = NULL;
        CLLM_TRY_GOTO(st, cllm_worker_gather_peak_rss(ex->world, &peak_rss), fail);
        char rss[512];
        size_t len = 0;
        for (int i = 0; i < tp && len + 24 < sizeof rss; i++)
            len += (size_t)snprintf(rss + len, sizeof rss - len, "%s%.0f", i ? ", " : "", peak_rss[i] / 1048576.0);
        free(peak_rss);
        cllm_comm *tpg = cllm_worker_tp_group(ex->w);
        ex->device_group = tpg && cllm_comm_is_device(tpg);
        CLLM_TRY_GOTO(st, cllm_watchdog_create(ex->timeout_s, &ex->wd), fail);
        cllm_watchdog_add_comm(ex->wd, ex->world);
        if (tpg && tpg != ex->world) cllm_watchdog_add_comm(ex->wd, tpg);
        cllm_comm *ppg = cllm_worker_pp_group(ex->w);
        if (ppg && ppg != ex->world) cllm_watchdog_add_comm(ex->wd, ppg);
        if (ppg && cllm_comm_is_device(ppg)) ex->device_group = true;
        if (ex->env.num_children > 0) cllm_watchdog_add_check(ex->wd, check_children, &ex->env);
        cllm_comm_set_timeout(ex->world, ex->timeout_s);
        CLLM_LOG_I("tensor parallel %d x pipeline parallel %d: %d ranks (%s launch, %s), rank 0 on %s; peak host "
                   "RSS per rank after loading its shard (MiB): %s", tps, pps, tp, ex->env.launcher,
                   tpg ? cllm_comm_transport(tpg) : cllm_comm_transport(ex->world), cllm_dist_hostname(), rss);
    }
    *out = ex;
    return CLLM_OK;
fail:
    if (ex->world) cllm_comm_abort(ex->world, "rank 0 failed to start the engine"); /* the workers exit */
    cllm_executor_destroy(ex);
    return st;
}

void cllm_executor_destroy(cllm_executor *ex) {
    if (!ex) return;
    if (ex->world && !ex->broken && !cllm_comm_is_broken(ex->world) && (!ex->wd || cllm_watchdog_status(ex->wd) == CLLM_OK)) {
        cllm_comm_set_timeout(ex->world, 5.0);
        (void)cllm_proto_send(ex->world, CLLM_CMD_SHUTDOWN, NULL, NULL, 0);
    }
    cllm_watchdog_destroy(ex->wd);
    cllm_worker_destroy(ex->w);
    cllm_comm_destroy(ex->world);
    if (ex->env.num_children > 0) cllm_dist_reap_children(&ex->env, 10.0);
    cllm_dist_env_close(&ex->env);
    free(ex->msg);
    pthread_mutex_destroy(&ex->mu);
    free(ex);
}

/* ----------------------------------------------------------- commands */

/* Send a command to the workers (world > 1); a failure breaks the executor. */
static cllm_status send_cmd(cllm_executor *ex, uint32_t cmd, const int64_t *arg, const void *payload, size_t n) {
    cllm_status st = cllm_proto_send(ex->world, cmd, arg, payload, n);
    return st == CLLM_OK ? st : break_executor(ex, st);
}

/* After a setup command: every rank's status; a failure breaks the executor. */
static cllm_status finish_setup(cllm_executor *ex, cllm_status st) {
    cllm_status all = cllm_proto_gather_status(ex->world, st);
    if (st == CLLM_OK) st = all;
    return st == CLLM_OK ? st : break_executor(ex, st);
}

cllm_status cllm_executor_execute_ex(cllm_executor *ex, const cllm_batch_host *b, const cllm_runner_sample_args *a,
                                     int32_t *tokens_out, float *logits_out) {
    if (!ex->world) return cllm_runner_execute_ex(ex->r, b, a, tokens_out, logits_out);
    CLLM_TRY(ready(ex));
    CLLM_TRY(cllm_runner_check_batch(ex->r, b)); /* a bad batch is the caller's error, the workers never see it */
    size_t n = 0;
    CLLM_TRY(cllm_proto_pack_batch(b, ex->block_size, &ex->msg, &ex->msg_cap, &n));
    cllm_runner_sample_args a2 = {.logprobs_k = -1};
    if (a) a2 = *a;
    int64_t arg[8] = {0};
    if (a2.penalties) { /* rank 0 alone applies penalties, eagerly: the workers run eagerly too */
        a2.no_graph = true;
        arg[0] = CLLM_EXEC_NO_GRAPH;
    }
    if (ex->device_group) cllm_watchdog_begin(ex->wd, "engine step (forward with NCCL collectives)");
    cllm_status st = send_cmd(ex, CLLM_CMD_EXECUTE, arg, ex->msg, n);
    if (st == CLLM_OK) st = cllm_runner_execute_ex(ex->r, b, &a2, tokens_out, logits_out);
    if (ex->device_group) cllm_watchdog_end(ex->wd);
    if (st != CLLM_OK) {
        /* the watchdog's reason (a dead rank, a timeout) says more than the aborted call */
        if (ex->wd && cllm_watchdog_status(ex->wd) != CLLM_OK) return break_executor(ex, CLLM_ERR_DISTRIBUTED);
        return ex->broken ? st : break_executor(ex, st);
    }
    return CLLM_OK;
}

cllm_status cllm_executor_execute(cllm_executor *ex, const cllm_batch_host *b, const cllm_sample_params *sp,
                                  int32_t *tokens_out, float *logits_out) {
    cllm_runner_sample_args a = {.sp = sp, .logprobs_k = -1};
    return cllm_executor_execute_ex(ex, b, &a, tokens_out, logits_out);
}

cllm_status cllm_executor_logprobs_rows(cllm_executor *ex, int row0, int n, const int32_t *tokens, int k,
                                        float *token_logprobs, int32_t *top_ids, float *top_logprobs) {
    if (ex->world) CLLM_TRY(ready(ex));
    return cllm_runner_logprobs_rows(ex->r, row0, n, tokens, k, token_logprobs, top_ids, top_logprobs);
}

cllm_status cllm_executor_copy_blocks(cllm_executor *ex, const cllm_kv_copy *pairs, int n) {
    if (n <= 0) return CLLM_OK;
    if (!ex->world) return cllm_runner_copy_blocks(ex->r, pairs, n);
    CLLM_TRY(ready(ex));
    int64_t arg[8] = {n};
    CLLM_TRY(send_cmd(ex, CLLM_CMD_COPY_BLOCKS, arg, pairs, (size_t)n * sizeof *pairs));
    cllm_status st = cllm_runner_copy_blocks(ex->r, pairs, n);
    return st == CLLM_OK ? st : break_executor(ex, st);
}

cllm_status cllm_executor_available_blocks(cllm_executor *ex, int max_num_batched_tokens, int max_num_seqs,
                                           float gpu_memory_utilization, int *blocks) {
    if (!ex->world)
        return cllm_worker_available_blocks(ex->w, max_num_batched_tokens, max_num_seqs, gpu_memory_utilization,
                                            blocks);
    CLLM_TRY(ready(ex));
    int64_t arg[8] = {max_num_batched_tokens, max_num_seqs, (int64_t)(gpu_memory_utilization * 1e6)};
    CLLM_TRY(send_cmd(ex, CLLM_CMD_AVAILABLE_BLOCKS, arg, NULL, 0));
    cllm_comm_set_timeout(ex->world, CLLM_PROTO_SETUP_TIMEOUT_S);
    int mine = 0;
    cllm_status st = cllm_worker_available_blocks(ex->w, max_num_batched_tokens, max_num_seqs,
                                                  (float)arg[2] / 1e6f, &mine);
    CLLM_TRY(finish_setup(ex, st));
    int32_t v = mine, mn = 0;
    st = cllm_comm_all_reduce(ex->world, &v, &mn, 1, CLLM_DTYPE_I32, CLLM_REDUCE_MIN);
    cllm_comm_set_timeout(ex->world, ex->timeout_s);
    if (st != CLLM_OK) return break_executor(ex, st);
    *blocks = mn;
    return CLLM_OK;
}

/* A setup command with no payload and one argument, run on every rank. */
static cllm_status setup_cmd(cllm_executor *ex, uint32_t cmd, int64_t arg0) {
    CLLM_TRY(ready(ex));
    int64_t arg[8] = {arg0};
    CLLM_TRY(send_cmd(ex, cmd, arg, NULL, 0));
    cllm_comm_set_timeout(ex->world, CLLM_PROTO_SETUP_TIMEOUT_S);
    cllm_status st;
    switch (cmd) {
    case CLLM_CMD_RESIZE_KV: st = cllm_runner_resize_kv(ex->r, (int)arg0); break;
    case CLLM_CMD_RESERVE_GRAPHS: st = cllm_runner_reserve_graph_buffers(ex->r); break;
    default: st = cllm_runner_capture_graphs(ex->r); break;
    }
    st = finish_setup(ex, st);
    cllm_comm_set_timeout(ex->world, ex->timeout_s);
    return st;
}

cllm_status cllm_executor_resize_kv(cllm_executor *ex, int num_blocks) {
    if (!ex->world) return cllm_runner_resize_kv(ex->r, num_blocks);
    return setup_cmd(ex, CLLM_CMD_RESIZE_KV, num_blocks);
}

cllm_status cllm_executor_reserve_graph_buffers(cllm_executor *ex) {
    if (!ex->world) return cllm_runner_reserve_graph_buffers(ex->r);
    return setup_cmd(ex, CLLM_CMD_RESERVE_GRAPHS, 0);
}

cllm_status cllm_executor_capture_graphs(cllm_executor *ex) {
    if (!ex->world) return cllm_runner_capture_graphs(ex->r);
    return setup_cmd(ex, CLLM_CMD_CAPTURE_GRAPHS, 0);
}

cllm_runner *cllm_executor_runner(cllm_executor *ex) { return ex->r; }
double cllm_executor_weights_ms(const cllm_executor *ex) { return cllm_worker_weights_ms(ex->w); }

cllm_status cllm_executor_dist_stats(cllm_executor *ex, cllm_comm_stats **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!ex->world) return CLLM_OK;
    CLLM_TRY(ready(ex));
    CLLM_TRY(send_cmd(ex, CLLM_CMD_STATS, NULL, NULL, 0));
    cllm_comm_stats *all = NULL;
    cllm_status st = cllm_worker_gather_comm_stats(ex->world, ex->w, &all);
    if (st != CLLM_OK) return break_executor(ex, st);
    int k = 0;
    for (int i = 0; i < ex->world_size * CLLM_WORKER_STATS; i++)
        if (all[i].name[0]) all[k++] = all[i];
    *out = all;
    *n = k;
    return CLLM_OK;
}

cllm_status cllm_executor_expert_stats(cllm_executor *ex, uint64_t **per_expert, int *num_experts, uint64_t **per_rank,
                                       int *num_ranks) {
    *per_expert = *per_rank = NULL;
    *num_experts = *num_ranks = 0;
    int NE = ex->num_experts, W = ex->world_size;
    if (NE <= 0) return CLLM_OK;
    uint64_t *all = NULL; /* (W, NE + 1): each rank's routed counts, then its computed rows */
    if (ex->world) {
        CLLM_TRY(ready(ex));
        CLLM_TRY(send_cmd(ex, CLLM_CMD_EXPERT_STATS, NULL, NULL, 0));
        cllm_status st = cllm_worker_gather_expert_stats(ex->world, ex->w, NE, &all);
        if (st != CLLM_OK) return break_executor(ex, st);
    } else {
        if (!(all = calloc((size_t)NE + 1, sizeof *all))) return cllm_error(CLLM_ERR_OOM, "out of memory");
        cllm_runner_expert_stats(ex->r, all, all + NE);
    }
    uint64_t *pe = calloc((size_t)NE, sizeof *pe), *pr = calloc((size_t)W, sizeof *pr);
    if (!pe || !pr) {
        free(all), free(pe), free(pr);
        return cllm_error(CLLM_ERR_OOM, "out of memory");
    }
    /* without expert parallelism every tensor-parallel rank routes every token: count each stage once */
    const cllm_shard *sh = cllm_runner_shard(ex->r);
    for (int r = 0; r < W; r++) {
        uint64_t *v = all + (size_t)r * (NE + 1);
        pr[r] = v[NE];
        if (sh->ep_size > 1 || r % ex->tp_size == 0)
            for (int e = 0; e < NE; e++) pe[e] += v[e];
    }
    free(all);
    *per_expert = pe, *num_experts = NE, *per_rank = pr, *num_ranks = W;
    return CLLM_OK;
}
