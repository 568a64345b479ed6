/* Worker: one rank's backend, groups and model runner (see worker.h). */
#include "engine/worker.h"
#include "core/clock.h"
#include "core/dtype.h"
#include "core/status.h"
#include "model/shard.h"
#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct cllm_worker {
    cllm_runner *runner;      /* owns the backend */
    cllm_comm *tp_host;       /* TCP tensor-parallel group split from the world (NULL: tp 1) */
    cllm_comm *tp_nccl;       /* NCCL group over tp_host on CUDA */
    cllm_comm *pp_host;       /* TCP pipeline group: the ranks of this tp rank, one per stage (NULL: pp 1) */
    cllm_comm *pp_nccl;
    int max_model_len;
    double weights_ms;
};

size_t cllm_worker_peak_rss_bytes(void) {
    /* VmHWM: the high-water mark of this process image. getrusage's ru_maxrss also keeps the peak of the
     * image before exec (a worker forked from a large process, e.g. Python, would report its parent's). */
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned long kb = 0;
        bool found = false;
        while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "VmHWM: %lu kB", &kb) == 1;
        fclose(f);
        if (found) return (size_t)kb * 1024;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux: kilobytes */
}

void cllm_worker_destroy(cllm_worker *w) {
    if (!w) return;
    cllm_runner_destroy(w->runner); /* before the groups its forward borrowed */
    cllm_comm_destroy(w->tp_nccl);
    cllm_comm_destroy(w->pp_nccl);
    cllm_comm_destroy(w->tp_host);
    cllm_comm_destroy(w->pp_host);
    free(w);
}

static cllm_status check_dtype(const cllm_model_params *p, const cllm_backend *be) {
    if (p->dtype == CLLM_DTYPE_AUTO || p->dtype == be->act) return CLLM_OK;
    return cllm_error(CLLM_ERR_UNSUPPORTED, "dtype %s is not supported on the %s backend; it runs %s (use --dtype auto)",
                      cllm_dtype_name(p->dtype), be->ops->name, cllm_dtype_name(be->act));
}

cllm_status cllm_worker_create(const cllm_worker_params *p, cllm_worker **out) {
    *out = NULL;
    const cllm_model_params *mp = p->model;
    cllm_status st = CLLM_OK;
    cllm_backend *be = NULL;
    cllm_weights *wts = NULL;
    cllm_worker *w = calloc(1, sizeof *w);
    if (!w) return cllm_error(CLLM_ERR_OOM, "out of memory");
    w->max_model_len = p->max_model_len;
    cllm_shard shard;
    int tps = p->tp_size > 0 ? p->tp_size : 1, pps = p->pp_size > 0 ? p->pp_size : 1;
    int tp_rank = p->rank % tps, pp_rank = p->rank / tps;
    CLLM_TRY_GOTO(st, cllm_shard_init(p->cfg, tp_rank, tps, pp_rank, pps, p->pp_layer_partition,
                                      mp->enable_expert_parallel, &shard), fail);
    if ((tps > 1 || pps > 1) && !p->world) {
        st = cllm_error(CLLM_ERR_INVALID_ARG, "worker: %d x %d ranks without a world group", tps, pps);
        goto fail;
    }
    /* tensor-parallel groups: the ranks of one stage; pipeline groups: one rank per stage (vLLM's layout) */
    if (tps > 1) CLLM_TRY_GOTO(st, cllm_comm_split(p->world, pp_rank, tp_rank, "tp", &w->tp_host), fail);
    if (pps > 1) CLLM_TRY_GOTO(st, cllm_comm_split(p->world, tp_rank, pp_rank, "pp", &w->pp_host), fail);
    if (mp->device == CLLM_DEVICE_CUDA && tps * pps > 1 && p->cuda_device >= cllm_backend_cuda_device_count()) {
        st = cllm_error(CLLM_ERR_INVALID_ARG,
                        "rank %d uses CUDA device %d (its local rank) but this node has %d visible; start at most one "
                        "rank per GPU on each node",
                        p->rank, p->cuda_device, cllm_backend_cuda_device_count());
        goto fail;
    }
    if (mp->device == CLLM_DEVICE_CUDA) CLLM_TRY_GOTO(st, cllm_backend_cuda_create(p->cuda_device, &be), fail);
    else {
        int threads = mp->num_threads;
        if (threads == 0 && p->local_world_size > 1) { /* ranks of one node share its cores, not oversubscribe them */
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            threads = cores > p->local_world_size ? (int)(cores / p->local_world_size) : 1;
        }
        CLLM_TRY_GOTO(st, cllm_backend_cpu_create(threads, &be), fail);
    }
    CLLM_TRY_GOTO(st, check_dtype(mp, be), fail);
    if (w->tp_host && mp->device == CLLM_DEVICE_CUDA)
        CLLM_TRY_GOTO(st, cllm_comm_nccl_create(w->tp_host, p->cuda_device, cllm_backend_native_stream(be), "tp",
                                                p->timeout_s, &w->tp_nccl), fail);
    if (w->pp_host && mp->device == CLLM_DEVICE_CUDA)
        CLLM_TRY_GOTO(st, cllm_comm_nccl_create(w->pp_host, p->cuda_device, cllm_backend_native_stream(be), "pp",
                                                p->timeout_s, &w->pp_nccl), fail);

    double t0 = cllm_now_ms();
    if (mp->load_format == CLLM_LOAD_DUMMY) {
        cllm_dtype dt = p->cfg->torch_dtype;
        if (dt != CLLM_DTYPE_F32 && dt != CLLM_DTYPE_BF16 && dt != CLLM_DTYPE_F16) dt = be->act;
        CLLM_TRY_GOTO(st, cllm_weights_create_dummy(mp->seed, dt, &wts), fail);
    } else {
        CLLM_TRY_GOTO(st, cllm_weights_open(p->model_dir, &wts), fail);
    }
    cllm_runner_params rp = {
        .cfg = p->cfg, .backend = be, .weights = wts, .block_size = mp->block_size, .num_kv_blocks = p->num_kv_blocks,
        .max_model_len = p->max_model_len, .max_num_seqs = p->max_num_seqs, .progress = mp->progress && p->rank == 0,
        .shard = &shard, .tp = w->tp_nccl ? w->tp_nccl : w->tp_host, .pp = w->pp_nccl ? w->pp_nccl : w->pp_host,
        .pp_micro_batches = p->pp_micro_batches, .kv_cache_dtype = mp->kv_cache_dtype,
        .quantize_fp8 = mp->quantization == CLLM_QUANTIZATION_FP8,
    };
    CLLM_TRY_GOTO(st, cllm_runner_create(&rp, &w->runner), fail);
    be = NULL; /* owned by the runner */
    cllm_weights_destroy(wts);
    wts = NULL;
    w->weights_ms = cllm_now_ms() - t0;
    *out = w;
    return CLLM_OK;
fail:
    cllm_weights_destroy(wts);
    cllm_backend_destroy(be);
    cllm_worker_destroy(w);
    return st;
}

