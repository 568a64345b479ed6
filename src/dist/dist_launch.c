/* Self-launch of the local worker processes and their monitoring (see
 * dist_env.h). posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK) + exec)
 * is safe in a process that already runs threads, unlike fork(); every
 * string the child needs is built before the spawn. Each worker is told its
 * rank and the rendezvous through CLLM_DIST_* variables, and watches its
 * parent (getppid) so no worker outlives a crashed rank 0. */
#include "dist/dist_env.h"

#include "core/clock.h"
#include "core/status.h"
#include "dist/tcp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define NUM_VARS 7

/* environ without CLLM_DIST_* entries (but CLLM_DIST_PORT_RANGE, which
 * applies to every rank), with room for NUM_VARS more + NULL. The strings
 * are borrowed from environ. */
static char **env_base(int *n_out) {
    int n = 0;
    while (environ[n]) n++;
    char **e = cllm_malloc(sizeof(char *) * (size_t)(n + NUM_VARS + 1));
    if (!e) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strncmp(environ[i], "CLLM_DIST_", 10) != 0 || !strncmp(environ[i], "CLLM_DIST_PORT_RANGE=", 21))
            e[k++] = environ[i];
    *n_out = k;
    return e;
}

static void kill_and_reap(cllm_dist_env *env) {
    for (int r = 1; r < CLLM_DIST_MAX_LOCAL; r++)
        if (env->child_pids[r] > 0) {
            kill(env->child_pids[r], SIGKILL);
            waitpid(env->child_pids[r], NULL, 0);
            env->child_pids[r] = 0;
        }
    env->num_children = 0;
}

cllm_status cllm_dist_launch_local(cllm_dist_env *env, int world_size, const char *exe, char *const argv[]) {
    if (!env || !argv || !argv[0]) return cllm_error(CLLM_ERR_INVALID_ARG, "cllm_dist_launch_local: NULL env or argv");
    if (strcmp(env->launcher, "single") != 0 || env->world_size != 1)
        return cllm_error(CLLM_ERR_INVALID_ARG,
                          "cannot self-launch %d ranks: this process is already rank %d of %d (launcher %s); "
                          "drop --tensor-parallel-size/--world-size or the launcher",
                          world_size, env->rank, env->world_size, env->launcher);
    if (world_size < 2 || world_size > CLLM_DIST_MAX_LOCAL)
        return cllm_error(CLLM_ERR_INVALID_ARG, "self-launch: world size %d is not in [2, %d]", world_size,
                          CLLM_DIST_MAX_LOCAL);
    if (!exe) exe = getenv("CLLM_WORKER_EXE");
    if (!exe || !*exe) exe = "/proc/self/exe";
    int argc = 0;
    while (argv[argc]) argc++;
    char **av = cllm_malloc(sizeof(char *) * (size_t)(argc + 1));
    int nbase = 0;
    char **envp = env_base(&nbase);
    char vars[NUM_VARS][128];
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_ok = false, attr_ok = false;
    cllm_status st = CLLM_ERR_OOM;
    if (!av || !envp) goto fail;
    av[0] = (char *)exe;
    for (int i = 1; i <= argc; i++) av[i] = argv[i];
    CLLM_TRY_GOTO(st, cllm_dist_secret_generate(env->secret), fail);
    int port = 0;
    if ((env->listen_fd = tcp_listen("127.0.0.1", 0, &port)) < 0) { st = CLLM_ERR_DISTRIBUTED; goto fail; }
    char hex[2 * CLLM_DIST_SECRET_BYTES + 1];
    cllm_dist_secret_hex(env->secret, hex);
    if (posix_spawn_file_actions_init(&fa) != 0 || posix_spawnattr_init(&attr) != 0) goto fail;
    fa_ok = attr_ok = true;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* no inherited listeners, files, sockets */
#endif
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none); /* a parent's blocked signals (signal threads) stay its own */
    /* a process group of their own: a terminal's Ctrl-C (SIGINT to the foreground
     * group) reaches rank 0 alone, which decides (abort a generate, drain a
     * server) and stops the workers itself; they still follow it when it dies */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    for (int r = 1; r < world_size; r++) {
        snprintf(vars[0], sizeof vars[0], "CLLM_DIST_RANK=%d", r);
        snprintf(vars[1], sizeof vars[1], "CLLM_DIST_WORLD_SIZE=%d", world_size);
        snprintf(vars[2], sizeof vars[2], "CLLM_DIST_LOCAL_RANK=%d", r);
        snprintf(vars[3], sizeof vars[3], "CLLM_DIST_LOCAL_WORLD_SIZE=%d", world_size);
        snprintf(vars[4], sizeof vars[4], "CLLM_DIST_INIT_ADDR=127.0.0.1:%d", port);
        snprintf(vars[5], sizeof vars[5], "CLLM_DIST_SECRET=%s", hex);
        snprintf(vars[6], sizeof vars[6], "CLLM_DIST_PARENT_PID=%d", (int)getpid());
        for (int i = 0; i < NUM_VARS; i++) envp[nbase + i] = vars[i];
        envp[nbase + NUM_VARS] = NULL;
        pid_t pid;
        int e = posix_spawn(&pid, exe, &fa, &attr, av, envp);
        if (e != 0) {
            st = cllm_error(CLLM_ERR_IO, "cannot start worker rank %d (%s): %s", r, exe, strerror(e));
            goto fail;
        }
        env->child_pids[r] = pid;
        env->child_status[r] = 0;
        env->num_children++;
    }
    snprintf(env->launcher, sizeof env->launcher, "mp");
    snprintf(env->init_host, sizeof env->init_host, "127.0.0.1");
    env->init_port = port;
    env->world_size = env->local_world_size = world_size;
    env->rank = env->local_rank = 0;
    st = CLLM_OK;
