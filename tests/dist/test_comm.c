/* Communicator collectives over the TCP transport, on N processes, against a
 * host reference every rank computes itself (deterministic data per (rank,
 * index)); split groups; statistics; launcher detection.
 *
 *   test_comm collectives N [quick]  N ranks: self-launched when no launcher
 *                                    is detected, else the launcher's world
 *                                    (N = 0: whatever it says)
 *   test_comm spawn srun|env N       start N ranks with Slurm / torchrun-style
 *                                    variables, each running `collectives 0 quick`
 *   test_comm env                    launcher detection and its errors (one process)
 */
#include "dist_test_util.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;

static const cllm_dtype k_red_dtypes[] = {CLLM_DTYPE_F32, CLLM_DTYPE_BF16, CLLM_DTYPE_F16, CLLM_DTYPE_I32};
static const cllm_dtype k_all_dtypes[] = {CLLM_DTYPE_F32, CLLM_DTYPE_BF16, CLLM_DTYPE_F16,
                                          CLLM_DTYPE_I32, CLLM_DTYPE_I64,  CLLM_DTYPE_U8};
/* elements: odd sizes from 1 up, across the direct/ring switch (64 KiB) */
static const size_t k_sizes[] = {1, 2, 3, 7, 61, 1000, 4099, 16411, 65537, 262147};
static const size_t k_quick_sizes[] = {1, 5, 1000, 65537};
static const size_t *g_sizes = k_sizes;
static int g_nsizes = (int)(sizeof k_sizes / sizeof k_sizes[0]);

static double ref_reduce(int P, size_t i, int salt, cllm_reduce_op op) {
    double acc = gen_small(0, i, salt);
    for (int r = 1; r < P; r++) {
        double v = gen_small(r, i, salt);
        acc = op == CLLM_REDUCE_SUM ? acc + v : op == CLLM_REDUCE_MAX ? fmax(acc, v) : fmin(acc, v);
    }
    return acc;
}

static void fill_small(void *b, cllm_dtype dt, size_t n, int rank, int salt, size_t i0) {
    for (size_t i = 0; i < n; i++) set_elem(b, dt, i, gen_small(rank, i0 + i, salt));
}

/* recv[i] == reference of element i0 + i; reports the first mismatches. */
static void expect_reduced(const char *what, const void *recv, cllm_dtype dt, size_t n, int P, int salt,
                           cllm_reduce_op op, size_t i0) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double want = ref_reduce(P, i0 + i, salt, op), got = get_elem(recv, dt, i);
        if (got != want && bad++ < 3)
            CHECK(0, "%s %s op %d n %zu: [%zu] = %g, want %g", what, cllm_dtype_name(dt), (int)op, n, i, got, want);
    }
}

static void test_all_reduce(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    size_t maxn = g_sizes[g_nsizes - 1];
    uint8_t *send = malloc(maxn * 4), *recv = malloc(maxn * 4);
    for (int d = 0; d < 4; d++)
        for (int o = 0; o < 3; o++)
            for (int s = 0; s < g_nsizes; s++) {
                cllm_dtype dt = k_red_dtypes[d];
                size_t n = g_sizes[s], es = cllm_dtype_size(dt);
                int salt = d * 100 + o * 10 + s;
                fill_small(send, dt, n, me, salt, 0);
                memset(recv, 0xAB, n * es);
                CHECK_OK(cllm_comm_all_reduce(c, send, recv, n, dt, (cllm_reduce_op)o));
                expect_reduced("all_reduce", recv, dt, n, P, salt, (cllm_reduce_op)o, 0);
                for (size_t i = 0; i < n; i += 1 + n / 97) /* send untouched */
                    CHECK(get_elem(send, dt, i) == gen_small(me, i, salt), "all_reduce modified send[%zu]", i);
                if (o == CLLM_REDUCE_SUM) { /* in place */
                    CHECK_OK(cllm_comm_all_reduce(c, send, send, n, dt, CLLM_REDUCE_SUM));
                    expect_reduced("all_reduce in place", send, dt, n, P, salt, CLLM_REDUCE_SUM, 0);
                }
            }
    free(send);
    free(recv);
}

