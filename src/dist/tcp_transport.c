/* TCP transport: the progress engine. A run is a set of sends and receives
 * of one collective; each pass tries every peer's first pending send and
 * receive on the non-blocking sockets, and when nothing moved, poll() waits
 * for any of them, so a ring step (send to next, receive from previous) or an
 * all-to-all (every pair at once) never deadlocks on full socket buffers.
 * Receives either land in the caller's buffer or are reduced on arrival
 * through a small staging buffer (memory stays bounded for any size). */
#include "dist/tcp_internal.h"

#include "core/clock.h"
#include "core/dtype.h"
#include "core/status.h"
#include "dist/reduce.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

void tcp_xfer_send(tcp_xfer *x, const cllm_comm *c, cllm_comm_op op, cllm_dtype dt, int peer, const void *buf,
                   size_t len) {
    memset(x, 0, sizeof *x);
    x->peer = c->world_ranks[peer];
    x->hdr = (tcp_hdr){TCP_HDR_MAGIC, c->tag, (uint8_t)op, (uint8_t)dt, c->seq, len};
    x->buf = (uint8_t *)buf;
    x->len = len;
}

void tcp_xfer_recv(tcp_xfer *x, const cllm_comm *c, cllm_comm_op op, cllm_dtype dt, int peer, void *buf,
                   size_t len, const void *local, cllm_reduce_op rop) {
    tcp_xfer_send(x, c, op, dt, peer, buf, len);
    x->is_recv = true;
    x->local = local;
    x->rop = rop;
}

cllm_status tcp_scratch(tcp_mesh *m, size_t bytes, uint8_t **out) {
    if (bytes > m->scratch_bytes) {
        uint8_t *p = realloc(m->scratch, bytes);
        if (!p) return cllm_error(CLLM_ERR_OOM, "out of host memory for a %zu-byte communication buffer", bytes);
        m->scratch = p;
        m->scratch_bytes = bytes;
    }
    *out = m->scratch;
    return CLLM_OK;
}

/* ---------------------------------------------------------------- errors */

static const char *opn(int op) { return cllm_comm_op_name((cllm_comm_op)op); }

/* "all_reduce (seq 7) on 'tp'", or "send #3 on 'world'" */
static void what(char *b, size_t cap, const cllm_comm *c, cllm_comm_op op, uint64_t seq) {
    if (op == CLLM_COMM_SEND || op == CLLM_COMM_RECV)
        snprintf(b, cap, "%s (message %llu of this pair) on '%s'", opn(op), (unsigned long long)seq, c->name);
    else snprintf(b, cap, "%s (seq %llu) on '%s'", opn(op), (unsigned long long)seq, c->name);
}

static cllm_status err_closed(cllm_comm *c, tcp_mesh *m, cllm_comm_op op, const tcp_xfer *x, int e) {
    char w[128], others[256];
    what(w, sizeof w, c, op, x->hdr.seq);
    tcp_mesh_closed_peers(m, x->peer, others, sizeof others);
    return cllm_error(CLLM_ERR_DISTRIBUTED,
                      "rank %d: connection to rank %d %s during %s: the peer process exited or aborted%s%s%s%s",
                      m->world_rank, x->peer, e ? "failed" : "closed", w, e ? " (" : "", e ? strerror(e) : "",
                      e ? ")" : "", others[0] ? others : "");
}

static cllm_status err_mismatch(cllm_comm *c, tcp_mesh *m, cllm_comm_op op, const tcp_xfer *x) {
    const tcp_hdr *g = &x->got, *h = &x->hdr;
    if (g->magic != TCP_HDR_MAGIC)
        return cllm_error(CLLM_ERR_DISTRIBUTED,
                          "rank %d: corrupt message from rank %d during %s (seq %llu) on '%s' (bad magic 0x%08x): "
                          "the streams are out of step",
                          m->world_rank, x->peer, opn(op), (unsigned long long)h->seq, c->name, g->magic);
    const char *p2p = (op == CLLM_COMM_SEND || op == CLLM_COMM_RECV) ? "point-to-point #" : "seq ";
    return cllm_error(CLLM_ERR_DISTRIBUTED,
                      "rank %d: collective mismatch with rank %d on '%s': this rank called %s (%s%llu, %llu bytes "
                      "of %s%s) but rank %d sent %s (%s%llu, %llu bytes of %s%s); every rank must call the same "
                      "collectives in the same order with the same count, dtype and root",
                      m->world_rank, x->peer, c->name, opn(h->op == CLLM_COMM_SEND ? CLLM_COMM_RECV : h->op), p2p,
                      (unsigned long long)h->seq, (unsigned long long)h->bytes, cllm_dtype_name((cllm_dtype)h->dtype),
                      g->tag != h->tag ? ", this communicator" : "", x->peer, opn(g->op), p2p,
                      (unsigned long long)g->seq, (unsigned long long)g->bytes, cllm_dtype_name((cllm_dtype)g->dtype),
                      g->tag != h->tag ? ", another communicator" : "");
}

