/* TCP transport ("tcp"): the collectives on host memory over the full mesh
 * of tcp_bootstrap.c, driven by the progress engine of tcp_transport.c.
 *
 * Algorithms (P ranks, N bytes per rank):
 *   all_reduce      N <= SMALL: every rank sends its buffer to every other
 *                   and reduces the P inputs in rank order (one round trip;
 *                   the same order everywhere, so the same bits). Larger: ring
 *                   reduce-scatter (reduced on arrival, local operand read
 *                   from send, so no copy) then ring all-gather of the
 *                   reduced segments: 2(P-1) steps, 2(P-1)/P * N on the wire
 *                   per rank; each segment is reduced on one rank and copied
 *                   to the others, so every rank ends with the same bits.
 *   all_gather      small: direct (every pair at once); else ring.
 *   reduce_scatter  small: direct + rank-order reduce; else ring in pieces
 *                   of at most CHUNK bytes per segment (two CHUNK
 *                   temporaries, whatever the size).
 *   broadcast       small: star from the root; else a pipelined chain
 *                   (root -> root+1 -> ...) in CHUNK pieces.
 *   all_to_allv     every pair at once; barrier: every pair exchanges an
 *                   empty message.
 * As Gloo / NCCL's ring algorithms (Patarasuk & Yuan, "Bandwidth optimal
 * all-reduce algorithms for clusters of workstations", 2009). */
#include "dist/tcp_internal.h"

#include "core/clock.h"
#include "core/status.h"
#include "dist/reduce.h"

#include <string.h>

#define SMALL_BYTES (64u << 10)
#define CHUNK_BYTES (1u << 20)

static tcp_comm *T(const cllm_comm *c) { return c->impl; }
static tcp_mesh *M(const cllm_comm *c) { return T(c)->mesh; }

/* Segment i of a count split into P near-equal parts (the first count % P
 * get one more). */
static void segment(size_t count, int P, int i, size_t *off, size_t *n) {
    size_t q = count / (size_t)P, r = count % (size_t)P, ui = (size_t)i;
    *n = q + (ui < r);
    *off = ui * q + (ui < r ? ui : r);
}

static int mod(int a, int P) { return ((a % P) + P) % P; }

/* --------------------------------------------------------------- small */

/* Direct exchange: send mine + p * stride (bytes) to every peer p (stride
 * 0: the same buffer to all) and receive each peer's into slots[p * bytes]
 * (slot of this rank untouched). */
static cllm_status exchange_all(cllm_comm *c, cllm_comm_op op, cllm_dtype dt, const uint8_t *mine, size_t stride,
                                uint8_t *slots, size_t bytes, tcp_xfer *x) {
    int n = 0;
    for (int p = 0; p < c->size; p++) {
        if (p == c->rank) continue;
        tcp_xfer_send(&x[n++], c, op, dt, p, mine + (size_t)p * stride, bytes);
        tcp_xfer_recv(&x[n++], c, op, dt, p, slots + (size_t)p * bytes, bytes, NULL, 0);
    }
    return tcp_run(c, op, x, n);
}

/* dst = in[0] op in[1] op ... op in[P-1] in rank order; in[me] = own. */
static void reduce_in_order(const cllm_comm *c, void *dst, const uint8_t *slots, const void *own, size_t count,
                            size_t es, cllm_dtype dt, cllm_reduce_op op) {
    const void *in0 = c->rank == 0 ? own : slots;
    const void *in1 = c->rank == 1 ? own : slots + count * es;
    cllm_reduce_apply(dst, in0, in1, count, dt, op);
    for (int p = 2; p < c->size; p++)
        cllm_reduce_apply(dst, dst, p == c->rank ? own : slots + (size_t)p * count * es, count, dt, op);
}

/* ---------------------------------------------------------- all_reduce */