cllm_runner *cllm_worker_runner(cllm_worker *w) { return w->runner; }

/* All-gather this rank's n bytes at mine into a new (world size, n) array:
 * *all, or freed when all is NULL. */
static cllm_status gather(cllm_comm *world, const void *mine, size_t n, void **all) {
    void *buf = malloc(n * (size_t)cllm_comm_size(world));
    if (!buf) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_status st = cllm_comm_all_gather(world, mine, buf, n, CLLM_DTYPE_U8);
    if (st != CLLM_OK || !all) {
        free(buf);
        buf = NULL;
    }
    if (all) *all = buf;
    return st;
}

cllm_status cllm_worker_gather_peak_rss(cllm_comm *world, uint64_t **all) {
    uint64_t mine = cllm_worker_peak_rss_bytes();
    return gather(world, &mine, sizeof mine, (void **)all);
}

cllm_status cllm_worker_gather_comm_stats(cllm_comm *world, cllm_worker *w, cllm_comm_stats **all) {
    cllm_comm_stats mine[CLLM_WORKER_STATS];
    memset(mine, 0, sizeof mine);
    cllm_comm *c[CLLM_WORKER_STATS] = {world, w->tp_host, w->tp_nccl, w->pp_host, w->pp_nccl};
    for (int i = 0; i < CLLM_WORKER_STATS; i++)
        if (c[i]) cllm_comm_get_stats(c[i], &mine[i]);
    return gather(world, mine, sizeof mine, (void **)all);
}

cllm_status cllm_worker_gather_expert_stats(cllm_comm *world, cllm_worker *w, int num_experts, uint64_t **all) {
    uint64_t *mine = calloc((size_t)num_experts + 1, sizeof *mine);
    if (!mine) return cllm_error(CLLM_ERR_OOM, "out of memory");
    cllm_runner_expert_stats(w->runner, mine, mine + num_experts);
    cllm_status st = gather(world, mine, sizeof *mine * ((size_t)num_experts + 1), (void **)all);
    free(mine);
    return st;
}
cllm_comm *cllm_worker_tp_group(cllm_worker *w) { return w->tp_nccl ? w->tp_nccl : w->tp_host; }
cllm_comm *cllm_worker_pp_group(cllm_worker *w) { return w->pp_nccl ? w->pp_nccl : w->pp_host; }
double cllm_worker_weights_ms(const cllm_worker *w) { return w->weights_ms; }

/* CPU: max_num_seqs * max_model_len tokens, capped at a quarter of the
 * host's memory (at least one sequence). */