/* F32 at 16 MiB and 64 MiB: the sizes NCCL users run. */
static void test_all_reduce_big(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    static const size_t big[] = {4194305, 16777216};
    float *buf = malloc(big[1] * 4);
    for (int s = 0; s < 2; s++) {
        size_t n = big[s];
        fill_small(buf, CLLM_DTYPE_F32, n, me, 900 + s, 0);
        CHECK_OK(cllm_comm_all_reduce(c, buf, buf, n, CLLM_DTYPE_F32, CLLM_REDUCE_SUM));
        expect_reduced("all_reduce big", buf, CLLM_DTYPE_F32, n, P, 900 + s, CLLM_REDUCE_SUM, 0);
    }
    free(buf);
}

/* Non-integer data: results depend on the order of the additions, so every
 * rank must still end with the same bits, near the f64 reference. */
static void test_bitwise_equal(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    static const size_t ns[] = {1000, 262147};
    static const cllm_dtype dts[] = {CLLM_DTYPE_F32, CLLM_DTYPE_BF16, CLLM_DTYPE_F16};
    uint8_t *buf = malloc(262147 * 4);
    int64_t *hashes = malloc(sizeof(int64_t) * (size_t)P);
    for (int d = 0; d < 3; d++)
        for (int s = 0; s < 2; s++) {
            cllm_dtype dt = dts[d];
            size_t n = ns[s];
            for (size_t i = 0; i < n; i++) set_elem(buf, dt, i, gen_real(me, i));
            CHECK_OK(cllm_comm_all_reduce(c, buf, buf, n, dt, CLLM_REDUCE_SUM));
            double tol = dt == CLLM_DTYPE_F32 ? 1e-5 : 2e-2;
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                double want = 0, mag = 0;
                for (int r = 0; r < P; r++) {
                    float x = gen_real(r, i);
                    if (dt == CLLM_DTYPE_BF16) x = cllm_bf16_to_f32(cllm_f32_to_bf16(x));
                    if (dt == CLLM_DTYPE_F16) x = cllm_f16_to_f32(cllm_f32_to_f16(x));
                    want += x;
                    mag += fabs(x);
                }
                double got = get_elem(buf, dt, i);
                if (fabs(got - want) > tol * mag + 1e-6 && bad++ < 3)
                    CHECK(0, "real all_reduce %s [%zu] = %g, want %g", cllm_dtype_name(dt), i, got, want);
            }
            int64_t h = (int64_t)fnv(buf, n * cllm_dtype_size(dt));
            CHECK_OK(cllm_comm_all_gather(c, &h, hashes, 1, CLLM_DTYPE_I64));
            for (int r = 0; r < P; r++)
                CHECK(hashes[r] == hashes[0], "all_reduce %s n %zu: rank %d's result differs from rank 0's bits",
                      cllm_dtype_name(dt), n, r);
        }
    free(buf);
    free(hashes);
}

static void test_reduce_scatter(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    size_t maxn = g_sizes[g_nsizes - 1];
    uint8_t *send = malloc(maxn * 4 * (size_t)P), *recv = malloc(maxn * 4);
    for (int d = 0; d < 4; d++)
        for (int o = 0; o < 3; o++)
            for (int s = 0; s < g_nsizes; s += (o ? 2 : 1)) {
                cllm_dtype dt = k_red_dtypes[d];
                size_t n = g_sizes[s], es = cllm_dtype_size(dt);
                int salt = 1000 + d * 100 + o * 10 + s;
                fill_small(send, dt, n * (size_t)P, me, salt, 0);
                CHECK_OK(cllm_comm_reduce_scatter(c, send, recv, n, dt, (cllm_reduce_op)o));
                expect_reduced("reduce_scatter", recv, dt, n, P, salt, (cllm_reduce_op)o, (size_t)me * n);
                if (o == CLLM_REDUCE_SUM) { /* recv inside send at this rank's block, as NCCL allows */
                    uint8_t *mine = send + (size_t)me * n * es;
                    CHECK_OK(cllm_comm_reduce_scatter(c, send, mine, n, dt, CLLM_REDUCE_SUM));
                    expect_reduced("reduce_scatter in place", mine, dt, n, P, salt, CLLM_REDUCE_SUM,
                                   (size_t)me * n);
                }
            }
    free(send);
    free(recv);
}