fail:
    if (st != CLLM_OK) {
        kill_and_reap(env);
        cllm_dist_env_close(env);
    }
    if (fa_ok) posix_spawn_file_actions_destroy(&fa);
    if (attr_ok) posix_spawnattr_destroy(&attr);
    free(av);
    free(envp);
    return st;
}

/* Watch the launching process: PR_SET_PDEATHSIG would fire when the parent
 * *thread* that spawned us exits (a server's engine thread, a Python thread),
 * not the process, so a thread polls getppid() instead (re-parenting means
 * the parent process is gone). Once the world exists a dead rank 0 is also
 * seen as its closed connections. */
static pid_t g_parent;
static char g_who[64];

static void *watch_parent(void *arg) {
    (void)arg;
    for (;;) {
        if (getppid() != g_parent) {
            fprintf(stderr, "cllm: %s: the launching process (pid %d) is gone; exiting\n", g_who, (int)g_parent);
            _exit(1);
        }
        usleep(200 * 1000);
    }
    return NULL;
}

void cllm_dist_watch_parent(pid_t parent, const char *who) {
    if (parent <= 0) return;
    g_parent = parent;
    snprintf(g_who, sizeof g_who, "%s", who ? who : "child");
    if (getppid() != g_parent) watch_parent(NULL); /* the parent died before we got here: exits */
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    /* small, but above the libraries' static TLS (OpenBLAS alone has ~60 KiB of it:
     * a 64 KiB stack made pthread_create fail with EINVAL) */
    pthread_attr_setstacksize(&a, 512 * 1024);
    int e = pthread_create(&t, &a, watch_parent, NULL);
    if (e != 0) fprintf(stderr, "cllm: %s: cannot start the parent watch thread: %s\n", g_who, strerror(e));
    pthread_attr_destroy(&a);
}

void cllm_dist_worker_bind_parent(const cllm_dist_env *env) {
    if (!env || strcmp(env->launcher, "mp") != 0 || env->parent_pid <= 0) return;
    char who[32];
    snprintf(who, sizeof who, "worker rank %d", env->rank);
    cllm_dist_watch_parent(env->parent_pid, who);
}

/* ------------------------------------------------------------- children */

static void describe(const cllm_dist_env *env, int r) {
    int s = env->child_status[r];
    pid_t pid = -env->child_pids[r];
    if (WIFSIGNALED(s))
        cllm_error(CLLM_ERR_DISTRIBUTED, "worker rank %d (pid %d) was killed by signal %d (%s)", r, (int)pid,
                   WTERMSIG(s), strsignal(WTERMSIG(s)));
    else
        cllm_error(CLLM_ERR_DISTRIBUTED, "worker rank %d (pid %d) exited with status %d%s", r, (int)pid,
                   WEXITSTATUS(s), WEXITSTATUS(s) ? " (its error is on stderr above)" : "");
}

/* Reap worker r if it ended; true if it has (now or before). */
static bool reaped(cllm_dist_env *env, int r, int flags) {
    if (env->child_pids[r] < 0) return true;
    if (env->child_pids[r] == 0) return false;
    int s = 0;
    pid_t p = waitpid(env->child_pids[r], &s, flags);
    if (p == env->child_pids[r] || (p < 0 && errno == ECHILD)) {
        env->child_status[r] = p < 0 ? 0 : s;
        env->child_pids[r] = -env->child_pids[r];
        return true;
    }
    return false;
}

static bool abnormal(int s) { return !WIFEXITED(s) || WEXITSTATUS(s) != 0; }

cllm_status cllm_dist_check_children(cllm_dist_env *env) {
    if (!env) return CLLM_OK;
    int first = -1, worst = -1; /* a crash says more than a clean exit that followed it */
    for (int r = 1; r < CLLM_DIST_MAX_LOCAL; r++)
        if (reaped(env, r, WNOHANG)) {
            if (first < 0) first = r;
            if (worst < 0 && abnormal(env->child_status[r])) worst = r;
        }
    if (first < 0) return CLLM_OK;
    describe(env, worst >= 0 ? worst : first);
    return CLLM_ERR_DISTRIBUTED;
}

void cllm_dist_reap_children(cllm_dist_env *env, double timeout_s) {
    if (!env) return;
    struct timespec tick = {0, 10 * 1000 * 1000};
    double deadline = cllm_now_s() + timeout_s;
    for (;;) {
        bool all = true;
        for (int r = 1; r < CLLM_DIST_MAX_LOCAL; r++)
            if (env->child_pids[r] > 0 && !reaped(env, r, WNOHANG)) all = false;
        if (all) return;
        if (cllm_now_s() >= deadline) break;
        nanosleep(&tick, NULL);
    }
    for (int r = 1; r < CLLM_DIST_MAX_LOCAL; r++)
        if (env->child_pids[r] > 0) {
            CLLM_LOG_W("worker rank %d (pid %d) did not exit in %.1f s; killing it", r, (int)env->child_pids[r],
                       timeout_s);
            kill(env->child_pids[r], SIGKILL);
            reaped(env, r, 0);
        }
}

cllm_status cllm_dist_children_result(cllm_dist_env *env) {
    if (!env) return CLLM_OK;
    for (int r = 1; r < CLLM_DIST_MAX_LOCAL; r++) {
        if (env->child_pids[r] > 0)
            return cllm_error(CLLM_ERR_DISTRIBUTED, "worker rank %d (pid %d) is still running", r,
                              (int)env->child_pids[r]);
        int s = env->child_status[r];
        if (env->child_pids[r] < 0 && abnormal(s)) {
            describe(env, r);
            return CLLM_ERR_DISTRIBUTED;
        }
    }
    return CLLM_OK;
}