static int cpu_blocks(cllm_worker *w, int max_num_seqs) {
    cllm_runner *r = w->runner;
    int P = cllm_runner_block_size(r), per_seq = (w->max_model_len + P - 1) / P;
    int64_t want = (int64_t)max_num_seqs * per_seq;
    size_t fr = 0, tot = 0, bpb = cllm_runner_kv_bytes_per_block(r);
    if (cllm_runner_mem_info(r, &fr, &tot) == CLLM_OK && bpb > 0) {
        int64_t cap = (int64_t)(tot / 4 / bpb);
        if (want > cap) want = cap;
    }
    if (want < per_seq + 1) want = per_seq + 1;
    if (want > (1 << 24)) want = 1 << 24;
    return (int)want;
}

/* CUDA: a forward pass at the largest batch, then what is left of
 * total * gpu_memory_utilization goes to the KV cache. */
static cllm_status profile_blocks(cllm_worker *w, int T, int max_num_seqs, float util, int *out_blocks) {
    cllm_runner *r = w->runner;
    int P = cllm_runner_block_size(r), L = w->max_model_len, per_seq = (L + P - 1) / P;
    int S = (T + L - 1) / L;
    if (S < 1) S = 1;
    int NL = max_num_seqs < T ? max_num_seqs : T;
    cllm_status st = CLLM_OK;
    cllm_batch_host b = {0};
    int32_t *ids = calloc((size_t)T, 4), *pos = calloc((size_t)T, 4), *slot = calloc((size_t)T, 4);
    int32_t *qsl = calloc((size_t)S + 1, 4), *lens = calloc((size_t)S, 4), *bt = calloc((size_t)S * per_seq, 4);
    int32_t *lidx = calloc((size_t)NL, 4), *tok = calloc((size_t)NL, 4);
    cllm_sample_params *sp = calloc((size_t)NL, sizeof *sp);
    if (!ids || !pos || !slot || !qsl || !lens || !bt || !lidx || !tok || !sp) {
        st = cllm_error(CLLM_ERR_OOM, "out of host memory for the profiling batch");
        goto done;
    }
    for (int s = 0; s < S; s++) {
        int a = s * L, n = (s + 1) * L < T ? L : T - a;
        qsl[s] = a;
        qsl[s + 1] = a + n;
        lens[s] = n;
        for (int j = 0; j < per_seq; j++) bt[(size_t)s * per_seq + j] = j % cllm_runner_num_kv_blocks(r);
        for (int i = 0; i < n; i++) pos[a + i] = i, slot[a + i] = -1; /* no KV writes */
    }
    for (int i = 0; i < NL; i++) lidx[i] = T - 1 - i, sp[i].temperature = 1.0f, sp[i].top_p = 1.0f, sp[i].top_k = -1;
    b.num_seqs = S, b.num_tokens = T, b.token_ids = ids, b.positions = pos, b.query_start_loc = qsl;
    b.seq_lens = lens, b.block_tables = bt, b.max_blocks_per_seq = per_seq, b.slot_mapping = slot;
    b.logits_indices = lidx, b.num_logits = NL;
    CLLM_TRY_GOTO(st, cllm_runner_execute(r, &b, sp, tok, NULL), done);
    size_t fr = 0, tot = 0;
    CLLM_TRY_GOTO(st, cllm_runner_mem_info(r, &fr, &tot), done);
    size_t bpb = cllm_runner_kv_bytes_per_block(r);
    double budget = (double)tot * util - (double)(tot - fr) +
                    (double)bpb * cllm_runner_num_kv_blocks(r); /* the profiling cache is given back */
    int64_t nb = budget > 0 ? (int64_t)(budget / (double)bpb) : 0;
    if (nb < per_seq) {
        st = cllm_error(CLLM_ERR_OOM,
                        "only %lld KV blocks fit in gpu_memory_utilization %.2f of %.1f GiB (one sequence of "
                        "max_model_len %d needs %d); raise gpu_memory_utilization or lower max_model_len / "
                        "max_num_batched_tokens (or raise --tensor-parallel-size)",
                        (long long)nb, util, tot / 1073741824.0, L, per_seq);
        goto done;
    }
    *out_blocks = nb > (1 << 24) ? (1 << 24) : (int)nb;
done:
    free(ids), free(pos), free(slot), free(qsl), free(lens), free(bt), free(lidx), free(tok), free(sp);
    return st;
}

cllm_status cllm_worker_available_blocks(cllm_worker *w, int max_num_batched_tokens, int max_num_seqs,
                                         float gpu_memory_utilization, int *blocks) {
    const char *name = cllm_runner_backend(w->runner)->ops->name;
    if (strcmp(name, "cuda") == 0)
        return profile_blocks(w, max_num_batched_tokens, max_num_seqs, gpu_memory_utilization, blocks);
    *blocks = cpu_blocks(w, max_num_seqs);
    return CLLM_OK;
}
