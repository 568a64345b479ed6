/* TCP transport: rendezvous and full mesh.
 *
 * 1. Rank 0 listens at the rendezvous address (env->listen_fd, or a socket
 *    it binds on env->init_port, any address). Every rank r > 0 opens its
 *    own listener (any address, port 0), connects to rank 0 (retrying until
 *    the timeout: rank 0 may start later) and sends HELLO {magic, version,
 *    kind, rank, world size, listen port, 32-byte secret}.
 * 2. Rank 0 checks each HELLO: a wrong magic or secret is a stray (logged,
 *    dropped, the wait goes on); a right secret with a bad rank, world size
 *    or a duplicate rank is a launch error. When all have joined it sends
 *    each rank the address table: for every rank, the peer address rank 0
 *    saw (accept's peer address) and its listen port.
 * 3. Mesh: for i < j, j connects to i's listener and sends HELLO (checked
 *    the same way); the link 0-j is the bootstrap connection itself.
 * Every socket gets TCP_NODELAY and short keepalives, so a dead node (not
 * only a dead process) is noticed within ~15 s even while idle. */
#include "dist/tcp_internal.h"

#include "core/clock.h"
#include "core/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC 0x42534c43u /* "CLSB" */
#define HELLO_VERSION 1u
#define HELLO_BYTES (24 + CLLM_DIST_SECRET_BYTES)
#define KIND_BOOT 1u
#define KIND_MESH 2u
#define MAX_PENDING 32
#define HELLO_WAIT_S 5.0 /* an accepted connection must say HELLO within this */

typedef struct hello {
    uint32_t magic, version, kind;
    int32_t rank, world_size;
    uint32_t port;
    uint8_t secret[CLLM_DIST_SECRET_BYTES];
} hello;

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void hello_encode(const hello *h, uint8_t *b) {
    put32(b, h->magic); put32(b + 4, h->version); put32(b + 8, h->kind);
    put32(b + 12, (uint32_t)h->rank); put32(b + 16, (uint32_t)h->world_size); put32(b + 20, h->port);
    memcpy(b + 24, h->secret, CLLM_DIST_SECRET_BYTES);
}
static void hello_decode(const uint8_t *b, hello *h) {
    h->magic = get32(b); h->version = get32(b + 4); h->kind = get32(b + 8);
    h->rank = (int32_t)get32(b + 12); h->world_size = (int32_t)get32(b + 16); h->port = get32(b + 20);
    memcpy(h->secret, b + 24, CLLM_DIST_SECRET_BYTES);
}

/* Constant-time comparison: the time taken does not tell a stray how many
 * leading bytes it got right. */
static bool secret_equal(const uint8_t *a, const uint8_t *b) {
    volatile uint8_t d = 0;
    for (int i = 0; i < CLLM_DIST_SECRET_BYTES; i++) d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

/* ---------------------------------------------------------- socket bits */

static void tune(int fd) {
    int one = 1, idle = 5, intvl = 2, cnt = 4;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static void addr_str(const struct sockaddr_in *a, char *b, size_t cap) {
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(b, cap, "%s:%d", ip, ntohs(a->sin_port));
}

/* A listening socket on sa; -1 with errno set on failure. */
static int listen_on(const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int tcp_listen(const char *addr, int port, int *port_out) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (addr && inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        cllm_error(CLLM_ERR_DISTRIBUTED, "cannot listen on '%s': not an IPv4 address", addr);
        return -1;
    }
    int lo = 0, hi = 0, fd = -1;
    if (port == 0 && cllm_dist_port_range(&lo, &hi) != CLLM_OK) return -1;
    if (port == 0 && lo > 0) { /* the first free port of CLLM_DIST_PORT_RANGE */
        for (int p = lo; p <= hi && fd < 0; p++) {
            sa.sin_port = htons((uint16_t)p);
            fd = listen_on(&sa);
            if (fd < 0 && errno != EADDRINUSE) {
                cllm_error(CLLM_ERR_DISTRIBUTED, "cannot listen on %s:%d (CLLM_DIST_PORT_RANGE): %s",
                           addr ? addr : "0.0.0.0", p, strerror(errno));
                return -1;
            }
        }
        if (fd < 0) {
            cllm_error(CLLM_ERR_DISTRIBUTED,
                       "no free port in CLLM_DIST_PORT_RANGE=%d-%d for this rank's listener (all %d in use): widen "
                       "the range (every rank of a host needs one port)", lo, hi, hi - lo + 1);
            return -1;
        }
    } else if ((fd = listen_on(&sa)) < 0) {
        cllm_error(CLLM_ERR_DISTRIBUTED,
                   "cannot listen on %s:%d: %s (another job using the port? pick another MASTER_PORT)",
                   addr ? addr : "0.0.0.0", port, strerror(errno));
        return -1;
    }
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    if (port_out) *port_out = ntohs(sa.sin_port);
    return fd;
}

/* Write / read exactly n bytes on a blocking-or-not fd before deadline;
 * 0 ok, -1 EOF/error (errno; 0 for EOF), -2 timeout. */
static int io_all(int fd, void *buf, size_t n, bool wr, double deadline) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = wr ? send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) { p += r; n -= (size_t)r; continue; }
        if (r == 0) { errno = 0; return -1; }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
        double left = deadline - cllm_now_s();
        if (left <= 0) return -2;
        struct pollfd pf = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
        poll(&pf, 1, (int)(left * 1000) + 1);
    }
    return 0;
}

