/* The front door under many connections: starts `cllm serve` (CPU, the given
 * model), opens --connections connections at once, mixed
 *   idle       connect and send nothing (reconnect when the server closes one:
 *              --timeout-keep-alive),
 *   slowloris  send a request head one byte per second (reconnect when the
 *              server answers 408 and closes: --timeout-request-read),
 *   streaming  POST /v1/completions with stream:true, read every chunk, send the
 *              next request on the same connection when one ends,
 * and, while they are held, probes on fresh connections every --probe-ms:
 * GET /health and a short completion (max_tokens 4), alternately, each timed
 * from connect() to the last byte of its answer. Prints the probes' p50/p99/
 * max beside the 50 ms target, the server's RSS, thread count and open fds
 * (from /proc), and what the load generator saw; --json FILE writes them too.
 * A benchmark program (CONVENTIONS 12), not a test.
 *
 *   build/bench_http_connections --cllm build/cllm --model models/stories260K \
 *       [--connections 10000] [--streams 200] [--slowloris 2000] [--seconds 20] [--probe-ms 50] \
 *       [--json out.json] [-- extra cllm serve flags]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { K_IDLE, K_LORIS, K_STREAM };
typedef struct client {
    int fd, kind, sent;       /* sent: head bytes sent (slowloris) */
    double next_s;            /* slowloris: next byte */
    int src;                  /* source address 127.0.0.src */
    size_t got;               /* stream: bytes of the current answer */
    char tail[8];             /* last bytes (stream end detection) */
} client;

static int g_port;
static int g_probe_ms = 50;
static volatile int g_stop;
static long g_reconnects[3], g_streams_done, g_stream_bytes, g_connect_fail;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int open_conn(int src, bool nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x7f000000u | (unsigned)src);
    if (bind(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    s.sin_addr.s_addr = htonl(0x7f000001u);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&s, sizeof s) && errno != EINPROGRESS) { close(fd); return -1; }
    return fd;
}

static const char *STREAM_REQ_FMT =
    "POST /v1/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s";
static const char *STREAM_BODY =
    "{\"prompt\":\"Once upon a time\",\"max_tokens\":200,\"ignore_eos\":true,\"stream\":true,\"temperature\":0.8}";
static const char *LORIS_HEAD = "POST /v1/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nX-Pad: "
                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void start_client(int ep, client *c) {
    c->fd = open_conn(c->src, true);
    c->sent = 0;
    c->got = 0;
    c->next_s = now_s() + 1.0;
    memset(c->tail, 0, sizeof c->tail);
    if (c->fd < 0) { g_connect_fail++; return; }
    struct epoll_event ev = {.events = EPOLLIN | (c->kind == K_STREAM ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void stream_request(client *c) {
    char req[512];
    int n = snprintf(req, sizeof req, STREAM_REQ_FMT, strlen(STREAM_BODY), STREAM_BODY);
    send_all(c->fd, req, (size_t)n);
    c->got = 0;
}

/* ------------------------------------------------------------------ probes */
typedef struct probes {
    double *ms;
    int n, cap, fail;
} probes;

static double probe_once(const char *req, size_t len, int src) {
    double t0 = now_s();
    int fd = open_conn(src, false);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    send_all(fd, req, len);
    char buf[8192];
    size_t got = 0, need = (size_t)-1, head = 0;
    for (;;) { /* Content-Length answers, "Connection: close" sent: read to EOF or to the length */
        ssize_t r = recv(fd, buf + (got < sizeof buf ? got : 0), got < sizeof buf ? sizeof buf - got : sizeof buf, 0);
        if (r <= 0) break;
        got += (size_t)r;
        if (!head && got < sizeof buf) {
            char *e = memmem(buf, got, "\r\n\r\n", 4);
            if (e) {
                head = (size_t)(e - buf) + 4;
                char *cl = memmem(buf, head, "Content-Length: ", 16);
                if (cl) need = head + (size_t)atol(cl + 16);
                if (strncmp(buf, "HTTP/1.1 200", 12)) { close(fd); return -1; }
            }
        }
        if (head && got >= need) break;
    }
    close(fd);
    return head && got >= need ? (now_s() - t0) * 1e3 : -1;
}

static void *probe_main(void *arg) {
    probes *pr = arg;
    const char *health = "GET /health HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    const char *body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":4,\"temperature\":0}";
    char comp[512];
    int n = snprintf(comp, sizeof comp,
                     "POST /v1/completions HTTP/1.1\r\nHost: p\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
    for (int i = 0; !g_stop; i++) {
        double ms = i % 2 ? probe_once(comp, (size_t)n, 250) : probe_once(health, strlen(health), 250);
        if (ms < 0) pr[i % 2].fail++;
        else if (pr[i % 2].n < pr[i % 2].cap) pr[i % 2].ms[pr[i % 2].n++] = ms;
        usleep((useconds_t)g_probe_ms * 1000);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double pct(double *v, int n, double p) {
    if (!n) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double r = p / 100.0 * (n - 1);
    int i = (int)r;
    return i + 1 < n ? v[i] + (r - i) * (v[i + 1] - v[i]) : v[n - 1];
}

/* ------------------------------------------------------------------ server */
static pid_t start_server(const char *cllm, const char *model, char **extra, int n_extra) {
    int p[2];
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        const char *argv[64] = {cllm, "serve", "--model", model, "--port", "0", "--num-threads", "1"};
        int k = 8;
        for (int i = 0; i < n_extra && k < 62; i++) argv[k++] = extra[i];
        argv[k] = NULL;
        execv(cllm, (char **)argv);
        _exit(127);
    }
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *at = strstr(line, "listening on http://");
        if (at && (at = strrchr(at, ':'))) { g_port = atoi(at + 1); break; }
    }
    if (fork() == 0) { /* drain the server's log so it never blocks on a full pipe */
        while (fgets(line, sizeof line, f)) {}
        _exit(0);
    }
    fclose(f);
    for (int i = 0; i < 600 && g_port; i++) {
        const char *h = "GET /health HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
        if (probe_once(h, strlen(h), 1) >= 0) return pid;
        usleep(100 * 1000);
    }
    return -1;
}

static long proc_field(pid_t pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key));
    if (f) fclose(f);
    return v;
}

static long count_fds(pid_t pid) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "ls /proc/%d/fd | wc -l", (int)pid);
    FILE *f = popen(cmd, "r");
    long n = -1;
    if (f && fscanf(f, "%ld", &n) != 1) n = -1;
    if (f) pclose(f);
    return n;
}

