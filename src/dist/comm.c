/* Communicator, common layer: argument checks, world-size-1 shortcuts,
 * statistics, the broken/aborted state shared by a communicator family,
 * split bookkeeping, and dispatch to the transport's vtable (comm_tcp.c,
 * comm_nccl.c). See comm.h for the contract, comm_internal.h for the
 * structure. */
#include "dist/comm_internal.h"

#include "core/clock.h"
#include "core/status.h"

#include <stdio.h>
#include <string.h>

static const char *const g_op_names[CLLM_COMM_NUM_OPS] = {
    "all_reduce", "all_gather", "reduce_scatter", "broadcast", "send", "recv", "all_to_allv", "barrier",
};

const char *cllm_comm_op_name(cllm_comm_op op) {
    return (unsigned)op < CLLM_COMM_NUM_OPS ? g_op_names[op] : "?";
}

size_t cllm_comm_dtype_size(cllm_dtype dt) {
    switch (dt) {
    case CLLM_DTYPE_F32: case CLLM_DTYPE_I32: return 4;
    case CLLM_DTYPE_BF16: case CLLM_DTYPE_F16: return 2;
    case CLLM_DTYPE_I64: return 8;
    case CLLM_DTYPE_U8: return 1;
    default: return 0;
    }
}

/* ------------------------------------------------------------ lifetime */

cllm_comm *cllm_comm_alloc(const cllm_comm_vtable *vt, const char *name, int rank, int size, const int *world_ranks,
                           cllm_comm_family *family) {
    cllm_comm *c = cllm_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->world_ranks = cllm_malloc(sizeof(int) * (size_t)size);
    if (!c->world_ranks) { free(c); return NULL; }
    memcpy(c->world_ranks, world_ranks, sizeof(int) * (size_t)size);
    if (!family) {
        family = cllm_calloc(1, sizeof *family);
        if (!family) { free(c->world_ranks); free(c); return NULL; }
        pthread_mutex_init(&family->mu, NULL);
        atomic_init(&family->broken, 0);
    }
    pthread_mutex_lock(&family->mu);
    if (family->num_members == CLLM_COMM_FAMILY_MAX) { /* an existing family: a new one is empty */
        pthread_mutex_unlock(&family->mu);
        free(c->world_ranks);
        free(c);
        cllm_error(CLLM_ERR_INVALID_ARG, "more than %d communicators split from one world", CLLM_COMM_FAMILY_MAX);
        return NULL;
    }
    family->members[family->num_members++] = c;
    pthread_mutex_unlock(&family->mu);
    c->vt = vt;
    c->family = family;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->rank = rank;
    c->size = size;
    c->world_rank = world_ranks[rank];
    c->tag = 1;
    atomic_init(&c->num_children, 0);
    pthread_mutex_init(&c->stats_mu, NULL);
    return c;
}

void cllm_comm_free(cllm_comm *c) {
    if (!c) return;
    cllm_comm_family *f = c->family;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->num_members; i++)
        if (f->members[i] == c) { f->members[i] = f->members[--f->num_members]; break; }
    bool last = f->num_members == 0;
    pthread_mutex_unlock(&f->mu);
    if (last) {
        pthread_mutex_destroy(&f->mu);
        free(f);
    }
    pthread_mutex_destroy(&c->stats_mu);
    free(c->world_ranks);
    free(c);
}

void cllm_comm_destroy(cllm_comm *c) {
    if (!c) return;
    CLLM_ASSERT(atomic_load(&c->num_children) == 0); /* comm.h: children are destroyed first */
    if (c->vt->destroy) c->vt->destroy(c);
    if (c->parent) atomic_fetch_sub(&c->parent->num_children, 1);
    cllm_comm_free(c);
}

/* ------------------------------------------------------ failure state */

/* Record msg (it may be this thread's cllm_last_error()) as the family's
 * failure if it is the first. This thread's error is left as it is. */
