/* Communicator failure paths, each a small self-launched world:
 *
 *   peer_exit   world 3: rank 2 exits while the others are in a 64 MiB all_reduce;
 *               ranks 0 and 1 get CLLM_ERR_DISTRIBUTED naming rank 2 within
 *               seconds (not at the 30 s timeout); rank 0's child check says
 *               how the worker ended
 *   stall       world 2, timeout 2 s: rank 1 does not call; rank 0's error
 *               after ~2 s names the op, rank 1 and --dist-timeout
 *   stray       world 3: a process with the wrong secret (claiming rank 1)
 *               is rejected while the real bootstrap completes
 *   mismatch_op / mismatch_count   different collectives / counts: both
 *               ranks report a mismatch naming both sides
 *   abort       cllm_comm_abort from another thread unblocks a collective
 *   watchdog    an operation past the watchdog timeout aborts the comm; the
 *               blocked call returns the watchdog's message
 *   health      check_health notices an idle peer that exited; a watchdog
 *               check of the children reports the worker's exit
 */
#include "dist/watchdog.h"
#include "dist_test_util.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static void expect_dist_error(cllm_status st, const char *what, const char *w1, const char *w2) {
    const char *m = cllm_last_error();
    CHECK(st == CLLM_ERR_DISTRIBUTED && (!w1 || strstr(m, w1)) && (!w2 || strstr(m, w2)),
          "%s: want CLLM_ERR_DISTRIBUTED naming '%s' '%s', got %s: %s", what, w1 ? w1 : "", w2 ? w2 : "",
          cllm_status_str(st), m);
    if (st != CLLM_OK) printf("rank %d: %s -> %s\n", g_rank, what, m);
}

static int done(cllm_dist_env *env, const char *mode) {
    if (env->rank == 0) {
        cllm_dist_reap_children(env, 20.0);
        if (cllm_dist_children_result(env) != CLLM_OK) {
            fprintf(stderr, "rank 0: FAIL: %s\n", cllm_last_error());
            g_fails++;
        }
        printf("test_comm_fail %s: %s\n", mode, g_fails ? "FAILED" : "ok");
    }
    return g_fails ? 1 : 0;
}

/* ------------------------------------------------------------ peer_exit */