static void test_all_gather(cllm_comm *c, bool big) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    size_t maxn = big ? 16777216 / (size_t)P : g_sizes[g_nsizes - 1];
    uint8_t *send = malloc(maxn * 4), *recv = malloc(maxn * 4 * (size_t)P);
    int nd = big ? 1 : 4, ns = big ? 1 : g_nsizes;
    for (int d = 0; d < nd; d++)
        for (int s = 0; s < ns; s++) {
            cllm_dtype dt = k_red_dtypes[d];
            size_t n = big ? maxn : g_sizes[s], es = cllm_dtype_size(dt);
            int salt = 2000 + d * 100 + s;
            for (int ip = 0; ip < 2; ip++) {
                uint8_t *src = ip ? recv + (size_t)me * n * es : send;
                memset(recv, 0xCD, n * es * (size_t)P);
                fill_small(src, dt, n, me, salt, 0);
                CHECK_OK(cllm_comm_all_gather(c, src, recv, n, dt));
                int bad = 0;
                for (int r = 0; r < P; r++)
                    for (size_t i = 0; i < n; i++)
                        if (get_elem(recv, dt, (size_t)r * n + i) != gen_small(r, i, salt) && bad++ < 3)
                            CHECK(0, "all_gather%s %s n %zu: block %d [%zu] wrong", ip ? " in place" : "",
                                  cllm_dtype_name(dt), n, r, i);
            }
        }
    free(send);
    free(recv);
}

static void test_broadcast(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    size_t maxn = 786433; /* 3 MiB of f32: several pieces of the chain */
    uint8_t *buf = malloc(maxn * 8), *want = malloc(maxn * 8);
    for (int d = 0; d < 6; d++)
        for (int s = 0; s <= g_nsizes; s += (d < 4 ? 1 : 3)) {
            cllm_dtype dt = k_all_dtypes[d];
            size_t n = s == g_nsizes ? (dt == CLLM_DTYPE_F32 ? maxn : 0) : g_sizes[s];
            if (s == g_nsizes && !n) continue;
            size_t bytes = n * cllm_dtype_size(dt);
            for (int root = 0; root < P; root += (P > 2 ? P - 1 : 1)) {
                int salt = 3000 + d * 100 + s * 4 + root;
                fill_bits(want, bytes, root, salt);
                if (me == root) memcpy(buf, want, bytes);
                else memset(buf, 0, bytes);
                CHECK_OK(cllm_comm_broadcast(c, buf, n, dt, root));
                CHECK(!memcmp(buf, want, bytes), "broadcast %s n %zu root %d: wrong bytes", cllm_dtype_name(dt), n,
                      root);
            }
        }
    free(buf);
    free(want);
}

/* Pairs (0,1), (2,3), ...: the lower rank sends first. */
static void test_send_recv(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c), peer = me ^ 1;
    if (peer >= P) return;
    static const size_t ns[] = {1, 1000, 262147, 1048577};
    static const cllm_dtype dts[] = {CLLM_DTYPE_F32, CLLM_DTYPE_I64, CLLM_DTYPE_U8, CLLM_DTYPE_BF16};
    uint8_t *buf = malloc(1048577 * 8), *want = malloc(1048577 * 8);
    for (int d = 0; d < 4; d++)
        for (int s = 0; s < 4; s++) {
            size_t bytes = ns[s] * cllm_dtype_size(dts[d]);
            for (int dir = 0; dir < 2; dir++) { /* dir 0: lower rank sends */
                int sender = dir == 0 ? (me < peer ? me : peer) : (me < peer ? peer : me);
                int salt = 4000 + d * 10 + s * 2 + dir;
                if (me == sender) {
                    fill_bits(buf, bytes, me, salt);
                    CHECK_OK(cllm_comm_send(c, buf, ns[s], dts[d], peer));
                } else {
                    fill_bits(want, bytes, peer, salt);
                    memset(buf, 0, bytes);
                    CHECK_OK(cllm_comm_recv(c, buf, ns[s], dts[d], peer));
                    CHECK(!memcmp(buf, want, bytes), "recv %s n %zu from %d: wrong bytes",
                          cllm_dtype_name(dts[d]), ns[s], peer);
                }
            }
        }
    free(buf);
    free(want);
}