static cllm_status tcp_all_reduce(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                  cllm_reduce_op op) {
    tcp_mesh *m = M(c);
    int P = c->size, me = c->rank;
    size_t es = cllm_comm_dtype_size(dt), bytes = count * es;
    tcp_xfer *x = m->x;
    if (bytes <= SMALL_BYTES || count < (size_t)P) {
        uint8_t *slots;
        CLLM_TRY(tcp_scratch(m, (size_t)P * bytes, &slots));
        const void *own = send;
        if (send == recv) { memcpy(slots + (size_t)me * bytes, send, bytes); own = slots + (size_t)me * bytes; }
        CLLM_TRY(exchange_all(c, CLLM_COMM_ALL_REDUCE, dt, send, 0, slots, bytes, x));
        reduce_in_order(c, recv, slots, own, count, es, dt, op);
        return CLLM_OK;
    }
    const uint8_t *sb = send;
    uint8_t *rb = recv;
    int next = mod(me + 1, P), prev = mod(me - 1, P);
    for (int s = 0; s < P - 1; s++) { /* reduce-scatter: afterwards segment me+1 is complete here */
        size_t so, sn, ro, rn;
        segment(count, P, mod(me - s, P), &so, &sn);
        segment(count, P, mod(me - s - 1, P), &ro, &rn);
        tcp_xfer_send(&x[0], c, CLLM_COMM_ALL_REDUCE, dt, next, (s == 0 ? sb : rb) + so * es, sn * es);
        tcp_xfer_recv(&x[1], c, CLLM_COMM_ALL_REDUCE, dt, prev, rb + ro * es, rn * es, sb + ro * es, op);
        CLLM_TRY(tcp_run(c, CLLM_COMM_ALL_REDUCE, x, 2));
    }
    for (int s = 0; s < P - 1; s++) { /* all-gather of the complete segments */
        size_t so, sn, ro, rn;
        segment(count, P, mod(me + 1 - s, P), &so, &sn);
        segment(count, P, mod(me - s, P), &ro, &rn);
        tcp_xfer_send(&x[0], c, CLLM_COMM_ALL_REDUCE, dt, next, rb + so * es, sn * es);
        tcp_xfer_recv(&x[1], c, CLLM_COMM_ALL_REDUCE, dt, prev, rb + ro * es, rn * es, NULL, 0);
        CLLM_TRY(tcp_run(c, CLLM_COMM_ALL_REDUCE, x, 2));
    }
    return CLLM_OK;
}

/* ---------------------------------------------------------- all_gather */

static cllm_status tcp_all_gather(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt) {
    tcp_mesh *m = M(c);
    tcp_xfer *x = m->x;
    int P = c->size, me = c->rank;
    size_t bytes = count * cllm_comm_dtype_size(dt);
    uint8_t *rb = recv, *mine = rb + (size_t)me * bytes;
    if ((const uint8_t *)send != mine) memcpy(mine, send, bytes);
    if (bytes <= SMALL_BYTES) return exchange_all(c, CLLM_COMM_ALL_GATHER, dt, mine, 0, rb, bytes, x);
    int next = mod(me + 1, P), prev = mod(me - 1, P);
    for (int s = 0; s < P - 1; s++) {
        tcp_xfer_send(&x[0], c, CLLM_COMM_ALL_GATHER, dt, next, rb + (size_t)mod(me - s, P) * bytes, bytes);
        tcp_xfer_recv(&x[1], c, CLLM_COMM_ALL_GATHER, dt, prev, rb + (size_t)mod(me - s - 1, P) * bytes, bytes,
                      NULL, 0);
        CLLM_TRY(tcp_run(c, CLLM_COMM_ALL_GATHER, x, 2));
    }
    return CLLM_OK;
}

/* ------------------------------------------------------ reduce_scatter */