static void family_break(cllm_comm_family *f, const char *msg) {
    pthread_mutex_lock(&f->mu);
    if (!atomic_load(&f->broken)) {
        snprintf(f->msg, sizeof f->msg, "%s", msg);
        atomic_store(&f->broken, 1);
    }
    pthread_mutex_unlock(&f->mu);
}

/* Unblock the driving thread of every member (the transport's abort). */
static void family_abort(cllm_comm_family *f) {
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->num_members; i++)
        if (f->members[i]->vt->abort) f->members[i]->vt->abort(f->members[i]);
    pthread_mutex_unlock(&f->mu);
}

/* CLLM_OK, or the family's failure as this thread's error. */
static cllm_status check_broken(const cllm_comm *c) {
    cllm_comm_family *f = c->family;
    if (!atomic_load(&f->broken)) return CLLM_OK;
    pthread_mutex_lock(&f->mu);
    cllm_error(CLLM_ERR_DISTRIBUTED, "%s", f->msg);
    pthread_mutex_unlock(&f->mu);
    return CLLM_ERR_DISTRIBUTED;
}

bool cllm_comm_is_broken(const cllm_comm *c) { return c && atomic_load(&c->family->broken); }

void cllm_comm_set_timeout(cllm_comm *c, double timeout_s) {
    if (c && c->vt->set_timeout) c->vt->set_timeout(c, timeout_s);
}

void cllm_comm_abort(cllm_comm *c, const char *reason) {
    if (!c) return;
    char msg[1024];
    snprintf(msg, sizeof msg, "rank %d: communicator '%s' aborted: %s", c->world_rank, c->name,
             reason ? reason : "cllm_comm_abort");
    family_break(c->family, msg); /* the caller's own error stays as it was */
    family_abort(c->family);
}

cllm_status cllm_comm_check_health(cllm_comm *c) {
    if (!c) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_check_health: NULL communicator");
    CLLM_TRY(check_broken(c));
    return c->vt->check_health ? c->vt->check_health(c) : CLLM_OK;
}

/* ------------------------------------------------------------ queries */

int cllm_comm_rank(const cllm_comm *c) { return c->rank; }
int cllm_comm_size(const cllm_comm *c) { return c->size; }
int cllm_comm_world_rank_of(const cllm_comm *c, int r) { return r >= 0 && r < c->size ? c->world_ranks[r] : -1; }
const char *cllm_comm_name(const cllm_comm *c) { return c->name; }
const char *cllm_comm_transport(const cllm_comm *c) { return c->vt->name; }
bool cllm_comm_is_device(const cllm_comm *c) { return c->vt->is_device; }

/* --------------------------------------------------------- statistics */

void cllm_comm_get_stats(const cllm_comm *c, cllm_comm_stats *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", c->name);
    snprintf(out->transport, sizeof out->transport, "%s", c->vt->name);
    out->rank = c->rank;
    out->size = c->size;
    out->world_rank = c->world_rank;
    pthread_mutex_lock((pthread_mutex_t *)&c->stats_mu);
    memcpy(out->ops, c->ops, sizeof out->ops);
    pthread_mutex_unlock((pthread_mutex_t *)&c->stats_mu);
}

void cllm_comm_stats_add(cllm_comm *c, const cllm_comm_stats *delta, uint64_t times) {
    pthread_mutex_lock(&c->stats_mu);
    for (int i = 0; i < CLLM_COMM_NUM_OPS; i++) {
        c->ops[i].calls += delta->ops[i].calls * times;
        c->ops[i].bytes += delta->ops[i].bytes * times;
        c->ops[i].time_s += delta->ops[i].time_s * (double)times;
    }
    pthread_mutex_unlock(&c->stats_mu);
}

/* ------------------------------------------------ collective plumbing */

/* Entry checks common to every collective: c, broken state, dtype, and for
 * all_reduce / reduce_scatter the reduce op rop (ignored for the others). */