/* count of elements rank p sends rank q (some zero), times scale */
static size_t a2a_count(int p, int q, size_t scale) { return (size_t)((p * 3 + q * 5 + 1) % 7) * scale; }

static void test_all_to_allv(cllm_comm *c) {
    int P = cllm_comm_size(c), me = cllm_comm_rank(c);
    size_t sc[64], sd[64], rc[64], rd[64];
    static const size_t scales[] = {1, 333, 40001};
    static const cllm_dtype dts[] = {CLLM_DTYPE_F32, CLLM_DTYPE_I32, CLLM_DTYPE_BF16, CLLM_DTYPE_I64};
    for (int k = 0; k < 3; k++)
        for (int d = 0; d < 4; d++) {
            size_t es = cllm_dtype_size(dts[d]), st = 0, rt = 0;
            for (int q = 0; q < P; q++) {
                sc[q] = a2a_count(me, q, scales[k]); sd[q] = st; st += sc[q] + 3; /* gaps between blocks */
                rc[q] = a2a_count(q, me, scales[k]); rd[q] = rt; rt += rc[q] + 1;
            }
            uint8_t *send = malloc(st * es + 1), *recv = calloc(rt * es + 1, 1), *want = malloc(rt * es + 1);
            for (int q = 0; q < P; q++) fill_bits(send + sd[q] * es, sc[q] * es, me, 5000 + q * 10 + d + k * 100);
            CHECK_OK(cllm_comm_all_to_allv(c, send, sc, sd, recv, rc, rd, dts[d]));
            for (int q = 0; q < P; q++) {
                fill_bits(want, rc[q] * es, q, 5000 + me * 10 + d + k * 100);
                CHECK(!memcmp(recv + rd[q] * es, want, rc[q] * es), "all_to_allv %s scale %zu: block from %d wrong",
                      cllm_dtype_name(dts[d]), scales[k], q);
            }
            free(send);
            free(recv);
            free(want);
        }
}

/* Argument errors are local and leave the communicator usable. */
static void test_arg_errors(cllm_comm *c) {
    int P = cllm_comm_size(c);
    float x[4] = {0};
    uint8_t u[4] = {0};
    CHECK(cllm_comm_broadcast(c, x, 4, CLLM_DTYPE_F32, P) == CLLM_ERR_INVALID_ARG, "bad root accepted");
    CHECK(cllm_comm_all_reduce(c, u, u, 4, CLLM_DTYPE_U8, CLLM_REDUCE_SUM) == CLLM_ERR_INVALID_ARG, "u8 reduce");
    CHECK(cllm_comm_all_reduce(c, NULL, x, 4, CLLM_DTYPE_F32, CLLM_REDUCE_SUM) == CLLM_ERR_INVALID_ARG, "NULL send");
    CHECK(cllm_comm_all_reduce(c, x, x, 4, CLLM_DTYPE_F64, CLLM_REDUCE_SUM) == CLLM_ERR_INVALID_ARG, "f64");
    CHECK(cllm_comm_send(c, x, 4, CLLM_DTYPE_F32, cllm_comm_rank(c)) == CLLM_ERR_INVALID_ARG, "send to self");
    CHECK(!cllm_comm_is_broken(c), "an argument error broke the communicator");
    CHECK_OK(cllm_comm_barrier(c));
}

/* World of P -> parity groups (ranks r with r % 2 equal, ordered by world
 * rank), and a group of all but the last rank ordered by descending rank
 * (the last passes color < 0). Parent collectives interleave with the
 * children's: each communicator keeps its own sequence numbers. */