static cllm_status tcp_reduce_scatter(cllm_comm *c, const void *send, void *recv, size_t count, cllm_dtype dt,
                                      cllm_reduce_op op) {
    tcp_mesh *m = M(c);
    tcp_xfer *x = m->x;
    int P = c->size, me = c->rank;
    size_t es = cllm_comm_dtype_size(dt), bytes = count * es;
    const uint8_t *sb = send;
    if (bytes <= SMALL_BYTES) {
        uint8_t *slots;
        CLLM_TRY(tcp_scratch(m, (size_t)P * bytes, &slots));
        const uint8_t *own = sb + (size_t)me * bytes;
        if ((uint8_t *)recv == own) { /* recv is this rank's input block: keep a copy of the input */
            memcpy(slots + (size_t)me * bytes, own, bytes);
            own = slots + (size_t)me * bytes;
        }
        CLLM_TRY(exchange_all(c, CLLM_COMM_REDUCE_SCATTER, dt, sb, bytes, slots, bytes, x)); /* block p to rank p */
        reduce_in_order(c, recv, slots, own, count, es, dt, op);
        return CLLM_OK;
    }
    size_t piece = CHUNK_BYTES / es;
    uint8_t *tmp;
    CLLM_TRY(tcp_scratch(m, 2 * piece * es, &tmp));
    int next = mod(me + 1, P), prev = mod(me - 1, P);
    for (size_t o = 0; o < count; o += piece) {
        size_t n = count - o < piece ? count - o : piece, nb = n * es;
        uint8_t *t[2] = {tmp, tmp + piece * es};
        for (int s = 0; s < P - 1; s++) { /* afterwards block me of this piece is complete */
            size_t sblk = (size_t)mod(me - s - 1, P), rblk = (size_t)mod(me - s - 2, P);
            const uint8_t *src = s == 0 ? sb + (sblk * count + o) * es : t[(s - 1) % 2];
            uint8_t *dst = s == P - 2 ? (uint8_t *)recv + o * es : t[s % 2];
            tcp_xfer_send(&x[0], c, CLLM_COMM_REDUCE_SCATTER, dt, next, src, nb);
            tcp_xfer_recv(&x[1], c, CLLM_COMM_REDUCE_SCATTER, dt, prev, dst, nb, sb + (rblk * count + o) * es, op);
            CLLM_TRY(tcp_run(c, CLLM_COMM_REDUCE_SCATTER, x, 2));
        }
    }
    return CLLM_OK;
}

/* ----------------------------------------------------------- broadcast */

static cllm_status tcp_broadcast(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int root) {
    tcp_xfer *x = M(c)->x;
    int P = c->size, me = c->rank;
    size_t bytes = count * cllm_comm_dtype_size(dt);
    uint8_t *b = buf;
    if (bytes <= SMALL_BYTES || P == 2) { /* star */
        int n = 0;
        if (me == root) {
            for (int p = 0; p < P; p++)
                if (p != root) tcp_xfer_send(&x[n++], c, CLLM_COMM_BROADCAST, dt, p, b, bytes);
        } else tcp_xfer_recv(&x[n++], c, CLLM_COMM_BROADCAST, dt, root, b, bytes, NULL, 0);
        return tcp_run(c, CLLM_COMM_BROADCAST, x, n);
    }
    /* pipelined chain in rank order from the root: step i receives piece i
     * from the previous rank while passing piece i-1 to the next */
    size_t es = cllm_comm_dtype_size(dt), piece = CHUNK_BYTES / es * es, nch = (bytes + piece - 1) / piece;
    int pos = mod(me - root, P), next = mod(me + 1, P), prev = mod(me - 1, P);
    for (size_t i = 0; i <= nch; i++) {
        int n = 0;
        if (pos > 0 && i < nch) {
            size_t len = bytes - i * piece < piece ? bytes - i * piece : piece;
            tcp_xfer_recv(&x[n++], c, CLLM_COMM_BROADCAST, dt, prev, b + i * piece, len, NULL, 0);
        }
        size_t k = pos == 0 ? i : i - 1; /* the piece this rank passes on */
        if (pos < P - 1 && (pos == 0 ? i < nch : i >= 1)) {
            size_t len = bytes - k * piece < piece ? bytes - k * piece : piece;
            tcp_xfer_send(&x[n++], c, CLLM_COMM_BROADCAST, dt, next, b + k * piece, len);
        }
        CLLM_TRY(tcp_run(c, CLLM_COMM_BROADCAST, x, n));
    }
    return CLLM_OK;
}

/* --------------------------------------------------------- point to point */

static cllm_status tcp_send(cllm_comm *c, const void *buf, size_t count, cllm_dtype dt, int peer) {
    tcp_xfer *x = M(c)->x;
    tcp_xfer_send(x, c, CLLM_COMM_SEND, dt, peer, buf, count * cllm_comm_dtype_size(dt));
    x->hdr.seq = ++T(c)->p2p_sent[peer];
    return tcp_run(c, CLLM_COMM_SEND, x, 1);
}