static cllm_status err_timeout(cllm_comm *c, tcp_mesh *m, cllm_comm_op op, const tcp_xfer *x) {
    char w[128];
    what(w, sizeof w, c, op, x->hdr.seq);
    size_t moved = x->done + x->stage_fill;
    return cllm_error(CLLM_ERR_DISTRIBUTED,
                      "rank %d: %s timed out: no progress for %.1f s waiting %s rank %d (%zu of %zu bytes %s): "
                      "that rank is stalled, dead or not calling this collective; raise --dist-timeout if it is only "
                      "slow",
                      m->world_rank, w, m->timeout_s, x->is_recv ? "for data from" : "to send to", x->peer, moved,
                      x->len, x->is_recv ? "received" : "sent");
}

/* ------------------------------------------------------------- progress */

/* 1 progressed, 0 would block, -1 error (message set). */
static int step_send(cllm_comm *c, tcp_mesh *m, cllm_comm_op op, tcp_xfer *x, int fd) {
    struct iovec iov[2];
    int n = 0;
    if (x->hdr_done < sizeof x->hdr)
        iov[n++] = (struct iovec){(uint8_t *)&x->hdr + x->hdr_done, sizeof x->hdr - x->hdr_done};
    if (x->done < x->len) iov[n++] = (struct iovec){x->buf + x->done, x->len - x->done};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        err_closed(c, m, op, x, errno);
        return -1;
    }
    size_t h = sizeof x->hdr - x->hdr_done;
    if ((size_t)r <= h) x->hdr_done += (size_t)r;
    else { x->hdr_done = sizeof x->hdr; x->done += (size_t)r - h; }
    return r > 0;
}

/* Reduce the whole elements waiting in the staging buffer into x->buf. */
static void drain_stage(tcp_mesh *m, tcp_xfer *x, size_t es) {
    size_t k = x->stage_fill / es;
    if (!k) return;
    cllm_reduce_apply(x->buf + x->done, x->local + x->done, m->stage, k, (cllm_dtype)x->hdr.dtype, x->rop);
    size_t used = k * es;
    x->done += used;
    x->stage_fill -= used;
    if (x->stage_fill) memmove(m->stage, m->stage + used, x->stage_fill);
}

static int step_recv(cllm_comm *c, tcp_mesh *m, cllm_comm_op op, tcp_xfer *x, int fd) {
    struct iovec iov[2];
    int n = 0;
    bool in_hdr = x->hdr_done < sizeof x->got;
    if (in_hdr) iov[n++] = (struct iovec){(uint8_t *)&x->got + x->hdr_done, sizeof x->got - x->hdr_done};
    if (!x->local) {
        if (x->done < x->len) iov[n++] = (struct iovec){x->buf + x->done, x->len - x->done};
    } else if (!in_hdr) {
        size_t want = x->len - x->done - x->stage_fill;
        if (want > TCP_STAGE_BYTES - x->stage_fill) want = TCP_STAGE_BYTES - x->stage_fill;
        iov[n++] = (struct iovec){m->stage + x->stage_fill, want};
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t r = recvmsg(fd, &mh, MSG_DONTWAIT);
    if (r == 0) { err_closed(c, m, op, x, 0); return -1; }
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        err_closed(c, m, op, x, errno);
        return -1;
    }
    size_t got = (size_t)r;
    if (in_hdr) {
        size_t h = sizeof x->got - x->hdr_done;
        size_t take = got < h ? got : h;
        x->hdr_done += take;
        got -= take;
        if (x->hdr_done == sizeof x->got && memcmp(&x->got, &x->hdr, sizeof x->hdr) != 0) { /* no padding */
            err_mismatch(c, m, op, x);
            return -1;
        }
    }
    if (x->local) x->stage_fill += got;
    else x->done += got;
    if (x->local) drain_stage(m, x, cllm_comm_dtype_size((cllm_dtype)x->hdr.dtype));
    return 1;
}

static bool xfer_done(const tcp_xfer *x) {
    return x->hdr_done == sizeof x->hdr && x->done == x->len;
}

