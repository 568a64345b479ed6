/* TCP transport internals (comm_tcp.c algorithms, tcp_transport.c progress
 * engine, tcp_bootstrap.c rendezvous + mesh). Host memory only.
 *
 * Wire format: every message is a 24-byte header (tcp_hdr, host byte order:
 * the ranks must share endianness, as every x86-64/aarch64 node does)
 * followed by hdr.bytes of payload. The receiver knows what it expects
 * (communicator tag, op, sequence number, dtype, bytes) and compares; any
 * difference is a "collective mismatch" error naming both sides. */
#ifndef CLLM_DIST_TCP_INTERNAL_H
#define CLLM_DIST_TCP_INTERNAL_H

#include "dist/comm_internal.h"
#include "dist/dist_env.h"

#include <poll.h>

#define TCP_HDR_MAGIC 0x4d4c4c43u /* "CLLM" */
#define TCP_STAGE_BYTES (256u << 10) /* reduce-on-arrival staging per mesh */

typedef struct tcp_hdr {
    uint32_t magic;
    uint16_t tag;   /* communicator (cllm_comm.tag) */
    uint8_t op;     /* cllm_comm_op */
    uint8_t dtype;  /* cllm_dtype */
    uint64_t seq;   /* collective number, or point-to-point number of the pair */
    uint64_t bytes; /* payload bytes that follow */
} tcp_hdr;
_Static_assert(sizeof(tcp_hdr) == 24, "tcp_hdr is 24 bytes on the wire");

/* The world's connections, shared by the world communicator and every
 * communicator split from it. Indexed by world rank. */
typedef struct tcp_mesh {
    int world_rank, world_size;
    int *fds;                   /* world_size; -1 for this rank */
    double timeout_s;
    atomic_int aborted;
    uint8_t *stage;             /* TCP_STAGE_BYTES: reduce-on-arrival staging */
    uint8_t *scratch;           /* algorithm temporaries (grown on demand) */
    size_t scratch_bytes;
    struct pollfd *pfds;        /* world_size */
    int *head_send, *head_recv; /* world_size: per peer, the first pending transfer of a run */
    struct tcp_xfer *x;         /* 2 * world_size: the transfers of one run */
} tcp_mesh;

/* Per communicator (world or split child). */
typedef struct tcp_comm {
    tcp_mesh *mesh;             /* owned by the world communicator, borrowed by children */
    uint64_t *p2p_sent, *p2p_recvd; /* size: point-to-point messages numbered per pair */
} tcp_comm;

/* One message of a run: a send of buf, or a receive into buf (copy) or
 * combined with local into buf (reduce: buf[i] = local[i] op incoming[i];
 * local may be buf). peer is a world rank. */
typedef struct tcp_xfer {
    int peer;
    bool is_recv;
    tcp_hdr hdr;                /* send: the header to send; recv: the one expected */
    uint8_t *buf;               /* borrowed */
    size_t len;
    const uint8_t *local;       /* recv with reduce, else NULL */
    cllm_reduce_op rop;
    /* progress */
    tcp_hdr got;
    size_t hdr_done, done, stage_fill;
} tcp_xfer;

/* Run the transfers x[0..n) of collective op of c to completion through
 * poll() over non-blocking sockets: every transfer progresses at once, in
 * order per (peer, direction). At most one reduce receive per run. Fails
 * when no byte moves for the mesh timeout. Errors (CLLM_ERR_DISTRIBUTED, message
 * naming this rank, the peer, op and sequence number): peer closed or reset
 * the connection, header mismatch, timeout, abort. */
cllm_status tcp_run(cllm_comm *c, cllm_comm_op op, tcp_xfer *x, int n);

/* Fill a send / receive of a collective of c (header from c->tag/seq). */
void tcp_xfer_send(tcp_xfer *x, const cllm_comm *c, cllm_comm_op op, cllm_dtype dt, int peer, const void *buf,
                   size_t len);
void tcp_xfer_recv(tcp_xfer *x, const cllm_comm *c, cllm_comm_op op, cllm_dtype dt, int peer, void *buf,
                   size_t len, const void *local, cllm_reduce_op rop);

/* Ensure mesh->scratch holds bytes; CLLM_ERR_OOM. */
cllm_status tcp_scratch(tcp_mesh *m, size_t bytes, uint8_t **out);

/* Shut every connection down (both directions) so a poll() blocked on them
 * returns; any thread; idempotent. Does not close. */
void tcp_mesh_abort(tcp_mesh *m);
/* Poll the connections to the world ranks in ranks[0..n) (skipping this
 * one) for POLLRDHUP/HUP/ERR without reading; CLLM_OK or
 * CLLM_ERR_DISTRIBUTED naming the first dead peer. Any thread. */
cllm_status tcp_mesh_check(tcp_mesh *m, const int *ranks, int n, const char *comm_name);
/* True once the other end of fd has closed or reset the connection (poll
 * for POLLRDHUP without reading, so it also sees a close queued behind data
 * not yet read). False for fd < 0. Any thread. */
bool tcp_fd_closed(int fd);
/* List the world ranks whose connection the other side closed into buf
 * (", 2, 3"); empty if none. For error messages. */
void tcp_mesh_closed_peers(tcp_mesh *m, int except, char *buf, size_t cap);
void tcp_mesh_destroy(tcp_mesh *m);

/* Bootstrap (tcp_bootstrap.c): rendezvous at env's address, secret check,
 * full mesh. On success *fds_out (world_size entries, -1 for this rank) are
 * connected, non-blocking sockets with TCP_NODELAY and keepalive; owned by
 * the caller. */
cllm_status tcp_bootstrap(const cllm_dist_env *env, double timeout_s, int **fds_out);

/* Socket helpers shared with dist_env.c (rendezvous listen socket). */
/* Listen on addr (NULL: any) port (0: any), CLOEXEC; *port_out the bound
 * port. Returns the fd or -1 with a CLLM_ERR_DISTRIBUTED message. */
int tcp_listen(const char *addr, int port, int *port_out);

#endif