/* Connect to rank peer at host:port (IPv4) before deadline, retrying
 * refused/unreachable every 100 ms (the listener may not be up yet); gives up
 * early when rank 0 closes watch_fd (-1: none). fd or -1 (message set). */
static int connect_retry(const char *host, int port, double deadline, int rank, int peer, int watch_fd) {
    char last[160] = "no attempt";
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    do {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        int g = getaddrinfo(host, portstr, &hints, &ai);
        if (g != 0) {
            snprintf(last, sizeof last, "cannot resolve '%s': %s", host, gai_strerror(g));
        } else {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            int r = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
            if (r != 0 && fd >= 0 && errno == EINPROGRESS) {
                double left = deadline - cllm_now_s();
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                int err = ETIMEDOUT;
                socklen_t el = sizeof err;
                if (left > 0 && poll(&pf, 1, (int)((left < 2 ? left : 2) * 1000) + 1) > 0)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                r = err ? -1 : 0;
                errno = err;
            }
            freeaddrinfo(ai);
            if (r == 0) { tune(fd); return fd; }
            snprintf(last, sizeof last, "%s", strerror(errno));
            if (fd >= 0) close(fd);
        }
        if (tcp_fd_closed(watch_fd)) break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    } while (cllm_now_s() < deadline);
    if (peer == 0)
        cllm_error(CLLM_ERR_DISTRIBUTED,
                   "rank %d: could not connect to rank 0 at %s:%d before the timeout (last error: %s); check "
                   "CLLM_DIST_INIT_ADDR / MASTER_ADDR / MASTER_PORT (rank 0's address as this host reaches it), "
                   "that rank 0 is running, and that no firewall between the hosts drops that port",
                   rank, host, port, last);
    else
        cllm_error(CLLM_ERR_DISTRIBUTED,
                   "rank %d: could not connect to rank %d at %s:%d (its listen port) before %s (last error: %s); a "
                   "firewall between the hosts must let the ranks' listen ports through: restrict them with "
                   "CLLM_DIST_PORT_RANGE=LO-HI and open that range (docs/distributed.md, Multi-node)",
                   rank, peer, host, port, tcp_fd_closed(watch_fd) ? "rank 0 gave up" : "the timeout", last);
    return -1;
}

/* ------------------------------------------------------- accept + check */

typedef struct pending_conn {
    int fd;
    double since;
    size_t have;
    uint8_t buf[HELLO_BYTES];
    struct sockaddr_in from;
} pending_conn;

/* Accept connections on lfd until every rank in [lo, hi) has said a valid
 * HELLO of kind; fds[rank] = its connection, ports[rank] its listen port,
 * addrs[rank] the address it came from. Strays (bad magic/secret, silent
 * for HELLO_WAIT_S) are logged and dropped. */
