/* NCCL transport ("nccl"): the collectives on device memory, enqueued on
 * the CUDA stream given at creation; nothing here synchronizes inside a
 * collective, so they can be captured in CUDA graphs. Only barrier, sync and
 * split wait for the stream (by polling, bounded by the timeout).
 *
 * Communicators are non-blocking (ncclConfig_t.blocking = 0, NCCL >= 2.14):
 * a call may return ncclInProgress, and then ncclCommGetAsyncError is polled
 * until it is no longer in progress or the timeout passes, so neither init
 * nor an enqueue can hang the process, and ncclCommAbort from another thread
 * (cllm_comm_abort, the watchdog) can always end it. Every NCCL and CUDA
 * result is checked with file:line in the message.
 *
 * Compiled with the CUDA backend and NCCL found (CLLM_HAVE_NCCL); otherwise
 * cllm_comm_nccl_create says so with CLLM_ERR_NO_DEVICE. */
#include "dist/comm_internal.h"

#include "core/clock.h"
#include "core/status.h"

#include <string.h>

#ifdef CLLM_HAVE_NCCL

#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>

typedef struct nccl_impl {
    ncclComm_t comm;
    cudaStream_t stream; /* borrowed */
    double timeout_s;
    atomic_int aborted;  /* ncclCommAbort done: comm is gone */
    int *scratch;        /* device: 2 * size + 2 ints (split's color/key, barrier) */
} nccl_impl;

static nccl_impl *N(const cllm_comm *c) { return c->impl; }

#define CUDA_CHECK(c, call) cuda_check((c), (call), #call, __FILE__, __LINE__)
#define NCCL_CHECK(c, n, call) nccl_check((c), (n), (call), #call, __FILE__, __LINE__)

static cllm_status cuda_check(const cllm_comm *c, cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return CLLM_OK;
    return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: %s failed at %s:%d: %s", c ? c->world_rank : -1, what, file,
                      line, cudaGetErrorString(e));
}

static cllm_status nccl_fail(const cllm_comm *c, ncclComm_t comm, ncclResult_t r, const char *what,
                             const char *file, int line) {
    const char *detail = comm ? ncclGetLastError(comm) : NULL;
    return cllm_error(CLLM_ERR_DISTRIBUTED,
                      "rank %d: NCCL %s failed at %s:%d: %s%s%s (NCCL_DEBUG=WARN prints NCCL's own account; a "
                      "remote error usually means another rank died: see its log)",
                      c ? c->world_rank : -1, what, file, line, ncclGetErrorString(r), detail && *detail ? ": " : "",
                      detail ? detail : "");
}

/* Poll comm's asynchronous state until it leaves ncclInProgress. */
static cllm_status wait_async(const cllm_comm *c, ncclComm_t comm, const atomic_int *aborted, double timeout_s,
                              const char *what, const char *file, int line) {
    double deadline = cllm_now_s() + timeout_s;
    for (;;) {
        if (aborted && atomic_load(aborted))
            return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: %s: communicator aborted", c ? c->world_rank : -1, what);
        ncclResult_t st = ncclInProgress;
        ncclResult_t r = ncclCommGetAsyncError(comm, &st);
        if (r != ncclSuccess) return nccl_fail(c, comm, r, "ncclCommGetAsyncError", file, line);
        if (st == ncclSuccess) return CLLM_OK;
        if (st != ncclInProgress) return nccl_fail(c, comm, st, what, file, line);
        if (cllm_now_s() > deadline)
            return cllm_error(CLLM_ERR_DISTRIBUTED,
                              "rank %d: NCCL %s did not complete within %.1f s (--dist-timeout) at %s:%d: a rank is "
                              "missing or stuck (NCCL_DEBUG=INFO shows which)",
                              c ? c->world_rank : -1, what, timeout_s, file, line);
        sched_yield();
    }
}

static cllm_status nccl_check(const cllm_comm *c, nccl_impl *n, ncclResult_t r, const char *what, const char *file,
                              int line) {
    if (r == ncclSuccess) return CLLM_OK;
    if (r == ncclInProgress) return wait_async(c, n->comm, &n->aborted, n->timeout_s, what, file, line);
    return nccl_fail(c, n->comm, r, what, file, line);
}