static int peer_exit(char **argv) {
    cllm_dist_env env;
    cllm_comm *c = start_world(&env, 3, 30.0, argv);
    CHECK_OK(cllm_comm_barrier(c));
    if (env.rank == 2) { /* the others are blocked in the all_reduce (rank 1 in a 21 MiB send to it) */
        sleep_s(0.3);
        _exit(3);
    }
    size_t n = 16u << 20;
    float *b = calloc(n, 4);
    double t0 = now_s();
    cllm_status st = cllm_comm_all_reduce(c, b, b, n, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
    double dt = now_s() - t0;
    expect_dist_error(st, "all_reduce with a dead peer", "rank 2", "all_reduce");
    CHECK(dt < 5.0, "the dead peer was noticed after %.1f s", dt);
    st = cllm_comm_barrier(c); /* broken: fails at once with the same story */
    expect_dist_error(st, "barrier after the failure", "rank 2", NULL);
    free(b);
    if (env.rank == 1) sleep_s(0.5); /* rank 0 sees rank 2's exit first (a clean exit says less) */
    if (env.rank == 0) {
        cllm_status cs = CLLM_OK;
        for (int i = 0; i < 100 && (cs = cllm_dist_check_children(&env)) == CLLM_OK; i++) sleep_s(0.02);
        expect_dist_error(cs, "check_children", "worker rank 2", "exited with status 3");
    }
    cllm_comm_destroy(c);
    if (env.rank == 0) { /* rank 2's exit status 3 is what this test wanted */
        cllm_dist_reap_children(&env, 20.0);
        CHECK(env.child_pids[1] < 0 && WIFEXITED(env.child_status[1]) && WEXITSTATUS(env.child_status[1]) == 0,
              "rank 1 failed");
        printf("test_comm_fail peer_exit: %s\n", g_fails ? "FAILED" : "ok");
    }
    return g_fails ? 1 : 0;
}

/* ---------------------------------------------------------------- stall */

static int stall(char **argv) {
    cllm_dist_env env;
    cllm_comm *c = start_world(&env, 2, 2.0, argv);
    float x[1000] = {0};
    if (env.rank == 1) {
        sleep_s(3.5);
        cllm_comm_all_reduce(c, x, x, 1000, CLLM_DTYPE_F32, CLLM_REDUCE_SUM); /* rank 0 gave up: fails */
    } else {
        double t0 = now_s();
        cllm_status st = cllm_comm_all_reduce(c, x, x, 1000, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
        double dt = now_s() - t0;
        expect_dist_error(st, "all_reduce with a stalled peer", "timed out", "--dist-timeout");
        CHECK(strstr(cllm_last_error(), "rank 1") && strstr(cllm_last_error(), "all_reduce (seq"),
              "the timeout names the peer and op: %s", cllm_last_error());
        CHECK(dt > 1.9 && dt < 4.0, "timed out after %.2f s, want ~2", dt);
    }
    cllm_comm_destroy(c);
    return done(&env, "stall");
}

/* ---------------------------------------------------------------- stray */

static pid_t spawn_stray(const cllm_dist_env *env, const char *argv0) {
    char v[4][128];
    snprintf(v[0], 128, "CLLM_DIST_RANK=1");
    snprintf(v[1], 128, "CLLM_DIST_WORLD_SIZE=3");
    snprintf(v[2], 128, "CLLM_DIST_INIT_ADDR=127.0.0.1:%d", env->init_port);
    snprintf(v[3], 128, "CLLM_DIST_SECRET=%064d", 7); /* not the session's */
    int n = 0;
    while (environ[n]) n++;
    char **envp = malloc(sizeof(char *) * (size_t)(n + 5));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (strncmp(environ[i], "CLLM_DIST_", 10)) envp[m++] = environ[i];
    for (int i = 0; i < 4; i++) envp[m++] = v[i];
    envp[m] = NULL;
    pid_t pid = 0;
    char *av[] = {(char *)argv0, "stray_proc", NULL};
    if (posix_spawn(&pid, argv0, NULL, NULL, av, envp) != 0) pid = -1;
    free(envp);
    return pid;
}

static int stray_proc(void) {
    cllm_dist_env env;
    cllm_comm *c = NULL;
    if (cllm_dist_env_detect(&env) != CLLM_OK) return 1;
    cllm_status st = cllm_comm_tcp_create_world(&env, 5.0, &c);
    g_rank = -1;
    expect_dist_error(st, "stray bootstrap", "closed the connection", NULL);
    cllm_comm_destroy(c);
    const char *done_file = getenv("CLLM_TEST_STRAY_DONE"); /* the real workers wait for it */
    FILE *f = done_file ? fopen(done_file, "w") : NULL;
    if (f) fclose(f);
    return g_fails ? 1 : 0;
}

static int stray(char **argv) {
    cllm_dist_env env;
    char done_file[64];
    CHECK_OK(cllm_dist_env_detect(&env));
    if (!strcmp(env.launcher, "single")) {
        snprintf(done_file, sizeof done_file, "/tmp/cllm_test_stray_%d", (int)getpid());
        unlink(done_file);
        setenv("CLLM_TEST_STRAY_DONE", done_file, 1); /* inherited by the workers and the stray */
        CHECK_OK(cllm_dist_launch_local(&env, 3, NULL, argv));
    }
    cllm_dist_worker_bind_parent(&env);
    g_rank = env.rank;
    pid_t sp = env.rank == 0 ? spawn_stray(&env, argv[0]) : 0;
    CHECK(sp >= 0, "spawn stray");
    if (env.rank > 0) { /* join only once rank 0 has turned the stray away: the world is incomplete until then */
        const char *f = getenv("CLLM_TEST_STRAY_DONE");
        double t0 = now_s();
        while (f && access(f, F_OK) != 0 && now_s() - t0 < 20) sleep_s(0.01);
    }
    cllm_comm *c = NULL;
    CHECK_OK(cllm_comm_tcp_create_world(&env, 20.0, &c));
    cllm_dist_env_close(&env);
    if (c) {
        int32_t v = 1, s = 0;
        CHECK_OK(cllm_comm_all_reduce(c, &v, &s, 1, CLLM_DTYPE_I32, CLLM_REDUCE_SUM));
        CHECK(s == 3, "all_reduce after the stray = %d", s);
    }
    if (sp > 0) {
        int st = 0;
        waitpid(sp, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the stray was not rejected as expected (status %d)", st);
        unlink(done_file);
    }
    cllm_comm_destroy(c);
    return done(&env, "stray");
}

/* ------------------------------------------------------------- mismatch */

static int mismatch(char **argv, bool by_count) {
    cllm_dist_env env;
    cllm_comm *c = start_world(&env, 2, 10.0, argv);
    float x[202] = {0};
    cllm_status st;
    if (by_count) st = cllm_comm_all_reduce(c, x, x, env.rank ? 101 : 100, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
    else if (env.rank == 0) st = cllm_comm_all_reduce(c, x, x, 100, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
    else st = cllm_comm_all_gather(c, x, x + 50, 50, CLLM_DTYPE_F32);
    if (by_count) expect_dist_error(st, "count mismatch", "mismatch", env.rank ? "400 bytes" : "404 bytes");
    else expect_dist_error(st, "op mismatch", "all_reduce", "all_gather");
    CHECK(strstr(cllm_last_error(), env.rank ? "rank 0" : "rank 1"), "names the other side");
    cllm_comm_destroy(c);
    return done(&env, by_count ? "mismatch_count" : "mismatch_op");
}

/* ---------------------------------------------------------------- abort */

static void *abort_later(void *arg) {
    sleep_s(0.3);
    cllm_comm_abort(arg, "test abort reason");
    return NULL;
}

static int abort_test(char **argv) {
    cllm_dist_env env;
    cllm_comm *c = start_world(&env, 2, 30.0, argv);
    float x[1000] = {0};
    if (env.rank == 1) {
        sleep_s(2.0);
        cllm_comm_all_reduce(c, x, x, 1000, CLLM_DTYPE_F32, CLLM_REDUCE_SUM); /* rank 0 aborted: fails */
    } else {
        pthread_t t;
        pthread_create(&t, NULL, abort_later, c);
        double t0 = now_s();
        cllm_status st = cllm_comm_all_reduce(c, x, x, 1000, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
        double dt = now_s() - t0;
        pthread_join(t, NULL);
        expect_dist_error(st, "aborted all_reduce", "test abort reason", "aborted");
        CHECK(dt < 1.5, "abort took %.2f s to unblock", dt);
        CHECK(cllm_comm_is_broken(c), "aborted comm not broken");
        expect_dist_error(cllm_comm_barrier(c), "barrier after abort", "test abort reason", NULL);
        cllm_comm_abort(c, "again"); /* idempotent */
    }
    cllm_comm_destroy(c);
    return done(&env, "abort");
}

/* ------------------------------------------------------------- watchdog */

static int watchdog_test(char **argv) {
    cllm_dist_env env;
    cllm_comm *c = start_world(&env, 2, 30.0, argv);
    float x[1000] = {0};
    if (env.rank == 1) {
        sleep_s(3.0);
        cllm_comm_all_reduce(c, x, x, 1000, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
    } else {
        cllm_watchdog *w = NULL;
        CHECK_OK(cllm_watchdog_create(1.0, &w));
        cllm_watchdog_add_comm(w, c);
        CHECK_OK(cllm_watchdog_status(w));
        cllm_watchdog_begin(w, "test step");
        double t0 = now_s();
        cllm_status st = cllm_comm_all_reduce(c, x, x, 1000, CLLM_DTYPE_F32, CLLM_REDUCE_SUM);
        double dt = now_s() - t0;
        cllm_watchdog_end(w);
        expect_dist_error(st, "all_reduce under the watchdog", "watchdog", "test step");
        CHECK(dt > 0.9 && dt < 2.5, "watchdog fired after %.2f s, want ~1", dt);
        expect_dist_error(cllm_watchdog_status(w), "watchdog status", "test step", "--dist-timeout");
        cllm_watchdog_destroy(w);
    }
    cllm_comm_destroy(c);
    return done(&env, "watchdog");
}

/* --------------------------------------------------------------- health */

static cllm_status check_children(void *env) { return cllm_dist_check_children(env); }

static int health(char **argv) {
    cllm_dist_env env;
    cllm_comm *c = start_world(&env, 2, 30.0, argv);
    if (env.rank == 0) CHECK_OK(cllm_comm_check_health(c)); /* rank 1 waits in the barrier: alive */
    CHECK_OK(cllm_comm_barrier(c));
    if (env.rank == 0) {
        cllm_watchdog *w = NULL;
        CHECK_OK(cllm_watchdog_create(30.0, &w));
        cllm_watchdog_add_check(w, check_children, &env);
        cllm_status st = CLLM_OK;
        double t0 = now_s();
        while (now_s() - t0 < 3.0 && (st = cllm_comm_check_health(c)) == CLLM_OK) sleep_s(0.02);
        expect_dist_error(st, "check_health of an exited idle peer", "rank 1", "closed");
        while (now_s() - t0 < 3.0 && cllm_watchdog_status(w) == CLLM_OK) sleep_s(0.02);
        expect_dist_error(cllm_watchdog_status(w), "watchdog child check", "worker rank 1", "exited with status 0");
        cllm_watchdog_destroy(w);
    }
    cllm_comm_destroy(c);
    return done(&env, "health");
}

int main(int argc, char **argv) {
    cllm_log_set_level(CLLM_LOG_ERROR);
    const char *m = argc >= 2 ? argv[1] : "";
    if (!strcmp(m, "peer_exit")) return peer_exit(argv);
    if (!strcmp(m, "stall")) return stall(argv);
    if (!strcmp(m, "stray")) return stray(argv);
    if (!strcmp(m, "stray_proc")) return stray_proc();
    if (!strcmp(m, "mismatch_op")) return mismatch(argv, false);
    if (!strcmp(m, "mismatch_count")) return mismatch(argv, true);
    if (!strcmp(m, "abort")) return abort_test(argv);
    if (!strcmp(m, "watchdog")) return watchdog_test(argv);
    if (!strcmp(m, "health")) return health(argv);
    fprintf(stderr, "usage: test_comm_fail peer_exit|stall|stray|mismatch_op|mismatch_count|abort|watchdog|health\n");
    return 2;
}