static cllm_status accept_ranks(const cllm_dist_env *env, int lfd, uint32_t kind, int lo, int hi, double deadline,
                                double timeout_s, int *fds, uint32_t *ports, struct sockaddr_in *addrs, int watch_fd) {
    pending_conn pend[MAX_PENDING];
    int np = 0, missing = hi - lo;
    cllm_status st = CLLM_OK;
    while (missing > 0) {
        double now = cllm_now_s();
        bool gone = tcp_fd_closed(watch_fd);
        if (now >= deadline || gone) {
            char list[512];
            size_t len = 0;
            for (int r = lo; r < hi && len + 16 < sizeof list; r++)
                if (fds[r] < 0) len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", len ? ", " : "", r);
            if (kind == KIND_BOOT)
                st = cllm_error(CLLM_ERR_DISTRIBUTED,
                                "rank %d: bootstrap timed out after %.1f s: rank(s) %s of %d did not join (were they "
                                "started with the same rendezvous address %s:%d and CLLM_DIST_SECRET, and does no "
                                "firewall drop that port? raise --dist-timeout if they start slowly)",
                                env->rank, timeout_s, list, env->world_size, env->init_host, env->init_port);
            else
                st = cllm_error(CLLM_ERR_DISTRIBUTED,
                                "rank %d: %s: rank(s) %s of %d did not connect to this rank's listen port (their own "
                                "errors say why: a firewall may drop it; see CLLM_DIST_PORT_RANGE)",
                                env->rank, gone ? "rank 0 gave up the bootstrap" : "bootstrap timed out", list,
                                env->world_size);
            goto done;
        }
        struct pollfd pf[MAX_PENDING + 1];
        pf[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < np; i++) pf[i + 1] = (struct pollfd){.fd = pend[i].fd, .events = POLLIN};
        double left = deadline - now;
        poll(pf, (nfds_t)np + 1, (int)((left < 0.5 ? left : 0.5) * 1000) + 1);
        if (pf[0].revents & POLLIN) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            int fd = accept4(lfd, (struct sockaddr *)&from, &fl, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                if (np == MAX_PENDING) { close(pend[0].fd); pend[0] = pend[--np]; }
                pend[np] = (pending_conn){.fd = fd, .since = cllm_now_s(), .from = from};
                np++;
            }
        }
        for (int i = np - 1; i >= 0; i--) {
            pending_conn *pc = &pend[i];
            char who[64];
            addr_str(&pc->from, who, sizeof who);
            ssize_t r = recv(pc->fd, pc->buf + pc->have, HELLO_BYTES - pc->have, MSG_DONTWAIT);
            if (r > 0) pc->have += (size_t)r;
            bool drop = r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
            if (!drop && pc->have < HELLO_BYTES) {
                if (cllm_now_s() - pc->since > HELLO_WAIT_S) {
                    CLLM_LOG_W("rank %d: dropped a connection from %s that sent no cllm greeting", env->rank, who);
                    drop = true;
                } else continue;
            }
            if (!drop) {
                hello h;
                hello_decode(pc->buf, &h);
                if (h.magic != HELLO_MAGIC || h.version != HELLO_VERSION || h.kind != kind ||
                    !secret_equal(h.secret, env->secret)) {
                    CLLM_LOG_W("rank %d: rejected a connection from %s: %s (a process of another job?); still "
                               "waiting for the ranks of this one",
                               env->rank, who, h.magic != HELLO_MAGIC ? "not a cllm rank" : "wrong session secret");
                    drop = true;
                } else if (h.world_size != env->world_size || h.rank < lo || h.rank >= hi || fds[h.rank] >= 0) {
                    st = cllm_error(CLLM_ERR_DISTRIBUTED,
                                    "rank %d: a process from %s claims rank %d of world size %d, but this world has "
                                    "%d ranks%s: check that the launcher gives every process its own rank and the "
                                    "same world size",
                                    env->rank, who, h.rank, h.world_size, env->world_size,
                                    h.rank >= lo && h.rank < hi && fds[h.rank] >= 0 ? " and that rank already joined"
                                                                                  : "");
                    goto done;
                } else {
                    fds[h.rank] = pc->fd;
                    tune(pc->fd);
                    ports[h.rank] = h.port;
                    addrs[h.rank] = pc->from;
                    missing--;
                    CLLM_LOG_D("rank %d: rank %d joined from %s", env->rank, h.rank, who);
                    pend[i] = pend[--np];
                    continue;
                }
            }
            close(pc->fd);
            pend[i] = pend[--np];
        }
    }
done:
    for (int i = 0; i < np; i++) close(pend[i].fd);
    return st;
}

/* ------------------------------------------------------------ bootstrap */

static cllm_status send_hello(int fd, const cllm_dist_env *env, uint32_t kind, uint32_t port, double deadline) {
    hello h = {HELLO_MAGIC, HELLO_VERSION, kind, env->rank, env->world_size, port, {0}};
    memcpy(h.secret, env->secret, sizeof h.secret);
    uint8_t b[HELLO_BYTES];
    hello_encode(&h, b);
    if (io_all(fd, b, sizeof b, true, deadline) != 0)
        return cllm_error(CLLM_ERR_DISTRIBUTED, "rank %d: sending the bootstrap greeting failed: %s", env->rank,
                          strerror(errno));
    return CLLM_OK;
}