static void test_split(cllm_comm *w) {
    int P = cllm_comm_size(w), me = cllm_comm_rank(w);
    cllm_comm *par = NULL, *rev = NULL;
    CHECK_OK(cllm_comm_split(w, me % 2, me, "parity", &par));
    CHECK(par != NULL, "parity split gave no communicator");
    if (!par) return;
    int n = (P - me % 2 + 1) / 2;
    CHECK(cllm_comm_size(par) == n && cllm_comm_rank(par) == me / 2, "parity: rank %d of %d, want %d of %d",
          cllm_comm_rank(par), cllm_comm_size(par), me / 2, n);
    for (int r = 0; r < cllm_comm_size(par); r++)
        CHECK(cllm_comm_world_rank_of(par, r) == 2 * r + me % 2, "parity world_rank_of(%d)", r);
    CHECK(!strcmp(cllm_comm_name(par), "parity") && !strcmp(cllm_comm_transport(par), "tcp"), "parity name");
    CHECK_OK(cllm_comm_split(w, me == P - 1 ? -1 : 0, -me, "rev", &rev));
    CHECK((me == P - 1) == (rev == NULL), "color < 0 must give NULL (and only it)");
    for (int round = 0; round < 3; round++) {
        int32_t v = me + 1, sum = 0, wsum = 0;
        CHECK_OK(cllm_comm_all_reduce(par, &v, &sum, 1, CLLM_DTYPE_I32, CLLM_REDUCE_SUM));
        int want = 0;
        for (int r = me % 2; r < P; r += 2) want += r + 1;
        CHECK(sum == want, "parity all_reduce = %d, want %d", sum, want);
        CHECK_OK(cllm_comm_all_reduce(w, &v, &wsum, 1, CLLM_DTYPE_I32, CLLM_REDUCE_SUM));
        CHECK(wsum == P * (P + 1) / 2, "world all_reduce between group ones = %d", wsum);
        if (rev) {
            int32_t got[64];
            CHECK(cllm_comm_size(rev) == P - 1 && cllm_comm_rank(rev) == P - 2 - me, "rev rank %d of %d",
                  cllm_comm_rank(rev), cllm_comm_size(rev));
            int32_t mine = me;
            CHECK_OK(cllm_comm_all_gather(rev, &mine, got, 1, CLLM_DTYPE_I32));
            for (int r = 0; r < P - 1; r++) CHECK(got[r] == P - 2 - r, "rev all_gather[%d] = %d", r, got[r]);
            int32_t b = me == 0 ? 1234 + round : -1;
            CHECK_OK(cllm_comm_broadcast(rev, &b, 1, CLLM_DTYPE_I32, P - 2)); /* rev rank P-2 is world 0 */
            CHECK(b == 1234 + round, "rev broadcast = %d", b);
        }
    }
    /* a split of a split */
    cllm_comm *one = NULL;
    CHECK_OK(cllm_comm_split(par, cllm_comm_rank(par), 0, "single", &one));
    CHECK(one && cllm_comm_size(one) == 1, "split into singletons");
    float x = 2.5f, y = 0;
    CHECK_OK(cllm_comm_all_reduce(one, &x, &y, 1, CLLM_DTYPE_F32, CLLM_REDUCE_SUM));
    CHECK(y == 2.5f, "size-1 all_reduce copies");
    cllm_comm_destroy(one);
    cllm_comm_destroy(rev);
    cllm_comm_destroy(par);
    CHECK_OK(cllm_comm_barrier(w));
}