static ncclDataType_t nccl_dtype(cllm_dtype dt) {
    switch (dt) {
    case CLLM_DTYPE_F32: return ncclFloat32;
    case CLLM_DTYPE_BF16: return ncclBfloat16;
    case CLLM_DTYPE_F16: return ncclFloat16;
    case CLLM_DTYPE_I32: return ncclInt32;
    case CLLM_DTYPE_I64: return ncclInt64;
    default: return ncclUint8;
    }
}

static ncclRedOp_t nccl_op(cllm_reduce_op op) {
    return op == CLLM_REDUCE_MAX ? ncclMax : op == CLLM_REDUCE_MIN ? ncclMin : ncclSum;
}

/* ---------------------------------------------------------- collectives */

static cllm_status n_all_reduce(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                cllm_reduce_op op) {
    nccl_impl *n = N(c);
    return NCCL_CHECK(c, n, ncclAllReduce(send, recv, count, nccl_dtype(dt), nccl_op(op), n->comm, n->stream));
}

static cllm_status n_all_gather(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt) {
    nccl_impl *n = N(c);
    return NCCL_CHECK(c, n, ncclAllGather(send, recv, count, nccl_dtype(dt), n->comm, n->stream));
}

static cllm_status n_reduce_scatter(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                    cllm_reduce_op op) {
    nccl_impl *n = N(c);
    return NCCL_CHECK(c, n, ncclReduceScatter(send, recv, count, nccl_dtype(dt), nccl_op(op), n->comm, n->stream));
}

static cllm_status n_broadcast(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int root) {
    nccl_impl *n = N(c);
    return NCCL_CHECK(c, n, ncclBroadcast(buf, buf, count, nccl_dtype(dt), root, n->comm, n->stream));
}

static cllm_status n_send(cllm_comm *c, const void *buf, size_t count, cllm_dtype dt, int peer) {
    nccl_impl *n = N(c);
    return NCCL_CHECK(c, n, ncclSend(buf, count, nccl_dtype(dt), peer, n->comm, n->stream));
}

static cllm_status n_recv(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int peer) {
    nccl_impl *n = N(c);
    return NCCL_CHECK(c, n, ncclRecv(buf, count, nccl_dtype(dt), peer, n->comm, n->stream));
}

static cllm_status n_all_to_allv(cllm_comm *c, const void *send, const size_t *send_counts,
                                 const size_t *send_displs, void *recv, const size_t *recv_counts,
                                 const size_t *recv_displs, cllm_dtype dt) {
    nccl_impl *n = N(c);
    size_t es = cllm_comm_dtype_size(dt);
    ncclDataType_t t = nccl_dtype(dt);
    CLLM_TRY(NCCL_CHECK(c, n, ncclGroupStart()));
    cllm_status st = CLLM_OK;
    for (int p = 0; p < c->size && st == CLLM_OK; p++) {
        if (send_counts[p])
            st = NCCL_CHECK(c, n, ncclSend((const char *)send + send_displs[p] * es, send_counts[p], t, p, n->comm,
                                           n->stream));
        if (st == CLLM_OK && recv_counts[p])
            st = NCCL_CHECK(c, n, ncclRecv((char *)recv + recv_displs[p] * es, recv_counts[p], t, p, n->comm,
                                           n->stream));
    }
    cllm_status end = NCCL_CHECK(c, n, ncclGroupEnd()); /* always close the group */
    return st != CLLM_OK ? st : end;
}

/* Wait for the stream by polling, bounded by the timeout and the abort
 * flag, watching NCCL's asynchronous errors meanwhile. */
static cllm_status n_sync(cllm_comm *c) {
    nccl_impl *n = N(c);
    double deadline = cllm_now_s() + n->timeout_s;
    for (;;) {
        if (atomic_load(&n->aborted))
            return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: '%s' aborted", c->world_rank, c->name);
        cudaError_t e = cudaStreamQuery(n->stream);
        if (e == cudaSuccess) return CLLM_OK;
        if (e != cudaErrorNotReady) return CUDA_CHECK(c, e);
        ncclResult_t st = ncclSuccess;
        if (ncclCommGetAsyncError(n->comm, &st) == ncclSuccess && st != ncclSuccess && st != ncclInProgress)
            return nccl_fail(c, n->comm, st, "operation (asynchronous error)", __FILE__, __LINE__);
        if (cllm_now_s() > deadline)
            return cllm_error(CLLM_ERR_DISTRIBUTED,
                              "rank %d: the NCCL operations of '%s' (up to seq %llu) did not complete within %.1f s "
                              "(--dist-timeout): a rank is stalled or did not call the same collectives "
                              "(NCCL_DEBUG=INFO, py-spy/gdb on the stuck rank)",
                              c->world_rank, c->name, (unsigned long long)c->seq, n->timeout_s);
        sched_yield();
    }
}

