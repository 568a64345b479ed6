/* Data-parallel replicas on one node (cllm serve --data-parallel-size N,
 * vLLM's flag): the router starts N child `cllm serve` processes itself.
 *
 * Each replica listens on a loopback socket that the router binds once and
 * keeps (the child gets it as fd 3: `--listen-fd 3`), so a restarted
 * replica has the same URL and nothing else can take its port in between.
 * A replica's stdout and stderr come through the router, each line prefixed
 * "[dpI] ". The children watch the router (`--parent-pid`: they exit when
 * it is gone, even after a SIGKILL). A replica that exits is taken out of
 * the rotation at once (before any health check), reported, and restarted
 * after 0.5 s, doubling up to 30 s while it keeps failing (back to 0.5 s
 * after a minute up); its health check puts it back. A replica that exits
 * before it was ever healthy (a bad model, no memory) stops the router with
 * its exit status. On CUDA, replica i gets the GPUs [i*g, (i+1)*g) of the
 * inherited CUDA_VISIBLE_DEVICES (or of 0..) with g = tp x pp.
 *
 * Processes, pipes and timers are libuv handles on the router's loop
 * (uv_spawn: fork/exec with the child watcher on SIGCHLD). */
#include "router/router_internal.h"

#include "core/status.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

#define BACKOFF_MIN_S 0.5
#define BACKOFF_MAX_S 30.0
#define STABLE_S 60.0

typedef struct rt_child rt_child;

typedef struct rt_pipe {
    uv_pipe_t pipe;
    rt_child *child;
    char line[2048];
    size_t len;
} rt_pipe;

struct rt_child {
    cllm_router *r;
    rt_replica *rep;
    int index;
    int fd;                  /* the listening socket, kept across restarts */
    char devices[256];       /* CUDA_VISIBLE_DEVICES, "" when not set */
    uv_process_t *proc;      /* the running process, or NULL */
    int pid;
    int open_pipes;          /* output pipes not yet closed */
    uv_timer_t timer;        /* restart backoff; at stop, the SIGKILL deadline */
    bool timer_init;
    int restarts;
    int failures_in_row;
    double started_at;
};

typedef struct rt_dp {
    rt_child *kids;          /* (n) */
    int n;
    char exe[4096];
    bool stopping;
} rt_dp;

int rt_dp_pid(const rt_replica *rep) { return rep->child ? rep->child->pid : 0; }
int rt_dp_restarts(const rt_replica *rep) { return rep->child ? rep->child->restarts : 0; }

cllm_status cllm_router_replica_devices(const char *visible, int replica, int per, char *out, size_t size) {
    out[0] = 0;
    if (per <= 0 || replica < 0) return cllm_error(CLLM_ERR_INVALID_ARG, "GPUs per replica must be > 0");
    int first = replica * per;
    size_t n = 0;
    if (!visible || !visible[0]) {
        for (int k = 0; k < per; k++) {
            int w = snprintf(out + n, size - n, "%s%d", k ? "," : "", first + k);
            if (w < 0 || (size_t)w >= size - n) return cllm_error(CLLM_ERR_INVALID_ARG, "too many GPUs per replica");
            n += (size_t)w;
        }
        return CLLM_OK;
    }
    int idx = 0, taken = 0;
    const char *s = visible;
    while (*s && taken < per) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (idx >= first && len) {
            if (n + len + 2 > size) return cllm_error(CLLM_ERR_INVALID_ARG, "CUDA_VISIBLE_DEVICES is too long");
            if (taken) out[n++] = ',';
            memcpy(out + n, s, len);
            n += len;
            out[n] = 0;
            taken++;
        }
        if (len) idx++;
        if (!e) break;
        s = e + 1;
    }
    if (taken < per)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "CUDA_VISIBLE_DEVICES='%s' lists %d device(s): data-parallel replica %d needs devices "
                          "%d..%d (each replica takes tensor_parallel_size x pipeline_parallel_size = %d)",
                          visible, idx, replica, first, first + per - 1, per);
    return CLLM_OK;
}