static cllm_status enter(cllm_comm *c, cllm_comm_op op, cllm_dtype dt, cllm_reduce_op rop, size_t *esize) {
    if (!c) return cllm_error(CLLM_ERR_INVALID_ARG, "%s: NULL communicator", cllm_comm_op_name(op));
    CLLM_TRY(check_broken(c));
    *esize = cllm_comm_dtype_size(dt);
    if (!*esize && op != CLLM_COMM_BARRIER)
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s on '%s': dtype %d is not one of F32, BF16, F16, I32, I64, U8",
                          cllm_comm_op_name(op), c->name, (int)dt);
    if (op != CLLM_COMM_ALL_REDUCE && op != CLLM_COMM_REDUCE_SCATTER) return CLLM_OK;
    if (dt == CLLM_DTYPE_U8)
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s on '%s': reductions on uint8 are not supported",
                          cllm_comm_op_name(op), c->name);
    if ((unsigned)rop > CLLM_REDUCE_MIN)
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s on '%s': unknown reduce op %d", cllm_comm_op_name(op), c->name,
                          (int)rop);
    return CLLM_OK;
}

/* Record the call (on success) or break the family (on a transport error;
 * an abort that raced with the call wins, so the caller sees its reason). */
static cllm_status leave(cllm_comm *c, cllm_comm_op op, cllm_status st, uint64_t bytes, double t0) {
    if (st == CLLM_OK) {
        double dt = cllm_now_s() - t0;
        pthread_mutex_lock(&c->stats_mu);
        c->ops[op].calls++;
        c->ops[op].bytes += bytes;
        c->ops[op].time_s += dt;
        pthread_mutex_unlock(&c->stats_mu);
        return CLLM_OK;
    }
    if (st == CLLM_ERR_INVALID_ARG && !atomic_load(&c->family->broken)) return st;
    family_break(c->family, cllm_last_error());
    family_abort(c->family); /* peers blocked on this rank fail at once instead of at their timeout */
    return check_broken(c);
}

#define NEED_BUF(p, n, what)                                                                              \
    do {                                                                                                  \
        if (!(p) && (n))                                                                                  \
            return cllm_error(CLLM_ERR_INVALID_ARG, "%s on '%s': %s is NULL", cllm_comm_op_name(OP),      \
                              c->name, what);                                                             \
    } while (0)

static bool host_local(const cllm_comm *c) { return c->size == 1 && !c->vt->is_device; }

static void copy_if(void *dst, const void *src, size_t bytes) {
    if (dst != src && bytes) memmove(dst, src, bytes);
}

/* --------------------------------------------------------- collectives */

/* all_reduce, all_gather, reduce_scatter: the layouts of comm.h; rop only
 * for the reductions. */
static cllm_status dense(cllm_comm *c, cllm_comm_op OP, const void *send, void *recv, size_t count, cllm_dtype dt,
                         cllm_reduce_op rop) {
    size_t es = 0;
    CLLM_TRY(enter(c, OP, dt, rop, &es));
    NEED_BUF(send, count, "send");
    NEED_BUF(recv, count, "recv");
    double t0 = cllm_now_s();
    c->seq++;
    cllm_status st = CLLM_OK;
    if (host_local(c)) copy_if(recv, send, count * es);
    else if (OP == CLLM_COMM_ALL_REDUCE) st = c->vt->all_reduce(c, send, recv, count, dt, rop);
    else if (OP == CLLM_COMM_ALL_GATHER) st = c->vt->all_gather(c, send, recv, count, dt);
    else st = c->vt->reduce_scatter(c, send, recv, count, dt, rop);
    uint64_t ranks = OP == CLLM_COMM_ALL_REDUCE ? 1 : (uint64_t)c->size; /* stats: this rank's larger buffer */
    return leave(c, OP, st, ranks * count * es, t0);
}

cllm_status cllm_comm_all_reduce(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                 cllm_reduce_op op) {
    return dense(c, CLLM_COMM_ALL_REDUCE, send, recv, count, dt, op);
}

cllm_status cllm_comm_all_gather(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt) {
    return dense(c, CLLM_COMM_ALL_GATHER, send, recv, count, dt, CLLM_REDUCE_SUM);
}