int main(int argc, char **argv) {
    const char *cllm = "build/cllm", *model = "models/stories260K", *json = NULL;
    int conns = 10000, streams = 200, loris = 2000, seconds = 20;
    char **extra = NULL;
    int n_extra = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--")) { extra = argv + i + 1; n_extra = argc - i - 1; break; }
        if (!v) { fprintf(stderr, "%s needs a value\n", a); return 2; }
        if (!strcmp(a, "--cllm")) cllm = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--connections")) conns = atoi(v);
        else if (!strcmp(a, "--streams")) streams = atoi(v);
        else if (!strcmp(a, "--slowloris")) loris = atoi(v);
        else if (!strcmp(a, "--seconds")) seconds = atoi(v);
        else if (!strcmp(a, "--probe-ms")) g_probe_ms = atoi(v);
        else if (!strcmp(a, "--json")) json = v;
        else { fprintf(stderr, "unknown flag %s\n", a); return 2; }
        i++;
    }
    if (streams + loris > conns) { fprintf(stderr, "--streams + --slowloris must be <= --connections\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    pid_t srv = start_server(cllm, model, extra, n_extra);
    if (srv < 0) { fprintf(stderr, "cllm serve did not start\n"); return 1; }
    long rss0 = proc_field(srv, "VmRSS:"), thr0 = proc_field(srv, "Threads:");
    int ep = epoll_create1(0);
    client *cl = calloc((size_t)conns, sizeof *cl);
    for (int i = 0; i < conns; i++) {
        cl[i].kind = i < streams ? K_STREAM : i < streams + loris ? K_LORIS : K_IDLE;
        cl[i].src = 2 + i % 200; /* 200 client addresses */
        start_client(ep, &cl[i]);
    }
    probes pr[2];
    for (int k = 0; k < 2; k++) pr[k] = (probes){.ms = calloc(100000, sizeof(double)), .cap = 100000};
    pthread_t pt;
    double t_start = now_s(), t_probe = t_start + 3.0; /* probes start once the connections are up */
    bool probing = false;
    double t_scan = 0, t_sample = 0;
    long max_fds = 0, max_thr = 0, max_rss = 0;
    struct epoll_event evs[256];
    char buf[65536];
    while (now_s() - t_start < seconds + 3.0) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < n; e++) {
            client *c = evs[e].data.ptr;
            if (c->kind == K_STREAM && (evs[e].events & EPOLLOUT)) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                stream_request(c);
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            if (r <= 0) { /* closed by the server: reconnect */
                if (r < 0 && errno == EAGAIN) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                g_reconnects[c->kind]++;
                start_client(ep, c);
                continue;
            }
            if (c->kind == K_STREAM) {
                g_stream_bytes += r;
                size_t k = (size_t)r < 7 ? (size_t)r : 7;
                memmove(c->tail, c->tail + k, 7 - k);
                memcpy(c->tail + 7 - k, buf + r - (ssize_t)k, k);
                if (!memcmp(c->tail + 2, "0\r\n\r\n", 5)) { g_streams_done++; stream_request(c); }
            }
        }
        double t = now_s();
        if (t < t_scan) continue;
        t_scan = t + 0.1; /* the scans below run ten times a second, not per event */
        for (int i = 0; i < conns; i++) { /* slowloris: one byte a second */
            client *c = &cl[i];
            if (c->kind != K_LORIS || c->fd < 0 || t < c->next_s) continue;
            if (c->sent < (int)strlen(LORIS_HEAD)) send_all(c->fd, LORIS_HEAD + c->sent, 1);
            c->sent++;
            c->next_s = t + 1.0;
        }
        for (int i = 0; i < conns; i++)
            if (cl[i].fd < 0) start_client(ep, &cl[i]);
        if (!probing && t >= t_probe) {
            pthread_create(&pt, NULL, probe_main, pr);
            probing = true;
        }
        if (probing && t >= t_sample) {
            t_sample = t + 1.0;
            long f = count_fds(srv), th = proc_field(srv, "Threads:"), rs = proc_field(srv, "VmRSS:");
            if (f > max_fds) max_fds = f;
            if (th > max_thr) max_thr = th;
            if (rs > max_rss) max_rss = rs;
        }
    }
    g_stop = 1;
    if (probing) pthread_join(pt, NULL);
    for (int i = 0; i < conns; i++) if (cl[i].fd >= 0) close(cl[i].fd);
    kill(srv, SIGTERM);
    int status = 0;
    waitpid(srv, &status, 0);
    const char *names[2] = {"GET /health", "short completion (max_tokens 4)"};
    printf("bench_http_connections: %d connections held (%d idle, %d slowloris, %d streaming), %d s of probes "
           "every %d ms, server on %d client addresses\n", conns, conns - streams - loris, loris, streams, seconds,
           g_probe_ms, 200);
    printf("| probe | n | failed | p50 ms | p99 ms | max ms | target p99 |\n|---|---|---|---|---|---|---|\n");
    double p99[2], p50[2], mx[2];
    for (int k = 0; k < 2; k++) {
        int n = pr[k].n;
        p50[k] = pct(pr[k].ms, n, 50);
        p99[k] = pct(pr[k].ms, n, 99);
        mx[k] = n ? pr[k].ms[n - 1] : NAN;
        printf("| %s | %d | %d | %.1f | %.1f | %.1f | 50 ms (%s) |\n", names[k], n, pr[k].fail, p50[k], p99[k], mx[k],
               p99[k] <= 50 ? "met" : "MISSED");
    }
    printf("| server | idle | under load (max) |\n|---|---|---|\n");
    printf("| RSS MB | %.1f | %.1f |\n| threads | %ld | %ld |\n| open fds | - | %ld |\n", rss0 / 1024.0,
           max_rss / 1024.0, thr0, max_thr, max_fds);
    printf("load generator: reconnects idle %ld, slowloris %ld, streams %ld; streams completed %ld (%.1f MB of SSE); "
           "connect failures %ld; server exit status %d\n", g_reconnects[K_IDLE], g_reconnects[K_LORIS],
           g_reconnects[K_STREAM], g_streams_done, g_stream_bytes / 1e6, g_connect_fail,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f, "{\"connections\": %d, \"idle\": %d, \"slowloris\": %d, \"streams\": %d, \"seconds\": %d,\n"
                       " \"health_ms\": {\"n\": %d, \"failed\": %d, \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f},\n"
                       " \"completion_ms\": {\"n\": %d, \"failed\": %d, \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f},\n"
                       " \"rss_mb_idle\": %.1f, \"rss_mb_max\": %.1f, \"threads_idle\": %ld, \"threads_max\": %ld,"
                       " \"fds_max\": %ld, \"streams_completed\": %ld}\n",
                    conns, conns - streams - loris, loris, streams, seconds, pr[0].n, pr[0].fail, p50[0], p99[0],
                    mx[0], pr[1].n, pr[1].fail, p50[1], p99[1], mx[1], rss0 / 1024.0, max_rss / 1024.0, thr0, max_thr,
                    max_fds, g_streams_done);
            fclose(f);
        }
    }
    return 0;
}