static cllm_status boot_rank0(const cllm_dist_env *env, double timeout_s, double deadline, int *fds, uint32_t *ports,
                              struct sockaddr_in *addrs, uint8_t *table) {
    int W = env->world_size, lfd = env->listen_fd, own = lfd < 0;
    if (own && (lfd = tcp_listen(NULL, env->init_port, NULL)) < 0) return CLLM_ERR_DISTRIBUTED;
    cllm_status st = accept_ranks(env, lfd, KIND_BOOT, 1, W, deadline, timeout_s, fds, ports, addrs, -1);
    if (own) close(lfd);
    CLLM_TRY(st);
    for (int r = 1; r < W; r++) { /* address as rank 0 saw it, port the rank listens on */
        memcpy(table + 8 * r, &addrs[r].sin_addr.s_addr, 4);
        put32(table + 8 * r + 4, ports[r]);
    }
    for (int r = 1; r < W; r++)
        if (io_all(fds[r], table, (size_t)W * 8, true, deadline) != 0)
            return cllm_error(CLLM_ERR_DISTRIBUTED, "rank 0: sending the address table to rank %d failed: %s", r,
                              errno ? strerror(errno) : "timeout");
    return CLLM_OK;
}

static cllm_status boot_rank(const cllm_dist_env *env, double timeout_s, double deadline, int *fds, uint32_t *ports,
                             struct sockaddr_in *addrs, uint8_t *table) {
    int W = env->world_size, me = env->rank, port = 0;
    int lfd = tcp_listen(NULL, 0, &port);
    if (lfd < 0) return CLLM_ERR_DISTRIBUTED;
    cllm_status st = CLLM_ERR_DISTRIBUTED;
    if ((fds[0] = connect_retry(env->init_host, env->init_port, deadline, me, 0, -1)) < 0) goto fail;
    CLLM_TRY_GOTO(st, send_hello(fds[0], env, KIND_BOOT, (uint32_t)port, deadline), fail);
    int r = io_all(fds[0], table, (size_t)W * 8, false, deadline);
    if (r != 0) {
        st = cllm_error(CLLM_ERR_DISTRIBUTED,
                        r == -2 ? "rank %d: joined rank 0 at %s:%d but the other ranks did not all join within %.1f "
                                  "s (rank 0's error names them)"
                                : "rank %d: rank 0 at %s:%d closed the connection during the bootstrap (%.0f s "
                                  "timeout): it rejected this process (wrong CLLM_DIST_SECRET, rank or world size; "
                                  "see rank 0's log) or it failed",
                        me, env->init_host, env->init_port, timeout_s);
        goto fail;
    }
    for (int p = 1; p < me; p++) { /* connect to the lower ranks' listeners */
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, table + 8 * p, ip, sizeof ip);
        if ((fds[p] = connect_retry(ip, (int)get32(table + 8 * p + 4), deadline, me, p, fds[0])) < 0) {
            st = CLLM_ERR_DISTRIBUTED; /* not the status of the last send_hello */
            goto fail;
        }
        CLLM_TRY_GOTO(st, send_hello(fds[p], env, KIND_MESH, (uint32_t)port, deadline), fail);
    }
    CLLM_TRY_GOTO(st, accept_ranks(env, lfd, KIND_MESH, me + 1, W, deadline, timeout_s, fds, ports, addrs, fds[0]),
                  fail);
    st = CLLM_OK;
fail:
    close(lfd);
    return st;
}

cllm_status tcp_bootstrap(const cllm_dist_env *env, double timeout_s, int **fds_out) {
    int W = env->world_size;
    *fds_out = NULL;
    int *fds = cllm_malloc(sizeof(int) * (size_t)W);
    uint32_t *ports = cllm_calloc((size_t)W, sizeof *ports);           /* each rank's listen port */
    struct sockaddr_in *addrs = cllm_calloc((size_t)W, sizeof *addrs); /* where its connection came from */
    uint8_t *table = cllm_calloc((size_t)W, 8);                       /* rank 0's address table: IPv4, port */
    cllm_status st = CLLM_ERR_OOM;
    if (fds && ports && addrs && table) {
        for (int r = 0; r < W; r++) fds[r] = -1;
        double deadline = cllm_now_s() + timeout_s;
        st = env->rank == 0 ? boot_rank0(env, timeout_s, deadline, fds, ports, addrs, table)
                            : boot_rank(env, timeout_s, deadline, fds, ports, addrs, table);
    }
    free(ports);
    free(addrs);
    free(table);
    if (st != CLLM_OK) {
        for (int r = 0; fds && r < W; r++)
            if (fds[r] >= 0) close(fds[r]);
        free(fds);
        return st;
    }
    *fds_out = fds;
    return CLLM_OK;
}