cllm_status cllm_comm_reduce_scatter(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                     cllm_reduce_op op) {
    return dense(c, CLLM_COMM_REDUCE_SCATTER, send, recv, count, dt, op);
}

cllm_status cllm_comm_broadcast(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int root) {
    const cllm_comm_op OP = CLLM_COMM_BROADCAST;
    size_t es = 0;
    CLLM_TRY(enter(c, OP, dt, CLLM_REDUCE_SUM, &es));
    NEED_BUF(buf, count, "buf");
    if (root < 0 || root >= c->size)
        return cllm_error(CLLM_ERR_INVALID_ARG, "broadcast on '%s': root %d is not a rank of %d", c->name, root,
                          c->size);
    double t0 = cllm_now_s();
    c->seq++;
    cllm_status st = host_local(c) ? CLLM_OK : c->vt->broadcast(c, buf, count, dt, root);
    return leave(c, OP, st, count * es, t0);
}

static cllm_status check_peer(const cllm_comm *c, const char *what, int peer) {
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return cllm_error(CLLM_ERR_INVALID_ARG, "%s on '%s' (rank %d of %d): peer %d is not another rank", what,
                          c->name, c->rank, c->size, peer);
    return CLLM_OK;
}

cllm_status cllm_comm_send(cllm_comm *c, const void *buf, size_t count, cllm_dtype dt, int peer) {
    const cllm_comm_op OP = CLLM_COMM_SEND;
    size_t es = 0;
    CLLM_TRY(enter(c, OP, dt, CLLM_REDUCE_SUM, &es));
    NEED_BUF(buf, count, "buf");
    CLLM_TRY(check_peer(c, "send", peer));
    double t0 = cllm_now_s(); /* point to point: the transport numbers messages per pair, not c->seq */
    return leave(c, OP, c->vt->send(c, buf, count, dt, peer), count * es, t0);
}

cllm_status cllm_comm_recv(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int peer) {
    const cllm_comm_op OP = CLLM_COMM_RECV;
    size_t es = 0;
    CLLM_TRY(enter(c, OP, dt, CLLM_REDUCE_SUM, &es));
    NEED_BUF(buf, count, "buf");
    CLLM_TRY(check_peer(c, "recv", peer));
    double t0 = cllm_now_s();
    return leave(c, OP, c->vt->recv(c, buf, count, dt, peer), count * es, t0);
}

cllm_status cllm_comm_all_to_allv(cllm_comm *c, const void *send, const size_t *send_counts,
                                  const size_t *send_displs, void *recv, const size_t *recv_counts,
                                  const size_t *recv_displs, cllm_dtype dt) {
    const cllm_comm_op OP = CLLM_COMM_ALL_TO_ALLV;
    size_t es = 0;
    CLLM_TRY(enter(c, OP, dt, CLLM_REDUCE_SUM, &es));
    if (!send_counts || !send_displs || !recv_counts || !recv_displs)
        return cllm_error(CLLM_ERR_INVALID_ARG, "all_to_allv on '%s': a count or displacement array is NULL",
                          c->name);
    uint64_t sent = 0, rcvd = 0;
    for (int p = 0; p < c->size; p++) { sent += send_counts[p]; rcvd += recv_counts[p]; }
    NEED_BUF(send, sent, "send");
    NEED_BUF(recv, rcvd, "recv");
    if (send_counts[c->rank] != recv_counts[c->rank])
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "all_to_allv on '%s': rank %d sends itself %zu elements but expects %zu",
                          c->name, c->rank, send_counts[c->rank], recv_counts[c->rank]);
    double t0 = cllm_now_s();
    c->seq++;
    cllm_status st = CLLM_OK;
    if (host_local(c))
        copy_if((char *)recv + recv_displs[0] * es, (const char *)send + send_displs[0] * es, send_counts[0] * es);
    else st = c->vt->all_to_allv(c, send, send_counts, send_displs, recv, recv_counts, recv_displs, dt);
    return leave(c, OP, st, sent * es, t0);
}