static cllm_status n_barrier(cllm_comm *c) {
    nccl_impl *n = N(c);
    int *one = n->scratch + 2 * c->size;
    CLLM_TRY(NCCL_CHECK(c, n, ncclAllReduce(one, one, 1, ncclInt32, ncclSum, n->comm, n->stream)));
    return n_sync(c);
}

/* ------------------------------------------------------------- groups */

static cllm_status n_gather_color_key(cllm_comm *c, int color, int key, int *ck) {
    nccl_impl *n = N(c);
    int mine[2] = {color, key};
    int *slot = n->scratch + 2 * c->rank;
    CLLM_TRY(CUDA_CHECK(c, cudaMemcpyAsync(slot, mine, sizeof mine, cudaMemcpyHostToDevice, n->stream)));
    CLLM_TRY(NCCL_CHECK(c, n, ncclAllGather(slot, n->scratch, 2, ncclInt32, n->comm, n->stream)));
    CLLM_TRY(CUDA_CHECK(c, cudaMemcpyAsync(ck, n->scratch, sizeof(int) * 2 * (size_t)c->size, cudaMemcpyDeviceToHost,
                                           n->stream)));
    return n_sync(c);
}

/* Make c->impl around comm, which it owns from here on: on failure comm is
 * aborted and c->impl stays NULL. */
static cllm_status impl_alloc(cllm_comm *c, ncclComm_t comm, cudaStream_t stream, double timeout_s) {
    size_t bytes = sizeof(int) * (2 * (size_t)c->size + 2);
    nccl_impl *n = cllm_calloc(1, sizeof *n);
    cllm_status st = n ? CUDA_CHECK(c, cudaMalloc((void **)&n->scratch, bytes)) : CLLM_ERR_OOM;
    if (st == CLLM_OK) st = CUDA_CHECK(c, cudaMemsetAsync(n->scratch, 0, bytes, stream));
    if (st != CLLM_OK) {
        if (n && n->scratch) cudaFree(n->scratch);
        free(n);
        ncclCommAbort(comm);
        return st;
    }
    n->comm = comm;
    n->stream = stream;
    n->timeout_s = timeout_s;
    atomic_init(&n->aborted, 0);
    c->impl = n;
    return CLLM_OK;
}