static cllm_status tcp_recv(cllm_comm *c, void *buf, size_t count, cllm_dtype dt, int peer) {
    tcp_xfer *x = M(c)->x;
    tcp_xfer_recv(x, c, CLLM_COMM_SEND, dt, peer, buf, count * cllm_comm_dtype_size(dt), NULL, 0);
    x->hdr.seq = ++T(c)->p2p_recvd[peer];
    return tcp_run(c, CLLM_COMM_RECV, x, 1);
}

static cllm_status tcp_all_to_allv(cllm_comm *c, const void *send, const size_t *send_counts,
                                   const size_t *send_displs, void *recv, const size_t *recv_counts,
                                   const size_t *recv_displs, cllm_dtype dt) {
    tcp_xfer *x = M(c)->x;
    size_t es = cllm_comm_dtype_size(dt);
    const uint8_t *sb = send;
    uint8_t *rb = recv;
    int n = 0, me = c->rank;
    if (send_counts[me]) memcpy(rb + recv_displs[me] * es, sb + send_displs[me] * es, send_counts[me] * es);
    for (int p = 0; p < c->size; p++) {
        if (p == me) continue;
        tcp_xfer_send(&x[n++], c, CLLM_COMM_ALL_TO_ALLV, dt, p, send_counts[p] ? sb + send_displs[p] * es : sb,
                      send_counts[p] * es);
        tcp_xfer_recv(&x[n++], c, CLLM_COMM_ALL_TO_ALLV, dt, p, recv_counts[p] ? rb + recv_displs[p] * es : rb,
                      recv_counts[p] * es, NULL, 0);
    }
    return tcp_run(c, CLLM_COMM_ALL_TO_ALLV, x, n);
}

static cllm_status tcp_barrier(cllm_comm *c) {
    tcp_xfer *x = M(c)->x;
    int n = 0;
    for (int p = 0; p < c->size; p++) {
        if (p == c->rank) continue;
        tcp_xfer_send(&x[n++], c, CLLM_COMM_BARRIER, CLLM_DTYPE_U8, p, NULL, 0);
        tcp_xfer_recv(&x[n++], c, CLLM_COMM_BARRIER, CLLM_DTYPE_U8, p, NULL, 0, NULL, 0);
    }
    return tcp_run(c, CLLM_COMM_BARRIER, x, n);
}

/* ------------------------------------------------- groups and lifetime */

static cllm_status tcp_gather_color_key(cllm_comm *c, int color, int key, int *ck) {
    int mine[2] = {color, key};
    return tcp_all_gather(c, mine, ck, 2, CLLM_DTYPE_I32);
}

static cllm_status tcp_comm_impl(cllm_comm *c, tcp_mesh *mesh) {
    tcp_comm *t = cllm_calloc(1, sizeof *t);
    if (!t) return CLLM_ERR_OOM;
    t->mesh = mesh;
    t->p2p_sent = cllm_calloc((size_t)c->size, sizeof(uint64_t));
    t->p2p_recvd = cllm_calloc((size_t)c->size, sizeof(uint64_t));
    c->impl = t;
    return t->p2p_sent && t->p2p_recvd ? CLLM_OK : CLLM_ERR_OOM;
}

static void tcp_destroy(cllm_comm *c) {
    tcp_comm *t = c->impl;
    if (!t) return;
    if (!c->parent) tcp_mesh_destroy(t->mesh);
    free(t->p2p_sent);
    free(t->p2p_recvd);
    free(t);
    c->impl = NULL;
}

static cllm_status tcp_split(cllm_comm *c, int color, int key, cllm_comm *child) {
    cllm_status st = tcp_comm_impl(child, M(c));
    if (st != CLLM_OK) tcp_destroy(child);
    return st;
}

static void tcp_abort(cllm_comm *c) { if (c->impl) tcp_mesh_abort(M(c)); }

static cllm_status tcp_check_health(cllm_comm *c) { return tcp_mesh_check(M(c), c->world_ranks, c->size, c->name); }