cllm_status cllm_comm_barrier(cllm_comm *c) {
    const cllm_comm_op OP = CLLM_COMM_BARRIER;
    size_t es = 0;
    CLLM_TRY(enter(c, OP, CLLM_DTYPE_U8, CLLM_REDUCE_SUM, &es));
    double t0 = cllm_now_s();
    c->seq++;
    cllm_status st = host_local(c) ? CLLM_OK : c->vt->barrier(c);
    return leave(c, OP, st, 0, t0);
}

cllm_status cllm_comm_sync(cllm_comm *c) {
    if (!c) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_sync: NULL communicator");
    CLLM_TRY(check_broken(c));
    if (!c->vt->sync) return CLLM_OK;
    if (c->vt->sync(c) == CLLM_OK) return CLLM_OK;
    family_break(c->family, cllm_last_error());
    return check_broken(c);
}

/* ------------------------------------------------------------- groups */

/* Child tag: the same on every rank of the child, distinct from the
 * parent's and (with high probability) from its siblings'. */
static uint16_t child_tag(uint16_t parent, uint16_t nsplit, int color) {
    uint32_t h = (uint32_t)parent * 2654435761u ^ ((uint32_t)nsplit * 40503u) ^ ((uint32_t)color * 97u + 1u);
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    uint16_t t = (uint16_t)(h ^ (h >> 16));
    return t == parent || t == 0 ? (uint16_t)(t + 2) : t;
}

cllm_status cllm_comm_split(cllm_comm *c, int color, int key, const char *name, cllm_comm **out) {
    if (!c || !out || !name)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_split: NULL communicator, name or out");
    *out = NULL;
    if (strlen(name) >= sizeof c->name)
        return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_split: name '%s' is longer than %zu characters", name,
                          sizeof c->name - 1);
    CLLM_TRY(check_broken(c));
    int *ck = cllm_malloc(sizeof(int) * 2 * (size_t)c->size);
    int *members = cllm_malloc(sizeof(int) * (size_t)c->size);
    int *wr = cllm_malloc(sizeof(int) * (size_t)c->size);
    cllm_comm *child = NULL;
    cllm_status st = CLLM_ERR_OOM;
    if (!ck || !members || !wr) goto fail;
    c->seq++;
    st = c->vt->gather_color_key(c, color, key, ck);
    if (st != CLLM_OK) { st = leave(c, CLLM_COMM_ALL_GATHER, st, 0, 0); goto fail; }
    c->num_splits++;
    if (color < 0) {
        st = c->vt->split_none ? c->vt->split_none(c, key) : CLLM_OK;
        if (st != CLLM_OK) st = leave(c, CLLM_COMM_ALL_GATHER, st, 0, 0);
        goto fail; /* *out stays NULL */
    }
    /* members: ranks of this color ordered by (key, rank); insertion sort (size is small) */
    int n = 0, me = -1;
    for (int r = 0; r < c->size; r++) {
        if (ck[2 * r] != color) continue;
        int j = n++;
        while (j > 0 && ck[2 * members[j - 1] + 1] > ck[2 * r + 1]) { members[j] = members[j - 1]; j--; }
        members[j] = r;
    }
    for (int i = 0; i < n; i++) {
        wr[i] = c->world_ranks[members[i]];
        if (members[i] == c->rank) me = i;
    }
    CLLM_ASSERT(me >= 0);
    child = cllm_comm_alloc(c->vt, name, me, n, wr, c->family);
    if (!child) { st = CLLM_ERR_OOM; goto fail; }
    child->parent = c;
    child->tag = child_tag(c->tag, c->num_splits, color);
    st = c->vt->split(c, color, key, child);
    if (st != CLLM_OK) {
        cllm_comm_free(child);
        child = NULL;
        st = leave(c, CLLM_COMM_ALL_GATHER, st, 0, 0);
        goto fail;
    }
    atomic_fetch_add(&c->num_children, 1);
    *out = child;
fail:
    free(ck);
    free(members);
    free(wr);
    return st;
}