static cllm_status n_split(cllm_comm *c, int color, int key, cllm_comm *child) {
    nccl_impl *n = N(c);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t nc = NULL;
    ncclResult_t r = ncclCommSplit(n->comm, color, key, &nc, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(c, n->comm, r, "ncclCommSplit", __FILE__, __LINE__);
    cllm_status st = wait_async(c, nc, &n->aborted, n->timeout_s, "ncclCommSplit", __FILE__, __LINE__);
    if (st != CLLM_OK) {
        ncclCommAbort(nc);
        return st;
    }
    return impl_alloc(child, nc, n->stream, n->timeout_s);
}

static cllm_status n_split_none(cllm_comm *c, int key) {
    nccl_impl *n = N(c);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t nc = NULL;
    return NCCL_CHECK(c, n, ncclCommSplit(n->comm, NCCL_SPLIT_NOCOLOR, key, &nc, &cfg));
}

/* ------------------------------------------------- failure and lifetime */

static void n_abort(cllm_comm *c) {
    nccl_impl *n = N(c);
    if (n && n->comm && atomic_exchange(&n->aborted, 1) == 0) ncclCommAbort(n->comm);
}

static cllm_status n_check_health(cllm_comm *c) {
    nccl_impl *n = N(c);
    if (atomic_load(&n->aborted))
        return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: '%s' was aborted", c->world_rank, c->name);
    ncclResult_t st = ncclSuccess, r = ncclCommGetAsyncError(n->comm, &st);
    if (r != ncclSuccess) return nccl_fail(c, n->comm, r, "ncclCommGetAsyncError", __FILE__, __LINE__);
    if (st != ncclSuccess && st != ncclInProgress)
        return nccl_fail(c, n->comm, st, "communicator (asynchronous error)", __FILE__, __LINE__);
    return CLLM_OK;
}

static void n_destroy(cllm_comm *c) {
    nccl_impl *n = N(c);
    if (!n) return;
    if (n->scratch) cudaFree(n->scratch);
    if (n->comm && !atomic_load(&n->aborted)) {
        /* finalize flushes what is still enqueued; if it cannot (a dead
         * peer), abort instead of hanging */
        ncclResult_t r = ncclCommFinalize(n->comm);
        if ((r == ncclSuccess || r == ncclInProgress) &&
            wait_async(c, n->comm, &n->aborted, n->timeout_s, "ncclCommFinalize", __FILE__, __LINE__) == CLLM_OK)
            ncclCommDestroy(n->comm);
        else ncclCommAbort(n->comm);
    }
    free(n);
    c->impl = NULL;
}

static const cllm_comm_vtable g_nccl_vt = {
    .name = "nccl",
    .is_device = true,
    .all_reduce = n_all_reduce,
    .all_gather = n_all_gather,
    .reduce_scatter = n_reduce_scatter,
    .broadcast = n_broadcast,
    .send = n_send,
    .recv = n_recv,
    .all_to_allv = n_all_to_allv,
    .barrier = n_barrier,
    .sync = n_sync,
    .gather_color_key = n_gather_color_key,
    .split = n_split,
    .split_none = n_split_none,
    .abort = n_abort,
    .check_health = n_check_health,
    .destroy = n_destroy,
};

typedef struct id_msg {
    ncclUniqueId id;
    int32_t ok;
    char err[200];
} id_msg;

cllm_status cllm_comm_nccl_create(cllm_comm *host, int cuda_device, void *cuda_stream, const char *name,
                                  double timeout_s, cllm_comm **out) {
    if (!host || !out || !name || host->vt->is_device)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_nccl_create: needs a host (TCP) communicator, a name, out");
    *out = NULL;
    if (strlen(name) >= sizeof host->name)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_nccl_create: name '%s' is too long", name);
    if (!(timeout_s > 0)) return cllm_error(CLLM_ERR_INVALID_ARG, "--dist-timeout must be > 0 s");
    CLLM_TRY(CUDA_CHECK(host, cudaSetDevice(cuda_device)));
    id_msg msg;
    memset(&msg, 0, sizeof msg);
    if (host->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&msg.id);
        msg.ok = r == ncclSuccess;
        if (!msg.ok) snprintf(msg.err, sizeof msg.err, "ncclGetUniqueId: %s", ncclGetErrorString(r));
    }
    CLLM_TRY(cllm_comm_broadcast(host, &msg, sizeof msg, CLLM_DTYPE_U8, 0)); /* the id goes over TCP */
    if (!msg.ok) return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: rank 0 failed: %s", host->world_rank, msg.err);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t nc = NULL;
    ncclResult_t r = ncclCommInitRankConfig(&nc, host->size, msg.id, host->rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        cllm_status st = nccl_fail(host, nc, r, "ncclCommInitRankConfig", __FILE__, __LINE__);
        if (nc) ncclCommAbort(nc);
        return st;
    }
    cllm_status st = wait_async(host, nc, NULL, timeout_s, "ncclCommInitRankConfig", __FILE__, __LINE__);
    if (st != CLLM_OK) { ncclCommAbort(nc); return st; }
    cllm_comm *c = cllm_comm_alloc(&g_nccl_vt, name, host->rank, host->size, host->world_ranks, NULL);
    if (!c) { ncclCommAbort(nc); return CLLM_ERR_OOM; }
    st = impl_alloc(c, nc, (cudaStream_t)cuda_stream, timeout_s);
    if (st != CLLM_OK) {
        cllm_comm_destroy(c);
        return st;
    }
    *out = c;
    return CLLM_OK;
}

#else /* !CLLM_HAVE_NCCL */

cllm_status cllm_comm_nccl_create(cllm_comm *host, int cuda_device, void *cuda_stream, const char *name,
                                  double timeout_s, cllm_comm **out) {
    (void)host; (void)cuda_device; (void)cuda_stream; (void)name; (void)timeout_s;
    if (out) *out = NULL;
    return cllm_error(CLLM_ERR_NO_DEVICE,
                      "cllm was built without NCCL (CUDA backend off, or libnccl/nccl.h not found at configure "
                      "time): use --device cpu (TCP transport), or rebuild with CUDA and NCCL installed");
}

#endif