static void tcp_set_timeout(cllm_comm *c, double s) { M(c)->timeout_s = s > 0 ? s : 0; }

static const cllm_comm_vtable g_tcp_vt = {
    .name = "tcp",
    .is_device = false,
    .all_reduce = tcp_all_reduce,
    .all_gather = tcp_all_gather,
    .reduce_scatter = tcp_reduce_scatter,
    .broadcast = tcp_broadcast,
    .send = tcp_send,
    .recv = tcp_recv,
    .all_to_allv = tcp_all_to_allv,
    .barrier = tcp_barrier,
    .sync = NULL,
    .gather_color_key = tcp_gather_color_key,
    .split = tcp_split,
    .split_none = NULL,
    .abort = tcp_abort,
    .check_health = tcp_check_health,
    .destroy = tcp_destroy,
    .set_timeout = tcp_set_timeout,
};

static tcp_mesh *mesh_alloc(int rank, int W, double timeout_s) {
    tcp_mesh *m = cllm_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->world_rank = rank;
    m->world_size = W;
    m->timeout_s = timeout_s;
    atomic_init(&m->aborted, 0);
    m->stage = cllm_malloc(TCP_STAGE_BYTES);
    m->pfds = cllm_calloc((size_t)W, sizeof *m->pfds);
    m->head_send = cllm_calloc((size_t)W, sizeof(int));
    m->head_recv = cllm_calloc((size_t)W, sizeof(int));
    m->x = cllm_calloc(2 * (size_t)W, sizeof(tcp_xfer));
    if (!m->stage || !m->pfds || !m->head_send || !m->head_recv || !m->x) { tcp_mesh_destroy(m); return NULL; }
    return m;
}

cllm_status cllm_comm_tcp_create_world(const cllm_dist_env *env, double timeout_s, cllm_comm **out) {
    if (!env || !out) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_comm_tcp_create_world: NULL env or out");
    *out = NULL;
    int W = env->world_size, me = env->rank;
    if (W < 1 || me < 0 || me >= W)
        return cllm_error(CLLM_ERR_INVALID_ARG, "distributed environment: rank %d of world size %d", me, W);
    if (!(timeout_s > 0))
        return cllm_error(CLLM_ERR_INVALID_ARG, "--dist-timeout must be > 0 seconds (got %g)", timeout_s);
    double t0 = cllm_now_s();
    int *ident = NULL;
    tcp_mesh *m = NULL;
    cllm_comm *c = NULL;
    cllm_status st = CLLM_ERR_OOM;
    if (!(ident = cllm_malloc(sizeof(int) * (size_t)W)) || !(m = mesh_alloc(me, W, timeout_s))) goto fail;
    for (int r = 0; r < W; r++) ident[r] = r;
    if (W > 1) CLLM_TRY_GOTO(st, tcp_bootstrap(env, timeout_s, &m->fds), fail);
    else {
        if (!(m->fds = cllm_malloc(sizeof(int)))) goto fail;
        m->fds[0] = -1;
    }
    if (!(c = cllm_comm_alloc(&g_tcp_vt, "world", me, W, ident, NULL))) goto fail;
    st = tcp_comm_impl(c, m);
    if (c->impl) m = NULL; /* owned by c now */
    if (st != CLLM_OK) goto fail;
    if ((st = cllm_comm_barrier(c)) != CLLM_OK) { /* every link works */
        char why[512];
        snprintf(why, sizeof why, "%s", cllm_last_error());
        st = cllm_error(st, "%s; this barrier ends the bootstrap: every rank had joined rank 0, but not all of them "
                            "connected to each other (their own errors name the link; a firewall between the hosts "
                            "may drop the ranks' listen ports: CLLM_DIST_PORT_RANGE, docs/distributed.md)", why);
        goto fail;
    }
    if (me == 0 && W > 1)
        CLLM_LOG_D("rank 0: %d ranks joined (%s) in %.3f s", W, env->launcher, cllm_now_s() - t0);
    free(ident);
    *out = c;
    return CLLM_OK;
fail:
    if (c) cllm_comm_destroy(c);
    tcp_mesh_destroy(m);
    free(ident);
    return st;
}