cllm_status tcp_run(cllm_comm *c, cllm_comm_op op, tcp_xfer *x, int n) {
    tcp_mesh *m = ((tcp_comm *)c->impl)->mesh;
    /* timeout 0: wait as long as the peers live (a worker waiting for rank 0's next command) */
    double deadline = m->timeout_s > 0 ? cllm_now_s() + m->timeout_s : INFINITY;
    int W = m->world_size;
    for (;;) {
        if (atomic_load(&m->aborted))
            return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: %s on '%s' aborted", m->world_rank, opn(op), c->name);
        for (int p = 0; p < W; p++) m->head_send[p] = m->head_recv[p] = -1;
        int pending = 0;
        for (int i = 0; i < n; i++) {
            if (xfer_done(&x[i])) continue;
            int *head = x[i].is_recv ? m->head_recv : m->head_send;
            if (head[x[i].peer] < 0) head[x[i].peer] = i;
            pending++;
        }
        if (!pending) return CLLM_OK;
        bool moved = false;
        for (int p = 0; p < W; p++) {
            for (int dir = 0; dir < 2; dir++) {
                int i = dir ? m->head_recv[p] : m->head_send[p];
                if (i < 0) continue;
                int r;
                do {
                    r = dir ? step_recv(c, m, op, &x[i], m->fds[p]) : step_send(c, m, op, &x[i], m->fds[p]);
                    if (r < 0) return CLLM_ERR_DISTRIBUTED;
                    moved |= r > 0;
                } while (r > 0 && !xfer_done(&x[i]));
            }
        }
        if (moved) { /* the timeout counts time without progress (a big transfer may take long) */
            deadline = cllm_now_s() + m->timeout_s;
            continue;
        }
        int np = 0, first = -1;
        for (int p = 0; p < W; p++) {
            short ev = (short)((m->head_send[p] >= 0 ? POLLOUT : 0) | (m->head_recv[p] >= 0 ? POLLIN : 0));
            if (!ev) continue;
            if (first < 0) first = m->head_recv[p] >= 0 ? m->head_recv[p] : m->head_send[p];
            m->pfds[np++] = (struct pollfd){.fd = m->fds[p], .events = ev};
        }
        double left = deadline - cllm_now_s();
        if (left <= 0) return err_timeout(c, m, op, &x[first]);
        int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1; /* wake at least each second to see an abort */
        int r = poll(m->pfds, (nfds_t)np, ms);
        if (r < 0 && errno != EINTR)
            return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: poll failed during %s: %s", m->world_rank, opn(op),
                              strerror(errno));
    }
}

/* ---------------------------------------------------------- mesh state */

void tcp_mesh_abort(tcp_mesh *m) {
    if (!m) return;
    atomic_store(&m->aborted, 1);
    for (int p = 0; p < m->world_size; p++)
        if (m->fds[p] >= 0) shutdown(m->fds[p], SHUT_RDWR);
}

bool tcp_fd_closed(int fd) {
    struct pollfd pf = {.fd = fd, .events = POLLRDHUP};
    return fd >= 0 && poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

cllm_status tcp_mesh_check(tcp_mesh *m, const int *ranks, int n, const char *comm_name) {
    for (int i = 0; i < n; i++) {
        int p = ranks[i];
        if (tcp_fd_closed(m->fds[p])) /* this rank's own entry is -1 */
            return cllm_error(CLLM_ERR_DISTRIBUTED,
                              "rank %d: the connection to rank %d of '%s' is closed: the peer process exited or "
                              "aborted",
                              m->world_rank, p, comm_name);
    }
    return CLLM_OK;
}

void tcp_mesh_closed_peers(tcp_mesh *m, int except, char *buf, size_t cap) {
    buf[0] = 0;
    if (atomic_load(&m->aborted)) return; /* our own shutdown makes every link look closed */
    size_t len = 0;
    int k = 0;
    for (int p = 0; p < m->world_size && len + 16 < cap; p++) {
        if (p == except || !tcp_fd_closed(m->fds[p])) continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", k++ ? ", " : "; the connections to rank(s) ", p);
    }
    if (k && len + 12 < cap) snprintf(buf + len, cap - len, " are closed too");
}

void tcp_mesh_destroy(tcp_mesh *m) {
    if (!m) return;
    for (int p = 0; m->fds && p < m->world_size; p++)
        if (m->fds[p] >= 0) close(m->fds[p]);
    free(m->fds);
    free(m->stage);
    free(m->scratch);
    free(m->pfds);
    free(m->head_send);
    free(m->head_recv);
    free(m->x);
    free(m);
}