static void test_stats(cllm_comm *w) {
    int P = cllm_comm_size(w);
    cllm_comm *s = NULL;
    CHECK_OK(cllm_comm_split(w, 0, 0, "stats", &s));
    if (!s) return;
    float x[10] = {0}, y[10];
    int32_t g[5] = {0}, gg[5 * 64];
    for (int i = 0; i < 3; i++) CHECK_OK(cllm_comm_all_reduce(s, x, y, 10, CLLM_DTYPE_F32, CLLM_REDUCE_SUM));
    CHECK_OK(cllm_comm_barrier(s));
    CHECK_OK(cllm_comm_barrier(s));
    CHECK_OK(cllm_comm_all_gather(s, g, gg, 5, CLLM_DTYPE_I32));
    cllm_comm_stats st;
    cllm_comm_get_stats(s, &st);
    CHECK(!strcmp(st.name, "stats") && !strcmp(st.transport, "tcp") && st.size == P, "stats header");
    CHECK(st.ops[CLLM_COMM_ALL_REDUCE].calls == 3 && st.ops[CLLM_COMM_ALL_REDUCE].bytes == 120,
          "all_reduce stats %llu calls %llu bytes", (unsigned long long)st.ops[CLLM_COMM_ALL_REDUCE].calls,
          (unsigned long long)st.ops[CLLM_COMM_ALL_REDUCE].bytes);
    CHECK(st.ops[CLLM_COMM_BARRIER].calls == 2, "barrier calls %llu",
          (unsigned long long)st.ops[CLLM_COMM_BARRIER].calls);
    CHECK(st.ops[CLLM_COMM_ALL_GATHER].bytes == (uint64_t)P * 20, "all_gather bytes");
    CHECK(st.ops[CLLM_COMM_ALL_REDUCE].time_s >= 0 && st.ops[CLLM_COMM_BROADCAST].calls == 0, "stats other");
    cllm_comm_stats_add(s, &st, 2); /* as the runner does for graph replays */
    cllm_comm_stats st3;
    cllm_comm_get_stats(s, &st3);
    CHECK(st3.ops[CLLM_COMM_ALL_REDUCE].calls == 9, "stats_add: %llu calls",
          (unsigned long long)st3.ops[CLLM_COMM_ALL_REDUCE].calls);
    CHECK(!strcmp(cllm_comm_op_name(CLLM_COMM_ALL_TO_ALLV), "all_to_allv"), "op name");
    cllm_comm_destroy(s);
}

static int run_collectives(int world, bool quick, char **argv) {
    cllm_dist_env env;
    if (quick) { g_sizes = k_quick_sizes; g_nsizes = (int)(sizeof k_quick_sizes / sizeof k_quick_sizes[0]); }
    double t0 = now_s();
    cllm_comm *c = start_world(&env, world, 30.0, argv);
    int P = cllm_comm_size(c);
    CHECK(world == 0 || P == world, "world size %d, want %d", P, world);
    test_arg_errors(c);
    test_all_reduce(c);
    if (!quick) test_all_reduce_big(c);
    test_bitwise_equal(c);
    test_reduce_scatter(c);
    test_all_gather(c, false);
    if (!quick) test_all_gather(c, true);
    test_broadcast(c);
    test_send_recv(c);
    test_all_to_allv(c);
    test_split(c);
    test_stats(c);
    CHECK_OK(cllm_comm_check_health(c)); /* before the barrier: after it, peers may exit */
    CHECK_OK(cllm_comm_barrier(c));
    cllm_comm_destroy(c);
    finish_children(&env, 30.0);
    if (env.rank == 0)
        printf("test_comm collectives: world %d (%s)%s: %s in %.2f s\n", P, env.launcher, quick ? " quick" : "",
               g_fails ? "FAILED" : "ok", now_s() - t0);
    return g_fails ? 1 : 0;
}

/* ------------------------------------------------ launchers by environment */

/* A port that binds now, below Linux's ephemeral range (32768-60999): a port
 * the kernel hands out for port 0 can become another test's connection's
 * local port before rank 0 binds it (seen under ctest -j2). */
static int free_port(void) {
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (int tries = 0; tries < 200; tries++) {
        int port = 20000 + rand() % 12000;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM, 0), ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (fd >= 0) close(fd);
        if (ok) return port;
    }
    return 29500;
}

/* Start N copies of `argv0 collectives 0 quick` with the variables srun or
 * torchrun would set, and wait for them (60 s at most). */