/* A loopback socket bound to a free port, listening. */
static cllm_status bind_loopback(int *fd_out, int *port_out) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return cllm_error(CLLM_ERR_IO, "cannot create a replica's socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, SOMAXCONN) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        int e = errno;
        close(fd);
        return cllm_error(CLLM_ERR_IO, "cannot bind a replica's loopback socket: %s", strerror(e));
    }
    *fd_out = fd;
    *port_out = ntohs(a.sin_port);
    return CLLM_OK;
}

cllm_status rt_dp_create(cllm_router *r) {
    rt_dp *dp = calloc(1, sizeof *dp);
    if (!dp) return cllm_error(CLLM_ERR_OOM, "out of memory");
    r->dp = dp;
    dp->n = r->n_reps;
    if (!(dp->kids = calloc((size_t)dp->n, sizeof *dp->kids))) return cllm_error(CLLM_ERR_OOM, "out of memory");
    for (int i = 0; i < dp->n; i++) dp->kids[i].fd = -1;
    if (r->p.exe) {
        snprintf(dp->exe, sizeof dp->exe, "%s", r->p.exe);
    } else {
        ssize_t n = readlink("/proc/self/exe", dp->exe, sizeof dp->exe - 1);
        if (n <= 0) return cllm_error(CLLM_ERR_IO, "cannot find the cllm program (/proc/self/exe): %s", strerror(errno));
        dp->exe[n] = 0;
    }
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    for (int i = 0; i < dp->n; i++) {
        rt_child *c = &dp->kids[i];
        c->r = r;
        c->index = i;
        c->rep = &r->reps[i];
        r->reps[i].child = c;
        if (r->p.gpus_per_replica > 0)
            CLLM_TRY(cllm_router_replica_devices(visible, i, r->p.gpus_per_replica, c->devices, sizeof c->devices));
        int port = 0;
        CLLM_TRY(bind_loopback(&c->fd, &port));
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
        if (!(r->reps[i].url = strdup(url))) return cllm_error(CLLM_ERR_OOM, "out of memory");
    }
    return CLLM_OK;
}

/* ------------------------------------------------------------ output */
static void emit_line(rt_child *c, const char *s, size_t n) {
    fprintf(stderr, "[dp%d] %.*s\n", c->index, (int)n, s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    rt_pipe *p = h->data;
    (void)suggested;
    if (p->len >= sizeof p->line) { /* a very long line: out in pieces */
        emit_line(p->child, p->line, p->len);
        p->len = 0;
    }
    *b = uv_buf_init(p->line + p->len, (unsigned)(sizeof p->line - p->len));
}

static void pipe_closed(uv_handle_t *h) {
    rt_pipe *p = h->data;
    p->child->open_pipes--;
    free(p);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    rt_pipe *p = st->data;
    (void)b;
    if (nread < 0) { /* EOF: the child closed its end (it exited) */
        if (p->len) emit_line(p->child, p->line, p->len);
        p->len = 0;
        uv_close((uv_handle_t *)&p->pipe, pipe_closed);
        return;
    }
    p->len += (size_t)nread;
    size_t start = 0;
    for (size_t i = 0; i < p->len; i++)
        if (p->line[i] == '\n') {
            emit_line(p->child, p->line + start, i - start);
            start = i + 1;
        }
    memmove(p->line, p->line + start, p->len - start);
    p->len -= start;
    fflush(stderr);
}

/* ------------------------------------------------------------ processes */
static void spawn(rt_child *c);

static void on_restart_timer(uv_timer_t *t) {
    rt_child *c = t->data;
    if (c->r->dp->stopping || c->proc) return;
    c->restarts++;
    spawn(c);
}

static void proc_closed(uv_handle_t *h) { free(h); }

static void child_exited(uv_process_t *proc, int64_t status, int sig) {
    rt_child *c = proc->data;
    cllm_router *r = c->r;
    double up = rt_now() - c->started_at;
    int pid = c->pid;
    c->proc = NULL;
    c->pid = 0;
    uv_close((uv_handle_t *)proc, proc_closed);
    char how[96];
    if (sig) snprintf(how, sizeof how, "was killed by signal %d (%s)", sig, strsignal(sig));
    else snprintf(how, sizeof how, "exited with status %lld", (long long)status);
    if (r->dp->stopping) {
        cllm_log(CLLM_LOG_INFO, "router: replica %d (pid %d) %s", c->index, pid, how);
        if (c->timer_init && !uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, NULL);
        return;
    }
    char why[200];
    snprintf(why, sizeof why, "its process (pid %d) %s", pid, how);
    rt_replica_set_health(r, c->rep, false, false, why); /* out of the rotation now, not at the next check */
    if (!c->rep->ever_healthy && c->restarts == 0) {
        char msg[sizeof r->fail_msg];
        snprintf(msg, sizeof msg, "data-parallel replica %d (pid %d) %s before it was ever healthy: see its log lines "
                 "above, prefixed [dp%d]", c->index, pid, how, c->index);
        cllm_log(CLLM_LOG_ERROR, "%s", msg);
        rt_fail(r, msg);
        return;
    }
    if (up >= STABLE_S) c->failures_in_row = 0;
    double delay = BACKOFF_MIN_S;
    for (int k = 0; k < c->failures_in_row && delay < BACKOFF_MAX_S; k++) delay *= 2;
    if (delay > BACKOFF_MAX_S) delay = BACKOFF_MAX_S;
    c->failures_in_row++;
    cllm_log(CLLM_LOG_WARN, "router: replica %d (pid %d) %s after %.1f s; restarting it in %.1f s", c->index, pid, how,
             up, delay);
    uv_timer_start(&c->timer, on_restart_timer, (uint64_t)(delay * 1000), 0);
}

/* environ with CUDA_VISIBLE_DEVICES replaced (strings borrowed but the new one). */
static char **child_env(const rt_child *c, char *cvd) {
    int n = 0;
    while (environ[n]) n++;
    char **e = calloc((size_t)n + 2, sizeof *e);
    if (!e) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strncmp(environ[i], "CUDA_VISIBLE_DEVICES=", 21)) e[k++] = environ[i];
    snprintf(cvd, 300, "CUDA_VISIBLE_DEVICES=%s", c->devices);
    e[k++] = cvd;
    return e;
}

static bool open_pipe(rt_child *c, uv_stdio_container_t *io) {
    rt_pipe *p = calloc(1, sizeof *p);
    if (!p) return false;
    p->child = c;
    uv_pipe_init(&c->r->loop, &p->pipe, 0);
    p->pipe.data = p;
    io->flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE; /* the child writes */
    io->data.stream = (uv_stream_t *)&p->pipe;
    return true;
}