static int run_spawn(const char *kind, int N, const char *argv0) {
    char hex[2 * CLLM_DIST_SECRET_BYTES + 1];
    uint8_t secret[CLLM_DIST_SECRET_BYTES];
    if (cllm_dist_secret_generate(secret) != CLLM_OK) return 1;
    cllm_dist_secret_hex(secret, hex);
    int port = free_port(), n = 0;
    while (environ[n]) n++;
    pid_t pids[16];
    char *av[] = {(char *)argv0, "collectives", "0", "quick", NULL};
    for (int r = 0; r < N; r++) {
        char v[8][96];
        int k = 0;
        if (!strcmp(kind, "srun")) {
            snprintf(v[k++], 96, "SLURM_STEP_NUM_TASKS=%d", N);
            snprintf(v[k++], 96, "SLURM_PROCID=%d", r);
            snprintf(v[k++], 96, "SLURM_LOCALID=%d", r);
            snprintf(v[k++], 96, "SLURM_STEP_TASKS_PER_NODE=%d", N);
        } else {
            snprintf(v[k++], 96, "RANK=%d", r);
            snprintf(v[k++], 96, "WORLD_SIZE=%d", N);
            snprintf(v[k++], 96, "LOCAL_RANK=%d", r);
            snprintf(v[k++], 96, "LOCAL_WORLD_SIZE=%d", N);
        }
        snprintf(v[k++], 96, "MASTER_ADDR=127.0.0.1");
        snprintf(v[k++], 96, "MASTER_PORT=%d", port);
        snprintf(v[k++], 96, "CLLM_DIST_SECRET=%s", hex);
        char **envp = malloc(sizeof(char *) * (size_t)(n + k + 1));
        int m = 0;
        for (int i = 0; i < n; i++)
            if (strncmp(environ[i], "CLLM_DIST_", 10) && strncmp(environ[i], "OMPI_", 5)) envp[m++] = environ[i];
        for (int i = 0; i < k; i++) envp[m++] = v[i];
        envp[m] = NULL;
        int e = posix_spawn(&pids[r], argv0, NULL, NULL, av, envp);
        free(envp);
        if (e) { fprintf(stderr, "FAIL: spawn: %s\n", strerror(e)); return 1; }
    }
    double deadline = now_s() + 60;
    int bad = 0, left = N;
    while (left && now_s() < deadline) {
        for (int r = 0; r < N; r++) {
            int st;
            if (pids[r] > 0 && waitpid(pids[r], &st, WNOHANG) == pids[r]) {
                if (!WIFEXITED(st) || WEXITSTATUS(st)) {
                    fprintf(stderr, "FAIL: %s rank %d: status %d\n", kind, r, st);
                    bad++;
                }
                pids[r] = 0;
                left--;
            }
        }
        sleep_s(0.02);
    }
    for (int r = 0; r < N; r++)
        if (pids[r] > 0) {
            kill(pids[r], SIGKILL);
            waitpid(pids[r], NULL, 0);
            bad++;
            fprintf(stderr, "FAIL: %s rank %d hung\n", kind, r);
        }
    printf("test_comm spawn %s %d: %s\n", kind, N, bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}

/* ----------------------------------------------------- detection (local) */

static const char *const k_vars[] = {
    "CLLM_DIST_RANK", "CLLM_DIST_WORLD_SIZE", "CLLM_DIST_LOCAL_RANK", "CLLM_DIST_LOCAL_WORLD_SIZE",
    "CLLM_DIST_INIT_ADDR", "CLLM_DIST_SECRET", "CLLM_DIST_PARENT_PID", "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_STEP_TASKS_PER_NODE", "RANK", "WORLD_SIZE",
    "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES", NULL};

static void clear_vars(void) { for (int i = 0; k_vars[i]; i++) unsetenv(k_vars[i]); }

static void expect_error(const char *word) {
    cllm_dist_env env;
    cllm_status st = cllm_dist_env_detect(&env);
    CHECK(st != CLLM_OK && strstr(cllm_last_error(), word), "want an error naming %s, got %s: %s", word,
          cllm_status_str(st), cllm_last_error());
}

static int run_env_tests(void) {
    static const char hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    cllm_dist_env env;
    clear_vars();
    CHECK_OK(cllm_dist_env_detect(&env));
    CHECK(!strcmp(env.launcher, "single") && env.world_size == 1 && env.rank == 0 && env.listen_fd == -1, "single");
    CHECK(cllm_dist_env_peek_rank() == 0, "peek single");
    CHECK(cllm_dist_launch_local(&env, 1, NULL, (char *[]){"x", NULL}) == CLLM_ERR_INVALID_ARG, "world 1 launch");
    /* srun: rendezvous and secret are required, in that order */
    setenv("SLURM_STEP_NUM_TASKS", "2", 1);
    setenv("SLURM_PROCID", "1", 1);
    CHECK(cllm_dist_env_peek_rank() == 1, "peek srun");
    expect_error("MASTER_ADDR");
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "29500", 1);
    expect_error("CLLM_DIST_SECRET");
    setenv("CLLM_DIST_SECRET", "xyz", 1);
    expect_error("hex digits");
    setenv("CLLM_DIST_SECRET", hex, 1);
    setenv("SLURM_STEP_TASKS_PER_NODE", "2(x3),1", 1);
    setenv("SLURM_NODEID", "3", 1);
    setenv("SLURM_LOCALID", "0", 1);
    CHECK_OK(cllm_dist_env_detect(&env));
    CHECK(!strcmp(env.launcher, "srun") && env.rank == 1 && env.world_size == 2 && env.init_port == 29500 &&
              !strcmp(env.init_host, "127.0.0.1") && env.local_world_size == 1 && env.secret[1] == 0x11,
          "srun env: %s rank %d/%d port %d local %d", env.launcher, env.rank, env.world_size, env.init_port,
          env.local_world_size);
    CHECK(cllm_dist_launch_local(&env, 2, NULL, (char *[]){"x", NULL}) == CLLM_ERR_INVALID_ARG, "launch in srun");
    setenv("SLURM_NODEID", "1", 1);
    setenv("CUDA_VISIBLE_DEVICES", "3", 1);
    CHECK_OK(cllm_dist_env_detect(&env));
    CHECK(env.local_world_size == 2 && env.cuda_device == 0, "srun node 1: local %d device %d",
          env.local_world_size, env.cuda_device);
    setenv("CLLM_DIST_INIT_ADDR", "nohostport", 1);
    expect_error("HOST:PORT");
    clear_vars();
    /* torchrun-style */
    setenv("RANK", "3", 1);
    setenv("WORLD_SIZE", "2", 1);
    expect_error("RANK");
    setenv("RANK", "1", 1);
    setenv("MASTER_ADDR", "localhost", 1);
    setenv("MASTER_PORT", "70000", 1);
    setenv("CLLM_DIST_SECRET", hex, 1);
    expect_error("MASTER_PORT");
    setenv("MASTER_PORT", "29501", 1);
    setenv("LOCAL_RANK", "1", 1);
    CHECK_OK(cllm_dist_env_detect(&env));
    CHECK(!strcmp(env.launcher, "env") && env.rank == 1 && env.cuda_device == 1, "env launcher");
    CHECK(cllm_dist_env_peek_rank() == 1, "peek env");
    clear_vars();
    /* mpirun with the rendezvous given: no MPI needed */
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
    setenv("CLLM_DIST_INIT_ADDR", "10.1.2.3:29502", 1);
    setenv("CLLM_DIST_SECRET", hex, 1);
    CHECK_OK(cllm_dist_env_detect(&env));
    CHECK(!strcmp(env.launcher, "mpirun") && env.rank == 1 && env.world_size == 4 && env.init_port == 29502 &&
              !strcmp(env.init_host, "10.1.2.3"), "mpirun env");
    clear_vars();
    /* a self-launched worker without its rendezvous */
    setenv("CLLM_DIST_RANK", "1", 1);
    setenv("CLLM_DIST_WORLD_SIZE", "2", 1);
    expect_error("CLLM_DIST_INIT_ADDR");
    clear_vars();
    printf("test_comm env: %s\n", g_fails ? "FAILED" : "ok");
    return g_fails ? 1 : 0;
}

int main(int argc, char **argv) {
    cllm_log_set_level(CLLM_LOG_WARN);
    if (argc >= 3 && !strcmp(argv[1], "collectives"))
        return run_collectives(atoi(argv[2]), argc >= 4 && !strcmp(argv[3], "quick"), argv);
    if (argc >= 4 && !strcmp(argv[1], "spawn")) return run_spawn(argv[2], atoi(argv[3]), argv[0]);
    if (argc >= 2 && !strcmp(argv[1], "env")) return run_env_tests();
    fprintf(stderr, "usage: test_comm collectives N [quick] | spawn srun|env N | env\n");
    return 2;
}