static void spawn(rt_child *c) {
    cllm_router *r = c->r;
    rt_dp *dp = r->dp;
    int argc = r->p.replica_argc;
    const char **argv = calloc((size_t)argc + 16, sizeof *argv);
    char ppid[24], cvd[300];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    char **env = c->devices[0] ? child_env(c, cvd) : NULL;
    uv_process_t *proc = calloc(1, sizeof *proc);
    uv_stdio_container_t io[4] = {{.flags = UV_IGNORE}};
    bool ok = argv && proc && (!c->devices[0] || env) && open_pipe(c, &io[1]) && open_pipe(c, &io[2]);
    int rc = UV_ENOMEM;
    bool spawned = false;
    if (ok) {
        int k = 0;
        argv[k++] = dp->exe;
        argv[k++] = "serve";
        for (int i = 0; i < argc; i++) argv[k++] = r->p.replica_args[i];
        const char *tail[] = {"--host", "127.0.0.1", "--port", "0", "--listen-fd", "3", "--parent-pid", ppid};
        for (size_t i = 0; i < sizeof tail / sizeof *tail; i++) argv[k++] = tail[i];
        argv[k] = NULL;
        io[3].flags = UV_INHERIT_FD;
        io[3].data.fd = c->fd;
        uv_process_options_t o = {.file = dp->exe, .args = (char **)argv, .env = env, .exit_cb = child_exited,
                                  .stdio_count = 4, .stdio = io};
        proc->data = c;
        rc = uv_spawn(&r->loop, proc, &o);
        spawned = true; /* initialised even when it failed: closed below */
    }
    for (int i = 1; i <= 2; i++) { /* start reading what the child writes, or drop the pipes */
        if (!(io[i].flags & UV_CREATE_PIPE)) continue;
        rt_pipe *p = (rt_pipe *)io[i].data.stream;
        c->open_pipes++;
        if (rc == 0 && !uv_read_start((uv_stream_t *)&p->pipe, on_alloc, on_read)) continue;
        uv_close((uv_handle_t *)&p->pipe, pipe_closed);
    }
    free(argv);
    free(env);
    if (rc != 0) {
        if (spawned) uv_close((uv_handle_t *)proc, proc_closed);
        else free(proc);
        char msg[sizeof r->fail_msg];
        snprintf(msg, sizeof msg, "cannot start data-parallel replica %d (%.200s): %s", c->index, dp->exe,
                 uv_strerror(rc));
        cllm_log(CLLM_LOG_ERROR, "%s", msg);
        rt_fail(r, msg);
        return;
    }
    c->proc = proc;
    c->pid = proc->pid;
    c->started_at = rt_now();
    cllm_log(CLLM_LOG_INFO, "router: replica %d (pid %d) started on %s%s%s", c->index, c->pid, c->rep->url,
             c->devices[0] ? ", CUDA_VISIBLE_DEVICES=" : "", c->devices);
}

void rt_dp_spawn_all(cllm_router *r) {
    for (int i = 0; i < r->dp->n; i++) {
        rt_child *c = &r->dp->kids[i];
        uv_timer_init(&r->loop, &c->timer);
        c->timer.data = c;
        c->timer_init = true;
        spawn(c);
    }
}

static void on_kill_timer(uv_timer_t *t) {
    rt_child *c = t->data;
    if (c->proc) {
        cllm_log(CLLM_LOG_WARN, "router: replica %d (pid %d) did not stop; killing it", c->index, c->pid);
        uv_process_kill(c->proc, SIGKILL);
    }
    if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, NULL);
}

void rt_dp_stop(cllm_router *r) {
    rt_dp *dp = r->dp;
    dp->stopping = true;
    for (int i = 0; i < dp->n; i++) {
        rt_child *c = &dp->kids[i];
        if (!c->timer_init) continue;
        uv_timer_stop(&c->timer);
        if (c->proc) {
            uv_process_kill(c->proc, SIGTERM);
            uv_timer_start(&c->timer, on_kill_timer, (uint64_t)((r->p.shutdown_timeout_s + 5) * 1000), 0);
            uv_unref((uv_handle_t *)&c->timer); /* the process handle keeps the loop; the timer alone does not */
        } else {
            uv_close((uv_handle_t *)&c->timer, NULL);
        }
    }
}

void rt_dp_destroy(cllm_router *r) {
    rt_dp *dp = r->dp;
    for (int i = 0; i < dp->n; i++) {
        rt_child *c = &dp->kids[i];
        if (c->proc) { /* the loop ended with a child left (cannot happen after rt_dp_stop); do not leave it */
            kill(c->pid, SIGKILL);
        }
        if (c->fd >= 0) close(c->fd);
        if (c->rep) c->rep->child = NULL;
    }
    free(dp->kids);
    free(dp);
    r->dp = NULL;
}
